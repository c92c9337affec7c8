//! Sends the control plane's site outbox (`cairn_control_plane::site`) to every peer.
//!
//! Only the Raft leader sends, so one node per site does the work; a new leader picks up from
//! the acknowledgements in the replicated state, and a resent entry is harmless (the peer applies
//! each sequence once). Entries are signed with the pair's replication identity, never a root
//! credential. IAM secrets are sealed under each site's own key, so on the way out they are
//! opened here and sealed again under a key derived from the pair's identity, which the peer
//! opens and seals under its own key in turn: a secret never crosses in clear.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cairn_control_plane::iam::identity::{IamCommand, SealedSecret};
use cairn_control_plane::raft::Role;
use cairn_control_plane::site::{SiteCommand, SitePeer};
use cairn_control_plane::{Command, SiteState};

use super::backoff::Retry;
use crate::auth::authorize::Authorizer;
use crate::auth::sealing::SecretSealer;
use crate::auth::RootCredentials;
use crate::link::{Link, LinkError, PeerTarget};
use crate::node::Node;

/// Serialized size one request carries at most (the admin API takes 256 KiB bodies).
const BATCH_BYTES: usize = 192 * 1024;
/// How often a leader looks again for a leader change (which is no state change).
const LOOK_AGAIN: Duration = super::backoff::CAP;

/// Admin operation a peer applies entries with.
pub const APPLY_OP: &str = "site/apply";

#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub command: Command,
    /// The change's hybrid logical clock stamp (`cairn_control_plane::stamp`): the peer applies
    /// it over an older change of the same entity only. None from a site before stamps, and
    /// for an export at pairing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp_ns: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub origin: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// The origin's last sequence the peer has applied.
    pub received: u64,
}

/// Peer `name` as a request target, the pair's replication secret opened from the site state.
pub fn target(auth: &Authorizer, name: &str, peer: &SitePeer, region: &str) -> Option<PeerTarget> {
    let secret = auth.iam.sealer.open(&peer.access_key, &peer.secret)?;
    Some(PeerTarget {
        name: name.to_string(),
        endpoints: peer.endpoints.clone(),
        access_key: peer.access_key.clone(),
        secret_key: secret,
        region: region.to_string(),
    })
}

/// What seals IAM secrets on their way between the two sites of a pair: a key derived from the
/// pair's replication identity, which both sites hold (and nothing else does).
pub fn link_sealer(link: &PeerTarget) -> SecretSealer {
    SecretSealer::new(
        &RootCredentials {
            access_key: link.access_key.clone(),
            secret_key: link.secret_key.to_string(),
        },
        None,
    )
}

/// `cmd` with every secret sealed under `to` instead of `from` (a secret that does not open stays
/// as it is, and opens nowhere).
pub fn reseal(
    auth: &Authorizer,
    from: &SecretSealer,
    to: &SecretSealer,
    mut cmd: Command,
) -> Command {
    let convert = |key: &str, s: &mut SealedSecret| {
        if let Some(plain) = from.open(key, s) {
            *s = auth.with_rng(|rng| to.seal(key, &plain, rng));
        }
    };
    if let Command::Iam(c) = &mut cmd {
        match c {
            IamCommand::AddUser { access_key, secret } => convert(access_key, secret),
            IamCommand::AddServiceAccount {
                access_key,
                account,
            } => convert(access_key, &mut account.secret),
            IamCommand::UpdateServiceAccount {
                access_key,
                secret: Some(secret),
                ..
            } => convert(access_key, secret),
            _ => {}
        }
    }
    cmd
}

/// Sends peer `name` one batch of what it lacks; returns the sequence it has applied.
async fn push(
    auth: &Authorizer,
    link: &Link,
    state: &SiteState,
    name: &str,
    peer: &PeerTarget,
) -> Result<u64, LinkError> {
    let mut entries = Vec::new();
    let mut bytes = 0;
    let theirs = link_sealer(peer);
    for (seq, command, stamp_ns) in state.sites.pending_for(name, 256) {
        let command = reseal(auth, &auth.iam.sealer, &theirs, command);
        bytes += serde_json::to_vec(&command).map(|v| v.len()).unwrap_or(0);
        if bytes > BATCH_BYTES && !entries.is_empty() {
            break;
        }
        entries.push(Entry {
            seq,
            command,
            stamp_ns,
        });
    }
    let request = ApplyRequest {
        origin: state.sites.local.clone(),
        entries,
    };
    let r: ApplyResponse = link.admin_json(peer, APPLY_OP, &request).await?;
    Ok(r.received)
}

/// Runs on every node for as long as the node does; sends only while this node leads, and waits
/// out `retry`'s backoff after a round that left a peer behind.
pub async fn replicate_forever(node: Arc<Node>, region: String, retry: Arc<Retry>) {
    let Some(auth) = node.iam.clone() else {
        return;
    };
    let mut rx = node.catalog.control.subscribe();
    let mut failures = 0u32;
    loop {
        let state = rx.borrow_and_update().clone();
        let leading = node.catalog.control.status().role == Role::Leader;
        let mut behind = false;
        if leading {
            for (name, peer) in &state.sites.peers {
                if state.sites.backlog(name) == 0 {
                    continue;
                }
                let Some(target) = target(&auth, name, peer, &region) else {
                    tracing::warn!(peer = %name, "the pair's replication identity does not open: pair the sites again");
                    continue;
                };
                match push(&auth, &node.link, &state, name, &target).await {
                    Ok(received) if received > peer.acked => {
                        let ack = Command::Site(SiteCommand::Acked {
                            peer: name.clone(),
                            seq: received,
                        });
                        if let Err(e) = node.catalog.propose(ack).await {
                            tracing::debug!(peer = %name, error = %e, "site ack not recorded");
                            behind = true;
                        }
                    }
                    Ok(_) => {
                        tracing::debug!(peer = %name, "site peer deferred an entry");
                        behind = true;
                    }
                    Err(e) => {
                        tracing::warn!(peer = %name, error = %e, "site replication");
                        let what = format!("control-plane changes after {}: {e}", peer.acked);
                        node.link.contacts.failed(name, what);
                        behind = true;
                    }
                }
            }
        }
        if behind {
            failures = failures.saturating_add(1);
            tokio::time::sleep(retry.delay(failures)).await;
            continue;
        }
        failures = 0;
        // A leader change is no state change: look again now and then, while there are peers.
        let changed = if state.sites.enabled() {
            match tokio::time::timeout(LOOK_AGAIN, rx.changed()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        } else {
            rx.changed().await
        };
        if changed.is_err() {
            return;
        }
    }
}
