//! Issue 16, items 8, 13 and 14c: key management and SSE.
//! * 8: the KMS key registry and IAM secrets are wrapped by `CAIRN_KMS_MASTER_KEY`, never by a
//!   key derived from what lies on a data drive (the generated root password is in `root.json`
//!   there); without a master key the registry refuses, naming the setting; `root.json` is 0600.
//! * 13: uploading a multipart part again under SSE never reuses its key and nonces; SSE-C over
//!   plain HTTP is refused (`InvalidRequest`) unless `CAIRN_INSECURE_SSE_C=on`.
//! * 14c: the KES API lets in only listed identities; a certificate the CA signed is not enough.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption as Sse};
use aws_sdk_s3::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use base64::Engine;
use md5::{Digest, Md5};

use cairn_tests::certs::{kes_identity, TestCa};
use cairn_tests::*;

const MASTER_ENV: &str = "CAIRN_KMS_MASTER_KEY";
const OTHER_MASTER_KEY: &str = "other-master:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The generated root credentials as the drive holds them (`.cairn/root.json`).
fn stored_root(drive: &Path) -> (String, String) {
    let b = std::fs::read(drive.join(".cairn").join("root.json")).expect("root.json");
    let v: serde_json::Value = serde_json::from_slice(&b).expect("root.json is JSON");
    (
        v["access_key"].as_str().unwrap().to_string(),
        v["secret_key"].as_str().unwrap().to_string(),
    )
}

/// `cairn admin ...` against `srv` through a fresh alias `site`: (success, stdout, stderr).
async fn admin(srv: &Server, args: &[&str]) -> (bool, String, String) {
    let config = tempfile::tempdir().unwrap();
    let dir = config.path().to_str().unwrap();
    let env = [("CAIRN_CONFIG_DIR", dir)];
    let alias = [
        "admin",
        "alias",
        "set",
        "site",
        &srv.endpoint(),
        srv.access_key(),
        srv.secret_key(),
    ]
    .map(String::from);
    let (st, _, err) = run_cairn(&alias, &env, Duration::from_secs(30)).await;
    assert!(st.success(), "alias set: {err}");
    let mut all = vec!["admin".to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let (st, out, err) = run_cairn(&all, &env, Duration::from_secs(30)).await;
    (st.success(), out, err)
}

async fn put_sse_s3(c: &Client, bucket: &str, key: &str, data: &[u8]) -> Result<(), String> {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .server_side_encryption(Sse::Aes256)
        .send()
        .await
        .map(drop)
        .map_err(|e| DisplayErrorContext(&e).to_string())
}

async fn get(c: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(r) => Ok(r.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) => Err(DisplayErrorContext(&e).to_string()),
    }
}

/// Item 8: without a master key the registry is off and says which setting it needs; nothing
/// is wrapped by a key derived from the root password stored beside the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_master_key_the_registry_refuses_and_names_the_setting() {
    let mut srv = Server::start_with(
        ServerOptions::new(2)
            .generated_credentials()
            .without_env(MASTER_ENV),
    )
    .await;
    let (ak, sk) = stored_root(srv.drive(0));
    srv.set_credentials(&ak, &sk);
    #[cfg(unix)]
    for d in srv.drives() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join(".cairn").join("root.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "root.json on {}", d.display());
    }
    let c = srv.client();
    create_bucket(&c, "vault").await;

    // Creating a registry key: refused, naming the setting (the old code created it, wrapped by
    // a key derived from the password in root.json).
    let (done, out, err) = admin(&srv, &["kms", "key", "create", "site", "cairn-default"]).await;
    assert!(
        !done,
        "a registry key was created without {MASTER_ENV}: {out}"
    );
    assert!(
        err.contains(MASTER_ENV),
        "the error names the setting: {err}"
    );

    // SSE-S3 (which uses the registry's default key here): refused, naming the setting.
    let r = c
        .put_object()
        .bucket("vault")
        .key("x")
        .body(ByteStream::from_static(b"secret"))
        .server_side_encryption(Sse::Aes256)
        .send()
        .await;
    let e = r.expect_err("SSE-S3 PUT without any KMS succeeded");
    let text = DisplayErrorContext(&e).to_string();
    assert_eq!(err_status(&e), Some(501), "{text}");
    assert_eq!(err_code(&e).as_deref(), Some("NotImplemented"), "{text}");
    assert!(
        text.contains(MASTER_ENV),
        "the error names the setting: {text}"
    );
    assert!(
        srv.stderr().contains(&format!("{MASTER_ENV} is not set")),
        "start-up says the registry is off:\n{}",
        srv.stderr()
    );
}

