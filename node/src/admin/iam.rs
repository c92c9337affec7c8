//! The IAM admin API (`/cairn/admin/v1/iam/...`, JSON): users, groups, policies and service
//! accounts, plus `whoami`. Reads are linearizable (the leader's state as of now), writes are
//! proposed through Raft and return once applied on this node.

use std::collections::BTreeSet;

use hyper::{Method, Uri};
use s3s::{s3_error, Body, S3Error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use cairn_control_plane::iam::identity::{
    check_policy, Asserted, IamCommand, IamError, IamState, Parent, PolicyTarget, ServiceAccount,
};
use cairn_control_plane::{Command, SiteState};

use super::{json, query_param};
use crate::auth::authorize::{Authorizer, Denied};
use crate::auth::iam::Caller;
use crate::auth::root::random_string;
use crate::node::Node;
use crate::s3::error::iam_error;

/// Largest JSON body accepted (policies are at most 64 KiB).
const MAX_BODY: usize = 256 * 1024;
const MIN_SECRET: usize = 8;
const MAX_SECRET: usize = 40;
const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn param(uri: &Uri, name: &str) -> S3Result<String> {
    query_param(uri, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| s3_error!(InvalidArgument, "query parameter {name} is required"))
}

async fn body_bytes(req: &mut S3Request<Body>) -> S3Result<Vec<u8>> {
    let b = req
        .input
        .store_all_limited(MAX_BODY)
        .await
        .map_err(|_| s3_error!(InvalidRequest, "body larger than {MAX_BODY} bytes"))?;
    Ok(b.to_vec())
}

pub(crate) async fn body_json<T: for<'de> Deserialize<'de>>(
    req: &mut S3Request<Body>,
) -> S3Result<T> {
    let b = body_bytes(req).await?;
    serde_json::from_slice(&b).map_err(|e| s3_error!(InvalidRequest, "invalid JSON body: {e}"))
}

#[derive(Serialize)]
struct Done {
    status: &'static str,
}

const OK: Done = Done { status: "success" };

#[derive(Deserialize)]
pub struct AddUser {
    access_key: String,
    secret_key: String,
}

#[derive(Deserialize)]
pub struct Members {
    group: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize)]
pub struct Attach {
    policies: Vec<String>,
    user: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize)]
pub struct AddServiceAccount {
    /// The user whose permissions the account inherits; the caller's own identity by default.
    parent: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    policy: Option<String>,
    /// RFC 3339.
    expiry: Option<String>,
    name: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
pub struct EditServiceAccount {
    access_key: String,
    secret_key: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    remove_policy: bool,
    expiry: Option<String>,
    /// `on` or `off`.
    status: Option<String>,
}

#[derive(Serialize)]
struct Credentials {
    access_key: String,
    secret_key: String,
}

#[derive(Serialize)]
struct UserInfo<'a> {
    access_key: &'a str,
    status: &'static str,
    policies: &'a BTreeSet<String>,
    groups: Vec<&'a str>,
}

#[derive(Serialize)]
struct GroupInfo<'a> {
    name: &'a str,
    status: &'static str,
    members: &'a BTreeSet<String>,
    policies: &'a BTreeSet<String>,
}

#[derive(Serialize)]
struct ServiceAccountInfo<'a> {
    access_key: &'a str,
    parent: String,
    status: &'static str,
    policy: Option<serde_json::Value>,
    expiry: Option<String>,
    name: Option<&'a str>,
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct WhoAmI {
    access_key: String,
    kind: &'static str,
    parent: Option<String>,
    policies: Vec<String>,
    groups: Vec<String>,
}

fn status(enabled: bool) -> &'static str {
    if enabled {
        "enabled"
    } else {
        "disabled"
    }
}

fn user_info<'a>(iam: &'a IamState, k: &'a str) -> Option<UserInfo<'a>> {
    let u = iam.users.get(k)?;
    Some(UserInfo {
        access_key: k,
        status: status(u.enabled),
        policies: &u.policies,
        groups: iam.groups_of(k).map(|(n, _)| n).collect(),
    })
}

fn group_info<'a>(
    name: &'a str,
    g: &'a cairn_control_plane::iam::identity::Group,
) -> GroupInfo<'a> {
    GroupInfo {
        name,
        status: status(g.enabled),
        members: &g.members,
        policies: &g.policies,
    }
}

