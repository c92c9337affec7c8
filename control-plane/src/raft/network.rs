//! The client side of the Raft transport: openraft's [`RaftNetworkFactory`] / [`RaftNetwork`] over
//! tonic, and `PeerClient` for the requests a node sends to its leader (forwarded writes, read
//! index, membership changes) or to any peer (status).
//!
//! Channels come from the handed-in [`Transport`] (one lazily connecting channel per address,
//! shared by every client of that peer), and every request carries the site's internode token.
//! Nothing here opens a socket itself, so the simulator can swap the network (DESIGN.md §9).
//!
//! Failure mapping for openraft: a peer that cannot be reached (connection refused, no route,
//! refused token) is [`Unreachable`], so openraft backs off before retrying it; a call that
//! exceeds its [`RPCOption`] deadline is a [`Timeout`]; anything else is a [`NetworkError`],
//! retried at once. A peer whose Raft node has stopped answers a `Fatal` error, which is also
//! treated as unreachable (openraft does the same when decomposing remote errors).

use std::error::Error as StdError;
use std::time::Duration;

use cairn_proto::raft as pb;
use cairn_proto::raft::raft_client::RaftClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::Instrument;

use super::types::{NodeId, TypeConfig};
use super::wire::{self, Attempt, ControlPlaneStatus, LeaderOp, LeaderReply};
use crate::transport::Transport;

/// Largest message either side accepts. openraft bounds an AppendEntries batch by entry count
/// (`max_payload_entries`) and snapshot chunks by `snapshot_max_chunk_size` (3 MiB by default),
/// not by bytes, so leave ample room above tonic's 4 MiB default.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// First and longest pause before retrying an unreachable peer.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

fn client(channel: Channel) -> RaftClient<Channel> {
    RaftClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Whether the call failed before the request could reach the peer (no connection). Only then
/// is it certain that the peer did not execute it.
fn not_sent(status: &Status) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Makes one [`PeerNetwork`] per replication target.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    id: NodeId,
    transport: Transport,
}

impl NetworkFactory {
    pub fn new(id: NodeId, transport: Transport) -> Self {
        Self { id, transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            id: self.id,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
            client: None,
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerNetwork {
    id: NodeId,
    target: NodeId,
    node: BasicNode,
    transport: Transport,
    client: Option<RaftClient<Channel>>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerNetwork {
    fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let channel = self
            .transport
            .channel(&self.node.addr)
            .map_err(|e| Unreachable::new(&e))?;
        let c = client(channel);
        self.client = Some(c.clone());
        Ok(c)
    }

    fn status_error<E: StdError + 'static>(
        &self,
        rpc: RPCTypes,
        ttl: Duration,
        status: Status,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        match status.code() {
            Code::Unavailable | Code::Unauthenticated | Code::PermissionDenied => {
                RPCError::Unreachable(Unreachable::new(&status))
            }
            Code::DeadlineExceeded | Code::Cancelled => RPCError::Timeout(Timeout {
                action: rpc,
                id: self.id,
                target: self.target,
                timeout: ttl,
            }),
            _ => RPCError::Network(NetworkError::new(&status)),
        }
    }

    /// Sends one openraft request (JSON inside protobuf) and decodes the reply, within the
    /// deadline openraft gave for it.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: StdError + DeserializeOwned + 'static,
    {
        let ttl = option.hard_ttl();
        let payload =
            serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.client()?;
        let mut request = self.transport.request(pb::RaftRequest { payload });
        request.set_timeout(ttl);
        let call = async {
            match rpc {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action: rpc,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }))
            }
            Ok(Err(status)) => return Err(self.status_error(rpc, ttl, status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        match reply.result {
            Some(pb::raft_reply::Result::Ok(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
            Some(pb::raft_reply::Result::Error(bytes)) => {
                match serde_json::from_slice::<RaftError<NodeId, E>>(&bytes) {
                    Ok(RaftError::Fatal(fatal)) => {
                        Err(RPCError::Unreachable(Unreachable::new(&fatal)))
                    }
                    Ok(api) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                        self.target,
                        self.node.clone(),
                        api,
                    ))),
                    Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
                }
            }
            None => Err(RPCError::Network(NetworkError::from(AnyError::error(
                "empty reply",
            )))),
        }
    }

    fn span(&self, rpc: RPCTypes) -> tracing::Span {
        tracing::debug_span!("raft_send", ?rpc, from = self.id, to = self.target, addr = %self.node.addr)
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let span = self.span(RPCTypes::AppendEntries);
        self.call(RPCTypes::AppendEntries, &rpc, &option)
            .instrument(span)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let span = self.span(RPCTypes::InstallSnapshot);
        self.call(RPCTypes::InstallSnapshot, &rpc, &option)
            .instrument(span)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let span = self.span(RPCTypes::Vote);
        self.call(RPCTypes::Vote, &rpc, &option)
            .instrument(span)
            .await
    }

    /// Exponential (100 ms doubling to 1 s, no jitter: the simulator replays it exactly), so a
    /// dead peer costs little and a restarted one is caught up within a second.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::successors(Some(BACKOFF_FIRST), |d| {
            Some((*d * 2).min(BACKOFF_MAX))
        }))
    }
}

