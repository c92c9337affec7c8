//! [`ControlPlane`]: one node's member of the site's Raft group, as the `cairn` node uses it.
//!
//! It opens the RocksDB stores, runs openraft over the gRPC transport, bootstraps the group on
//! first start, keeps configured learners in the membership, and offers the node the four things
//! it needs: the locally applied state (hot path, no round trip), writes that go to the leader
//! from any node, linearizable reads (read index), and membership changes.
//!
//! Bootstrap: when the Raft storage is empty, the lowest-id configured voter waits until every
//! configured voter answers a status probe, then calls `initialize` with the voters (unless one
//! of them already belongs to a group); the other nodes wait to be contacted. From then on the persisted membership is the truth and the
//! configured member list is not consulted again, except that the leader adds configured
//! non-voters that are missing from the membership as learners.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::db::{open_stores_watched, DbClosed};
use super::error::{ControlPlaneError, ProposeError};
use super::network::{NetworkFactory, PeerClient};
use super::route::{Shared, Timing};
use super::service::{RaftGrpcServer, RaftService};
use super::state_machine::{StateMachineClosed, StateReader};
use super::types::{NodeId, Raft, RaftMetrics};
use super::wire::{Attempt, ControlPlaneStatus, LeaderOp, LeaderReply};
use crate::command::Command;
use crate::state::SiteState;
use crate::transport::Transport;

/// How a node joins its site's control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// This node's id; must be a key of `members`.
    pub node_id: NodeId,
    /// The RocksDB directory of the Raft log and state machine.
    pub dir: PathBuf,
    /// Every node of the site: id -> gRPC endpoint `HOST:PORT`. Used to bootstrap only.
    pub members: BTreeMap<NodeId, String>,
    /// The initial voters (3 or 5 for a real site, 1 for a single node); the other members join
    /// as learners.
    pub voters: BTreeSet<NodeId>,
    /// Leader heartbeat period. It is also openraft's timeout for one AppendEntries call, so it
    /// must cover a follower's fsync.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time in `[min, max)` starts an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Upper bound for `propose` and `read_linearizable` (including forwarding to the leader and
    /// waiting for the local apply).
    pub propose_timeout: Duration,
    /// Upper bound for a membership change, including a new learner catching up before it is
    /// promoted.
    pub membership_timeout: Duration,
    /// Build a snapshot every this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept in the log after a snapshot (lagging followers catch up from them instead of
    /// receiving the whole snapshot); older ones are purged.
    pub logs_kept_after_snapshot: u64,
}

impl ControlPlaneConfig {
    /// A configuration with the default timings.
    pub fn new(
        node_id: NodeId,
        dir: impl Into<PathBuf>,
        members: BTreeMap<NodeId, String>,
        voters: BTreeSet<NodeId>,
    ) -> Self {
        Self {
            node_id,
            dir: dir.into(),
            members,
            voters,
            heartbeat_ms: 100,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            propose_timeout: Duration::from_secs(5),
            membership_timeout: Duration::from_secs(60),
            snapshot_every: 5000,
            logs_kept_after_snapshot: 1000,
        }
    }

    /// A site of one node (the default `cairn server ./data`).
    pub fn single(node_id: NodeId, dir: impl Into<PathBuf>, addr: impl Into<String>) -> Self {
        Self::new(
            node_id,
            dir,
            BTreeMap::from([(node_id, addr.into())]),
            BTreeSet::from([node_id]),
        )
    }

