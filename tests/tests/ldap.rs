//! AD/LDAP identities against a real OpenLDAP `slapd`: `AssumeRoleWithLDAPIdentity`, policies
//! mapped to user and group DNs (`cairn admin idp ldap policy ...`), a directory user's own
//! service account and what happens when the user leaves the directory, StartTLS.

use std::time::{Duration, Instant};

use cairn_tests::admin::{AdminCli, CLI_TIMEOUT};
use cairn_tests::aws_sdk_s3::primitives::ByteStream;
use cairn_tests::ldap::{group_dn, user_dn, Slapd, ADMIN_DN, ADMIN_PASSWORD, SUFFIX};
use cairn_tests::*;

/// The server's environment for the directory `slapd`, over plain LDAP unless `extra` says.
fn ldap_env(slapd: &Slapd, extra: &[(&str, &str)]) -> ServerOptions {
    let mut opts = ServerOptions::new(1)
        .env("CAIRN_IDENTITY_LDAP_SERVER_ADDR", &slapd.addr())
        .env("CAIRN_IDENTITY_LDAP_LOOKUP_BIND_DN", ADMIN_DN)
        .env("CAIRN_IDENTITY_LDAP_LOOKUP_BIND_PASSWORD", ADMIN_PASSWORD)
        .env(
            "CAIRN_IDENTITY_LDAP_USER_DN_SEARCH_BASE_DN",
            &format!("ou=people,{SUFFIX}"),
        )
        .env("CAIRN_IDENTITY_LDAP_USER_DN_SEARCH_FILTER", "(uid=%s)")
        .env(
            "CAIRN_IDENTITY_LDAP_GROUP_SEARCH_BASE_DN",
            &format!("ou=groups,{SUFFIX}"),
        )
        .env(
            "CAIRN_IDENTITY_LDAP_GROUP_SEARCH_FILTER",
            "(&(objectClass=groupOfNames)(member=%d))",
        );
    if extra.is_empty() {
        opts = opts.env("CAIRN_IDENTITY_LDAP_SERVER_INSECURE", "on");
    }
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    opts
}

/// A server started with `opts`, its bucket `data`, and the CLI with alias `root` for it.
async fn site_with_data(opts: ServerOptions) -> (Server, AdminCli) {
    let srv = Server::start_with(opts).await;
    let admin = AdminCli::for_server("root", &srv).await;
    srv.client()
        .create_bucket()
        .bucket("data")
        .send()
        .await
        .unwrap();
    (srv, admin)
}

/// `cairn admin idp ldap policy VERB root POLICY... --user|--group DN`, asserting it succeeds or
/// fails as `ok` says; returns the output.
async fn ldap_policy(
    admin: &AdminCli,
    verb: &str,
    policies: &[&str],
    flag: &str,
    dn: &str,
    ok: bool,
) -> String {
    let mut args = vec!["idp", "ldap", "policy", verb, "root"];
    args.extend_from_slice(policies);
    args.extend([flag, dn]);
    if ok {
        admin.ok(&args).await
    } else {
        admin.fails(&args).await
    }
}

