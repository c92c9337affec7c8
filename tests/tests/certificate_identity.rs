//! STS `AssumeRoleWithCertificate` over mutual TLS on the S3 port: a client certificate issued by
//! the certificates directory's `CAs/` buys a session whose policy is the one named by the
//! certificate's common name.

use cairn_tests::certs::TestCa;
use cairn_tests::*;

const READER: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::data/*"]}]}"#;

/// An HTTPS client of `srv` presenting `cert` (certificate and key PEM), if any.
fn with_cert(srv: &Server, cert: Option<&(String, String)>) -> reqwest::Client {
    let ca = certs::trusted_pem(&srv.certs_dir());
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some((cert, key)) = cert {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// The STS call as MinIO documents it (`curl -X POST --cert ... "https://host?Action=..."`):
/// Ok(status, body), or Err if the TLS handshake failed.
async fn assume(
    srv: &Server,
    cert: Option<&(String, String)>,
    query: &str,
) -> Result<(u16, String), String> {
    let url = format!(
        "{}/?Action=AssumeRoleWithCertificate&Version=2011-06-15{query}",
        srv.endpoint()
    );
    let r = with_cert(srv, cert)
        .post(url)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok((r.status().as_u16(), r.text().await.unwrap_or_default()))
}

async fn https_server(ca: &TestCa, enable: bool) -> Server {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut opts = ServerOptions::new(1).certs_dir(ca.write_node_dir(&dir, "127.0.0.1"));
    if enable {
        opts = opts.env("CAIRN_IDENTITY_TLS_ENABLE", "on");
    }
    Server::start_with(opts).await
}

fn root(srv: &Server) -> (&str, &str, Option<&str>) {
    (srv.access_key(), srv.secret_key(), None)
}

#[tokio::test]
async fn client_certificates_buy_sessions_with_the_policy_they_name() {
    let ca = TestCa::new("cairn-test-site-ca");
    let srv = https_server(&ca, true).await;
    let (status, body) = srv
        .signed(
            "POST",
            "/cairn/admin/v1/iam/policy/create?name=cert-reader",
            root(&srv),
            READER.as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(srv.signed("PUT", "/data", root(&srv), b"").await.0, 200);
    assert_eq!(srv.signed("PUT", "/data/k", root(&srv), b"v").await.0, 200);

    let reader = ca.issue("cert-reader");
    let (status, body) = assume(&srv, Some(&reader), "&DurationSeconds=900")
        .await
        .expect("handshake");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<AssumeRoleWithCertificateResult>"), "{body}");
    let (ak, sk, token) = (
        xml_tag(&body, "AccessKeyId").unwrap(),
        xml_tag(&body, "SecretAccessKey").unwrap(),
        xml_tag(&body, "SessionToken"),
    );
    let creds = (ak.as_str(), sk.as_str(), token.as_deref());
    assert_eq!(
        srv.signed("GET", "/data/k", creds, b"").await,
        (200, "v".into())
    );
    let (status, body) = srv.signed("PUT", "/data/k2", creds, b"x").await;
    assert_eq!(
        (status, xml_tag(&body, "Code").as_deref()),
        (403, Some("AccessDenied"))
    );

    // No certificate, a certificate naming no policy, an over-long session: refused.
    for (cert, query, want) in [
        (None, "", (403, "AccessDenied")),
        (Some(ca.issue("no-such-policy")), "", (403, "AccessDenied")),
        (
            Some(reader.clone()),
            "&DurationSeconds=43201",
            (400, "ValidationError"),
        ),
    ] {
        let (status, body) = assume(&srv, cert.as_ref(), query).await.expect("handshake");
        assert_eq!(
            (status, xml_tag(&body, "Code").as_deref()),
            (want.0, Some(want.1)),
            "{body}"
        );
        assert!(body.contains("<ErrorResponse"), "{body}");
    }
    // A certificate from another authority does not get past the handshake.
    let stranger = TestCa::new("someone-else").issue("cert-reader");
    assert!(assume(&srv, Some(&stranger), "").await.is_err());
    // Clients without certificates are served as before.
    assert_eq!(srv.signed("GET", "/data/k", root(&srv), b"").await.0, 200);
}

#[tokio::test]
async fn certificates_identify_no_one_unless_enabled() {
    let ca = TestCa::new("cairn-test-site-ca");
    let srv = https_server(&ca, false).await;
    let (status, body) = assume(&srv, Some(&ca.issue("readwrite")), "")
        .await
        .expect("handshake");
    assert_eq!(
        (status, xml_tag(&body, "Code").as_deref()),
        (400, Some("InvalidParameterValue")),
        "{body}"
    );
    // Enabling it without TLS on the S3 port is a start-up error naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = run_cairn(
        &[
            "server".into(),
            "--address".into(),
            format!("127.0.0.1:{}", free_port()),
            "--certs-dir".into(),
            dir.path().join("none").to_string_lossy().into(),
            dir.path().join("d").to_string_lossy().into(),
        ],
        &[("CAIRN_IDENTITY_TLS_ENABLE", "on")],
        std::time::Duration::from_secs(60),
    )
    .await;
    assert!(!status.success());
    assert!(
        format!("{out}{err}").contains("CAIRN_IDENTITY_TLS_ENABLE=on needs TLS"),
        "{out}{err}"
    );
}
