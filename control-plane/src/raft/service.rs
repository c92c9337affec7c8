//! The server side of the Raft transport: the `cairn.raft.v1.Raft` gRPC service.
//!
//! openraft's RPCs are handed to the local [`Raft`](openraft::Raft) as they are; its answer (or
//! its `RaftError`) goes back as JSON. Forwarded writes, read index and membership changes run
//! through the same code as local calls on the leader (`Shared::run_local`), so a follower gets
//! exactly the answer it would have got had it been the leader.
//!
//! Every handler first checks the site's internode token ([`Transport::check`](crate::transport::Transport::check), constant-time):
//! a caller without it learns nothing and changes nothing.

use std::sync::Arc;

use cairn_proto::raft as pb;
use cairn_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::ChangeMembers;
use serde::Serialize;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::network::MAX_MESSAGE_BYTES;
use super::route::Shared;
use super::types::{NodeId, TypeConfig};
use super::wire::{
    self, decode_json, encode_json, Attempt, ControlPlaneStatus, LeaderOp, LeaderReply,
};
use crate::command::Command;

/// The `cairn.raft.v1.Raft` service of one node. Add it to the node's tonic server with
/// `Server::builder().add_service(control_plane.grpc_service())`.
#[derive(Clone)]
pub struct RaftService {
    shared: Arc<Shared>,
}

/// The tonic server type of [`RaftService`], as the node names it.
pub type RaftGrpcServer = RaftServer<RaftService>;

impl RaftService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Wraps the service for tonic, with message limits that fit AppendEntries batches and
    /// snapshot chunks.
    pub(crate) fn into_server(self) -> RaftGrpcServer {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The request's message, if it carries this site's token, and the span of the call (in
    /// the caller's trace: a proposal forwarded from a follower belongs to the request that made it).
    fn authorize<T>(
        &self,
        request: Request<T>,
        rpc: &'static str,
    ) -> Result<(T, tracing::Span), Status> {
        let (metadata, extensions, message) = request.into_parts();
        // The token first: a caller without it may not even pick the trace its call joins.
        let checked = self
            .shared
            .transport
            .check(Request::from_parts(metadata, extensions, ()))?;
        let span = tracing::debug_span!("raft_rpc", rpc, node = self.shared.id);
        self.shared.transport.follow(&span, checked.metadata());
        Ok((message, span))
    }

    fn propose_deadline(&self) -> Instant {
        Instant::now() + self.shared.timing.propose_timeout
    }

    fn membership_deadline(&self) -> Instant {
        Instant::now() + self.shared.timing.membership_timeout
    }

    async fn membership(&self, op: LeaderOp) -> pb::MembershipReply {
        let attempt = self
            .shared
            .run_local(&op, self.membership_deadline())
            .await
            .and_then(|reply| match reply {
                LeaderReply::Membership(index) => Attempt::Done(index),
                other => unexpected(other),
            });
        wire::membership_reply(attempt)
    }
}

/// Encodes what the local Raft answered to an openraft RPC.
fn raft_reply<T: Serialize, E: Serialize>(
    res: Result<T, RaftError<NodeId, E>>,
) -> Result<Response<pb::RaftReply>, Status> {
    let result = match res {
        Ok(resp) => pb::raft_reply::Result::Ok(encode_json("raft response", &resp)?),
        Err(err) => pb::raft_reply::Result::Error(encode_json("raft error", &err)?),
    };
    Ok(Response::new(pb::RaftReply {
        result: Some(result),
    }))
}

fn unexpected<T>(reply: LeaderReply) -> Attempt<T> {
    Attempt::Unavailable(format!("unexpected reply from the local raft: {reply:?}"))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let (req, span) = self.authorize(request, "append_entries")?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode_json("append entries", &req.payload)?;
        let res = self.shared.raft.append_entries(rpc).instrument(span).await;
        raft_reply(res)
    }

    async fn vote(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let (req, span) = self.authorize(request, "vote")?;
        let rpc: VoteRequest<NodeId> = decode_json("vote", &req.payload)?;
        let res = self.shared.raft.vote(rpc).instrument(span).await;
        raft_reply(res)
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let (req, span) = self.authorize(request, "install_snapshot")?;
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode_json("install snapshot", &req.payload)?;
        let res = self
            .shared
            .raft
            .install_snapshot(rpc)
            .instrument(span)
            .await;
        raft_reply(res)
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        let (req, span) = self.authorize(request, "forward")?;
        let cmd: Command = decode_json("command", &req.command)?;
        let attempt = self
            .shared
            .run_local(&LeaderOp::Write(Box::new(cmd)), self.propose_deadline())
            .instrument(span)
            .await
            .and_then(|reply| match reply {
                LeaderReply::Written(w) => Attempt::Done(w),
                other => unexpected(other),
            });
        Ok(Response::new(wire::forward_reply(attempt)?))
    }

    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexReply>, Status> {
        let (_, span) = self.authorize(request, "read_index")?;
        let attempt = self
            .shared
            .run_local(&LeaderOp::ReadIndex, self.propose_deadline())
            .instrument(span)
            .await
            .and_then(|reply| match reply {
                LeaderReply::ReadIndex(index) => Attempt::Done(index),
                other => unexpected(other),
            });
        Ok(Response::new(wire::read_index_reply(attempt)))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let (req, span) = self.authorize(request, "add_learner")?;
        if req.addr.is_empty() {
            return Err(Status::invalid_argument("a learner needs an address"));
        }
        let op = LeaderOp::AddLearner {
            id: req.node_id,
            addr: req.addr,
            blocking: req.blocking,
        };
        let reply = self.membership(op).instrument(span).await;
        Ok(Response::new(reply))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let (req, span) = self.authorize(request, "change_membership")?;
        let changes: ChangeMembers<NodeId, openraft::BasicNode> =
            decode_json("membership change", &req.changes)?;
        let op = LeaderOp::ChangeMembership {
            changes,
            retain: req.retain,
        };
        let reply = self.membership(op).instrument(span).await;
        Ok(Response::new(reply))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        self.authorize(request, "status")?;
        let status = ControlPlaneStatus::from_metrics(&self.shared.raft.metrics().borrow());
        Ok(Response::new(status.to_proto()))
    }
}
