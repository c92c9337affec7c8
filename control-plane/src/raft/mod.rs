//! The site control plane's Raft group: storage, network and the [`ControlPlane`] handle.
//!
//! Storage (no network). The openraft storage traits are implemented once, over a [`Medium`]:
//! * [`types`]: the openraft type configuration (`Command` in, [`CommandResponse`] out, `u64` node
//!   ids, the seeded [`CairnRuntime`]).
//! * [`medium`]: the storage primitives a medium provides ([`Medium`]) and its durability contract.
//! * [`log_store`]: the Raft log, vote and committed log id ([`LogStore`]).
//! * [`state_machine`]: applies committed commands to [`SiteState`](crate::SiteState)
//!   ([`StateMachineStore`]) and lets the node read the applied state without a Raft round trip
//!   ([`StateReader`]).
//! * [`snapshot`]: snapshot format and builder ([`SnapshotBuilder`]).
//! * [`db`]: the RocksDB medium ([`RocksMedium`]: column families, key encoding, synced writes)
//!   and [`open_stores`]; the stores' default medium.
//! * [`memory`]: the in-memory medium with crash semantics, for the simulator ([`MemoryMedium`],
//!   [`MemoryRaftDisk`], [`open_memory_stores`]).
//!
//! Running it:
//! * [`runtime`]: openraft's async runtime: tokio, with election timeouts drawn from a seeded RNG
//!   ([`set_seed`]) so simulated runs replay.
//! * [`network`]: openraft's RPCs over tonic, through the handed-in
//!   [`Transport`](crate::transport::Transport).
//! * [`service`]: the token-checked `cairn.raft.v1.Raft` gRPC service ([`RaftService`]).
//! * `route`: getting writes, read-index requests and membership changes to the leader, bounded
//!   in time.
//! * [`node`]: [`ControlPlane`], the node's handle: bootstrap, propose, linearizable reads, status
//!   and membership changes.
//!
//! See `control-plane/README.md` for what is synced, the bootstrap rules, forwarding, the read
//! index and the timeouts.

pub mod db;
pub mod error;
pub mod log_store;
pub mod medium;
pub mod memory;
pub mod network;
pub mod node;
mod route;
pub mod runtime;
pub mod service;
pub mod snapshot;
pub mod state_machine;
pub mod types;
mod wire;

pub use db::{open_stores, RocksMedium};
pub use error::{ControlPlaneError, ProposeError, StoreError};
pub use log_store::LogStore;
pub use medium::Medium;
pub use memory::{
    open_memory_stores, MemLogStore, MemSnapshotBuilder, MemStateMachine, MemStoreError,
    MemoryMedium, MemoryRaftDisk,
};
pub use network::NetworkFactory;
pub use node::{ControlPlane, ControlPlaneConfig};
pub use runtime::{set_seed, CairnRuntime};
pub use service::{RaftGrpcServer, RaftService};
pub use snapshot::{SnapshotBuilder, StoredSnapshot};
pub use state_machine::{StateMachineClosed, StateMachineStore, StateReader};
pub use types::{CommandResponse, LogId, NodeId, Raft, RaftMetrics, StorageError, TypeConfig};
pub use wire::{ControlPlaneStatus, Role};
