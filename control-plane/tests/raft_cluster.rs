//! Whole control-plane sites in one process: real gRPC on 127.0.0.1 (ephemeral ports), RocksDB in
//! temporary directories. Nodes are stopped (Raft shut down, gRPC server stopped) and restarted
//! from the same directory and port. Nothing sleeps to synchronise: tests wait on Raft metrics or
//! poll a condition until a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use cairn_control_plane::raft::{ControlPlane, ControlPlaneConfig, NodeId, Role};
use cairn_control_plane::transport::Transport;
use cairn_control_plane::{Command, CommandError, ProposeError, SiteState};
use cairn_proto::raft as pb;
use cairn_proto::raft::raft_client::RaftClient;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

const TOKEN: &str = "site-secret";
/// Generous: two CPUs are shared with the compiler and other test binaries.
const WAIT: Duration = Duration::from_secs(30);
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn create(name: &str) -> Command {
    Command::CreateBucket {
        name: name.into(),
        created_ns: 1,
        object_lock: false,
    }
}

/// Polls `cond` every 20 ms until it holds; fails the test after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bind(addr: &str) -> TcpListener {
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            // The port of a node that just stopped can take a moment to be released.
            Err(e) if Instant::now() < deadline => {
                eprintln!("bind {addr}: {e}, retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

/// A node that runs: its control plane and the gRPC server serving it.
struct Running {
    cp: ControlPlane,
    stop_server: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    async fn stop(self) {
        self.cp.shutdown().await;
        let _ = self.stop_server.send(());
        match tokio::time::timeout(WAIT, self.server).await {
            Ok(res) => res.expect("server task").expect("server"),
            Err(_) => panic!("gRPC server did not stop"),
        }
    }
}

/// A site under test: fixed ids, addresses and directories; nodes come and go.
struct Site {
    members: BTreeMap<NodeId, String>,
    voters: BTreeSet<NodeId>,
    dirs: BTreeMap<NodeId, TempDir>,
    /// Listeners bound before the members are known, handed to the first start of each node.
    listeners: BTreeMap<NodeId, TcpListener>,
    nodes: BTreeMap<NodeId, Running>,
    tune: fn(&mut ControlPlaneConfig),
}

impl Site {
    /// Binds a port for each of `ids`; the first `voters` ids are the voters.
    async fn new(ids: &[NodeId], voters: usize) -> Self {
        let mut members = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        for id in ids {
            let l = bind("127.0.0.1:0").await;
            members.insert(*id, l.local_addr().unwrap().to_string());
            listeners.insert(*id, l);
            dirs.insert(*id, tempfile::tempdir().unwrap());
        }
        Self {
            members,
            voters: ids.iter().take(voters).copied().collect(),
            dirs,
            listeners,
            nodes: BTreeMap::new(),
            tune: |_| {},
        }
    }

    fn config(&self, id: NodeId) -> ControlPlaneConfig {
        let mut cfg = ControlPlaneConfig::new(
            id,
            self.dirs[&id].path(),
            self.members.clone(),
            self.voters.clone(),
        );
        cfg.heartbeat_ms = 100;
        cfg.election_timeout_min_ms = 500;
        cfg.election_timeout_max_ms = 1000;
        cfg.propose_timeout = PROPOSE_TIMEOUT;
        cfg.membership_timeout = WAIT;
        (self.tune)(&mut cfg);
        cfg
    }

    async fn start_with(&mut self, id: NodeId, cfg: ControlPlaneConfig, token: &str) {
        let listener = match self.listeners.remove(&id) {
            Some(l) => l,
            None => bind(&self.members[&id]).await,
        };
        let transport = Transport::tcp(token).unwrap();
        let cp = ControlPlane::start(cfg, transport).await.unwrap();
        let (stop_server, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder()
                .add_service(cp.grpc_service())
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        self.nodes.insert(
            id,
            Running {
                cp,
                stop_server,
                server,
            },
        );
    }

    async fn start(&mut self, id: NodeId) {
        let cfg = self.config(id);
        self.start_with(id, cfg, TOKEN).await;
    }

    async fn start_all(&mut self) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            self.start(id).await;
        }
    }

    async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("node is running");
        node.stop().await;
    }

    fn cp(&self, id: NodeId) -> &ControlPlane {
        &self.nodes[&id].cp
    }

    /// Waits until every running node names the same leader, which is running; returns it.
    async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: BTreeSet<Option<NodeId>> =
                self.nodes.values().map(|n| n.cp.status().leader).collect();
            if let [Some(l)] = leaders.iter().copied().collect::<Vec<_>>()[..] {
                if self
                    .nodes
                    .get(&l)
                    .is_some_and(|n| n.cp.status().role == Role::Leader)
                {
                    return l;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn follower(&self, leader: NodeId) -> NodeId {
        *self
            .nodes
            .keys()
            .find(|id| **id != leader)
            .expect("a follower is running")
    }

    async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

async fn has_bucket(cp: &ControlPlane, name: &str) -> bool {
    cp.state().bucket(name).is_some()
}

async fn wait_bucket(cp: &ControlPlane, name: &str) {
    let what = format!("bucket {name} on node {}", cp.id());
    eventually(&what, || has_bucket(cp, name)).await;
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_bootstrap_and_elect_a_leader() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3], 3).await;
    site.start_all().await;
    let leader = site.leader().await;
    for id in [1, 2, 3] {
        let status = site.cp(id).status();
        assert!(status.initialized, "node {id}: {status:?}");
        assert_eq!(status.leader, Some(leader));
        assert_eq!(status.voters, BTreeSet::from([1, 2, 3]));
        assert!(status.learners.is_empty());
        assert_eq!(status.members, site.members);
    }
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_proposal_is_forwarded_and_visible_on_all_nodes() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3], 3).await;
    site.start_all().await;
    let leader = site.leader().await;
    let follower = site.follower(leader);

    site.cp(follower).propose(create("fwd")).await.unwrap();
    // Applied on the proposing node before propose returned.
    assert!(site.cp(follower).state().bucket("fwd").is_some());
    for id in [1, 2, 3] {
        wait_bucket(site.cp(id), "fwd").await;
    }
    // The state machine's refusal travels back through the forward.
    assert_eq!(
        site.cp(follower).propose(create("fwd")).await,
        Err(ProposeError::Rejected(CommandError::BucketExists(
            "fwd".into()
        )))
    );
    assert_eq!(
        site.cp(leader)
            .propose(Command::DeleteBucket {
                name: "missing".into()
            })
            .await,
        Err(ProposeError::Rejected(CommandError::NoSuchBucket(
            "missing".into()
        )))
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_read_on_a_follower_sees_a_write_made_on_the_leader() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3], 3).await;
    site.start_all().await;
    let leader = site.leader().await;
    for i in 0..5 {
        let name = format!("lin-{i}");
        site.cp(leader).propose(create(&name)).await.unwrap();
        for follower in [1, 2, 3].into_iter().filter(|id| *id != leader) {
            let state = site.cp(follower).read_linearizable().await.unwrap();
            assert!(
                state.bucket(&name).is_some(),
                "node {follower} missed {name}"
            );
        }
    }
    let state = site.cp(leader).read_linearizable().await.unwrap();
    assert_eq!(state.buckets.len(), 5);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_then_the_old_leader_catches_up() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3], 3).await;
    site.start_all().await;
    let old = site.leader().await;
    site.cp(old).propose(create("before")).await.unwrap();

    site.stop(old).await;
    let new = site.leader().await;
    assert_ne!(new, old);
    let follower = site.follower(new);
    site.cp(follower).propose(create("during")).await.unwrap();
    site.cp(new).propose(create("during-2")).await.unwrap();

    site.start(old).await;
    for name in ["before", "during", "during-2"] {
        wait_bucket(site.cp(old), name).await;
    }
    let leader = site.leader().await;
    assert_eq!(site.cp(old).status().leader, Some(leader));
    // The restarted node forwards like any follower (or leads again).
    site.cp(old).propose(create("after")).await.unwrap();
    for id in [1, 2, 3] {
        wait_bucket(site.cp(id), "after").await;
    }
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_and_membership_survive_a_full_restart() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3], 3).await;
    site.start_all().await;
    let leader = site.leader().await;
    site.cp(leader).propose(create("kept")).await.unwrap();
    for id in [1, 2, 3] {
        wait_bucket(site.cp(id), "kept").await;
    }
    for id in [1, 2, 3] {
        site.stop(id).await;
    }

    site.start_all().await;
    let leader = site.leader().await;
    for id in [1, 2, 3] {
        let cp = site.cp(id);
        assert!(cp.state().bucket("kept").is_some(), "node {id} lost state");
        let status = cp.status();
        assert_eq!(status.voters, BTreeSet::from([1, 2, 3]));
        assert_eq!(status.members, site.members);
    }
    let follower = site.follower(leader);
    site.cp(follower).propose(create("again")).await.unwrap();
    let state = site.cp(leader).read_linearizable().await.unwrap();
    assert!(state.bucket("kept").is_some() && state.bucket("again").is_some());
    site.shutdown().await;
}