fn parent_name(p: &Parent, root: &str) -> String {
    match p {
        Parent::Root => root.to_owned(),
        Parent::User(u) | Parent::Ldap(u) => u.clone(),
        Parent::OpenId { provider, subject } => format!("openid:{provider}:{subject}"),
        Parent::Certificate(cn) => format!("certificate:{cn}"),
    }
}

fn svc_info<'a>(k: &'a str, s: &'a ServiceAccount, root: &str) -> ServiceAccountInfo<'a> {
    ServiceAccountInfo {
        access_key: k,
        parent: parent_name(&s.parent, root),
        status: status(s.enabled),
        policy: s
            .policy
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok()),
        expiry: s
            .expires_ns
            .and_then(|ns| crate::clock::to_datetime(ns).format(&Rfc3339).ok()),
        name: s.name.as_deref(),
        description: s.description.as_deref(),
    }
}

fn check_secret(secret: &str) -> S3Result<()> {
    if (MIN_SECRET..=MAX_SECRET).contains(&secret.len()) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "secret key must be {MIN_SECRET} to {MAX_SECRET} characters"
        ))
    }
}

/// Nanoseconds since the epoch of an RFC 3339 expiry, which must lie in the future.
fn expiry_ns(auth: &Authorizer, text: &str) -> S3Result<i64> {
    let t = time::OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| s3_error!(InvalidArgument, "expiry must be an RFC 3339 time"))?;
    let ns = i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| s3_error!(InvalidArgument, "expiry out of range"))?;
    if ns <= auth.clock.now_ns() {
        return Err(s3_error!(InvalidArgument, "expiry must be in the future"));
    }
    Ok(ns)
}

/// What a service-account call does to the accounts of a parent.
#[derive(Clone, Copy)]
enum Manage {
    Read,
    Change,
}

/// The caller of a signed admin request.
fn caller_of(auth: &Authorizer, iam: &IamState, req: &S3Request<Body>) -> S3Result<Caller> {
    let Some(c) = &req.credentials else {
        return Err(s3_error!(AccessDenied, "Access Denied."));
    };
    let token = super::signer_token(req);
    auth.iam
        .caller(iam, &c.access_key, token.as_deref())
        .map_err(|e| Denied::from(e).to_s3())
}

/// The identity whose service accounts a caller manages as its own: a user's are its own, a
/// service account's or STS session's are its parent's.
fn own_parent(caller: &Caller) -> Parent {
    match caller {
        Caller::Root => Parent::Root,
        Caller::User(u) => Parent::User(u.clone()),
        Caller::ServiceAccount { parent, .. } => parent.clone(),
        Caller::Session { claims, .. } => claims.parent.clone(),
    }
}

fn own_asserted(caller: &Caller) -> Asserted {
    match caller {
        Caller::Root | Caller::User(_) => Asserted::default(),
        Caller::ServiceAccount { asserted, .. } => asserted.clone(),
        Caller::Session { claims, .. } => claims.asserted.clone(),
    }
}

/// The identity a `parent` argument names: root's access key, a directory user's DN (with a
/// directory configured, where internal users cannot be made), else a user.
fn parent_of(node: &Node, auth: &Authorizer, name: String) -> Parent {
    if auth.iam.is_root(&name) {
        return Parent::Root;
    }
    match node.idp.ldap.as_ref().and(crate::idp::dn::normalize(&name)) {
        Some(dn) if !auth.iam.state().iam.users.contains_key(&name) => Parent::Ldap(dn),
        _ => Parent::User(name),
    }
}

