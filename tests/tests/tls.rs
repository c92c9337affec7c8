//! TLS: HTTPS on the S3 port (TLS 1.2 and 1.3 only), certificate renewal without a restart, and
//! mutual TLS between the nodes of a site (a peer without a certificate from the site's CA is
//! refused at the handshake). Clients: the `aws` CLI and Python's `ssl` module.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cairn_tests::certs::{write_pair, TestCa};
use cairn_tests::cluster::{Cluster, INTERNODE_OFFSET};
use cairn_tests::*;

/// Runs a Python snippet with `args`; returns (success, stdout + stderr).
async fn python(code: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(code)
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("python3 finished within 60 s")
    .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Connects with TLS between `min` and `max` (names of `ssl.TLSVersion`), trusting `ca`; prints
/// the negotiated version. Optional client certificate and key; optional HTTP/2 preface sent and
/// the first answer read (a server that refuses the client certificate fails there in TLS 1.3).
const HANDSHAKE: &str = r#"
import socket, ssl, sys
port, ca, lo, hi, cert, key, h2 = sys.argv[1:8]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.set_ciphers("ALL:@SECLEVEL=0")
ctx.minimum_version = getattr(ssl.TLSVersion, lo)
ctx.maximum_version = getattr(ssl.TLSVersion, hi)
if cert != "-":
    ctx.load_cert_chain(cert, key)
if h2 == "h2":
    ctx.set_alpn_protocols(["h2"])
with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        if h2 == "h2":
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            data = s.recv(64)
            if not data:
                sys.exit("connection closed without an answer")
        print(s.version())
"#;

/// The certificate a TLS server presents, as PEM.
const PEER_CERT: &str = r#"
import ssl, sys
print(ssl.get_server_certificate(("127.0.0.1", int(sys.argv[1]))))
"#;

async fn handshake(
    port: u16,
    ca: &Path,
    versions: (&str, &str),
    client: Option<(&Path, &Path)>,
    h2: bool,
) -> (bool, String) {
    let (cert, key) = client
        .map(|(c, k)| (c.display().to_string(), k.display().to_string()))
        .unwrap_or(("-".into(), "-".into()));
    python(
        HANDSHAKE,
        &[
            &port.to_string(),
            &ca.display().to_string(),
            versions.0,
            versions.1,
            &cert,
            &key,
            if h2 { "h2" } else { "-" },
        ],
    )
    .await
}

fn write_ca(dir: &Path, ca: &TestCa) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("ca.pem");
    std::fs::write(&p, &ca.pem).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_port_speaks_tls_1_2_and_1_3_only() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cairn test CA");
    let certs = ca.write_node_dir(&work.path().join("certs"), "node1");
    let ca_file = write_ca(work.path(), &ca);
    let srv = Server::start_with(ServerOptions::new(1).certs_dir(certs)).await;
    assert!(srv.endpoint().starts_with("https://"));
    assert!(srv.stdout().contains("https://"), "{}", srv.stdout());

    let data = random_bytes(300_000, 7);
    let src = work.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    aws_tls_ok(&srv, &ca_file, &["s3", "mb", "s3://secure"]).await;
    aws_tls_ok(
        &srv,
        &ca_file,
        &["s3", "cp", &src.display().to_string(), "s3://secure/obj"],
    )
    .await;
    let back = work.path().join("back.bin");
    aws_tls_ok(
        &srv,
        &ca_file,
        &["s3", "cp", "s3://secure/obj", &back.display().to_string()],
    )
    .await;
    assert_bytes_eq(&std::fs::read(&back).unwrap(), &data, "object over HTTPS");

    // A client that does not trust the site's CA is refused by its own verification.
    let stranger = write_ca(&work.path().join("other"), &TestCa::new("another CA"));
    let (ok, _, err) = aws_tls(&srv, &stranger, &["s3", "ls"]).await;
    assert!(!ok, "a client trusting another CA connected");
    assert!(
        err.to_lowercase().contains("ssl") || err.contains("certificate"),
        "{err}"
    );

    // Plain HTTP on the TLS port gets no S3 answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/cairn/health/live", srv.port()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "plain HTTP was served on the TLS port"
    );

    for v in ["TLSv1_2", "TLSv1_3"] {
        let (ok, out) = handshake(srv.port(), &ca_file, (v, v), None, false).await;
        assert!(ok, "{v} handshake failed: {out}");
        assert!(out.contains(&v.replace('_', ".")), "{v}: {out}");
    }
    let (ok, out) = handshake(srv.port(), &ca_file, ("TLSv1", "TLSv1_1"), None, false).await;
    assert!(!ok, "a TLS 1.0/1.1 handshake succeeded: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_is_served_without_restart() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cairn test CA");
    let certs = ca.write_node_dir(&work.path().join("certs"), "before");
    let srv = Server::start_with(ServerOptions::new(1).certs_dir(certs.clone())).await;
    let served = || async {
        let (ok, out) = python(PEER_CERT, &[&srv.port().to_string()]).await;
        assert!(ok, "{out}");
        out
    };
    let old = served().await;
    let (cert, key) = ca.issue("after");
    write_pair(&certs, &cert, &key);
    let normalize = |s: &str| s.split_whitespace().collect::<String>();
    let changed = poll_until(Duration::from_secs(30), || async {
        normalize(&served().await) == normalize(&cert)
    })
    .await;
    assert!(changed, "still serving the old certificate:\n{old}");
    assert_eq!(srv.starts(), 1);
    assert_eq!(srv.health("ready").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_nodes_talk_over_mutual_tls() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("site CA");
    let dirs: Vec<_> = (0..3)
        .map(|i| ca.write_node_dir(&work.path().join(format!("certs{i}")), &format!("node{i}")))
        .collect();
    let site = Cluster::start_with(3, 2, Some(2), |i| Some(dirs[i].clone())).await;
    let ca_file = write_ca(work.path(), &ca);
    assert!(site.node(0).endpoint().starts_with("https://"));

    // Shards of this object live on all three nodes: it can only be written and read back
    // through the internode (mutual TLS) data service.
    let data = random_bytes(2_500_000, 3);
    let src = work.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    aws_tls_ok(site.node(0), &ca_file, &["s3", "mb", "s3://tls-site"]).await;
    aws_tls_ok(
        site.node(0),
        &ca_file,
        &["s3", "cp", &src.display().to_string(), "s3://tls-site/obj"],
    )
    .await;
    let back = work.path().join("back.bin");
    aws_tls_ok(
        site.node(2),
        &ca_file,
        &["s3", "cp", "s3://tls-site/obj", &back.display().to_string()],
    )
    .await;
    assert_bytes_eq(&std::fs::read(&back).unwrap(), &data, "read through node 3");
    for n in &site.nodes {
        assert_eq!(n.health("cluster").await, 200);
    }

    // `admin info` over HTTPS: the answering node asks the others for their drives' room over
    // HTTPS too, so every drive shows it.
    let cli = cairn_tests::admin::AdminCli::for_server("site", site.node(0)).await;
    let cas = cli.dir().join("certs").join("CAs");
    std::fs::create_dir_all(&cas).unwrap();
    std::fs::write(cas.join("site.crt"), &ca.pem).unwrap();
    let info = cli.json(&["info", "site", "--json"]).await;
    let drives = info["drives"].as_array().expect("drives");
    assert_eq!(drives.len(), 6, "{info}");
    assert!(
        drives
            .iter()
            .all(|d| d["state"] == "ok" && d["free_bytes"].is_u64()),
        "{info}"
    );

    // The internode port: the site's own certificate gets an HTTP/2 answer; no certificate, or
    // one from another CA, is refused.
    let internode = site.node(1).port() + INTERNODE_OFFSET;
    let own = (dirs[0].join("public.crt"), dirs[0].join("private.key"));
    let (ok, out) = handshake(
        internode,
        &ca_file,
        ("TLSv1_2", "TLSv1_3"),
        Some((&own.0, &own.1)),
        true,
    )
    .await;
    assert!(ok, "a node certificate was refused: {out}");
    let (ok, out) = handshake(internode, &ca_file, ("TLSv1_2", "TLSv1_3"), None, true).await;
    assert!(
        !ok,
        "a client without a certificate reached the internode port: {out}"
    );
    let rogue = TestCa::new("rogue CA").write_node_dir(&work.path().join("rogue"), "rogue");
    let (ok, out) = handshake(
        internode,
        &ca_file,
        ("TLSv1_2", "TLSv1_3"),
        Some((&rogue.join("public.crt"), &rogue.join("private.key"))),
        true,
    )
    .await;
    assert!(
        !ok,
        "a certificate from another CA reached the internode port: {out}"
    );
}

