//! In-memory Raft stores with crash semantics, for the deterministic simulator: the same openraft
//! storage traits as the RocksDB stores ([`LogStore`](super::LogStore),
//! [`StateMachineStore`](super::StateMachineStore)), the same encodings and the same apply and
//! snapshot code, but no RocksDB threads and no real IO.
//!
//! [`MemoryRaftDisk`] is the medium and outlives a simulated process crash: keep it, and call
//! [`open_memory_stores`] again after a restart. It holds entries, state and snapshot *encoded*,
//! as RocksDB does, so a restart goes through the same decoding a real restart does.
//!
//! # Crash model
//!
//! Whatever the RocksDB stores sync is durable when the method returns, with one exception that
//! models the fsync's duration: `append` writes its entries, yields to the scheduler, and only
//! then makes them durable and fires the callback. A [`MemoryRaftDisk::crash`] meanwhile loses
//! them (their callback reports an error if the task still runs). The planted bug
//! [`MemoryRaftDisk::skip_sync`] makes appends and votes never durable, although they are
//! acknowledged; the simulator's self-test uses it to show that its checker can fail.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{self, Cursor};
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use thiserror::Error;
use tokio::sync::watch;

use super::error::StoreError;
use super::log_store::{decode_entry, encode_entry, index_range};
use super::snapshot::{decode_state, encode_state, may_replace, snapshot_of, StoredSnapshot};
use super::state_machine::{apply_batch, installed_state, Applied, StateReader};
use super::types::{
    CommandResponse, Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, TypeConfig, Vote,
};
use crate::state::SiteState;

