//! Prometheus metrics: Debian's real `prometheus` server scrapes a 3-node site with the
//! configuration `cairn admin prometheus generate` printed, and its HTTP API shows the request
//! counters and drive gauges moving; scrapes without `admin:Prometheus` are refused.

use std::process::Stdio;
use std::time::{Duration, Instant};

use cairn_tests::admin::AdminCli;
use cairn_tests::aws_sdk_s3::primitives::ByteStream;
use cairn_tests::cluster::Cluster;
use cairn_tests::*;

/// A `prometheus` process on a free port, its storage in a temporary directory.
struct Prometheus {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = free_port();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus (Debian package `prometheus`, installed by .ci/run)");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let ready = poll_until(Duration::from_secs(60), || async {
            http.get(format!("http://127.0.0.1:{port}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "prometheus did not become ready");
        p
    }

    /// The samples of an instant query: (labels, value).
    async fn query(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        let text = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", q)])
            .send()
            .await
            .expect("prometheus query")
            .text()
            .await
            .expect("prometheus answer");
        let r: serde_json::Value = serde_json::from_str(&text).expect("prometheus JSON");
        assert_eq!(r["status"], "success", "{q}: {r}");
        r["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let v = s["value"][1].as_str().unwrap().parse().unwrap();
                (s["metric"].clone(), v)
            })
            .collect()
    }

    /// The one value of `q` (`None`: no sample).
    async fn value(&self, q: &str) -> Option<f64> {
        self.query(q).await.first().map(|(_, v)| *v)
    }

