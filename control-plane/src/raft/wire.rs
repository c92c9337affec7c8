//! What travels between a node and its leader besides the openraft RPCs, and how it maps onto
//! the protobuf messages of `proto/cairn/raft.proto`.
//!
//! A request that only the leader can serve is a [`LeaderOp`]; serving it gives an
//! [`Attempt`]: done, or refused for a reason that tells the caller whether trying again (at the
//! leader it names, or later) is safe. The same `Attempt` comes out of a local call on the leader
//! and out of a gRPC call to it, so the routing loop does not care where the leader is.

use std::collections::{BTreeMap, BTreeSet};

use cairn_proto::raft as pb;
use openraft::error::ForwardToLeader;
use openraft::{BasicNode, ChangeMembers, RaftMetrics, ServerState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::types::{CommandResponse, NodeId};
use crate::command::Command;

/// A request only the leader can serve.
#[derive(Debug, Clone)]
pub(crate) enum LeaderOp {
    Write(Box<Command>),
    ReadIndex,
    AddLearner {
        id: NodeId,
        addr: String,
        blocking: bool,
    },
    ChangeMembership {
        changes: ChangeMembers<NodeId, BasicNode>,
        retain: bool,
    },
}

impl LeaderOp {
    /// Whether running the op twice is harmless, so that an ambiguous failure (the request may
    /// have reached the leader) can be retried. A write is not: `CreateBucket` twice answers
    /// "bucket exists" the second time.
    pub(crate) fn is_idempotent(&self) -> bool {
        !matches!(self, LeaderOp::Write(_))
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            LeaderOp::Write(_) => "write",
            LeaderOp::ReadIndex => "read index",
            LeaderOp::AddLearner { .. } => "add learner",
            LeaderOp::ChangeMembership { .. } => "change membership",
        }
    }
}

/// A committed and applied write, as the leader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) log_index: u64,
    pub(crate) response: CommandResponse,
}

/// What the leader answered to a [`LeaderOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaderReply {
    Written(Written),
    ReadIndex(u64),
    Membership(u64),
}

/// The leader as a refusing node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leader {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
}

/// The outcome of one try at a [`LeaderOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt<T> {
    Done(T),
    /// Not the leader: not executed. The leader, if known.
    NotLeader(Option<Leader>),
    /// Not executed, for a transient reason: try again later.
    Retry(String),
    /// Failed; for a write, the outcome is unknown.
    Unavailable(String),
    /// A membership change that is not allowed.
    Rejected(String),
}

impl<T> Attempt<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        self.and_then(|v| Attempt::Done(f(v)))
    }

    /// Chains a step that may refuse onto a successful attempt.
    pub(crate) fn and_then<U>(self, f: impl FnOnce(T) -> Attempt<U>) -> Attempt<U> {
        match self {
            Attempt::Done(v) => f(v),
            Attempt::NotLeader(l) => Attempt::NotLeader(l),
            Attempt::Retry(r) => Attempt::Retry(r),
            Attempt::Unavailable(r) => Attempt::Unavailable(r),
            Attempt::Rejected(r) => Attempt::Rejected(r),
        }
    }

    /// The refusal, or the value.
    fn split(self) -> Result<T, pb::Refused> {
        let reason = match self {
            Attempt::Done(v) => return Ok(v),
            Attempt::NotLeader(leader) => pb::refused::Reason::NotLeader(pb::NotLeader {
                leader_id: leader.as_ref().map(|l| l.id),
                leader_addr: leader.map(|l| l.addr).unwrap_or_default(),
            }),
            Attempt::Retry(r) => pb::refused::Reason::Retry(r),
            Attempt::Unavailable(r) => pb::refused::Reason::Unavailable(r),
            Attempt::Rejected(r) => pb::refused::Reason::Rejected(r),
        };
        Err(pb::Refused {
            reason: Some(reason),
        })
    }
}

