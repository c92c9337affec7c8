//! Prometheus metrics at `/cairn/metrics` (this node's figures and what it sees of the site) and
//! `/cairn/metrics/node` (this node's only), in the OpenMetrics text format of the
//! `prometheus-client` crate. The request path only touches atomics ([`Metrics`]); the figures
//! other layers keep (drives, Raft, replication contacts, KMS, IAM) are read when a scrape
//! comes ([`scrape`]). Who may scrape: [`guard`].

pub mod guard;
mod scrape;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::clock::SharedClock;

pub use scrape::Scope;

/// Upper bounds of the time-to-first-byte buckets, in seconds (1 ms to 10 s).
const TTFB_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// An API's name: s3s's operation names, or the router's for STS, admin and metrics.
type Api = std::borrow::Cow<'static, str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: Api,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: Api,
}

/// What a scrape answers with: the OpenMetrics text format (Prometheus reads it natively).
fn content_type() -> hyper::header::HeaderValue {
    hyper::header::HeaderValue::from_static(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}

/// A scrape's answer (front router: public and bearer-token scrapes).
pub fn response(text: String) -> hyper::Response<s3s::Body> {
    let mut r = hyper::Response::new(s3s::Body::from(text));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, content_type());
    r
}

fn ttfb_histogram() -> Histogram {
    Histogram::new(TTFB_BUCKETS)
}

/// The counters the front router and the healer bump as work happens: atomics (the families
/// take a read lock to find an existing series), nothing held across an await.
pub struct Metrics {
    clock: SharedClock,
    requests: Family<RequestLabels, Counter>,
    ttfb: Family<ApiLabel, Histogram, fn() -> Histogram>,
    received: Counter,
    sent: Counter,
    in_flight: Gauge,
    slow_down: Counter,
    healed: Counter,
    heal_failed: Counter,
    heal_queue: Gauge,
}

/// A request being served: counted in flight until dropped.
pub struct InFlight<'a> {
    metrics: &'a Metrics,
    started_ns: i64,
}

impl InFlight<'_> {
    /// The request got its answer's head: count it under `api` and `status`.
    pub fn answered(self, api: Api, status: u16) {
        let m = self.metrics;
        let ns = m.clock.now_ns().saturating_sub(self.started_ns).max(0);
        let api = ApiLabel { api };
        m.ttfb.get_or_create(&api).observe(ns as f64 / 1e9);
        m.requests
            .get_or_create(&RequestLabels {
                api: api.api,
                status,
            })
            .inc();
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

impl Metrics {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            requests: Family::default(),
            ttfb: Family::new_with_constructor(ttfb_histogram),
            received: Counter::default(),
            sent: Counter::default(),
            in_flight: Gauge::default(),
            slow_down: Counter::default(),
            healed: Counter::default(),
            heal_failed: Counter::default(),
            heal_queue: Gauge::default(),
        }
    }

    /// A request took a slot; answer it with [`InFlight::answered`].
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight {
            metrics: self,
            started_ns: self.clock.now_ns(),
        }
    }

    /// A request refused with 503 SlowDown: every slot was taken, or the memory budget of
    /// browser-form uploads read before authentication was spent.
    pub fn slowed_down(&self) {
        self.slow_down.inc();
    }

    /// Bytes read from and written to S3 clients' connections (TLS: the plaintext).
    pub fn received(&self, n: usize) {
        self.received.inc_by(n as u64);
    }

    pub fn sent(&self, n: usize) {
        self.sent.inc_by(n as u64);
    }

    /// The healer finished one object, `ok` or not.
    pub fn healed(&self, ok: bool) {
        if ok { &self.healed } else { &self.heal_failed }.inc();
    }

    /// Objects waiting in the heal queue.
    pub fn heal_queue(&self, n: usize) {
        self.heal_queue.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Registers the live series (shared, not copied) into a scrape's registry.
    fn register(&self, r: &mut Registry) {
        r.register(
            "s3_requests",
            "S3, STS and admin requests served, by API and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "s3_requests_ttfb_seconds",
            "Time from taking a request slot to the answer's head, by API",
            self.ttfb.clone(),
        );
        r.register(
            "s3_traffic_received_bytes",
            "Bytes read from S3 clients' connections",
            self.received.clone(),
        );
        r.register(
            "s3_traffic_sent_bytes",
            "Bytes written to S3 clients' connections",
            self.sent.clone(),
        );
        r.register(
            "s3_requests_in_flight",
            "Requests being served now",
            self.in_flight.clone(),
        );
        r.register(
            "s3_requests_rejected_slowdown",
            "Requests refused with 503 SlowDown: every request slot taken, or the form budget spent",
            self.slow_down.clone(),
        );
        r.register(
            "heal_objects_healed",
            "Objects the background healer repaired",
            self.healed.clone(),
        );
        r.register(
            "heal_objects_failed",
            "Object heals that failed (retried later while attempts remain)",
            self.heal_failed.clone(),
        );
        r.register(
            "heal_queue_objects",
            "Objects waiting for the background healer",
            self.heal_queue.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut r = Registry::with_prefix("cairn");
        m.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn requests_are_counted_by_api_and_status_and_leave_flight() {
        let m = Metrics::new(std::sync::Arc::new(crate::clock::SystemClock));
        let a = m.begin();
        let b = m.begin();
        assert!(text(&m).contains("cairn_s3_requests_in_flight 2\n"));
        a.answered("GetObject".into(), 200);
        b.answered(String::from("GetObject").into(), 404);
        m.begin().answered("GetObject".into(), 200);
        drop(m.begin());
        m.slowed_down();
        m.received(10);
        m.sent(5);
        let t = text(&m);
        for line in [
            "cairn_s3_requests_total{api=\"GetObject\",status=\"200\"} 2\n",
            "cairn_s3_requests_total{api=\"GetObject\",status=\"404\"} 1\n",
            "cairn_s3_requests_ttfb_seconds_count{api=\"GetObject\"} 3\n",
            "cairn_s3_requests_in_flight 0\n",
            "cairn_s3_requests_rejected_slowdown_total 1\n",
            "cairn_s3_traffic_received_bytes_total 10\n",
            "cairn_s3_traffic_sent_bytes_total 5\n",
        ] {
            assert!(t.contains(line), "{line} in\n{t}");
        }
    }
}
