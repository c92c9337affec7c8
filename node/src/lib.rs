//! Cairn data node: the S3 front, authentication, encryption, replication and the server. The
//! storage layers below it are the `cairn-storage` crate, re-exported here under their old paths.
//!
//! Layering (each module only uses the ones before it; `ARCHITECTURE.md` has the whole graph):
//! storage -> `catalog` -> `sse` -> `idp` -> `auth` -> `node` -> `s3`, `sts` -> `lifecycle`, `replication` -> `admin`
//! -> `server`; `link`, `sign` and `tagging` are leaves the upper modules share.

pub use cairn_sign as sign;
pub use cairn_storage::{bitrot, clock, drive, endpoints, erasure, object, topology};

pub mod admin;
pub mod auth;
pub mod bench;
pub mod catalog;
pub mod idp;
pub mod lifecycle;
pub mod link;
pub mod net;
pub mod node;
pub mod observe;
pub mod replication;
pub mod rng;
pub mod s3;
pub mod server;
pub mod sse;
pub mod sts;
pub mod tagging;
pub mod telemetry;
pub mod units;