/// The leader named by openraft's refusal, when it knows one with an address.
pub(crate) fn leader_hint(f: &ForwardToLeader<NodeId, BasicNode>) -> Option<Leader> {
    match (f.leader_id, &f.leader_node) {
        (Some(id), Some(node)) => Some(Leader {
            id,
            addr: node.addr.clone(),
        }),
        _ => None,
    }
}

fn refused<T>(r: Option<pb::Refused>) -> Attempt<T> {
    match r.and_then(|r| r.reason) {
        Some(pb::refused::Reason::NotLeader(n)) => Attempt::NotLeader(match n.leader_id {
            Some(id) if !n.leader_addr.is_empty() => Some(Leader {
                id,
                addr: n.leader_addr,
            }),
            _ => None,
        }),
        Some(pb::refused::Reason::Retry(r)) => Attempt::Retry(r),
        Some(pb::refused::Reason::Unavailable(r)) => Attempt::Unavailable(r),
        Some(pb::refused::Reason::Rejected(r)) => Attempt::Rejected(r),
        None => Attempt::Unavailable("the leader sent an empty refusal".into()),
    }
}

pub(crate) fn encode_json<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(format!("cannot encode {what}: {e}")))
}

pub(crate) fn decode_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("cannot decode {what}: {e}")))
}

pub(crate) fn forward_reply(a: Attempt<Written>) -> Result<pb::ForwardReply, Status> {
    let result = match a.split() {
        Ok(w) => pb::forward_reply::Result::Written(pb::Written {
            log_index: w.log_index,
            response: encode_json("command response", &w.response)?,
        }),
        Err(r) => pb::forward_reply::Result::Refused(r),
    };
    Ok(pb::ForwardReply {
        result: Some(result),
    })
}

pub(crate) fn from_forward_reply(r: pb::ForwardReply) -> Attempt<Written> {
    match r.result {
        Some(pb::forward_reply::Result::Written(w)) => {
            match serde_json::from_slice::<CommandResponse>(&w.response) {
                Ok(response) => Attempt::Done(Written {
                    log_index: w.log_index,
                    response,
                }),
                // Committed, but we cannot tell the caller how it went.
                Err(e) => Attempt::Unavailable(format!("undecodable command response: {e}")),
            }
        }
        Some(pb::forward_reply::Result::Refused(r)) => refused(Some(r)),
        None => refused(None),
    }
}

pub(crate) fn read_index_reply(a: Attempt<u64>) -> pb::ReadIndexReply {
    let result = match a.split() {
        Ok(i) => pb::read_index_reply::Result::ReadIndex(i),
        Err(r) => pb::read_index_reply::Result::Refused(r),
    };
    pb::ReadIndexReply {
        result: Some(result),
    }
}

pub(crate) fn from_read_index_reply(r: pb::ReadIndexReply) -> Attempt<u64> {
    match r.result {
        Some(pb::read_index_reply::Result::ReadIndex(i)) => Attempt::Done(i),
        Some(pb::read_index_reply::Result::Refused(r)) => refused(Some(r)),
        None => refused(None),
    }
}

pub(crate) fn membership_reply(a: Attempt<u64>) -> pb::MembershipReply {
    let result = match a.split() {
        Ok(i) => pb::membership_reply::Result::LogIndex(i),
        Err(r) => pb::membership_reply::Result::Refused(r),
    };
    pb::MembershipReply {
        result: Some(result),
    }
}

pub(crate) fn from_membership_reply(r: pb::MembershipReply) -> Attempt<u64> {
    match r.result {
        Some(pb::membership_reply::Result::LogIndex(i)) => Attempt::Done(i),
        Some(pb::membership_reply::Result::Refused(r)) => refused(Some(r)),
        None => refused(None),
    }
}

/// The Raft role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl From<ServerState> for Role {
    fn from(s: ServerState) -> Self {
        match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

/// What a node knows about the site's Raft group (from its own Raft metrics: no round trip).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub role: Role,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// The node holds a membership: it was bootstrapped or has been contacted by a leader.
    pub initialized: bool,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Node id -> gRPC endpoint (`HOST:PORT`) of every voter and learner.
    pub members: BTreeMap<NodeId, String>,
}

