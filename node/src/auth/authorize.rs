//! Authorization of every S3 and admin request: resolves the caller (root, user, service account
//! or anonymous) from the node's applied site state, gathers the policies that apply (the user's
//! and its enabled groups', the parent's for a service account narrowed by its inline policy, the
//! bucket policy) and evaluates each permission the request needs, with the condition keys taken
//! from the request and the time from the node's clock.

use std::collections::HashMap;

use std::sync::{Arc, Mutex};

use hyper::{HeaderMap, Uri};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{CopyObjectInput, CopySource, PostObjectInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{s3_error, S3Request, S3Result};

use cairn_control_plane::iam::identity::Parent;
use cairn_control_plane::iam::{
    evaluate, Policy, PolicySet, Principal, PrincipalType, RequestContext,
};
use cairn_control_plane::SiteState;

use super::iam::{Caller, CallerError, IamCredentials};
use super::operation::{copy_source_read, delete_key, needed, Needed, OpRequest};
use super::ConnInfo;
use crate::clock::SharedClock;
use crate::object::ObjectLayer;
use crate::s3::convert::parse_tagging_header;

/// The account id in ARNs (`arn:aws:iam::ACCOUNT:user/NAME`): a site is one account.
pub const ACCOUNT: &str = "000000000000";

/// Parsed documents kept above this many are dropped and parsed again on demand.
const CACHE_LIMIT: usize = 4096;

/// Why a request was refused (mapped to `AccessDenied` at the edge; the reason goes to the log,
/// never to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(transparent)]
    Caller(#[from] CallerError),
    #[error("operation {0} is not mapped to an IAM action")]
    Unmapped(String),
    #[error("{action} on {resource}: {verdict}")]
    Policy {
        action: String,
        resource: String,
        verdict: String,
    },
}

/// Who signed a request: the access key and, for STS session credentials, the session token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl<'a> From<&'a str> for Signer<'a> {
    fn from(access_key: &'a str) -> Self {
        Self {
            access_key,
            session_token: None,
        }
    }
}

impl Denied {
    /// The S3 error a client sees: the reason itself stays in the log, except for the token
    /// errors, which AWS names so that clients know to refresh their credentials.
    pub fn to_s3(&self) -> s3s::S3Error {
        match self {
            Denied::Caller(CallerError::ExpiredToken) => {
                s3_error!(ExpiredToken, "The provided token has expired.")
            }
            Denied::Caller(CallerError::InvalidToken) => s3_error!(
                InvalidToken,
                "The provided token is malformed or otherwise invalid."
            ),
            _ => s3_error!(AccessDenied, "Access Denied."),
        }
    }
}

/// Parsed policy documents by (bucket for bucket policies, text): a document is parsed once, not
/// on every request.
#[derive(Default)]
struct PolicyCache(Mutex<HashMap<CacheKey, Arc<Policy>>>);

/// The bucket (for bucket policies) and the document text.
type CacheKey = (Option<String>, String);

impl PolicyCache {
    fn get(&self, bucket: Option<&str>, text: &str) -> Option<Arc<Policy>> {
        let key = (bucket.map(str::to_owned), text.to_owned());
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = map.get(&key) {
            return Some(p.clone());
        }
        let parsed = match bucket {
            Some(b) => Policy::load_bucket(text, b),
            None => Policy::parse_identity(text),
        };
        match parsed {
            Ok(p) => {
                if map.len() >= CACHE_LIMIT {
                    map.clear();
                }
                let p = Arc::new(p);
                map.insert(key, p.clone());
                Some(p)
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored policy does not parse: ignored");
                None
            }
        }
    }
}

/// The policies that apply to one caller, resolved from the state.
struct Resolved {
    principal: Principal,
    /// (source label, group if any, policy).
    identity: Vec<(String, Option<String>, Arc<Policy>)>,
    session: Option<Arc<Policy>>,
}

pub struct Authorizer {
    pub iam: Arc<IamCredentials>,
    pub clock: SharedClock,
    cache: PolicyCache,
    /// Nonces for sealing and generated keys of the IAM changes this node proposes, seeded from
    /// the node's handed-in RNG.
    rng: Mutex<ChaCha20Rng>,
}

