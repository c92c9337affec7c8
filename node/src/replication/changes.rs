//! Changes to versions peers already have: new metadata (tags, retention, legal hold: no data is
//! sent again) and removals for good (a DELETE with a version id). The object layer marks each
//! in the same durable write as the change (`object::metadata`, `object::purge`); the replicator
//! (`objects`) sends it to every peer's `site/objects` admin operation, which only the pair's
//! replication identity may call, and clears the mark once every peer answered.
//!
//! The receiving side ([`apply`]) is held to what a client there would be: a metadata field
//! applies only over an older change (last writer wins, per field), a retention change passes the
//! one retention check (COMPLIANCE is never shortened or removed), and a removal passes it too (a
//! version under legal hold or COMPLIANCE retention stays; GOVERNANCE yields only when the
//! origin's removal bypassed it). A peer refusing is final: the mark is cleared, the refusal
//! logged and shown in `site status` (a lock there protects the version; sending again would not
//! change that). A pair configured with `skip_version_deletes` neither sends nor takes removals.

use serde::{Deserialize, Serialize};

use cairn_control_plane::site::SitePeer;
use cairn_control_plane::LockMode;
use cairn_proto::meta::KeyValue;

use super::backoff::Retry;
use super::outbox::target;
use crate::link::{LinkError, PeerTarget};
use crate::node::Node;
use crate::object::metadata::{Metadata, PeerMetadata};
use crate::object::replica::{Replication, VersionRef};
use crate::object::retention::Bypass;
use crate::object::versions::DeleteRequest;
use crate::object::ObjectError;

/// Admin operation a peer sends version changes to.
pub const OBJECTS_OP: &str = "site/objects";

/// A change to version `version_id` of `bucket/key`, as one site sends it to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectChange {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub change: Change,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The version's metadata as the origin holds it, each field with when it changed.
    Metadata(Metadata),
    /// The origin removed the version for good; `bypass_governance`: a caller allowed to bypass
    /// GOVERNANCE retention asked to.
    Purge { bypass_governance: bool },
}

/// What the peer did with a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// Nothing newer: the peer's own change is later.
    Stale,
    /// The peer has no such bucket or version.
    Absent,
    /// The peer's lock or its pairing settings keep the version as it is.
    Refused(String),
}

