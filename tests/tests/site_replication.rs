//! Site replication between two sites with different root credentials, paired with
//! `cairn admin site add a b` (mc's `admin replicate add`): buckets, their configs and IAM made
//! on either site appear on the other, a user's secret works on both, objects and delete markers
//! replicate both ways under the same version ids, nothing loops back, a peer that was down
//! catches up, and only a paired site's replication identity (never root) may write replicas.

use std::time::Duration;

use cairn_tests::sites::{head_here, TwoSites};
use cairn_tests::*;

/// How long replication may take: a failed send is retried by a rescan every 30 s.
const REACT: Duration = Duration::from_secs(120);

/// What `alias`'s answering node saw of its one peer (`site status`).
async fn contact(s: &TwoSites, alias: &str) -> serde_json::Value {
    s.site_status(alias).await["peers"][0]["contact"].clone()
}

async fn backlog(s: &TwoSites, alias: &str) -> u64 {
    s.site_status(alias).await["peers"]
        .as_array()
        .map(|ps| ps.iter().map(|p| p["backlog"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(u64::MAX)
}

async fn wait<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(poll_until(REACT, f).await, "{what}: not within {REACT:?}");
}

async fn bucket_exists(c: &Client, bucket: &str) -> bool {
    c.head_bucket().bucket(bucket).send().await.is_ok()
}

async fn version_of(c: &Client, bucket: &str, key: &str) -> Option<(Vec<u8>, String, String)> {
    let r = c.get_object().bucket(bucket).key(key).send().await.ok()?;
    let id = r.version_id().unwrap_or_default().to_string();
    let etag = r.e_tag().unwrap_or_default().to_string();
    let body = r.body.collect().await.ok()?.into_bytes().to_vec();
    Some((body, id, etag))
}

/// Every version id of `key` (delete markers too), newest first.
async fn version_ids(c: &Client, bucket: &str, key: &str) -> Vec<(String, bool)> {
    let r = ok(
        c.list_object_versions()
            .bucket(bucket)
            .prefix(key)
            .send()
            .await,
        "list versions",
    );
    let mut all: Vec<(i64, String, bool)> = Vec::new();
    for v in r.versions() {
        if v.key() == Some(key) {
            let t = v.last_modified().map(|t| t.as_nanos() as i64).unwrap_or(0);
            all.push((t, v.version_id().unwrap_or_default().into(), false));
        }
    }
    for m in r.delete_markers() {
        if m.key() == Some(key) {
            let t = m.last_modified().map(|t| t.as_nanos() as i64).unwrap_or(0);
            all.push((t, m.version_id().unwrap_or_default().into(), true));
        }
    }
    all.sort_by(|x, y| y.cmp(x));
    all.into_iter().map(|(_, id, m)| (id, m)).collect()
}

/// A bucket's tags as `key=value`, in order; none when it has no tag set.
async fn tags_of(c: &Client, bucket: &str) -> Vec<String> {
    match c.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => out
            .tag_set()
            .iter()
            .map(|t| format!("{}={}", t.key(), t.value()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_iam_and_objects_replicate_both_ways() {
    let s = TwoSites::start().await;
    let (ca, cb) = (s.a.client(), s.b.client());

    // State from before the pairing reaches the new peer.
    create_bucket(&ca, "early").await;
    ok(
        ca.put_bucket_tagging()
            .bucket("early")
            .tagging(tags(&[("team", "blue")]))
            .send()
            .await,
        "tags on a",
    );
    let cors = aws_sdk_s3::types::CorsConfiguration::builder()
        .cors_rules(
            aws_sdk_s3::types::CorsRule::builder()
                .allowed_origins("https://app.example.com")
                .allowed_methods("GET")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    ok(
        ca.put_bucket_cors()
            .bucket("early")
            .cors_configuration(cors)
            .send()
            .await,
        "CORS on a",
    );
    s.admin(&["user", "add", "a", "alice", "alice-secret-0123456789"])
        .await;
    s.admin(&["policy", "attach", "a", "readonly", "--user", "alice"])
        .await;

    let out = s.admin(&["site", "add", "a", "b"]).await;
    assert!(out.contains("a, b"), "{out}");
    wait("bucket early on b", || async {
        bucket_exists(&cb, "early").await
    })
    .await;
    // Bucket tags: those from before the pairing, then changes either way.
    wait("early's tags on b", || async {
        tags_of(&cb, "early").await == ["team=blue"]
    })
    .await;
    ok(
        cb.put_bucket_tagging()
            .bucket("early")
            .tagging(tags(&[("team", "red"), ("cost", "7")]))
            .send()
            .await,
        "tags on b",
    );
    wait("b's tags on a", || async {
        tags_of(&ca, "early").await == ["team=red", "cost=7"]
    })
    .await;
    ok(
        ca.delete_bucket_tagging().bucket("early").send().await,
        "untag on a",
    );
    wait("no tags on b", || async {
        tags_of(&cb, "early").await.is_empty()
    })
    .await;
    // CORS rules: from before the pairing, then a deletion the other way.
    let origins = |c: &Client| {
        let c = c.clone();
        async move {
            match c.get_bucket_cors().bucket("early").send().await {
                Ok(out) => out
                    .cors_rules()
                    .iter()
                    .flat_map(|r| r.allowed_origins().to_vec())
                    .collect(),
                Err(_) => Vec::new(),
            }
        }
    };
    wait("early's CORS rules on b", || async {
        origins(&cb).await == ["https://app.example.com"]
    })
    .await;
    ok(
        cb.delete_bucket_cors().bucket("early").send().await,
        "CORS deleted on b",
    );
    wait("no CORS rules on a", || async {
        origins(&ca).await.is_empty()
    })
    .await;
    let v = ok(
        cb.get_bucket_versioning().bucket("early").send().await,
        "versioning on b",
    );
    assert_eq!(
        v.status().map(|s| s.as_str()),
        Some("Enabled"),
        "replicated buckets are versioned"
    );

    // Alice's secret was sealed under a's key, travelled sealed for the pair, and b sealed it
    // under its own.
    let alice_b = s.b.client_with("alice", "alice-secret-0123456789");
    put(&ca, "early", "hello", b"hello").await;
    wait("alice reads on b", || async {
        alice_b
            .get_object()
            .bucket("early")
            .key("hello")
            .send()
            .await
            .is_ok()
    })
    .await;
    let denied = alice_b
        .put_object()
        .bucket("early")
        .key("x")
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_s3_err(
        denied,
        403,
        Some("AccessDenied"),
        "alice's readonly policy holds on b",
    );
    let wrong = s.b.client_with("alice", "not-alices-secret-0123456");
    assert!(
        wrong
            .list_objects_v2()
            .bucket("early")
            .send()
            .await
            .is_err(),
        "a wrong secret is refused on b"
    );

    // Objects both ways, under the same version ids and ETags.
    let small = random_bytes(1000, 1);
    let large = random_bytes(3 * MIB + 5, 2);
    put(&ca, "early", "small", &small).await;
    put(&ca, "early", "large", &large).await;
    create_bucket(&cb, "late").await;
    let from_b = random_bytes(300 * KIB, 3);
    put(&cb, "late", "from-b", &from_b).await;
    wait("bucket late on a", || async {
        bucket_exists(&ca, "late").await
    })
    .await;
    for (src, dst, bucket, key, data) in [
        (&ca, &cb, "early", "small", &small),
        (&ca, &cb, "early", "large", &large),
        (&cb, &ca, "late", "from-b", &from_b),
    ] {
        let origin = version_of(src, bucket, key).await.expect("source version");
        wait(&format!("{bucket}/{key} replicated"), || async {
            version_of(dst, bucket, key).await.is_some()
        })
        .await;
        let (body, id, etag) = version_of(dst, bucket, key).await.expect("replica");
        assert_bytes_eq(&body, data, &format!("{bucket}/{key} on the peer"));
        assert_eq!(id, origin.1, "{bucket}/{key}: same version id");
        assert_eq!(etag, origin.2, "{bucket}/{key}: same ETag");
    }

    // User metadata that is no plain header value (non-ASCII, and a line break a client sent
    // RFC 2047-encoded) reaches the peer as it was stored: it is not stuck PENDING for good.
    let b64 = |v: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v);
    ok(
        ca.put_object()
            .bucket("early")
            .key("meta")
            .metadata("city", "Zürich 東京")
            .metadata("note", format!("=?UTF-8?B?{}?=", b64("line one\nline two")))
            .body(b"m".to_vec().into())
            .send()
            .await,
        "put with metadata on a",
    );
    let sent = head_here(&ca, "early", "meta", None).await.expect("on a");
    wait("early/meta replicated", || async {
        head_here(&cb, "early", "meta", None).await.is_some()
    })
    .await;
    let got = head_here(&cb, "early", "meta", None).await.expect("on b");
    assert_eq!(got.metadata(), sent.metadata(), "metadata on the peer");
    assert_eq!(
        sent.metadata().and_then(|m| m.get("note")).cloned(),
        Some(format!("=?UTF-8?B?{}?=", b64("line one\nline two"))),
        "the line break is kept (and sent back encoded)"
    );

    // A multipart object keeps its multipart ETag.
    let parts = [random_bytes(5 * MIB, 4), random_bytes(1234, 5)];
    let mp = ok(
        ca.create_multipart_upload()
            .bucket("early")
            .key("mp")
            .send()
            .await,
        "create upload",
    );
    let upload = mp.upload_id().unwrap_or_default().to_string();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = ok(
            ca.upload_part()
                .bucket("early")
                .key("mp")
                .upload_id(&upload)
                .part_number(n)
                .body(p.clone().into())
                .send()
                .await,
            "upload part",
        );
        done.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap_or_default())
                .build(),
        );
    }
    complete_multipart(&ca, "early", "mp", &upload, done).await;
    wait("mp replicated", || async {
        version_of(&cb, "early", "mp").await.is_some()
    })
    .await;
    let (body, _, etag) = version_of(&cb, "early", "mp").await.expect("mp on b");
    assert_bytes_eq(&body, &parts.concat(), "multipart object on b");
    assert_eq!(etag, multipart_etag(parts.iter().map(|p| p.as_slice())));

    // A delete marker replicates; the versions under it stay on both sites.
    let d = ok(
        ca.delete_object().bucket("early").key("small").send().await,
        "delete",
    );
    let marker = d.version_id().unwrap_or_default().to_string();
    wait("marker on b", || async {
        version_of(&cb, "early", "small").await.is_none()
    })
    .await;
    wait("both sites agree on small's versions", || async {
        version_ids(&ca, "early", "small").await == version_ids(&cb, "early", "small").await
    })
    .await;
    let versions = version_ids(&cb, "early", "small").await;
    assert_eq!(
        versions.len(),
        2,
        "{versions:?}: one object, one marker, no echo"
    );
    assert_eq!(versions[0], (marker, true));

    // IAM changes after the pairing: a user removed on b is gone on a.
    s.admin(&["user", "add", "b", "bob", "bob-secret-0123456789"])
        .await;
    let bob_a = s.a.client_with("bob", "bob-secret-0123456789");
    s.admin(&["policy", "attach", "b", "readwrite", "--user", "bob"])
        .await;
    wait("bob on a", || async {
        bob_a.list_objects_v2().bucket("late").send().await.is_ok()
    })
    .await;
    s.admin(&["user", "remove", "b", "bob"]).await;
    wait("bob gone from a", || async {
        bob_a.list_objects_v2().bucket("late").send().await.is_err()
    })
    .await;

    wait("outboxes drained", || async {
        backlog(&s, "a").await == 0 && backlog(&s, "b").await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_was_down_catches_up() {
    let mut s = TwoSites::start().await;
    s.admin(&["site", "add", "a", "b"]).await;
    s.b.terminate().await;
    let ca = s.a.client();
    create_bucket(&ca, "while-down").await;
    let data = random_bytes(200 * KIB, 9);
    put(&ca, "while-down", "obj", &data).await;
    s.admin(&["user", "add", "a", "carol", "carol-secret-0123456789"])
        .await;
    assert!(backlog(&s, "a").await > 0, "b cannot have taken anything");
    // The status says b is down, why, and what did not reach it.
    wait("b shown offline with the failed object", || async {
        let c = contact(&s, "a").await;
        c["online"] == false
            && c["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("unreachable"))
            && c["failed"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|i| i[1].as_str().unwrap_or("").contains("while-down/obj"))
            })
    })
    .await;
    s.b.restart_on_same_port().await;
    let cb = s.b.client();
    wait("object on b after its return", || async {
        version_of(&cb, "while-down", "obj").await.is_some()
    })
    .await;
    let (body, _, _) = version_of(&cb, "while-down", "obj").await.expect("object");
    assert_bytes_eq(&body, &data, "caught-up object");
    wait("b shown online with the version and its lag", || async {
        let c = contact(&s, "a").await;
        c["online"] == true
            && c["versions_replicated"].as_u64() >= Some(1)
            && c["bytes_replicated"].as_u64() >= Some(200 * KIB as u64)
            && c["lag_p99_ms"].as_u64().is_some()
    })
    .await;
    let carol = s.b.client_with("carol", "carol-secret-0123456789");
    // Carol has no policy: b knowing her shows as AccessDenied instead of InvalidAccessKeyId.
    wait("carol on b", || async {
        match carol.list_buckets().send().await {
            Ok(_) => true,
            Err(e) => err_code(&e).as_deref() == Some("AccessDenied"),
        }
    })
    .await;
}

/// Replica headers fix a version's id and time: only a paired peer's replication identity may
/// send them; neither a user nor root may, least of all on a site without peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_peers_replication_identity_may_write_replicas() {
    let s = TwoSites::start().await;
    let ca = s.a.client();
    create_bucket(&ca, "guarded").await;
    enable_versioning(&ca, "guarded").await;
    s.admin(&["user", "add", "a", "mallory", "mallory-secret-0123456789"])
        .await;
    s.admin(&["policy", "attach", "a", "readwrite", "--user", "mallory"])
        .await;
    let id = "0b8e3a6c-4a0b-4f8e-9b1e-3d2f6a7c8e90";
    let send = async |ak: &str, sk: &str| {
        let url = format!("{}/guarded/forged", s.a.endpoint());
        let headers = [
            ("x-cairn-replica-version-id", id),
            ("x-cairn-replica-mtime", "1000"),
        ];
        let signed = sigv4::Signer::new(ak, sk).sign("PUT", &url, &headers, "UNSIGNED-PAYLOAD");
        let mut req = s.a.http().put(&url).body("forged");
        for (k, v) in &signed.headers {
            if k != "host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        let r = req.send().await.expect("send");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    let (status, body) = send("mallory", "mallory-secret-0123456789").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(xml_error_code(&body).as_deref(), Some("AccessDenied"));
    assert!(
        version_of(&ca, "guarded", "forged").await.is_none(),
        "a refused replica stores nothing"
    );
    let (status, body) = send(ROOT_USER, ROOT_PASSWORD).await;
    assert_eq!(
        status, 403,
        "root is no peer's replication identity: {body}"
    );
    assert_eq!(xml_error_code(&body).as_deref(), Some("AccessDenied"));
    assert!(
        version_of(&ca, "guarded", "forged").await.is_none(),
        "root's replica stores nothing"
    );
    let (status, body) = {
        let url = format!("{}/guarded/bad", s.a.endpoint());
        let headers = [("x-cairn-replica-version-id", "not-a-version")];
        let signed = sigv4::Signer::new(ROOT_USER, ROOT_PASSWORD).sign(
            "PUT",
            &url,
            &headers,
            "UNSIGNED-PAYLOAD",
        );
        let mut req = s.a.http().put(&url).body("x");
        for (k, v) in &signed.headers {
            if k != "host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        let r = req.send().await.expect("send");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    assert_eq!(status, 403, "{body}");
}

/// Replication lag at a steady write rate on this machine (not a check: run with `--ignored
/// --nocapture`). `LAG_RATE` PUTs a second (default 200) of `LAG_KIB` KiB (default 64) for
/// `LAG_SECS` seconds (default 30) on site a, from 16 writers paced together; prints a's `site
/// status` lag p50/p99 (from each version's write to b's acknowledgement, over the last 1,024).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn measure_replication_lag() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rate, kib, secs) = (
        var("LAG_RATE", 200),
        var("LAG_KIB", 64),
        var("LAG_SECS", 30),
    );
    let s = TwoSites::start().await;
    s.admin(&["site", "add", "a", "b"]).await;
    let ca = s.a.client();
    create_bucket(&ca, "lag").await;
    let cb = s.b.client();
    wait("bucket on b", || bucket_exists(&cb, "lag")).await;
    let data = bytes::Bytes::from(random_bytes(kib as usize * KIB, 1));
    let total = rate * secs;
    let started = std::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let late = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..total {
        tick.tick().await;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            late.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let (c, d) = (ca.clone(), data.clone());
        tasks.spawn(async move {
            let r = c
                .put_object()
                .bucket("lag")
                .key(format!("k{i:07}"))
                .body(aws_sdk_s3::primitives::ByteStream::from(d))
                .send()
                .await;
            drop(permit);
            r.is_ok()
        });
    }
    let mut ok_puts = 0;
    while let Some(r) = tasks.join_next().await {
        ok_puts += usize::from(r.unwrap_or(false));
    }
    let took = started.elapsed();
    wait("every version on b", || async {
        contact(&s, "a").await["versions_replicated"].as_u64() >= Some(ok_puts as u64)
    })
    .await;
    let c = contact(&s, "a").await;
    println!(
        "replication lag at {rate} PUT/s of {kib} KiB for {secs} s: {ok_puts} PUTs ok in {took:.1?} ({:.0}/s), {} skipped (64 in flight), lag p50 {} ms, p99 {} ms, {} versions replicated",
        ok_puts as f64 / took.as_secs_f64(),
        late.load(std::sync::atomic::Ordering::Relaxed),
        c["lag_p50_ms"],
        c["lag_p99_ms"],
        c["versions_replicated"]
    );
}
