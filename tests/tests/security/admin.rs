//! Issue 16, items 3 and 5: the admin API must not hand out root's power or the site's
//! internode credentials.
//!
//! - Service accounts: a user allowed `admin:CreateServiceAccount` / `admin:UpdateServiceAccount`
//!   must not create a service account whose parent is root, nor re-key (or otherwise touch)
//!   root's service accounts, nor another user's without the extra permission.
//! - Membership: a user allowed `admin:ConfigUpdate` must not add a Raft learner at an address
//!   the attacker listens on (the leader would send it the internode token); root may add only
//!   nodes of the endpoint list; the internode token is not computable from the root password.

use std::time::Duration;

use cairn_tests::cluster::{Cluster, INTERNODE_OFFSET};
use cairn_tests::*;

/// A signed admin API call (`path_query` after `/cairn/admin/v1/`): status and body.
async fn admin(
    srv: &Server,
    (ak, sk): (&str, &str),
    method: &str,
    path_query: &str,
    body: &str,
) -> (u16, String) {
    let url = format!("{}/cairn/admin/v1/{path_query}", srv.endpoint());
    let signed =
        sigv4::Signer::new(ak, sk).sign(method, &url, &[], &sigv4::sha256_hex(body.as_bytes()));
    let mut req = srv
        .http()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            &url,
        )
        .body(body.to_string());
    for (k, v) in &signed.headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let r = req.send().await.expect("admin request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn admin_ok(srv: &Server, who: (&str, &str), method: &str, pq: &str, body: &str) -> String {
    let (status, text) = admin(srv, who, method, pq, body).await;
    assert_eq!(status, 200, "{method} {pq} as {}: {text}", who.0);
    text
}

fn root(srv: &Server) -> (&str, &str) {
    (srv.access_key(), srv.secret_key())
}

/// Creates user `name` with an inline-created policy `doc` attached.
async fn user_with_policy(srv: &Server, name: &str, secret: &str, doc: &str) {
    let r = root(srv);
    let add = format!(r#"{{"access_key":"{name}","secret_key":"{secret}"}}"#);
    admin_ok(srv, r, "POST", "iam/user/add", &add).await;
    let policy = format!("{name}-policy");
    admin_ok(
        srv,
        r,
        "POST",
        &format!("iam/policy/create?name={policy}"),
        doc,
    )
    .await;
    let attach = format!(r#"{{"policies":["{policy}"],"user":"{name}"}}"#);
    admin_ok(srv, r, "POST", "iam/policy/attach", &attach).await;
}

const SVC_ADMIN: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":["admin:CreateServiceAccount","admin:UpdateServiceAccount",
    "admin:RemoveServiceAccount","admin:ListServiceAccounts"]},
  {"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::ops-*","arn:aws:s3:::ops-*/*"]}]}"#;

