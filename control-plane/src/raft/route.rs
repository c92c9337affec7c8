//! Getting a request to the leader and back, bounded in time.
//!
//! [`Shared::on_leader`] runs a [`LeaderOp`] on the leader: locally when this node leads, else
//! through the `Raft` gRPC service of the node it believes leads. A refusal that proves the op did
//! not run (not the leader, no connection, membership change in progress) is retried (at the
//! named leader at once, otherwise after a pause that doubles up to `retry_max`); everything is
//! bounded by the caller's deadline. It gives up early, with
//! [`ProposeError::Unavailable`], when nobody has been leader for `leader_grace`, or when this node
//! leads but has not heard from a quorum for `leader_grace`: a site without quorum answers at
//! once instead of making every caller wait for its full timeout.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use tokio::time::Instant;
use tracing::Instrument;

use super::error::ProposeError;
use super::network::PeerClient;
use super::state_machine::StateReader;
use super::types::{NodeId, Raft};
use super::wire::{leader_hint, Attempt, Leader, LeaderOp, LeaderReply, Written};
use crate::state::SiteState;
use crate::transport::Transport;

/// The time limits of the control plane (see `ControlPlaneConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) propose_timeout: Duration,
    pub(crate) membership_timeout: Duration,
    /// Without a leader (or, on the leader, without a quorum's acknowledgement) for this long,
    /// requests fail at once.
    pub(crate) leader_grace: Duration,
    pub(crate) retry_first: Duration,
    pub(crate) retry_max: Duration,
}

/// What the control plane's handle, its background tasks and its gRPC service share.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) reader: StateReader,
    pub(crate) transport: Transport,
    pub(crate) timing: Timing,
    /// Since when no leader is known (`None` while one is).
    leaderless_since: Mutex<Option<Instant>>,
    stopped: AtomicBool,
    /// Proposals from this node that did not commit (no leader, no quorum, timed out); a
    /// command the state machine refused is not counted. For the node's metrics.
    pub(crate) proposals_failed: std::sync::atomic::AtomicU64,
}

/// Where to run a [`LeaderOp`].
#[derive(Debug, Clone)]
enum Target {
    Local,
    Remote(Leader),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Local => f.write_str("this node"),
            Target::Remote(l) => write!(f, "node {} ({})", l.id, l.addr),
        }
    }
}

