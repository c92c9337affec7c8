//! `GET /cairn/admin/v1/info`: the site as the answering node sees it (nodes and their drives
//! with state and free space, erasure sets against their quorums, the control plane, the
//! replication peers), and `GET info/drives`, the room left on one node's own drives, which the
//! answering node asks every other node for (a node can measure only its own filesystems).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use cairn_control_plane::raft::ControlPlaneStatus;

use crate::node::Node;

/// How long the answering node waits for another node's free space (it is shown as unknown).
const SPACE_TIMEOUT: Duration = Duration::from_secs(2);
/// The path other nodes are asked for their drives' room at.
const DRIVES_PATH: &str = "/cairn/admin/v1/info/drives";

#[derive(Debug, Serialize, Deserialize)]
pub struct DriveInfo {
    /// The drive as logs name it (`http://HOST:PORT/PATH` in a networked site).
    pub endpoint: String,
    /// The node holding it (`HOST:PORT` of its S3 API, as in the endpoint list).
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub path: String,
    pub set: usize,
    pub state: String,
    /// Room on the drive's filesystem; unset when its node did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

/// One erasure set: how many of its drives answer against what reads and writes need.
#[derive(Debug, Serialize, Deserialize)]
pub struct SetInfo {
    pub set: usize,
    pub drives: usize,
    pub online: usize,
    pub read_quorum: usize,
    pub write_quorum: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Info {
    pub sets: usize,
    pub set_size: usize,
    pub parity: usize,
    /// Every node of the site (`HOST:PORT` of its S3 API) and the one that answered.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub answered_by: String,
    pub drives: Vec<DriveInfo>,
    #[serde(default)]
    pub erasure_sets: Vec<SetInfo>,
    pub buckets: usize,
    /// A background full heal (after start-up or a node's return) is running on this node.
    pub healing: bool,
    /// Versions heal removed on this node since start-up because they were lost beyond their
    /// parity (the removal no object lock stops: see `object::retention`).
    pub lost_versions_removed: u64,
    pub control_plane: ControlPlaneStatus,
    /// The site's replication peers, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<super::site::Status>,
}

/// The room left on one of a node's own drives.
#[derive(Debug, Serialize, Deserialize)]
pub struct DriveSpace {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// This node's own drives and the room left on each (drives whose filesystem cannot be read
/// are left out).
pub fn local_space(node: &Node) -> Vec<DriveSpace> {
    node.topology
        .local_drives()
        .filter_map(|(_, ep)| {
            let space = crate::drive::local::space(&ep.path).ok()?;
            Some(DriveSpace {
                path: ep.path.display().to_string(),
                free_bytes: space.free,
                total_bytes: space.total,
            })
        })
        .collect()
}

/// The other node `target`'s drives and their room, or nothing when it does not answer in time.
async fn peer_space(node: &Node, target: &crate::link::PeerTarget) -> Vec<DriveSpace> {
    let req = crate::link::PeerRequest {
        method: "GET",
        path: DRIVES_PATH,
        query: &[],
        headers: &[],
        body: crate::link::empty(),
    };
    match tokio::time::timeout(SPACE_TIMEOUT, node.nodes_link.call(target, req)).await {
        Ok(Ok(body)) => serde_json::from_slice(&body).unwrap_or_default(),
        Ok(Err(e)) => {
            tracing::debug!(peer = %target.name, error = %e, "no drive space from a node");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// The site as this node sees it; other nodes are asked for their drives' room over `https`
/// when `secure` (the caller's own connection was TLS).
pub async fn info(node: &Node, secure: bool) -> Info {
    let topo = &node.topology;
    let size = node.objects.layout.set_size;
    let probes = join_all(
        node.objects
            .sets
            .iter()
            .flat_map(|set| set.drives.iter())
            .map(|d| d.health()),
    )
    .await;
    // Only nodes with a drive that answered are asked: one down or hung costs no wait.
    let answering: std::collections::BTreeSet<&str> = topo
        .drives
        .iter()
        .zip(&probes)
        .filter(|(_, p)| p.is_ok())
        .map(|(ep, _)| topo.nodes[ep.node].s3.as_str())
        .collect();
    let peers: Vec<_> = super::peer_nodes(node, secure)
        .into_iter()
        .filter(|(host, _)| answering.contains(host.as_str()))
        .collect();
    let remote = join_all(peers.iter().map(|(_, t)| peer_space(node, t))).await;
    let mut space: BTreeMap<(String, String), DriveSpace> = BTreeMap::new();
    let here = topo.nodes[topo.local].s3.clone();
    for s in local_space(node) {
        space.insert((here.clone(), s.path.clone()), s);
    }
    for ((host, _), drives) in peers.iter().zip(remote) {
        for s in drives {
            space.insert((host.clone(), s.path.clone()), s);
        }
    }
    let mut drives = Vec::new();
    let mut erasure_sets = Vec::new();
    for (s, set) in node.objects.sets.iter().enumerate() {
        let mut online = 0;
        for (j, d) in set.drives.iter().enumerate() {
            let ok = probes[s * size + j].is_ok();
            online += usize::from(ok);
            let (host, path) = topo
                .drives
                .get(s * size + j)
                .map(|ep| {
                    (
                        topo.nodes[ep.node].s3.clone(),
                        ep.path.display().to_string(),
                    )
                })
                .unwrap_or_default();
            let room = space.get(&(host.clone(), path.clone()));
            drives.push(DriveInfo {
                endpoint: d.label().to_string(),
                node: host,
                path,
                set: s,
                state: if ok { "ok" } else { "offline" }.into(),
                free_bytes: room.map(|r| r.free_bytes),
                total_bytes: room.map(|r| r.total_bytes),
            });
        }
        erasure_sets.push(SetInfo {
            set: s,
            drives: set.drives.len(),
            online,
            read_quorum: set.read_quorum,
            write_quorum: set.write_quorum,
        });
    }
    let l = node.objects.layout;
    let replication = super::site::status(node);
    Info {
        sets: l.sets,
        set_size: l.set_size,
        parity: l.parity,
        nodes: topo.nodes.iter().map(|n| n.s3.clone()).collect(),
        answered_by: here,
        drives,
        erasure_sets,
        buckets: node.catalog.state().buckets.len(),
        healing: node.healing.load(Ordering::SeqCst) > 0,
        lost_versions_removed: node.objects.lost_versions_removed.load(Ordering::Relaxed),
        control_plane: node.catalog.control.status(),
        replication: (!replication.peers.is_empty()).then_some(replication),
    }
}