/// Whether `caller` may read or change the service accounts of `target`, beyond the route's own
/// `admin:*ServiceAccount(s)` action (checked before the handler runs). As in MinIO, a caller
/// manages its own identity's accounts with that action alone. Root's accounts are root's alone
/// (a root service account is root-equivalent, so nothing less may create, re-key or read
/// one). Another user's accounts also need the permission that already reaches that user:
/// `admin:CreateUser` (which can reset the user's secret) to change them, `admin:GetUser` to
/// read them, so managing them grants nothing the caller could not already get.
fn may_manage(
    auth: &Authorizer,
    req: &S3Request<Body>,
    caller: &Caller,
    target: &Parent,
    how: Manage,
) -> S3Result<()> {
    if *caller == Caller::Root {
        return Ok(());
    }
    let Some(c) = &req.credentials else {
        return Err(s3_error!(AccessDenied, "Access Denied."));
    };
    if *target == Parent::Root {
        tracing::info!(access_key = %c.access_key, "service accounts of root refused to a non-root caller");
        return Err(s3_error!(
            AccessDenied,
            "only root manages root's service accounts"
        ));
    }
    if *target == own_parent(caller) {
        return Ok(());
    }
    let extra = match how {
        Manage::Read => "admin:GetUser",
        Manage::Change => "admin:CreateUser",
    };
    let token = super::signer_token(req);
    let signer = crate::auth::authorize::Signer {
        access_key: &c.access_key,
        session_token: token.as_deref(),
    };
    auth.authorize(
        Some(signer),
        &[(extra, None)],
        &super::request_keys(auth, req),
    )
    .map_err(|e| {
        tracing::info!(access_key = %c.access_key, reason = %e, "another user's service accounts refused");
        s3_error!(
            AccessDenied,
            "managing another user's service accounts also needs {extra}"
        )
    })
}

/// The inline policy that narrows a caller below its parent's permissions (a service account's
/// or an STS session's), if any.
fn narrowing(caller: &Caller) -> Option<&str> {
    match caller {
        Caller::Root | Caller::User(_) => None,
        Caller::ServiceAccount { policy, .. } => policy.as_deref(),
        Caller::Session { claims, .. } => claims.policy.as_deref(),
    }
}

fn wider_than_caller() -> S3Error {
    s3_error!(
        AccessDenied,
        "a service account or session narrowed by a policy manages its parent's service accounts only under that same policy"
    )
}

/// A narrowed caller manages its own parent's accounts with that parent's permissions, so
/// without this rule it could mint (or re-key, or widen) an account its policy does not narrow
/// and act through it with everything the parent may do. It may touch only accounts under its
/// own policy, never change their policy, and a new account gets that policy. Accounts of other
/// identities need `admin:CreateUser` ([`may_manage`]), which already reaches further.
fn keeps_narrowing(
    caller: &Caller,
    target: &Parent,
    account_policy: Option<&str>,
    new_policy: Option<Option<&str>>,
) -> S3Result<()> {
    let Some(own) = narrowing(caller) else {
        return Ok(());
    };
    if *target != own_parent(caller) {
        return Ok(());
    }
    let same = |p: Option<&str>| p == Some(own);
    if same(account_policy) && new_policy.is_none_or(same) {
        return Ok(());
    }
    tracing::info!("a narrowed caller's change to a wider service account refused");
    Err(wider_than_caller())
}

/// Refuses a change to service account `access_key` unless it exists and the caller may change
/// its parent's accounts, setting its policy to `new_policy` (`Some(None)`: removing it).
async fn check_account_owner(
    node: &Node,
    auth: &Authorizer,
    req: &S3Request<Body>,
    access_key: &str,
    new_policy: Option<Option<&str>>,
) -> S3Result<()> {
    let state = linearizable(node).await?;
    let caller = caller_of(auth, &state.iam, req)?;
    match state.iam.service_accounts.get(access_key) {
        Some(s) => {
            may_manage(auth, req, &caller, &s.parent, Manage::Change)?;
            keeps_narrowing(&caller, &s.parent, s.policy.as_deref(), new_policy)
        }
        None => Err(iam_error(IamError::NoSuchServiceAccount(
            access_key.to_owned(),
        ))),
    }
}

/// Serves the IAM admin calls; `None` when `op` is not one of them.
pub async fn handle(
    node: &Node,
    auth: &Authorizer,
    req: &mut S3Request<Body>,
    op: &str,
) -> Option<S3Result<S3Response<Body>>> {
    let method = req.method.clone();
    let r = match (&method, op) {
        (&Method::GET, "whoami") => whoami(node, auth, req).await,
        (&Method::GET, _) if op.starts_with("iam/") || op.starts_with("idp/") => {
            read(node, auth, req, op).await?
        }
        (&Method::POST, _) if op.starts_with("iam/") || op.starts_with("idp/") => {
            write(node, auth, req, op).await?
        }
        _ => return None,
    };
    Some(r)
}