/// An unsigned STS call (as MinIO's clients send `AssumeRoleWithLDAPIdentity`).
async fn sts(srv: &Server, form: &[(&str, &str)]) -> (u16, String) {
    let mut all = vec![("Version", "2011-06-15")];
    all.extend_from_slice(form);
    let r = srv
        .http()
        .post(format!("{}/", srv.endpoint()))
        .form(&all)
        .send()
        .await
        .expect("STS call");
    let id = r
        .headers()
        .get("x-amz-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = (r.status().as_u16(), r.text().await.unwrap_or_default());
    // The document names the request as its header does.
    assert_eq!(xml_tag(&body, "RequestId"), id, "{body}");
    (status, body)
}

#[derive(Debug, Clone)]
struct Session {
    access_key: String,
    secret_key: String,
    token: String,
}

/// A login: the session, or the STS error code (checked to come in AWS's error document).
async fn login(srv: &Server, user: &str, password: &str) -> Result<Session, String> {
    let (status, body) = sts(
        srv,
        &[
            ("Action", "AssumeRoleWithLDAPIdentity"),
            ("LDAPUsername", user),
            ("LDAPPassword", password),
        ],
    )
    .await;
    if status != 200 {
        assert!(
            body.contains("<ErrorResponse") && body.contains("<Type>Sender</Type>"),
            "{status}: {body}"
        );
        return Err(xml_tag(&body, "Code").unwrap_or_else(|| "no code".into()));
    }
    assert!(
        body.contains("<AssumeRoleWithLDAPIdentityResult>"),
        "{body}"
    );
    Ok(Session {
        access_key: xml_tag(&body, "AccessKeyId").expect("key"),
        secret_key: xml_tag(&body, "SecretAccessKey").expect("secret"),
        token: xml_tag(&body, "SessionToken").expect("token"),
    })
}

fn client(srv: &Server, s: &Session) -> Client {
    Client::from_conf(
        srv.s3_config_with_token(&s.access_key, &s.secret_key, Some(&s.token))
            .build(),
    )
}

/// "ok" or the S3 error code of a PUT.
async fn put(c: &Client, key: &str) -> String {
    match c
        .put_object()
        .bucket("data")
        .key(key)
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
    {
        Ok(_) => "ok".into(),
        Err(e) => err_code(&e).unwrap_or_else(|| format!("{e:?}")),
    }
}

async fn get(c: &Client, key: &str) -> String {
    match c.get_object().bucket("data").key(key).send().await {
        Ok(_) => "ok".into(),
        Err(e) => err_code(&e).unwrap_or_else(|| format!("{e:?}")),
    }
}

/// A signed admin call made with session credentials (the CLI's aliases hold no token).
async fn admin_as(srv: &Server, s: &Session, op: &str, body: &str) -> (u16, String) {
    let creds = (
        s.access_key.as_str(),
        s.secret_key.as_str(),
        Some(s.token.as_str()),
    );
    srv.signed(
        "POST",
        &format!("/cairn/admin/v1/{op}"),
        creds,
        body.as_bytes(),
    )
    .await
}

/// What a user needs to manage its own service accounts (as in MinIO).
const SELF_SERVICE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["admin:CreateServiceAccount"],"Resource":["arn:aws:s3:::*"]}]}"#;

const DENY_PUT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["s3:PutObject"],"Resource":["arn:aws:s3:::*"]}]}"#;

