//! Reads of versions not yet replicated (issue 18, item 5), and the replicator's backoff while a
//! peer is down (item 7). Each site reaches the other through a [`Gate`] (`--site-url`), so a
//! test decides, rather than races, whether a replica lands: with site a's way to b cut, what is
//! written on a stays PENDING there, and b answers reads of it by asking a (its own way to a
//! open). The gates also show every request line sent across, so the tests see which reads were
//! proxied, and how often a site down was called.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use cairn_tests::sites::{Gate, GateMode, TwoSites};
use cairn_tests::*;

/// How long replication may take once the way is open (a version waits at most the backoff's
/// cap, 30 s, and the rescan runs every 30 s).
const REACT: Duration = Duration::from_secs(120);
/// A proxied read gives up on its peers after 5 s (`replication::proxy::DEADLINE`).
const PROXY_DEADLINE: Duration = Duration::from_secs(5);
const PROXIED_HEADER: &str = "x-cairn-proxied-by";

async fn wait<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(poll_until(REACT, f).await, "{what}: not within {REACT:?}");
}

/// Two paired sites, each reaching the other through a gate (open), with bucket `bucket` made
/// on b and known to a.
struct Pair {
    s: TwoSites,
    /// Site a's way to b.
    to_b: Gate,
    /// Site b's way to a.
    to_a: Gate,
}

impl Pair {
    async fn start(bucket: &str) -> Pair {
        Pair::start_with(bucket, &[]).await
    }

    /// Like [`Pair::start`], `site add` given `extra` arguments too.
    async fn start_with(bucket: &str, extra: &[&str]) -> Pair {
        let s = TwoSites::start().await;
        let to_b = Gate::start(s.b.port()).await;
        let to_a = Gate::start(s.a.port()).await;
        let (url_b, url_a) = (format!("b={}", to_b.url()), format!("a={}", to_a.url()));
        let mut args = vec![
            "site",
            "add",
            "a",
            "b",
            "--site-url",
            &url_b,
            "--site-url",
            &url_a,
        ];
        args.extend_from_slice(extra);
        s.admin(&args).await;
        create_bucket(&s.b.client(), bucket).await;
        let ca = s.a.client();
        wait("bucket on a", || async {
            ca.head_bucket().bucket(bucket).send().await.is_ok()
        })
        .await;
        Pair { s, to_b, to_a }
    }
}