/// Why a call on an in-memory store failed.
#[derive(Debug, Error)]
pub enum MemStoreError {
    /// The disk crashed or was opened again since this handle was made: the handle belongs to a
    /// dead process and must not touch the medium any more.
    #[error("the raft disk crashed or was reopened: this store belongs to a dead process")]
    Stale,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MemStoreError {
    /// Wraps the error for openraft, which treats any storage error as fatal for the node.
    pub fn into_storage(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError {
        StorageIOError::new(subject, verb, &self).into()
    }
}

/// The log part of the medium, which exists twice: as the running process sees it and as it is
/// on "disk".
#[derive(Debug, Clone, Default)]
struct LogImage {
    /// Encoded entries by log index.
    logs: BTreeMap<u64, Vec<u8>>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// The state machine part: every write to it is synced, so it exists once.
#[derive(Debug, Default)]
struct SmImage {
    /// The encoded `SiteState`; `None` until the first apply or install.
    state: Option<Vec<u8>>,
    applied: Applied,
    snapshot: Option<StoredSnapshot>,
}

#[derive(Debug, Default)]
struct RaftMedium {
    volatile: LogImage,
    durable: LogImage,
    sm: SmImage,
    /// Bumped by every crash and every opening; stores of an older generation fail.
    generation: u64,
    skip_sync: bool,
}

impl RaftMedium {
    fn check(&self, generation: u64) -> Result<(), MemStoreError> {
        if generation != self.generation {
            return Err(MemStoreError::Stale);
        }
        Ok(())
    }

    /// Applies `f` to both log images (a synced write).
    fn both(&mut self, f: impl Fn(&mut LogImage)) {
        f(&mut self.volatile);
        f(&mut self.durable);
    }
}

/// The persistent medium of one node's Raft stores. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryRaftDisk {
    inner: Arc<Mutex<RaftMedium>>,
}

impl MemoryRaftDisk {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, RaftMedium> {
        // Every change is computed before it is stored, so a panic while holding the lock leaves
        // the medium consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Power loss: log writes not yet durable are dropped (an append whose callback has not
    /// fired, and under [`skip_sync`](Self::skip_sync) every append and vote), and the stores
    /// opened before fail from now on.
    pub fn crash(&self) {
        let mut m = self.lock();
        m.volatile = m.durable.clone();
        m.generation += 1;
    }

    /// Planted bug for the simulator's self-test: while on, appends and votes are acknowledged but
    /// never become durable, so a crash loses them.
    pub fn skip_sync(&self, skip: bool) {
        self.lock().skip_sync = skip;
    }
}

/// Opens the Raft stores on `disk` as a (re)started process would, mirroring
/// [`open_stores`](super::open_stores): stores opened on it before stop working. Fails only if
/// the stored state cannot be decoded.
pub fn open_memory_stores(
    disk: &MemoryRaftDisk,
) -> Result<(MemLogStore, MemStateMachine), StoreError> {
    let (generation, state, applied) = {
        let mut m = disk.lock();
        m.generation += 1;
        let state = match &m.sm.state {
            Some(bytes) => decode_state(bytes)?,
            None => SiteState::default(),
        };
        (m.generation, state, m.sm.applied.clone())
    };
    let state = Arc::new(state);
    let (published, _) = watch::channel(Arc::clone(&state));
    let log_store = MemLogStore {
        disk: disk.clone(),
        generation,
    };
    let state_machine = MemStateMachine {
        disk: disk.clone(),
        generation,
        applied,
        state,
        published,
    };
    Ok((log_store, state_machine))
}

/// The Raft log, vote and committed log id in memory. Cloning is cheap; clones share the disk and
/// serve as the [`RaftLogStorage::LogReader`].
#[derive(Debug, Clone)]
pub struct MemLogStore {
    disk: MemoryRaftDisk,
    generation: u64,
}

impl MemLogStore {
    /// Runs `f` on the medium if this store may still use it.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut RaftMedium) -> Result<T, MemStoreError>,
    ) -> Result<T, MemStoreError> {
        let mut m = self.disk.lock();
        m.check(self.generation)?;
        f(&mut m)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, MemStoreError> {
        self.with(|m| {
            let last_purged_log_id = m.volatile.last_purged;
            let last = match m.volatile.logs.last_key_value() {
                Some((_, bytes)) => Some(decode_entry(bytes)?.log_id),
                None => None,
            };
            Ok(LogState {
                last_purged_log_id,
                last_log_id: last.or(last_purged_log_id),
            })
        })
    }

    /// Writes the entries to the volatile log; returns them encoded, for making them durable.
    fn write_volatile(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<(u64, Vec<u8>)>, MemStoreError> {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, encode_entry(&e)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.with(|m| {
            m.volatile.logs.extend(encoded.iter().cloned());
            Ok(encoded)
        })
    }

    /// The end of the fsync of an append.
    fn make_durable(&self, encoded: Vec<(u64, Vec<u8>)>) -> Result<(), MemStoreError> {
        self.with(|m| {
            if !m.skip_sync {
                m.durable.logs.extend(encoded);
            }
            Ok(())
        })
    }

    async fn append_synced(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<(), MemStoreError> {
        let encoded = self.write_volatile(entries)?;
        // The fsync is not instantaneous: a crash scheduled meanwhile loses the entries.
        tokio::task::yield_now().await;
        self.make_durable(encoded)
    }
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        self.with(|m| {
            let entries = match end {
                Some(end) => m.volatile.logs.range(start..end),
                None => m.volatile.logs.range(start..),
            };
            entries
                .map(|(_, bytes)| decode_entry(bytes).map_err(MemStoreError::from))
                .collect()
        })
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = MemLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state()
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.with(|m| {
            m.volatile.vote = Some(vote);
            if !m.skip_sync {
                m.durable.vote = Some(vote);
            }
            Ok(())
        })
        .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.with(|m| Ok(m.volatile.vote))
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.with(|m| {
            m.both(|img| img.committed = committed);
            Ok(())
        })
        .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.with(|m| Ok(m.volatile.committed))
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_synced(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.with(|m| {
            m.both(|img| img.logs.retain(|&index, _| index < log_id.index));
            Ok(())
        })
        .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.with(|m| {
            m.both(|img| {
                img.last_purged = Some(log_id);
                img.logs.retain(|&index, _| index > log_id.index);
            });
            Ok(())
        })
        .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}

/// The replicated state machine in memory: [`Command`](crate::Command)s applied to [`SiteState`]
/// by the same code as [`StateMachineStore`](super::StateMachineStore).
pub struct MemStateMachine {
    disk: MemoryRaftDisk,
    generation: u64,
    applied: Applied,
    state: Arc<SiteState>,
    published: watch::Sender<Arc<SiteState>>,
}

impl MemStateMachine {
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

    fn with<T>(
        &self,
        f: impl FnOnce(&mut RaftMedium) -> Result<T, MemStoreError>,
    ) -> Result<T, MemStoreError> {
        let mut m = self.disk.lock();
        m.check(self.generation)?;
        f(&mut m)
    }

    /// Stores state and position (plus, when installing, the snapshot) at once, as the RocksDB
    /// store's single synced batch does.
    fn persist(
        &self,
        applied: &Applied,
        state: &SiteState,
        snapshot: Option<StoredSnapshot>,
    ) -> Result<(), MemStoreError> {
        let encoded = encode_state(state)?;
        self.with(|m| {
            m.sm.state = Some(encoded);
            m.sm.applied = applied.clone();
            if let Some(snapshot) = snapshot {
                m.sm.snapshot = Some(snapshot);
            }
            Ok(())
        })
    }

    fn publish(&mut self, applied: Applied, state: SiteState) {
        self.applied = applied;
        self.state = Arc::new(state);
        self.published.send_replace(Arc::clone(&self.state));
    }

    fn install(&mut self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), MemStoreError> {
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

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = MemSnapshotBuilder;

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
        MemSnapshotBuilder {
            disk: self.disk.clone(),
            generation: self.generation,
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
        self.install(meta, snapshot.into_inner()).map_err(|e| {
            e.into_storage(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            )
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.with(|m| Ok(m.sm.snapshot.clone()))
            .map(|s| s.map(StoredSnapshot::into_snapshot))
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

/// Builds a snapshot from a frozen view of a [`MemStateMachine`], like
/// [`SnapshotBuilder`](super::SnapshotBuilder).
pub struct MemSnapshotBuilder {
    disk: MemoryRaftDisk,
    generation: u64,
    state: Arc<SiteState>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl MemSnapshotBuilder {
    fn build(&self) -> Result<StoredSnapshot, MemStoreError> {
        let snapshot = snapshot_of(&self.state, self.last_applied, &self.membership)?;
        let mut m = self.disk.lock();
        m.check(self.generation)?;
        if may_replace(m.sm.snapshot.as_ref(), &snapshot) {
            m.sm.snapshot = Some(snapshot.clone());
        }
        Ok(snapshot)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        self.build()
            .map(StoredSnapshot::into_snapshot)
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))
    }
}