#[tokio::test]
async fn ldap_logins_get_the_policies_of_their_dn_and_groups() {
    let slapd = Slapd::start(
        &[
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("carol", "carol-pw"),
            ("dave", "dave-pw"),
            ("eve", "eve-pw"),
        ],
        &[
            ("writers", &["alice", "carol"]),
            ("denied", &["carol"]),
            ("unmapped", &["dave"]),
        ],
    )
    .await;
    let (srv, admin) = site_with_data(ldap_env(&slapd, &[])).await;
    srv.client()
        .put_object()
        .bucket("data")
        .key("seed")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();

    // Nothing mapped yet: a right password still gets no session.
    assert_eq!(
        login(&srv, "alice", "alice-pw").await.unwrap_err(),
        "AccessDenied"
    );

    // Mappings, with DNs spelt in another case and spacing than the directory's.
    let writers = "CN=Writers, OU=Groups,DC=example,DC=org";
    admin.policy("root", "self-service", SELF_SERVICE).await;
    ldap_policy(
        &admin,
        "attach",
        &["readwrite", "self-service"],
        "--group",
        writers,
        true,
    )
    .await;
    ldap_policy(
        &admin,
        "attach",
        &["readonly"],
        "--user",
        &user_dn("bob"),
        true,
    )
    .await;
    admin.policy("root", "deny-put", DENY_PUT).await;
    ldap_policy(
        &admin,
        "attach",
        &["deny-put"],
        "--group",
        &group_dn("denied"),
        true,
    )
    .await;
    let out = ldap_policy(
        &admin,
        "attach",
        &["no-such-policy"],
        "--user",
        &user_dn("eve"),
        false,
    )
    .await;
    assert!(out.contains("XMinioAdminNoSuchPolicy"), "{out}");
    let out = ldap_policy(&admin, "attach", &["readonly"], "--user", "not a dn", false).await;
    assert!(out.contains("InvalidArgument"), "{out}");
    let entities: serde_json::Value = serde_json::from_str(
        &admin
            .ok(&["idp", "ldap", "policy", "entities", "root"])
            .await,
    )
    .expect("entities JSON");
    assert_eq!(
        entities["groups"][1]["dn"], "cn=writers,ou=groups,dc=example,dc=org",
        "{entities}"
    );
    assert_eq!(
        entities["groups"][1]["policies"],
        serde_json::json!(["readwrite", "self-service"]),
        "{entities}"
    );
    assert_eq!(
        entities["users"][0]["dn"],
        "uid=bob,ou=people,dc=example,dc=org"
    );
    let only_bob: serde_json::Value = serde_json::from_str(
        &admin
            .ok(&[
                "idp",
                "ldap",
                "policy",
                "entities",
                "root",
                "--user",
                &user_dn("bob"),
            ])
            .await,
    )
    .unwrap();
    assert_eq!(
        only_bob["groups"].as_array().map(Vec::len),
        Some(0),
        "{only_bob}"
    );
    assert_eq!(
        only_bob["users"].as_array().map(Vec::len),
        Some(1),
        "{only_bob}"
    );

    // Group-granted: alice writes. DN-granted: bob reads only.
    let alice = login(&srv, "alice", "alice-pw")
        .await
        .expect("alice logs in");
    let a = client(&srv, &alice);
    assert_eq!(put(&a, "by-alice").await, "ok");
    let bob = client(
        &srv,
        &login(&srv, "bob", "bob-pw").await.expect("bob logs in"),
    );
    assert_eq!(get(&bob, "seed").await, "ok");
    assert_eq!(put(&bob, "by-bob").await, "AccessDenied");
    // Mapping policies to DNs is an admin's (`admin:AttachUserOrGroupPolicy`): a directory user
    // with write access and self-service can neither grant bob writes nor take his reads.
    for (op, policy) in [("attach", "readwrite"), ("detach", "readonly")] {
        let body = serde_json::json!({"policies": [policy], "user": user_dn("bob")}).to_string();
        let (status, text) = admin_as(&srv, &alice, &format!("idp/ldap/policy/{op}"), &body).await;
        assert_eq!(status, 403, "alice's {op}: {text}");
        assert_eq!(
            xml_error_code(&text).as_deref(),
            Some("AccessDenied"),
            "{text}"
        );
    }
    let bob = client(
        &srv,
        &login(&srv, "bob", "bob-pw")
            .await
            .expect("bob logs in again"),
    );
    assert_eq!(get(&bob, "seed").await, "ok");
    assert_eq!(put(&bob, "by-bob").await, "AccessDenied");
    // A group's Deny beats another group's Allow.
    let carol = client(
        &srv,
        &login(&srv, "carol", "carol-pw").await.expect("carol"),
    );
    assert_eq!(get(&carol, "seed").await, "ok");
    assert_eq!(put(&carol, "by-carol").await, "AccessDenied");
    // In a group, but no group of hers is mapped; in no group at all.
    assert_eq!(
        login(&srv, "dave", "dave-pw").await.unwrap_err(),
        "AccessDenied"
    );
    assert_eq!(
        login(&srv, "eve", "eve-pw").await.unwrap_err(),
        "AccessDenied"
    );
    // The directory matches names without regard to case; the DN is the same.
    assert!(login(&srv, "ALICE", "alice-pw").await.is_ok());

    // Attacks: a wrong password; no password (an LDAP bind with a DN and no password is an
    // unauthenticated bind, which some directories accept); a filter wildcard that would find
    // alice's entry if the name went into the filter unescaped; an injected filter.
    for (user, password) in [
        ("alice", "wrong"),
        ("alice", ""),
        ("ali*", "alice-pw"),
        ("*", "alice-pw"),
        ("alice)(uid=*", "alice-pw"),
        ("nobody", "alice-pw"),
    ] {
        assert_eq!(
            login(&srv, user, password).await.unwrap_err(),
            "AccessDenied",
            "{user:?} / {password:?}"
        );
    }
    // Malformed calls, and AssumeRole, which still needs a signature.
    let ldap = ("Action", "AssumeRoleWithLDAPIdentity");
    let (user, password) = (("LDAPUsername", "alice"), ("LDAPPassword", "alice-pw"));
    for (form, want) in [
        (vec![ldap, user], (400, "MissingParameter")),
        (
            vec![ldap, user, password, ("DurationSeconds", "60")],
            (400, "ValidationError"),
        ),
        (vec![("Action", "AssumeRole")], (403, "AccessDenied")),
        (
            vec![("Action", "GetFederationToken")],
            (400, "InvalidAction"),
        ),
    ] {
        let (status, body) = sts(&srv, &form).await;
        assert_eq!(
            (status, xml_tag(&body, "Code").as_deref()),
            (want.0, Some(want.1)),
            "{body}"
        );
    }
    // With a directory the internal IDP takes no new users...
    let out = admin
        .fails(&["user", "add", "root", "mallory", "mallory-secret"])
        .await;
    assert!(out.contains("XMinioIAMActionNotAllowed"), "{out}");
    // ...but a directory user makes a service account for itself, with its own permissions.
    let (status, body) = admin_as(&srv, &alice, "iam/svcacct/add", "{}").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let svc = srv.client_with(
        v["access_key"].as_str().unwrap(),
        v["secret_key"].as_str().unwrap(),
    );
    assert_eq!(put(&svc, "by-alice-svc").await, "ok");
    let (status, body) = admin_as(
        &srv,
        &alice,
        "iam/svcacct/add",
        r#"{"parent":"uid=bob,ou=people,dc=example,dc=org"}"#,
    )
    .await;
    assert_eq!(status, 403, "alice may not make bob's accounts: {body}");

    // Detaching takes effect at once, for sessions and service accounts alike.
    ldap_policy(
        &admin,
        "detach",
        &["readwrite"],
        "--group",
        &group_dn("writers"),
        true,
    )
    .await;
    assert_eq!(put(&a, "by-alice-2").await, "AccessDenied");
    assert_eq!(put(&svc, "by-alice-svc-2").await, "AccessDenied");
    let out = ldap_policy(
        &admin,
        "detach",
        &["readwrite"],
        "--group",
        &group_dn("writers"),
        false,
    )
    .await;
    assert!(out.contains("XMinioAdminNoSuchPolicy"), "{out}");

    // Secrets stay out of the logs.
    let logs = format!("{}{}", srv.stdout(), srv.stderr());
    for secret in [
        ADMIN_PASSWORD,
        "alice-pw",
        "carol-pw",
        alice.secret_key.as_str(),
    ] {
        assert!(!logs.contains(secret), "{secret} in the server's logs");
    }
}

