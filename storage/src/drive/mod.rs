//! A drive: a synced key-value store for metadata plus a tree of shard files.
//!
//! The object layer only sees this trait, so a drive can be a local directory (`local`), a remote
//! node over gRPC or an in-memory drive with crash semantics in the simulator. Paths are relative
//! to the drive and use `/`; keys are raw bytes ordered bytewise.
//!
//! # Data service
//!
//! A site is several nodes; erasure sets span the drives of all of them. Each node serves its own
//! drives over gRPC (`service`, `proto/cairn/drive.proto`: one RPC per trait method, the drive
//! named by its global index, the position in the site's endpoint list) and reaches every other
//! drive through a `remote::RemoteDrive`, so the object layer never knows where a drive is.
//! Only nodes holding the site's internode token are served. Shard files travel in chunks of at
//! most 1 MiB through small bounded queues, so a transfer holds a few MiB whatever its size; an
//! upload that breaks off before `finish` leaves no file behind. A peer that is down, unreachable
//! or hung makes its drives `DriveError::Offline` within a bounded time (1 s connect timeout, 10 s
//! per call or per stream message, 2 s for health), and the object layer counts them as missing.

pub mod format;
pub mod local;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod metered;
pub mod remote;
pub mod service;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DriveError {
    #[error("not found")]
    NotFound,
    #[error("drive is offline")]
    Offline,
    #[error("invalid path {0:?}")]
    InvalidPath(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store: {0}")]
    Meta(String),
    #[error("the record changed since it was read")]
    Conflict,
    /// A batch arrived after its `MetaOp::NotAfter` deadline.
    #[error("the write's deadline has passed")]
    Expired,
}

/// An open shard file being written; nothing is visible or durable until `finish`.
#[async_trait]
pub trait ShardWriter: Send {
    async fn write(&mut self, data: Bytes) -> Result<(), DriveError>;
    /// Flushes and fsyncs the file.
    async fn finish(self: Box<Self>) -> Result<(), DriveError>;
}

/// One change in an atomic, synced metadata batch.
#[derive(Debug, Clone)]
pub enum MetaOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// A precondition: the batch applies only while the key holds exactly this value (`None`:
    /// absent), else it fails with `Conflict` and changes nothing. Lets a node change a record
    /// it read earlier without overwriting what another node wrote in between.
    Expect(Vec<u8>, Option<Vec<u8>>),
    /// A precondition: the batch applies only until this deadline (ns since the epoch, on the
    /// caller's clock), else it fails with `Expired` and changes nothing. A write's coordinator
    /// stops waiting for a drive at some point; a batch delayed past that (a paused peer, a
    /// queue) must not land after the coordinator settled the write without it. Checked where a
    /// batch can be delayed: a remote drive sends it in its node's time (the offset measured on
    /// every `get`) and that node's data service refuses it late; a drive in the caller's own
    /// process applies the batch as it is called, and ignores it.
    NotAfter(i64),
}

#[async_trait]
pub trait Drive: Send + Sync + 'static {
    /// A name for logs and errors (the path or endpoint).
    fn label(&self) -> &str;

    /// Counts of calls and failures, when the drive is wrapped in [`metered::Metered`].
    fn stats(&self) -> Option<&metered::DriveStats> {
        None
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DriveError>;
    /// Applies every op atomically and syncs before returning.
    async fn apply(&self, ops: Vec<MetaOp>) -> Result<(), DriveError>;
    /// Up to `limit` entries whose key starts with `prefix` and sorts strictly after `after`.
    async fn scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DriveError>;

    /// Creates (truncating) a file; parent directories are created as needed.
    async fn create_file(&self, path: &str) -> Result<Box<dyn ShardWriter>, DriveError>;
    /// Reads `len` bytes at `offset`; a short file is an error.
    async fn read_file(&self, path: &str, offset: u64, len: usize) -> Result<Bytes, DriveError>;
    /// Atomically renames a file or directory (replacing an existing target) and syncs the parent.
    async fn rename(&self, from: &str, to: &str) -> Result<(), DriveError>;
    /// Removes a file or a directory tree; a missing path is not an error.
    async fn delete(&self, path: &str) -> Result<(), DriveError>;
    /// Fails when the drive cannot serve (unreachable, or wiped under a running server).
    async fn health(&self) -> Result<(), DriveError>;
    /// Names of the entries of a directory (empty if it does not exist).
    async fn list_dir(&self, path: &str) -> Result<Vec<String>, DriveError>;
}