/// Item 8: with a master key, the drives hold nothing that opens registry keys or IAM secrets:
/// the same drives started with another master key (or none) read neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_keys_and_iam_secrets_need_the_master_key_not_the_drives() {
    let mut srv = Server::start_with(ServerOptions::new(2).generated_credentials()).await;
    let (ak, sk) = stored_root(srv.drive(0));
    srv.set_credentials(&ak, &sk);
    let c = srv.client();
    create_bucket(&c, "vault").await;
    let (done, _, err) = admin(&srv, &["kms", "key", "create", "site", "cairn-default"]).await;
    assert!(done, "create cairn-default: {err}");
    let data = random_bytes(70_000, 8);
    put_sse_s3(&c, "vault", "obj", &data).await.unwrap();
    let (done, _, err) = admin(
        &srv,
        &["user", "add", "site", "alice", "alice-secret-key-1"],
    )
    .await;
    assert!(done, "user add: {err}");
    // Alice signs fine (she has no policy, so: authenticated, then denied).
    let alice = |srv: &Server| srv.client_with("alice", "alice-secret-key-1");
    assert_s3_err(
        alice(&srv).list_buckets().send().await,
        403,
        Some("AccessDenied"),
        "alice under the right master key",
    );

    // Another master key: the object's key and alice's secret stay shut.
    srv.set_env(MASTER_ENV, Some(OTHER_MASTER_KEY));
    srv.restart().await;
    let c = srv.client();
    let r = get(&c, "vault", "obj").await;
    assert!(r.is_err(), "read under another master key");
    let e = alice(&srv)
        .list_buckets()
        .send()
        .await
        .expect_err("alice signed under another master key");
    assert!(
        matches!(
            err_code(&e).as_deref(),
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch")
        ),
        "alice's secret opened without the master key it was sealed under: {}",
        DisplayErrorContext(&e)
    );

    // No master key (so nothing but the drives and root.json): the registry is off.
    srv.set_env(MASTER_ENV, None);
    srv.restart().await;
    let r = get(&srv.client(), "vault", "obj").await;
    let e = r.expect_err("read with only what the drives hold");
    assert!(e.contains(MASTER_ENV), "{e}");

    // The right key again: everything back.
    srv.set_env(MASTER_ENV, Some(TEST_MASTER_KEY));
    srv.restart().await;
    assert_eq!(get(&srv.client(), "vault", "obj").await.unwrap(), data);
    assert_s3_err(
        alice(&srv).list_buckets().send().await,
        403,
        Some("AccessDenied"),
        "alice under the right master key again",
    );
}

/// Files of drive `d` whose name starts with `part.1.` (an upload's stored part 1).
fn part_files(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with("part.1.") {
                out.push(p);
            }
        }
    }
    out
}

/// Item 13: a part uploaded twice under the same number gets a fresh key and nonces: the same
/// plaintext does not give the same ciphertext (with reused ones, the XOR of two uploads' stored
/// bytes would be the XOR of their plaintexts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuploaded_part_never_reuses_key_and_nonce() {
    let srv = Server::start_with(ServerOptions::new(1).env(
        "CAIRN_KMS_SECRET_KEY",
        "part-test-key:IyqsU3kMFloCNup4BsZtf/rmfHVcTgznO2F25CkEH1g=",
    ))
    .await;
    let c = srv.client();
    create_bucket(&c, "parts").await;
    let up = c
        .create_multipart_upload()
        .bucket("parts")
        .key("big")
        .server_side_encryption(Sse::Aes256)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let data = random_bytes(300_000, 13);
    let mut stored = Vec::new();
    let mut etag = String::new();
    for round in 0..2 {
        let before = part_files(srv.drive(0));
        let r = c
            .upload_part()
            .bucket("parts")
            .key("big")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        etag = r.e_tag().unwrap().to_string();
        let new: Vec<PathBuf> = part_files(srv.drive(0))
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert_eq!(new.len(), 1, "round {round}: one new part file: {new:?}");
        stored.push(std::fs::read(&new[0]).unwrap());
    }
    assert!(
        stored[0].len() > data.len(),
        "the part file holds the sealed part"
    );
    assert!(
        stored[0] != stored[1],
        "the same part uploaded twice was sealed with the same key and nonces"
    );
    c.complete_multipart_upload()
        .bucket("parts")
        .key("big")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_bytes_eq(
        &get(&c, "parts", "big").await.unwrap(),
        &data,
        "the re-uploaded part reads back",
    );
}

fn sse_c_headers(key: &[u8; 32]) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    (b64.encode(key), b64.encode(Md5::digest(key)))
}

