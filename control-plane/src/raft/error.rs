//! Errors of the Raft stores (RocksDB and encoding; the in-memory medium adds its own in
//! `memory.rs`), their mapping onto openraft's [`StorageError`], and errors of the control plane
//! built on them.

use openraft::{ErrorSubject, ErrorVerb};
use thiserror::Error;

use super::types::{NodeId, StorageError, StorageIOError};
use crate::command::CommandError;

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

/// Why [`ControlPlane::start`](super::ControlPlane::start) failed.
#[derive(Debug, Error)]
pub enum ControlPlaneError {
    #[error("invalid control-plane configuration: {0}")]
    Config(String),
    #[error("cannot open the raft stores: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start raft: {0}")]
    Raft(String),
}

/// Why a write, a linearizable read or a membership change did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// The state machine refused the command (e.g. the bucket exists). The entry is in the log and
    /// was applied as a no-op on every node, so retrying gives the same answer.
    #[error(transparent)]
    Rejected(#[from] CommandError),
    /// No leader, no quorum, or no answer within the timeout: the S3 edge answers 503. For a write
    /// the outcome is unknown: it may still commit (and be applied) later.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    /// A membership change openraft does not allow (e.g. promoting a node that is not a learner,
    /// or removing the last voter).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// [`ControlPlane::shutdown`](super::ControlPlane::shutdown) was called.
    #[error("the control plane is shut down")]
    ShutDown,
}