/// Whether `ak`/`sk` can create bucket `bucket` (something only root-level credentials may do
/// here: the attacker's own policy allows only `ops-*` buckets).
async fn can_create_bucket(srv: &Server, ak: &str, sk: &str, bucket: &str) -> bool {
    srv.client_with(ak, sk)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_admin_cannot_take_root_or_other_users() {
    let srv = Server::start(1).await;
    let r = root(&srv);
    let root_ak = srv.access_key().to_string();
    user_with_policy(&srv, "ops", "ops-secret-1", SVC_ADMIN).await;
    user_with_policy(
        &srv,
        "bob",
        "bob-secret-1",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}"#,
    )
    .await;
    let ops = ("ops", "ops-secret-1");
    // Root's own service account, and one of bob's.
    admin_ok(
        &srv,
        r,
        "POST",
        "iam/svcacct/add",
        &format!(
            r#"{{"parent":"{root_ak}","access_key":"rootsvc","secret_key":"rootsvc-secret-1"}}"#
        ),
    )
    .await;
    admin_ok(
        &srv,
        r,
        "POST",
        "iam/svcacct/add",
        r#"{"parent":"bob","access_key":"bobsvc","secret_key":"bobsvc-secret-1"}"#,
    )
    .await;

    // Attack 1: a service account with parent root, made by a mere service-account admin.
    let (status, text) = admin(
        &srv,
        ops,
        "POST",
        "iam/svcacct/add",
        &format!(
            r#"{{"parent":"{root_ak}","access_key":"evilroot","secret_key":"evilroot-secret-1"}}"#
        ),
    )
    .await;
    if status == 200 {
        let used = can_create_bucket(&srv, "evilroot", "evilroot-secret-1", "stolen-1").await;
        panic!(
            "ops created a service account of root (root-equivalent use worked: {used}): {text}"
        );
    }
    assert_eq!(status, 403, "{text}");

    // Attack 2: re-keying root's service account, then using it.
    let (status, text) = admin(
        &srv,
        ops,
        "POST",
        "iam/svcacct/edit",
        r#"{"access_key":"rootsvc","secret_key":"hijacked-secret-1"}"#,
    )
    .await;
    if status == 200 {
        let used = can_create_bucket(&srv, "rootsvc", "hijacked-secret-1", "stolen-2").await;
        panic!("ops reset the secret of root's service account (used it: {used}): {text}");
    }
    assert_eq!(status, 403, "{text}");
    assert!(
        can_create_bucket(&srv, "rootsvc", "rootsvc-secret-1", "root-svc-still-works").await,
        "root's service account lost its secret"
    );
    // Nor any other change, removal or reading of root's accounts.
    for (method, pq, body) in [
        (
            "POST",
            "iam/svcacct/edit",
            r#"{"access_key":"rootsvc","status":"off"}"#,
        ),
        (
            "POST",
            "iam/svcacct/edit",
            r#"{"access_key":"rootsvc","remove_policy":true}"#,
        ),
        ("POST", "iam/svcacct/remove?access_key=rootsvc", ""),
        ("GET", "iam/svcacct/info?access_key=rootsvc", ""),
    ] {
        let (status, text) = admin(&srv, ops, method, pq, body).await;
        assert_eq!(status, 403, "{method} {pq} {body}: {text}");
    }
    let (status, text) = admin(
        &srv,
        ops,
        "GET",
        &format!("iam/svcacct/list?parent={root_ak}"),
        "",
    )
    .await;
    assert_eq!(status, 403, "list root's accounts: {text}");

    // Another user's accounts need more than the service-account actions.
    for (method, pq, body) in [
        (
            "POST",
            "iam/svcacct/add",
            r#"{"parent":"bob","access_key":"evilbob","secret_key":"evilbob-secret-1"}"#,
        ),
        (
            "POST",
            "iam/svcacct/edit",
            r#"{"access_key":"bobsvc","secret_key":"hijacked-secret-2"}"#,
        ),
        ("POST", "iam/svcacct/remove?access_key=bobsvc", ""),
        ("GET", "iam/svcacct/info?access_key=bobsvc", ""),
        ("GET", "iam/svcacct/list?parent=bob", ""),
    ] {
        let (status, text) = admin(&srv, ops, method, pq, body).await;
        assert_eq!(status, 403, "{method} {pq} {body}: {text}");
    }

    // Its own accounts: create (parent defaults to the caller), list, change, remove.
    let created = admin_ok(
        &srv,
        ops,
        "POST",
        "iam/svcacct/add",
        r#"{"access_key":"opssvc","secret_key":"opssvc-secret-1"}"#,
    )
    .await;
    assert!(created.contains("opssvc"), "{created}");
    admin_ok(
        &srv,
        ops,
        "POST",
        "iam/svcacct/add",
        r#"{"parent":"ops","access_key":"opssvc2","secret_key":"opssvc2-secret-1"}"#,
    )
    .await;
    assert!(can_create_bucket(&srv, "opssvc", "opssvc-secret-1", "ops-bucket").await);
    let list = admin_ok(&srv, ops, "GET", "iam/svcacct/list", "").await;
    assert!(
        list.contains("opssvc") && !list.contains("rootsvc") && !list.contains("bobsvc"),
        "{list}"
    );
    let info = admin_ok(&srv, ops, "GET", "iam/svcacct/info?access_key=opssvc", "").await;
    assert!(info.contains("\"parent\":\"ops\""), "{info}");
    admin_ok(
        &srv,
        ops,
        "POST",
        "iam/svcacct/edit",
        r#"{"access_key":"opssvc","secret_key":"opssvc-secret-2","status":"off"}"#,
    )
    .await;
    admin_ok(
        &srv,
        ops,
        "POST",
        "iam/svcacct/remove?access_key=opssvc2",
        "",
    )
    .await;

    // With the permissions that already reach bob, ops may manage bob's accounts; never root's.
    admin_ok(
        &srv,
        r,
        "POST",
        "iam/policy/create?name=user-admin",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:CreateUser","admin:GetUser"]}]}"#,
    )
    .await;
    admin_ok(
        &srv,
        r,
        "POST",
        "iam/policy/attach",
        r#"{"policies":["user-admin"],"user":"ops"}"#,
    )
    .await;
    admin_ok(
        &srv,
        ops,
        "POST",
        "iam/svcacct/add",
        r#"{"parent":"bob","access_key":"bobsvc2","secret_key":"bobsvc2-secret-1"}"#,
    )
    .await;
    admin_ok(&srv, ops, "GET", "iam/svcacct/info?access_key=bobsvc", "").await;
    let (status, text) = admin(
        &srv,
        ops,
        "POST",
        "iam/svcacct/edit",
        r#"{"access_key":"rootsvc","secret_key":"hijacked-secret-3"}"#,
    )
    .await;
    assert_eq!(status, 403, "root's account with admin:CreateUser: {text}");

    // Root's own service account is not root: it cannot mint another root account either.
    let (status, text) = admin(
        &srv,
        ("rootsvc", "rootsvc-secret-1"),
        "POST",
        "iam/svcacct/add",
        r#"{"access_key":"rootsvc2","secret_key":"rootsvc2-secret-1"}"#,
    )
    .await;
    assert_eq!(status, 403, "root's service account made another: {text}");
    // Root itself still can.
    admin_ok(
        &srv,
        r,
        "POST",
        "iam/svcacct/edit",
        r#"{"access_key":"rootsvc","status":"off"}"#,
    )
    .await;
}