/// Item 13: an SSE-C key sent over plain HTTP is refused as AWS and MinIO refuse it; over TLS it
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_over_plain_http_is_refused() {
    let srv = Server::start(2).await;
    let c = srv.client();
    create_bucket(&c, "clear").await;
    let (key, md5) = sse_c_headers(&[7; 32]);
    let put = c
        .put_object()
        .bucket("clear")
        .key("x")
        .body(ByteStream::from_static(b"secret"))
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key)
        .sse_customer_key_md5(&md5)
        .send()
        .await;
    let e = put.expect_err("SSE-C PUT over plain HTTP succeeded");
    let text = DisplayErrorContext(&e).to_string();
    assert_eq!(err_status(&e), Some(400), "{text}");
    assert_eq!(err_code(&e).as_deref(), Some("InvalidRequest"), "{text}");
    assert!(
        text.contains("must be made over a secure connection"),
        "{text}"
    );
    c.put_object()
        .bucket("clear")
        .key("plain")
        .body(ByteStream::from_static(b"plain"))
        .send()
        .await
        .unwrap();
    assert_s3_err(
        c.get_object()
            .bucket("clear")
            .key("plain")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key)
            .sse_customer_key_md5(&md5)
            .send()
            .await,
        400,
        Some("InvalidRequest"),
        "SSE-C GET over plain HTTP",
    );

    // Over TLS: served.
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sse-c test CA");
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let certs = ca.write_node_dir(&work.path().join("certs"), "node");
    let tls = Server::start_with(ServerOptions::new(2).certs_dir(certs)).await;
    aws_tls_ok(&tls, &ca_file, &["s3", "mb", "s3://sealed"]).await;
    let src = work.path().join("src.bin");
    std::fs::write(&src, b"customer-sealed").unwrap();
    let customer_key = "0123456789abcdef0123456789abcdef";
    aws_tls_ok(
        &tls,
        &ca_file,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "sealed",
            "--key",
            "x",
            "--body",
            &src.display().to_string(),
            "--sse-customer-algorithm",
            "AES256",
            "--sse-customer-key",
            customer_key,
        ],
    )
    .await;
    let back = work.path().join("back.bin");
    aws_tls_ok(
        &tls,
        &ca_file,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "sealed",
            "--key",
            "x",
            "--sse-customer-algorithm",
            "AES256",
            "--sse-customer-key",
            customer_key,
            &back.display().to_string(),
        ],
    )
    .await;
    assert_eq!(std::fs::read(&back).unwrap(), b"customer-sealed");
}

/// Item 14c: a client whose certificate the site CA signed, but whose identity nobody listed,
/// gets no data key; unset, the list lets nobody in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kes_lets_in_only_listed_identities() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("kes identities CA");
    let certs_a = ca.write_node_dir(&work.path().join("certs-a"), "site-a");
    let certs_b = ca.write_node_dir(&work.path().join("certs-b"), "site-b");
    let certs_c = ca.write_node_dir(&work.path().join("certs-c"), "some-other-node");
    let mut a = Server::start_with(
        ServerOptions::new(1)
            .certs_dir(certs_a)
            .env("CAIRN_KES_ADDRESS", "127.0.0.1:0"),
    )
    .await;
    // Key `k` through the admin API over HTTPS (signed, trusting the site CA).
    let url = format!("{}/cairn/admin/v1/kms/key/create?key=k", a.endpoint());
    let signed = a.signer().sign("POST", &url, &[], sigv4::UNSIGNED_PAYLOAD);
    let mut req = a.http().post(&url);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let r = req.send().await.expect("admin request");
    assert_eq!(r.status().as_u16(), 200, "create k: {:?}", r.text().await);

    let generate = |srv: &Server, certs: &Path| {
        let url = format!("https://127.0.0.1:{}/v1/key/generate/k", srv.kes_port());
        let client = kes_http(&ca.pem, Some(certs));
        async move { client.post(url).body("{}").send().await.unwrap() }
    };
    // No CAIRN_KES_IDENTITIES: a CA-signed certificate alone gets nothing.
    for certs in [&certs_b, &certs_c] {
        let r = generate(&a, certs).await;
        assert_eq!(
            r.status().as_u16(),
            403,
            "a CA-signed client was served without being listed: {:?}",
            r.text().await
        );
    }
    // B listed: B in, C (same CA) still out.
    a.set_env("CAIRN_KES_IDENTITIES", Some(&kes_identity(&certs_b)));
    a.restart().await;
    let r = generate(&a, &certs_b).await;
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let r = generate(&a, &certs_c).await;
    assert_eq!(r.status().as_u16(), 403, "{:?}", r.text().await);
}