/// The users' filter leaves out accounts marked disabled, as AD filters do with
/// `userAccountControl`.
const ENABLED_USERS: &str = "(&(uid=%s)(!(description=disabled)))";

#[tokio::test]
async fn users_gone_from_or_disabled_in_the_directory_lose_their_service_accounts() {
    let users = [
        ("frank", "frank-pw"),
        ("grace", "grace-pw"),
        ("henry", "henry-pw"),
    ];
    let slapd = Slapd::start(&users, &[("staff", &["frank", "grace", "henry"])]).await;
    let (srv, admin) = site_with_data(
        ldap_env(&slapd, &[])
            .env("CAIRN_IDENTITY_LDAP_USER_DN_SEARCH_FILTER", ENABLED_USERS)
            .env("CAIRN_IDENTITY_LDAP_CHECK_INTERVAL", "300ms"),
    )
    .await;
    admin.policy("root", "self-service", SELF_SERVICE).await;
    let staff = group_dn("staff");
    let both = ["readwrite", "self-service"];
    ldap_policy(&admin, "attach", &both, "--group", &staff, true).await;
    let mut accounts = Vec::new();
    for (user, password) in users {
        let s = login(&srv, user, password).await.expect("login");
        let (status, body) = admin_as(&srv, &s, "iam/svcacct/add", "{}").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let c = srv.client_with(
            v["access_key"].as_str().unwrap(),
            v["secret_key"].as_str().unwrap(),
        );
        assert_eq!(put(&c, user).await, "ok");
        accounts.push(c);
    }
    // Frank leaves the directory; Henry's account is disabled there.
    slapd.delete(&user_dn("frank")).await;
    let disable = format!(
        "dn: {}\nchangetype: modify\nadd: description\ndescription: disabled\n",
        user_dn("henry")
    );
    slapd.modify(&disable).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, who) in [(0, "frank"), (2, "henry")] {
        while put(&accounts[i], "again").await == "ok" {
            assert!(
                Instant::now() < deadline,
                "{who}'s account still works 30 s after the directory dropped him"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let password = format!("{who}-pw");
        assert_eq!(
            login(&srv, who, &password).await.unwrap_err(),
            "AccessDenied"
        );
    }
    // The other user of the same group keeps hers.
    assert_eq!(put(&accounts[1], "grace-again").await, "ok");
    // A user who comes back logs in again, but the disabled account stays disabled.
    slapd.add_user("frank", "frank-pw").await;
    assert!(login(&srv, "frank", "frank-pw").await.is_ok());
    assert_ne!(put(&accounts[0], "frank-back").await, "ok");
}

/// A server started with `opts` whose directory group `writers` may read and write.
async fn writers_server(opts: ServerOptions) -> Server {
    let srv = Server::start_with(opts).await;
    let admin = AdminCli::for_server("root", &srv).await;
    let writers = group_dn("writers");
    ldap_policy(&admin, "attach", &["readwrite"], "--group", &writers, true).await;
    srv
}

#[tokio::test]
async fn ldap_over_starttls_verifies_the_directory() {
    let slapd = Slapd::start(&[("alice", "alice-pw")], &[("writers", &["alice"])]).await;
    let starttls = [("CAIRN_IDENTITY_LDAP_SERVER_STARTTLS", "on")];
    // Trusting the directory's authority (the certs directory's CAs/).
    let trusted =
        writers_server(ldap_env(&slapd, &starttls).certs_dir(slapd.trusting_certs_dir())).await;
    let s = login(&trusted, "alice", "alice-pw")
        .await
        .expect("login over StartTLS");
    assert_eq!(put(&client(&trusted, &s), "x").await, "NoSuchBucket");
    assert_eq!(
        login(&trusted, "alice", "nope").await.unwrap_err(),
        "AccessDenied"
    );
    // Not trusting it: the login fails instead of sending the password to an unverified peer.
    let untrusted = writers_server(ldap_env(&slapd, &starttls)).await;
    assert_eq!(
        login(&untrusted, "alice", "alice-pw").await.unwrap_err(),
        "IDPCommunicationError"
    );
    assert!(!format!("{}{}", untrusted.stdout(), untrusted.stderr()).contains(ADMIN_PASSWORD));
}

#[tokio::test]
async fn bad_ldap_settings_stop_the_server_with_the_variable_named() {
    for (var, value, says) in [
        (
            "CAIRN_IDENTITY_LDAP_USER_DN_SEARCH_FILTER",
            "(uid=alice)",
            "must contain %s",
        ),
        ("CAIRN_IDENTITY_LDAP_LOOKUP_BIND_DN", "admin", "not a DN"),
        (
            "CAIRN_IDENTITY_LDAP_SERVER_STARTTLS",
            "maybe",
            "expected on or off",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let drive = dir.path().join("d");
        let (status, out, err) = run_cairn(
            &[
                "server".into(),
                "--address".into(),
                format!("127.0.0.1:{}", free_port()),
                drive.to_string_lossy().into(),
            ],
            &[
                ("CAIRN_IDENTITY_LDAP_SERVER_ADDR", "127.0.0.1:1"),
                ("CAIRN_IDENTITY_LDAP_LOOKUP_BIND_DN", ADMIN_DN),
                (
                    "CAIRN_IDENTITY_LDAP_LOOKUP_BIND_PASSWORD",
                    "bind-secret-xyz",
                ),
                ("CAIRN_IDENTITY_LDAP_USER_DN_SEARCH_BASE_DN", SUFFIX),
                ("CAIRN_IDENTITY_LDAP_USER_DN_SEARCH_FILTER", "(uid=%s)"),
                (
                    "CAIRN_CERTS_DIR",
                    &dir.path().join("none").to_string_lossy(),
                ),
                (var, value),
            ],
            CLI_TIMEOUT,
        )
        .await;
        let text = format!("{out}{err}");
        assert!(!status.success(), "{var}={value}: {text}");
        assert!(
            text.contains(var) && text.contains(says),
            "{var}={value}: {text}"
        );
        assert!(!text.contains("bind-secret-xyz"), "{text}");
    }
}