impl Shared {
    pub(crate) fn new(
        id: NodeId,
        raft: Raft,
        reader: StateReader,
        transport: Transport,
        timing: Timing,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            raft,
            reader,
            transport,
            timing,
            // Starting up counts as leaderless: the grace period runs from the start.
            leaderless_since: Mutex::new(Some(Instant::now())),
            stopped: AtomicBool::new(false),
            proposals_failed: Default::default(),
        })
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Records whether a leader is known (called by the task watching the Raft metrics).
    pub(crate) fn note_leader(&self, known: bool) {
        let mut since = self
            .leaderless_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (known, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// When waiting for a leader stops making sense.
    fn leaderless_deadline(&self) -> Option<Instant> {
        let since = *self
            .leaderless_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        since.map(|t| t + self.timing.leader_grace)
    }

    /// Runs `op` on the leader, wherever it is, before `deadline`.
    pub(crate) async fn on_leader(
        &self,
        op: &LeaderOp,
        deadline: Instant,
    ) -> Result<LeaderReply, ProposeError> {
        let mut hint: Option<Leader> = None;
        let mut redirected = false;
        let mut pause = self.timing.retry_first;
        loop {
            if self.is_stopped() {
                return Err(ProposeError::ShutDown);
            }
            let target = match hint.take() {
                Some(l) if l.id != self.id => Target::Remote(l),
                _ => self.find_leader(deadline).await?,
            };
            let attempt = match &target {
                Target::Local => self.run_local(op, deadline).await,
                Target::Remote(l) => self.run_remote(l, op, deadline).await,
            };
            let reason = match attempt {
                Attempt::Done(reply) => return Ok(reply),
                Attempt::Unavailable(r) => return Err(ProposeError::Unavailable(r)),
                Attempt::Rejected(r) => return Err(ProposeError::Membership(r)),
                Attempt::NotLeader(leader) => {
                    // Follow the first redirect at once; after that, pause: two nodes that name
                    // each other are in the middle of an election.
                    let follow_now = !redirected && leader.is_some();
                    redirected = true;
                    hint = leader;
                    if follow_now {
                        continue;
                    }
                    format!("{target} is not the leader")
                }
                Attempt::Retry(r) => r,
            };
            tracing::debug!(op = op.name(), %target, %reason, "retrying on the leader");
            if Instant::now() + pause >= deadline {
                return Err(ProposeError::Unavailable(format!(
                    "{} did not complete in time: {reason}",
                    op.name()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.timing.retry_max);
        }
    }

    /// The leader from this node's Raft metrics, waiting (bounded) while none is known.
    async fn find_leader(&self, deadline: Instant) -> Result<Target, ProposeError> {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_and_update();
                match m.current_leader {
                    Some(id) if id == self.id && m.state == ServerState::Leader => {
                        return Ok(Target::Local)
                    }
                    Some(id) if id != self.id => {
                        if let Some(node) = m.membership_config.membership().get_node(&id) {
                            return Ok(Target::Remote(Leader {
                                id,
                                addr: node.addr.clone(),
                            }));
                        }
                    }
                    _ => {}
                }
            }
            let give_up = self
                .leaderless_deadline()
                .map_or(deadline, |d| d.min(deadline));
            if Instant::now() >= give_up {
                return Err(ProposeError::Unavailable(
                    "no leader: the site has no quorum or is electing one".into(),
                ));
            }
            match tokio::time::timeout_at(give_up, rx.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => return Err(ProposeError::ShutDown),
            }
        }
    }

    async fn run_remote(
        &self,
        leader: &Leader,
        op: &LeaderOp,
        deadline: Instant,
    ) -> Attempt<LeaderReply> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let client = match PeerClient::new(&self.transport, &leader.addr) {
            Ok(c) => c,
            Err(f) => return f.into_attempt(op.is_idempotent()),
        };
        let span = tracing::debug_span!(
            "to_leader",
            op = op.name(),
            from = self.id,
            leader = leader.id
        );
        match client.run(op, timeout).instrument(span).await {
            Ok(attempt) => attempt,
            Err(f) => f.into_attempt(op.is_idempotent()),
        }
    }

    /// Refuses at once when this node leads but a quorum has not acknowledged it for
    /// `leader_grace`: a write would only wait for its timeout.
    fn quorum_lost<T>(&self) -> Option<Attempt<T>> {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let silent_ms = m.millis_since_quorum_ack?;
        let grace_ms = u64::try_from(self.timing.leader_grace.as_millis()).unwrap_or(u64::MAX);
        (m.state == ServerState::Leader && silent_ms > grace_ms).then(|| {
            Attempt::Unavailable(format!(
                "the leader has not heard from a quorum for {silent_ms} ms"
            ))
        })
    }

    /// Runs `op` on this node's Raft, which serves it only if it leads.
    pub(crate) async fn run_local(&self, op: &LeaderOp, deadline: Instant) -> Attempt<LeaderReply> {
        if let Some(refusal) = self.quorum_lost() {
            return refusal;
        }
        match op {
            LeaderOp::Write(cmd) => {
                let res = tokio::time::timeout_at(
                    deadline,
                    self.raft.client_write(crate::Command::clone(cmd)),
                )
                .await;
                match res {
                    Err(_) => Attempt::Unavailable(
                        "the write did not commit in time (it may still be applied)".into(),
                    ),
                    Ok(Ok(resp)) => Attempt::Done(LeaderReply::Written(Written {
                        log_index: resp.log_id.index,
                        response: resp.data,
                    })),
                    Ok(Err(e)) => client_write_refusal(e),
                }
            }
            LeaderOp::ReadIndex => {
                match tokio::time::timeout_at(deadline, self.raft.get_read_log_id()).await {
                    Err(_) => Attempt::Unavailable("leadership not confirmed in time".into()),
                    Ok(Ok((read_log_id, _applied))) => {
                        Attempt::Done(LeaderReply::ReadIndex(read_log_id.map_or(0, |l| l.index)))
                    }
                    Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                        Attempt::NotLeader(leader_hint(&f))
                    }
                    Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                        Attempt::Retry(e.to_string())
                    }
                    Ok(Err(RaftError::Fatal(f))) => Attempt::Unavailable(format!("raft: {f}")),
                }
            }
            LeaderOp::AddLearner { id, addr, blocking } => {
                let add = self
                    .raft
                    .add_learner(*id, BasicNode::new(addr.clone()), *blocking);
                match tokio::time::timeout_at(deadline, add).await {
                    Err(_) => Attempt::Unavailable(format!(
                        "learner {id} was not added or did not catch up in time"
                    )),
                    Ok(Ok(resp)) => Attempt::Done(LeaderReply::Membership(resp.log_id.index)),
                    Ok(Err(e)) => client_write_refusal(e),
                }
            }
            LeaderOp::ChangeMembership { changes, retain } => {
                let change = self.raft.change_membership(changes.clone(), *retain);
                match tokio::time::timeout_at(deadline, change).await {
                    Err(_) => {
                        Attempt::Unavailable("the membership change did not commit in time".into())
                    }
                    Ok(Ok(resp)) => Attempt::Done(LeaderReply::Membership(resp.log_id.index)),
                    Ok(Err(e)) => client_write_refusal(e),
                }
            }
        }
    }

    /// Waits (until `deadline`) for this node to apply log index `index`.
    pub(crate) async fn wait_applied_until(
        &self,
        index: u64,
        deadline: Instant,
    ) -> Result<Arc<SiteState>, ProposeError> {
        match tokio::time::timeout_at(deadline, self.reader.wait_applied(index)).await {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(_closed)) => Err(ProposeError::ShutDown),
            Err(_) => Err(ProposeError::Unavailable(format!(
                "this node has not applied log index {index} in time"
            ))),
        }
    }
}

fn client_write_refusal<T>(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> Attempt<T> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Attempt::NotLeader(leader_hint(&f))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(p),
        )) => Attempt::Retry(p.to_string()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(m)) => {
            Attempt::Rejected(m.to_string())
        }
        RaftError::Fatal(f) => Attempt::Unavailable(format!("raft: {f}")),
    }
}
