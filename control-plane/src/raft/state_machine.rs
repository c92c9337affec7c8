//! The replicated state machine: committed [`Command`](crate::Command)s applied to [`SiteState`]
//! ([`RaftStateMachine`]), over any [`Medium`].
//!
//! Each `apply` call (a batch of committed entries) ends with one medium write holding the new
//! state, the last applied log id and the last membership, so the three never disagree on disk and
//! a restart resumes exactly where the last batch ended. Only then is the new state published to
//! [`StateReader`]s: readers never see a state that a crash could take back.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

use super::db::RocksMedium;
use super::error::StoreError;
use super::medium::{storage_error, Medium};
use super::snapshot::{decode_state, encode_state, SnapshotBuilder, StoredSnapshot};
use super::types::{
    CommandResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::state::SiteState;

/// Where the state machine stands in the log: stored next to the state, in the same write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// The state machine: RocksDB by default, [`MemStateMachine`](super::MemStateMachine) in memory.
pub struct StateMachineStore<M = RocksMedium> {
    medium: M,
    applied: Applied,
    state: Arc<SiteState>,
    published: watch::Sender<Arc<SiteState>>,
}

impl<M: Medium> StateMachineStore<M> {
    /// The state machine over `medium`, resuming from the `applied` position and `state` stored
    /// there.
    pub(crate) fn new(medium: M, applied: Applied, state: SiteState) -> Self {
        let state = Arc::new(state);
        let (published, _) = watch::channel(Arc::clone(&state));
        Self {
            medium,
            applied,
            state,
            published,
        }
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

    /// Writes state and position (plus, when installing, the snapshot) in one durable write.
    fn persist(
        &self,
        applied: &Applied,
        state: &SiteState,
        snapshot: Option<StoredSnapshot>,
    ) -> Result<(), M::Error> {
        let encoded = encode_state(state)?;
        self.medium.save_state(applied, encoded, snapshot)
    }

    fn publish(&mut self, applied: Applied, state: SiteState) {
        self.applied = applied;
        self.state = Arc::new(state);
        self.published.send_replace(Arc::clone(&self.state));
    }

    fn install(&mut self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), M::Error> {
        let (applied, state) = installed_state(meta, &data)?;
        let snapshot = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&applied, &state, Some(snapshot))?;
        self.publish(applied, state);
        Ok(())
    }
}

/// The position and state a snapshot installs (pure: no IO).
fn installed_state(meta: &SnapshotMeta, data: &[u8]) -> Result<(Applied, SiteState), StoreError> {
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
fn apply_batch(
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

impl<M: Medium> RaftStateMachine<TypeConfig> for StateMachineStore<M> {
    type SnapshotBuilder = SnapshotBuilder<M>;

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
        let subject = match applied.last_applied {
            Some(id) => ErrorSubject::Apply(id),
            None => ErrorSubject::StateMachine,
        };
        self.persist(&applied, &state, None)
            .map_err(storage_error(subject, ErrorVerb::Write))?;
        self.publish(applied, state);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            medium: self.medium.clone(),
            state: Arc::clone(&self.state),
            last_applied: self.applied.last_applied,
            membership: self.applied.membership.clone(),
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
        self.install(meta, snapshot.into_inner())
            .map_err(storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            ))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.medium
            .snapshot()
            .map(|s| s.map(StoredSnapshot::into_snapshot))
            .map_err(storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read))
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