/// Applies peer `from`'s change here. `Err`: not now (a quorum missed), the peer sends it again.
pub async fn apply(
    node: &Node,
    from: &str,
    peer: &SitePeer,
    c: &ObjectChange,
) -> Result<Outcome, String> {
    let Some(bucket) = node.catalog.state().bucket(&c.bucket).cloned() else {
        return Ok(Outcome::Absent);
    };
    let done = match &c.change {
        Change::Metadata(m) => {
            let tags: Vec<KeyValue> = m
                .tags
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            if let Err(e) = crate::tagging::check_tags(&tags) {
                return Ok(Outcome::Refused(format!("invalid tags: {e}")));
            }
            if !m.lock_mode.is_empty() && LockMode::parse(&m.lock_mode).is_none() {
                return Ok(Outcome::Refused("invalid retention mode".into()));
            }
            node.objects
                .apply_peer_metadata(&c.bucket, &c.key, &c.version_id, m)
                .await
                .map(|r| match r {
                    PeerMetadata::Applied => Outcome::Applied,
                    PeerMetadata::Stale => Outcome::Stale,
                    PeerMetadata::Refused(e) => Outcome::Refused(e.to_string()),
                })
        }
        Change::Purge { .. } if peer.skip_version_deletes => {
            tracing::info!(origin = from, bucket = %c.bucket, key = %c.key, version_id = %c.version_id, "a peer's version removal kept out: this pair does not replicate version deletes");
            return Ok(Outcome::Refused(
                "this site keeps the versions its peer removes".into(),
            ));
        }
        Change::Purge { bypass_governance } => {
            let req = DeleteRequest {
                versioning: bucket.versioning,
                version_id: Some(&c.version_id),
                bypass: Bypass {
                    header: *bypass_governance,
                    allowed: *bypass_governance,
                },
                replication: &Replication::None,
            };
            node.objects
                .delete_object(&c.bucket, &c.key, req)
                .await
                .map(|_| Outcome::Applied)
        }
    };
    match done {
        Ok(o) => Ok(o),
        Err(
            ObjectError::NoSuchKey | ObjectError::NoSuchVersion | ObjectError::DeleteMarker { .. },
        ) => Ok(Outcome::Absent),
        Err(ObjectError::Locked(e)) => {
            tracing::warn!(origin = from, bucket = %c.bucket, key = %c.key, version_id = %c.version_id, error = %e, "a peer's version removal refused");
            Ok(Outcome::Refused(e.to_string()))
        }
        Err(ObjectError::InvalidArgument(e)) => Ok(Outcome::Refused(e)),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends `change` to one peer; an answer of any outcome counts as delivered.
async fn send_one(node: &Node, peer: &PeerTarget, change: &ObjectChange) -> Result<(), LinkError> {
    let outcome: Outcome = node.link.admin_json(peer, OBJECTS_OP, change).await?;
    if let Outcome::Refused(why) = outcome {
        tracing::warn!(peer = %peer.name, bucket = %change.bucket, key = %change.key, version_id = %change.version_id, reason = %why, "the peer refused a version change");
        let what = format!(
            "{}/{} version {}: refused: {why}",
            change.bucket, change.key, change.version_id
        );
        node.link.contacts.failed(&peer.name, what);
    }
    Ok(())
}

/// Sends `change` to every peer (those `skip` names aside, and those waiting out a backoff);
/// true once every one answered.
pub(super) async fn send(
    node: &Node,
    retry: &Retry,
    region: &str,
    change: &ObjectChange,
    skip: impl Fn(&SitePeer) -> bool,
) -> bool {
    let state = node.catalog.state();
    let Some(auth) = node.iam.as_ref() else {
        return false;
    };
    let mut all = true;
    for (name, peer) in state.sites.peers.iter().filter(|(_, p)| !skip(p)) {
        let target = target(auth, name, peer, region);
        let Some(t) = target.filter(|_| retry.ready(&node.link.contacts, name)) else {
            all = false;
            continue;
        };
        let sent = send_one(node, &t, change).await;
        retry.called(&node.link.contacts, name, sent.as_ref().map(|_| ()));
        if let Err(e) = sent {
            tracing::warn!(peer = %name, bucket = %change.bucket, key = %change.key, error = %e, "version change replication");
            let what = format!(
                "{}/{} version {}: {e}",
                change.bucket, change.key, change.version_id
            );
            node.link.contacts.failed(name, what);
            all = false;
        }
    }
    all
}

/// Sends the metadata of version `r` to every peer and clears its mark once all have it.
pub(super) async fn send_metadata(
    node: &Node,
    retry: &Retry,
    region: &str,
    r: &VersionRef,
    m: Metadata,
) -> bool {
    let change = ObjectChange {
        bucket: r.bucket.clone(),
        key: r.key.clone(),
        version_id: r.version_id.clone(),
        change: Change::Metadata(m),
    };
    if !send(node, retry, region, &change, |_| false).await {
        return false;
    }
    let Change::Metadata(m) = &change.change else {
        return true;
    };
    if let Err(e) = node
        .objects
        .settle_metadata(&r.bucket, &r.key, &r.version_id, m)
        .await
    {
        tracing::debug!(bucket = %r.bucket, key = %r.key, error = %e, "metadata replication status not recorded");
    }
    true
}

/// Sends the removal of version `r`, gone here, to every peer that takes removals, and clears its
/// mark once all answered. `marked`: only if its mark is there (the mark tells a removal from a
/// version never written here); without, it goes anyway: the version reached the peers after its
/// removal's mark may have been cleared.
/// True once every peer answered (or there was nothing to send).
pub(super) async fn send_purge(
    node: &Node,
    retry: &Retry,
    region: &str,
    r: &VersionRef,
    marked: bool,
) -> bool {
    let mark = node
        .objects
        .purge_mark(&r.bucket, &r.key, &r.version_id)
        .await;
    if marked && mark.is_none() {
        return true;
    }
    let change = ObjectChange {
        bucket: r.bucket.clone(),
        key: r.key.clone(),
        version_id: r.version_id.clone(),
        change: Change::Purge {
            bypass_governance: mark.as_ref().is_some_and(|m| m.bypass_governance),
        },
    };
    if !send(node, retry, region, &change, |p| p.skip_version_deletes).await {
        return false;
    }
    if mark.is_some() {
        node.objects
            .clear_purge(&r.bucket, &r.key, &r.version_id)
            .await;
    }
    true
}
