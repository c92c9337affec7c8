//! One scrape: the request counters, then the figures read now from the layers that keep them
//! (drives probed, Raft's metrics, the replication contacts, KMS and IAM counters), encoded in a
//! registry built for this scrape only.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::node::Node;

/// A drive that does not answer its health probe within this time counts as offline, so one
/// hung drive cannot make the whole scrape time out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a scrape covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/cairn/metrics/node`: this node's requests, drives, Raft view and peers.
    Node,
    /// `/cairn/metrics`: the same, plus every drive and erasure set of the site as this node
    /// sees them, and the site's bucket count.
    Site,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriveLabels {
    /// The node holding the drive (`HOST:PORT` of its S3 API).
    node: String,
    drive: String,
    set: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetLabel {
    set: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    peer: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    peer: String,
    quantile: &'static str,
}

type GaugeF = Gauge<f64, std::sync::atomic::AtomicU64>;

fn gauge(v: impl TryInto<i64>) -> Gauge {
    let g = Gauge::default();
    g.set(v.try_into().unwrap_or(i64::MAX));
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

impl Metrics {
    /// The OpenMetrics text of one scrape of `node`.
    pub async fn scrape(&self, node: &Node, scope: Scope) -> String {
        let here = node.topology.nodes[node.topology.local].s3.clone();
        let mut r = Registry::with_prefix_and_labels(
            "cairn",
            std::iter::once((Cow::Borrowed("server"), Cow::Owned(here))),
        );
        self.register(&mut r);
        drives(node, scope, &mut r).await;
        raft(node, &mut r);
        peers(node, &mut r);
        node_counters(node, &mut r);
        if scope == Scope::Site {
            r.register(
                "buckets",
                "Buckets of the site",
                gauge(node.catalog.state().buckets.len()),
            );
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
            tracing::warn!(error = %e, "metrics did not encode");
        }
        out
    }
}

/// Probes the drives (this node's, or the whole site's), each once and all at once.
async fn drives(node: &Node, scope: Scope, r: &mut Registry) {
    let topo = &node.topology;
    let clock = &node.objects.clock;
    let size = node.objects.layout.set_size;
    let mut probes = Vec::new();
    for (s, set) in node.objects.sets.iter().enumerate() {
        for (j, d) in set.drives.iter().enumerate() {
            let Some(ep) = topo.drives.get(s * size + j) else {
                continue;
            };
            if scope == Scope::Node && ep.node != topo.local {
                continue;
            }
            let labels = DriveLabels {
                node: topo.nodes[ep.node].s3.clone(),
                drive: ep.path.display().to_string(),
                set: s,
            };
            probes.push(async move {
                let start = clock.now_ns();
                let ok = matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, d.health()).await,
                    Ok(Ok(()))
                );
                let secs = clock.now_ns().saturating_sub(start).max(0) as f64 / 1e9;
                (labels, ok, secs, d.stats().map(|s| s.counts()))
            });
        }
    }
    let results = join_all(probes).await;
    let online = Family::<DriveLabels, Gauge>::default();
    let latency = Family::<DriveLabels, GaugeF>::default();
    let calls = Family::<DriveLabels, Counter>::default();
    let errors = Family::<DriveLabels, Counter>::default();
    let busy = Family::<DriveLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    let mut healthy = vec![0usize; node.objects.sets.len()];
    for (labels, ok, secs, counts) in results {
        if ok {
            healthy[labels.set] += 1;
            latency.get_or_create(&labels).set(secs);
        }
        online.get_or_create(&labels).set(i64::from(ok));
        if let Some(c) = counts {
            calls.get_or_create(&labels).inc_by(c.calls);
            errors.get_or_create(&labels).inc_by(c.errors);
            busy.get_or_create(&labels).inc_by(c.busy_ns as f64 / 1e9);
        }
    }
    let (free, total) = (
        Family::<DriveLabels, Gauge>::default(),
        Family::<DriveLabels, Gauge>::default(),
    );
    for (i, ep) in topo.local_drives() {
        let Some(space) = crate::drive::local::space(&ep.path).ok() else {
            continue;
        };
        let labels = DriveLabels {
            node: topo.nodes[ep.node].s3.clone(),
            drive: ep.path.display().to_string(),
            set: i / size.max(1),
        };
        free.get_or_create(&labels)
            .set(i64::try_from(space.free).unwrap_or(i64::MAX));
        total
            .get_or_create(&labels)
            .set(i64::try_from(space.total).unwrap_or(i64::MAX));
    }
    r.register(
        "drive_free_bytes",
        "Bytes still free on the filesystem of this node's drive",
        free,
    );
    r.register(
        "drive_total_bytes",
        "Size of the filesystem of this node's drive",
        total,
    );
    r.register(
        "drive_calls",
        "Calls this node made to the drive (metadata, shard files, health probes)",
        calls,
    );
    r.register(
        "drive_errors",
        "Calls to the drive that failed (offline, I/O, metadata store); not-found is an answer",
        errors,
    );
    r.register(
        "drive_busy_seconds",
        "Time this node's calls to the drive took, summed (with drive_calls: mean latency)",
        busy,
    );
    r.register(
        "drive_online",
        "1 if the drive answered its health probe at this scrape, 0 if not (or not within 2s)",
        online,
    );
    r.register(
        "drive_health_probe_seconds",
        "How long the drive's health probe took at this scrape (remote drives: over the network)",
        latency,
    );
    if scope == Scope::Site {
        let online = Family::<SetLabel, Gauge>::default();
        let read = Family::<SetLabel, Gauge>::default();
        let write = Family::<SetLabel, Gauge>::default();
        let ok = Family::<SetLabel, Gauge>::default();
        for (s, set) in node.objects.sets.iter().enumerate() {
            let l = SetLabel { set: s };
            online.get_or_create(&l).set(healthy[s] as i64);
            read.get_or_create(&l).set(set.read_quorum as i64);
            write.get_or_create(&l).set(set.write_quorum as i64);
            ok.get_or_create(&l)
                .set(i64::from(healthy[s] >= set.write_quorum));
        }
        r.register(
            "erasure_set_online_drives",
            "Drives of the erasure set online at this scrape",
            online,
        );
        r.register(
            "erasure_set_read_quorum",
            "Drives the erasure set needs for reads",
            read,
        );
        r.register(
            "erasure_set_write_quorum",
            "Drives the erasure set needs for writes",
            write,
        );
        r.register(
            "erasure_set_writable",
            "1 if the erasure set has write quorum at this scrape",
            ok,
        );
    }
}

