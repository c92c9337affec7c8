//! Site control-plane state: buckets and their configuration (IAM, KMS keys and replication
//! targets join later), changed only through typed [`Command`]s applied by a deterministic state
//! machine. [`raft`] holds the openraft storage layer (RocksDB log store and state machine) that
//! replicates the same machine; the node still persists the state itself until it runs openraft.

pub mod command;
pub mod model;
pub mod raft;
pub mod state;

pub use command::{Command, CommandError};
pub use model::{BucketInfo, Versioning};
pub use state::SiteState;
