//! The RocksDB instance shared by the log store and the state machine.
//!
//! Column families:
//! * `logs`: Raft log entries, key = log index as 8 big-endian bytes (so byte order is index
//!   order), value = JSON of the openraft `Entry`;
//! * `log_meta`: `vote`, `committed` and `last_purged` (JSON);
//! * `sm`: the state machine: `state` (JSON `SiteState`), `applied` (last applied log id +
//!   membership) and `snapshot` (the last built or installed snapshot, meta + data).
//!
//! Every write is a single `WriteBatch` written with `sync = true`: when a store method returns (or
//! the append callback fires), the change is on disk, and a batch is atomic across families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use super::error::StoreError;
use super::log_store::LogStore;
use super::state_machine::StateMachineStore;

pub const CF_LOGS: &str = "logs";
pub const CF_LOG_META: &str = "log_meta";
pub const CF_SM: &str = "sm";

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
    let log_store = LogStore::new(db.clone());
    let state_machine = StateMachineStore::load(db)?;
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

/// Thin wrapper over [`DB`] with the typed helpers both stores use.
pub(crate) struct RaftDb {
    db: DB,
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
        Ok(Self { db, closed })
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    pub(crate) fn get_json<T: DeserializeOwned>(
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

    /// Writes the batch atomically and waits for it to reach the disk.
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }
}

pub(crate) fn put_json<T: Serialize>(
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
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::BadLogKey(key.len()))?;
    Ok(u64::from_be_bytes(bytes))
}
