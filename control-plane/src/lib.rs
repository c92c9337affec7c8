//! Site control-plane state: buckets and their configuration (IAM, KMS keys and replication
//! targets join later), changed only through typed [`Command`]s applied by a deterministic state
//! machine, and replicated across the site's nodes by openraft.
//!
//! [`raft`] holds all of the replication: the RocksDB log store and state machine, the gRPC
//! transport (client and token-checked service) and [`ControlPlane`], the handle a node starts
//! and keeps: local reads for the S3 hot path, writes forwarded to the leader, linearizable reads
//! and membership changes. [`transport`] is how nodes reach each other (handed in, so the
//! simulator can replace the network).

pub mod bucket_versioning;
pub mod command;
pub mod cors;
pub mod iam;
pub mod kms;
pub mod lifecycle;
pub mod model;
pub mod pairing;
pub mod raft;
pub mod resync;
pub mod site;
pub mod stamp;
pub mod state;
pub mod transport;

pub use bucket_versioning::{DefaultRetention, LockMode, RetentionPeriod};
pub use command::{Command, CommandError};
pub use model::{BucketEncryption, BucketInfo, BucketTag, Versioning};
pub use raft::{
    ControlPlane, ControlPlaneConfig, ControlPlaneError, ControlPlaneStatus, ProposeError, Role,
};
pub use state::SiteState;
