//! Site replication of what changes after a version is written, between two real sites:
//! - tags, retention and legal hold changed on one site reach the other without the data being
//!   sent again, and concurrent tag changes on both sites end the same on both (the later wins);
//! - a metadata-only copy arrives as a new version with the new metadata;
//! - a version removed for good (DELETE or DeleteObjects with a version id) goes on the peer too,
//!   unless the pair was made with `--no-replicate-version-deletes`; a locked version stays on
//!   both sites, and the pair's replication identity can neither remove it nor shorten a
//!   COMPLIANCE retention on the peer (attacked directly); bucket deletion follows;
//! - an IAM user's and a service account's rotated secret: the old one stops working on the peer;
//! - an SSE-KMS object waits, PENDING and reported, until the peer has its key;
//! - `site status` shows per-entity drift (buckets, users, secrets, policies ...) while one
//!   site's changes cannot reach the other, and none once they have; only the pair's replication
//!   identity may ask a site for its digest.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    Delete, MetadataDirective, ObjectIdentifier, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
};
use cairn_tests::sites::TwoSites;
use cairn_tests::*;

/// How long replication may take: a failed send is retried by a rescan every 30 s.
const REACT: Duration = Duration::from_secs(120);

async fn wait<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(poll_until(REACT, f).await, "{what}: not within {REACT:?}");
}

fn in_secs(s: u64) -> DateTime {
    DateTime::from(SystemTime::now() + Duration::from_secs(s))
}

fn retention(mode: ObjectLockRetentionMode, until: DateTime) -> ObjectLockRetention {
    ObjectLockRetention::builder()
        .mode(mode)
        .retain_until_date(until)
        .build()
}

async fn locked_bucket(c: &Client, name: &str) {
    ok(
        c.create_bucket()
            .bucket(name)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "CreateBucket with object lock",
    );
}

/// Whether the site `c` talks to holds version `id` itself: the read carries the proxy mark, so
/// a version only its peer holds is not fetched from there.
async fn has_version(c: &Client, bucket: &str, key: &str, id: &str) -> bool {
    sites::head_here(c, bucket, key, Some(id)).await.is_some()
}

async fn bucket_exists(c: &Client, bucket: &str) -> bool {
    c.head_bucket().bucket(bucket).send().await.is_ok()
}

/// A version's tags as `key=value`, sorted; `None` when it cannot be read.
async fn tags_of(c: &Client, bucket: &str, key: &str, id: &str) -> Option<Vec<String>> {
    let r = c
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(id)
        .send()
        .await
        .ok()?;
    let mut t: Vec<String> = r
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    t.sort();
    Some(t)
}

/// (retention mode, retain-until in seconds, legal hold) of a version.
async fn lock_of(
    c: &Client,
    bucket: &str,
    key: &str,
    id: &str,
) -> Option<(Option<String>, Option<i64>, bool)> {
    let h = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(id)
        .send()
        .await
        .ok()?;
    Some((
        h.object_lock_mode().map(|m| m.as_str().to_string()),
        h.object_lock_retain_until_date().map(|d| d.secs()),
        h.object_lock_legal_hold_status().map(|s| s.as_str()) == Some("ON"),
    ))
}

async fn set_tags(c: &Client, bucket: &str, key: &str, id: &str, t: &[(&str, &str)]) {
    ok(
        c.put_object_tagging()
            .bucket(bucket)
            .key(key)
            .version_id(id)
            .tagging(tags(t))
            .send()
            .await,
        "PutObjectTagging",
    );
}

async fn set_hold(c: &Client, bucket: &str, key: &str, id: &str, on: bool) {
    let status = if on {
        ObjectLockLegalHoldStatus::On
    } else {
        ObjectLockLegalHoldStatus::Off
    };
    ok(
        c.put_object_legal_hold()
            .bucket(bucket)
            .key(key)
            .version_id(id)
            .legal_hold(ObjectLockLegalHold::builder().status(status).build())
            .send()
            .await,
        "PutObjectLegalHold",
    );
}

