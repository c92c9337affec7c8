//! The RocksDB medium ([`RocksMedium`]): one database shared by the log store and the state
//! machine, and [`open_stores`].
//!
//! Column families:
//! * `logs`: Raft log entries, key = log index as 8 big-endian bytes (so byte order is index
//!   order), value = JSON of the openraft `Entry`;
//! * `log_meta`: `vote`, `committed` and `last_purged` (JSON);
//! * `sm`: the state machine: `state` (JSON `SiteState`), `applied` (last applied log id +
//!   membership) and `snapshot_meta` + `snapshot_data` (the last built or installed snapshot).
//!
//! Every write is a single `WriteBatch` written with `sync = true`: when a store method returns (or
//! the append callback fires), the change is on disk, and a batch is atomic across families.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{ColumnFamily, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use super::error::StoreError;
use super::log_store::LogStore;
use super::medium::Medium;
use super::snapshot::{may_replace, StoredSnapshot};
use super::state_machine::{Applied, StateMachineStore};
use super::types::{LogId, SnapshotMeta, Vote};

pub const CF_LOGS: &str = "logs";
pub const CF_LOG_META: &str = "log_meta";
pub const CF_SM: &str = "sm";

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_STATE: &str = "state";
const KEY_APPLIED: &str = "applied";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";

/// Opens (creating if needed) the Raft stores kept in the RocksDB directory `path`. Both stores share
/// one database (one WAL), so a single process must open a directory once.
pub fn open_stores(path: impl AsRef<Path>) -> Result<(LogStore, StateMachineStore), StoreError> {
    let (log_store, state_machine, _) = open_stores_watched(path.as_ref())?;
    Ok((log_store, state_machine))
}

/// [`open_stores`], plus a way to tell when openraft has dropped both stores and the database is
/// closed: RocksDB locks its directory, so a node restarted in the same process (the simulator,
/// the tests) can reopen it only then.
pub(crate) fn open_stores_watched(
    path: &Path,
) -> Result<(LogStore, StateMachineStore, DbClosed), StoreError> {
    let db = Arc::new(RaftDb::open(path)?);
    let closed = DbClosed(db.closed.subscribe());
    let applied = db.get_json(CF_SM, KEY_APPLIED)?.unwrap_or_default();
    let state = db.get_json(CF_SM, KEY_STATE)?.unwrap_or_default();
    let medium = RocksMedium { db };
    let log_store = LogStore::new(medium.clone());
    let state_machine = StateMachineStore::new(medium, applied, state);
    Ok((log_store, state_machine, closed))
}

/// Observes the database closing (see [`open_stores_watched`]). Not the `Arc`'s strong count:
/// that drops to zero before the last holder has finished closing RocksDB.
pub struct DbClosed(watch::Receiver<()>);

impl DbClosed {
    /// Returns once every handle on the database is dropped and RocksDB has released it.
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.clone();
        while rx.changed().await.is_ok() {}
    }
}

/// The RocksDB medium of the Raft stores. Clones share the database.
#[derive(Clone)]
pub struct RocksMedium {
    db: Arc<RaftDb>,
}

/// Thin wrapper over [`DB`] with typed helpers.
struct RaftDb {
    db: DB,
    /// Serialises writers of the stored snapshot (builders and snapshot installs).
    snapshot_lock: Mutex<()>,
    /// Dropped right after `db` (fields drop in declaration order), so its receivers learn that
    /// the database is closed and its directory unlocked.
    closed: watch::Sender<()>,
}

impl RaftDb {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, path, [CF_LOGS, CF_LOG_META, CF_SM])?;
        let (closed, _) = watch::channel(());
        Ok(Self {
            db,
            snapshot_lock: Mutex::new(()),
            closed,
        })
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    fn get_json<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get_pinned_cf(self.cf(cf)?, key)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(StoreError::codec(key)),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &'static str, value: &T) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        put_json(&mut batch, self.cf(CF_LOG_META)?, key, value)?;
        self.write_synced(batch)
    }

    /// Writes the batch atomically and waits for it to reach the disk.
    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    fn lock_snapshot(&self) -> MutexGuard<'_, ()> {
        // A poisoned lock only means another writer panicked; the database is still consistent.
        self.snapshot_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds the snapshot to `batch` (replacing the stored one).
    fn put_snapshot(
        &self,
        batch: &mut WriteBatch,
        snapshot: &StoredSnapshot,
    ) -> Result<(), StoreError> {
        let cf = self.cf(CF_SM)?;
        put_json(batch, cf, KEY_SNAPSHOT_META, &snapshot.meta)?;
        batch.put_cf(cf, KEY_SNAPSHOT_DATA, &snapshot.data);
        Ok(())
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let Some(meta) = self.get_json::<SnapshotMeta>(CF_SM, KEY_SNAPSHOT_META)? else {
            return Ok(None);
        };
        let data = self
            .db
            .get_cf(self.cf(CF_SM)?, KEY_SNAPSHOT_DATA)?
            .unwrap_or_default();
        Ok(Some(StoredSnapshot { meta, data }))
    }
}

