use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use cairn_control_plane::iam::identity::{IamCommand, PolicyTarget, SealedSecret, ServiceAccount};
use cairn_control_plane::{BucketInfo, Command, Versioning};
use hyper::{HeaderMap, Uri};

use super::condition_keys::request_keys;
use super::*;
use crate::auth::iam::StateSource;
use crate::auth::ConnInfo;
use crate::auth::RootCredentials;
use crate::clock::Clock;

struct Fixed(Arc<SiteState>);

impl StateSource for Fixed {
    fn state(&self) -> Arc<SiteState> {
        self.0.clone()
    }
}

struct At(i64);

impl Clock for At {
    fn now_ns(&self) -> i64 {
        self.0
    }
}

const NOW_NS: i64 = 1_700_000_000_000_000_000;

fn sealed() -> SealedSecret {
    SealedSecret {
        nonce: vec![0; 12],
        ciphertext: vec![0; 24],
    }
}

fn iam(s: &mut SiteState, c: IamCommand) {
    s.apply(&Command::Iam(c)).unwrap();
}

fn user(s: &mut SiteState, name: &str, policies: &[&str]) {
    iam(
        s,
        IamCommand::AddUser {
            access_key: name.into(),
            secret: sealed(),
        },
    );
    if !policies.is_empty() {
        iam(
            s,
            IamCommand::AttachPolicy {
                policies: policies.iter().map(|p| (*p).to_owned()).collect(),
                target: PolicyTarget::User(name.into()),
            },
        );
    }
}

fn policy(s: &mut SiteState, name: &str, doc: &str) {
    iam(
        s,
        IamCommand::PutPolicy {
            name: name.into(),
            document: doc.into(),
        },
    );
}

fn authorizer(s: SiteState) -> Authorizer {
    let clock: SharedClock = Arc::new(At(NOW_NS));
    let root = RootCredentials {
        access_key: "rootkey".into(),
        secret_key: "rootsecret".into(),
    };
    let creds = IamCredentials::new(root, Arc::new(Fixed(Arc::new(s))), clock.clone());
    Authorizer::new(
        Arc::new(creds),
        clock,
        &mut rand::rngs::mock::StepRng::new(1, 1),
    )
}

fn get(bucket: &str, key: &str) -> Vec<(&'static str, Option<String>)> {
    vec![("s3:GetObject", Some(format!("arn:aws:s3:::{bucket}/{key}")))]
}

fn put(bucket: &str, key: &str) -> Vec<(&'static str, Option<String>)> {
    vec![("s3:PutObject", Some(format!("arn:aws:s3:::{bucket}/{key}")))]
}

fn allowed(a: &Authorizer, who: Option<&str>, n: &[(&str, Option<String>)]) -> bool {
    a.authorize(who.map(Into::into), n, &[]).is_ok()
}

const GET_B: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}]}"#;
const DENY_B: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#;

#[test]
fn root_is_allowed_and_unknown_keys_are_not() {
    let a = authorizer(SiteState::default());
    assert!(allowed(&a, Some("rootkey"), &put("b", "k")));
    assert_eq!(
        a.authorize(Some("nobody".into()), &put("b", "k"), &[]),
        Err(Denied::Caller(CallerError::Unknown))
    );
    assert!(!allowed(&a, None, &get("b", "k")));
}

#[test]
fn user_policies_allow_only_what_they_grant() {
    let mut s = SiteState::default();
    policy(&mut s, "getb", GET_B);
    user(&mut s, "alice", &["getb"]);
    user(&mut s, "bob", &[]);
    let a = authorizer(s);
    assert!(allowed(&a, Some("alice"), &get("b", "x")));
    assert!(!allowed(&a, Some("alice"), &put("b", "x")));
    assert!(!allowed(&a, Some("alice"), &get("other", "x")));
    assert!(!allowed(&a, Some("bob"), &get("b", "x")));
}

