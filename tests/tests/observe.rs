//! `cairn admin trace` and the audit log, against real `cairn` processes: the trace of a 3-node
//! site shows the requests every node served, its filters hold, secrets in headers are masked,
//! a user without `admin:ServerTrace` is refused; audit lines for a denied request and an admin
//! call reach a file and a webhook this test runs, and a webhook that never answers neither
//! holds requests up nor goes unnoticed (its dropped count moves in the metrics).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_tests::admin::{AdminCli, Background};
use cairn_tests::aws_sdk_s3::primitives::ByteStream;
use cairn_tests::cluster::Cluster;
use cairn_tests::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(60);

/// A `cairn admin trace --json` process and the JSON lines it printed so far.
struct Trace(Background);

impl Trace {
    fn start(cli: &AdminCli, args: &[&str]) -> Trace {
        let mut all = vec!["trace", "--json"];
        all.extend(args);
        Trace(cli.spawn(&all))
    }

    fn lines(&self) -> Vec<Value> {
        self.0
            .lines()
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l:?}: {e}"))
            })
            .collect()
    }

    /// Repeats `step` (which makes requests) until a printed line satisfies `found`.
    async fn until<F, Fut>(&self, what: &str, found: impl Fn(&Value) -> bool, mut step: F) -> Value
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = self.lines().into_iter().find(|v| found(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no trace line {what} within {WAIT:?}; stderr: {}; lines: {:#?}",
                self.0.stderr(),
                self.lines()
            );
            step().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn host(s: &Server) -> String {
    format!("127.0.0.1:{}", s.port())
}

fn is(v: &Value, key: &str, want: &str) -> bool {
    v[key].as_str() == Some(want)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_trace_shows_every_node_and_its_filters_hold() {
    let site = Cluster::start(3, 1, None).await;
    let nodes: Vec<&Server> = site.nodes.iter().collect();
    let hosts: Vec<String> = nodes.iter().map(|n| host(n)).collect();
    let cli = AdminCli::for_server("site", nodes[0]).await;
    nodes[0]
        .client()
        .create_bucket()
        .bucket("traced")
        .send()
        .await
        .unwrap();
    nodes[0]
        .client()
        .put_object()
        .bucket("traced")
        .key("k")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();

    let all = Trace::start(&cli, &["site"]);
    // Only node 2's failed GetObjects on bucket `traced`.
    let filtered = Trace::start(
        &cli,
        &[
            "site",
            "--errors",
            "--api",
            "GetObject",
            "--bucket",
            "traced",
            "--node",
            &hosts[1],
        ],
    );
    let verbose = Trace::start(&cli, &["site", "--verbose", "--node", &hosts[2]]);

    // Every node's GetObject shows up in the trace fanned in through node 1.
    for (i, n) in nodes.iter().enumerate() {
        let c = n.client();
        let line = all
            .until(
                &format!("for a GetObject served by node {}", i + 1),
                |v| is(v, "api", "GetObject") && is(v, "node", &hosts[i]) && v["status"] == 200,
                || async {
                    let got = c
                        .get_object()
                        .bucket("traced")
                        .key("k")
                        .send()
                        .await
                        .unwrap();
                    got.body.collect().await.unwrap();
                },
            )
            .await;
        assert!(
            is(&line, "bucket", "traced") && is(&line, "key", "k"),
            "{line}"
        );
        assert!(
            is(&line, "method", "GET") && is(&line, "path", "/traced/k"),
            "{line}"
        );
        assert_eq!(line["bytes_out"], 5, "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        assert!(is(&line, "access_key", n.access_key()), "{line}");
        assert!(
            line["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{line}"
        );
        assert!(!line["request_id"].as_str().unwrap().is_empty(), "{line}");
        assert!(
            line.get("headers").is_none(),
            "headers only with --verbose: {line}"
        );
    }

    // The filtered trace: a missing key on `traced` through node 2 shows; the same on node 1,
    // a success on node 2 and a miss on another bucket do not.
    nodes[0]
        .client()
        .create_bucket()
        .bucket("other")
        .send()
        .await
        .unwrap();
    let missing = |n: &Server, bucket: &'static str| {
        let c = n.client();
        async move {
            let r = c.get_object().bucket(bucket).key("missing").send().await;
            assert!(r.is_err());
        }
    };
    for n in [nodes[0], nodes[2]] {
        missing(n, "traced").await;
    }
    missing(nodes[1], "other").await;
    nodes[1]
        .client()
        .get_object()
        .bucket("traced")
        .key("k")
        .send()
        .await
        .unwrap();
    let line = filtered
        .until(
            "for node 2's failed GetObject",
            |v| is(v, "key", "missing"),
            || missing(nodes[1], "traced"),
        )
        .await;
    assert_eq!(line["status"], 404, "{line}");
    // The unfiltered trace saw the requests the filter left out.
    all.until(
        "for node 1's failed GetObject",
        |v| is(v, "node", &hosts[0]) && is(v, "key", "missing") && is(v, "bucket", "traced"),
        || async {},
    )
    .await;
    all.until(
        "for node 2's miss on bucket other",
        |v| is(v, "node", &hosts[1]) && is(v, "bucket", "other"),
        || async {},
    )
    .await;
    for v in filtered.lines() {
        assert!(
            is(&v, "node", &hosts[1])
                && is(&v, "api", "GetObject")
                && is(&v, "bucket", "traced")
                && v["status"].as_u64().unwrap() >= 400,
            "the filter let through {v}"
        );
    }

    // --verbose shows headers, their secrets masked.
    let http = nodes[2].http();
    let line = verbose
        .until(
            "with headers",
            |v| {
                v["headers"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|h| h[0] == "x-amz-security-token"))
            },
            || async {
                http.get(format!("{}/traced/k", nodes[2].endpoint()))
                    .header("x-amz-security-token", "sessiontokensecret")
                    .header(
                        "authorization",
                        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=deadbeefcafe0123",
                    )
                    .send()
                    .await
                    .unwrap();
            },
        )
        .await;
    let text = line.to_string();
    assert!(
        !text.contains("sessiontokensecret") && !text.contains("deadbeefcafe0123"),
        "{text}"
    );
    assert!(
        text.contains("Credential=AKIAEXAMPLE") && text.contains("*REDACTED*"),
        "{text}"
    );
    assert!(line["status"].as_u64().unwrap() >= 400, "{line}");
    assert!(line["response_headers"].is_array(), "{line}");

    // A user without admin:ServerTrace is refused; one with it may trace.
    cli.plain_user("site", nodes[0]).await;
    let out = cli.fails(&["trace", "plain"]).await;
    assert!(out.contains("403") && out.contains("AccessDenied"), "{out}");
    cli.user_with_policy(
        "site",
        "tracer",
        "tracersecret123",
        "trace",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:ServerTrace"],"Resource":["arn:aws:s3:::*"]}]}"#,
    )
    .await;
    cli.ok(&[
        "alias",
        "set",
        "tracer",
        &nodes[0].endpoint(),
        "tracer",
        "tracersecret123",
    ])
    .await;
    let by_tracer = Trace::start(&cli, &["tracer", "--api", "HeadBucket"]);
    let c = nodes[1].client();
    by_tracer
        .until(
            "traced by a user allowed admin:ServerTrace",
            |v| is(v, "api", "HeadBucket") && is(v, "node", &hosts[1]),
            || async {
                c.head_bucket().bucket("traced").send().await.unwrap();
            },
        )
        .await;
    drop((all, filtered, verbose, by_tracer));
}

/// Requests a webhook receiver got: (authorization header, body).
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A minimal HTTP/1.1 receiver on a free port: answers 200 to every POST and keeps what came.
async fn webhook() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audit", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(conn);
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line.trim_end().to_owned());
                    }
                    let header = |name: &str| {
                        head.iter()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default()
                    };
                    let len: usize = header("content-length").parse().unwrap_or(0);
                    let mut body = vec![0; len];
                    if conn.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    keep.lock().unwrap().push((
                        header("authorization"),
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if conn.get_mut().write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, got)
}

/// The JSON lines of `text`.
fn records(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_lines_reach_a_file_and_a_webhook() {
    let (url, received) = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let srv = Server::start_with(
        ServerOptions::new(1)
            .env("CAIRN_AUDIT_FILE", &file.display().to_string())
            .env("CAIRN_AUDIT_WEBHOOK_ENDPOINT", &url)
            .env("CAIRN_AUDIT_WEBHOOK_AUTH_TOKEN", "hooktoken"),
    )
    .await;
    let cli = AdminCli::for_server("a", &srv).await;
    srv.client()
        .create_bucket()
        .bucket("private")
        .send()
        .await
        .unwrap();
    cli.user_with_policy(
        "a",
        "reader",
        "readersecret123",
        "onlyother",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"OtherOnly","Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::other/*"]}]}"#,
    )
    .await;
    let denied = srv
        .client_with("reader", "readersecret123")
        .get_object()
        .bucket("private")
        .key("secret.txt")
        .send()
        .await;
    assert!(denied.is_err());
    cli.ok(&["user", "list", "a"]).await;

    let is_denied = |v: &Value| is(v, "kind", "denied") && is(v, "key", "secret.txt");
    let is_info =
        |v: &Value| is(v, "kind", "admin") && is(v, "path", "/cairn/admin/v1/iam/user/list");
    let found = poll_until(WAIT, || async {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines = records(&text);
        let hooked: Vec<Value> = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, body)| records(body))
            .collect();
        [lines, hooked]
            .iter()
            .all(|l| l.iter().any(is_denied) && l.iter().any(is_info))
    })
    .await;
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        found,
        "file:\n{text}\nwebhook: {:?}",
        received.lock().unwrap()
    );
    let lines = records(&text);
    let d = lines.iter().find(|v| is_denied(v)).unwrap();
    assert!(
        is(d, "api", "GetObject") && is(d, "bucket", "private"),
        "{d}"
    );
    assert!(
        is(d, "access_key", "reader") && is(d, "user", "reader"),
        "{d}"
    );
    assert!(is(d, "credentials", "user") && d["status"] == 403, "{d}");
    assert!(
        d["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{d}"
    );
    let why = d["decision"].as_str().unwrap();
    assert!(
        why.contains("s3:GetObject") && why.contains("denied"),
        "{d}"
    );
    let a = lines.iter().find(|v| is_info(v)).unwrap();
    assert!(
        is(a, "credentials", "root") && is(a, "access_key", srv.access_key()),
        "{a}"
    );
    assert!(a["status"] == 200 && is(a, "api", "Admin"), "{a}");
    // Adding the user was an admin call too; its secret is in no line.
    assert!(
        lines
            .iter()
            .any(|v| is(v, "path", "/cairn/admin/v1/iam/user/add")),
        "{text}"
    );
    assert!(
        !text.contains("readersecret123") && !text.contains(srv.secret_key()),
        "{text}"
    );
    for (auth, _) in received.lock().unwrap().iter() {
        assert_eq!(auth, "Bearer hooktoken");
    }
}