/// This node's view of the control plane (openraft's metrics).
fn raft(node: &Node, r: &mut Registry) {
    let cp = &node.catalog.control;
    let s = cp.status();
    let index = |i: Option<u64>| gauge(i.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX)));
    r.register("raft_term", "Raft term this node is in", gauge(s.term));
    r.register(
        "raft_has_leader",
        "1 if this node knows a control-plane leader",
        gauge(i64::from(s.leader.is_some())),
    );
    r.register(
        "raft_is_leader",
        "1 if this node is the control-plane leader",
        gauge(i64::from(s.leader == Some(s.node_id))),
    );
    r.register(
        "raft_leader_id",
        "Raft id of the leader this node knows (-1: none)",
        gauge(s.leader.map_or(-1, |l| i64::try_from(l).unwrap_or(-1))),
    );
    r.register(
        "raft_last_log_index",
        "Index of the last entry in this node's Raft log (-1: none)",
        index(s.last_log_index),
    );
    r.register(
        "raft_last_applied_index",
        "Index of the last entry this node applied (-1: none)",
        index(s.last_applied_index),
    );
    r.register(
        "raft_proposals_failed",
        "Control-plane changes from this node that did not commit (no leader, no quorum, timeout)",
        counter(cp.proposals_failed()),
    );
}

