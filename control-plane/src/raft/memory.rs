//! The in-memory medium with crash semantics, for the deterministic simulator: the same stores as
//! RocksDB ([`LogStore`], [`StateMachineStore`], [`SnapshotBuilder`], over [`MemoryMedium`]
//! instead of [`RocksMedium`](super::RocksMedium)), so the same openraft glue, encodings, apply
//! and snapshot code, but no RocksDB threads and no real IO.
//!
//! [`MemoryRaftDisk`] is the medium's content and outlives a simulated process crash: keep it, and
//! call [`open_memory_stores`] again after a restart. It holds entries, state and snapshot
//! *encoded*, as RocksDB does, so a restart goes through the same decoding a real restart does.
//!
//! # Crash model
//!
//! Whatever the RocksDB medium syncs is durable when the method returns, with one exception that
//! models the fsync's duration: `append` writes its entries, yields to the scheduler, and only
//! then makes them durable and returns (so the store fires the callback). A
//! [`MemoryRaftDisk::crash`] meanwhile loses them (their callback reports an error if the task
//! still runs). The planted bug [`MemoryRaftDisk::skip_sync`] makes appends and votes never
//! durable, although they are acknowledged; the simulator's self-test uses it to show that its
//! checker can fail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::{ErrorSubject, ErrorVerb};
use thiserror::Error;

use super::error::StoreError;
use super::log_store::LogStore;
use super::medium::Medium;
use super::snapshot::{decode_state, may_replace, SnapshotBuilder, StoredSnapshot};
use super::state_machine::{Applied, StateMachineStore};
use super::types::{LogId, NodeId, StorageError, StorageIOError, Vote};
use crate::state::SiteState;

/// The Raft log, vote and committed log id in memory.
pub type MemLogStore = LogStore<MemoryMedium>;
/// The replicated state machine in memory.
pub type MemStateMachine = StateMachineStore<MemoryMedium>;
/// Builds a snapshot from a frozen view of a [`MemStateMachine`].
pub type MemSnapshotBuilder = SnapshotBuilder<MemoryMedium>;

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
    let medium = MemoryMedium {
        disk: disk.clone(),
        generation,
    };
    let log_store = LogStore::new(medium.clone());
    let state_machine = StateMachineStore::new(medium, applied, state);
    Ok((log_store, state_machine))
}

/// One opening of a [`MemoryRaftDisk`]: what the stores of one (simulated) process use. Once the
/// disk crashes or is opened again, every call fails with [`MemStoreError::Stale`].
#[derive(Debug, Clone)]
pub struct MemoryMedium {
    disk: MemoryRaftDisk,
    generation: u64,
}

impl MemoryMedium {
    /// Runs `f` on the medium if this opening may still use it.
    fn with<T>(&self, f: impl FnOnce(&mut RaftMedium) -> T) -> Result<T, MemStoreError> {
        let mut m = self.disk.lock();
        if m.generation != self.generation {
            return Err(MemStoreError::Stale);
        }
        Ok(f(&mut m))
    }
}

impl Medium for MemoryMedium {
    type Error = MemStoreError;

    fn last_entry(&self) -> Result<Option<Vec<u8>>, MemStoreError> {
        self.with(|m| m.volatile.logs.last_key_value().map(|(_, e)| e.clone()))
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Vec<u8>>, MemStoreError> {
        self.with(|m| {
            let entries = match end {
                Some(end) => m.volatile.logs.range(start..end),
                None => m.volatile.logs.range(start..),
            };
            entries.map(|(_, e)| e.clone()).collect()
        })
    }

    async fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), MemStoreError> {
        self.with(|m| m.volatile.logs.extend(entries.iter().cloned()))?;
        // The fsync is not instantaneous: a crash scheduled meanwhile loses the entries.
        tokio::task::yield_now().await;
        self.with(|m| {
            if !m.skip_sync {
                m.durable.logs.extend(entries);
            }
        })
    }

    fn truncate_from(&self, index: u64) -> Result<(), MemStoreError> {
        self.with(|m| m.both(|img| img.logs.retain(|&i, _| i < index)))
    }

    fn purge_upto(&self, upto: &LogId) -> Result<(), MemStoreError> {
        self.with(|m| {
            m.both(|img| {
                img.last_purged = Some(*upto);
                img.logs.retain(|&i, _| i > upto.index);
            })
        })
    }

    fn last_purged(&self) -> Result<Option<LogId>, MemStoreError> {
        self.with(|m| m.volatile.last_purged)
    }

    fn vote(&self) -> Result<Option<Vote>, MemStoreError> {
        self.with(|m| m.volatile.vote)
    }

    fn save_vote(&self, vote: &Vote) -> Result<(), MemStoreError> {
        self.with(|m| {
            m.volatile.vote = Some(*vote);
            if !m.skip_sync {
                m.durable.vote = Some(*vote);
            }
        })
    }

    fn committed(&self) -> Result<Option<LogId>, MemStoreError> {
        self.with(|m| m.volatile.committed)
    }

    fn save_committed(&self, committed: Option<LogId>) -> Result<(), MemStoreError> {
        self.with(|m| m.both(|img| img.committed = committed))
    }

    fn save_state(
        &self,
        applied: &Applied,
        state: Vec<u8>,
        snapshot: Option<StoredSnapshot>,
    ) -> Result<(), MemStoreError> {
        self.with(|m| {
            m.sm.state = Some(state);
            m.sm.applied = applied.clone();
            if let Some(snapshot) = snapshot {
                m.sm.snapshot = Some(snapshot);
            }
        })
    }

    fn snapshot(&self) -> Result<Option<StoredSnapshot>, MemStoreError> {
        self.with(|m| m.sm.snapshot.clone())
    }

    fn offer_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), MemStoreError> {
        self.with(|m| {
            if may_replace(m.sm.snapshot.as_ref(), snapshot) {
                m.sm.snapshot = Some(snapshot.clone());
            }
        })
    }
}