async fn linearizable(node: &Node) -> S3Result<std::sync::Arc<SiteState>> {
    node.catalog
        .state_linearizable()
        .await
        .map_err(S3Error::from)
}

async fn whoami(
    node: &Node,
    auth: &Authorizer,
    req: &S3Request<Body>,
) -> S3Result<S3Response<Body>> {
    let Some(c) = &req.credentials else {
        return Err(s3_error!(AccessDenied, "Access Denied."));
    };
    let state = node.catalog.state();
    let iam = &state.iam;
    let caller = caller_of(auth, iam, req)?;
    let root = &auth.iam.root.access_key;
    let inherited = |kind, parent: &Parent| {
        let user = match parent {
            Parent::User(u) | Parent::Ldap(u) => Some(u.clone()),
            Parent::OpenId { subject, .. } | Parent::Certificate(subject) => Some(subject.clone()),
            Parent::Root => None,
        };
        (kind, Some(parent_name(parent, root)), user)
    };
    let (kind, parent, user) = match &caller {
        Caller::Root => ("root", None, None),
        Caller::User(u) => ("user", None, Some(u.clone())),
        Caller::ServiceAccount { parent, .. } => inherited("service-account", parent),
        Caller::Session { claims, .. } => inherited("sts", &claims.parent),
    };
    let (policies, groups) = match user.as_deref().and_then(|u| user_info(iam, u)) {
        Some(i) => (
            i.policies.iter().cloned().collect(),
            i.groups.iter().map(|g| (*g).to_owned()).collect(),
        ),
        None if caller == Caller::Root => (vec!["consoleAdmin".to_owned()], vec![]),
        None => (vec![], vec![]),
    };
    json(&WhoAmI {
        access_key: c.access_key.clone(),
        kind,
        parent,
        policies,
        groups,
    })
}

