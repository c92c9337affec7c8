//! Credentials backed by the node's applied site state: root, IAM users and service accounts.
//! Every lookup reads the state this node has applied, so a disabled user, a removed service
//! account or a changed secret takes effect here as soon as the Raft entry is applied locally.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use cairn_control_plane::iam::identity::{Asserted, IamState, Parent};
use cairn_control_plane::raft::ControlPlane;
use cairn_control_plane::SiteState;

use super::sealing::SecretSealer;
use super::session::{is_session_key, Claims, SessionKeys};
use super::{CredentialStore, Identity, RootCredentials};
use crate::clock::SharedClock;

/// Who a verified access key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Root,
    /// An IAM user, by access key.
    User(String),
    /// A service account: its access key, its parent, its inline policy and, for an external
    /// identity's account, what the provider asserted.
    ServiceAccount {
        access_key: String,
        parent: Parent,
        policy: Option<String>,
        asserted: Asserted,
    },
    /// STS temporary credentials: their access key and the claims of their session token.
    Session {
        access_key: String,
        claims: Claims,
    },
}

impl Caller {
    /// The kind of credentials and the IAM identity they act for (a service account's or
    /// session's parent), as the audit log names them: no secret, no session token.
    pub fn describe(&self) -> (&'static str, Option<String>) {
        let parent = |p: &Parent| match p {
            Parent::Root => "root".to_owned(),
            Parent::User(u) | Parent::Ldap(u) | Parent::Certificate(u) => u.clone(),
            Parent::OpenId { provider, subject } => format!("{provider}:{subject}"),
        };
        match self {
            Caller::Root => ("root", Some("root".to_owned())),
            Caller::User(u) => ("user", Some(u.clone())),
            Caller::ServiceAccount { parent: p, .. } => ("service-account", Some(parent(p))),
            Caller::Session { claims, .. } => ("session", Some(parent(&claims.parent))),
        }
    }
}

/// Why a signed request has no caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    #[error("unknown or disabled access key")]
    Unknown,
    #[error("the session token has expired")]
    ExpiredToken,
    #[error("the session token is missing, malformed or not for this access key")]
    InvalidToken,
}

/// Where the applied site state comes from (the control plane; a fixed state in unit tests).
pub trait StateSource: Send + Sync + 'static {
    fn state(&self) -> Arc<SiteState>;
}

impl StateSource for ControlPlane {
    fn state(&self) -> Arc<SiteState> {
        ControlPlane::state(self)
    }
}

pub struct IamCredentials {
    pub root: RootCredentials,
    pub sealer: SecretSealer,
    pub sessions: SessionKeys,
    control: Arc<dyn StateSource>,
    clock: SharedClock,
}

impl IamCredentials {
    pub fn new(root: RootCredentials, control: Arc<dyn StateSource>, clock: SharedClock) -> Self {
        Self {
            sealer: SecretSealer::new(&root, None),
            sessions: SessionKeys::new(&root),
            root,
            control,
            clock,
        }
    }

    /// Seals IAM secrets under a key derived from the KMS master key (see `auth::sealing`).
    pub fn with_master_key(mut self, master: Option<&crate::sse::registry::MasterKey>) -> Self {
        self.sealer = SecretSealer::new(&self.root, master);
        self
    }

    pub fn state(&self) -> Arc<SiteState> {
        self.control.state()
    }

    /// True for root's access key (compared in constant time).
    pub fn is_root(&self, access_key: &str) -> bool {
        bool::from(access_key.as_bytes().ct_eq(self.root.access_key.as_bytes()))
    }

    /// The peer site whose replication identity `access_key` is. Such a key is no IAM caller:
    /// it may only write replicas and apply outbox entries (`s3::replica`, `admin::site`).
    pub fn site_peer(&self, access_key: &str) -> Option<String> {
        if self.is_root(access_key) {
            return None;
        }
        self.state()
            .sites
            .peer_by_key(access_key)
            .map(|(name, _)| name.to_owned())
    }

