//! KES: one site serves its KMS key registry over the KES API (`CAIRN_KES_ADDRESS`, mutual TLS),
//! and a second `cairn` uses it for SSE-KMS (`CAIRN_KMS_KES_*`). Driven with the `aws` CLI over
//! HTTPS; the KES endpoint itself with reqwest and client certificates from the site CA and from
//! another CA.

use std::path::Path;
use std::time::Duration;

use cairn_tests::certs::TestCa;
use cairn_tests::*;

const KEY: &str = "shared-key";

/// `aws s3api get-object` into `to`; `Err(stderr)` when it fails.
async fn get_object(srv: &Server, ca: &Path, key: &str, to: &Path) -> Result<Vec<u8>, String> {
    let _ = std::fs::remove_file(to);
    let (ok, out, err) = aws_tls(
        srv,
        ca,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "vault",
            "--key",
            key,
            &to.display().to_string(),
        ],
    )
    .await;
    if ok {
        Ok(std::fs::read(to).unwrap())
    } else {
        Err(format!("{out}{err}"))
    }
}

/// A signed admin API call on `srv` (HTTPS, trusting its CA); returns (status, body).
async fn admin(srv: &Server, op: &str, key: &str) -> (u16, String) {
    let url = format!("{}/cairn/admin/v1/kms/key/{op}?key={key}", srv.endpoint());
    let signed = srv
        .signer()
        .sign("POST", &url, &[], sigv4::UNSIGNED_PAYLOAD);
    let mut req = srv.http().post(&url);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let r = req.send().await.expect("admin request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn json_of(r: reqwest::Response) -> serde_json::Value {
    let bytes = r.bytes().await.expect("KES answer");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("KES answer {:?}: {e}", String::from_utf8_lossy(&bytes)))
}

