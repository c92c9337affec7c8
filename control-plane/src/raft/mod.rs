//! The Raft storage layer of the site control plane: the pieces of openraft that need no network.
//!
//! * [`types`]: the openraft type configuration (`Command` in, [`CommandResponse`] out, `u64` node ids).
//! * [`db`]: the RocksDB instance both stores share (column families, key encoding, synced writes).
//! * [`log_store`]: the Raft log, vote and committed log id ([`LogStore`]).
//! * [`state_machine`]: applies committed commands to [`SiteState`](crate::SiteState)
//!   ([`StateMachineStore`]) and lets the node read the applied state without a Raft round trip
//!   ([`StateReader`]).
//! * [`snapshot`]: snapshot format and builder ([`SnapshotBuilder`]).
//!
//! See `control-plane/README.md` for what is synced and how the node uses it.

pub mod db;
pub mod error;
pub mod log_store;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use db::open_stores;
pub use error::StoreError;
pub use log_store::LogStore;
pub use snapshot::{SnapshotBuilder, StoredSnapshot};
pub use state_machine::{StateMachineStore, StateReader};
pub use types::{CommandResponse, LogId, NodeId, StorageError, TypeConfig};
