//! Pairing sites that both hold data, and resyncs (`cairn admin site resync`): two single-node
//! sites with different root credentials. Both sites are compared by listing every version on
//! each directly.
//!
//! - Sites that both hold buckets and versions merge on `site add`: afterwards both list the same
//!   buckets and the same versions (delete markers included) under the same ids, tags too.
//! - A bucket that exists on both with configs that cannot merge stops `site add`, which names it,
//!   and changes nothing.
//! - Each version keeps its own lock (retention, legal hold) on the peer, whatever the peer
//!   bucket's default retention.
//! - A site that lost its drives gets everything back from `site resync start`, whose status
//!   reaches done = total; a resync goes on from where it was after its node restarts, and
//!   `cancel` stops it.
//! - Only root runs the site ops: an ordinary user and a peer's replication identity are refused;
//!   a removed peer's identity can neither apply entries nor write replicas any more.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_tests::sites::TwoSites;
use cairn_tests::*;

const REACT: Duration = Duration::from_secs(120);
/// `site resync status ALIAS PEER --json`.
async fn resync(s: &TwoSites, alias: &str, peer: &str) -> serde_json::Value {
    let out = s
        .admin(&["site", "resync", "status", alias, peer, "--json"])
        .await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("resync status {out}: {e}"))
}

async fn wait<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(poll_until(REACT, f).await, "{what}: not within {REACT:?}");
}

