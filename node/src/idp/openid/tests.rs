use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::json;

use super::jwt::tests::Signer;
use super::*;

const ISSUER: &str = "https://idp.test";
const CONFIG_URL: &str = "https://idp.test/.well-known/openid-configuration";
const JWKS_URL: &str = "https://idp.test/jwks";
const NOW: i64 = 1_800_000_000;
const NOW_NS: i64 = NOW * 1_000_000_000;

/// A provider's two documents, served from memory; counts the key set's fetches.
#[derive(Default)]
struct FakeIdp {
    jwks: Mutex<Option<Value>>,
    jwks_fetches: AtomicUsize,
}

impl FakeIdp {
    fn publish(&self, keys: Vec<Value>) {
        *self.jwks.lock().unwrap() = Some(json!({ "keys": keys }));
    }
    fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Fetch for FakeIdp {
    async fn get(&self, url: &str, max: usize) -> Result<Bytes, String> {
        assert_eq!(max, MAX_DOCUMENT);
        match url {
            CONFIG_URL => Ok(Bytes::from(
                json!({"issuer": ISSUER, "jwks_uri": JWKS_URL}).to_string(),
            )),
            JWKS_URL => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                // Let concurrent callers run while the fetch is under way.
                tokio::task::yield_now().await;
                match &*self.jwks.lock().unwrap() {
                    Some(doc) => Ok(Bytes::from(doc.to_string())),
                    None => Err("connection refused".into()),
                }
            }
            other => Err(format!("no such URL {other}")),
        }
    }
}

fn env(pairs: &[(&str, &str)]) -> (Vec<String>, BTreeMap<String, String>) {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect();
    (map.keys().cloned().collect(), map)
}

fn configure(pairs: &[(&str, &str)], idp: Arc<FakeIdp>) -> Result<Vec<Arc<Provider>>, ConfigError> {
    let (names, map) = env(pairs);
    from_vars(&names, &|k| map.get(k).cloned(), idp)
}

fn provider(extra: &[(&str, &str)]) -> (Arc<Provider>, Arc<FakeIdp>) {
    let idp = Arc::new(FakeIdp::default());
    let mut pairs = vec![("CONFIG_URL", CONFIG_URL), ("CLIENT_ID", "cairn")];
    pairs.extend_from_slice(extra);
    let mut ps = configure(&pairs, idp.clone()).unwrap();
    assert_eq!(ps.len(), 1);
    (ps.remove(0), idp)
}

