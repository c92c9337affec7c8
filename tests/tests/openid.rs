//! OpenID Connect identities against a real provider process: `oidc-provider-mock` from PyPI
//! (`.ci/run` installs it), started on a loopback port by each test. Tokens come from its real
//! authorization-code flow (a user's claims set through its `PUT /users/<sub>`); the provider runs
//! under libfaketime with an offset file, so a test can have it mint tokens that are already
//! expired or expire soon. Restarting it on the same port gives it a new signing key: a key
//! rotation Cairn must follow without a restart.
//!
//! boto3 drives `AssumeRoleWithWebIdentity` (unsigned, as SDKs send it) and the S3 calls made with
//! the session; raw POSTs check what SDKs hide (the error document, `AssumeRoleWithClientGrants`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cairn_tests::admin::AdminCli;
use cairn_tests::*;
use serde_json::{json, Value};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const CLIENT: &str = "cairn";
const REDIRECT: &str = "http://localhost/callback";
const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// A running `oidc-provider-mock`; killed on drop.
struct Idp {
    port: u16,
    child: Option<tokio::process::Child>,
    dir: tempfile::TempDir,
    starts: usize,
}

fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Idp {
    async fn start() -> Idp {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} missing: install Debian's libfaketime (.ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("offset"), "+0\n").unwrap();
        let mut idp = Idp {
            port: 0,
            child: None,
            dir,
            starts: 0,
        };
        for _ in 0..5 {
            idp.port = free_port();
            if idp.boot().await {
                return idp;
            }
        }
        panic!("oidc-provider-mock did not start: {}", idp.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("idp-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Spawns the provider on `self.port` and polls its discovery document; false when the
    /// process exits first (the port was taken).
    async fn boot(&mut self) -> bool {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("idp-{}.log", self.starts)))
            .unwrap();
        let offset = self.dir.path().join("offset");
        let mut child = tokio::process::Command::new("oidc-provider-mock")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &offset)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("run oidc-provider-mock (pip install oidc-provider-mock; .ci/run does)");
        let url = self.config_url();
        let http = no_redirects();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    self.child = Some(child);
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-provider-mock not ready in 30 s: {}", self.log());
    }

    /// Stops the provider and starts a new one on the same port: same issuer, new signing key,
    /// no users.
    async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
        assert!(
            self.boot().await,
            "restart on port {}: {}",
            self.port,
            self.log()
        );
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base())
    }

    /// Moves the provider's clock (libfaketime offset, e.g. `-2h`).
    fn set_clock(&self, offset: &str) {
        std::fs::write(self.dir.path().join("offset"), format!("{offset}\n")).unwrap();
    }

    async fn set_user(&self, sub: &str, claims: Value) {
        let r = no_redirects()
            .put(format!("{}/users/{sub}", self.base()))
            .header("content-type", "application/json")
            .body(claims.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204, "set user {sub}");
    }

    /// An id token for `sub` and `client`, through the authorization-code flow, asking the
    /// provider at `base` (its issuer is the URL it is asked at).
    async fn token_at(&self, base: &str, sub: &str, client: &str) -> String {
        let http = no_redirects();
        let r = http
            .post(format!(
                "{base}/oauth2/authorize?{}",
                form(&[
                    ("client_id", client),
                    ("redirect_uri", REDIRECT),
                    ("response_type", "code"),
                    ("scope", "openid"),
                ])
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("sub", sub)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 302, "authorize {sub}: {}", self.log());
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let code = location
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("code="))
            .unwrap_or_else(|| panic!("no code in {location}"))
            .to_owned();
        let r = http
            .post(format!("{base}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", client),
                ("client_secret", "client-secret"),
            ]))
            .send()
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        body["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token: {body}"))
            .to_owned()
    }

    async fn token(&self, sub: &str) -> String {
        self.token_at(&self.base(), sub, CLIENT).await
    }

    /// A token minted with the provider's clock `offset` away (its `exp` is one hour after).
    async fn token_minted(&self, offset: &str, sub: &str) -> String {
        self.set_clock(offset);
        let t = self.token(sub).await;
        self.set_clock("+0");
        t
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- oidc-provider-mock log ---\n{}", self.log());
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

fn provider_env(opts: ServerOptions, suffix: &str, idp: &Idp, client: &str) -> ServerOptions {
    let var = |k: &str| {
        if suffix.is_empty() {
            format!("CAIRN_IDENTITY_OPENID_{k}")
        } else {
            format!("CAIRN_IDENTITY_OPENID_{k}_{suffix}")
        }
    };
    opts.env(&var("CONFIG_URL"), &idp.config_url())
        .env(&var("CLIENT_ID"), client)
        .env(&var("CLIENT_SECRET"), "never-shown-client-secret")
}

/// An STS call as a raw unsigned POST: status, `x-amz-request-id`, body.
async fn sts(srv: &Server, pairs: &[(&str, &str)]) -> (u16, String, String) {
    let r = srv
        .http()
        .post(format!("{}/", srv.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .expect("STS call");
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("x-amz-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, id, r.text().await.unwrap())
}

async fn web_identity(srv: &Server, token: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut pairs = vec![
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleSessionName", "test"),
        ("WebIdentityToken", token),
    ];
    pairs.extend_from_slice(extra);
    let (status, _, body) = sts(srv, &pairs).await;
    (status, body)
}

/// The error code of an STS error document, checking the document is AWS's query-API shape.
fn sts_error(status: u16, body: &str) -> String {
    assert!(
        body.starts_with(&format!(
            "<ErrorResponse xmlns=\"{STS_XMLNS}\"><Error><Type>Sender</Type><Code>"
        )),
        "{status}: {body}"
    );
    assert!(
        xml_tag(body, "Message").is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        xml_tag(body, "RequestId").is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    xml_tag(body, "Code").unwrap()
}

async fn root_bucket(srv: &Server) {
    let c = srv.client();
    create_bucket(&c, "oidc").await;
    put(&c, "oidc", "k", b"hello").await;
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The boto3 part of the claim-based test: a session from a real token, used for S3, and the
/// refusals as boto3 reports them.
const BOTO3_FLOW: &str = r#"
from datetime import datetime, timezone
from joserfc import jwt
from joserfc.jwk import RSAKey
import base64, hashlib, hmac
EP = os.environ["EP"]
sts = client("sts", EP, None, None)
def assume(token, **kw):
    return sts.assume_role_with_web_identity(
        RoleArn="arn:aws:iam::123456789012:role/any", RoleSessionName="s", WebIdentityToken=token, **kw)
r = assume(os.environ["ALICE"], DurationSeconds=900)
c = r["Credentials"]
s3 = client("s3", EP, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
out = {
    "subject": r.get("SubjectFromWebIdentityToken"),
    "audience": r.get("Audience"),
    "provider": r.get("Provider"),
    "user": r["AssumedRoleUser"]["Arn"],
    "ttl": (c["Expiration"] - datetime.now(timezone.utc)).total_seconds(),
    "get": code(lambda: s3.get_object(Bucket="oidc", Key="k")["Body"].read()),
    "put": code(lambda: s3.put_object(Bucket="oidc", Key="new", Body=b"x")),
}
# A session policy narrows the session: reads of another key only.
narrow = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::oidc/other"}]})
c = assume(os.environ["ALICE"], Policy=narrow)["Credentials"]
narrowed = client("s3", EP, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
out["narrowed_get"] = code(lambda: narrowed.get_object(Bucket="oidc", Key="k"))
# The session is bounded by the token: this one expires 20 minutes from now.
r = assume(os.environ["SOON"], DurationSeconds=3600)
out["soon_ttl"] = (r["Credentials"]["Expiration"] - datetime.now(timezone.utc)).total_seconds()
out["default_ttl"] = (assume(os.environ["ALICE"])["Credentials"]["Expiration"]
                      - datetime.now(timezone.utc)).total_seconds()
# Tokens Cairn must refuse.
claims = {"iss": os.environ["ISSUER"], "aud": "cairn", "sub": "alice", "policy": "readwrite",
          "exp": int(time.time()) + 600, "iat": int(time.time())}
mine = RSAKey.generate_key(2048)
forged = jwt.encode({"alg": "RS256"}, claims, mine)
forged_kid = jwt.encode({"alg": "RS256", "kid": "rotated"}, claims, mine)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
body = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
none = body + "."
none_sig = body + "." + b64(b"x")
jwks = json.loads(urllib.request.urlopen(os.environ["JWKS"]).read())
n = jwks["keys"][0]["n"]
hs_input = b64(json.dumps({"alg": "HS256"}).encode()) + "." + b64(json.dumps(claims).encode())
hs = hs_input + "." + b64(hmac.new(n.encode(), hs_input.encode(), hashlib.sha256).digest())
for name, token in [("bob", os.environ["BOB"]), ("carol", os.environ["CAROL"]),
                    ("expired", os.environ["EXPIRED"]), ("other_issuer", os.environ["OTHER_ISSUER"]),
                    ("other_client", os.environ["OTHER_CLIENT"]), ("other_provider", os.environ["OTHER_PROVIDER"]),
                    ("forged", forged), ("forged_kid", forged_kid), ("none", none), ("none_sig", none_sig),
                    ("hs256", hs), ("garbage", "not-a-token")]:
    out[name] = code(lambda: assume(token))
print(json.dumps(out))
"#;

/// The claim-based provider: a valid token via boto3 buys a session with the policies its claim
/// names (those the site has), and every kind of bad token is refused with AWS's error code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_sessions_follow_the_policy_claim() {
    let idp = Idp::start().await;
    let other = Idp::start().await;
    let srv = Server::start_with(provider_env(ServerOptions::new(1), "", &idp, CLIENT)).await;
    root_bucket(&srv).await;
    idp.set_user("alice", json!({"policy": ["readonly", "no-such-policy"]}))
        .await;
    idp.set_user("bob", json!({"policy": "no-such-policy,nor-this"}))
        .await;
    idp.set_user("carol", json!({"email": "carol@example.org"}))
        .await;
    other
        .set_user("alice", json!({"policy": "readwrite"}))
        .await;
    let alice = idp.token("alice").await;
    let tokens = [
        ("ALICE", alice.clone()),
        ("BOB", idp.token("bob").await),
        ("CAROL", idp.token("carol").await),
        // Minted two hours ago: expired an hour ago.
        ("EXPIRED", idp.token_minted("-2h", "alice").await),
        // Minted 40 minutes ago: expires in 20 minutes.
        ("SOON", idp.token_minted("-40m", "alice").await),
        // The same provider and key, asked under another name: another issuer.
        (
            "OTHER_ISSUER",
            idp.token_at(&format!("http://localhost:{}", idp.port), "alice", CLIENT)
                .await,
        ),
        (
            "OTHER_CLIENT",
            idp.token_at(&idp.base(), "alice", "another-app").await,
        ),
        ("OTHER_PROVIDER", other.token("alice").await),
    ];
    let endpoint = srv.endpoint();
    let issuer = idp.base();
    let jwks = format!("{}/jwks", idp.base());
    let mut env: Vec<(&str, &str)> = vec![("EP", &endpoint), ("ISSUER", &issuer), ("JWKS", &jwks)];
    env.extend(tokens.iter().map(|(k, v)| (*k, v.as_str())));
    let v = boto3(BOTO3_FLOW, &env).await;
    assert_eq!(v["subject"], "alice", "{v}");
    assert_eq!(v["audience"], CLIENT, "{v}");
    assert_eq!(v["provider"], issuer.as_str(), "{v}");
    assert!(v["user"].as_str().unwrap().contains("alice"), "{v}");
    let ttl = v["ttl"].as_f64().unwrap();
    assert!((850.0..=900.0).contains(&ttl), "DurationSeconds=900: {v}");
    let ttl = v["default_ttl"].as_f64().unwrap();
    assert!((3300.0..=3600.0).contains(&ttl), "default one hour: {v}");
    let ttl = v["soon_ttl"].as_f64().unwrap();
    assert!(
        (1100.0..=1200.0).contains(&ttl),
        "bounded by the token's exp: {v}"
    );
    assert_eq!(v["get"], "ok", "readonly allows reads: {v}");
    assert_eq!(v["put"], "AccessDenied", "readonly refuses writes: {v}");
    assert_eq!(
        v["narrowed_get"], "AccessDenied",
        "the session policy narrows: {v}"
    );
    for (case, want) in [
        ("bob", "AccessDenied"),
        ("carol", "AccessDenied"),
        ("expired", "ExpiredTokenException"),
        ("other_issuer", "InvalidIdentityToken"),
        ("other_client", "InvalidIdentityToken"),
        ("other_provider", "InvalidIdentityToken"),
        ("forged", "InvalidIdentityToken"),
        ("forged_kid", "InvalidIdentityToken"),
        ("none", "InvalidIdentityToken"),
        ("none_sig", "InvalidIdentityToken"),
        ("hs256", "InvalidIdentityToken"),
        ("garbage", "InvalidIdentityToken"),
    ] {
        assert_eq!(v[case], want, "{case}: {v}");
    }

    // Each refusal for its own reason (the server logs why).
    let logs = format!("{}{}", srv.stdout(), srv.stderr());
    for why in [
        format!(
            "the token's issuer \"http://localhost:{}\" is not the provider's",
            idp.port
        ),
        "the token is not for client \"cairn\"".to_owned(),
        "the token is not signed by a key the provider publishes".to_owned(),
        "signature algorithm \"none\" is not accepted".to_owned(),
        "signature algorithm \"HS256\" is not accepted".to_owned(),
    ] {
        assert!(logs.contains(&why), "{why}");
    }

    // The error document, as AWS writes it.
    let (status, id, body) = sts(
        &srv,
        &[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("RoleSessionName", "s"),
            ("WebIdentityToken", &tokens[3].1),
        ],
    )
    .await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "ExpiredTokenException")
    );
    assert!(!id.is_empty(), "x-amz-request-id");
    let (status, body) = web_identity(&srv, &tokens[1].1, &[]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (403, "AccessDenied")
    );
    let (status, _, body) = sts(&srv, &[("Action", "AssumeRoleWithWebIdentity")]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "ValidationError")
    );
    let (status, body) = web_identity(&srv, &"A".repeat(20_001), &[]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "ValidationError")
    );
    let (status, body) = web_identity(&srv, &alice, &[("DurationSeconds", "60")]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "ValidationError")
    );
    let (status, body) =
        web_identity(&srv, &alice, &[("RoleArn", "arn:cairn:iam:::role/nope")]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "InvalidParameterValue")
    );

    // MinIO's AssumeRoleWithClientGrants takes the token as `Token`.
    let (status, _, body) = sts(
        &srv,
        &[("Action", "AssumeRoleWithClientGrants"), ("Token", &alice)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("<AssumeRoleWithClientGrantsResponse"),
        "{body}"
    );
    assert_eq!(
        xml_tag(&body, "SubjectFromToken").as_deref(),
        Some("alice"),
        "{body}"
    );
    assert!(xml_tag(&body, "SessionToken").is_some(), "{body}");

    // Latency of the flow once the provider's keys are cached.
    let mut took = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (status, body) = web_identity(&srv, &alice, &[]).await;
        took.push(t.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    eprintln!(
        "AssumeRoleWithWebIdentity p50 over 100 calls: {:?}",
        p50(took)
    );

    // The client secret appears nowhere in the server's output.
    let logs = format!("{}{}", srv.stdout(), srv.stderr());
    assert!(!logs.contains("never-shown-client-secret"), "{logs}");
}

/// Role-policy providers: the provider's RoleArn selects it, its tokens get its role policy,
/// and a token is only good at the provider (client) it was issued for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_arn_selects_a_role_policy_provider() {
    let idp = Idp::start().await;
    let opts = provider_env(ServerOptions::new(1), "", &idp, CLIENT);
    let opts = provider_env(opts, "APP2", &idp, "app2").env(
        "CAIRN_IDENTITY_OPENID_ROLE_POLICY_APP2",
        "readwrite,no-such-policy",
    );
    let opts = provider_env(opts, "APP3", &idp, "app3")
        .env("CAIRN_IDENTITY_OPENID_ROLE_POLICY_APP3", "no-such-policy");
    let srv = Server::start_with(opts).await;
    root_bucket(&srv).await;
    // The start-up log names each provider's role ARN, where operators find it.
    let logs = format!("{}{}", srv.stdout(), srv.stderr());
    let configured: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("OpenID Connect provider configured"))
        .collect();
    assert_eq!(configured.len(), 3, "{logs}");
    assert!(logs.contains("arn:cairn:iam:::role/APP2"), "{logs}");
    // Alice's claim grants nothing; the role does.
    idp.set_user("alice", json!({"policy": "no-such-policy"}))
        .await;
    let for_app2 = idp.token_at(&idp.base(), "alice", "app2").await;
    let for_app3 = idp.token_at(&idp.base(), "alice", "app3").await;
    let endpoint = srv.endpoint();
    let v = boto3(
        r#"
EP = os.environ["EP"]
sts = client("sts", EP, None, None)
def assume(arn, token):
    return sts.assume_role_with_web_identity(RoleArn=arn, RoleSessionName="s", WebIdentityToken=token)
c = assume("arn:cairn:iam:::role/APP2", os.environ["APP2"])["Credentials"]
s3 = client("s3", EP, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
print(json.dumps({
    "put": code(lambda: s3.put_object(Bucket="oidc", Key="by-role", Body=b"x")),
    "get": code(lambda: s3.get_object(Bucket="oidc", Key="by-role")),
    "claim_provider": code(lambda: assume("arn:aws:iam::123456789012:role/x", os.environ["APP2"])),
    "wrong_role": code(lambda: assume("arn:cairn:iam:::role/APP3", os.environ["APP2"])),
    "unknown_role": code(lambda: assume("arn:cairn:iam:::role/APP9", os.environ["APP2"])),
    "no_policy": code(lambda: assume("arn:cairn:iam:::role/APP3", os.environ["APP3"])),
}))
"#,
        &[
            ("EP", &endpoint),
            ("APP2", &for_app2),
            ("APP3", &for_app3),
        ],
    )
    .await;
    assert_eq!(v["put"], "ok", "{v}");
    assert_eq!(v["get"], "ok", "{v}");
    // Without the role's ARN the claim-based provider checks it: not its client.
    assert_eq!(v["claim_provider"], "InvalidIdentityToken", "{v}");
    assert_eq!(v["wrong_role"], "InvalidIdentityToken", "{v}");
    assert_eq!(v["unknown_role"], "InvalidParameterValue", "{v}");
    assert_eq!(v["no_policy"], "AccessDenied", "{v}");
}

/// What a user needs to manage its own service accounts (as in MinIO).
const SELF_SERVICE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:CreateServiceAccount"],"Resource":["arn:aws:s3:::*"]}]}"#;

/// With an OpenID provider the internal IDP takes no new users, but an OIDC user makes service
/// accounts for itself (issue 19 item 3), acting with the policies its token named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_users_make_their_own_service_accounts() {
    let idp = Idp::start().await;
    let srv = Server::start_with(provider_env(ServerOptions::new(1), "", &idp, CLIENT)).await;
    root_bucket(&srv).await;
    let admin = AdminCli::for_server("root", &srv).await;
    admin.policy("root", "self-service", SELF_SERVICE).await;
    let out = admin
        .fails(&["user", "add", "root", "mallory", "mallory-secret"])
        .await;
    assert!(out.contains("XMinioIAMActionNotAllowed"), "{out}");

    idp.set_user("alice", json!({"policy": ["readwrite", "self-service"]}))
        .await;
    let (status, body) = web_identity(&srv, &idp.token("alice").await, &[]).await;
    assert_eq!(status, 200, "{body}");
    let tag = |t: &str| xml_tag(&body, t).unwrap_or_else(|| panic!("no {t}: {body}"));
    let (ak, sk, token) = (
        tag("AccessKeyId"),
        tag("SecretAccessKey"),
        tag("SessionToken"),
    );
    let session = (ak.as_str(), sk.as_str(), Some(token.as_str()));
    let (status, body) = srv
        .signed("POST", "/cairn/admin/v1/iam/svcacct/add", session, b"{}")
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let svc = srv.client_with(
        v["access_key"].as_str().unwrap(),
        v["secret_key"].as_str().unwrap(),
    );
    let r = svc
        .put_object()
        .bucket("oidc")
        .key("by-alice-svc")
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert!(
        r.is_ok(),
        "the service account writes with readwrite: {r:?}"
    );
    assert_eq!(get(&svc, "oidc", "k").await, b"hello");
}

/// The provider rotates its signing key (a restart of the mock makes a new one): Cairn fetches
/// the new key set on the first token it cannot verify, without a restart; the old key's tokens
/// stop working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_provider_keys_work_without_a_restart() {
    let mut idp = Idp::start().await;
    let srv = Server::start_with(provider_env(ServerOptions::new(1), "", &idp, CLIENT)).await;
    idp.set_user("alice", json!({"policy": "readonly"})).await;
    let old = idp.token("alice").await;
    let t = Instant::now();
    let (status, body) = web_identity(&srv, &old, &[]).await;
    let first = t.elapsed();
    assert_eq!(status, 200, "{body}");
    let mut cached = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (status, body) = web_identity(&srv, &old, &[]).await;
        cached.push(t.elapsed());
        assert_eq!(status, 200, "{body}");
    }

    idp.restart().await;
    idp.set_user("alice", json!({"policy": "readonly"})).await;
    let new = idp.token("alice").await;
    let t = Instant::now();
    let (status, body) = web_identity(&srv, &new, &[]).await;
    let refreshed = t.elapsed();
    assert_eq!(status, 200, "the rotated key is fetched: {body}");
    let (status, body) = web_identity(&srv, &new, &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = web_identity(&srv, &old, &[]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "InvalidIdentityToken"),
        "the withdrawn key's tokens stop working"
    );
    // What the refresh itself cost, as the server logged it.
    let logs = format!("{}{}", srv.stdout(), srv.stderr());
    let fetches: Vec<String> = logs
        .lines()
        .filter(|l| l.contains("OpenID Connect keys fetched"))
        .filter_map(|l| l.split("elapsed_ms").nth(1))
        .map(|rest| {
            // The number after `=`, past the log's colour codes.
            let mut plain = String::new();
            let mut escape = false;
            for c in rest.chars() {
                match (escape, c) {
                    (false, '\u{1b}') => escape = true,
                    (true, 'm') => escape = false,
                    (false, c) if c.is_ascii_digit() || c == '.' => plain.push(c),
                    (false, '=') => {}
                    (false, _) if !plain.is_empty() => break,
                    _ => {}
                }
            }
            plain
        })
        .collect();
    assert!(
        fetches.len() >= 2,
        "a start-up fetch and the refresh: {logs}"
    );
    eprintln!(
        "STS latency: first call {first:?} (keys fetched at start), cached keys p50 {:?}, \
         call that refreshed the rotated keys {refreshed:?}; key fetches (discovery + JWKS, \
         then JWKS) took {fetches:?} ms",
        p50(cached)
    );
}