/// Prints the versions and bytes resync status `r` reports, per second since `started` and at
/// the server's own rate (since counting ended).
fn throughput(what: &str, started: Instant, r: &serde_json::Value) {
    let secs = started.elapsed().as_secs_f64();
    let versions = r["done"]["objects"].as_u64().unwrap_or(0) as f64;
    let mib = r["done"]["bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
    eprintln!(
        "{what}: {versions} versions, {mib:.1} MiB in {secs:.1} s: {:.0} versions/s, {:.1} MiB/s; server's rate: {:.0} versions/s, {:.1} MiB/s",
        versions / secs,
        mib / secs,
        r["objects_per_second"].as_f64().unwrap_or(0.0),
        r["bytes_per_second"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
    );
}

fn done_of(r: &serde_json::Value) -> (u64, Option<u64>) {
    (
        r["done"]["objects"].as_u64().unwrap_or(0),
        r["total"]["objects"].as_u64(),
    )
}

async fn bucket_names(c: &Client) -> BTreeSet<String> {
    let r = ok(c.list_buckets().send().await, "list buckets");
    r.buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect()
}

/// Every version of `bucket`: (key, version id, delete marker).
async fn versions(c: &Client, bucket: &str) -> BTreeSet<(String, String, bool)> {
    let mut out = BTreeSet::new();
    let (mut key, mut version) = (None::<String>, None::<String>);
    loop {
        let r = ok(
            c.list_object_versions()
                .bucket(bucket)
                .set_key_marker(key.clone())
                .set_version_id_marker(version.clone())
                .send()
                .await,
            "list versions",
        );
        for v in r.versions() {
            out.insert((
                v.key().unwrap_or_default().into(),
                v.version_id().unwrap_or_default().into(),
                false,
            ));
        }
        for m in r.delete_markers() {
            out.insert((
                m.key().unwrap_or_default().into(),
                m.version_id().unwrap_or_default().into(),
                true,
            ));
        }
        if !r.is_truncated().unwrap_or(false) {
            return out;
        }
        key = r.next_key_marker().map(str::to_string);
        version = r.next_version_id_marker().map(str::to_string);
    }
}

/// Every bucket of each site with its versions.
async fn everything(c: &Client) -> Vec<(String, BTreeSet<(String, String, bool)>)> {
    let mut out = Vec::new();
    for b in bucket_names(c).await {
        let v = versions(c, &b).await;
        out.push((b, v));
    }
    out
}

async fn put_tagged(c: &Client, bucket: &str, key: &str, data: &[u8], tags: &str) -> String {
    let r = ok(
        c.put_object()
            .bucket(bucket)
            .key(key)
            .tagging(tags)
            .body(data.to_vec().into())
            .send()
            .await,
        "put tagged",
    );
    r.version_id().unwrap_or_default().to_string()
}

async fn tags_of(
    c: &Client,
    bucket: &str,
    key: &str,
    version: &str,
) -> Option<Vec<(String, String)>> {
    let r = c
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .ok()?;
    Some(
        r.tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
    )
}

/// One site's data: a versioned bucket both sites hold, with versions, a delete marker and tags;
/// an unversioned bucket both hold with the same key; and a bucket of its own.
async fn fill(c: &Client, site: &str, seed: u64) -> String {
    create_bucket(c, "shared").await;
    enable_versioning(c, "shared").await;
    for i in 0..3 {
        put(c, "shared", "doc", &random_bytes(1000 + i, seed + i as u64)).await;
    }
    put(c, "shared", &format!("from-{site}"), b"x").await;
    put(c, "shared", "gone", b"soon deleted").await;
    ok(
        c.delete_object().bucket("shared").key("gone").send().await,
        "delete",
    );
    let tagged = put_tagged(c, "shared", "tagged", b"t", &format!("site={site}&n=1")).await;
    create_bucket(c, "plain").await;
    put(c, "plain", "same-key", site.as_bytes()).await;
    let own = format!("only-{site}");
    create_bucket(c, &own).await;
    put(c, &own, "obj", &random_bytes(300 * KIB, seed + 10)).await;
    tagged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_that_both_hold_data_merge_on_pairing() {
    let s = TwoSites::start().await;
    let (ca, cb) = (s.a.client(), s.b.client());
    let tagged_a = fill(&ca, "a", 1).await;
    let tagged_b = fill(&cb, "b", 100).await;
    let before_a = everything(&ca).await;

    let out = s.admin(&["site", "add", "a", "b"]).await;
    assert!(out.contains("a, b"), "{out}");

    let same = poll_until(REACT, || async {
        let (x, y) = (everything(&ca).await, everything(&cb).await);
        x == y && x.len() == 4
    })
    .await;
    if !same {
        let (x, y) = (everything(&ca).await, everything(&cb).await);
        panic!(
            "the sites differ after {REACT:?}:\na: {x:?}\nb: {y:?}\nresyncs: {} {}",
            resync(&s, "a", "b").await,
            resync(&s, "b", "a").await
        );
    }
    let all = everything(&ca).await;
    let names: Vec<&str> = all.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(names, ["only-a", "only-b", "plain", "shared"]);
    // Nothing a held was lost in the merge: every version it had is still there.
    for (bucket, vs) in &before_a {
        let now = &all.iter().find(|(b, _)| b == bucket).expect("bucket").1;
        assert!(vs.is_subset(now), "{bucket}: {vs:?} not in {now:?}");
    }
    let shared = &all.iter().find(|(b, _)| b == "shared").expect("shared").1;
    let doc = shared.iter().filter(|(k, _, _)| k == "doc").count();
    assert_eq!(doc, 6, "three versions of doc from each site: {shared:?}");
    let markers = shared.iter().filter(|(k, _, m)| k == "gone" && *m).count();
    assert_eq!(markers, 2, "each site's delete marker: {shared:?}");
    // Tags travel with their versions.
    for (c, other, id, site) in [(&cb, "b", &tagged_a, "a"), (&ca, "a", &tagged_b, "b")] {
        let t = tags_of(c, "shared", "tagged", id).await;
        let want = vec![
            ("n".to_string(), "1".to_string()),
            ("site".into(), site.into()),
        ];
        let mut got = t.unwrap_or_else(|| panic!("{site}'s tagged version on {other}"));
        got.sort();
        assert_eq!(got, want, "tags of {site}'s version on {other}");
    }
    // The unversioned bucket both held: the newer null version won on both sites alike.
    let (pa, pb) = (
        get(&ca, "plain", "same-key").await,
        get(&cb, "plain", "same-key").await,
    );
    assert_eq!(pa, pb, "same-key agrees");
    assert_eq!(pa, b"b", "b wrote it last");

    // Both resyncs report what they sent: at least all each site held (9 versions).
    for (alias, peer) in [("a", "b"), ("b", "a")] {
        let done = poll_until(REACT, || async {
            let r = resync(&s, alias, peer).await;
            // Versions that arrived from the peer meanwhile may go back too (harmlessly).
            r["state"] == "Done" && done_of(&r).1.is_some_and(|t| done_of(&r).0 >= t && t >= 9)
        })
        .await;
        assert!(
            done,
            "resync {alias} -> {peer}: {}",
            resync(&s, alias, peer).await
        );
        let st = s.site_status(alias).await;
        assert_eq!(st["peers"][0]["resync"]["state"], "Done", "{st}");
        let text = s.admin(&["site", "resync", "status", alias, peer]).await;
        assert!(
            text.contains(&format!("resync to {peer}: done")) && text.contains("objects:"),
            "{text}"
        );
    }
}

/// (mode, retain-until in seconds, legal hold) of `key` as `c`'s site holds it.
async fn lock_of(c: &Client, key: &str) -> (Option<String>, Option<i64>, bool) {
    let h = ok(
        c.head_object().bucket("locked").key(key).send().await,
        "head locked object",
    );
    (
        h.object_lock_mode().map(|m| m.as_str().to_string()),
        h.object_lock_retain_until_date().map(|d| d.secs()),
        h.object_lock_legal_hold_status().map(|s| s.as_str()) == Some("ON"),
    )
}

/// A resync carries each version's lock as it is at the origin: a version written before the
/// bucket had a default retention stays free on the peer, whose bucket has that default now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_keep_their_own_lock_on_the_peer() {
    let s = TwoSites::start().await;
    let ca = s.a.client();
    ok(
        ca.create_bucket()
            .bucket("locked")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "locked bucket",
    );
    put(&ca, "locked", "free", b"written before the default").await;
    ok(
        ca.put_object()
            .bucket("locked")
            .key("held")
            .object_lock_legal_hold_status(aws_sdk_s3::types::ObjectLockLegalHoldStatus::On)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .body(b"on hold".to_vec().into())
            .send()
            .await,
        "put with legal hold",
    );
    let rule = aws_sdk_s3::types::ObjectLockRule::builder()
        .default_retention(
            aws_sdk_s3::types::DefaultRetention::builder()
                .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Governance)
                .days(1)
                .build(),
        )
        .build();
    ok(
        ca.put_object_lock_configuration()
            .bucket("locked")
            .object_lock_configuration(
                aws_sdk_s3::types::ObjectLockConfiguration::builder()
                    .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                    .rule(rule)
                    .build(),
            )
            .send()
            .await,
        "default retention",
    );
    put(&ca, "locked", "retained", b"written under the default").await;
    let want = [
        ("free", lock_of(&ca, "free").await),
        ("held", lock_of(&ca, "held").await),
        ("retained", lock_of(&ca, "retained").await),
    ];
    assert_eq!(want[0].1, (None, None, false));
    assert!(want[1].1 .2, "held is on hold");
    assert_eq!(want[2].1 .0.as_deref(), Some("GOVERNANCE"));

    s.admin(&["site", "add", "a", "b"]).await;
    wait("the resync is done", || async {
        resync(&s, "a", "b").await["state"] == "Done"
    })
    .await;
    let cb = s.b.client();
    for (key, lock) in &want {
        assert_eq!(&lock_of(&cb, key).await, lock, "{key}'s lock on b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_clash_stops_the_pairing_and_changes_nothing() {
    let s = TwoSites::start().await;
    let (ca, cb) = (s.a.client(), s.b.client());
    ok(
        ca.create_bucket()
            .bucket("clash")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "locked bucket on a",
    );
    create_bucket(&cb, "clash").await;
    put(&cb, "clash", "k", b"b's").await;
    create_bucket(&cb, "fine").await;

    let out = s.cli.fails(&["site", "add", "a", "b"]).await;
    assert!(
        out.contains("cannot pair")
            && out.contains("a and b: bucket clash: object lock is enabled on one site only")
            && out.contains("nothing was changed"),
        "{out}"
    );
    for alias in ["a", "b"] {
        let st = s.site_status(alias).await;
        assert_eq!(st["peers"], serde_json::json!([]), "{alias} is not paired");
    }
    assert!(
        ca.head_bucket().bucket("fine").send().await.is_err(),
        "nothing reached a"
    );
    let lock = cb
        .get_object_lock_configuration()
        .bucket("clash")
        .send()
        .await;
    assert!(lock.is_err(), "b's bucket did not get a's lock");
    assert_eq!(get(&cb, "clash", "k").await, b"b's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_site_gets_everything_back_from_a_resync() {
    let mut s = TwoSites::start().await;
    s.admin(&["site", "add", "a", "b"]).await;
    let ca = s.a.client();
    create_bucket(&ca, "data").await;
    let objects = 300;
    for i in 0..objects {
        put(&ca, "data", &format!("k{i:04}"), &random_bytes(64 * KIB, i)).await;
    }
    for i in 0..3 {
        put(&ca, "data", "k0000", &random_bytes(100, 1000 + i)).await;
    }
    ok(
        ca.delete_object().bucket("data").key("k0001").send().await,
        "delete",
    );
    s.admin(&["user", "add", "a", "dora", "dora-secret-0123456789"])
        .await;
    s.admin(&["policy", "attach", "a", "readonly", "--user", "dora"])
        .await;
    let want = everything(&ca).await;
    assert_eq!(want[0].1.len(), objects as usize + 4);
    {
        let cb = s.b.client();
        wait("b holds every version", || async {
            everything(&cb).await == want
        })
        .await;
    }

    // b loses every drive (its control plane with them) and comes back empty.
    s.b.terminate().await;
    for i in 0..4 {
        s.b.wipe_drive(i);
    }
    s.b.restart_on_same_port().await;
    let cb = s.b.client();
    assert!(bucket_names(&cb).await.is_empty(), "b starts empty");

    // It lost its pairing too: pair again, then resync from a.
    s.admin(&["site", "add", "a", "b"]).await;
    let started = Instant::now();
    // `--wait` follows it to its end (its bar hidden: stderr is no terminal) and says so.
    let out = s
        .admin(&["site", "resync", "start", "a", "b", "--wait"])
        .await;
    assert!(out.contains("resync to b: done"), "{out}");
    wait("the resync is done", || async {
        resync(&s, "a", "b").await["state"] == "Done"
    })
    .await;
    let r = resync(&s, "a", "b").await;
    let (done, total) = done_of(&r);
    assert_eq!(Some(done), total, "{r}");
    assert_eq!(done, objects + 4, "every version counted once: {r}");
    assert_eq!(r["failed"], 0, "{r}");
    throughput("resync after the wipe", started, &r);
    assert_eq!(everything(&cb).await, want, "every version is back on b");
    let body = get(&cb, "data", "k0299").await;
    assert_bytes_eq(&body, &random_bytes(64 * KIB, 299), "k0299 on b");
    // Users came back with the buckets.
    let dora = s.b.client_with("dora", "dora-secret-0123456789");
    wait("dora reads on b", || async {
        dora.get_object()
            .bucket("data")
            .key("k0002")
            .send()
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_goes_on_after_a_restart_and_cancel_stops_it() {
    // 40 versions a second: a resync of 300 takes several batches.
    let mut s = TwoSites::start_with(ServerOptions::new(4).env("CAIRN_RESYNC_RATE", "40")).await;
    let ca = s.a.client();
    create_bucket(&ca, "slow").await;
    let objects = 300;
    for i in 0..objects {
        put(&ca, "slow", &format!("k{i:04}"), &random_bytes(1000, i)).await;
    }
    // Pairing starts the resync of what a held.
    s.admin(&["site", "add", "a", "b"]).await;
    let before = std::cell::Cell::new(0);
    wait("the resync is part-way", || async {
        let r = resync(&s, "a", "b").await;
        let (done, total) = done_of(&r);
        before.set(done);
        done > 0 && Some(done) < total
    })
    .await;
    let before = before.get();
    s.a.terminate().await;
    s.a.restart_on_same_port().await;
    let r = resync(&s, "a", "b").await;
    assert!(
        done_of(&r).0 >= before,
        "progress kept over the restart: {r}"
    );
    assert_eq!(r["state"], "Running", "{r}");
    wait("the resync finished after the restart", || async {
        resync(&s, "a", "b").await["state"] == "Done"
    })
    .await;
    let r = resync(&s, "a", "b").await;
    assert_eq!(
        done_of(&r),
        (objects, Some(objects)),
        "nothing counted twice: {r}"
    );
    let cb = s.b.client();
    assert_eq!(everything(&cb).await, everything(&ca).await);

    // A second resync, cancelled part-way, goes no further.
    s.admin(&["site", "resync", "start", "a", "b"]).await;
    let again = s.cli.fails(&["site", "resync", "start", "a", "b"]).await;
    assert!(again.contains("running already"), "{again}");
    wait("the second resync is part-way", || async {
        done_of(&resync(&s, "a", "b").await).0 > 0
    })
    .await;
    let out = s.admin(&["site", "resync", "cancel", "a", "b"]).await;
    assert!(out.contains("cancelled"), "{out}");
    let stopped = done_of(&resync(&s, "a", "b").await).0;
    assert!(stopped < objects, "cancelled before the end");
    let moved = poll_until(Duration::from_secs(5), || async {
        done_of(&resync(&s, "a", "b").await).0 != stopped
    })
    .await;
    assert!(!moved, "a cancelled resync sends no more");
    s.cli.fails(&["site", "resync", "cancel", "a", "b"]).await;
}

const LINK: (&str, &str) = ("site-replicator-known", "known-link-secret-0123456789");

/// A replica PUT of `key` signed as `who`: its status.
async fn replica_put(srv: &Server, who: (&str, &str), key: &str) -> u16 {
    let headers = [
        (
            "x-cairn-replica-version-id",
            "0b8e3a6c-4a0b-4f8e-9b1e-3d2f6a7c8e91",
        ),
        ("x-cairn-replica-mtime", "1000"),
    ];
    let path = format!("/guarded/{key}");
    srv.signed_with("PUT", &path, who, &headers, b"replica")
        .await
        .0
}

/// `site/apply` of no entries from b, signed as `who`: (status, body).
async fn apply_as(srv: &Server, who: (&str, &str)) -> (u16, String) {
    let apply = serde_json::json!({"origin": "b", "entries": []}).to_string();
    let path = "/cairn/admin/v1/site/apply";
    srv.signed_with("POST", path, who, &[], apply.as_bytes())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_runs_the_site_ops_and_a_removed_peer_is_shut_out() {
    let s = TwoSites::start().await;
    let ca = s.a.client();
    create_bucket(&ca, "guarded").await;
    enable_versioning(&ca, "guarded").await;
    // Pair a with b under an identity the test knows, as `site add` would with a random one.
    let configure = serde_json::json!({
        "local": "a",
        "peers": [{
            "name": "b",
            "endpoint": s.b.endpoint(),
            "access_key": LINK.0,
            "secret_key": LINK.1,
        }],
    });
    let root = (ROOT_USER, ROOT_PASSWORD);
    let path = "/cairn/admin/v1/site/configure";
    let (st, body) =
        s.a.signed_with("POST", path, root, &[], configure.to_string().as_bytes())
            .await;
    assert_eq!(st, 200, "{body}");
    // An ordinary user, even one allowed every admin action and every S3 action.
    s.cli
        .policy(
            "a",
            "everything",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:*","s3:*"],"Resource":["arn:aws:s3:::*"]}]}"#,
        )
        .await;
    s.admin(&["user", "add", "a", "eve", "eve-secret-0123456789"])
        .await;
    s.admin(&["policy", "attach", "a", "everything", "--user", "eve"])
        .await;
    let ops = [
        ("POST", "site/resync/start?peer=b"),
        ("GET", "site/resync/status?peer=b"),
        ("POST", "site/resync/cancel?peer=b"),
        ("POST", "site/remove?peer=b"),
        ("GET", "site/buckets"),
        ("POST", "site/configure"),
    ];
    for who in [("eve", "eve-secret-0123456789"), LINK] {
        for (method, op) in ops {
            let path = format!("/cairn/admin/v1/{op}");
            let (st, body) = s.a.signed_with(method, &path, who, &[], b"{}").await;
            assert_eq!(st, 403, "{} {method} {op}: {body}", who.0);
            assert_eq!(
                xml_error_code(&body).as_deref(),
                Some("AccessDenied"),
                "{body}"
            );
        }
    }
    // Nothing they tried took effect: root sees the pairing's resync state untouched.
    let st = s.site_status("a").await;
    assert_eq!(st["peers"][0]["name"], "b");

    // The peer's identity works while paired (so the checks below test the removal) ...
    let (st, body) = apply_as(&s.a, LINK).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(replica_put(&s.a, LINK, "before").await, 200);

    // ... and not once b is removed: no entries, no replicas.
    let out = s.admin(&["site", "remove", "a", "b"]).await;
    assert!(out.contains("removed"), "{out}");
    let (st, body) = apply_as(&s.a, LINK).await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(replica_put(&s.a, LINK, "after").await, 403);
    assert!(
        ca.head_object()
            .bucket("guarded")
            .key("after")
            .send()
            .await
            .is_err(),
        "the refused replica stored nothing"
    );
    let st = s.site_status("a").await;
    assert_eq!(st["peers"], serde_json::json!([]));
    let gone = s.cli.fails(&["site", "remove", "a", "b"]).await;
    assert!(gone.contains("no site peer"), "{gone}");
}

/// Resync throughput on this machine (not a check: run with `--ignored --nocapture`).
/// `RESYNC_OBJECTS` versions of `RESYNC_KIB` KiB each (default 200 of 1 MiB) are written on a,
/// then the pairing's resync sends them to b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_resync_throughput() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (objects, kib) = (var("RESYNC_OBJECTS", 200), var("RESYNC_KIB", 1024));
    let s = TwoSites::start().await;
    let ca = s.a.client();
    create_bucket(&ca, "bulk").await;
    let data = random_bytes(kib as usize * KIB, 1);
    for i in 0..objects {
        put(&ca, "bulk", &format!("k{i:06}"), &data).await;
    }
    s.admin(&["site", "add", "a", "b"]).await;
    let started = Instant::now();
    wait("the resync is done", || async {
        resync(&s, "a", "b").await["state"] == "Done"
    })
    .await;
    let r = resync(&s, "a", "b").await;
    throughput(&format!("resync of {objects} x {kib} KiB"), started, &r);
}