/// The dropped count of the audit webhook, from a root-signed scrape.
async fn webhook_dropped(srv: &Server) -> f64 {
    let (status, text) = srv
        .signed(
            "GET",
            "/cairn/metrics/node",
            (srv.access_key(), srv.secret_key(), None),
            b"",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("cairn_audit_dropped_total{")?
                .split_once("} ")
        })
        .filter(|(labels, _)| labels.contains("sink=\"webhook\""))
        .map(|(_, v)| v.split_whitespace().next().unwrap().parse().unwrap())
        .unwrap_or_else(|| panic!("no webhook dropped count in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_never_answers_holds_no_request_up() {
    // Takes connections and never answers: each POST waits for its timeout.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audit", blackhole.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = blackhole.accept().await {
            h.lock().unwrap().push(conn);
        }
    });
    let srv = Server::start_with(
        ServerOptions::new(1)
            .env("CAIRN_AUDIT_WEBHOOK_ENDPOINT", &url)
            .env("CAIRN_AUDIT_QUEUE_SIZE", "4"),
    )
    .await;
    create_bucket(&srv.client(), "private").await;
    let anonymous = srv.http();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..100 {
        let t = Instant::now();
        // Anonymous reads of a bucket that is not public: denied, so audited.
        let r = anonymous
            .get(format!("{}/private/k{i}", srv.endpoint()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        slowest = slowest.max(t.elapsed());
    }
    let all = started.elapsed();
    eprintln!("100 audited requests with the webhook hanging: {all:?}, slowest {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "a request waited {slowest:?}"
    );
    let moved = poll_until(WAIT, || async { webhook_dropped(&srv).await >= 90.0 }).await;
    assert!(moved, "dropped: {}", webhook_dropped(&srv).await);
    // And the server still answers at once.
    let t = Instant::now();
    srv.client().list_buckets().send().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}