/// Bad settings stop the server at start with the variable named (and the secret not shown);
/// a provider that cannot be reached is AWS's `IDPCommunicationError`, not a failed start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_unreachable_providers() {
    let tmp = tempfile::tempdir().unwrap();
    let drive = tmp.path().join("d1");
    std::fs::create_dir_all(&drive).unwrap();
    let args = vec![
        "server".to_string(),
        "--address".into(),
        format!("127.0.0.1:{}", free_port()),
        "--certs-dir".into(),
        tmp.path().join("no-certs").display().to_string(),
        drive.display().to_string(),
    ];
    let closed = format!(
        "http://127.0.0.1:{}/.well-known/openid-configuration",
        free_port()
    );
    for (env, var) in [
        (
            vec![
                ("CAIRN_IDENTITY_OPENID_CONFIG_URL", closed.as_str()),
                (
                    "CAIRN_IDENTITY_OPENID_CLIENT_SECRET",
                    "never-shown-client-secret",
                ),
            ],
            "CAIRN_IDENTITY_OPENID_CLIENT_ID",
        ),
        (
            vec![
                ("CAIRN_IDENTITY_OPENID_CONFIG_URL", closed.as_str()),
                ("CAIRN_IDENTITY_OPENID_CLIENT_ID", "c"),
                (
                    "CAIRN_IDENTITY_OPENID_CLIENT_SECRET",
                    "never-shown-client-secret",
                ),
                ("CAIRN_IDENTITY_OPENID_ROLE_POLICY", "readonly"),
                ("CAIRN_IDENTITY_OPENID_CLAIM_NAME", "groups"),
            ],
            "CAIRN_IDENTITY_OPENID_CLAIM_NAME",
        ),
        (
            vec![
                ("CAIRN_IDENTITY_OPENID_CONFIG_URL", "not a url"),
                ("CAIRN_IDENTITY_OPENID_CLIENT_ID", "c"),
            ],
            "CAIRN_IDENTITY_OPENID_CONFIG_URL",
        ),
    ] {
        let mut env = env;
        env.push(("CAIRN_ROOT_USER", ROOT_USER));
        env.push(("CAIRN_ROOT_PASSWORD", ROOT_PASSWORD));
        env.push(("CAIRN_KMS_MASTER_KEY", TEST_MASTER_KEY));
        let (status, stdout, stderr) = run_cairn(&args, &env, Duration::from_secs(60)).await;
        assert!(!status.success(), "{var}: started\n{stdout}\n{stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        let all = format!("{stdout}{stderr}");
        assert!(!all.contains("never-shown-client-secret"), "{all}");
    }

    let srv = Server::start_with(
        ServerOptions::new(1)
            .env("CAIRN_IDENTITY_OPENID_CONFIG_URL", &closed)
            .env("CAIRN_IDENTITY_OPENID_CLIENT_ID", CLIENT),
    )
    .await;
    let (status, body) = web_identity(&srv, "a.b.c", &[]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "InvalidIdentityToken")
    );
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
    let (status, body) = web_identity(&srv, token, &[]).await;
    assert_eq!(
        (status, sts_error(status, &body).as_str()),
        (400, "IDPCommunicationError"),
        "{body}"
    );
}
