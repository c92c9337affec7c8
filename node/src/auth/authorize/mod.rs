//! Authorization of every S3 and admin request: resolves the caller (root, user, service account
//! or anonymous) from the node's applied site state, gathers the policies that apply (the user's
//! and its enabled groups', the parent's for a service account narrowed by its inline policy, the
//! bucket policy) and evaluates each permission the request needs, with the condition keys taken
//! from the request and the time from the node's clock.
//!
//! The condition keys come from the request in [`condition_keys`]; [`s3_access`] is the check s3s
//! runs before every S3 operation, on top of the [`Authorizer`].

pub mod condition_keys;
pub mod s3_access;

use std::collections::HashMap;

use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use s3s::s3_error;

use cairn_control_plane::iam::identity::{Asserted, IamState, Parent};
use cairn_control_plane::iam::{
    evaluate, Policy, PolicySet, Principal, PrincipalType, RequestContext,
};
use cairn_control_plane::SiteState;

use super::iam::{Caller, CallerError, IamCredentials};
use crate::clock::SharedClock;

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
    /// Every refusal passes here on its way to the client, so the request's notes (the audit
    /// log's "why denied") hear of each.
    pub fn to_s3(&self) -> s3s::S3Error {
        crate::telemetry::note(|n| {
            n.denied = true;
            if n.detailed {
                n.decision = Some(self.to_string());
            }
        });
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

    /// Parsed policy documents held now (the metrics' IAM cache size).
    pub fn policy_cache_entries(&self) -> usize {
        self.cache
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
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
            if let Some(p) = self.named(iam, name) {
                out.push((name.clone(), None, p));
            }
        }
        for (gname, g) in iam.groups_of(user).filter(|(_, g)| g.enabled) {
            groups.push(gname.to_owned());
            for name in &g.policies {
                if let Some(p) = self.named(iam, name) {
                    out.push((name.clone(), Some(gname.to_owned()), p));
                }
            }
        }
    }

    /// A named policy (canned or stored), parsed once; `None` if no such policy exists.
    fn named(&self, iam: &IamState, name: &str) -> Option<Arc<Policy>> {
        iam.policy_document(name)
            .and_then(|d| self.cache.get(None, d))
    }

    /// The principal and policies of credentials that act for `parent` (a service account or a
    /// session), narrowed by their inline `policy`.
    #[allow(clippy::too_many_arguments)]
    fn inherited(
        &self,
        state: &SiteState,
        access_key: &str,
        parent: &Parent,
        asserted: &Asserted,
        policy: Option<&str>,
        identity: &mut Vec<(String, Option<String>, Arc<Policy>)>,
        groups: &mut Vec<String>,
    ) -> (Principal, Option<Arc<Policy>>) {
        let session = policy.and_then(|d| self.cache.get(None, d));
        let iam = &state.iam;
        let mut named = |name: &str, group: Option<&str>| {
            if let Some(p) = self.named(iam, name) {
                identity.push((name.to_owned(), group.map(str::to_owned), p));
            }
        };
        let principal = match parent {
            Parent::Root => Principal::root(ACCOUNT),
            Parent::User(u) => {
                self.user_policies(state, u, identity, groups);
                Principal::user(ACCOUNT, u, access_key)
            }
            Parent::Ldap(dn) => {
                for (name, group) in iam.ldap.policies_of(dn, &asserted.groups) {
                    named(name, group);
                }
                groups.extend(asserted.groups.iter().cloned());
                Principal::user(ACCOUNT, dn, access_key)
            }
            Parent::OpenId { subject, .. } | Parent::Certificate(subject) => {
                for name in &asserted.policies {
                    named(name, None);
                }
                Principal::user(ACCOUNT, subject, access_key)
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
                asserted,
            }) => self.inherited(
                state,
                access_key,
                parent,
                asserted,
                policy.as_deref(),
                &mut identity,
                &mut groups,
            ),
            Some(Caller::Session { access_key, claims }) => {
                let (mut principal, session) = self.inherited(
                    state,
                    access_key,
                    &claims.parent,
                    &claims.asserted,
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
        crate::telemetry::note_detail(|n| n.access_key = signer.map(|s| s.access_key.to_owned()));
        let caller = match signer {
            None => None,
            Some(s) => Some(self.iam.caller(&state.iam, s.access_key, s.session_token)?),
        };
        crate::telemetry::note_detail(|n| {
            let (kind, user) = match &caller {
                None => ("anonymous", None),
                Some(c) => c.describe(),
            };
            n.credentials = Some(kind);
            n.user = user;
        });
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
            if verdict.allowed {
                crate::telemetry::note_detail(|n| {
                    n.decision = Some(format!(
                        "{action} on {}: {verdict}",
                        ctx.resource.as_deref().unwrap_or("*")
                    ))
                });
            } else {
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

#[cfg(test)]
mod tests;