    fn validate(&self) -> Result<(), ControlPlaneError> {
        let bad = |m: String| Err(ControlPlaneError::Config(m));
        if !self.members.contains_key(&self.node_id) {
            return bad(format!("node {} is not in the member list", self.node_id));
        }
        if self.voters.is_empty() {
            return bad("no voters".into());
        }
        if let Some(v) = self.voters.iter().find(|v| !self.members.contains_key(v)) {
            return bad(format!("voter {v} is not in the member list"));
        }
        if let Some((id, _)) = self.members.iter().find(|(_, a)| a.is_empty()) {
            return bad(format!("member {id} has no address"));
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms
            || self.election_timeout_max_ms <= self.election_timeout_min_ms
        {
            return bad("need heartbeat < election timeout min < election timeout max".into());
        }
        if self.propose_timeout.is_zero() || self.membership_timeout.is_zero() {
            return bad("timeouts must be positive".into());
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, ControlPlaneError> {
        let config = openraft::Config {
            cluster_name: "cairn-site".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            // Per snapshot chunk: a chunk is written and synced on the receiver.
            install_snapshot_timeout: self.election_timeout_max_ms.max(1000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // openraft replicates a snapshot to followers further behind than this; it must
            // exceed the snapshot period or a lagging follower could never catch up.
            replication_lag_threshold: self.snapshot_every.max(1) * 2,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ControlPlaneError::Config(e.to_string()))
    }

    fn timing(&self) -> Timing {
        let election_max = Duration::from_millis(self.election_timeout_max_ms);
        let heartbeat = Duration::from_millis(self.heartbeat_ms);
        Timing {
            propose_timeout: self.propose_timeout,
            membership_timeout: self.membership_timeout,
            // Two full election rounds without a leader: the site has no quorum, not a hiccup.
            leader_grace: election_max * 2,
            retry_first: (heartbeat / 2).max(Duration::from_millis(10)),
            retry_max: election_max / 2,
        }
    }
}

/// The control plane of one node. Cheap to clone (a handle).
#[derive(Clone)]
pub struct ControlPlane {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    db: Option<Arc<DbClosed>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// How long `shutdown` waits for openraft's tasks to release the database.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

impl ControlPlane {
    /// Opens the stores in `cfg.dir`, starts Raft and the background tasks (bootstrap, leader
    /// tracking, learners). Serve [`grpc_service`](Self::grpc_service) on the address `members`
    /// gives for this node, or the other nodes cannot reach it.
    pub async fn start(
        cfg: ControlPlaneConfig,
        transport: Transport,
    ) -> Result<Self, ControlPlaneError> {
        cfg.validate()?;
        let (log_store, state_machine, db) = open_stores_watched(&cfg.dir)?;
        let reader = state_machine.reader();
        Self::start_with_stores(cfg, log_store, state_machine, reader, transport, Some(db)).await
    }

    /// Starts Raft on handed-in stores (the simulator's in-memory ones; `start` passes RocksDB's).
    /// `reader` must observe `state_machine`; `closed`, when given, is awaited by `shutdown`.
    pub async fn start_with_stores<LS, SM>(
        cfg: ControlPlaneConfig,
        log_store: LS,
        state_machine: SM,
        reader: StateReader,
        transport: Transport,
        closed: Option<DbClosed>,
    ) -> Result<Self, ControlPlaneError>
    where
        LS: openraft::storage::RaftLogStorage<super::types::TypeConfig>,
        SM: openraft::storage::RaftStateMachine<super::types::TypeConfig>,
    {
        cfg.validate()?;
        let config = Arc::new(cfg.raft_config()?);
        let network = NetworkFactory::new(cfg.node_id, transport.clone());
        let raft = Raft::new(cfg.node_id, config, network, log_store, state_machine)
            .await
            .map_err(|e| ControlPlaneError::Raft(e.to_string()))?;
        let initialized = match raft.is_initialized().await {
            Ok(initialized) => initialized,
            Err(e) => {
                // Release the stores so that a retry can open the directory again.
                let _ = raft.shutdown().await;
                return Err(ControlPlaneError::Raft(e.to_string()));
            }
        };
        let shared = Shared::new(cfg.node_id, raft, reader, transport, cfg.timing());

        let mut tasks = vec![tokio::spawn(track_leader(Arc::clone(&shared)))];
        let lowest_voter = cfg.voters.first() == Some(&cfg.node_id);
        if !initialized && lowest_voter {
            let voters = cfg
                .voters
                .iter()
                .filter_map(|id| Some((*id, BasicNode::new(cfg.members.get(id)?.clone()))))
                .collect();
            tasks.push(tokio::spawn(bootstrap(Arc::clone(&shared), voters)));
        }
        let learners: BTreeMap<NodeId, String> = cfg
            .members
            .iter()
            .filter(|(id, _)| !cfg.voters.contains(id))
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        if !learners.is_empty() {
            tasks.push(tokio::spawn(add_configured_learners(
                Arc::clone(&shared),
                learners,
            )));
        }
        tracing::info!(
            node = cfg.node_id,
            initialized,
            dir = %cfg.dir.display(),
            "control plane started"
        );
        Ok(Self {
            shared,
            tasks: Arc::new(Mutex::new(tasks)),
            db: closed.map(Arc::new),
        })
    }

    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The `cairn.raft.v1.Raft` gRPC service (token-checked) for the node's tonic server.
    pub fn grpc_service(&self) -> RaftGrpcServer {
        RaftService::new(Arc::clone(&self.shared)).into_server()
    }

    /// The state as applied on this node: no round trip, so it may lag the leader by the
    /// replication delay (the S3 hot path accepts that bound; see the README).
    pub fn state(&self) -> Arc<SiteState> {
        self.shared.reader.state()
    }

    /// A reader of the locally applied state that outlives this handle's borrow.
    pub fn reader(&self) -> StateReader {
        self.shared.reader.clone()
    }

    /// Waits until this node has applied log index `index` (no timeout: wrap it in one).
    pub async fn wait_applied(&self, index: u64) -> Result<Arc<SiteState>, StateMachineClosed> {
        self.shared.reader.wait_applied(index).await
    }

    /// Changes to the locally applied state, as they are applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<SiteState>> {
        self.shared.reader.subscribe()
    }

    /// Commits `cmd` through the leader (forwarded when this node is not the leader) and returns
    /// once it is applied **on this node**, so a read here right after sees it. Fails with
    /// `Rejected` when the state machine refused it, `Unavailable` within `propose_timeout`
    /// otherwise.
    pub async fn propose(&self, cmd: Command) -> Result<(), ProposeError> {
        let r = self.propose_once(cmd).await;
        if matches!(&r, Err(e) if !matches!(e, ProposeError::Rejected(_))) {
            self.shared.proposals_failed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Proposals from this node that did not commit since start-up (refusals by the state
    /// machine not counted).
    pub fn proposals_failed(&self) -> u64 {
        self.shared.proposals_failed.load(Ordering::Relaxed)
    }

    async fn propose_once(&self, cmd: Command) -> Result<(), ProposeError> {
        let deadline = Instant::now() + self.shared.timing.propose_timeout;
        let written = match self
            .shared
            .on_leader(&LeaderOp::Write(Box::new(cmd)), deadline)
            .await?
        {
            LeaderReply::Written(w) => w,
            other => return Err(unexpected(other)),
        };
        self.shared
            .wait_applied_until(written.log_index, deadline)
            .await?;
        written
            .response
            .into_result()
            .map_err(ProposeError::Rejected)
    }

    /// A state that includes every write committed before the call (read index: the leader
    /// confirms it still leads, then this node waits until it has applied up to the leader's
    /// commit index).
    pub async fn read_linearizable(&self) -> Result<Arc<SiteState>, ProposeError> {
        let deadline = Instant::now() + self.shared.timing.propose_timeout;
        let index = match self
            .shared
            .on_leader(&LeaderOp::ReadIndex, deadline)
            .await?
        {
            LeaderReply::ReadIndex(i) => i,
            other => return Err(unexpected(other)),
        };
        self.shared.wait_applied_until(index, deadline).await
    }

    /// This node's view of the group, from its Raft metrics.
    pub fn status(&self) -> ControlPlaneStatus {
        ControlPlaneStatus::from_metrics(&self.shared.raft.metrics().borrow())
    }

    /// Another node's view of the group (its `Status` RPC), within `propose_timeout`.
    pub async fn peer_status(&self, addr: &str) -> Result<ControlPlaneStatus, ProposeError> {
        let client = PeerClient::new(&self.shared.transport, addr)
            .map_err(|f| ProposeError::Unavailable(f.to_string()))?;
        client
            .status(self.shared.timing.propose_timeout)
            .await
            .map_err(|f| ProposeError::Unavailable(f.to_string()))
    }

    /// Adds node `id` (serving Raft at `addr`) as a learner: it receives the log but does not
    /// vote. Returns once the membership entry is committed; the learner catches up meanwhile.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: impl Into<String>,
    ) -> Result<(), ProposeError> {
        let op = LeaderOp::AddLearner {
            id,
            addr: addr.into(),
            blocking: false,
        };
        self.membership(op).await
    }

    /// Makes node `id` a voter without downtime: added as a learner first (if it is not one), it
    /// is promoted once it has caught up, so the quorum never waits for a node that is behind.
    pub async fn add_voter(&self, id: NodeId, addr: impl Into<String>) -> Result<(), ProposeError> {
        let learner = LeaderOp::AddLearner {
            id,
            addr: addr.into(),
            blocking: true,
        };
        self.membership(learner).await?;
        self.membership(LeaderOp::ChangeMembership {
            changes: ChangeMembers::AddVoterIds(BTreeSet::from([id])),
            retain: true,
        })
        .await
    }

    /// Removes voter `id` from the group (through a joint configuration, so the site keeps a
    /// quorum throughout). The node stops receiving the log; it is not kept as a learner.
    pub async fn remove_voter(&self, id: NodeId) -> Result<(), ProposeError> {
        self.membership(LeaderOp::ChangeMembership {
            changes: ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            retain: false,
        })
        .await
    }

    async fn membership(&self, op: LeaderOp) -> Result<(), ProposeError> {
        let deadline = Instant::now() + self.shared.timing.membership_timeout;
        match self.shared.on_leader(&op, deadline).await? {
            LeaderReply::Membership(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// openraft's metrics of this node (tests and the admin API wait on them).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.shared.raft.metrics()
    }

    /// The underlying openraft handle, for what this type does not wrap (e.g. `raft().wait(..)`).
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// Stops the background tasks and Raft, then waits (bounded) until the RocksDB directory is
    /// released, so the same process may start the node again from `dir`. Requests still in
    /// flight fail with `ShutDown` or `Unavailable`. Stop serving `grpc_service` as well.
    pub async fn shutdown(&self) {
        self.shared.stop();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        if let Err(e) = self.shared.raft.shutdown().await {
            tracing::warn!(node = self.shared.id, error = %e, "raft did not stop cleanly");
        }
        let Some(db) = &self.db else {
            tracing::info!(node = self.shared.id, "control plane stopped");
            return;
        };
        if tokio::time::timeout(CLOSE_WAIT, db.wait()).await.is_err() {
            tracing::warn!(
                node = self.shared.id,
                "raft stores still open {CLOSE_WAIT:?} after shutdown"
            );
        }
        tracing::info!(node = self.shared.id, "control plane stopped");
    }
}

fn unexpected(reply: LeaderReply) -> ProposeError {
    ProposeError::Unavailable(format!("unexpected reply from the leader: {reply:?}"))
}

/// Keeps [`Shared`] informed of whether a leader is known, for the fail-fast rule.
async fn track_leader(shared: Arc<Shared>) {
    let mut rx = shared.raft.metrics();
    loop {
        let known = rx.borrow_and_update().current_leader.is_some();
        shared.note_leader(known);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// First start of a site: once every voter answers, the lowest-id voter initializes the group.
/// Stops when the group is initialized (by us or, e.g. after a restart race, by a leader that
/// contacted us) or on shutdown (the task is aborted).
async fn bootstrap(shared: Arc<Shared>, voters: BTreeMap<NodeId, BasicNode>) {
    const FIRST_PAUSE: Duration = Duration::from_millis(100);
    const MAX_PAUSE: Duration = Duration::from_secs(2);
    const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
    let mut pause = FIRST_PAUSE;
    loop {
        match shared.raft.is_initialized().await {
            Ok(false) => {}
            Ok(true) | Err(_) => return,
        }
        let mut silent = Vec::new();
        for (id, node) in voters.iter().filter(|(id, _)| **id != shared.id) {
            let status = match PeerClient::new(&shared.transport, &node.addr) {
                Ok(client) => client.status(PROBE_TIMEOUT).await.ok(),
                Err(_) => None,
            };
            match status {
                // A voter already belongs to a group (our directory was lost, or the group was
                // formed without us): initializing would start a second one. Wait to be contacted.
                Some(s) if s.initialized => {
                    tracing::warn!(
                        node = shared.id,
                        peer = id,
                        "bootstrap: the site already has a Raft group; waiting to be added"
                    );
                    return;
                }
                Some(_) => {}
                None => silent.push(*id),
            }
        }
        if silent.is_empty() {
            match shared.raft.initialize(voters.clone()).await {
                Ok(()) => {
                    tracing::info!(node = shared.id, voters = ?voters.keys(), "site control plane bootstrapped");
                    return;
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
                Err(e) => {
                    tracing::warn!(node = shared.id, error = %e, "bootstrap failed, retrying")
                }
            }
        } else {
            tracing::info!(node = shared.id, waiting_for = ?silent, "bootstrap: waiting for voters");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// On the leader, adds configured non-voters that the membership lacks as learners.
async fn add_configured_learners(shared: Arc<Shared>, learners: BTreeMap<NodeId, String>) {
    let mut rx = shared.raft.metrics();
    loop {
        let missing: Vec<(NodeId, String)> = {
            let m = rx.borrow_and_update();
            if m.state == ServerState::Leader {
                let membership = m.membership_config.membership();
                learners
                    .iter()
                    .filter(|(id, _)| membership.get_node(id).is_none())
                    .map(|(id, addr)| (*id, addr.clone()))
                    .collect()
            } else {
                Vec::new()
            }
        };
        for (id, addr) in missing {
            let deadline = Instant::now() + shared.timing.membership_timeout;
            let op = LeaderOp::AddLearner {
                id,
                addr,
                blocking: false,
            };
            match shared.run_local(&op, deadline).await {
                Attempt::Done(_) => {
                    tracing::info!(node = shared.id, learner = id, "added configured learner")
                }
                refused => {
                    tracing::debug!(
                        node = shared.id,
                        learner = id,
                        ?refused,
                        "cannot add learner yet"
                    );
                    tokio::time::sleep(shared.timing.retry_max).await;
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