/// `propose` and `read_linearizable` answer `Unavailable` within the timeout when the survivor
/// is a follower (no leader) and when it is the leader (no quorum).
/// The lowest voter restarts with an empty directory: it must not bootstrap a second group
/// (its peers report one), but be caught up by the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lowest_voter_that_lost_its_directory_rejoins_instead_of_bootstrapping() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3], 3).await;
    site.start_all().await;
    let leader = site.leader().await;
    site.cp(leader).propose(create("old")).await.unwrap();
    site.stop(1).await;
    site.dirs.insert(1, tempfile::tempdir().unwrap());
    let leader = site.leader().await;
    site.cp(leader).propose(create("newer")).await.unwrap();

    site.start(1).await;
    for name in ["old", "newer"] {
        wait_bucket(site.cp(1), name).await;
    }
    let leader = site.leader().await;
    let term = site.cp(leader).status().term;
    for id in [1, 2, 3] {
        let status = site.cp(id).status();
        assert_eq!((status.leader, status.term), (Some(leader), term));
        assert_eq!(status.voters, BTreeSet::from([1, 2, 3]));
    }
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_requests_fail_unavailable_within_the_timeout() {
    init_tracing();
    let slack = Duration::from_secs(3);
    for survivor_leads in [false, true] {
        let mut site = Site::new(&[1, 2, 3], 3).await;
        site.start_all().await;
        let leader = site.leader().await;
        site.cp(leader).propose(create("one")).await.unwrap();
        let survivor = if survivor_leads {
            leader
        } else {
            site.follower(leader)
        };
        for id in [1, 2, 3].into_iter().filter(|id| *id != survivor) {
            site.stop(id).await;
        }
        let cp = site.cp(survivor).clone();

        let started = Instant::now();
        let res = cp.propose(create("lost")).await;
        assert!(
            matches!(res, Err(ProposeError::Unavailable(_))),
            "survivor leads: {survivor_leads}: {res:?}"
        );
        assert!(started.elapsed() <= PROPOSE_TIMEOUT + slack);

        let started = Instant::now();
        let res = cp.read_linearizable().await;
        assert!(
            matches!(res, Err(ProposeError::Unavailable(_))),
            "survivor leads: {survivor_leads}: {res:?}"
        );
        assert!(started.elapsed() <= PROPOSE_TIMEOUT + slack);
        // The local state is still there for the hot path.
        assert!(cp.state().bucket("one").is_some());
        site.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_without_the_site_token_are_refused() {
    init_tracing();
    let mut site = Site::new(&[1], 1).await;
    site.start(1).await;
    site.leader().await;
    let addr = site.members[&1].clone();

    let intruder = Transport::tcp("another-site").unwrap();
    let mut client = RaftClient::new(intruder.channel(&addr).unwrap());
    let codes = [
        client
            .status(intruder.request(pb::StatusRequest {}))
            .await
            .map(drop),
        client
            .vote(intruder.request(pb::RaftRequest { payload: vec![] }))
            .await
            .map(drop),
        client
            .append_entries(intruder.request(pb::RaftRequest { payload: vec![] }))
            .await
            .map(drop),
        client
            .forward(intruder.request(pb::ForwardRequest {
                command: serde_json::to_vec(&create("intruder")).unwrap(),
            }))
            .await
            .map(drop),
        client
            .change_membership(tonic::Request::new(pb::ChangeMembershipRequest {
                changes: vec![],
                retain: false,
            }))
            .await
            .map(drop),
        client
            .read_index(tonic::Request::new(pb::ReadIndexRequest {}))
            .await
            .map(drop),
    ];
    for res in codes {
        assert_eq!(
            res.expect_err("refused").code(),
            tonic::Code::Unauthenticated
        );
    }
    assert!(site.cp(1).state().bucket("intruder").is_none());

    // A node configured with the wrong token cannot talk to the site either.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = ControlPlane::start(
        ControlPlaneConfig::single(9, stranger_dir.path(), "127.0.0.1:1"),
        Transport::tcp("another-site").unwrap(),
    )
    .await
    .unwrap();
    assert!(matches!(
        stranger.peer_status(&addr).await,
        Err(ProposeError::Unavailable(_))
    ));
    stranger.shutdown().await;
    // The site's own token works.
    assert_eq!(site.cp(1).peer_status(&addr).await.unwrap().node_id, 1);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_a_learner_promote_it_then_remove_a_voter() {
    init_tracing();
    // Node 4 is a member (it knows the site) but not a voter; the others do not list it, so
    // nobody adds it automatically.
    let mut site = Site::new(&[1, 2, 3, 4], 3).await;
    let without_4: BTreeMap<NodeId, String> = site
        .members
        .range(1..=3)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    for id in [1, 2, 3] {
        let mut cfg = site.config(id);
        cfg.members = without_4.clone();
        site.start_with(id, cfg, TOKEN).await;
    }
    let leader = site.leader().await;
    site.cp(leader).propose(create("early")).await.unwrap();
    site.start(4).await;
    assert!(!site.cp(4).status().initialized);

    // Added through a follower: forwarded to the leader.
    let follower = site.follower(leader);
    let addr4 = site.members[&4].clone();
    site.cp(follower)
        .add_learner(4, addr4.clone())
        .await
        .unwrap();
    wait_bucket(site.cp(4), "early").await;
    let status = site.cp(leader).status();
    assert_eq!(status.learners, BTreeSet::from([4]));
    assert_eq!(site.cp(4).status().role, Role::Learner);

    site.cp(follower).add_voter(4, addr4).await.unwrap();
    eventually("node 4 a voter everywhere", || async {
        site.nodes
            .values()
            .all(|n| n.cp.status().voters == BTreeSet::from([1, 2, 3, 4]))
    })
    .await;

    let removed = if leader == 2 { 3 } else { 2 };
    site.cp(4).remove_voter(removed).await.unwrap();
    let leader = site.leader().await;
    eventually(
        "removed voter gone from the leader's membership",
        || async {
            let s = site.cp(leader).status();
            s.voters == BTreeSet::from_iter([1, 2, 3, 4].into_iter().filter(|id| *id != removed))
                && !s.members.contains_key(&removed)
        },
    )
    .await;
    site.stop(removed).await;

    let leader = site.leader().await;
    site.cp(4).propose(create("late")).await.unwrap();
    for id in site.nodes.keys() {
        wait_bucket(site.cp(*id), "late").await;
    }
    assert!(site
        .cp(leader)
        .read_linearizable()
        .await
        .unwrap()
        .bucket("late")
        .is_some());
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configured_non_voters_join_as_learners() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3, 4], 3).await;
    site.start_all().await;
    let leader = site.leader().await;
    eventually("node 4 added as a learner", || async {
        site.cp(leader).status().learners == BTreeSet::from([4])
    })
    .await;
    site.cp(4).propose(create("from-learner")).await.unwrap();
    for id in [1, 2, 3, 4] {
        wait_bucket(site.cp(id), "from-learner").await;
    }
    assert_eq!(site.cp(4).status().role, Role::Learner);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_site_bootstraps_and_accepts_writes() {
    init_tracing();
    let mut site = Site::new(&[1], 1).await;
    let cfg = ControlPlaneConfig::single(1, site.dirs[&1].path(), site.members[&1].clone());
    site.start_with(1, cfg.clone(), TOKEN).await;
    site.cp(1)
        .raft()
        .wait(Some(WAIT))
        .state(openraft::ServerState::Leader, "single node leads")
        .await
        .unwrap();
    site.cp(1).propose(create("solo")).await.unwrap();
    assert!(site
        .cp(1)
        .read_linearizable()
        .await
        .unwrap()
        .bucket("solo")
        .is_some());

    site.stop(1).await;
    site.start_with(1, cfg, TOKEN).await;
    assert!(site.cp(1).state().bucket("solo").is_some());
    site.cp(1).propose(create("solo-2")).await.unwrap();
    let status = site.cp(1).status();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.voters, BTreeSet::from([1]));
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_far_behind_catches_up_from_a_snapshot() {
    init_tracing();
    let mut site = Site::new(&[1, 2, 3], 3).await;
    site.tune = |cfg| {
        cfg.snapshot_every = 10;
        cfg.logs_kept_after_snapshot = 0;
    };
    site.start_all().await;
    let leader = site.leader().await;
    let lagging = site.follower(leader);
    site.cp(leader).propose(create("b-0")).await.unwrap();
    wait_bucket(site.cp(lagging), "b-0").await;
    let lagging_last = site.cp(lagging).status().last_log_index.unwrap_or(0);
    site.stop(lagging).await;

    for i in 1..40 {
        site.cp(leader)
            .propose(create(&format!("b-{i}")))
            .await
            .unwrap();
    }
    // The leader no longer has the entries the stopped node misses.
    site.cp(leader)
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > lagging_last + 1),
            "leader purged the log past the lagging node",
        )
        .await
        .unwrap();

    site.start(lagging).await;
    eventually("lagging node has every bucket", || async {
        let state: std::sync::Arc<SiteState> = site.cp(lagging).state();
        (0..40).all(|i| state.bucket(&format!("b-{i}")).is_some())
    })
    .await;
    let status = site.cp(lagging).status();
    assert!(
        status.snapshot_index.is_some_and(|i| i > lagging_last),
        "{status:?}"
    );
    site.shutdown().await;
}
