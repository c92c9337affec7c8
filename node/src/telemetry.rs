//! Logs to stderr (`CAIRN_LOG`, default `info`) and, when `CAIRN_OTEL_ENDPOINT` names an OTLP/gRPC
//! collector (`http://HOST:4317`), the same spans as OpenTelemetry traces through
//! `tracing-opentelemetry`: one span per S3 request with its operation's spans inside, sampled at
//! `CAIRN_OTEL_SAMPLE_RATIO` (default 1.0). Without an endpoint no OpenTelemetry layer exists at
//! all, so it costs nothing. A client's W3C `traceparent` makes its request part of the client's
//! trace ([`follow_caller`]), and calls between the nodes of a site carry the trace on
//! ([`Internode`]), so one PUT shows its shard writes on the other nodes; signed calls to peer
//! sites carry it too (`link`), and the peer's request span joins the trace.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub const ENDPOINT_ENV: &str = "CAIRN_OTEL_ENDPOINT";
pub const SAMPLE_RATIO_ENV: &str = "CAIRN_OTEL_SAMPLE_RATIO";
/// One export to the collector, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `http` headers as the W3C propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes `span` (a request's) a child of the trace the caller's `traceparent` names; nothing
/// without the header or without traces.
pub fn follow_caller(span: &tracing::Span, headers: &http::HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    // Without the OpenTelemetry layer the span has no trace to join: nothing to do.
    let _ = span.set_parent(cx);
}

/// The W3C trace context on internode gRPC calls, handed to the transport when traces are on.
pub struct Internode;

/// The W3C `traceparent` of the current span, for a call that continues its trace; `None`
/// without traces (or outside any sampled span).
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let mut fields = std::collections::HashMap::new();
    opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(&cx, &mut fields);
    fields.remove("traceparent")
}

impl cairn_control_plane::transport::TraceContext for Internode {
    fn current(&self) -> Option<String> {
        current_traceparent()
    }

    fn follow(&self, span: &tracing::Span, traceparent: &str) {
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(traceparent) {
            headers.insert("traceparent", v);
            follow_caller(span, &headers);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{ENDPOINT_ENV}: {0}")]
    Endpoint(String),
    #[error("{SAMPLE_RATIO_ENV}: expected a number from 0 to 1, not {0:?}")]
    SampleRatio(String),
}

/// Keeps the trace pipeline; [`Telemetry::shutdown`] sends what is still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// What carries traces across internode calls: nothing with traces off.
    pub fn internode(
        &self,
    ) -> Option<std::sync::Arc<dyn cairn_control_plane::transport::TraceContext>> {
        self.provider.as_ref().map(|_| {
            std::sync::Arc::new(Internode)
                as std::sync::Arc<dyn cairn_control_plane::transport::TraceContext>
        })
    }

    /// Flushes and stops the exporter (bounded by the export timeout). Call it off the async
    /// workers: the exporter's last batch runs on them.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "traces not flushed at shutdown");
            }
        }
    }
}

/// The SDK's batch processor exports from a thread of its own, and the tonic exporter needs a
/// tokio reactor: each batch is run on the server's runtime.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(self.runtime.block_on(self.inner.export(batch)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

fn sample_ratio(vars: &dyn Fn(&str) -> Option<String>) -> Result<f64, TelemetryError> {
    match vars(SAMPLE_RATIO_ENV).filter(|v| !v.trim().is_empty()) {
        None => Ok(1.0),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or(TelemetryError::SampleRatio(v)),
    }
}

/// Installs the global subscriber: logs, and traces when configured. `instance` names this node
/// in its traces (`service.instance.id`). Must run inside the server's tokio runtime.
pub fn init(
    vars: &dyn Fn(&str) -> Option<String>,
    instance: &str,
) -> Result<Telemetry, TelemetryError> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let endpoint = vars(ENDPOINT_ENV).filter(|e| !e.trim().is_empty());
    let Some(endpoint) = endpoint else {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        return Ok(Telemetry { provider: None });
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(TelemetryError::Endpoint(format!(
            "expected http://HOST:PORT or https://HOST:PORT, not {endpoint:?}"
        )));
    }
    let ratio = sample_ratio(vars)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Endpoint(e.to_string()))?;
    let exporter = OnRuntime {
        inner: exporter,
        runtime: tokio::runtime::Handle::current(),
    };
    let resource = Resource::builder()
        .with_service_name("cairn")
        .with_attribute(KeyValue::new("service.instance.id", instance.to_owned()))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(resource)
        .build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("cairn"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    tracing::info!(%endpoint, ratio, "exporting traces over OTLP/gRPC");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(sample_ratio(&env(&[])).unwrap(), 1.0);
        assert_eq!(
            sample_ratio(&env(&[(SAMPLE_RATIO_ENV, "0.01")])).unwrap(),
            0.01
        );
        for bad in ["-0.1", "1.5", "half", "NaN"] {
            let vars = move |k: &str| (k == SAMPLE_RATIO_ENV).then(|| bad.to_string());
            assert!(sample_ratio(&vars).is_err(), "{bad}");
        }
    }
}

/// What the layers that handle a request learn about it and the front router wants once it is
/// answered: the operation (the metrics' API name), and for the live trace and the audit log the
/// bucket, key, caller and the decision on it. The router scopes one around each handler
/// ([`with_notes`]); the handlers note into it ([`note`], [`note_detail`]).
#[derive(Debug, Default, Clone)]
pub struct RequestNotes {
    /// The S3 operation (s3s names it only to the access check).
    pub operation: Option<String>,
    /// The API name the router counts the request under (`GetObject`, `Admin`, `STS`, ...).
    pub api: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// The access key that signed (never its secret or session token).
    pub access_key: Option<String>,
    /// The IAM user the caller is, or acts for (a service account's or session's parent).
    pub user: Option<String>,
    /// What kind of credentials signed: `root`, `user`, `service-account`, `session`.
    pub credentials: Option<&'static str>,
    /// Which policy statement decided, or why the request was refused.
    pub decision: Option<String>,
    /// Authorization refused the request.
    pub denied: bool,
    /// Someone reads the details (a trace subscriber, the audit log): worth their cost.
    pub detailed: bool,
}

/// The notes of one request, shared between its handler task and the router.
pub type SharedNotes = std::sync::Arc<std::sync::Mutex<RequestNotes>>;

tokio::task_local! {
    static NOTES: SharedNotes;
}

/// Changes the notes of the request this task handles (nothing outside [`with_notes`]).
pub fn note(f: impl FnOnce(&mut RequestNotes)) {
    let _ = NOTES.try_with(|n| f(&mut n.lock().unwrap_or_else(|e| e.into_inner())));
}

/// Like [`note`], only when someone reads the details ([`RequestNotes::detailed`]), so a costly
/// note (strings copied, a decision formatted) costs nothing otherwise.
pub fn note_detail(f: impl FnOnce(&mut RequestNotes)) {
    note(|n| {
        if n.detailed {
            f(n)
        }
    });
}

/// Runs `f` with `notes` as the notes of the request it handles.
pub async fn with_notes<T>(notes: SharedNotes, f: impl std::future::Future<Output = T>) -> T {
    NOTES.scope(notes, f).await
}