/// Bytes of object data site `alias` sent its peer so far (`site status`).
async fn bytes_sent(s: &TwoSites, alias: &str) -> u64 {
    s.site_status(alias).await["peers"][0]["contact"]["bytes_replicated"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_changes_replicate_without_the_data() {
    let s = TwoSites::start().await;
    let (ca, cb) = (s.a.client(), s.b.client());
    s.admin(&["site", "add", "a", "b"]).await;
    locked_bucket(&ca, "meta").await;
    wait("bucket on b", || bucket_exists(&cb, "meta")).await;
    let data = random_bytes(256 * KIB, 1);
    let v1 = put_version(&ca, "meta", "obj", &data).await;
    wait("the version on b", || has_version(&cb, "meta", "obj", &v1)).await;
    wait("its bytes counted", || async {
        bytes_sent(&s, "a").await >= data.len() as u64
    })
    .await;
    let sent = bytes_sent(&s, "a").await;

    // Tags set, then removed.
    set_tags(&ca, "meta", "obj", &v1, &[("team", "blue"), ("cost", "7")]).await;
    wait("tags on b", || async {
        tags_of(&cb, "meta", "obj", &v1).await == Some(vec!["cost=7".into(), "team=blue".into()])
    })
    .await;
    ok(
        ca.delete_object_tagging()
            .bucket("meta")
            .key("obj")
            .version_id(&v1)
            .send()
            .await,
        "DeleteObjectTagging",
    );
    wait("no tags on b", || async {
        tags_of(&cb, "meta", "obj", &v1).await == Some(vec![])
    })
    .await;

    // Retention set, extended, then shortened with the bypass (GOVERNANCE: as the origin
    // decided, see README); legal hold on and off.
    for (until, bypass) in [(in_secs(86_400), false), (in_secs(2 * 86_400), false)]
        .into_iter()
        .chain([(in_secs(3_600), true)])
    {
        ok(
            ca.put_object_retention()
                .bucket("meta")
                .key("obj")
                .version_id(&v1)
                .bypass_governance_retention(bypass)
                .retention(retention(ObjectLockRetentionMode::Governance, until))
                .send()
                .await,
            "PutObjectRetention",
        );
        let want = Some((Some("GOVERNANCE".to_string()), Some(until.secs()), false));
        wait(&format!("retention until {until} on b"), || async {
            lock_of(&cb, "meta", "obj", &v1).await == want
        })
        .await;
    }
    for on in [true, false] {
        set_hold(&ca, "meta", "obj", &v1, on).await;
        wait(&format!("legal hold {on} on b"), || async {
            lock_of(&cb, "meta", "obj", &v1).await.map(|l| l.2) == Some(on)
        })
        .await;
    }
    assert_eq!(
        bytes_sent(&s, "a").await,
        sent,
        "metadata changes send no object data"
    );

    // A metadata-only copy onto itself is a new version, with the new metadata, on both.
    let copy = ok(
        ca.copy_object()
            .bucket("meta")
            .key("obj")
            .copy_source("meta/obj")
            .metadata_directive(MetadataDirective::Replace)
            .metadata("color", "green")
            .content_type("text/plain")
            .send()
            .await,
        "CopyObject onto itself",
    );
    let v2 = copy.version_id().expect("version id").to_string();
    assert_ne!(v2, v1);
    wait("the copy on b", || async {
        cb.head_object()
            .bucket("meta")
            .key("obj")
            .send()
            .await
            .is_ok_and(|h| {
                h.version_id() == Some(v2.as_str())
                    && h.content_type() == Some("text/plain")
                    && h.metadata()
                        .and_then(|m| m.get("color"))
                        .map(String::as_str)
                        == Some("green")
            })
    })
    .await;
    assert_bytes_eq(
        &get(&cb, "meta", "obj").await,
        &data,
        "the copy's bytes on b",
    );

    // Both sites tag the same version at once: both end with the same tags, one site's.
    let (pa, pb) = (
        set_tags(&ca, "meta", "obj", &v2, &[("writer", "a")]),
        set_tags(&cb, "meta", "obj", &v2, &[("writer", "b")]),
    );
    tokio::join!(pa, pb);
    wait("both sites agree on the tags", || async {
        let (ta, tb) = (
            tags_of(&ca, "meta", "obj", &v2).await,
            tags_of(&cb, "meta", "obj", &v2).await,
        );
        ta == tb && (ta == Some(vec!["writer=a".into()]) || ta == Some(vec!["writer=b".into()]))
    })
    .await;
    // The later change wins wherever it is made.
    set_tags(&cb, "meta", "obj", &v2, &[("writer", "b-later")]).await;
    wait("b's later tags on a", || async {
        tags_of(&ca, "meta", "obj", &v2).await == Some(vec!["writer=b-later".into()])
    })
    .await;
}

/// The replication identity the test pairs the sites with, so it can attack with it.
const LINK: (&str, &str) = ("site-replicator-test", "test-link-secret-0123456789");

/// Pairs a and b under [`LINK`], as `site add` does with a random identity.
async fn pair_with_known_identity(s: &TwoSites) {
    pair_with_known_identity_at(s, s.a.endpoint()).await;
}

/// Like [`pair_with_known_identity`], b reaching a at `a_endpoint`.
async fn pair_with_known_identity_at(s: &TwoSites, a_endpoint: String) {
    let root_b = (sites::B_ROOT.0, sites::B_ROOT.1);
    for (srv, local, peer, other, root) in [
        (&s.a, "a", "b", s.b.endpoint(), (ROOT_USER, ROOT_PASSWORD)),
        (&s.b, "b", "a", a_endpoint.clone(), root_b),
    ] {
        let configure = serde_json::json!({
            "local": local,
            "peers": [{
                "name": peer,
                "endpoint": other,
                "access_key": LINK.0,
                "secret_key": LINK.1,
            }],
        });
        let (st, body) = srv
            .signed_with(
                "POST",
                "/cairn/admin/v1/site/configure",
                root,
                &[],
                configure.to_string().as_bytes(),
            )
            .await;
        assert_eq!(st, 200, "{body}");
    }
}

/// A `site/objects` change sent to `srv` as `who`: (status, body).
async fn object_change(
    srv: &Server,
    who: (&str, &str),
    key: &str,
    id: &str,
    change: serde_json::Value,
) -> (u16, String) {
    let body = serde_json::json!({
        "bucket": "del",
        "key": key,
        "version_id": id,
        "change": change,
    });
    srv.signed_with(
        "POST",
        "/cairn/admin/v1/site/objects",
        who,
        &[],
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_deletes_replicate_and_locks_hold_on_both_sites() {
    let s = TwoSites::start().await;
    let (ca, cb) = (s.a.client(), s.b.client());
    pair_with_known_identity(&s).await;
    locked_bucket(&ca, "del").await;
    wait("bucket on b", || bucket_exists(&cb, "del")).await;
    let gone = put_version(&ca, "del", "k", b"first").await;
    let kept = put_version(&ca, "del", "k", b"second").await;
    let many = ["m0".to_string(), "m1".to_string()];
    let mut many_ids = Vec::new();
    for k in &many {
        many_ids.push(put_version(&ca, "del", k, k.as_bytes()).await);
    }
    let until = in_secs(86_400);
    let comp = ok(
        ca.put_object()
            .bucket("del")
            .key("comp")
            .content_md5(md5_b64(b"locked"))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(until)
            .body(ByteStream::from(b"locked".to_vec()))
            .send()
            .await,
        "PutObject under COMPLIANCE",
    )
    .version_id()
    .expect("version id")
    .to_string();
    let held = put_version(&ca, "del", "held", b"held").await;
    set_hold(&ca, "del", "held", &held, true).await;
    for (k, id) in [("k", &gone), ("k", &kept), ("comp", &comp)]
        .into_iter()
        .chain(many.iter().map(String::as_str).zip(&many_ids))
    {
        wait(&format!("{k} {id} on b"), || has_version(&cb, "del", k, id)).await;
    }
    wait("the hold on b", || async {
        lock_of(&cb, "del", "held", &held).await.map(|l| l.2) == Some(true)
    })
    .await;

    // DELETE with a version id and DeleteObjects with version ids remove for good on b too.
    ok(
        ca.delete_object()
            .bucket("del")
            .key("k")
            .version_id(&gone)
            .send()
            .await,
        "DELETE a version",
    );
    let mut objects = Vec::new();
    for (k, id) in many.iter().zip(&many_ids) {
        objects.push(
            ObjectIdentifier::builder()
                .key(k)
                .version_id(id)
                .build()
                .expect("object"),
        );
    }
    let multi = ok(
        ca.delete_objects()
            .bucket("del")
            .delete(
                Delete::builder()
                    .set_objects(Some(objects))
                    .build()
                    .expect("delete"),
            )
            .send()
            .await,
        "DeleteObjects with version ids",
    );
    assert!(multi.errors().is_empty(), "{multi:?}");
    wait("the removed versions gone from b", || async {
        let mut any = has_version(&cb, "del", "k", &gone).await;
        for (k, id) in many.iter().zip(&many_ids) {
            any |= has_version(&cb, "del", k, id).await;
        }
        !any
    })
    .await;
    assert!(has_version(&cb, "del", "k", &kept).await, "the other stays");

    // Locked versions stay on both sites: the client is refused on each, ...
    for c in [&ca, &cb] {
        for (k, id) in [("comp", &comp), ("held", &held)] {
            assert_s3_err(
                c.delete_object()
                    .bucket("del")
                    .key(k)
                    .version_id(id)
                    .bypass_governance_retention(true)
                    .send()
                    .await,
                403,
                Some("AccessDenied"),
                "DELETE of a locked version",
            );
        }
    }
    // ... and so is the pair's replication identity, removing them or shortening COMPLIANCE.
    for (k, id) in [("comp", &comp), ("held", &held)] {
        let (st, body) = object_change(
            &s.b,
            LINK,
            k,
            id,
            serde_json::json!({"purge": {"bypass_governance": true}}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        assert!(body.contains("refused"), "{k}: {body}");
        assert!(has_version(&cb, "del", k, id).await, "{k} stays on b");
    }
    let far = i64::MAX / 4;
    let shorten = serde_json::json!({"metadata": {
        "tags": [], "tags_changed_ns": 0,
        "lock_mode": "", "retain_until_ns": 0, "retention_changed_ns": far,
        "legal_hold": false, "legal_hold_changed_ns": 0,
    }});
    let (st, body) = object_change(&s.b, LINK, "comp", &comp, shorten.clone()).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("refused"), "{body}");
    let lock = lock_of(&cb, "del", "comp", &comp).await;
    assert_eq!(
        lock,
        Some((Some("COMPLIANCE".into()), Some(until.secs()), false)),
        "COMPLIANCE holds on b"
    );
    // Nobody else may send version changes: not root, not a user.
    for who in [
        (sites::B_ROOT.0, sites::B_ROOT.1),
        (ROOT_USER, ROOT_PASSWORD),
    ] {
        let (st, body) = object_change(&s.b, who, "comp", &comp, shorten.clone()).await;
        assert_eq!(st, 403, "{}: {body}", who.0);
        let (st, _) = object_change(
            &s.b,
            who,
            "k",
            &kept,
            serde_json::json!({"purge": {"bypass_governance": true}}),
        )
        .await;
        assert_eq!(st, 403);
    }
    assert!(has_version(&cb, "del", "k", &kept).await);

    // A bucket deletion follows once its versions are gone on both sites.
    create_bucket(&ca, "doomed").await;
    wait("doomed on b", || bucket_exists(&cb, "doomed")).await;
    let d = put_version(&ca, "doomed", "x", b"x").await;
    wait("x on b", || has_version(&cb, "doomed", "x", &d)).await;
    ok(
        ca.delete_object()
            .bucket("doomed")
            .key("x")
            .version_id(&d)
            .send()
            .await,
        "DELETE the only version",
    );
    ok(
        ca.delete_bucket().bucket("doomed").send().await,
        "DeleteBucket",
    );
    wait("doomed gone from b", || async {
        !bucket_exists(&cb, "doomed").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_without_version_deletes_keeps_its_versions() {
    let s = TwoSites::start().await;
    let (ca, cb) = (s.a.client(), s.b.client());
    s.admin(&["site", "add", "a", "b", "--no-replicate-version-deletes"])
        .await;
    create_bucket(&ca, "keep").await;
    wait("bucket on b", || bucket_exists(&cb, "keep")).await;
    let v = put_version(&ca, "keep", "k", b"keep me").await;
    wait("k on b", || has_version(&cb, "keep", "k", &v)).await;
    ok(
        ca.delete_object()
            .bucket("keep")
            .key("k")
            .version_id(&v)
            .send()
            .await,
        "DELETE a version",
    );
    assert!(!has_version(&ca, "keep", "k", &v).await);
    // A delete marker still replicates: once it is on b, the removal had its chance too.
    let later = put_version(&ca, "keep", "later", b"later").await;
    let marker = ok(
        ca.delete_object().bucket("keep").key("later").send().await,
        "DELETE (a marker)",
    );
    assert_eq!(marker.delete_marker(), Some(true));
    wait("the marker on b", || async {
        cb.get_object()
            .bucket("keep")
            .key("later")
            .send()
            .await
            .is_err()
            && has_version(&cb, "keep", "later", &later).await
    })
    .await;
    assert!(
        has_version(&cb, "keep", "k", &v).await,
        "b keeps the version a removed"
    );

    // Deleting the bucket on a (empty there) leaves b's bucket, which holds versions, and
    // later changes still flow.
    ok(
        ca.delete_object()
            .bucket("keep")
            .key("later")
            .version_id(&later)
            .send()
            .await,
        "DELETE a version",
    );
    let versions = ok(
        ca.list_object_versions().bucket("keep").send().await,
        "list versions",
    );
    for m in versions.delete_markers() {
        ok(
            ca.delete_object()
                .bucket("keep")
                .key(m.key().unwrap_or_default())
                .version_id(m.version_id().unwrap_or_default())
                .send()
                .await,
            "DELETE a marker",
        );
    }
    ok(
        ca.delete_bucket().bucket("keep").send().await,
        "DeleteBucket",
    );
    create_bucket(&ca, "after").await;
    wait("a later bucket on b", || bucket_exists(&cb, "after")).await;
    assert!(bucket_exists(&cb, "keep").await, "b keeps its bucket");
    assert!(has_version(&cb, "keep", "k", &v).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secrets_and_kms_keys_follow_the_pair() {
    let s = TwoSites::start().await;
    let cb = s.b.client();
    s.admin(&["site", "add", "a", "b"]).await;
    s.admin(&["user", "add", "a", "alice", "alice-old-secret-0123456789"])
        .await;
    s.admin(&["policy", "attach", "a", "readwrite", "--user", "alice"])
        .await;
    let old = s.b.client_with("alice", "alice-old-secret-0123456789");
    let new = s.b.client_with("alice", "alice-new-secret-0123456789");
    wait("alice on b", || async {
        old.list_buckets().send().await.is_ok()
    })
    .await;
    // `user add` of an existing user replaces its secret: the old one stops working on b.
    s.admin(&["user", "add", "a", "alice", "alice-new-secret-0123456789"])
        .await;
    wait("alice's new secret on b", || async {
        new.list_buckets().send().await.is_ok()
    })
    .await;
    assert_s3_err(
        old.list_buckets().send().await,
        403,
        None,
        "alice's old secret on b",
    );

    // A service account's secret, rotated with `svcacct edit --secret-key`.
    s.admin(&[
        "--access-key",
        "alice-svc",
        "--secret-key",
        "svc-old-secret-0123456789",
        "svcacct",
        "add",
        "a",
        "alice",
    ])
    .await;
    let svc_old = s.b.client_with("alice-svc", "svc-old-secret-0123456789");
    let svc_new = s.b.client_with("alice-svc", "svc-new-secret-0123456789");
    wait("the service account on b", || async {
        svc_old.list_buckets().send().await.is_ok()
    })
    .await;
    s.admin(&[
        "--secret-key",
        "svc-new-secret-0123456789",
        "svcacct",
        "edit",
        "a",
        "alice-svc",
    ])
    .await;
    wait("the service account's new secret on b", || async {
        svc_new.list_buckets().send().await.is_ok()
    })
    .await;
    assert_s3_err(
        svc_old.list_buckets().send().await,
        403,
        None,
        "the service account's old secret on b",
    );

    // SSE-KMS under a key only a has: the version waits (reported) until b has the key too.
    let ca = s.a.client();
    s.admin(&["kms", "key", "create", "a", "shared-key"]).await;
    create_bucket(&ca, "enc").await;
    wait("enc on b", || bucket_exists(&cb, "enc")).await;
    let v = ok(
        ca.put_object()
            .bucket("enc")
            .key("secret")
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id("shared-key")
            .body(ByteStream::from(b"encrypted at a".to_vec()))
            .send()
            .await,
        "PutObject with SSE-KMS",
    )
    .version_id()
    .expect("version id")
    .to_string();
    wait("the failure shown in a's site status", || async {
        let st = s.site_status("a").await;
        st["peers"][0]["contact"]["failed"]
            .as_array()
            .is_some_and(|f| {
                f.iter().any(|i| {
                    let t = i[1].as_str().unwrap_or("");
                    t.contains("enc/secret") && t.contains("KMS")
                })
            })
    })
    .await;
    assert!(!has_version(&cb, "enc", "secret", &v).await);
    s.admin(&["kms", "key", "create", "b", "shared-key"]).await;
    wait("the object on b once b has the key", || {
        has_version(&cb, "enc", "secret", &v)
    })
    .await;
    assert_eq!(get(&cb, "enc", "secret").await, b"encrypted at a");
    let h = ok(
        cb.head_object().bucket("enc").key("secret").send().await,
        "HEAD on b",
    );
    assert_eq!(h.ssekms_key_id(), Some("shared-key"));
}

/// `site status`'s drift of peer b as site a sees it.
async fn drift_on_a(s: &TwoSites) -> serde_json::Value {
    s.site_status("a").await["peers"][0]["drift"].clone()
}

fn names(drift: &serde_json::Value, kind: &str, how: &str) -> Vec<String> {
    drift["kinds"][kind][how]["names"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_status_shows_drift_until_the_sites_converge() {
    let mut s = TwoSites::start().await;
    // b reaches a only at a port nobody listens on yet: b's changes wait in its outbox.
    let later = free_port();
    pair_with_known_identity_at(&s, format!("http://127.0.0.1:{later}")).await;
    s.admin(&["user", "add", "a", "dave", "dave-secret-one-0123456789"])
        .await;
    wait("a and b in sync after a's change", || async {
        let d = drift_on_a(&s).await;
        d["in_sync"] == true && d["kinds"]["users"]["there"] == 1
    })
    .await;

    // Changes made on b stay there: a new bucket and user, and dave's secret rotated.
    create_bucket(&s.b.client(), "only-on-b").await;
    s.admin(&["user", "add", "b", "erin", "erin-secret-0123456789"])
        .await;
    s.admin(&["user", "add", "b", "dave", "dave-secret-two-0123456789"])
        .await;
    let d = drift_on_a(&s).await;
    assert_eq!(d["in_sync"], false, "{d}");
    assert_eq!(names(&d, "buckets", "only_there"), ["only-on-b"], "{d}");
    assert_eq!(names(&d, "users", "only_there"), ["erin"], "{d}");
    assert_eq!(names(&d, "users", "differ"), ["dave"], "{d}");
    assert_eq!(d["kinds"]["users"]["here"], 1, "{d}");
    // b cannot reach a, and says so instead of a drift.
    let st = s.site_status("b").await;
    let peer = &st["peers"][0];
    assert!(peer["drift"].is_null(), "{st}");
    assert!(
        peer["drift_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{st}"
    );

    // Only the pair's identity gets a digest, and it holds MACs, no secret.
    let digest = "/cairn/admin/v1/site/digest";
    let (code, body) =
        s.a.signed_with("POST", digest, (ROOT_USER, ROOT_PASSWORD), &[], b"null")
            .await;
    assert_eq!(code, 403, "root asking for the peers' digest: {body}");
    let (code, body) = s.a.signed_with("GET", digest, LINK, &[], b"").await;
    assert_eq!(code, 403, "the link identity on another op: {body}");
    let (code, body) = s.a.signed_with("POST", digest, LINK, &[], b"null").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("dave") && !body.contains("dave-secret"),
        "{body}"
    );

    // a comes back where b looks for it: b's changes arrive, and the drift goes.
    s.a.restart_on_port(later).await;
    s.cli.alias("a", &s.a).await;
    wait("a and b in sync after b's changes reached a", || async {
        drift_on_a(&s).await["in_sync"] == true
    })
    .await;
    let d = drift_on_a(&s).await;
    assert_eq!(d["kinds"]["users"]["here"], 2, "{d}");
    // dave has no policy: his current secret is known and denied, the one b replaced is wrong.
    for (secret, code) in [
        ("dave-secret-two-0123456789", "AccessDenied"),
        ("dave-secret-one-0123456789", "SignatureDoesNotMatch"),
    ] {
        let r = s.a.client_with("dave", secret).list_buckets().send().await;
        assert_s3_err(r, 403, Some(code), "dave's secret, rotated on b, on a");
    }
}