#[test]
fn disabled_user_and_group_rules() {
    let mut s = SiteState::default();
    policy(&mut s, "getb", GET_B);
    policy(&mut s, "denyb", DENY_B);
    user(&mut s, "alice", &["getb"]);
    user(&mut s, "carol", &["readwrite"]);
    iam(
        &mut s,
        IamCommand::AddGroupMembers {
            group: "blocked".into(),
            members: vec!["alice".into()],
        },
    );
    iam(
        &mut s,
        IamCommand::AttachPolicy {
            policies: vec!["denyb".into()],
            target: PolicyTarget::Group("blocked".into()),
        },
    );
    // The group's Deny beats the user's Allow.
    assert!(!allowed(
        &authorizer(s.clone()),
        Some("alice"),
        &get("b", "x"),
    ));
    // A disabled group's policies do not apply.
    iam(
        &mut s,
        IamCommand::SetGroupEnabled {
            group: "blocked".into(),
            enabled: false,
        },
    );
    assert!(allowed(
        &authorizer(s.clone()),
        Some("alice"),
        &get("b", "x"),
    ));
    iam(
        &mut s,
        IamCommand::SetUserEnabled {
            access_key: "carol".into(),
            enabled: false,
        },
    );
    assert_eq!(
        authorizer(s).authorize(Some("carol".into()), &get("b", "x"), &[]),
        Err(Denied::Caller(CallerError::Unknown))
    );
}

#[test]
fn service_accounts_inherit_and_narrow() {
    let mut s = SiteState::default();
    user(&mut s, "alice", &["readwrite"]);
    let account = |parent, policy: Option<&str>, expires_ns| ServiceAccount {
        parent,
        secret: sealed(),
        policy: policy.map(str::to_owned),
        expires_ns,
        enabled: true,
        name: None,
        description: None,
        asserted: Default::default(),
    };
    for (k, a) in [
        (
            "svc-full",
            account(Parent::User("alice".into()), None, None),
        ),
        (
            "svc-get",
            account(Parent::User("alice".into()), Some(GET_B), None),
        ),
        ("svc-root", account(Parent::Root, Some(GET_B), None)),
        (
            "svc-old",
            account(Parent::User("alice".into()), None, Some(NOW_NS - 1)),
        ),
    ] {
        iam(
            &mut s,
            IamCommand::AddServiceAccount {
                access_key: k.into(),
                account: Box::new(a),
            },
        );
    }
    let a = authorizer(s.clone());
    assert!(allowed(&a, Some("svc-full"), &put("b", "x")));
    assert!(allowed(&a, Some("svc-get"), &get("b", "x")));
    assert!(!allowed(&a, Some("svc-get"), &put("b", "x")));
    assert!(!allowed(&a, Some("svc-get"), &get("c", "x")));
    assert!(allowed(&a, Some("svc-root"), &get("b", "x")));
    assert!(!allowed(&a, Some("svc-root"), &put("b", "x")));
    assert_eq!(
        a.authorize(Some("svc-old".into()), &get("b", "x"), &[]),
        Err(Denied::Caller(CallerError::Unknown))
    );
    // A disabled parent disables its service accounts.
    iam(
        &mut s,
        IamCommand::SetUserEnabled {
            access_key: "alice".into(),
            enabled: false,
        },
    );
    assert!(!allowed(&authorizer(s), Some("svc-full"), &get("b", "x"),));
}

fn bucket(s: &mut SiteState, name: &str, policy: &str) {
    s.buckets.insert(
        name.into(),
        BucketInfo {
            name: name.into(),
            created_ns: 0,
            versioning: Versioning::Unversioned,
            object_lock: false,
            policy: None,
            tags: Vec::new(),
            lifecycle: Vec::new(),
            cors: Vec::new(),
            default_retention: None,
            encryption: None,
        },
    );
    s.apply(&Command::SetBucketPolicy {
        bucket: name.into(),
        policy: Some(policy.into()),
    })
    .unwrap();
}