async fn read(
    node: &Node,
    auth: &Authorizer,
    req: &S3Request<Body>,
    op: &str,
) -> Option<S3Result<S3Response<Body>>> {
    let uri = &req.uri;
    let state = match linearizable(node).await {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let iam = &state.iam;
    let root = &auth.iam.root.access_key;
    let r = match op {
        "iam/user/list" => {
            let users: Vec<_> = iam.users.keys().filter_map(|k| user_info(iam, k)).collect();
            json(&users)
        }
        "iam/user/info" => param(uri, "access_key").and_then(|k| {
            user_info(iam, &k)
                .ok_or_else(|| iam_error(IamError::NoSuchUser(k.clone())))
                .and_then(|i| json(&i))
        }),
        "iam/group/list" => {
            let groups: Vec<_> = iam.groups.iter().map(|(n, g)| group_info(n, g)).collect();
            json(&groups)
        }
        "iam/group/info" => param(uri, "group").and_then(|n| {
            iam.groups
                .get_key_value(&n)
                .ok_or_else(|| iam_error(IamError::NoSuchGroup(n.clone())))
                .and_then(|(n, g)| json(&group_info(n, g)))
        }),
        "iam/policy/list" => {
            let mut names: Vec<&str> = cairn_control_plane::iam::canned::names().collect();
            names.extend(iam.policies.keys().map(String::as_str));
            names.sort_unstable();
            json(&names)
        }
        "iam/policy/info" => param(uri, "name").and_then(|n| {
            iam.policy_document(&n)
                .ok_or_else(|| iam_error(IamError::NoSuchPolicy(n.clone())))
                .and_then(|d| {
                    serde_json::from_str::<serde_json::Value>(d)
                        .map_err(|e| s3_error!(InternalError, "{e}"))
                })
                .and_then(|v| json(&v))
        }),
        "iam/svcacct/list" => (|| {
            let caller = caller_of(auth, iam, req)?;
            let parent = match query_param(uri, "parent").filter(|p| !p.is_empty()) {
                Some(p) => {
                    let p = parent_of(node, auth, p);
                    may_manage(auth, req, &caller, &p, Manage::Read)?;
                    Some(p)
                }
                None if caller == Caller::Root => None,
                None => Some(own_parent(&caller)),
            };
            let list: Vec<_> = iam
                .service_accounts
                .iter()
                .filter(|(_, s)| parent.as_ref().is_none_or(|p| s.parent == *p))
                .map(|(k, s)| svc_info(k, s, root))
                .collect();
            json(&list)
        })(),
        "idp/ldap/policy/entities" => ldap_entities(iam, uri).and_then(|e| json(&e)),
        "iam/svcacct/info" => param(uri, "access_key").and_then(|k| {
            let (k, s) = iam
                .service_accounts
                .get_key_value(&k)
                .ok_or_else(|| iam_error(IamError::NoSuchServiceAccount(k.clone())))?;
            let caller = caller_of(auth, iam, req)?;
            may_manage(auth, req, &caller, &s.parent, Manage::Read)?;
            json(&svc_info(k, s, root))
        }),
        _ => return None,
    };
    Some(r)
}

/// Proposes `cmd`, refusing any that would touch root's credentials.
async fn propose(node: &Node, auth: &Authorizer, cmd: IamCommand) -> S3Result<()> {
    if cmd.names(&auth.iam.root.access_key) {
        return Err(s3_error!(
            InvalidArgument,
            "the root credentials cannot be changed, disabled or removed through IAM"
        ));
    }
    node.catalog
        .propose(Command::Iam(cmd))
        .await
        .map_err(S3Error::from)
}

fn seal(
    auth: &Authorizer,
    access_key: &str,
    secret: &str,
) -> cairn_control_plane::iam::identity::SealedSecret {
    auth.with_rng(|rng| auth.iam.sealer.seal(access_key, secret, rng))
}

/// The DN-keyed target of an `idp/ldap/policy/*` call, normalized (see `idp::dn`).
fn ldap_target(node: &Node, a: &Attach) -> S3Result<PolicyTarget> {
    if node.idp.ldap.is_none() {
        return Err(not_allowed("no LDAP directory is configured"));
    }
    let normal = |dn: &str| {
        crate::idp::dn::normalize(dn).ok_or_else(|| iam_error(IamError::InvalidDn(dn.to_owned())))
    };
    match (&a.user, &a.group) {
        (Some(u), None) => Ok(PolicyTarget::LdapUser(normal(u)?)),
        (None, Some(g)) => Ok(PolicyTarget::LdapGroup(normal(g)?)),
        _ => Err(s3_error!(
            InvalidArgument,
            "name exactly one of user or group (a DN)"
        )),
    }
}

/// MinIO's answer to an IAM call the configured identity providers rule out.
fn not_allowed(why: &str) -> S3Error {
    let mut e = S3Error::with_message(
        s3s::S3ErrorCode::Custom("XMinioIAMActionNotAllowed".into()),
        format!("Specified IAM action is not allowed under the current configuration: {why}"),
    );
    e.set_status_code(http::StatusCode::BAD_REQUEST);
    e
}

#[derive(Serialize)]
struct LdapEntity<'a> {
    dn: &'a str,
    policies: &'a std::collections::BTreeSet<String>,
}

#[derive(Serialize)]
struct LdapEntities<'a> {
    users: Vec<LdapEntity<'a>>,
    groups: Vec<LdapEntity<'a>>,
}

/// The DN mappings, optionally only those of the given user and group DNs or naming one of the
/// given policies (`mc idp ldap policy entities`' filters).
fn ldap_entities<'a>(iam: &'a IamState, uri: &Uri) -> S3Result<LdapEntities<'a>> {
    let values = |name: &str| -> S3Result<Vec<String>> {
        super::query_values(uri, name)
            .into_iter()
            .map(|v| {
                if name == "policy" {
                    return Ok(v);
                }
                crate::idp::dn::normalize(&v).ok_or_else(|| iam_error(IamError::InvalidDn(v)))
            })
            .collect()
    };
    let (users, groups, policies) = (values("user")?, values("group")?, values("policy")?);
    let any_filter = !users.is_empty() || !groups.is_empty() || !policies.is_empty();
    let pick = |map: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
                dns: &[String]| {
        map.iter()
            .filter(|(dn, set)| {
                !any_filter || dns.contains(dn) || set.iter().any(|p| policies.contains(p))
            })
            .map(|(dn, policies)| LdapEntity { dn, policies })
            .collect()
    };
    Ok(LdapEntities {
        users: pick(&iam.ldap.users, &users),
        groups: pick(&iam.ldap.groups, &groups),
    })
}

