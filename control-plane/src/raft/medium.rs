//! What a Raft store keeps where: the [`Medium`] trait, the only part of the stores that differs
//! between RocksDB ([`RocksMedium`](super::RocksMedium), `db.rs`) and memory with crash semantics
//! for the simulator ([`MemoryMedium`](super::MemoryMedium), `memory.rs`).
//!
//! The openraft storage traits are implemented once, over any medium, by
//! [`LogStore`](super::LogStore), [`StateMachineStore`](super::StateMachineStore) and
//! [`SnapshotBuilder`](super::SnapshotBuilder): they encode and decode entries and state, apply
//! entries, build snapshots and map errors onto openraft's. A medium only stores and returns
//! records.
//!
//! # Contract
//!
//! * Every write is atomic and durable when the method returns (for [`Medium::append`], when its
//!   future completes): the stores acknowledge a write to openraft (return, or fire the `append`
//!   callback) only after that, so nothing is acknowledged before it is synced.
//! * Reads see every write made through the medium so far (durable or not yet).
//! * Log entries are `(index, encoded entry)`; the encoding is the stores' (JSON of the openraft
//!   `Entry`), so both media hold the same bytes.

use std::future::Future;

use openraft::{ErrorSubject, ErrorVerb};

use super::error::StoreError;
use super::snapshot::StoredSnapshot;
use super::state_machine::Applied;
use super::types::{LogId, NodeId, StorageError, StorageIOError, Vote};

/// The storage primitives of one opening of the Raft stores. Clones share the medium: the log
/// store, its log readers, the state machine and its snapshot builders each hold one.
pub trait Medium: Clone + Send + Sync + 'static {
    /// Why an operation failed. The stores' own encoding errors convert into it.
    type Error: std::error::Error + From<StoreError> + Send + Sync + 'static;

    /// The encoded log entry with the highest index, if any.
    fn last_entry(&self) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The encoded log entries whose index lies in `[start, end)` (`end = None`: no upper
    /// bound), in index order.
    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// Stores encoded entries by index, replacing any present; completes once they are durable.
    fn append(
        &self,
        entries: Vec<(u64, Vec<u8>)>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Deletes every entry with index >= `index`.
    fn truncate_from(&self, index: u64) -> Result<(), Self::Error>;

    /// Records `upto` as the last purged log id and deletes every entry with index <=
    /// `upto.index`, in one write (so a crash never leaves a hole between the purged id and the
    /// first present entry).
    fn purge_upto(&self, upto: &LogId) -> Result<(), Self::Error>;

    /// The last purged log id ([`purge_upto`](Self::purge_upto)).
    fn last_purged(&self) -> Result<Option<LogId>, Self::Error>;

    fn vote(&self) -> Result<Option<Vote>, Self::Error>;

    fn save_vote(&self, vote: &Vote) -> Result<(), Self::Error>;

    fn committed(&self) -> Result<Option<LogId>, Self::Error>;

    fn save_committed(&self, committed: Option<LogId>) -> Result<(), Self::Error>;

    /// Stores the encoded `SiteState` and where it stands in the log, plus the snapshot when one is
    /// installed, in one write. Serialised with [`offer_snapshot`](Self::offer_snapshot).
    fn save_state(
        &self,
        applied: &Applied,
        state: Vec<u8>,
        snapshot: Option<StoredSnapshot>,
    ) -> Result<(), Self::Error>;

    /// The last snapshot built or installed.
    fn snapshot(&self) -> Result<Option<StoredSnapshot>, Self::Error>;

    /// Stores a freshly built snapshot unless the stored one is newer (`snapshot::may_replace`),
    /// checked and written atomically with respect to other snapshot writes.
    fn offer_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), Self::Error>;
}

/// Wraps a medium's error for openraft, which treats any storage error as fatal for the node.
pub(crate) fn storage_error<E: std::error::Error + 'static>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(E) -> StorageError {
    move |e| StorageIOError::new(subject, verb, &e).into()
}