impl Authorizer {
    pub fn new(iam: Arc<IamCredentials>, clock: SharedClock, seed_from: &mut dyn RngCore) -> Self {
        let mut seed = [0u8; 32];
        seed_from.fill_bytes(&mut seed);
        Self {
            iam,
            clock,
            cache: PolicyCache::default(),
            rng: Mutex::new(ChaCha20Rng::from_seed(seed)),
        }
    }

    /// Runs `f` with this node's IAM RNG.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut *rng)
    }

    /// The identity policies of a user: its own and its enabled groups'.
    fn user_policies(
        &self,
        state: &SiteState,
        user: &str,
        out: &mut Vec<(String, Option<String>, Arc<Policy>)>,
        groups: &mut Vec<String>,
    ) {
        let iam = &state.iam;
        let Some(u) = iam.users.get(user) else {
            return;
        };
        for name in &u.policies {
            if let Some(p) = iam
                .policy_document(name)
                .and_then(|d| self.cache.get(None, d))
            {
                out.push((name.clone(), None, p));
            }
        }
        for (gname, g) in iam.groups_of(user).filter(|(_, g)| g.enabled) {
            groups.push(gname.to_owned());
            for name in &g.policies {
                if let Some(p) = iam
                    .policy_document(name)
                    .and_then(|d| self.cache.get(None, d))
                {
                    out.push((name.clone(), Some(gname.to_owned()), p));
                }
            }
        }
    }

    /// The principal and policies of credentials that act for `parent` (a service account or a
    /// session), narrowed by their inline `policy`.
    fn inherited(
        &self,
        state: &SiteState,
        access_key: &str,
        parent: &Parent,
        policy: Option<&str>,
        identity: &mut Vec<(String, Option<String>, Arc<Policy>)>,
        groups: &mut Vec<String>,
    ) -> (Principal, Option<Arc<Policy>>) {
        let session = policy.and_then(|d| self.cache.get(None, d));
        let principal = match parent {
            Parent::Root => Principal::root(ACCOUNT),
            Parent::User(u) => {
                self.user_policies(state, u, identity, groups);
                Principal::user(ACCOUNT, u, access_key)
            }
        };
        (principal, session)
    }

    fn resolve(&self, state: &SiteState, caller: Option<&Caller>) -> Resolved {
        let mut identity = Vec::new();
        let mut groups = Vec::new();
        let (mut principal, session) = match caller {
            None => (Principal::anonymous(), None),
            Some(Caller::Root) => (Principal::root(ACCOUNT), None),
            Some(Caller::User(u)) => {
                self.user_policies(state, u, &mut identity, &mut groups);
                (Principal::user(ACCOUNT, u, u), None)
            }
            Some(Caller::ServiceAccount {
                access_key,
                parent,
                policy,
            }) => self.inherited(
                state,
                access_key,
                parent,
                policy.as_deref(),
                &mut identity,
                &mut groups,
            ),
            Some(Caller::Session { access_key, claims }) => {
                let (mut principal, session) = self.inherited(
                    state,
                    access_key,
                    &claims.parent,
                    claims.policy.as_deref(),
                    &mut identity,
                    &mut groups,
                );
                if !principal.is_root() {
                    principal.kind = PrincipalType::AssumedRole;
                }
                (principal, session)
            }
        };
        principal.groups = groups;
        Resolved {
            principal,
            identity,
            session,
        }
    }

    fn bucket_policy(&self, state: &SiteState, bucket: Option<&str>) -> Option<Arc<Policy>> {
        let b = bucket?;
        let text = state.bucket(b)?.policy.as_deref()?;
        self.cache.get(Some(b), text)
    }

    /// Resolves `signer` (`None`: anonymous) and the policies that apply to it, once per
    /// request: the condition-key lookups and the decisions share it.
    pub fn grants(&self, signer: Option<Signer<'_>>) -> Result<Grants, Denied> {
        let state = self.iam.state();
        let caller = match signer {
            None => None,
            Some(s) => Some(self.iam.caller(&state.iam, s.access_key, s.session_token)?),
        };
        if caller == Some(Caller::Root) {
            return Ok(Grants(None));
        }
        let resolved = self.resolve(&state, caller.as_ref());
        Ok(Grants(Some((resolved, state))))
    }

    /// Decides whether `signer` (`None`: anonymous) may do everything in `needed`; `keys` are
    /// the request's condition keys.
    pub fn authorize(
        &self,
        signer: Option<Signer<'_>>,
        needed: &[(&str, Option<String>)],
        keys: &[(String, Vec<String>)],
    ) -> Result<(), Denied> {
        self.decide(&self.grants(signer)?, needed, keys)
    }

    /// Whether some policy that applies to `grants` on `bucket` has a condition on a key
    /// starting with `prefix`, so that the key is worth computing (false for root).
    pub fn mentions(&self, grants: &Grants, bucket: Option<&str>, prefix: &str) -> bool {
        let Some((r, state)) = &grants.0 else {
            return false;
        };
        r.identity
            .iter()
            .map(|(_, _, p)| p.clone())
            .chain(r.session.iter().cloned())
            .chain(self.bucket_policy(state, bucket))
            .any(|p| p.mentions_key(prefix))
    }

    /// Decides `needed` against grants already resolved. Each permission is decided with the
    /// policy of the bucket its resource lies in (a copy reads from one bucket and writes to
    /// another: two bucket policies, each consulted for its own bucket only).
    pub fn decide(
        &self,
        grants: &Grants,
        needed: &[(&str, Option<String>)],
        keys: &[(String, Vec<String>)],
    ) -> Result<(), Denied> {
        let Some((r, state)) = &grants.0 else {
            return Ok(());
        };
        let mut identity = PolicySet::default();
        for (name, group, p) in &r.identity {
            identity = match group {
                Some(g) => identity.group(g, name, p),
                None => identity.user(name, p),
            };
        }
        if let Some(s) = &r.session {
            identity = identity.session(s);
        }
        let now = self.clock.now();
        for (action, resource) in needed {
            let bucket_policy = self.bucket_policy(state, resource.as_deref().and_then(bucket_of));
            let mut set = identity.clone();
            if let Some(b) = &bucket_policy {
                set = set.bucket(b);
            }
            let mut ctx =
                RequestContext::new(action, resource.clone(), r.principal.clone()).with_time(now);
            for (k, v) in keys {
                ctx.keys.set_all(k, v.clone());
            }
            let verdict = evaluate(&ctx, &set);
            if !verdict.allowed {
                return Err(Denied::Policy {
                    action: (*action).to_owned(),
                    resource: resource.clone().unwrap_or_default(),
                    verdict: verdict.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A caller's policies for one request and the state its bucket policies are read from; `None`
/// for root, who needs none.
pub struct Grants(Option<(Resolved, Arc<SiteState>)>);

/// The bucket an S3 ARN (`arn:aws:s3:::bucket[/key]`) lies in; `None` for account-wide
/// resources (`arn:aws:s3:::*`) and non-S3 ones.
fn bucket_of(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("arn:aws:s3:::")?;
    let bucket = rest.split_once('/').map_or(rest, |(b, _)| b);
    (!bucket.is_empty() && bucket != "*").then_some(bucket)
}

/// `name=value` pairs of the query string, percent-decoded.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    form_pairs(uri.query().unwrap_or(""))
}

/// `name=value` pairs of a query string or `application/x-www-form-urlencoded` body.
pub fn form_pairs(form: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    form.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The STS session token a request carries, in the header or (presigned) the query string.
pub fn session_token(headers: &HeaderMap, query: &[(String, String)]) -> Option<String> {
    header(headers, "x-amz-security-token")
        .map(str::to_owned)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-security-token"))
                .map(|(_, v)| v.clone())
        })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The signature version and auth type (`s3:signatureversion`, `s3:authType`) of a request.
fn signature_keys(
    headers: &HeaderMap,
    query: &[(String, String)],
    op: &str,
) -> [(&'static str, &'static str); 2] {
    let has = |n: &str| query.iter().any(|(k, _)| k == n);
    let auth = header(headers, "authorization").unwrap_or("");
    let (version, kind) = if op == "PostObject" {
        ("AWS4-HMAC-SHA256", "POST")
    } else if auth.starts_with("AWS4-") {
        ("AWS4-HMAC-SHA256", "REST-HEADER")
    } else if auth.starts_with("AWS ") {
        ("AWS", "REST-HEADER")
    } else if has("X-Amz-Algorithm") {
        ("AWS4-HMAC-SHA256", "REST-QUERY-STRING")
    } else if has("AWSAccessKeyId") {
        ("AWS", "REST-QUERY-STRING")
    } else {
        ("", "")
    };
    [("s3:signatureversion", version), ("s3:authType", kind)]
}

/// The condition keys a request carries (the principal's and the time are added per decision).
/// A POST upload carries its object headers as form fields, read once s3s has parsed them
/// ([`object_keys`] in the `post_object` hook), never from its HTTP headers.
pub fn request_keys(
    headers: &HeaderMap,
    uri: &Uri,
    conn: Option<ConnInfo>,
    op: &str,
    now: time::OffsetDateTime,
) -> Vec<(String, Vec<String>)> {
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if !v.is_empty() {
            keys.push((k.to_owned(), vec![v.to_owned()]));
        }
    };
    if let Some(c) = conn {
        set("aws:SourceIp", &c.peer.ip().to_canonical().to_string());
    }
    let secure = conn.is_some_and(|c| c.secure);
    set("aws:SecureTransport", if secure { "true" } else { "false" });
    for (key, h) in [("aws:Referer", "referer"), ("aws:UserAgent", "user-agent")] {
        if let Some(v) = header(headers, h) {
            set(key, v);
        }
    }
    let query = query_pairs(uri);
    for (key, q) in [
        ("s3:prefix", "prefix"),
        ("s3:delimiter", "delimiter"),
        ("s3:max-keys", "max-keys"),
        ("s3:versionid", "versionId"),
    ] {
        if let Some((_, v)) = query.iter().find(|(k, _)| k == q) {
            // An empty prefix is still a prefix (`s3:prefix` = "").
            keys_push(&mut keys, key, v);
        }
    }
    for (k, v) in signature_keys(headers, &query, op) {
        if !v.is_empty() {
            keys.push((k.to_owned(), vec![v.to_owned()]));
        }
    }
    if op != "PostObject" {
        keys.extend(object_keys(headers, now));
    }
    keys
}

/// The condition keys of the object headers of a write (SSE, lock, ACL, storage class, copy
/// source, tags).
fn object_keys(headers: &HeaderMap, now: time::OffsetDateTime) -> Vec<(String, Vec<String>)> {
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if !v.is_empty() {
            keys.push((k.to_owned(), vec![v.to_owned()]));
        }
    };
    for (key, h) in [
        (
            "s3:x-amz-server-side-encryption",
            "x-amz-server-side-encryption",
        ),
        (
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
            "x-amz-server-side-encryption-aws-kms-key-id",
        ),
        (
            "s3:x-amz-server-side-encryption-customer-algorithm",
            "x-amz-server-side-encryption-customer-algorithm",
        ),
        ("s3:object-lock-mode", "x-amz-object-lock-mode"),
        (
            "s3:object-lock-retain-until-date",
            "x-amz-object-lock-retain-until-date",
        ),
        ("s3:object-lock-legal-hold", "x-amz-object-lock-legal-hold"),
        ("s3:x-amz-acl", "x-amz-acl"),
        ("s3:x-amz-copy-source", "x-amz-copy-source"),
        ("s3:x-amz-metadata-directive", "x-amz-metadata-directive"),
        ("s3:x-amz-storage-class", "x-amz-storage-class"),
    ] {
        if let Some(v) = header(headers, h) {
            set(key, v);
        }
    }
    if let Some(until) = header(headers, "x-amz-object-lock-retain-until-date").and_then(|v| {
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
    }) {
        let days = ((until - now).whole_seconds().max(0) + 86_399) / 86_400;
        set("s3:object-lock-remaining-retention-days", &days.to_string());
    }
    // Decoded by the very function that decodes the tags stored (`+` is a space); tags that do
    // not decode give no key, and the handler refuses them (InvalidArgument).
    if let Ok(tags) = parse_tagging_header(header(headers, "x-amz-tagging")) {
        for t in tags {
            keys.push((format!("s3:RequestObjectTag/{}", t.key), vec![t.value]));
        }
    }
    keys
}

fn keys_push(keys: &mut Vec<(String, Vec<String>)>, key: &str, value: &str) {
    keys.push((key.to_owned(), vec![value.to_owned()]));
}

/// The [`S3Access`] s3s calls before every S3 operation (anonymous requests included).
pub struct S3Authorizer {
    pub authorizer: Arc<Authorizer>,
    /// Reads the tags of the object a request names, for `s3:ExistingObjectTag/<key>`.
    pub objects: Arc<ObjectLayer>,
}

/// Operations on an existing object whose policies may test its tags (`s3:ExistingObjectTag`).
const EXISTING_TAG_OPS: [&str; 12] = [
    "GetObject",
    "HeadObject",
    "GetObjectAttributes",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "GetObjectAcl",
    "PutObjectAcl",
    "GetObjectRetention",
    "PutObjectRetention",
    "GetObjectLegalHold",
    "PutObjectLegalHold",
];

const EXISTING_TAG: &str = "s3:existingobjecttag/";

const COPY_SOURCE_KEY: &str = "s3:x-amz-copy-source";

/// Operations whose permissions depend on what s3s parses from the request (the copy source, the
/// key and fields of a POST form): `check` resolves the caller and leaves a [`Pending`]; the
/// operation's hook decides every permission on the parsed input, the one the handler then acts
/// on.
const PARSED_OPS: [&str; 3] = ["CopyObject", "UploadPartCopy", "PostObject"];

#[async_trait::async_trait]
impl S3Access for S3Authorizer {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let client = cx.extensions_mut().get::<ConnInfo>().copied();
        let op = cx.s3_op().name();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(&**bucket), None),
            S3Path::Object { bucket, key } => (Some(&**bucket), Some(&**key)),
        };
        let query = query_pairs(cx.uri());
        // Any version id, `null` included, names a version: the `...Version` actions apply.
        let versioned = query.iter().any(|(k, _)| k == "versionId");
        let access_key = cx.credentials().map(|c| c.access_key.clone());
        // A peer site's replication identity is no IAM principal: replica writes only.
        if let Some(peer) = access_key
            .as_deref()
            .and_then(|k| self.authorizer.iam.site_peer(k))
        {
            if crate::s3::replica::peer_may(op, cx.headers()) {
                return Ok(());
            }
            tracing::info!(op, peer = %peer, "access denied: a site's replication identity writes replicas only");
            return Err(s3_error!(AccessDenied, "Access Denied."));
        }
        let token = session_token(cx.headers(), &query);
        let signer = access_key.as_deref().map(|k| Signer {
            access_key: k,
            session_token: token.as_deref(),
        });
        let req = OpRequest {
            op,
            bucket,
            key,
            versioned,
            headers: cx.headers(),
        };
        let mut keys = request_keys(
            cx.headers(),
            cx.uri(),
            client,
            op,
            self.authorizer.clock.now(),
        );
        let result = match self.authorizer.grants(signer) {
            Err(e) => Err(e),
            Ok(grants) => {
                if let (Some(b), Some(k), true) = (bucket, key, EXISTING_TAG_OPS.contains(&op)) {
                    if self.authorizer.mentions(&grants, bucket, EXISTING_TAG) {
                        let version = query
                            .iter()
                            .find(|(k, _)| k == "versionId")
                            .map(|(_, v)| v.as_str());
                        // A missing object has no tags: the handler reports NoSuchKey if allowed.
                        if let Ok(info) = self.objects.head_object(b, k, version).await {
                            for t in &info.version.tags {
                                keys.push((
                                    format!("s3:ExistingObjectTag/{}", t.key),
                                    vec![t.value.clone()],
                                ));
                            }
                        }
                    }
                }
                match needed(&req) {
                    None if access_key
                        .as_deref()
                        .is_some_and(|k| self.authorizer.iam.is_root(k)) =>
                    {
                        Ok((Vec::new(), grants))
                    }
                    None => Err(Denied::Unmapped(op.to_owned())),
                    // Decided in the operation's hook, with what s3s parsed.
                    Some(n) if PARSED_OPS.contains(&op) => Ok((as_pairs(n), grants)),
                    Some(n) => {
                        let n = as_pairs(n);
                        self.authorizer
                            .decide(&grants, &n, &keys)
                            .map(|()| (n, grants))
                    }
                }
            }
        };
        let (granted, grants) = result.map_err(|e| {
            tracing::info!(op, access_key = access_key.as_deref().unwrap_or("anonymous"), reason = %e, "access denied");
            e.to_s3()
        })?;
        let (parsed_op, per_key) = (PARSED_OPS.contains(&op), op == "DeleteObjects");
        // The permissions of a parsed operation are not decided yet: nothing is granted here.
        let bypass_granted = !parsed_op
            && granted
                .iter()
                .any(|(a, _)| *a == "s3:BypassGovernanceRetention");
        if bypass_granted {
            cx.extensions_mut().insert(GovernanceBypass);
        }
        if parsed_op {
            cx.extensions_mut().insert(Pending(Arc::new(PendingCheck {
                authorizer: self.authorizer.clone(),
                needed: granted,
                grants,
                access_key,
                keys,
            })));
        } else if per_key {
            let check = KeyCheck {
                authorizer: self.authorizer.clone(),
                access_key,
                session_token: token,
                keys,
            };
            cx.extensions_mut().insert(Arc::new(check));
        }
        Ok(())
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        pending(&req.extensions, "CopyObject")?.copy_source(&req.input.copy_source)
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        pending(&req.extensions, "UploadPartCopy")?.copy_source(&req.input.copy_source)
    }

    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        let p = pending(&req.extensions, "PostObject")?;
        let i = &req.input;
        // The form fields as the headers of the equivalent PUT: one mapping for both.
        let until = i.object_lock_retain_until_date.as_ref().map(|t| {
            let mut buf = Vec::new();
            // Writing into a Vec cannot fail.
            let _ = t.format(s3s::dto::TimestampFormat::DateTime, &mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        let as_str = |v: Option<&str>| v.map(str::to_owned);
        let fields_given = [
            (
                "x-amz-object-lock-mode",
                as_str(i.object_lock_mode.as_ref().map(|m| m.as_str())),
            ),
            ("x-amz-object-lock-retain-until-date", until),
            (
                "x-amz-object-lock-legal-hold",
                as_str(i.object_lock_legal_hold_status.as_ref().map(|h| h.as_str())),
            ),
            ("x-amz-tagging", i.tagging.clone()),
            (
                "x-amz-server-side-encryption",
                as_str(i.server_side_encryption.as_ref().map(|v| v.as_str())),
            ),
            (
                "x-amz-server-side-encryption-aws-kms-key-id",
                i.ssekms_key_id.clone(),
            ),
            (
                "x-amz-server-side-encryption-customer-algorithm",
                i.sse_customer_algorithm.clone(),
            ),
            ("x-amz-acl", as_str(i.acl.as_ref().map(|v| v.as_str()))),
            (
                "x-amz-storage-class",
                as_str(i.storage_class.as_ref().map(|v| v.as_str())),
            ),
        ];
        let mut fields = HeaderMap::new();
        for (name, value) in fields_given {
            if let Some(v) = value {
                // A field no header could carry is refused, not left out of the decision.
                let v = hyper::header::HeaderValue::from_str(&v)
                    .map_err(|_| s3_error!(InvalidArgument, "invalid form field {name}"))?;
                fields.insert(name, v);
            }
        }
        let put = OpRequest {
            op: "PutObject",
            bucket: Some(&i.bucket),
            key: Some(&i.key),
            versioned: false,
            headers: &fields,
        };
        let n = needed(&put).map(as_pairs).unwrap_or_default();
        let mut keys = p.keys.clone();
        keys.extend(object_keys(&fields, p.authorizer.clock.now()));
        p.decide("PostObject", &n, &keys)
    }
}

fn as_pairs(n: Vec<Needed>) -> Vec<(&'static str, Option<String>)> {
    n.into_iter()
        .map(|Needed { action, resource }| (action, Some(resource)))
        .collect()
}

/// The [`Pending`] `check` left for `op`; none means `check` did not run for this request, so
/// nothing is allowed.
fn pending<'a>(ext: &'a hyper::http::Extensions, op: &str) -> S3Result<&'a PendingCheck> {
    ext.get::<Pending>().map(|p| &*p.0).ok_or_else(|| {
        tracing::warn!(op, "no access check ran before the operation: denied");
        s3_error!(AccessDenied, "Access Denied.")
    })
}