/// The `x-cairn-internode` header of the first HTTP/2 request arriving on `listener`.
async fn capture_token(listener: tokio::net::TcpListener) -> Option<String> {
    let (tcp, _) = listener.accept().await.ok()?;
    let mut conn = h2::server::handshake(tcp).await.ok()?;
    let (req, _respond) = conn.accept().await?.ok()?;
    req.headers()
        .get("x-cairn-internode")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The gRPC status a `Raft/Status` call with internode token `token` gets from `port`.
async fn grpc_status_with_token(port: u16, token: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the internode port");
    let (client, conn) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let mut client = client.ready().await.expect("h2 ready");
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}/cairn.raft.v1.Raft/Status"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-cairn-internode", token)
        .body(())
        .unwrap();
    let (resp, mut body) = client.send_request(req, false).expect("send");
    // An empty StatusRequest: uncompressed, length 0.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("send body");
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("answer in time")
        .expect("response");
    if let Some(s) = resp.headers().get("grpc-status") {
        return s.to_str().unwrap_or_default().to_string();
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
    trailers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// What the internode token used to be: HMAC-SHA256 keyed by the root password over a fixed
/// string and the (endpoint-derived, hence public) deployment id.
fn old_internode_token(root_secret: &str, deployment_id: &str) -> String {
    use hmac::Mac;
    let mut m = <hmac::Hmac<sha2::Sha256>>::new_from_slice(root_secret.as_bytes()).unwrap();
    m.update(b"cairn-internode-v1\n");
    m.update(deployment_id.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_update_cannot_add_learners_and_token_is_not_from_the_password() {
    let site = Cluster::start(2, 1, None).await;
    let n0 = site.node(0);
    let r = root(n0);
    user_with_policy(
        n0,
        "cfg",
        "cfg-secret-1",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:ConfigUpdate","admin:ServerInfo"]}]}"#,
    )
    .await;

    // Attack: a user with admin:ConfigUpdate adds a learner at an address it listens on; the
    // leader would then send the site's internode token there.
    for (who, what) in [(("cfg", "cfg-secret-1"), "ConfigUpdate user"), (r, "root")] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let captured = tokio::spawn(capture_token(listener));
        let (status, text) = admin(
            n0,
            who,
            "POST",
            &format!("raft/add-learner?id=7&addr=127.0.0.1%3A{port}"),
            "",
        )
        .await;
        if status == 200 {
            let token = tokio::time::timeout(Duration::from_secs(20), captured)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            panic!("{what} added a learner outside the site; token captured: {token:?}; {text}");
        }
        captured.abort();
        let want = if what == "root" { 400 } else { 403 };
        assert_eq!(status, want, "{what}: {text}");
    }
    let status = admin_ok(n0, r, "GET", "raft/status", "").await;
    assert!(!status.contains("\"7\""), "learner 7 joined: {status}");

    // The token is no longer a function of the root password: the old derivation is refused
    // by the internode port, the site's own secret is accepted.
    let format: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(n0.drive(0).join(".cairn/format.json")).unwrap(),
    )
    .unwrap();
    let deployment = format["deployment_id"].as_str().unwrap();
    let internode = n0.port() + INTERNODE_OFFSET;
    let old = old_internode_token(ROOT_PASSWORD, deployment);
    assert_eq!(
        grpc_status_with_token(internode, &old).await,
        "16",
        "the internode port accepted a token computed from the root password"
    );
    let secrets: Vec<String> = site
        .nodes
        .iter()
        .map(|n| {
            let p = n.drive(0).join(".cairn/site-secret");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", p.display());
            }
            std::fs::read_to_string(&p).unwrap()
        })
        .collect();
    assert_eq!(secrets[0].len(), 64, "a 32-byte secret");
    assert_eq!(
        secrets[0], secrets[1],
        "every node holds the same site secret"
    );
    assert_eq!(grpc_status_with_token(internode, &secrets[0]).await, "0");

    // The site runs without mutual TLS, and says so.
    assert!(
        n0.stderr().contains("WITHOUT mutual TLS"),
        "no start-up warning"
    );
}