/// Peer sites as this node saw them (site replication's link).
fn peers(node: &Node, r: &mut Registry) {
    let online = Family::<PeerLabel, Gauge>::default();
    let versions = Family::<PeerLabel, Counter>::default();
    let bytes = Family::<PeerLabel, Counter>::default();
    let failures = Family::<PeerLabel, Counter>::default();
    let lag = Family::<LagLabels, GaugeF>::default();
    let backlog = Family::<PeerLabel, Gauge>::default();
    let endpoint_online = Family::<EndpointLabels, Gauge>::default();
    let state = node.catalog.state();
    for (name, p) in &state.sites.peers {
        let l = PeerLabel { peer: name.clone() };
        backlog
            .get_or_create(&l)
            .set(i64::try_from(state.sites.backlog(name)).unwrap_or(i64::MAX));
        let c = node.link.contacts.report(name, &p.endpoints);
        online.get_or_create(&l).set(i64::from(c.online));
        versions.get_or_create(&l).inc_by(c.versions_replicated);
        bytes.get_or_create(&l).inc_by(c.bytes_replicated);
        failures.get_or_create(&l).inc_by(c.failures);
        for e in &c.endpoints {
            endpoint_online
                .get_or_create(&EndpointLabels {
                    peer: name.clone(),
                    endpoint: e.endpoint.clone(),
                })
                .set(i64::from(e.online));
        }
        for (q, v) in [("0.5", c.lag_p50_ms), ("0.99", c.lag_p99_ms)] {
            if let Some(ms) = v {
                lag.get_or_create(&LagLabels {
                    peer: l.peer.clone(),
                    quantile: q,
                })
                .set(ms as f64 / 1e3);
            }
        }
    }
    r.register(
        "replication_outbox_backlog",
        "Control-plane changes (buckets, their settings, IAM) the peer site has not acknowledged",
        backlog,
    );
    r.register(
        "replication_peer_online",
        "1 if one of the peer site's endpoints answered this node's last call to it",
        online,
    );
    r.register(
        "replication_endpoint_online",
        "1 if this endpoint of the peer site answered this node's last call to it",
        endpoint_online,
    );
    r.register(
        "replication_sent_versions",
        "Object versions this node replicated to the peer",
        versions,
    );
    r.register(
        "replication_sent_bytes",
        "Bytes of the object versions this node replicated to the peer",
        bytes,
    );
    r.register(
        "replication_failures",
        "Items (versions, control-plane batches) the peer did not take from this node",
        failures,
    );
    r.register(
        "replication_lag_seconds",
        "From a version's write to the peer's acknowledgement, over this node's recent versions",
        lag,
    );
}

/// Counters other layers keep on this node.
fn node_counters(node: &Node, r: &mut Registry) {
    r.register(
        "kms_errors",
        "KMS calls (data key generation, decryption) that failed",
        counter(node.sse.kms_errors.load(Ordering::Relaxed)),
    );
    if let Some(iam) = &node.iam {
        r.register(
            "iam_policy_cache_entries",
            "Parsed policy documents in this node's IAM cache",
            gauge(iam.policy_cache_entries()),
        );
    }
    r.register(
        "heal_running",
        "Background full heals running on this node",
        gauge(node.healing.load(Ordering::SeqCst)),
    );
    r.register(
        "heal_lost_versions_removed",
        "Versions heal removed because they were lost beyond their parity",
        counter(node.objects.lost_versions_removed.load(Ordering::Relaxed)),
    );
    r.register(
        "trace_lost_records",
        "Trace records `cairn admin trace` readers of this node lost by reading too slowly",
        counter(node.trace.lost_total()),
    );
    if let Some(audit) = node.audit.get() {
        let written = Family::<SinkLabel, Counter>::default();
        let dropped = Family::<SinkLabel, Counter>::default();
        for c in audit.counts() {
            let sink = SinkLabel { sink: c.sink };
            written.get_or_create(&sink).inc_by(c.written);
            dropped.get_or_create(&sink).inc_by(c.dropped);
        }
        r.register("audit_written", "Audit lines written, by sink", written);
        r.register(
            "audit_dropped",
            "Audit lines dropped, by sink: its queue was full, or it failed after its retries",
            dropped,
        );
    }
}