/// Left in a request's extensions by `check` for the operations of [`PARSED_OPS`].
#[derive(Clone)]
struct Pending(Arc<PendingCheck>);

struct PendingCheck {
    authorizer: Arc<Authorizer>,
    /// What the request's path and headers need (the destination of a copy).
    needed: Vec<(&'static str, Option<String>)>,
    grants: Grants,
    access_key: Option<String>,
    keys: Vec<(String, Vec<String>)>,
}

impl PendingCheck {
    fn decide(
        &self,
        op: &str,
        needed: &[(&str, Option<String>)],
        keys: &[(String, Vec<String>)],
    ) -> S3Result<()> {
        self.authorizer
            .decide(&self.grants, needed, keys)
            .map_err(|e| {
                tracing::info!(op, access_key = self.access_key.as_deref().unwrap_or("anonymous"), reason = %e, "access denied");
                e.to_s3()
            })
    }

    /// A copy: its destination, and the read of its source as s3s parsed it (what the handler
    /// reads), decided with the source bucket's policy; `s3:x-amz-copy-source` is the parsed
    /// source too (`bucket/key[?versionId=...]`, decoded), so no encoding of the header evades
    /// a condition on it.
    fn copy_source(&self, src: &CopySource) -> S3Result<()> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = src
        else {
            tracing::info!(op = "copy", "access point copy source: denied");
            return Err(s3_error!(AccessDenied, "Access Denied."));
        };
        let mut n = self.needed.clone();
        n.extend(as_pairs(vec![copy_source_read(
            bucket,
            key,
            version_id.is_some(),
        )]));
        let mut source = format!("{bucket}/{key}");
        if let Some(v) = version_id {
            source = format!("{source}?versionId={v}");
        }
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(COPY_SOURCE_KEY))
            .cloned()
            .collect();
        keys_push(&mut keys, COPY_SOURCE_KEY, &source);
        self.decide("copy", &n, &keys)
    }
}