/// A service account narrowed by an inline policy manages its parent's accounts, so it must not
/// mint (or re-key, or widen) an account its policy does not narrow: that account would act with
/// everything the parent may do. Here the parent may create `ops-*` buckets; its narrowed
/// account may only read `ops-a` and manage service accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_service_account_cannot_mint_a_wider_one() {
    let srv = Server::start(1).await;
    user_with_policy(&srv, "ops", "ops-secret-1", SVC_ADMIN).await;
    let ops = ("ops", "ops-secret-1");
    let narrow_policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:CreateServiceAccount","admin:UpdateServiceAccount","admin:RemoveServiceAccount","admin:ListServiceAccounts","s3:GetObject"],"Resource":["arn:aws:s3:::ops-a/*"]}]}"#;
    let body = serde_json::json!({
        "access_key": "narrow", "secret_key": "narrow-secret-1", "policy": narrow_policy,
    });
    admin_ok(&srv, ops, "POST", "iam/svcacct/add", &body.to_string()).await;
    admin_ok(
        &srv,
        ops,
        "POST",
        "iam/svcacct/add",
        r#"{"access_key":"wide","secret_key":"wide-secret-1"}"#,
    )
    .await;
    let narrow = ("narrow", "narrow-secret-1");
    assert!(can_create_bucket(&srv, "wide", "wide-secret-1", "ops-by-wide").await);
    assert!(!can_create_bucket(&srv, "narrow", "narrow-secret-1", "ops-by-narrow").await);

    // Attack 1: a new account with no policy of its own. It is made, but narrowed as its maker.
    admin_ok(
        &srv,
        narrow,
        "POST",
        "iam/svcacct/add",
        r#"{"access_key":"escape","secret_key":"escape-secret-1"}"#,
    )
    .await;
    assert!(
        !can_create_bucket(&srv, "escape", "escape-secret-1", "ops-by-escape").await,
        "the narrowed account minted an account with its parent's full permissions"
    );
    let info = admin_ok(&srv, ops, "GET", "iam/svcacct/info?access_key=escape", "").await;
    assert!(info.contains("ops-a"), "the new account's policy: {info}");

    // Attack 2: a new account with a wider policy of its own.
    let wider = serde_json::json!({
        "access_key": "escape2", "secret_key": "escape2-secret-1",
        "policy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}"#,
    });
    let (status, text) = admin(&srv, narrow, "POST", "iam/svcacct/add", &wider.to_string()).await;
    assert_eq!(status, 403, "a wider policy: {text}");
    assert!(!can_create_bucket(&srv, "escape2", "escape2-secret-1", "ops-by-escape2").await);

    // Attack 3: dropping its own policy.
    let (status, text) = admin(
        &srv,
        narrow,
        "POST",
        "iam/svcacct/edit",
        r#"{"access_key":"narrow","remove_policy":true}"#,
    )
    .await;
    assert_eq!(status, 403, "removing its own policy: {text}");
    assert!(!can_create_bucket(&srv, "narrow", "narrow-secret-1", "ops-by-narrow").await);

    // Attack 4: re-keying (or disabling, or removing) an unnarrowed sibling to act through it.
    for (op, body) in [
        (
            "iam/svcacct/edit",
            r#"{"access_key":"wide","secret_key":"hijacked-secret-2"}"#,
        ),
        (
            "iam/svcacct/edit",
            r#"{"access_key":"wide","status":"off"}"#,
        ),
        ("iam/svcacct/remove?access_key=wide", ""),
    ] {
        let (status, text) = admin(&srv, narrow, "POST", op, body).await;
        assert_eq!(status, 403, "{op} {body}: {text}");
    }
    assert!(!can_create_bucket(&srv, "wide", "hijacked-secret-2", "ops-hijacked").await);
    assert!(can_create_bucket(&srv, "wide", "wide-secret-1", "ops-by-wide-again").await);

    // What stays allowed: managing accounts under its own policy, and the parent's full say.
    admin_ok(
        &srv,
        narrow,
        "POST",
        "iam/svcacct/edit",
        r#"{"access_key":"escape","secret_key":"escape-secret-2"}"#,
    )
    .await;
    admin_ok(
        &srv,
        narrow,
        "POST",
        "iam/svcacct/remove?access_key=escape",
        "",
    )
    .await;
    admin_ok(
        &srv,
        ops,
        "POST",
        "iam/svcacct/edit",
        r#"{"access_key":"narrow","remove_policy":true}"#,
    )
    .await;
    let info = admin_ok(&srv, ops, "GET", "iam/svcacct/info?access_key=narrow", "").await;
    assert!(
        info.contains("\"policy\":null"),
        "the policy was not removed: {info}"
    );
    assert!(can_create_bucket(&srv, "narrow", "narrow-secret-1", "ops-by-narrow").await);
}
