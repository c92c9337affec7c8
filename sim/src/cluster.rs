//! One simulated site: three nodes of two in-memory drives each, whose media outlive crashes.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_control_plane::raft::{
    open_memory_stores, ControlPlane, ControlPlaneConfig, MemoryRaftDisk,
};
use cairn_control_plane::transport::Transport;
use cairn_node::auth::RootCredentials;
use cairn_node::clock::{Clock, SharedClock};
use cairn_node::drive::remote::RemoteDrive;
use cairn_node::drive::Drive;
use cairn_node::erasure::layout::Layout;
use cairn_node::rng::RngStreams;
use cairn_node::server::node::internode_router;
use cairn_node::server::{Node, NodeParts};
use cairn_node::topology::Topology;
use cairn_storage::drive::memory::{MemoryDisk, MemoryDrive};

use crate::net;

pub const NODES: usize = 3;
pub const DRIVES_PER_NODE: usize = 2;
pub const PARITY: usize = 2;
pub const S3_PORT: u16 = 9000;
pub const ACCESS_KEY: &str = "simadmin";
pub const SECRET_KEY: &str = "simadmin-secret";
pub const REGION: &str = "us-east-1";
const TOKEN: &str = "sim-internode-token";
/// 2026-01-01T00:00:00Z: the simulated wall clock starts here, whatever the host's clock says.
pub const EPOCH_NS: i64 = 1_767_225_600_000_000_000;

pub fn host_name(i: usize) -> String {
    format!("node{}", i + 1)
}

/// Wall-clock time on simulated time: a fixed epoch, turmoil's elapsed time and a per-node skew
/// the fault schedule moves (clock jumps).
pub struct SimClock {
    pub skew_ns: Arc<AtomicI64>,
}

impl Clock for SimClock {
    fn now_ns(&self) -> i64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        let elapsed = i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX / 2);
        EPOCH_NS + elapsed + self.skew_ns.load(Ordering::Relaxed)
    }
}

/// What survives a node's process: its media and its clock skew; plus handles to the running
/// process for the checker.
pub struct NodeState {
    pub index: usize,
    /// Prefix of the site's host names (`""` for the single-site run, `a-`, `b-` for two sites).
    pub site: String,
    pub disks: Vec<MemoryDisk>,
    pub raft: MemoryRaftDisk,
    pub skew_ns: Arc<AtomicI64>,
    /// Incremented on each start; the first start is a fresh node, later ones are restarts.
    pub starts: RefCell<u64>,
    pub control: RefCell<Option<Arc<ControlPlane>>>,
    pub node: RefCell<Option<Arc<Node>>>,
    /// The node's random streams (one set per start: `start/N`), under the run's root seed.
    pub streams: RngStreams,
    /// Planted bug: half the node's connections to the peer site reach a liar (`net::SimDial`).
    pub lying_peer: Cell<bool>,
}

pub type Site = Rc<Vec<Rc<NodeState>>>;

impl NodeState {
    pub fn host(&self) -> String {
        format!("{}{}", self.site, host_name(self.index))
    }

    /// Crashes the node's host: unsynced writes of its drives and Raft storage are lost.
    pub fn crash(&self, sim: &mut turmoil::Sim<'_>) {
        for d in &self.disks {
            d.crash();
        }
        self.raft.crash();
        sim.crash(self.host());
        *self.control.borrow_mut() = None;
        *self.node.borrow_mut() = None;
    }
}

pub fn new_site(streams: &RngStreams) -> Site {
    new_named_site(streams, "")
}

/// A site whose hosts are `{prefix}node1`...; each node's streams are the run's under its host
/// name.
pub fn new_named_site(streams: &RngStreams, prefix: &str) -> Site {
    Rc::new(
        (0..NODES)
            .map(|i| {
                Rc::new(NodeState {
                    index: i,
                    site: prefix.to_string(),
                    disks: (0..DRIVES_PER_NODE).map(|_| MemoryDisk::new()).collect(),
                    raft: MemoryRaftDisk::new(),
                    skew_ns: Arc::new(AtomicI64::new(0)),
                    starts: RefCell::new(0),
                    control: RefCell::new(None),
                    node: RefCell::new(None),
                    streams: streams.sub(&format!("{prefix}{}", host_name(i))),
                    lying_peer: Cell::new(false),
                })
            })
            .collect(),
    )
}

fn topology(state: &NodeState) -> anyhow::Result<Topology> {
    let site = &state.site;
    Ok(Topology::parse(
        &[format!(
            "http://{site}node{{1...{NODES}}}:{S3_PORT}/d{{1...{DRIVES_PER_NODE}}}"
        )],
        &format!("{}:{S3_PORT}", state.host()),
        10000,
    )?)
}

/// Raft timings a little shorter than production's, so elections settle in simulated seconds.
fn control_config(topology: &Topology) -> ControlPlaneConfig {
    let mut cfg = ControlPlaneConfig::new(
        topology.local_id(),
        "/sim/raft",
        topology.members(),
        topology.voters(),
    );
    cfg.heartbeat_ms = 100;
    cfg.election_timeout_min_ms = 400;
    cfg.election_timeout_max_ms = 800;
    cfg.propose_timeout = Duration::from_secs(3);
    cfg.membership_timeout = Duration::from_secs(10);
    cfg.snapshot_every = 50;
    cfg.logs_kept_after_snapshot = 20;
    cfg
}