/// Left in a request's extensions when the caller was allowed `s3:BypassGovernanceRetention`
/// (asked for only when the request carries the bypass header).
#[derive(Debug, Clone, Copy)]
pub struct GovernanceBypass;

/// Authorizes the keys of a DeleteObjects request one by one, as its handler reads them from the
/// body: what the request-level check could not do.
pub struct KeyCheck {
    authorizer: Arc<Authorizer>,
    access_key: Option<String>,
    session_token: Option<String>,
    keys: Vec<(String, Vec<String>)>,
}

impl KeyCheck {
    /// May the caller delete `key` (the version `version_id`, when given) from `bucket`?
    pub fn check(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        bypass: bool,
    ) -> Result<(), Denied> {
        let versioned = version_id.is_some();
        let n: Vec<(&str, Option<String>)> = delete_key(bucket, key, versioned, bypass)
            .into_iter()
            .map(|Needed { action, resource }| (action, Some(resource)))
            .collect();
        let signer = self.access_key.as_deref().map(|k| Signer {
            access_key: k,
            session_token: self.session_token.as_deref(),
        });
        let mut keys = self.keys.clone();
        if let Some(v) = version_id {
            keys_push(&mut keys, "s3:versionid", v);
        }
        self.authorizer
            .authorize(signer, &n, &keys)
            .inspect_err(|e| {
                tracing::info!(op = "DeleteObjects", key, access_key = self.access_key.as_deref().unwrap_or("anonymous"), reason = %e, "access denied");
            })
    }
}

#[cfg(test)]
mod tests;
