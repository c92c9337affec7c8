//! Credentials backed by the node's applied site state: root, IAM users and service accounts.
//! Every lookup reads the state this node has applied, so a disabled user, a removed service
//! account or a changed secret takes effect here as soon as the Raft entry is applied locally.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use cairn_control_plane::iam::identity::{IamState, Parent};
use cairn_control_plane::raft::ControlPlane;
use cairn_control_plane::SiteState;

use super::sealing::SecretSealer;
use super::{CredentialStore, Identity, RootCredentials};
use crate::clock::SharedClock;

/// Who a verified access key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Root,
    /// An IAM user, by access key.
    User(String),
    /// A service account: its access key, its parent and its inline policy.
    ServiceAccount {
        access_key: String,
        parent: Parent,
        policy: Option<String>,
    },
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
    control: Arc<dyn StateSource>,
    clock: SharedClock,
}

impl IamCredentials {
    pub fn new(root: RootCredentials, control: Arc<dyn StateSource>, clock: SharedClock) -> Self {
        Self {
            sealer: SecretSealer::new(&root),
            root,
            control,
            clock,
        }
    }

    pub fn state(&self) -> Arc<SiteState> {
        self.control.state()
    }

    /// True for root's access key (compared in constant time).
    pub fn is_root(&self, access_key: &str) -> bool {
        bool::from(access_key.as_bytes().ct_eq(self.root.access_key.as_bytes()))
    }

    /// The caller behind an access key, if it may sign requests now: known, enabled, not expired,
    /// and (for a service account) with an enabled parent.
    pub fn caller(&self, iam: &IamState, access_key: &str) -> Option<Caller> {
        if self.is_root(access_key) {
            return Some(Caller::Root);
        }
        if let Some(u) = iam.users.get(access_key) {
            return u.enabled.then(|| Caller::User(access_key.to_owned()));
        }
        let s = iam.service_accounts.get(access_key)?;
        let expired = s.expires_ns.is_some_and(|e| self.clock.now_ns() >= e);
        let parent_ok = match &s.parent {
            Parent::Root => true,
            Parent::User(p) => iam.users.get(p).is_some_and(|u| u.enabled),
        };
        (s.enabled && !expired && parent_ok).then(|| Caller::ServiceAccount {
            access_key: access_key.to_owned(),
            parent: s.parent.clone(),
            policy: s.policy.clone(),
        })
    }
}

impl CredentialStore for IamCredentials {
    fn lookup(&self, access_key: &str) -> Option<(Identity, String)> {
        if self.is_root(access_key) {
            return self.root.lookup(access_key);
        }
        let state = self.state();
        let iam = &state.iam;
        let sealed = match self.caller(iam, access_key)? {
            Caller::Root => return None,
            Caller::User(k) => &iam.users.get(&k)?.secret,
            Caller::ServiceAccount { access_key: k, .. } => &iam.service_accounts.get(&k)?.secret,
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
}
