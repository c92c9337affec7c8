//! Snapshots of the state machine: the serialized [`SiteState`] plus openraft's [`SnapshotMeta`].
//!
//! The snapshot data sent to followers is the JSON encoding of [`SiteState`] (a `Cursor<Vec<u8>>`);
//! the meta travels beside it. The last built or installed snapshot is kept in the `sm` column
//! family (`snapshot_meta` as JSON, `snapshot_data` as raw bytes) so it survives a restart.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::{ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use rocksdb::WriteBatch;

use super::db::{put_json, RaftDb, CF_SM};
use super::error::StoreError;
use super::types::{LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state::SiteState;

const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";

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

/// Adds the snapshot to `batch` (replacing the stored one).
pub(crate) fn put_snapshot(
    db: &RaftDb,
    batch: &mut WriteBatch,
    snapshot: &StoredSnapshot,
) -> Result<(), StoreError> {
    let cf = db.cf(CF_SM)?;
    put_json(batch, cf, KEY_SNAPSHOT_META, &snapshot.meta)?;
    batch.put_cf(cf, KEY_SNAPSHOT_DATA, &snapshot.data);
    Ok(())
}

pub(crate) fn read_snapshot(db: &RaftDb) -> Result<Option<StoredSnapshot>, StoreError> {
    let Some(meta) = db.get_json::<SnapshotMeta>(CF_SM, KEY_SNAPSHOT_META)? else {
        return Ok(None);
    };
    let data = db
        .db()
        .get_cf(db.cf(CF_SM)?, KEY_SNAPSHOT_DATA)?
        .unwrap_or_default();
    Ok(Some(StoredSnapshot { meta, data }))
}

/// Builds a snapshot from a frozen view of the state machine (taken by
/// [`RaftStateMachine::get_snapshot_builder`](openraft::storage::RaftStateMachine::get_snapshot_builder)),
/// so applying further entries meanwhile does not change it.
pub struct SnapshotBuilder {
    pub(crate) db: Arc<RaftDb>,
    pub(crate) state: Arc<SiteState>,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    /// Serialises writers of the stored snapshot (builders and `install_snapshot`).
    pub(crate) snapshot_lock: Arc<Mutex<()>>,
}

/// The snapshot of `state` as of `last_applied` (pure: no IO).
pub(crate) fn snapshot_of(
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

impl SnapshotBuilder {
    fn build(&self) -> Result<StoredSnapshot, StoreError> {
        let snapshot = snapshot_of(&self.state, self.last_applied, &self.membership)?;
        // A poisoned lock only means another writer panicked; the database is still consistent.
        let _guard = self
            .snapshot_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if may_replace(read_snapshot(&self.db)?.as_ref(), &snapshot) {
            let mut batch = WriteBatch::default();
            put_snapshot(&self.db, &mut batch, &snapshot)?;
            self.db.write_synced(batch)?;
        }
        Ok(snapshot)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        self.build()
            .map(StoredSnapshot::into_snapshot)
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))
    }
}