fn policy_target(a: &Attach) -> S3Result<PolicyTarget> {
    match (&a.user, &a.group) {
        (Some(u), None) => Ok(PolicyTarget::User(u.clone())),
        (None, Some(g)) => Ok(PolicyTarget::Group(g.clone())),
        _ => Err(s3_error!(
            InvalidArgument,
            "name exactly one of user or group"
        )),
    }
}

async fn write(
    node: &Node,
    auth: &Authorizer,
    req: &mut S3Request<Body>,
    op: &str,
) -> Option<S3Result<S3Response<Body>>> {
    let r = async {
        let uri = req.uri.clone();
        let cmd = match op {
            "iam/user/add" => {
                if node.idp.external() {
                    return Err(not_allowed(
                        "users come from the external identity provider; service accounts still work",
                    ));
                }
                let b: AddUser = body_json(req).await?;
                check_secret(&b.secret_key)?;
                IamCommand::AddUser {
                    secret: seal(auth, &b.access_key, &b.secret_key),
                    access_key: b.access_key,
                }
            }
            "iam/user/remove" => IamCommand::RemoveUser {
                access_key: param(&uri, "access_key")?,
            },
            "iam/user/enable" | "iam/user/disable" => IamCommand::SetUserEnabled {
                access_key: param(&uri, "access_key")?,
                enabled: op.ends_with("enable"),
            },
            "iam/group/add" => {
                let b: Members = body_json(req).await?;
                IamCommand::AddGroupMembers {
                    group: b.group,
                    members: b.members,
                }
            }
            "iam/group/remove" => {
                let b: Members = body_json(req).await?;
                IamCommand::RemoveGroupMembers {
                    group: b.group,
                    members: b.members,
                }
            }
            "iam/group/enable" | "iam/group/disable" => IamCommand::SetGroupEnabled {
                group: param(&uri, "group")?,
                enabled: op.ends_with("enable"),
            },
            "iam/policy/create" => {
                let name = param(&uri, "name")?;
                let body = body_bytes(req).await?;
                let document = String::from_utf8(body)
                    .map_err(|_| s3_error!(MalformedPolicy, "policy is not UTF-8"))?;
                IamCommand::PutPolicy { name, document }
            }
            "iam/policy/delete" => IamCommand::DeletePolicy {
                name: param(&uri, "name")?,
            },
            "iam/policy/attach"
            | "iam/policy/detach"
            | "idp/ldap/policy/attach"
            | "idp/ldap/policy/detach" => {
                let b: Attach = body_json(req).await?;
                let target = if op.starts_with("idp/ldap/") {
                    ldap_target(node, &b)?
                } else {
                    policy_target(&b)?
                };
                if op.ends_with("/attach") {
                    IamCommand::AttachPolicy {
                        policies: b.policies,
                        target,
                    }
                } else {
                    IamCommand::DetachPolicy {
                        policies: b.policies,
                        target,
                    }
                }
            }
            "iam/svcacct/add" => return add_service_account(node, auth, req).await,
            "iam/svcacct/edit" => {
                let b: EditServiceAccount = body_json(req).await?;
                let new_policy = if b.remove_policy {
                    Some(None)
                } else {
                    b.policy.as_deref().map(Some)
                };
                check_account_owner(node, auth, req, &b.access_key, new_policy).await?;
                if let Some(s) = &b.secret_key {
                    check_secret(s)?;
                }
                if let Some(p) = &b.policy {
                    check_policy(p).map_err(iam_error)?;
                }
                let enabled = match b.status.as_deref() {
                    None => None,
                    Some("on" | "enabled") => Some(true),
                    Some("off" | "disabled") => Some(false),
                    Some(other) => {
                        return Err(s3_error!(InvalidArgument, "invalid status {other:?}"))
                    }
                };
                IamCommand::UpdateServiceAccount {
                    secret: b
                        .secret_key
                        .as_deref()
                        .map(|s| seal(auth, &b.access_key, s)),
                    policy: b.policy.filter(|_| !b.remove_policy),
                    remove_policy: b.remove_policy,
                    expires_ns: match &b.expiry {
                        Some(e) => Some(expiry_ns(auth, e)?),
                        None => None,
                    },
                    enabled,
                    access_key: b.access_key,
                }
            }
            "iam/svcacct/remove" => {
                let access_key = param(&uri, "access_key")?;
                check_account_owner(node, auth, req, &access_key, None).await?;
                IamCommand::RemoveServiceAccount { access_key }
            }
            _ => return Err(s3_error!(NotImplemented, "unknown admin operation {op}")),
        };
        propose(node, auth, cmd).await?;
        json(&OK)
    }
    .await;
    Some(r)
}

