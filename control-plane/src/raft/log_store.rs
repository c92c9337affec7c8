//! The Raft log, the vote and the committed log id ([`RaftLogStorage`] + [`RaftLogReader`]), over
//! any [`Medium`].
//!
//! A write is acknowledged only once the medium has made it durable: [`RaftLogStorage::append`]
//! fires its callback after the medium's `append` completes, and every other write has reached
//! the medium's disk when the method returns. Because all writes happen inside the (serialised)
//! calls, write IO is never reordered, as openraft requires.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};

use super::db::RocksMedium;
use super::error::StoreError;
use super::medium::{storage_error, Medium};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Handle on the log store: RocksDB by default, [`MemLogStore`](super::MemLogStore) in memory.
/// Cloning is cheap; clones share the medium and also serve as the
/// [`RaftLogStorage::LogReader`] used by replication tasks.
#[derive(Debug, Clone)]
pub struct LogStore<M = RocksMedium> {
    medium: M,
}

impl<M: Medium> LogStore<M> {
    pub(crate) fn new(medium: M) -> Self {
        Self { medium }
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, M::Error> {
        let last_purged_log_id = self.medium.last_purged()?;
        let last_entry_log_id = match self.medium.last_entry()? {
            Some(bytes) => Some(decode_entry(&bytes)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_entry_log_id.or(last_purged_log_id),
        })
    }

    /// Entries whose index lies in `[start, end)` (`end = None`: no upper bound), in index order.
    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, M::Error> {
        self.medium
            .entries(start, end)?
            .iter()
            .map(|bytes| decode_entry(bytes).map_err(M::Error::from))
            .collect()
    }
}

pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(entry).map_err(StoreError::codec("log entry"))
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::codec("log entry"))
}

/// The entries as the medium stores them: `(index, encoded entry)`.
fn encode_entries(
    entries: impl IntoIterator<Item = Entry>,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    entries
        .into_iter()
        .map(|e| Ok((e.log_id.index, encode_entry(&e)?)))
        .collect()
}

/// `[start, end)` of a range of log indexes; `None` when the range is empty, `end = None` when it
/// is unbounded above.
pub(crate) fn index_range(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&n) => n.checked_add(1),
        Bound::Excluded(&n) => Some(n),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

impl<M: Medium> RaftLogReader<TypeConfig> for LogStore<M> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        self.entries(start, end)
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl<M: Medium> RaftLogStorage<TypeConfig> for LogStore<M> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state()
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.medium
            .save_vote(vote)
            .map_err(storage_error(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.medium
            .vote()
            .map_err(storage_error(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.medium
            .save_committed(committed)
            .map_err(storage_error(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.medium
            .committed()
            .map_err(storage_error(ErrorSubject::Store, ErrorVerb::Read))
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
        let written = match encode_entries(entries) {
            Ok(encoded) => self.medium.append(encoded).await,
            Err(e) => Err(e.into()),
        };
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.medium
            .truncate_from(log_id.index)
            .map_err(storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.medium
            .purge_upto(&log_id)
            .map_err(storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_ranges() {
        assert_eq!(index_range(&(3..3)), None);
        assert_eq!(index_range(&(5..7)), Some((5, Some(7))));
        assert_eq!(index_range(&(5..=5)), Some((5, Some(6))));
        assert_eq!(index_range(&(4..)), Some((4, None)));
        assert_eq!(index_range(&(..=u64::MAX)), Some((0, None)));
        assert_eq!(
            index_range(&(Bound::Excluded(u64::MAX), Bound::Unbounded)),
            None
        );
    }
}

#[cfg(test)]
mod durability_tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{blank_ent, log_id};
    use openraft::RaftLogReader;

    use super::*;
    use crate::raft::open_stores;

    #[tokio::test]
    async fn log_vote_and_committed_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _sm) = open_stores(dir.path()).unwrap();
            log.blocking_append((0..=10).map(|i| blank_ent::<TypeConfig>(1, 1, i)))
                .await
                .unwrap();
            log.save_vote(&Vote::new(1, 1)).await.unwrap();
            log.save_committed(Some(log_id(1, 1, 8))).await.unwrap();
            log.purge(log_id(1, 1, 3)).await.unwrap();
            log.truncate(log_id(1, 1, 9)).await.unwrap();
        }
        let (mut log, _sm) = open_stores(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 8)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 8)));
        let indexes: Vec<u64> = log
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(indexes, (4..=8).collect::<Vec<_>>());
    }
}
