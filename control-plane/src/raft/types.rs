//! The openraft type configuration of a site's control-plane Raft group.

use std::io::Cursor;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use super::runtime::CairnRuntime;
use crate::command::{Command, CommandError};

/// Raft node id of a control-plane member (one per `cairn` node of the site).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Types of the site control-plane Raft group. The node address is carried by
    /// [`BasicNode`] (`addr` = the node's gRPC endpoint). [`CairnRuntime`] is tokio with a seeded
    /// RNG, so a simulated run draws the same election timeouts every time.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = CairnRuntime,
);

/// What applying one log entry produced. Blank and membership entries always answer `Ok(())`;
/// a rejected command answers its [`CommandError`] (it still counts as applied everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse(pub Result<(), CommandError>);

impl CommandResponse {
    pub fn ok() -> Self {
        Self(Ok(()))
    }

    pub fn into_result(self) -> Result<(), CommandError> {
        self.0
    }
}

pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StorageIOError = openraft::StorageIOError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, BasicNode>;