fn claims(extra: Value) -> Value {
    let mut c =
        json!({"iss": ISSUER, "aud": "cairn", "sub": "alice", "exp": NOW + 600, "iat": NOW});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn err(pairs: &[(&str, &str)]) -> String {
    configure(pairs, Arc::new(FakeIdp::default()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "ok".into())
}

#[test]
fn settings_are_read_as_minio_names_them() {
    let idp = Arc::new(FakeIdp::default());
    let ps = configure(
        &[
            ("CONFIG_URL", CONFIG_URL),
            ("CLIENT_ID", "cairn"),
            ("CLIENT_SECRET", "hunter2-secret"),
            ("CLAIM_PREFIX", "https://cairn.test/"),
            ("CLAIM_NAME", "groups"),
            ("SCOPES", "openid, email"),
            ("REDIRECT_URI", "https://console.test/cb"),
            ("REDIRECT_URI_DYNAMIC", "off"),
            (
                "CONFIG_URL_APP2",
                "http://other.test/.well-known/openid-configuration",
            ),
            ("CLIENT_ID_APP2", "app2"),
            ("ROLE_POLICY_APP2", "readonly, diagnostics"),
            ("CONFIG_URL_OLD", "http://old.test/x"),
            ("CLIENT_ID_OLD", "old"),
            ("ENABLE_OLD", "off"),
        ],
        idp,
    )
    .unwrap();
    let names: Vec<&str> = ps.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["", "APP2"]);
    assert_eq!(ps[0].claim(), "https://cairn.test/groups");
    assert_eq!(ps[0].role(), None);
    assert_eq!(ps[0].scopes, ["openid", "email"]);
    assert_eq!(
        ps[1].role(),
        Some(&Role {
            arn: "arn:cairn:iam:::role/APP2".into(),
            policies: vec!["readonly".into(), "diagnostics".into()],
        })
    );
    // The secret is kept, never shown.
    assert_eq!(
        ps[0].client_secret.as_deref().map(String::as_str),
        Some("hunter2-secret")
    );
    let shown = format!("{:?}", ps);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<set>"), "{shown}");
    // A role-policy provider without a suffix is the `default` role.
    let (p, _) = provider(&[("ROLE_POLICY", "readwrite")]);
    assert_eq!(p.role().unwrap().arn, "arn:cairn:iam:::role/default");
    assert_eq!(p.claim(), "policy");
    assert!(configure(&[], Arc::new(FakeIdp::default()))
        .unwrap()
        .is_empty());
}

#[test]
fn bad_settings_name_their_variable() {
    let base = [
        ("CONFIG_URL", CONFIG_URL),
        ("CLIENT_ID", "cairn"),
        ("CLIENT_SECRET", "s3cr3t-value"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        err(&v)
    };
    let table: &[(&[(&str, &str)], &str)] = &[
        (
            &[("CLIENTID", "x")],
            "CAIRN_IDENTITY_OPENID_CLIENTID: not a setting",
        ),
        (
            &[("ROLE_POLICY", "readonly"), ("CLAIM_NAME", "groups")],
            "CAIRN_IDENTITY_OPENID_CLAIM_NAME: a provider maps",
        ),
        (
            &[("ROLE_POLICY", "readonly"), ("CLAIM_PREFIX", "x/")],
            "CAIRN_IDENTITY_OPENID_CLAIM_PREFIX: a provider maps",
        ),
        (
            &[("ROLE_POLICY", "a,,b")],
            "CAIRN_IDENTITY_OPENID_ROLE_POLICY: empty item",
        ),
        (
            &[("SCOPES", "openid,")],
            "CAIRN_IDENTITY_OPENID_SCOPES: empty item",
        ),
        (
            &[("CLAIM_USERINFO", "on")],
            "CAIRN_IDENTITY_OPENID_CLAIM_USERINFO: claims from the userinfo",
        ),
        (
            &[("ENABLE", "maybe")],
            "CAIRN_IDENTITY_OPENID_ENABLE: expected on or off",
        ),
        (
            &[("CLIENT_ID_APP2", "app2"), ("ROLE_POLICY_APP2", "readonly")],
            "CAIRN_IDENTITY_OPENID_CONFIG_URL_APP2: required",
        ),
        (
            &[
                ("CONFIG_URL_APP2", CONFIG_URL),
                ("ROLE_POLICY_APP2", "readonly"),
            ],
            "CAIRN_IDENTITY_OPENID_CLIENT_ID_APP2: required",
        ),
        (
            &[("CONFIG_URL_APP2", CONFIG_URL), ("CLIENT_ID_APP2", "app2")],
            "CAIRN_IDENTITY_OPENID_ROLE_POLICY_APP2: only one provider",
        ),
        (
            &[
                ("CONFIG_URL_APP2", CONFIG_URL),
                ("CLIENT_ID_APP2", "cairn"),
                ("ROLE_POLICY_APP2", "readonly"),
            ],
            "CAIRN_IDENTITY_OPENID_CLIENT_ID_APP2: client id \"cairn\"",
        ),
        (
            &[
                ("CONFIG_URL_DEFAULT", CONFIG_URL),
                ("CLIENT_ID_DEFAULT", "d"),
                ("ROLE_POLICY_DEFAULT", "readonly"),
            ],
            "CAIRN_IDENTITY_OPENID_CONFIG_URL_DEFAULT: \"default\"",
        ),
    ];
    for (extra, want) in table {
        let got = with(extra);
        assert!(got.starts_with(want), "{extra:?}: {got}");
        assert!(!got.contains("s3cr3t"), "{got}");
    }
    for url in ["idp.test/config", "ftp://idp.test/x", "https://", "::"] {
        let got = err(&[("CONFIG_URL", url), ("CLIENT_ID", "c")]);
        assert!(
            got.starts_with("CAIRN_IDENTITY_OPENID_CONFIG_URL: "),
            "{url}: {got}"
        );
    }
    assert!(
        err(&[("CONFIG_URL", CONFIG_URL)]).starts_with("CAIRN_IDENTITY_OPENID_CLIENT_ID: required")
    );
}

/// The claim to policy-name mapping, as MinIO reads the claim.
#[test]
fn policy_claim_mapping_table() {
    let table: &[(Value, &[&str])] = &[
        (json!("readwrite"), &["readwrite"]),
        (json!("readonly,diagnostics"), &["readonly", "diagnostics"]),
        (
            json!(" readonly , , writeonly "),
            &["readonly", "writeonly"],
        ),
        (json!(["readonly", "writeonly"]), &["readonly", "writeonly"]),
        (
            json!(["readonly,diagnostics", "readonly"]),
            &["readonly", "diagnostics"],
        ),
        (json!(["a", 7, null, {"x": 1}, ["b"]]), &["a"]),
        (json!(""), &[]),
        (json!([]), &[]),
        (json!(42), &[]),
        (json!({"policy": "readwrite"}), &[]),
        (json!(true), &[]),
    ];
    for (claim, want) in table {
        assert_eq!(claim_policies(Some(claim)), *want, "{claim}");
    }
    assert!(claim_policies(None).is_empty());
    let many: Vec<String> = (0..500).map(|i| format!("p{i}")).collect();
    assert_eq!(
        claim_policies(Some(&json!(many.join(",")))).len(),
        MAX_POLICIES
    );

    // Which claim: the prefix and name; a role-policy provider ignores the claim.
    let token =
        json!({"policy": "readonly", "https://cairn.test/policy": ["readwrite"], "groups": "g"});
    let token = token.as_object().unwrap();
    let (p, _) = provider(&[]);
    assert_eq!(p.policies(token), ["readonly"]);
    let (p, _) = provider(&[("CLAIM_PREFIX", "https://cairn.test/")]);
    assert_eq!(p.policies(token), ["readwrite"]);
    let (p, _) = provider(&[("CLAIM_NAME", "groups")]);
    assert_eq!(p.policies(token), ["g"]);
    let (p, _) = provider(&[("ROLE_POLICY", "consoleAdmin,readonly")]);
    assert_eq!(p.policies(token), ["consoleAdmin", "readonly"]);
}

#[tokio::test]
async fn tokens_are_checked_for_signature_issuer_audience_and_time() {
    let (p, idp) = provider(&[]);
    let key = Signer::rsa();
    idp.publish(vec![key.jwk(Some("k1"))]);
    let ok = p
        .verify(&key.token(Some("k1"), &claims(json!({}))), NOW_NS)
        .await
        .unwrap();
    assert_eq!(
        (
            ok.subject.as_str(),
            ok.issuer.as_str(),
            ok.audience.as_str()
        ),
        ("alice", ISSUER, "cairn")
    );
    assert_eq!(ok.expires_ns, (NOW + 600) * 1_000_000_000);
    let check = |c: Value| {
        let t = key.token(Some("k1"), &claims(c));
        let p = p.clone();
        async move { p.verify(&t, NOW_NS).await.err() }
    };
    assert_eq!(check(json!({})).await, None);
    assert_eq!(
        check(json!({"iss": "https://evil.test"})).await,
        Some(VerifyError::Issuer {
            got: "https://evil.test".into(),
            want: ISSUER.into()
        })
    );
    assert_eq!(
        check(json!({"aud": "other"})).await,
        Some(VerifyError::Audience("cairn".into()))
    );
    assert_eq!(check(json!({"aud": ["a", "cairn"]})).await, None);
    assert_eq!(check(json!({"aud": "other", "azp": "cairn"})).await, None);
    assert_eq!(
        check(json!({"aud": null})).await,
        Some(VerifyError::Audience("cairn".into()))
    );
    assert_eq!(
        check(json!({"exp": NOW})).await,
        Some(VerifyError::Expired { exp: NOW })
    );
    assert_eq!(
        check(json!({"exp": NOW - 3600})).await,
        Some(VerifyError::Expired { exp: NOW - 3600 })
    );
    assert_eq!(
        check(json!({"exp": null})).await,
        Some(VerifyError::Claim("exp"))
    );
    assert_eq!(
        check(json!({"exp": "soon"})).await,
        Some(VerifyError::Claim("exp"))
    );
    assert_eq!(check(json!({"exp": (NOW + 1) as f64 + 0.5})).await, None);
    assert_eq!(
        check(json!({"nbf": NOW + 60})).await,
        None,
        "within the leeway"
    );
    assert_eq!(
        check(json!({"nbf": NOW + 61})).await,
        Some(VerifyError::NotYetValid { nbf: NOW + 61 })
    );
    assert_eq!(
        check(json!({"sub": ""})).await,
        Some(VerifyError::Claim("sub"))
    );
    assert_eq!(
        check(json!({"sub": 7})).await,
        Some(VerifyError::Claim("sub"))
    );
    assert_eq!(
        check(json!({"iss": null})).await,
        Some(VerifyError::Claim("iss"))
    );
    // Discovery and keys were fetched once for all of these.
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test(start_paused = true)]
async fn rotated_keys_are_fetched_and_forgeries_cannot_hammer_the_provider() {
    let (p, idp) = provider(&[]);
    let (old, new, forger) = (Signer::ec(), Signer::rsa(), Signer::rsa());
    idp.publish(vec![old.jwk(None)]);
    let c = claims(json!({}));
    p.verify(&old.token(None, &c), NOW_NS).await.unwrap();
    assert_eq!(idp.fetches(), 1);
    // The provider rotates: the first token of the new key makes the set fetched again.
    idp.publish(vec![new.jwk(Some("new"))]);
    p.verify(&new.token(Some("new"), &c), NOW_NS).await.unwrap();
    assert_eq!(idp.fetches(), 2);
    // The old key is gone from the set: its tokens stop working (a kid-less token is not
    // known to be the old key's, so it may cause one fetch, but the interval since the last
    // one caused by a miss is too short).
    assert_eq!(
        p.verify(&old.token(None, &c), NOW_NS).await.err(),
        Some(VerifyError::Signature)
    );
    // A forged token naming a cached key is refused without asking the provider.
    assert_eq!(
        p.verify(&forger.token(Some("new"), &c), NOW_NS).await.err(),
        Some(VerifyError::Signature)
    );
    // A flood of forged tokens with unknown keys: at most one fetch per interval.
    tokio::time::advance(MIN_REFRESH_INTERVAL).await;
    let before = idp.fetches();
    for i in 0..50 {
        let t = forger.token(Some(&format!("k{i}")), &c);
        assert_eq!(
            p.verify(&t, NOW_NS).await.err(),
            Some(VerifyError::Signature)
        );
    }
    assert_eq!(idp.fetches(), before + 1);
    tokio::time::advance(MIN_REFRESH_INTERVAL).await;
    assert_eq!(
        p.verify(&forger.token(None, &c), NOW_NS).await.err(),
        Some(VerifyError::Signature)
    );
    assert_eq!(idp.fetches(), before + 2);
    // Old keys are fetched again after an hour even without a miss.
    tokio::time::advance(KEYS_MAX_AGE).await;
    p.verify(&new.token(Some("new"), &c), NOW_NS).await.unwrap();
    assert_eq!(idp.fetches(), before + 3);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_provider_is_retried_but_not_hammered() {
    let (p, idp) = provider(&[]);
    let key = Signer::ed();
    let t = key.token(None, &claims(json!({})));
    let unreachable = |e: Option<VerifyError>| matches!(e, Some(VerifyError::Unreachable(_)));
    assert!(unreachable(p.verify(&t, NOW_NS).await.err()));
    assert!(unreachable(p.verify(&t, NOW_NS).await.err()));
    assert_eq!(
        idp.fetches(),
        1,
        "the second call did not ask again so soon"
    );
    idp.publish(vec![key.jwk(None)]);
    tokio::time::advance(MIN_REFRESH_INTERVAL).await;
    p.verify(&t, NOW_NS).await.unwrap();
    assert_eq!(idp.fetches(), 2);
    // Once keys are known, an unreachable provider leaves them in use.
    *idp.jwks.lock().unwrap() = None;
    tokio::time::advance(KEYS_MAX_AGE).await;
    p.verify(&t, NOW_NS).await.unwrap();
    assert_eq!(idp.fetches(), 3);
    // Malformed tokens never reach the provider.
    let before = idp.fetches();
    for bad in ["", "x.y.z", "eyJhbGciOiJub25lIn0.e30.AA"] {
        assert!(
            matches!(
                p.verify(bad, NOW_NS).await.err(),
                Some(VerifyError::Malformed(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(idp.fetches(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_after_a_rotation_share_one_fetch() {
    let (p, idp) = provider(&[]);
    let (old, new) = (Signer::ed(), Signer::ed());
    idp.publish(vec![old.jwk(Some("old"))]);
    let c = claims(json!({}));
    p.verify(&old.token(Some("old"), &c), NOW_NS).await.unwrap();
    idp.publish(vec![new.jwk(Some("new"))]);
    let token = new.token(Some("new"), &c);
    let logins: Vec<_> = (0..32)
        .map(|_| {
            let (p, t) = (p.clone(), token.clone());
            tokio::spawn(async move { p.verify(&t, NOW_NS).await })
        })
        .collect();
    for login in logins {
        assert_eq!(login.await.unwrap().unwrap().subject, "alice");
    }
    assert_eq!(
        idp.fetches(),
        2,
        "one fetch at first use, one for the rotation"
    );
}

/// A network whose every connection is answered by `response` (after the request's head), or
/// never answered; the request heads are kept.
struct Canned {
    response: Option<Vec<u8>>,
    requests: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl crate::net::Dial for Canned {
    async fn dial(&self, _host: &str, _port: u16) -> std::io::Result<Box<dyn crate::net::Stream>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let response = self.response.clone();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match server.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            requests
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            match response {
                Some(r) => {
                    let _ = server.write_all(&r).await;
                    let _ = server.shutdown().await;
                }
                None => std::future::pending::<()>().await,
            }
        });
        Ok(Box::new(client))
    }
}

fn canned(response: Option<&str>) -> (Link, Arc<Mutex<Vec<String>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let dial = Canned {
        response: response.map(|r| r.as_bytes().to_vec()),
        requests: requests.clone(),
    };
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    (Link::new(Arc::new(dial), b"", clock), requests)
}

/// The production fetcher ([`Link::get`] over a handed-in network): what it asks, and that a
/// provider's error status, oversized answer or silence is an error, not a hang.
#[tokio::test(start_paused = true)]
async fn provider_fetches_are_bounded_in_size_status_and_time() {
    let (link, requests) = canned(Some(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    ));
    let body = Fetch::get(
        &link,
        "http://idp.test:8080/.well-known/openid-configuration?x=1",
        64,
    )
    .await
    .unwrap();
    assert_eq!(&body[..], b"{}");
    let head = requests.lock().unwrap()[0].to_lowercase();
    assert!(
        head.starts_with("get /.well-known/openid-configuration?x=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("host: idp.test:8080\r\n"), "{head}");
    assert!(!head.contains("authorization"), "{head}");

    let (link, _) = canned(Some("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"));
    let e = Fetch::get(&link, "http://idp.test/jwks", 64)
        .await
        .unwrap_err();
    assert!(e.contains("404"), "{e}");

    let big = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{}",
        "x".repeat(100)
    );
    let (link, _) = canned(Some(&big));
    let e = Fetch::get(&link, "http://idp.test/jwks", 64)
        .await
        .unwrap_err();
    assert!(e.contains("at most 64 bytes"), "{e}");

    for url in ["ftp://idp.test/x", "idp.test/x", "http:///x"] {
        let (link, requests) = canned(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(Fetch::get(&link, url, 64).await.is_err(), "{url}");
        assert!(requests.lock().unwrap().is_empty(), "{url}");
    }

    // A provider that takes the request and never answers: the provider's own deadline ends it.
    let (link, _) = canned(None);
    let names = vec![format!("{PREFIX}CONFIG_URL"), format!("{PREFIX}CLIENT_ID")];
    let vars = |k: &str| match k.strip_prefix(PREFIX) {
        Some("CONFIG_URL") => Some("http://idp.test/.well-known/openid-configuration".to_owned()),
        Some("CLIENT_ID") => Some("cairn".to_owned()),
        _ => None,
    };
    let p = from_vars(&names, &vars, Arc::new(link)).unwrap().remove(0);
    let started = Instant::now();
    let e = p
        .verify(&Signer::ed().token(None, &claims(json!({}))), NOW_NS)
        .await
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::Unreachable(ref m) if m.contains("no answer within")),
        "{e}"
    );
    assert_eq!(started.elapsed(), FETCH_TIMEOUT);
}