/// A copy needs two decisions, each with the policy of its own bucket: one bucket's policy
/// grants nothing in another (not even a `NotResource` Allow stored before such documents were
/// refused), and the source bucket's Deny is consulted.
#[test]
fn each_resource_is_decided_with_its_own_bucket_policy() {
    let mut s = SiteState::default();
    bucket(
        &mut s,
        "mine",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","NotResource":"arn:aws:s3:::mine/none"}]}"#,
    );
    bucket(
        &mut s,
        "victim",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::victim/secret/*"}]}"#,
    );
    policy(
        &mut s,
        "getall",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::*"}]}"#,
    );
    user(&mut s, "bob", &["getall"]);
    let a = authorizer(s);
    assert!(allowed(&a, None, &get("mine", "x")));
    assert!(!allowed(&a, None, &get("victim", "x")));
    assert!(!allowed(&a, None, &get("minex", "x")));
    let copy = [put("mine", "x"), get("victim", "secret/x")].concat();
    assert!(!allowed(&a, Some("bob"), &copy));
    let copy = [put("mine", "x"), get("victim", "open/x")].concat();
    assert!(allowed(&a, Some("bob"), &copy));
}

#[test]
fn bucket_policy_grants_anonymous_and_users() {
    let mut s = SiteState::default();
    s.buckets.insert(
        "pub".into(),
        BucketInfo {
            name: "pub".into(),
            created_ns: 0,
            versioning: Versioning::Unversioned,
            object_lock: false,
            policy: None,
            tags: Vec::new(),
            lifecycle: Vec::new(),
            cors: Vec::new(),
            default_retention: None,
            encryption: None,
        },
    );
    s.apply(&Command::SetBucketPolicy {
        bucket: "pub".into(),
        policy: Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::pub/public/*"}]}"#.into()),
    })
    .unwrap();
    user(&mut s, "bob", &[]);
    let a = authorizer(s);
    assert!(allowed(&a, None, &get("pub", "public/x")));
    assert!(!allowed(&a, None, &get("pub", "private/x")));
    assert!(!allowed(&a, None, &put("pub", "public/x")));
    assert!(allowed(&a, Some("bob"), &get("pub", "public/x")));
}

#[test]
fn variables_and_conditions_use_the_request() {
    let mut s = SiteState::default();
    policy(
        &mut s,
        "home",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}]}"#,
    );
    policy(
        &mut s,
        "lan",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
    );
    user(&mut s, "alice", &["home"]);
    user(&mut s, "dave", &["lan"]);
    let a = authorizer(s);
    assert!(allowed(&a, Some("alice"), &put("home", "alice/f")));
    assert!(!allowed(&a, Some("alice"), &put("home", "bob/f")));
    let uri: Uri = "/b/x".parse().unwrap();
    let from = |ip: [u8; 4]| {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 5000);
        request_keys(
            &HeaderMap::new(),
            &uri,
            Some(ConnInfo {
                peer: addr,
                secure: false,
            }),
            "GetObject",
            time::OffsetDateTime::UNIX_EPOCH,
        )
    };
    assert!(a
        .authorize(Some("dave".into()), &get("b", "x"), &from([10, 1, 2, 3]))
        .is_ok());
    assert!(a
        .authorize(Some("dave".into()), &get("b", "x"), &from([192, 168, 1, 1]))
        .is_err());
}

/// STS sessions act as their parent narrowed by the session policy, until they expire; a session
/// key needs its own token, and a disabled parent disables its sessions.
#[test]
fn sessions_inherit_narrow_and_expire() {
    use crate::auth::session::Claims;
    let mut s = SiteState::default();
    s.apply(&Command::CreateBucket {
        name: "b".into(),
        created_ns: 0,
        object_lock: false,
    })
    .unwrap();
    policy(
        &mut s,
        "rw",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
    );
    user(&mut s, "alice", &["rw"]);
    let a = authorizer(s.clone());
    let issue = |a: &Authorizer, policy: Option<&str>, expires_ns| {
        let claims = Claims {
            parent: Parent::User("alice".into()),
            expires_ns,
            policy: policy.map(str::to_owned),
            asserted: Default::default(),
        };
        a.with_rng(|r| a.iam.sessions.issue(&claims, r))
    };
    fn check(
        a: &Authorizer,
        i: &crate::auth::session::Issued,
        token: Option<&str>,
        n: &[(&str, Option<String>)],
    ) -> Result<(), Denied> {
        let signer = Signer {
            access_key: &i.access_key,
            session_token: token,
        };
        a.authorize(Some(signer), n, &[])
    }
    let full = issue(&a, None, NOW_NS + 1);
    let narrow = issue(&a, Some(GET_B), NOW_NS + 1);
    let old = issue(&a, None, NOW_NS);
    let t = |i: &crate::auth::session::Issued| Some(i.session_token.clone());
    assert_eq!(
        check(&a, &full, t(&full).as_deref(), &put("b", "x")),
        Ok(())
    );
    assert_eq!(
        check(&a, &narrow, t(&narrow).as_deref(), &get("b", "x")),
        Ok(())
    );
    assert!(matches!(
        check(&a, &narrow, t(&narrow).as_deref(), &put("b", "x")),
        Err(Denied::Policy { .. })
    ));
    assert_eq!(
        check(&a, &old, t(&old).as_deref(), &get("b", "x")),
        Err(Denied::Caller(CallerError::ExpiredToken))
    );
    assert_eq!(
        check(&a, &full, None, &get("b", "x")),
        Err(Denied::Caller(CallerError::InvalidToken))
    );
    // The narrow session's token does not lift the full session's key to it, nor vice versa.
    assert_eq!(
        check(&a, &full, t(&narrow).as_deref(), &get("b", "x")),
        Err(Denied::Caller(CallerError::InvalidToken))
    );
    // The secret a session signs with is what the credential store hands s3s.
    use crate::auth::CredentialStore;
    let (_, secret) = a.iam.lookup(&full.access_key).expect("session key");
    assert_eq!(secret, *full.secret_key);
    iam(
        &mut s,
        IamCommand::SetUserEnabled {
            access_key: "alice".into(),
            enabled: false,
        },
    );
    let a = authorizer(s);
    assert_eq!(
        check(&a, &full, t(&full).as_deref(), &get("b", "x")),
        Err(Denied::Caller(CallerError::Unknown))
    );
}

#[test]
fn external_identities_get_mapped_or_asserted_policies() {
    use crate::auth::session::Claims;
    use cairn_control_plane::iam::identity::{Asserted, Parent};
    let mut s = SiteState::default();
    policy(&mut s, "get-b", GET_B);
    policy(&mut s, "deny-b", DENY_B);
    let attach = |s: &mut SiteState, p: &str, target| {
        iam(
            s,
            IamCommand::AttachPolicy {
                policies: vec![p.into()],
                target,
            },
        )
    };
    attach(
        &mut s,
        "readwrite",
        PolicyTarget::LdapGroup("cn=staff,dc=x".into()),
    );
    attach(
        &mut s,
        "get-b",
        PolicyTarget::LdapUser("uid=alice,dc=x".into()),
    );
    attach(
        &mut s,
        "deny-b",
        PolicyTarget::LdapGroup("cn=banned,dc=x".into()),
    );
    let a = &authorizer(s);
    let session = |parent: Parent, groups: &[&str], policies: &[&str]| {
        let claims = Claims {
            parent,
            expires_ns: NOW_NS + 1,
            policy: None,
            asserted: Asserted {
                groups: groups.iter().map(|g| g.to_string()).collect(),
                policies: policies.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            },
        };
        let i = a.with_rng(|r| a.iam.sessions.issue(&claims, r));
        move |n: &[(&str, Option<String>)]| {
            let signer = Signer {
                access_key: &i.access_key,
                session_token: Some(&i.session_token),
            };
            a.authorize(Some(signer), n, &[]).is_ok()
        }
    };
    let ldap = |dn: &str| Parent::Ldap(dn.into());
    // The DN's own mapping, and a group's.
    let alice = session(ldap("uid=alice,dc=x"), &[], &[]);
    assert!(alice(&get("b", "k")) && !alice(&put("b", "k")));
    let staff = session(ldap("uid=alice,dc=x"), &["cn=staff,dc=x"], &[]);
    assert!(staff(&put("c", "k")));
    // A group's Deny beats the other group's Allow; an unmapped DN has nothing.
    let banned = session(
        ldap("uid=bob,dc=x"),
        &["cn=staff,dc=x", "cn=banned,dc=x"],
        &[],
    );
    assert!(banned(&put("c", "k")) && !banned(&put("b", "k")));
    let nobody = session(ldap("uid=carol,dc=x"), &["cn=other,dc=x"], &[]);
    assert!(!nobody(&get("b", "k")));
    // An LDAP session's asserted policy names count for nothing: only the mappings do.
    let forged = session(ldap("uid=carol,dc=x"), &[], &["readwrite"]);
    assert!(!forged(&get("b", "k")));
    // OpenID Connect: the policies its token named, where they exist.
    let oidc = |policies: &[&str]| {
        session(
            Parent::OpenId {
                provider: String::new(),
                subject: "sub-1".into(),
            },
            &[],
            policies,
        )
    };
    let reader = oidc(&["get-b", "no-such-policy"]);
    assert!(reader(&get("b", "k")) && !reader(&put("b", "k")));
    assert!(!oidc(&[])(&get("b", "k")));
}

/// What authorization notes for the audit log: who signed, as whom, and which statement decided
/// (only when details are wanted); a refusal reaching the client is noted as denied.
#[tokio::test]
async fn decisions_are_noted_for_the_audit_log() {
    let mut s = SiteState::default();
    policy(&mut s, "getb", GET_B);
    user(&mut s, "alice", &["getb"]);
    let a = authorizer(s);
    let noted = |detailed: bool, who: &'static str, n: Vec<(&'static str, Option<String>)>| {
        let notes = crate::telemetry::SharedNotes::default();
        notes.lock().unwrap().detailed = detailed;
        let a = &a;
        let held = notes.clone();
        async move {
            crate::telemetry::with_notes(held, async {
                if let Err(e) = a.authorize(Some(who.into()), &n, &[]) {
                    let _ = e.to_s3();
                }
            })
            .await;
            let n = notes.lock().unwrap().clone();
            n
        }
    };
    let ok = noted(true, "alice", get("b", "k")).await;
    assert_eq!(ok.access_key.as_deref(), Some("alice"));
    assert_eq!(
        (ok.credentials, ok.user.as_deref()),
        (Some("user"), Some("alice"))
    );
    assert!(!ok.denied);
    let why = ok.decision.unwrap();
    assert!(
        why.starts_with("s3:GetObject on arn:aws:s3:::b/k: allowed by"),
        "{why}"
    );
    let no = noted(true, "alice", put("b", "k")).await;
    assert!(no.denied);
    let why = no.decision.unwrap();
    assert!(
        why.contains("s3:PutObject") && why.contains("denied"),
        "{why}"
    );
    let root = noted(true, "rootkey", put("b", "k")).await;
    assert_eq!(
        (root.credentials, root.user.as_deref()),
        (Some("root"), Some("root"))
    );
    // Nobody reads the details: none are taken, but a refusal is still marked.
    let quiet = noted(false, "alice", put("b", "k")).await;
    assert!(quiet.denied && quiet.decision.is_none() && quiet.access_key.is_none());
}
