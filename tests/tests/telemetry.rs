//! Traces: a node with `CAIRN_OTEL_ENDPOINT` sends its spans over OTLP/gRPC to a real receiver
//! (the OpenTelemetry collector's `TraceService`, from `opentelemetry-proto`), which decodes them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_tests::aws_sdk_s3::primitives::ByteStream;
use cairn_tests::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts the receiver on a loopback port: its endpoint and what it received.
async fn receiver() -> (String, Receiver) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = Receiver::default();
    let service = TraceServiceServer::new(r.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), r)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Every span received so far, with its resource's `service.instance.id`.
fn spans(r: &Receiver) -> Vec<(Option<String>, Span)> {
    let mut out = Vec::new();
    for req in r.0.lock().unwrap().iter() {
        for rs in &req.resource_spans {
            let instance = rs
                .resource
                .as_ref()
                .and_then(|res| attr(&res.attributes, "service.instance.id"))
                .map(str::to_owned);
            let service = rs
                .resource
                .as_ref()
                .and_then(|res| attr(&res.attributes, "service.name"));
            assert_eq!(service, Some("cairn"));
            for ss in &rs.scope_spans {
                out.extend(ss.spans.iter().map(|s| (instance.clone(), s.clone())));
            }
        }
    }
    out
}

#[tokio::test]
async fn requests_are_traced_to_an_otlp_collector() {
    let (endpoint, received) = receiver().await;
    let srv = Server::start_with(
        ServerOptions::new(1)
            .env("CAIRN_OTEL_ENDPOINT", &endpoint)
            // The SDK's batch delay, so the test waits a fraction of a second, not five.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    )
    .await;
    let c = srv.client();
    c.create_bucket().bucket("traced").send().await.unwrap();
    c.put_object()
        .bucket("traced")
        .key("a/b.txt")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (request, op) = loop {
        let all = spans(&received);
        let request = all.iter().find(|(_, s)| {
            s.name == "request"
                && attr(&s.attributes, "method") == Some("PUT")
                && attr(&s.attributes, "path") == Some("/traced/a/b.txt")
        });
        let op = request.and_then(|(_, r)| {
            all.iter()
                .find(|(_, s)| s.name == "put_object" && s.trace_id == r.trace_id)
        });
        if let (Some(r), Some(o)) = (request, op) {
            break (r.clone(), o.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no PUT trace within 30 s: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The operation's span lies inside the request's, in one trace, named after this node.
    assert_eq!(op.1.parent_span_id, request.1.span_id);
    assert_eq!(attr(&op.1.attributes, "key"), Some("a/b.txt"));
    assert_eq!(
        request.0.as_deref(),
        Some(format!("127.0.0.1:{}", srv.port()).as_str())
    );
    // A client's traceparent makes its request part of the client's trace.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    srv.http()
        .get(format!("{}/traced", srv.endpoint()))
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .send()
        .await
        .unwrap();
    let joined = loop {
        let found = spans(&received)
            .into_iter()
            .find(|(_, s)| s.name == "request" && hex::encode(&s.trace_id) == trace);
        if let Some((_, s)) = found {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no span joined the caller's trace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(hex::encode(&joined.parent_span_id), parent);
    // No secret in any span.
    let dump = format!("{:?}", spans(&received));
    assert!(!dump.contains(srv.secret_key()));
}

/// One PUT through node 1 of a 3-node site is one trace: the request's span on node 1 and the
/// shard writes it made on nodes 2 and 3 (their `drive_rpc` spans carry the `traceparent` the
/// internode gRPC calls sent).
#[tokio::test]
async fn a_put_is_one_trace_across_the_nodes_of_a_site() {
    let (endpoint, received) = receiver().await;
    let site = cairn_tests::cluster::Cluster::start_opts(3, |_| {
        let mut o = ServerOptions::new(2)
            .env("CAIRN_OTEL_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
        o.parity = Some(2);
        o
    })
    .await;
    let node1 = site.node(0);
    let c = node1.client();
    c.create_bucket().bucket("spread").send().await.unwrap();
    // Large enough for shard files (small objects are inlined in the metadata).
    c.put_object()
        .bucket("spread")
        .key("big")
        .body(ByteStream::from(random_bytes(1 << 20, 7)))
        .send()
        .await
        .unwrap();
    let instances: Vec<String> = site
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = spans(&received);
        let request = all.iter().find(|(node, s)| {
            s.name == "request"
                && attr(&s.attributes, "method") == Some("PUT")
                && attr(&s.attributes, "path") == Some("/spread/big")
                && node.as_deref() == Some(instances[0].as_str())
        });
        if let Some((_, request)) = request {
            let writers: std::collections::BTreeSet<&str> = all
                .iter()
                .filter(|(_, s)| {
                    s.trace_id == request.trace_id
                        && s.name == "drive_rpc"
                        && attr(&s.attributes, "rpc") == Some("create_file")
                })
                .filter_map(|(node, _)| node.as_deref())
                .collect();
            if writers.contains(instances[1].as_str()) && writers.contains(instances[2].as_str()) {
                assert!(
                    !writers.contains(instances[0].as_str()),
                    "node 1 writes its own drives directly, not over gRPC"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trace with shard writes on nodes 2 and 3 within 30 s: {:?}",
            all.iter()
                .map(|(n, s)| (n.clone(), s.name.clone(), hex::encode(&s.trace_id)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_trace_settings_stop_the_server_with_the_variable_named() {
    for (var, value) in [
        ("CAIRN_OTEL_ENDPOINT", "collector:4317"),
        ("CAIRN_OTEL_SAMPLE_RATIO", "2"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (status, out, err) = run_cairn(
            &[
                "server".into(),
                "--address".into(),
                format!("127.0.0.1:{}", free_port()),
                dir.path().join("d").to_string_lossy().into(),
            ],
            &[("CAIRN_OTEL_ENDPOINT", "http://127.0.0.1:1"), (var, value)],
            Duration::from_secs(60),
        )
        .await;
        assert!(!status.success(), "{var}={value}");
        assert!(format!("{out}{err}").contains(var), "{out}{err}");
    }
}

/// Calls to a peer site carry the trace too: site a replicates a new object to site b, and b's
/// request span is a child of the `peer_call` span a sent it from, in the same trace.
#[tokio::test]
async fn a_call_to_a_peer_site_joins_the_callers_trace() {
    let (endpoint, received) = receiver().await;
    let traced = |o: ServerOptions| {
        o.env("CAIRN_OTEL_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
    };
    let s = cairn_tests::sites::TwoSites::start_both(
        traced(ServerOptions::new(4)),
        traced(ServerOptions::new(4)),
    )
    .await;
    s.admin(&["site", "add", "a", "b"]).await;
    let c = s.a.client();
    c.create_bucket().bucket("across").send().await.unwrap();
    c.put_object()
        .bucket("across")
        .key("k")
        .body(ByteStream::from_static(b"over there"))
        .send()
        .await
        .unwrap();
    let (a, b) = (
        format!("127.0.0.1:{}", s.a.port()),
        format!("127.0.0.1:{}", s.b.port()),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = spans(&received);
        let calls: Vec<&Span> = all
            .iter()
            .filter(|(n, s)| n.as_deref() == Some(a.as_str()) && s.name == "peer_call")
            .map(|(_, s)| s)
            .collect();
        let joined = all.iter().any(|(n, s)| {
            n.as_deref() == Some(b.as_str())
                && s.name == "request"
                && calls
                    .iter()
                    .any(|c| c.trace_id == s.trace_id && c.span_id == s.parent_span_id)
        });
        if joined {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request span on site b under a peer_call span of site a within 60 s: {:?}",
            all.iter()
                .map(|(n, s)| (n.clone(), s.name.clone(), hex::encode(&s.trace_id)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