    /// Waits until `cond` holds for the samples of `q` (a minute at most).
    async fn wait(&self, q: &str, cond: impl Fn(&[(serde_json::Value, f64)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let samples = self.query(q).await;
            if cond(&samples) {
                return;
            }
            assert!(Instant::now() < deadline, "{q}: still {samples:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn host(s: &Server) -> String {
    s.endpoint()
        .split_once("://")
        .map(|(_, h)| h.to_owned())
        .unwrap()
}

/// The bearer token of a printed scrape configuration.
fn token_of(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.trim().strip_prefix("bearer_token: "))
        .map(|t| serde_json::from_str::<String>(t).unwrap())
        .unwrap_or_else(|| panic!("no bearer_token in {config}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_request_counts_and_drive_states_of_a_site() {
    let mut site = Cluster::start(3, 2, None).await;
    let admin = AdminCli::for_server("site", site.node(0)).await;
    let (h0, h1, h2) = (host(site.node(0)), host(site.node(1)), host(site.node(2)));
    let out = admin
        .ok(&[
            "prometheus",
            "generate",
            "site",
            "--scrape-interval",
            "1s",
            "--target",
            &h1,
            "--target",
            &h2,
        ])
        .await;
    let config = &out[out.find("scrape_configs:").expect("a scrape config")..];
    let prom = Prometheus::start(config).await;
    prom.wait("up{job=\"cairn-job\"} == 1", |s| s.len() == 3)
        .await;

    let c = site.node(0).client();
    c.create_bucket().bucket("metered").send().await.unwrap();
    for i in 0..5 {
        c.put_object()
            .bucket("metered")
            .key(format!("k{i}"))
            .body(ByteStream::from(vec![7u8; 10_000]))
            .send()
            .await
            .unwrap();
    }
    for i in 0..3 {
        c.get_object()
            .bucket("metered")
            .key(format!("k{i}"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap();
    }
    let missing = c.get_object().bucket("metered").key("none").send().await;
    assert!(missing.is_err());
    let on0 = |m: &str| format!("{m}{{instance=\"{h0}\"}}");
    let puts =
        format!("cairn_s3_requests_total{{instance=\"{h0}\",api=\"PutObject\",status=\"200\"}}");
    prom.wait(&puts, |s| s.len() == 1 && s[0].1 == 5.0).await;
    let gets =
        format!("cairn_s3_requests_total{{instance=\"{h0}\",api=\"GetObject\",status=\"200\"}}");
    prom.wait(&gets, |s| s.len() == 1 && s[0].1 == 3.0).await;
    let not_found =
        format!("cairn_s3_requests_total{{instance=\"{h0}\",api=\"GetObject\",status=\"404\"}}");
    prom.wait(&not_found, |s| s.len() == 1 && s[0].1 == 1.0)
        .await;
    let ttfb =
        format!("cairn_s3_requests_ttfb_seconds_count{{instance=\"{h0}\",api=\"PutObject\"}}");
    prom.wait(&ttfb, |s| s.len() == 1 && s[0].1 == 5.0).await;
    // The other nodes served none of them.
    let elsewhere = format!("cairn_s3_requests_total{{instance=\"{h1}\",api=\"PutObject\"}}");
    assert!(prom.query(&elsewhere).await.is_empty());
    let received = prom
        .value(&on0("cairn_s3_traffic_received_bytes_total"))
        .await
        .unwrap();
    let sent = prom
        .value(&on0("cairn_s3_traffic_sent_bytes_total"))
        .await
        .unwrap();
    assert!(
        received >= 50_000.0 && sent >= 30_000.0,
        "{received} {sent}"
    );
    assert_eq!(
        prom.value(&on0("cairn_s3_requests_in_flight")).await,
        Some(0.0)
    );
    // Every node sees the site's 6 drives online, its control plane with a leader.
    let online = "sum by (instance) (cairn_drive_online)";
    prom.wait(online, |s| s.len() == 3 && s.iter().all(|(_, v)| *v == 6.0))
        .await;
    prom.wait("sum(cairn_raft_is_leader)", |s| {
        s.len() == 1 && s[0].1 == 1.0
    })
    .await;
    prom.wait("min(cairn_raft_has_leader)", |s| {
        s.len() == 1 && s[0].1 == 1.0
    })
    .await;
    prom.wait("min(cairn_erasure_set_writable)", |s| {
        s.len() == 1 && s[0].1 == 1.0
    })
    .await;

    // Node 3 dies: the others' metrics show its two drives offline, the rest online.
    site.node_mut(2).kill9();
    let its_drives = format!("cairn_drive_online{{node=\"{h2}\"}}");
    prom.wait(&its_drives, |s| {
        let seen_by = |h: &str| {
            s.iter()
                .filter(|(l, _)| l["instance"] == h)
                .map(|(_, v)| *v)
                .collect::<Vec<_>>()
        };
        seen_by(&h0) == [0.0, 0.0] && seen_by(&h1) == [0.0, 0.0] && seen_by(&h2).is_empty()
    })
    .await;
    let others = format!("sum by (instance) (cairn_drive_online{{node!=\"{h2}\"}})");
    prom.wait(&others, |s| {
        s.len() == 2 && s.iter().all(|(_, v)| *v == 4.0)
    })
    .await;
    let set = format!("cairn_erasure_set_online_drives{{instance=\"{h0}\"}}");
    prom.wait(&set, |s| s.len() == 1 && s[0].1 == 4.0).await;
    prom.wait(&format!("up{{instance=\"{h2}\"}}"), |s| {
        s.len() == 1 && s[0].1 == 0.0
    })
    .await;
}

const SCRAPER_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:Prometheus"]}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn scrapes_need_admin_prometheus_unless_public() {
    let mut srv = Server::start(1).await;
    let admin = AdminCli::for_server("root", &srv).await;
    let http = srv.http();
    let get = |path: &str, token: Option<String>| {
        let mut r = http.get(format!("{}{path}", srv.endpoint()));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let refused = |(status, body): (u16, String)| {
        assert_eq!(status, 403, "{body}");
        assert!(
            !body.contains("cairn_"),
            "a refusal reveals nothing: {body}"
        );
    };
    for path in ["/cairn/metrics", "/cairn/metrics/node"] {
        refused(get(path, None).await);
        refused(get(path, Some("not.a.token".into())).await);
    }

    admin.policy("root", "scrape", SCRAPER_POLICY).await;
    let ep = srv.endpoint();
    for (user, policy) in [("scraper", "scrape"), ("writer", "readwrite")] {
        let secret = format!("{user}-secret-1");
        admin.ok(&["user", "add", "root", user, &secret]).await;
        admin
            .ok(&["policy", "attach", "root", policy, "--user", user])
            .await;
        admin.ok(&["alias", "set", user, &ep, user, &secret]).await;
    }
    let signed = |user: &'static str| {
        let srv = &srv;
        async move {
            let secret = format!("{user}-secret-1");
            srv.signed("GET", "/cairn/metrics", (user, &secret, None), b"")
                .await
        }
    };
    let token = |alias: &'static str| {
        let admin = &admin;
        async move { token_of(&admin.ok(&["prometheus", "generate", alias]).await) }
    };
    let (root_token, scraper_token, writer_token) = (
        token("root").await,
        token("scraper").await,
        token("writer").await,
    );

    // A user without admin:Prometheus: neither its token nor its signature.
    refused(get("/cairn/metrics", Some(writer_token)).await);
    let (status, body) = signed("writer").await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("cairn_"), "{body}");
    // A token signed with another secret than the key's.
    let forged = {
        let (h, rest) = scraper_token.split_once('.').unwrap();
        let (claims, _) = rest.split_once('.').unwrap();
        format!("{h}.{claims}.AAAA")
    };
    refused(get("/cairn/metrics", Some(forged)).await);

    // Allowed: root and the scraper, by token or SigV4, both paths.
    for t in [&root_token, &scraper_token] {
        for path in ["/cairn/metrics", "/cairn/metrics/node"] {
            let (status, body) = get(path, Some(t.clone())).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("cairn_s3_requests_total"), "{body}");
            assert!(body.contains("cairn_drive_online"), "{body}");
        }
    }
    let (status, body) = signed("scraper").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cairn_raft_term"), "{body}");

    // Taking the policy away revokes the token.
    admin
        .ok(&["policy", "detach", "root", "scrape", "--user", "scraper"])
        .await;
    refused(get("/cairn/metrics", Some(scraper_token)).await);
    drop(http);

    // Public mode: anyone may scrape.
    srv.set_env("CAIRN_PROMETHEUS_AUTH_TYPE", Some("public"));
    srv.restart().await;
    let r = srv
        .http()
        .get(format!("{}/cairn/metrics", srv.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("cairn_drive_online"));
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_a_tls_node_with_the_generated_config() {
    let work = tempfile::tempdir().unwrap();
    let ca = cairn_tests::certs::TestCa::new("cairn metrics CA");
    let certs = ca.write_node_dir(&work.path().join("certs"), "node1");
    let srv = Server::start_with(ServerOptions::new(1).certs_dir(certs.clone())).await;
    assert!(srv.endpoint().starts_with("https://"));
    let admin = AdminCli::for_server("tls", &srv).await;
    let ca_file = certs.join("CAs").join("ca.crt");
    let out = admin
        .ok(&[
            "prometheus",
            "generate",
            "tls",
            "--node",
            "--scrape-interval",
            "1s",
            "--ca-file",
            &ca_file.to_string_lossy(),
        ])
        .await;
    let config = &out[out.find("scrape_configs:").expect("a scrape config")..];
    let prom = Prometheus::start(config).await;
    prom.wait("up{job=\"cairn-job\"} == 1", |s| s.len() == 1)
        .await;
    prom.wait("sum(cairn_drive_online)", |s| s.len() == 1 && s[0].1 == 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paired_sites_show_their_peer_in_the_metrics() {
    let a = Server::start(1).await;
    let mut opts = ServerOptions::new(1);
    opts.env_credentials = Some(("siteb-root".into(), "siteb-secret-abcdefghijk".into()));
    let b = Server::start_with(opts).await;
    let cli = AdminCli::new();
    cli.alias("a", &a).await;
    cli.alias("b", &b).await;
    cli.ok(&["site", "add", "a", "b"]).await;
    // A change for a to push to b: a's node then has called its peer.
    a.client()
        .create_bucket()
        .bucket("rep")
        .send()
        .await
        .unwrap();
    let token = token_of(&cli.ok(&["prometheus", "generate", "a", "--node"]).await);
    let peer = "peer=\"b\"".to_string();
    let scrape = || async {
        a.http()
            .get(format!("{}/cairn/metrics/node", a.endpoint()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let line = |text: &str, metric: &str| {
        text.lines()
            .find(|l| l.starts_with(metric) && l.contains(&peer))
            .map(str::to_owned)
    };
    let seen = poll_until(Duration::from_secs(60), || async {
        let t = scrape().await;
        line(&t, "cairn_replication_outbox_backlog").is_some_and(|l| l.ends_with(" 0"))
            && line(&t, "cairn_replication_peer_online").is_some_and(|l| l.ends_with(" 1"))
            && t.lines().any(|l| {
                l.starts_with("cairn_replication_endpoint_online")
                    && l.contains(&format!("endpoint=\"{}\"", b.endpoint()))
                    && l.ends_with(" 1")
            })
    })
    .await;
    assert!(seen, "{}", scrape().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heal_after_a_damaged_read_is_counted() {
    let mut opts = ServerOptions::new(4);
    opts.env
        .push(("CAIRN_PROMETHEUS_AUTH_TYPE".into(), "public".into()));
    let srv = Server::start_with(opts).await;
    let c = srv.client();
    c.create_bucket().bucket("heal").send().await.unwrap();
    let body = random_bytes(300_000, 3);
    c.put_object()
        .bucket("heal")
        .key("big")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    // A read decodes from the data shards only, and which drives hold them depends on the
    // deployment's random key placement: remove the shard of a drive holding object bytes (a data
    // shard of an unencrypted object carries them as they are), so the read must notice.
    let data_drive = (0..4)
        .find(|&d| {
            let parts = find_part_files(srv.drive(d));
            assert_eq!(parts.len(), 1, "{parts:?}");
            let shard = std::fs::read(&parts[0]).unwrap();
            [&body[1000..1064], &body[200_000..200_064]]
                .iter()
                .any(|w| shard.windows(w.len()).any(|x| x == *w))
        })
        .expect("a drive with a data shard");
    let parts = find_part_files(srv.drive(data_drive));
    std::fs::remove_file(&parts[0]).unwrap();
    let got = c
        .get_object()
        .bucket("heal")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), body);
    let healed = poll_until(Duration::from_secs(60), || async {
        let t = srv
            .http()
            .get(format!("{}/cairn/metrics/node", srv.endpoint()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        t.lines()
            .any(|l| l.starts_with("cairn_heal_objects_healed_total{") && l.ends_with(" 1"))
            && t.lines()
                .any(|l| l.starts_with("cairn_heal_queue_objects{") && l.ends_with(" 0"))
    })
    .await;
    assert!(healed, "the healer's counters did not move");
    assert_eq!(
        find_part_files(srv.drive(data_drive)).len(),
        1,
        "the shard is back"
    );
}