async fn add_service_account(
    node: &Node,
    auth: &Authorizer,
    req: &mut S3Request<Body>,
) -> S3Result<S3Response<Body>> {
    let b: AddServiceAccount = body_json(req).await?;
    let access_key = b
        .access_key
        .unwrap_or_else(|| auth.with_rng(|rng| random_string(rng, 20, KEY_ALPHABET)));
    let secret_key = b
        .secret_key
        .unwrap_or_else(|| auth.with_rng(|rng| random_string(rng, 40, SECRET_ALPHABET)));
    check_secret(&secret_key)?;
    if let Some(p) = &b.policy {
        check_policy(p).map_err(iam_error)?;
    }
    let state = linearizable(node).await?;
    let caller = caller_of(auth, &state.iam, req)?;
    // An external identity's own account keeps what its provider asserted (LDAP groups, OIDC
    // policies), as its sessions do.
    let (parent, asserted) = match b.parent.filter(|p| !p.is_empty()) {
        Some(p) => (parent_of(node, auth, p), Asserted::default()),
        None => (own_parent(&caller), own_asserted(&caller)),
    };
    may_manage(auth, req, &caller, &parent, Manage::Change)?;
    let policy = match (narrowing(&caller), b.policy) {
        (Some(own), None) if parent == own_parent(&caller) => Some(own.to_owned()),
        (_, policy) => policy,
    };
    keeps_narrowing(&caller, &parent, policy.as_deref(), None)?;
    let expires_ns = match &b.expiry {
        Some(e) => Some(expiry_ns(auth, e)?),
        None => None,
    };
    let cmd = IamCommand::AddServiceAccount {
        account: Box::new(ServiceAccount {
            parent,
            secret: seal(auth, &access_key, &secret_key),
            policy,
            expires_ns,
            enabled: true,
            name: b.name,
            description: b.description,
            asserted,
        }),
        access_key: access_key.clone(),
    };
    propose(node, auth, cmd).await?;
    json(&Credentials {
        access_key,
        secret_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::Claims;

    #[test]
    fn narrowed_callers_keep_their_policy() {
        let alice = Parent::User("alice".into());
        let own = "{\"narrow\":1}";
        let session = Caller::Session {
            access_key: "ASIA".into(),
            claims: Claims {
                parent: alice.clone(),
                expires_ns: 0,
                policy: Some(own.into()),
                asserted: Asserted::default(),
            },
        };
        let account = Caller::ServiceAccount {
            access_key: "svc".into(),
            parent: alice.clone(),
            policy: Some(own.into()),
            asserted: Asserted::default(),
        };
        for caller in [&session, &account] {
            assert!(keeps_narrowing(caller, &alice, Some(own), None).is_ok());
            assert!(keeps_narrowing(caller, &alice, Some(own), Some(Some(own))).is_ok());
            assert!(keeps_narrowing(caller, &alice, None, None).is_err());
            assert!(keeps_narrowing(caller, &alice, Some("{}"), None).is_err());
            assert!(keeps_narrowing(caller, &alice, Some(own), Some(None)).is_err());
            assert!(keeps_narrowing(caller, &alice, Some(own), Some(Some("{}"))).is_err());
            // Another identity's accounts are `may_manage`'s to decide.
            assert!(keeps_narrowing(caller, &Parent::User("bob".into()), None, None).is_ok());
        }
        let user = Caller::User("alice".into());
        assert!(keeps_narrowing(&user, &alice, None, Some(None)).is_ok());
        let unnarrowed = Caller::ServiceAccount {
            access_key: "svc".into(),
            parent: alice.clone(),
            policy: None,
            asserted: Asserted::default(),
        };
        assert!(keeps_narrowing(&unnarrowed, &alice, None, Some(None)).is_ok());
    }
}