/// The body of a node host: runs from a (re)start until turmoil crashes it.
pub async fn run_node(state: Rc<NodeState>) -> turmoil::Result {
    let starts = {
        let mut s = state.starts.borrow_mut();
        *s += 1;
        *s
    };
    let restart = starts > 1;
    let topology = topology(&state)?;
    let transport = Transport::new(net::connect(), TOKEN)?;
    let (log, sm) = open_memory_stores(&state.raft)?;
    let reader = sm.reader();
    let control = Arc::new(
        ControlPlane::start_with_stores(
            control_config(&topology),
            log,
            sm,
            reader,
            transport.clone(),
            None,
        )
        .await?,
    );
    *state.control.borrow_mut() = Some(control.clone());

    let clock: SharedClock = Arc::new(SimClock {
        skew_ns: state.skew_ns.clone(),
    });
    let mut local: BTreeMap<u32, Arc<dyn Drive>> = BTreeMap::new();
    for (n, (i, _)) in topology.local_drives().enumerate() {
        let disk = state.disks[n].clone();
        local.insert(
            i as u32,
            Arc::new(MemoryDrive::new(disk, topology.label(i))),
        );
    }
    let site_drives: Vec<Arc<dyn Drive>> = (0..topology.drives.len())
        .map(|i| match local.get(&(i as u32)) {
            Some(d) => d.clone(),
            None => {
                let owner = &topology.nodes[topology.drives[i].node];
                Arc::new(RemoteDrive::new(
                    transport.clone(),
                    owner.internode.clone(),
                    i as u32,
                    topology.label(i),
                    clock.clone(),
                )) as Arc<dyn Drive>
            }
        })
        .collect();

    let internode = turmoil::net::TcpListener::bind(format!("0.0.0.0:{}", S3_PORT + 10000)).await?;
    let router = internode_router(&control, &transport, local, clock.clone(), None)?;
    tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(net::incoming(internode)).await {
            tracing::error!(error = %e, "internode server stopped");
        }
    });

    let layout = Layout::plan(topology.drives.len(), Some(PARITY))?;
    let deployment_id = topology.derived_deployment_id();
    let (node, router) = Node::start(NodeParts {
        topology,
        drives: site_drives,
        layout,
        deployment_id,
        control,
        credentials: Arc::new(RootCredentials {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
        }),
        clock: clock.clone(),
        rng: Box::new(state.streams.sub(&format!("start/{starts}")).stream("node")),
        region: REGION.into(),
        max_requests: 64,
        max_post_object_size: 32 << 20,
        heal_on_start: restart,
        restore_on_start: false,
        sse: sse_config(&state, starts)?,
        peer_dial: Arc::new(net::SimDial::new(state.lying_peer.get())),
        peer_ca_pem: Vec::new(),
        idp: Default::default(),
        site_secret: zeroize::Zeroizing::new(TOKEN.to_owned()),
        resync_rate: 0,
        lifecycle: Default::default(),
    })
    .await?;
    *state.node.borrow_mut() = Some(node);

    let listener = turmoil::net::TcpListener::bind(format!("0.0.0.0:{S3_PORT}")).await?;
    // The production S3 listener with its production limits (no connection caps, the default
    // idle timeout and minimum body rate), so its caps and timeouts run in every seed.
    let limits = cairn_node::server::listener::ListenerLimits {
        max_connections: 0,
        max_connections_per_address: 0,
        idle_timeout: Duration::from_secs(30),
        min_body_rate: 1024,
    };
    cairn_node::server::listener::serve(
        net::SimListener(listener),
        None,
        router,
        limits,
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// A static KMS (as `CAIRN_KMS_SECRET_KEY` configures one), the same key on every node, drawing
/// its data keys from the node's seeded RNG.
fn sse_config(
    state: &NodeState,
    starts: u64,
) -> anyhow::Result<cairn_node::sse::object::SseConfig> {
    let rng = state.streams.sub(&format!("start/{starts}")).stream("kms");
    let kms = cairn_node::sse::kms::StaticKms::new("sim-key", [0x5c; 32], Box::new(rng))?;
    Ok(cairn_node::sse::object::SseConfig {
        kms: Some(Arc::new(kms)),
        auto_encryption: false,
        master_key: None,
        legacy_root_secret: None,
        // The simulated S3 port is plain HTTP and the at-rest workload uses SSE-C.
        insecure_sse_c: true,
    })
}

/// Control-plane views of the running nodes, for the convergence check.
pub fn control_states(
    site: &Site,
) -> Vec<(usize, Option<Arc<cairn_control_plane::state::SiteState>>)> {
    site.iter()
        .map(|n| (n.index, n.control.borrow().as_ref().map(|c| c.state())))
        .collect()
}

/// The leader the running nodes report, if they agree on one.
pub fn leader(site: &Site) -> Option<usize> {
    let leaders: BTreeSet<u64> = site
        .iter()
        .filter_map(|n| n.control.borrow().as_ref().and_then(|c| c.status().leader))
        .collect();
    let l = leaders.into_iter().next()?;
    site.iter()
        .position(|n| n.control.borrow().as_ref().map(|c| c.id()) == Some(l))
}