impl ControlPlaneStatus {
    pub(crate) fn from_metrics(m: &RaftMetrics<NodeId, BasicNode>) -> Self {
        let membership = m.membership_config.membership();
        Self {
            node_id: m.id,
            leader: m.current_leader,
            term: m.current_term,
            role: m.state.into(),
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.as_ref().map(|l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            initialized: m.membership_config.log_id().is_some(),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            members: membership
                .nodes()
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect(),
        }
    }

    pub(crate) fn to_proto(&self) -> pb::StatusReply {
        let role = match self.role {
            Role::Leader => pb::Role::Leader,
            Role::Follower => pb::Role::Follower,
            Role::Candidate => pb::Role::Candidate,
            Role::Learner => pb::Role::Learner,
            Role::Shutdown => pb::Role::Shutdown,
        };
        pb::StatusReply {
            node_id: self.node_id,
            leader_id: self.leader,
            term: self.term,
            role: role.into(),
            last_log_index: self.last_log_index,
            last_applied_index: self.last_applied_index,
            snapshot_index: self.snapshot_index,
            initialized: self.initialized,
            voters: self.voters.iter().copied().collect(),
            learners: self.learners.iter().copied().collect(),
            members: self
                .members
                .iter()
                .map(|(id, addr)| (*id, addr.clone()))
                .collect(),
        }
    }

    pub(crate) fn from_proto(s: pb::StatusReply) -> Self {
        let role = match pb::Role::try_from(s.role) {
            Ok(pb::Role::Leader) => Role::Leader,
            Ok(pb::Role::Follower) => Role::Follower,
            Ok(pb::Role::Candidate) => Role::Candidate,
            Ok(pb::Role::Learner) => Role::Learner,
            Ok(pb::Role::Shutdown | pb::Role::Unspecified) | Err(_) => Role::Shutdown,
        };
        Self {
            node_id: s.node_id,
            leader: s.leader_id,
            term: s.term,
            role,
            last_log_index: s.last_log_index,
            last_applied_index: s.last_applied_index,
            snapshot_index: s.snapshot_index,
            initialized: s.initialized,
            voters: s.voters.into_iter().collect(),
            learners: s.learners.into_iter().collect(),
            members: s.members.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommandError;

    #[test]
    fn forward_reply_roundtrip() {
        let written = Written {
            log_index: 9,
            response: CommandResponse(Err(CommandError::BucketExists("b".into()))),
        };
        let reply = forward_reply(Attempt::Done(written.clone())).unwrap();
        assert_eq!(from_forward_reply(reply), Attempt::Done(written));

        let leader = Leader {
            id: 3,
            addr: "10.0.0.3:9000".into(),
        };
        let reply = forward_reply(Attempt::NotLeader(Some(leader.clone()))).unwrap();
        assert_eq!(from_forward_reply(reply), Attempt::NotLeader(Some(leader)));
        let reply = forward_reply(Attempt::NotLeader(None)).unwrap();
        assert_eq!(from_forward_reply(reply), Attempt::NotLeader(None));
        let reply = forward_reply(Attempt::Unavailable("x".into())).unwrap();
        assert_eq!(from_forward_reply(reply), Attempt::Unavailable("x".into()));
        assert!(matches!(
            from_forward_reply(pb::ForwardReply { result: None }),
            Attempt::Unavailable(_)
        ));
    }

    #[test]
    fn read_index_and_membership_replies_roundtrip() {
        for a in [
            Attempt::Done(7),
            Attempt::Retry("r".into()),
            Attempt::Rejected("no".into()),
        ] {
            assert_eq!(from_read_index_reply(read_index_reply(a.clone())), a);
            assert_eq!(from_membership_reply(membership_reply(a.clone())), a);
        }
    }
}