fn head_json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("head-object output {out:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_cairn_uses_the_first_ones_kes_endpoint_over_mtls() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("kes test CA");
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let certs_a = ca.write_node_dir(&work.path().join("certs-a"), "site-a");
    let certs_b = ca.write_node_dir(&work.path().join("certs-b"), "site-b");

    // Site A: the key registry, served over KES to B's identity only.
    let a = Server::start_with(
        ServerOptions::new(1)
            .certs_dir(certs_a.clone())
            .env("CAIRN_KES_ADDRESS", "127.0.0.1:0")
            .env(
                "CAIRN_KES_IDENTITIES",
                &cairn_tests::certs::kes_identity(&certs_b),
            ),
    )
    .await;
    let kes = format!("https://127.0.0.1:{}", a.kes_port());
    let client_b = kes_http(&ca.pem, Some(&certs_b));
    let status = client_b
        .get(format!("{kes}/v1/status"))
        .send()
        .await
        .expect("KES status over mutual TLS");
    assert_eq!(status.status().as_u16(), 200);
    let status = json_of(status).await;
    assert_eq!(status["keystore_unreachable"], false, "{status}");

    let create = |name: &str| client_b.post(format!("{kes}/v1/key/create/{name}")).send();
    let r = create(KEY).await.expect("create");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let r = create(KEY).await.expect("create again");
    assert_eq!(r.status().as_u16(), 400);
    let body = json_of(r).await;
    assert_eq!(body["message"], "key already exists");
    // The key is a registry key of site A, like one `cairn admin kms key create` makes.
    let (st, body) = admin(&a, "enable", KEY).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("enabled"), "{body}");
    let r = client_b
        .post(format!("{kes}/v1/key/generate/no-such-key"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body = json_of(r).await;
    assert_eq!(body["message"], "key does not exist");

    // Clients the listener must refuse: a certificate from another CA, and none at all.
    let rogue_dir =
        TestCa::new("rogue CA").write_node_dir(&work.path().join("certs-rogue"), "rogue");
    for (what, client) in [
        ("another CA", kes_http(&ca.pem, Some(&rogue_dir))),
        ("no certificate", kes_http(&ca.pem, None)),
    ] {
        let r = client.get(format!("{kes}/v1/status")).send().await;
        assert!(
            !r.as_ref().is_ok_and(|r| r.status().is_success()),
            "a client with {what} was served: {r:?}"
        );
        let r = client
            .post(format!("{kes}/v1/key/generate/{KEY}"))
            .body("{}")
            .send()
            .await;
        assert!(
            !r.as_ref().is_ok_and(|r| r.status().is_success()),
            "a client with {what} got a data key: {r:?}"
        );
    }

    // Site B: its KMS is A's KES endpoint; its certificate (same CA) is its KES identity, and
    // it trusts A through its own CAs/ (no CAIRN_KMS_KES_CAPATH).
    let b = Server::start_with(
        ServerOptions::new(4)
            .certs_dir(certs_b.clone())
            .env("CAIRN_KMS_KES_ENDPOINT", &kes)
            .env(
                "CAIRN_KMS_KES_CERT_FILE",
                &certs_b.join("public.crt").display().to_string(),
            )
            .env(
                "CAIRN_KMS_KES_KEY_FILE",
                &certs_b.join("private.key").display().to_string(),
            )
            .env("CAIRN_KMS_KES_KEY_NAME", KEY),
    )
    .await;

    aws_tls_ok(&b, &ca_file, &["s3", "mb", "s3://vault"]).await;
    let small = random_bytes(300_000, 11);
    let src = work.path().join("small.bin");
    std::fs::write(&src, &small).unwrap();
    aws_tls_ok(
        &b,
        &ca_file,
        &[
            "s3",
            "cp",
            &src.display().to_string(),
            "s3://vault/small",
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            KEY,
        ],
    )
    .await;
    let back = work.path().join("back.bin");
    let got = get_object(&b, &ca_file, "small", &back).await.unwrap();
    assert_bytes_eq(&got, &small, "SSE-KMS object through B");
    let head = head_json(
        &aws_tls_ok(
            &b,
            &ca_file,
            &[
                "s3api",
                "head-object",
                "--bucket",
                "vault",
                "--key",
                "small",
            ],
        )
        .await,
    );
    assert_eq!(head["ServerSideEncryption"], "aws:kms", "{head}");
    assert_eq!(head["SSEKMSKeyId"], KEY, "{head}");

    // SSE-S3 on B uses the KES default key too.
    aws_tls_ok(
        &b,
        &ca_file,
        &[
            "s3",
            "cp",
            &src.display().to_string(),
            "s3://vault/sse-s3",
            "--sse",
            "AES256",
        ],
    )
    .await;
    let got = get_object(&b, &ca_file, "sse-s3", &back).await.unwrap();
    assert_bytes_eq(&got, &small, "SSE-S3 object through B");

    // A key A does not have: the same error the built-in registry gives.
    let (ok, out, err) = aws_tls(
        &b,
        &ca_file,
        &[
            "s3",
            "cp",
            &src.display().to_string(),
            "s3://vault/nokey",
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            "no-such-key",
        ],
    )
    .await;
    assert!(!ok, "PUT under an unknown KES key succeeded: {out}");
    assert!(err.contains("KMS.NotFoundException"), "{err}");

    // 100 MiB through B: the CLI uploads it in parts (multipart), each encrypted.
    let big = random_bytes(100 * MIB, 12);
    let big_src = work.path().join("big.bin");
    std::fs::write(&big_src, &big).unwrap();
    aws_tls_ok(
        &b,
        &ca_file,
        &[
            "s3",
            "cp",
            &big_src.display().to_string(),
            "s3://vault/big",
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            KEY,
        ],
    )
    .await;
    let head = head_json(
        &aws_tls_ok(
            &b,
            &ca_file,
            &["s3api", "head-object", "--bucket", "vault", "--key", "big"],
        )
        .await,
    );
    assert_eq!(head["ServerSideEncryption"], "aws:kms", "{head}");
    assert_eq!(head["SSEKMSKeyId"], KEY, "{head}");
    assert_eq!(head["ContentLength"], 100 * MIB as u64, "{head}");
    let etag = head["ETag"].as_str().unwrap_or_default();
    assert!(etag.contains('-'), "not a multipart upload: {etag}");
    let big_back = work.path().join("big-back.bin");
    let got = get_object(&b, &ca_file, "big", &big_back).await.unwrap();
    assert_bytes_eq(&got, &big, "100 MiB multipart SSE-KMS object");
    drop(got);

    // The data keys live in A: disabling the key there makes B's objects unreadable, enabling it
    // gives them back, deleting it erases them for good; each with the registry's S3 error code.
    let (st, body) = admin(&a, "disable", KEY).await;
    assert_eq!(st, 200, "{body}");
    let err = get_object(&b, &ca_file, "small", &back)
        .await
        .expect_err("read under a disabled key");
    assert!(err.contains("KMS.DisabledException"), "{err}");
    let err = get_object(&b, &ca_file, "big", &big_back)
        .await
        .expect_err("read under a disabled key");
    assert!(err.contains("KMS.DisabledException"), "{err}");
    let (st, body) = admin(&a, "enable", KEY).await;
    assert_eq!(st, 200, "{body}");
    let got = get_object(&b, &ca_file, "small", &back).await.unwrap();
    assert_bytes_eq(&got, &small, "readable again once enabled");
    let (st, body) = admin(&a, "delete", KEY).await;
    assert_eq!(st, 200, "{body}");
    let err = get_object(&b, &ca_file, "small", &back)
        .await
        .expect_err("read under a deleted key");
    assert!(err.contains("KMS.KMSInvalidStateException"), "{err}");
    // A deleted name is never reused.
    let r = create(KEY).await.expect("create after delete");
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kes_client_configuration_errors_name_the_variable() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("kes config CA");
    let certs = ca.write_node_dir(&work.path().join("certs"), "node");
    let drive = work.path().join("d1");
    std::fs::create_dir_all(&drive).unwrap();
    let missing = work.path().join("missing.key");
    let cert = certs.join("public.crt").display().to_string();
    let start = |env: Vec<(&'static str, String)>| {
        let args: Vec<String> = [
            "server",
            "--address",
            "127.0.0.1:0",
            "--certs-dir",
            &certs.display().to_string(),
            &drive.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        async move {
            let mut env = env;
            env.push(("CAIRN_ROOT_USER", ROOT_USER.to_string()));
            env.push(("CAIRN_ROOT_PASSWORD", ROOT_PASSWORD.to_string()));
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            run_cairn(&args, &env, Duration::from_secs(60)).await
        }
    };
    let base = |key_file: &str| {
        vec![
            (
                "CAIRN_KMS_KES_ENDPOINT",
                "https://127.0.0.1:7373".to_string(),
            ),
            ("CAIRN_KMS_KES_CERT_FILE", cert.clone()),
            ("CAIRN_KMS_KES_KEY_FILE", key_file.to_string()),
            ("CAIRN_KMS_KES_KEY_NAME", "k".to_string()),
        ]
    };
    let (status, _, err) = start(base(&missing.display().to_string())).await;
    assert!(!status.success(), "started with a missing key file");
    assert!(
        err.contains("CAIRN_KMS_KES_KEY_FILE") && err.contains("missing.key"),
        "{err}"
    );
    let mut env = base(&certs.join("private.key").display().to_string());
    env.retain(|(k, _)| *k != "CAIRN_KMS_KES_KEY_NAME");
    let (status, _, err) = start(env).await;
    assert!(!status.success(), "started without a key name");
    assert!(err.contains("CAIRN_KMS_KES_KEY_NAME"), "{err}");
    assert!(
        !err.contains("PRIVATE KEY"),
        "key material in the error: {err}"
    );
}