/// Why a [`PeerClient`] call failed at the transport level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallFailure {
    /// No connection could be made: the peer did not see the request.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request may or may not have been executed (timeout, broken connection).
    #[error("no answer: {0}")]
    Unknown(String),
    /// The peer refused the call itself (bad token, malformed request): retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
}

impl CallFailure {
    fn from_status(addr: &str, status: &Status) -> Self {
        let msg = format!("{addr}: {} ({:?})", status.message(), status.code());
        if not_sent(status) {
            return CallFailure::NotSent(msg);
        }
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted => CallFailure::Unknown(msg),
            _ => CallFailure::Refused(msg),
        }
    }

    /// What the routing loop makes of this failure for an op: retry only when the op cannot have
    /// run, or when running it twice is harmless.
    pub(crate) fn into_attempt<T>(self, idempotent: bool) -> Attempt<T> {
        match self {
            CallFailure::NotSent(m) => Attempt::Retry(m),
            CallFailure::Unknown(m) if idempotent => Attempt::Retry(m),
            CallFailure::Unknown(m) => Attempt::Unavailable(format!(
                "lost contact with the leader, outcome unknown: {m}"
            )),
            CallFailure::Refused(m) => Attempt::Unavailable(m),
        }
    }
}

/// A client for the leader-only requests and the status probe, to one peer.
pub(crate) struct PeerClient {
    addr: String,
    transport: Transport,
    client: RaftClient<Channel>,
}

impl PeerClient {
    pub(crate) fn new(transport: &Transport, addr: &str) -> Result<Self, CallFailure> {
        let channel = transport
            .channel(addr)
            .map_err(|e| CallFailure::NotSent(e.to_string()))?;
        Ok(Self {
            addr: addr.to_string(),
            transport: transport.clone(),
            client: client(channel),
        })
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = self.transport.request(msg);
        req.set_timeout(timeout);
        req
    }

    /// Runs `op` on the peer (which should be the leader) and waits at most `timeout`.
    pub(crate) async fn run(
        &self,
        op: &LeaderOp,
        timeout: Duration,
    ) -> Result<Attempt<LeaderReply>, CallFailure> {
        match tokio::time::timeout(timeout, self.call(op, timeout)).await {
            Ok(res) => res,
            Err(_) => Err(CallFailure::Unknown(format!(
                "{}: no answer within {timeout:?}",
                self.addr
            ))),
        }
    }

    async fn call(
        &self,
        op: &LeaderOp,
        timeout: Duration,
    ) -> Result<Attempt<LeaderReply>, CallFailure> {
        let mut c = self.client.clone();
        let failed = |s: Status| CallFailure::from_status(&self.addr, &s);
        match op {
            LeaderOp::Write(cmd) => {
                let command = serde_json::to_vec(cmd)
                    .map_err(|e| CallFailure::Refused(format!("cannot encode command: {e}")))?;
                let reply = c
                    .forward(self.request(pb::ForwardRequest { command }, timeout))
                    .await
                    .map_err(failed)?;
                Ok(wire::from_forward_reply(reply.into_inner()).map(LeaderReply::Written))
            }
            LeaderOp::ReadIndex => {
                let reply = c
                    .read_index(self.request(pb::ReadIndexRequest {}, timeout))
                    .await
                    .map_err(failed)?;
                Ok(wire::from_read_index_reply(reply.into_inner()).map(LeaderReply::ReadIndex))
            }
            LeaderOp::AddLearner { id, addr, blocking } => {
                let req = pb::AddLearnerRequest {
                    node_id: *id,
                    addr: addr.clone(),
                    blocking: *blocking,
                };
                let reply = c
                    .add_learner(self.request(req, timeout))
                    .await
                    .map_err(failed)?;
                Ok(wire::from_membership_reply(reply.into_inner()).map(LeaderReply::Membership))
            }
            LeaderOp::ChangeMembership { changes, retain } => {
                let changes = serde_json::to_vec(changes).map_err(|e| {
                    CallFailure::Refused(format!("cannot encode membership change: {e}"))
                })?;
                let req = pb::ChangeMembershipRequest {
                    changes,
                    retain: *retain,
                };
                let reply = c
                    .change_membership(self.request(req, timeout))
                    .await
                    .map_err(failed)?;
                Ok(wire::from_membership_reply(reply.into_inner()).map(LeaderReply::Membership))
            }
        }
    }

    /// The peer's view of the Raft group.
    pub(crate) async fn status(
        &self,
        timeout: Duration,
    ) -> Result<ControlPlaneStatus, CallFailure> {
        let mut c = self.client.clone();
        let call = c.status(self.request(pb::StatusRequest {}, timeout));
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => Ok(ControlPlaneStatus::from_proto(reply.into_inner())),
            Ok(Err(s)) => Err(CallFailure::from_status(&self.addr, &s)),
            Err(_) => Err(CallFailure::Unknown(format!(
                "{}: no answer within {timeout:?}",
                self.addr
            ))),
        }
    }
}
