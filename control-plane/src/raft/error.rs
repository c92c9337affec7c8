//! Errors of the RocksDB-backed Raft stores, and their mapping onto openraft's [`StorageError`].

use openraft::{ErrorSubject, ErrorVerb};
use thiserror::Error;

use super::types::{NodeId, StorageError, StorageIOError};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("cannot encode or decode {what}: {source}")]
    Codec {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    #[error("log key of {0} bytes is not a big-endian u64 index")]
    BadLogKey(usize),
}

impl StoreError {
    pub(crate) fn codec(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Codec { what, source }
    }

    /// Wraps the error for openraft, which treats any storage error as fatal for the node.
    pub fn into_storage(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError {
        StorageIOError::new(subject, verb, &self).into()
    }
}
