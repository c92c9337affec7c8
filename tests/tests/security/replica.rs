//! Issue 16, item 4: replica headers (`x-cairn-replica-version-id`) fix a version's id, so they
//! are a way to replace or remove versions. Only a paired peer's replication identity may send
//! them (never root's keys, never on a site without peers); a replica never changes the bytes of
//! a version id that exists, and never removes a version its object lock protects.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::ObjectLockMode;
use cairn_tests::*;

const REACT: Duration = Duration::from_secs(120);
const B_ROOT: (&str, &str) = ("replb-root", "replb-secret-abcdefghijklmnop");
/// The replication identity of the pair a <-> b (what `cairn admin site add` generates).
const LINK: (&str, &str) = ("site-link-ab-test", "site-link-secret-0123456789abcdef");

/// A raw SigV4 request (boto3 and the SDK would not send the replica headers), signed over the
/// body. Returns the status and the body.
async fn raw(
    srv: &Server,
    creds: (&str, &str),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let url = format!("{}{path}", srv.endpoint());
    let signed =
        sigv4::Signer::new(creds.0, creds.1).sign(method, &url, headers, &sigv4::sha256_hex(body));
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = srv.http().request(m, &url).body(body.to_vec());
    for (k, v) in &signed.headers {
        if k != "host" {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let r = req.send().await.expect("send");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn replica_headers<'a>(id: &'a str, mtime: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-cairn-replica-version-id", id),
        ("x-cairn-replica-mtime", mtime),
    ]
}

fn now_ns() -> String {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string()
}

async fn locked_bucket(c: &Client, bucket: &str) {
    ok(
        c.create_bucket()
            .bucket(bucket)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "CreateBucket with object lock",
    );
}

/// Puts a COMPLIANCE-locked version (retained for a day); returns its version id.
async fn put_compliance(c: &Client, bucket: &str, key: &str, body: &[u8]) -> String {
    let until = DateTime::from(SystemTime::now() + Duration::from_secs(86_400));
    ok(
        c.put_object()
            .bucket(bucket)
            .key(key)
            .content_md5(md5_b64(body))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(until)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await,
        "PutObject with COMPLIANCE retention",
    )
    .version_id()
    .expect("version id")
    .to_string()
}

/// The bytes of version `id`, `None` if it is not readable (absent or a delete marker).
async fn version_bytes(c: &Client, bucket: &str, key: &str, id: &str) -> Option<Vec<u8>> {
    let r = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(id)
        .send()
        .await
        .ok()?;
    Some(r.body.collect().await.ok()?.into_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_cannot_replace_a_locked_version_through_replica_headers() {
    let srv = Server::start(4).await;
    let c = srv.client();
    locked_bucket(&c, "vault").await;
    let original = b"the record that must stay".to_vec();
    let id = put_compliance(&c, "vault", "ledger", &original).await;
    let root = (ROOT_USER, ROOT_PASSWORD);
    let mtime = now_ns();

    let (status, body) = raw(
        &srv,
        root,
        "PUT",
        "/vault/ledger",
        &replica_headers(&id, &mtime),
        b"forged",
    )
    .await;
    assert_eq!(
        status, 403,
        "root's replica PUT over a locked version: {body}"
    );
    assert_eq!(xml_error_code(&body).as_deref(), Some("AccessDenied"));
    assert_eq!(
        version_bytes(&c, "vault", "ledger", &id).await.as_deref(),
        Some(original.as_slice()),
        "the COMPLIANCE version keeps its bytes"
    );

    let (status, body) = raw(
        &srv,
        root,
        "DELETE",
        "/vault/ledger",
        &replica_headers(&id, &mtime),
        b"",
    )
    .await;
    assert_eq!(
        status, 403,
        "root's replica DELETE of a locked version: {body}"
    );
    assert_eq!(xml_error_code(&body).as_deref(), Some("AccessDenied"));
    assert_eq!(
        version_bytes(&c, "vault", "ledger", &id).await.as_deref(),
        Some(original.as_slice()),
        "the COMPLIANCE version is still there, not a delete marker"
    );
    let head = ok(
        c.head_object()
            .bucket("vault")
            .key("ledger")
            .version_id(&id)
            .send()
            .await,
        "HEAD the locked version",
    );
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));

    // A site without peers takes no replica at all, even for a fresh id.
    let fresh = "0b8e3a6c-4a0b-4f8e-9b1e-3d2f6a7c8e91";
    let (status, body) = raw(
        &srv,
        root,
        "PUT",
        "/vault/other",
        &replica_headers(fresh, &mtime),
        b"x",
    )
    .await;
    assert_eq!(status, 403, "replica on a site without peers: {body}");
    assert!(
        version_bytes(&c, "vault", "other", fresh).await.is_none(),
        "a refused replica stores nothing"
    );
}

/// Pairs `srv` (named `local`) with `peer` (named `peer_name`) over the admin API, with the
/// pair's replication identity [`LINK`].
async fn configure(srv: &Server, root: (&str, &str), local: &str, peer_name: &str, peer: &Server) {
    let body = serde_json::json!({
        "local": local,
        "peers": [{
            "name": peer_name,
            "endpoint": peer.endpoint(),
            "access_key": LINK.0,
            "secret_key": LINK.1,
        }],
    })
    .to_string();
    let (status, out) = raw(
        srv,
        root,
        "POST",
        "/cairn/admin/v1/site/configure",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "site/configure on {local}: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_pairs_replication_identity_writes_replicas() {
    let a = Server::start(4).await;
    let mut opts = ServerOptions::new(4);
    opts.env_credentials = Some((B_ROOT.0.into(), B_ROOT.1.into()));
    let b = Server::start_with(opts).await;
    let a_root = (ROOT_USER, ROOT_PASSWORD);
    configure(&a, a_root, "a", "b", &b).await;
    configure(&b, B_ROOT, "b", "a", &a).await;
    let (ca, cb) = (a.client(), b.client_with(B_ROOT.0, B_ROOT.1));

    // Replication itself works with the pair's identity: a bucket, a locked object, a user.
    locked_bucket(&ca, "shared").await;
    let original = b"replicated and locked".to_vec();
    let id = put_compliance(&ca, "shared", "doc", &original).await;
    assert!(
        poll_until(REACT, || async {
            version_bytes(&cb, "shared", "doc", &id).await.as_deref() == Some(original.as_slice())
        })
        .await,
        "the locked object reaches b under its version id"
    );
    let (status, out) = raw(
        &a,
        a_root,
        "POST",
        "/cairn/admin/v1/iam/user/add",
        &[("content-type", "application/json")],
        br#"{"access_key":"ursula","secret_key":"ursula-secret-0123456789"}"#,
    )
    .await;
    assert_eq!(status, 200, "user add on a: {out}");
    let ursula_b = b.client_with("ursula", "ursula-secret-0123456789");
    assert!(
        poll_until(REACT, || async {
            match ursula_b.list_buckets().send().await {
                Ok(_) => true,
                Err(e) => err_code(&e).as_deref() == Some("AccessDenied"),
            }
        })
        .await,
        "a's user signs on b with her own secret (sealed for the pair on the way)"
    );

    // Root's keys are no replication identity, on either site.
    let mtime = now_ns();
    let fresh = "0b8e3a6c-4a0b-4f8e-9b1e-3d2f6a7c8e92";
    for (srv, root, c) in [(&b, B_ROOT, &cb), (&a, a_root, &ca)] {
        let (status, body) = raw(
            srv,
            root,
            "PUT",
            "/shared/by-root",
            &replica_headers(fresh, &mtime),
            b"root's replica",
        )
        .await;
        assert_eq!(status, 403, "root-signed replica: {body}");
        assert!(version_bytes(c, "shared", "by-root", fresh).await.is_none());
    }

    // The replication identity writes replicas and nothing else.
    let (status, body) = raw(&b, LINK, "GET", "/shared/doc", &[], b"").await;
    assert_eq!(status, 403, "the link identity reads nothing: {body}");
    let (status, body) = raw(&b, LINK, "PUT", "/shared/plain", &[], b"plain").await;
    assert_eq!(
        status, 403,
        "the link identity writes no plain object: {body}"
    );
    let (status, body) = raw(
        &b,
        LINK,
        "POST",
        "/cairn/admin/v1/iam/user/add",
        &[],
        br#"{"access_key":"eve","secret_key":"eve-secret-0123456789"}"#,
    )
    .await;
    assert_eq!(status, 403, "the link identity has no admin rights: {body}");

    let (status, body) = raw(
        &b,
        LINK,
        "PUT",
        "/shared/linked",
        &replica_headers(fresh, "1000"),
        b"one",
    )
    .await;
    assert_eq!(status, 200, "a replica from the pair's identity: {body}");
    let (status, body) = raw(
        &b,
        LINK,
        "PUT",
        "/shared/linked",
        &replica_headers(fresh, "1000"),
        b"one",
    )
    .await;
    assert_eq!(status, 200, "the same replica again is harmless: {body}");
    let (status, body) = raw(
        &b,
        LINK,
        "PUT",
        "/shared/linked",
        &replica_headers(fresh, "1000"),
        b"two",
    )
    .await;
    assert!(
        (400..500).contains(&status),
        "other bytes under an existing version id: {status} {body}"
    );
    assert_eq!(
        version_bytes(&cb, "shared", "linked", fresh)
            .await
            .as_deref(),
        Some(b"one".as_slice())
    );

    // Not even the replication identity replaces or removes a locked version.
    for (method, payload) in [("PUT", b"forged".as_slice()), ("DELETE", b"".as_slice())] {
        let (status, body) = raw(
            &b,
            LINK,
            method,
            "/shared/doc",
            &replica_headers(&id, &mtime),
            payload,
        )
        .await;
        assert!(
            (400..500).contains(&status),
            "replica {method} over the locked version: {status} {body}"
        );
        assert_eq!(
            version_bytes(&cb, "shared", "doc", &id).await.as_deref(),
            Some(original.as_slice()),
            "after the replica {method}, the locked version on b is whole"
        );
    }
}
