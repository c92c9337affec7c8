//! Snapshots of the state machine: the serialized [`SiteState`] plus openraft's [`SnapshotMeta`],
//! and their builder ([`RaftSnapshotBuilder`]) over any [`Medium`].
//!
//! The snapshot data sent to followers is the JSON encoding of [`SiteState`] (a `Cursor<Vec<u8>>`);
//! the meta travels beside it. The medium keeps the last built or installed snapshot so it
//! survives a restart (RocksDB: `snapshot_meta` as JSON and `snapshot_data` as raw bytes in the
//! `sm` column family).

use std::io::Cursor;
use std::sync::Arc;

use openraft::{ErrorSubject, ErrorVerb, RaftSnapshotBuilder};

use super::db::RocksMedium;
use super::error::StoreError;
use super::medium::{storage_error, Medium};
use super::types::{LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state::SiteState;

/// A snapshot as stored: meta and the encoded [`SiteState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

impl StoredSnapshot {
    pub fn into_snapshot(self) -> Snapshot {
        Snapshot {
            meta: self.meta,
            snapshot: Box::new(Cursor::new(self.data)),
        }
    }
}

pub(crate) fn encode_state(state: &SiteState) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(state).map_err(StoreError::codec("site state"))
}

pub(crate) fn decode_state(bytes: &[u8]) -> Result<SiteState, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::codec("site state"))
}

/// Snapshot id: the last included log id. The state is a deterministic function of the log, so two
/// snapshots up to the same log id hold the same bytes and may share an id.
fn snapshot_id(last_log_id: Option<&LogId>) -> String {
    match last_log_id {
        Some(id) => format!("{}-{}", id.leader_id, id.index),
        None => "empty".to_string(),
    }
}

/// Builds a snapshot from a frozen view of the state machine (taken by
/// [`RaftStateMachine::get_snapshot_builder`](openraft::storage::RaftStateMachine::get_snapshot_builder)),
/// so applying further entries meanwhile does not change it. RocksDB by default,
/// [`MemSnapshotBuilder`](super::MemSnapshotBuilder) in memory.
pub struct SnapshotBuilder<M = RocksMedium> {
    pub(crate) medium: M,
    pub(crate) state: Arc<SiteState>,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// The snapshot of `state` as of `last_applied` (pure: no IO).
fn snapshot_of(
    state: &SiteState,
    last_applied: Option<LogId>,
    membership: &StoredMembership,
) -> Result<StoredSnapshot, StoreError> {
    Ok(StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership.clone(),
            snapshot_id: snapshot_id(last_applied.as_ref()),
        },
        data: encode_state(state)?,
    })
}

/// Whether `new` may replace the stored snapshot: never replace a newer one (e.g. one installed
/// from the leader while `new` was being built).
pub(crate) fn may_replace(stored: Option<&StoredSnapshot>, new: &StoredSnapshot) -> bool {
    stored.is_none_or(|s| s.meta.last_log_id <= new.meta.last_log_id)
}

impl<M: Medium> SnapshotBuilder<M> {
    fn build(&self) -> Result<StoredSnapshot, M::Error> {
        let snapshot = snapshot_of(&self.state, self.last_applied, &self.membership)?;
        self.medium.offer_snapshot(&snapshot)?;
        Ok(snapshot)
    }
}

impl<M: Medium> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        self.build()
            .map(StoredSnapshot::into_snapshot)
            .map_err(storage_error(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Write,
            ))
    }
}
