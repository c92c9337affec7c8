//! The Raft log, the vote and the committed log id, in RocksDB ([`RaftLogStorage`] +
//! [`RaftLogReader`]).
//!
//! Writes are synchronous and synced: [`RaftLogStorage::append`] fires its callback only after the
//! batch holding the entries is on disk, and every other write has reached the disk when the
//! method returns. Because all writes happen inside the (serialised) calls, write IO is never
//! reordered, as openraft requires.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::db::{index_key, key_index, put_json, RaftDb, CF_LOGS, CF_LOG_META};
use super::error::StoreError;
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// Handle on the log store. Cloning is cheap; clones share the database and also serve as the
/// [`RaftLogStorage::LogReader`] used by replication tasks.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<RaftDb>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<RaftDb>) -> Self {
        Self { db }
    }

    fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        self.db.get_json(CF_LOG_META, KEY_LAST_PURGED)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StoreError> {
        let db = self.db.db();
        match db
            .iterator_cf(self.db.cf(CF_LOGS)?, IteratorMode::End)
            .next()
        {
            Some(item) => {
                let (_, value) = item?;
                Ok(Some(decode_entry(&value)?.log_id))
            }
            None => Ok(None),
        }
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id = self.last_purged()?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// Entries whose index lies in `[start, end)` (`end = None`: no upper bound), in index order.
    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        let db = self.db.db();
        let from = index_key(start);
        let mut out = Vec::new();
        for item in db.iterator_cf(
            self.db.cf(CF_LOGS)?,
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (key, value) = item?;
            let index = key_index(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            out.push(decode_entry(&value)?);
        }
        Ok(out)
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        put_json(&mut batch, self.db.cf(CF_LOG_META)?, key, value)?;
        self.db.write_synced(batch)
    }

    fn append_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        let cf = self.db.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(cf, index_key(entry.log_id.index), encode_entry(&entry)?);
        }
        self.db.write_synced(batch)
    }

    /// Deletes every entry with index >= `index`.
    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        let cf = self.db.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(index), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        self.db.write_synced(batch)
    }

    /// Records `upto` as purged and deletes every entry with index <= `upto.index`, atomically (so a
    /// crash never leaves a hole between the purged id and the first present entry).
    fn purge_upto(&self, upto: &LogId) -> Result<(), StoreError> {
        let cf = self.db.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        put_json(&mut batch, self.db.cf(CF_LOG_META)?, KEY_LAST_PURGED, upto)?;
        batch.delete_range_cf(cf, index_key(0), index_key(upto.index));
        batch.delete_cf(cf, index_key(upto.index));
        self.db.write_synced(batch)
    }
}

pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(entry).map_err(StoreError::codec("log entry"))
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::codec("log entry"))
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

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        self.entries(start, end)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state()
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote)
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.db
            .get_json(CF_LOG_META, KEY_VOTE)
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(KEY_COMMITTED, &committed)
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.db
            .get_json::<Option<LogId>>(CF_LOG_META, KEY_COMMITTED)
            .map(Option::flatten)
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
        match self.append_entries(entries) {
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
        self.truncate_from(log_id.index)
            .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.purge_upto(&log_id)
            .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
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

    #[test]
    fn index_keys_sort_like_indexes() {
        assert!(index_key(255) < index_key(256));
        assert_eq!(key_index(&index_key(42)).unwrap(), 42);
        assert!(key_index(b"short").is_err());
    }
}

#[cfg(test)]
mod durability_tests {
    use openraft::testing::{blank_ent, log_id};
    use openraft::RaftLogReader;

    use super::*;
    use crate::raft::open_stores;

    #[tokio::test]
    async fn log_vote_and_committed_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _sm) = open_stores(dir.path()).unwrap();
            log.append_entries((0..=10).map(|i| blank_ent::<TypeConfig>(1, 1, i)))
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
