//! Site control-plane state: buckets and their configuration (IAM, KMS keys and replication
//! targets join later), changed only through typed [`Command`]s applied by a deterministic state
//! machine. Today the node persists the state itself; the Raft issue wraps the same machine in openraft.

pub mod command;
pub mod model;
pub mod state;

pub use command::{Command, CommandError};
pub use model::{BucketInfo, Versioning};
pub use state::SiteState;
