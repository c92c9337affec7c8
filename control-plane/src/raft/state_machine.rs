//! The replicated state machine: committed [`Command`](crate::Command)s applied to [`SiteState`],
//! persisted in RocksDB ([`RaftStateMachine`]).
//!
//! Each `apply` call (a batch of committed entries) ends with one synced `WriteBatch` holding the
//! new state, the last applied log id and the last membership, so the three never disagree on
//! disk and a restart resumes exactly where the last batch ended. Only then is the new state
//! published to [`StateReader`]s: readers never see a state that a crash could take back.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

use super::db::{put_json, RaftDb, CF_SM};
use super::error::StoreError;
use super::snapshot::{decode_state, encode_state, put_snapshot, read_snapshot};
use super::snapshot::{SnapshotBuilder, StoredSnapshot};
use super::types::{
    CommandResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::state::SiteState;

const KEY_STATE: &str = "state";
const KEY_APPLIED: &str = "applied";

/// Where the state machine stands in the log: stored next to the state, in the same batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

pub struct StateMachineStore {
    db: Arc<RaftDb>,
    applied: Applied,
    state: Arc<SiteState>,
    published: watch::Sender<Arc<SiteState>>,
    snapshot_lock: Arc<Mutex<()>>,
}

impl StateMachineStore {
    pub(crate) fn load(db: Arc<RaftDb>) -> Result<Self, StoreError> {
        let applied = db.get_json(CF_SM, KEY_APPLIED)?.unwrap_or_default();
        let state = Arc::new(db.get_json(CF_SM, KEY_STATE)?.unwrap_or_default());
        let (published, _) = watch::channel(Arc::clone(&state));
        Ok(Self {
            db,
            applied,
            state,
            published,
            snapshot_lock: Arc::new(Mutex::new(())),
        })
    }

    /// The applied state, as of the last `apply` or snapshot install.
    pub fn state(&self) -> Arc<SiteState> {
        Arc::clone(&self.state)
    }

    /// The log id of the last applied entry.
    pub fn last_applied(&self) -> Option<LogId> {
        self.applied.last_applied
    }

    /// A handle that keeps reading the applied state after the store is handed to openraft.
    pub fn reader(&self) -> StateReader {
        StateReader::new(self.published.subscribe())
    }

    /// Writes state and position (plus, when installing, the snapshot) in one synced batch.
    fn persist(
        &self,
        applied: &Applied,
        state: &SiteState,
        snapshot: Option<&StoredSnapshot>,
    ) -> Result<(), StoreError> {
        let cf = self.db.cf(CF_SM)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, KEY_STATE, encode_state(state)?);
        put_json(&mut batch, cf, KEY_APPLIED, applied)?;
        if let Some(snapshot) = snapshot {
            put_snapshot(&self.db, &mut batch, snapshot)?;
        }
        self.db.write_synced(batch)
    }

    fn publish(&mut self, applied: Applied, state: SiteState) {
        self.applied = applied;
        self.state = Arc::new(state);
        self.published.send_replace(Arc::clone(&self.state));
    }

    fn install(&mut self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), StoreError> {
        let (applied, state) = installed_state(meta, &data)?;
        let snapshot = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        {
            let _guard = self
                .snapshot_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.persist(&applied, &state, Some(&snapshot))?;
        }
        self.publish(applied, state);
        Ok(())
    }
}

/// The position and state a snapshot installs (pure: no IO).
pub(crate) fn installed_state(
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(Applied, SiteState), StoreError> {
    let mut state = decode_state(data)?;
    if let Some(last) = meta.last_log_id {
        state.applied = last.index;
    }
    let applied = Applied {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
    };
    Ok((applied, state))
}

/// Applies a batch of entries to copies of `state` / `applied` (pure: no IO) and returns the new
/// state and position with one response per entry.
pub(crate) fn apply_batch(
    state: &SiteState,
    applied: &Applied,
    entries: impl IntoIterator<Item = Entry>,
) -> (SiteState, Applied, Vec<CommandResponse>) {
    let mut state = state.clone();
    let mut applied = applied.clone();
    let responses = entries
        .into_iter()
        .map(|entry| apply_entry(&mut state, &mut applied, entry))
        .collect();
    (state, applied, responses)
}

/// Applies one entry to `state` / `applied` (pure: no IO). In Raft mode `SiteState::applied` is the
/// log index of the last applied entry, whatever its kind.
fn apply_entry(state: &mut SiteState, applied: &mut Applied, entry: Entry) -> CommandResponse {
    let log_id = entry.log_id;
    let response = match entry.payload {
        EntryPayload::Blank => CommandResponse::ok(),
        EntryPayload::Normal(cmd) => CommandResponse(state.apply(&cmd)),
        EntryPayload::Membership(membership) => {
            applied.membership = StoredMembership::new(Some(log_id), membership);
            CommandResponse::ok()
        }
    };
    state.applied = log_id.index;
    applied.last_applied = Some(log_id);
    response
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (state, applied, responses) = apply_batch(&self.state, &self.applied, entries);
        if responses.is_empty() {
            return Ok(responses);
        }
        self.persist(&applied, &state, None).map_err(|e| {
            let subject = match applied.last_applied {
                Some(id) => ErrorSubject::Apply(id),
                None => ErrorSubject::StateMachine,
            };
            e.into_storage(subject, ErrorVerb::Write)
        })?;
        self.publish(applied, state);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            state: Arc::clone(&self.state),
            last_applied: self.applied.last_applied,
            membership: self.applied.membership.clone(),
            snapshot_lock: Arc::clone(&self.snapshot_lock),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot.into_inner()).map_err(|e| {
            e.into_storage(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            )
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        read_snapshot(&self.db)
            .map(|s| s.map(StoredSnapshot::into_snapshot))
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

/// The state machine was dropped (the Raft node shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the control-plane state machine is closed")]
pub struct StateMachineClosed;

/// Read access to the locally applied [`SiteState`] for the node's hot path (no Raft round trip).
/// A change is visible as soon as this node has applied (and persisted) its log entry.
#[derive(Clone)]
pub struct StateReader {
    rx: watch::Receiver<Arc<SiteState>>,
}

impl StateReader {
    /// A reader of the states a state machine publishes on `rx`.
    pub(crate) fn new(rx: watch::Receiver<Arc<SiteState>>) -> Self {
        Self { rx }
    }

    /// The current applied state (cheap: an `Arc` clone).
    pub fn state(&self) -> Arc<SiteState> {
        Arc::clone(&self.rx.borrow())
    }

    /// A receiver that is notified of every newly applied state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<SiteState>> {
        self.rx.clone()
    }

    /// Waits until the local state machine has applied log index `index` (e.g. the index a
    /// `client_write` returned, or a read index), then returns that state.
    pub async fn wait_applied(&self, index: u64) -> Result<Arc<SiteState>, StateMachineClosed> {
        let mut rx = self.rx.clone();
        let state = rx
            .wait_for(|s| s.applied >= index)
            .await
            .map_err(|_| StateMachineClosed)?;
        Ok(Arc::clone(&state))
    }
}