    /// The caller behind an access key, if it may sign requests now: known, enabled, not expired,
    /// and (for a service account or a session) with an enabled parent. `session_token` is the
    /// request's `x-amz-security-token`, which session credentials must carry.
    pub fn caller(
        &self,
        iam: &IamState,
        access_key: &str,
        session_token: Option<&str>,
    ) -> Result<Caller, CallerError> {
        if self.is_root(access_key) {
            return Ok(Caller::Root);
        }
        if self.site_peer(access_key).is_some() {
            return Err(CallerError::Unknown);
        }
        if let Some(u) = iam.users.get(access_key) {
            return u
                .enabled
                .then(|| Caller::User(access_key.to_owned()))
                .ok_or(CallerError::Unknown);
        }
        let now = self.clock.now_ns();
        // An external identity's standing is its provider's: a session lasts until it expires,
        // an account until the directory check (`idp::ldap`) disables it.
        let parent_ok = |p: &Parent| match p {
            Parent::Root | Parent::Ldap(_) | Parent::OpenId { .. } | Parent::Certificate(_) => true,
            Parent::User(p) => iam.users.get(p).is_some_and(|u| u.enabled),
        };
        if let Some(s) = iam.service_accounts.get(access_key) {
            let expired = s.expires_ns.is_some_and(|e| now >= e);
            return (s.enabled && !expired && parent_ok(&s.parent))
                .then(|| Caller::ServiceAccount {
                    access_key: access_key.to_owned(),
                    parent: s.parent.clone(),
                    policy: s.policy.clone(),
                    asserted: s.asserted.clone(),
                })
                .ok_or(CallerError::Unknown);
        }
        if !is_session_key(access_key) {
            return Err(CallerError::Unknown);
        }
        let claims = self
            .sessions
            .open(access_key, session_token.ok_or(CallerError::InvalidToken)?)
            .map_err(|_| CallerError::InvalidToken)?;
        if now >= claims.expires_ns {
            return Err(CallerError::ExpiredToken);
        }
        if !parent_ok(&claims.parent) {
            return Err(CallerError::Unknown);
        }
        Ok(Caller::Session {
            access_key: access_key.to_owned(),
            claims,
        })
    }
}

impl CredentialStore for IamCredentials {
    /// The secret to check a signature with. A session's secret is derived from its access key;
    /// its token (which this lookup does not see) is checked when the request is authorized.
    fn lookup(&self, access_key: &str) -> Option<(Identity, String)> {
        if self.is_root(access_key) {
            return self.root.lookup(access_key);
        }
        let state = self.state();
        if let Some((_, peer)) = state.sites.peer_by_key(access_key) {
            let secret = self.sealer.open(access_key, &peer.secret)?;
            let identity = Identity {
                access_key: access_key.to_owned(),
                is_root: false,
            };
            return Some((identity, secret.to_string()));
        }
        let iam = &state.iam;
        let sealed = match self.caller(iam, access_key, None) {
            Ok(Caller::User(_)) => &iam.users.get(access_key)?.secret,
            Ok(Caller::ServiceAccount { .. }) => &iam.service_accounts.get(access_key)?.secret,
            // A session's key: its token is not here to check, only the derived secret is needed.
            Err(CallerError::InvalidToken) => {
                let identity = Identity {
                    access_key: access_key.to_owned(),
                    is_root: false,
                };
                return Some((identity, self.sessions.secret_for(access_key).to_string()));
            }
            _ => return None,
        };
        let secret = self.sealer.open(access_key, sealed)?;
        Some((
            Identity {
                access_key: access_key.to_owned(),
                is_root: false,
            },
            secret.to_string(),
        ))
    }

    fn root(&self) -> Option<RootCredentials> {
        Some(self.root.clone())
    }

    fn site_peer(&self, access_key: &str) -> Option<String> {
        IamCredentials::site_peer(self, access_key)
    }
}