/// The versions b itself holds of `bucket` (a listing is never proxied).
async fn held(c: &Client, bucket: &str) -> Vec<(String, String)> {
    let r = ok(
        c.list_object_versions().bucket(bucket).send().await,
        "list versions",
    );
    r.versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap_or_default().to_string(),
                v.version_id().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn body(r: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    r.body.collect().await.expect("body").into_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_versions_not_yet_replicated_are_answered_by_the_peer() {
    let p = Pair::start("pxy").await;
    let (ca, cb) = (p.s.a.client(), p.s.b.client());
    p.to_b.set(GateMode::Cut);

    let v1 = random_bytes(100 * KIB, 1);
    let v2 = random_bytes(300 * KIB, 2);
    put(&ca, "pxy", "k", &v1).await;
    let v1_id = ok(
        ca.head_object().bucket("pxy").key("k").send().await,
        "head v1",
    )
    .version_id()
    .unwrap_or_default()
    .to_string();
    let etag2 = put(&ca, "pxy", "k", &v2).await;
    let v2_id = ok(
        ca.head_object().bucket("pxy").key("k").send().await,
        "head v2",
    )
    .version_id()
    .unwrap_or_default()
    .to_string();
    // A multipart object of two parts.
    let (part1, part2) = (random_bytes(5 * MIB, 3), random_bytes(MIB, 4));
    let up = ok(
        ca.create_multipart_upload()
            .bucket("pxy")
            .key("mp")
            .send()
            .await,
        "create upload",
    );
    let upload_id = up.upload_id().unwrap_or_default().to_string();
    let mut parts = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let r = ok(
            ca.upload_part()
                .bucket("pxy")
                .key("mp")
                .upload_id(&upload_id)
                .part_number(n)
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            "upload part",
        );
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap_or_default())
                .build(),
        );
    }
    complete_multipart(&ca, "pxy", "mp", &upload_id, parts).await;
    assert!(held(&cb, "pxy").await.is_empty(), "nothing replicated to b");

    // The latest version, by id, a range, a part: each as a holds it.
    let r = ok(
        cb.get_object().bucket("pxy").key("k").send().await,
        "GET on b",
    );
    assert_eq!(r.version_id(), Some(v2_id.as_str()));
    assert_eq!(r.e_tag(), Some(etag2.as_str()));
    assert_eq!(r.content_length(), Some(v2.len() as i64));
    assert_bytes_eq(&body(r).await, &v2, "latest, proxied");
    let r = ok(
        cb.get_object()
            .bucket("pxy")
            .key("k")
            .version_id(&v1_id)
            .send()
            .await,
        "GET v1 on b",
    );
    assert_eq!(r.version_id(), Some(v1_id.as_str()));
    assert_bytes_eq(&body(r).await, &v1, "v1 by id, proxied");
    let (range, bytes) = get_range(&cb, "pxy", "k", "bytes=1000-1999").await;
    assert_eq!(
        range.as_deref(),
        Some(&*format!("bytes 1000-1999/{}", v2.len()))
    );
    assert_bytes_eq(&bytes, &v2[1000..2000], "range, proxied");
    let r = ok(
        cb.get_object()
            .bucket("pxy")
            .key("mp")
            .part_number(2)
            .send()
            .await,
        "GET part 2 on b",
    );
    assert_eq!(r.parts_count(), Some(2));
    assert_bytes_eq(&body(r).await, &part2, "part 2, proxied");

    // HEAD, latest and by id.
    let h = ok(
        cb.head_object().bucket("pxy").key("k").send().await,
        "HEAD on b",
    );
    assert_eq!(
        (h.content_length(), h.e_tag(), h.version_id()),
        (
            Some(v2.len() as i64),
            Some(etag2.as_str()),
            Some(v2_id.as_str())
        )
    );
    let h = ok(
        cb.head_object()
            .bucket("pxy")
            .key("k")
            .version_id(&v1_id)
            .send()
            .await,
        "HEAD v1 on b",
    );
    assert_eq!(h.content_length(), Some(v1.len() as i64));

    // Conditions and bad ranges answer as a would.
    assert_s3_err(
        cb.get_object()
            .bucket("pxy")
            .key("k")
            .if_none_match(&etag2)
            .send()
            .await,
        304,
        None,
        "not modified",
    );
    assert_s3_err(
        cb.get_object()
            .bucket("pxy")
            .key("k")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .send()
            .await,
        412,
        Some("PreconditionFailed"),
        "precondition",
    );
    assert_s3_err(
        cb.get_object()
            .bucket("pxy")
            .key("k")
            .range("bytes=999999999-")
            .send()
            .await,
        416,
        Some("InvalidRange"),
        "range",
    );
    assert_s3_err(
        cb.head_object()
            .bucket("pxy")
            .key("k")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .send()
            .await,
        412,
        None,
        "HEAD precondition",
    );

    // A key neither site holds: NoSuchKey, a asked once, and a asked nobody back.
    let asked = p.to_a.count("GET /pxy/missing");
    assert_s3_err(
        cb.get_object().bucket("pxy").key("missing").send().await,
        404,
        Some("NoSuchKey"),
        "missing",
    );
    assert_s3_err(
        cb.head_object().bucket("pxy").key("missing").send().await,
        404,
        None,
        "missing HEAD",
    );
    assert_eq!(
        p.to_a.count("GET /pxy/missing"),
        asked + 1,
        "{:?}",
        p.to_a.seen()
    );
    assert_eq!(
        p.to_b.count("GET /pxy/missing"),
        0,
        "no loop: {:?}",
        p.to_b.seen()
    );
    assert_eq!(
        p.to_b.count("HEAD /pxy/missing"),
        0,
        "no loop: {:?}",
        p.to_b.seen()
    );
    // A version id neither holds: the same answer as a gives itself.
    let e_b = cb
        .get_object()
        .bucket("pxy")
        .key("k")
        .version_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect_err("missing version on b");
    let e_a = ca
        .get_object()
        .bucket("pxy")
        .key("k")
        .version_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect_err("missing version on a");
    assert_eq!(err_code(&e_b), err_code(&e_a));
    assert!(
        held(&cb, "pxy").await.is_empty(),
        "still nothing replicated to b"
    );

    // Once the way opens, the versions land on b (and are then read there).
    p.to_b.set(GateMode::Open);
    wait("every version on b", || async {
        let h = held(&cb, "pxy").await;
        h.contains(&("k".into(), v1_id.clone()))
            && h.contains(&("k".into(), v2_id.clone()))
            && h.iter().any(|(k, _)| k == "mp")
    })
    .await;
    let before = p.to_a.count("GET /pxy/k");
    assert_bytes_eq(&get(&cb, "pxy", "k").await, &v2, "latest, local now");
    assert_eq!(
        p.to_a.count("GET /pxy/k"),
        before,
        "a version held is not proxied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_this_site_allows_is_proxied_and_never_further() {
    let p = Pair::start("sec").await;
    let (ca, cb) = (p.s.a.client(), p.s.b.client());
    // Users and policies made on b reach a (b's way to a is open).
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::sec/*"]},
        {"Effect":"Deny","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::sec/*"],
         "Condition":{"StringEquals":{"s3:ExistingObjectTag/secret":"yes"}}}]}"#;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("p.json");
    std::fs::write(&file, policy).expect("policy file");
    p.s.admin(&["user", "add", "b", "nobody", "nobody-secret-0123456789"])
        .await;
    p.s.admin(&["user", "add", "b", "tagged", "tagged-secret-0123456789"])
        .await;
    p.s.admin(&["user", "add", "b", "reader", "reader-secret-0123456789"])
        .await;
    p.s.admin(&[
        "policy",
        "create",
        "b",
        "no-secrets",
        &file.to_string_lossy(),
    ])
    .await;
    p.s.admin(&["policy", "attach", "b", "no-secrets", "--user", "tagged"])
        .await;
    p.s.admin(&["policy", "attach", "b", "readonly", "--user", "reader"])
        .await;
    p.to_b.set(GateMode::Cut);
    let data = random_bytes(64 * KIB, 5);
    put(&ca, "sec", "k", &data).await;
    ok(
        ca.put_object()
            .bucket("sec")
            .key("hidden")
            .tagging("secret=yes")
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        "tagged PUT",
    );

    // Denied here: the local 403, and a is not asked.
    let asked = p.to_a.count("GET /sec/");
    let nobody = p.s.b.client_with("nobody", "nobody-secret-0123456789");
    assert_s3_err(
        nobody.get_object().bucket("sec").key("k").send().await,
        403,
        Some("AccessDenied"),
        "denied",
    );
    assert_eq!(p.to_a.count("GET /sec/"), asked, "{:?}", p.to_a.seen());

    // A decision that tested the object's tags is not proxied: this site never saw the tags
    // a holds, so the Deny on `secret=yes` would not have matched here.
    let tagged = p.s.b.client_with("tagged", "tagged-secret-0123456789");
    assert_s3_err(
        tagged.get_object().bucket("sec").key("hidden").send().await,
        404,
        Some("NoSuchKey"),
        "a tag-denied object must not come through b",
    );
    assert_eq!(p.to_a.count("GET /sec/"), asked, "{:?}", p.to_a.seen());

    // A client sending the proxy mark itself only turns proxying off.
    let (code, text) =
        p.s.b
            .signed_with(
                "GET",
                "/sec/k",
                ("reader", "reader-secret-0123456789"),
                &[(PROXIED_HEADER, "a")],
                b"",
            )
            .await;
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("NoSuchKey"), "{text}");
    assert_eq!(p.to_a.count("GET /sec/"), asked, "{:?}", p.to_a.seen());
    // And root sending it gets no more either.
    let (code, _) =
        p.s.b
            .signed_with(
                "GET",
                "/sec/k",
                (p.s.b.access_key(), p.s.b.secret_key()),
                &[(PROXIED_HEADER, "a")],
                b"",
            )
            .await;
    assert_eq!(code, 404);

    // Allowed here: proxied, once.
    let reader = p.s.b.client_with("reader", "reader-secret-0123456789");
    let r = ok(
        reader.get_object().bucket("sec").key("k").send().await,
        "reader GET",
    );
    assert_bytes_eq(&body(r).await, &data, "proxied for an allowed caller");
    assert_eq!(p.to_a.count("GET /sec/k"), 1, "{:?}", p.to_a.seen());
    assert_eq!(p.to_b.count("GET /sec/"), 0, "{:?}", p.to_b.seen());

    // An SSE-C read is not proxied: the customer's key never leaves this site.
    let (code, text) =
        p.s.b
            .signed_with(
                "GET",
                "/sec/k",
                ("reader", "reader-secret-0123456789"),
                &[
                    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
                    (
                        "x-amz-server-side-encryption-customer-key",
                        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                    ),
                    (
                        "x-amz-server-side-encryption-customer-key-md5",
                        "zZ5FnqcIqUjVwvWmyog4zw==",
                    ),
                ],
                b"",
            )
            .await;
    assert_ne!(code, 200, "{text}");
    assert_eq!(p.to_a.count("GET /sec/k"), 1, "{:?}", p.to_a.seen());
    let _ = cb;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_dead_peer_leaves_the_local_404_in_bounded_time() {
    let p = Pair::start("slow").await;
    let (ca, cb) = (p.s.a.client(), p.s.b.client_no_retry());
    p.to_b.set(GateMode::Cut);
    put(&ca, "slow", "k", &random_bytes(10 * KIB, 6)).await;
    for mode in [GateMode::Stall, GateMode::Cut] {
        p.to_a.set(mode);
        let started = Instant::now();
        let e = cb
            .get_object()
            .bucket("slow")
            .key("k")
            .send()
            .await
            .expect_err("not here, peer not answering");
        assert_eq!(
            err_code(&e).as_deref(),
            Some("NoSuchKey"),
            "{mode:?}: {e:?}"
        );
        let e = cb
            .head_object()
            .bucket("slow")
            .key("k")
            .send()
            .await
            .expect_err("not here, peer not answering");
        assert_eq!(err_status(&e), Some(404), "{mode:?}: {e:?}");
        let took = started.elapsed();
        assert!(
            took < 2 * PROXY_DEADLINE + Duration::from_secs(4),
            "{mode:?}: GET and HEAD took {took:?}"
        );
    }
    assert!(p.to_a.count("GET /slow/k") >= 2, "{:?}", p.to_a.seen());
    p.to_a.set(GateMode::Open);
    assert_eq!(
        get(&cb, "slow", "k").await.len(),
        10 * KIB,
        "and proxied once a answers"
    );
}

/// A peer down for a while is called less and less often (not once per version, not in a tight
/// loop), `site status` shows the failures and the next try, and once it is back it gets every
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_for_a_while_gets_everything_without_a_tight_retry_loop() {
    const OBJECTS: usize = 30;
    let p = Pair::start("down").await;
    let (ca, cb) = (p.s.a.client(), p.s.b.client());
    p.to_b.set(GateMode::Cut);
    for i in 0..OBJECTS {
        put(
            &ca,
            "down",
            &format!("o{i}"),
            &random_bytes(8 * KIB, i as u64),
        )
        .await;
    }
    // Down long enough for a few backoff rounds (0.5 + 1 + 2 + 4 s).
    let status = || async { p.s.site_status("a").await["peers"][0]["contact"].clone() };
    wait("a few failures in a row shown", || async {
        status().await["failing_in_a_row"].as_u64().unwrap_or(0) >= 4
    })
    .await;
    let contact = status().await;
    let failing = contact["failing_in_a_row"].as_u64().unwrap_or(0) as usize;
    assert!(contact["next_retry_ns"].as_i64().is_some(), "{contact}");
    assert!(
        contact["failed"].as_array().is_some_and(|f| !f.is_empty()),
        "{contact}"
    );
    let attempts = p.to_b.count("PUT /down/");
    eprintln!("{attempts} PUT attempts for {OBJECTS} versions over {failing} failures in a row");
    // The first failure may meet up to 4 sends in flight (PARALLEL); after it, one call per round.
    assert!(
        attempts <= failing + 4 && attempts < OBJECTS,
        "{attempts} attempts, {failing} failures in a row: {:?}",
        p.to_b.seen()
    );
    assert_eq!(held(&cb, "down").await.len(), 0);

    p.to_b.set(GateMode::Open);
    wait("every version on b", || async {
        held(&cb, "down").await.len() == OBJECTS
    })
    .await;
    wait("a shows b healthy again", || async {
        let c = status().await;
        c["failing_in_a_row"] == 0 && c["next_retry_ns"].is_null()
    })
    .await;
    let delivered = p
        .to_b
        .seen()
        .iter()
        .filter(|(m, l)| *m == GateMode::Open && l.starts_with("PUT /down/"))
        .count();
    assert!(delivered >= OBJECTS, "{delivered}");
}

/// A version the asking site already took, and has removed since, is not handed back to it: the
/// site asked answers a proxied read only with a version still PENDING there. The pair keeps the
/// versions its peer removes, so a's copy stays for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_removed_here_is_not_read_back_from_the_peer() {
    let p = Pair::start_with("gone", &["--no-replicate-version-deletes"]).await;
    let (ca, cb) = (p.s.a.client(), p.s.b.client());
    let data = random_bytes(64 * KIB, 9);
    put(&ca, "gone", "k", &data).await;
    let id = ok(
        ca.head_object().bucket("gone").key("k").send().await,
        "head",
    )
    .version_id()
    .unwrap_or_default()
    .to_string();
    wait("the version on b", || async {
        held(&cb, "gone").await == [("k".to_string(), id.clone())]
    })
    .await;
    ok(
        cb.delete_object()
            .bucket("gone")
            .key("k")
            .version_id(&id)
            .send()
            .await,
        "DELETE by version id on b",
    );
    assert!(held(&cb, "gone").await.is_empty());
    // Once a has marked the version sent (right after b took it), b's reads of it end in 404,
    // and stay there; a keeps its copy.
    let gone = || async {
        let r = cb
            .get_object()
            .bucket("gone")
            .key("k")
            .version_id(&id)
            .send()
            .await;
        r.err().and_then(|e| err_code(&e)).as_deref() == Some("NoSuchVersion")
    };
    wait("b's reads of the version it removed answer 404", gone).await;
    for _ in 0..3 {
        assert!(gone().await, "b served a version it removed");
    }
    assert_s3_err(
        cb.get_object().bucket("gone").key("k").send().await,
        404,
        Some("NoSuchKey"),
        "GET of the latest on b",
    );
    assert_s3_err(
        cb.head_object()
            .bucket("gone")
            .key("k")
            .version_id(&id)
            .send()
            .await,
        404,
        None,
        "HEAD by id on b",
    );
    assert_eq!(get(&ca, "gone", "k").await, data, "a still holds it");
}