/// `cairn admin` against a site that speaks HTTPS: trusted through `certs/CAs/` beside the alias
/// file, refused clearly without the site's authority or with another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_talks_https_to_a_site_it_trusts() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cairn test CA");
    let certs = ca.write_node_dir(&work.path().join("certs"), "node1");
    let srv = Server::start_with(ServerOptions::new(1).certs_dir(certs)).await;
    let cli = cairn_tests::admin::AdminCli::for_server("tls", &srv).await;
    let cas = cli.dir().join("certs").join("CAs");
    let out = cli.fails(&["user", "list", "tls"]).await;
    assert!(out.contains("TLS") && out.contains("certs/CAs"), "{out}");
    std::fs::create_dir_all(&cas).unwrap();
    std::fs::write(cas.join("other.crt"), &TestCa::new("someone else").pem).unwrap();
    let out = cli.fails(&["user", "list", "tls"]).await;
    assert!(out.contains("TLS"), "{out}");
    std::fs::write(cas.join("site.crt"), &ca.pem).unwrap();
    cli.ok(&["user", "add", "tls", "bob", "bob-secret-1"]).await;
    assert!(cli.ok(&["user", "list", "tls"]).await.contains("bob"));
    // A refusal from the server is reported as the server's.
    let out = cli.fails(&["user", "info", "tls", "nobody"]).await;
    assert!(out.contains("XMinioAdminNoSuchUser"), "{out}");
}