impl Medium for RocksMedium {
    type Error = StoreError;

    fn last_entry(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let db = &self.db;
        match db.db.iterator_cf(db.cf(CF_LOGS)?, IteratorMode::End).next() {
            Some(item) => Ok(Some(item?.1.into_vec())),
            None => Ok(None),
        }
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        let db = &self.db;
        let from = index_key(start);
        let mut out = Vec::new();
        for item in db.db.iterator_cf(
            db.cf(CF_LOGS)?,
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (key, value) = item?;
            let index = key_index(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            out.push(value.into_vec());
        }
        Ok(out)
    }

    async fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), StoreError> {
        let cf = self.db.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, index_key(index), bytes);
        }
        self.db.write_synced(batch)
    }

    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        let cf = self.db.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(index), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        self.db.write_synced(batch)
    }

    fn purge_upto(&self, upto: &LogId) -> Result<(), StoreError> {
        let cf = self.db.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        put_json(&mut batch, self.db.cf(CF_LOG_META)?, KEY_LAST_PURGED, upto)?;
        batch.delete_range_cf(cf, index_key(0), index_key(upto.index));
        batch.delete_cf(cf, index_key(upto.index));
        self.db.write_synced(batch)
    }

    fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        self.db.get_json(CF_LOG_META, KEY_LAST_PURGED)
    }

    fn vote(&self) -> Result<Option<Vote>, StoreError> {
        self.db.get_json(CF_LOG_META, KEY_VOTE)
    }

    fn save_vote(&self, vote: &Vote) -> Result<(), StoreError> {
        self.db.put_meta(KEY_VOTE, vote)
    }

    fn committed(&self) -> Result<Option<LogId>, StoreError> {
        // Stored as JSON `Option<LogId>`: `null` once `None` was saved.
        self.db
            .get_json::<Option<LogId>>(CF_LOG_META, KEY_COMMITTED)
            .map(Option::flatten)
    }

    fn save_committed(&self, committed: Option<LogId>) -> Result<(), StoreError> {
        self.db.put_meta(KEY_COMMITTED, &committed)
    }

    fn save_state(
        &self,
        applied: &Applied,
        state: Vec<u8>,
        snapshot: Option<StoredSnapshot>,
    ) -> Result<(), StoreError> {
        let _guard = snapshot.is_some().then(|| self.db.lock_snapshot());
        let cf = self.db.cf(CF_SM)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, KEY_STATE, state);
        put_json(&mut batch, cf, KEY_APPLIED, applied)?;
        if let Some(snapshot) = &snapshot {
            self.db.put_snapshot(&mut batch, snapshot)?;
        }
        self.db.write_synced(batch)
    }

    fn snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        self.db.read_snapshot()
    }

    fn offer_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let _guard = self.db.lock_snapshot();
        if may_replace(self.db.read_snapshot()?.as_ref(), snapshot) {
            let mut batch = WriteBatch::default();
            self.db.put_snapshot(&mut batch, snapshot)?;
            self.db.write_synced(batch)?;
        }
        Ok(())
    }
}

fn put_json<T: Serialize>(
    batch: &mut WriteBatch,
    cf: &ColumnFamily,
    key: &'static str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(StoreError::codec(key))?;
    batch.put_cf(cf, key, bytes);
    Ok(())
}

/// Log index as a key: big-endian so that RocksDB's byte order is index order.
fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::BadLogKey(key.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_like_indexes() {
        assert!(index_key(255) < index_key(256));
        assert_eq!(key_index(&index_key(42)).unwrap(), 42);
        assert!(key_index(b"short").is_err());
    }
}
