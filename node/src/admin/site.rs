//! Admin API for site replication: `site/configure` names this site and its peers, `site/remove`
//! unpairs one, `site/status` shows how far each peer got, `site/buckets` lists the buckets
//! `cairn admin site add` checks for clashes before pairing, `site/resync/{start,status,cancel}`
//! resend everything to a peer (all root only: none is an `admin:*` action a policy grants), and
//! `site/apply` is what a peer's replicator calls with outbox entries, `site/objects` with a
//! change to a version it replicated here (new metadata, a removal for good), and `site/digest`
//! (the control-plane state as per-entity MACs, for `site status`'s drift), signed with the
//! pair's replication identity (that identity alone may call them, and it may call nothing else).

use std::collections::BTreeMap;

use hyper::Method;
use s3s::{s3_error, Body, S3Error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

use cairn_control_plane::resync::{Count, Resync, ResyncCommand, ResyncState};
use cairn_control_plane::site::{PeerConfig, SiteCommand};
use cairn_control_plane::{BucketInfo, Command};

use super::iam::body_json;
use super::{json, query_param};
use crate::catalog::CatalogError;
use crate::node::Node;
use crate::replication::changes::{self, ObjectChange, OBJECTS_OP};
use crate::replication::drift::{self, Drift, DIGEST_OP};
use crate::replication::outbox::{
    link_sealer, reseal, target, ApplyRequest, ApplyResponse, Entry, APPLY_OP,
};

/// One peer of a `site/configure`: where it is, and the pair's replication identity (the same
/// on both sites of the pair; `cairn admin site add` generates one per pair).
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerSpec {
    pub name: String,
    /// Its load balancer, or its nodes (an older client sends one `endpoint`).
    #[serde(
        alias = "endpoint",
        deserialize_with = "cairn_control_plane::site::one_or_many"
    )]
    pub endpoints: Vec<String>,
    pub access_key: String,
    pub secret_key: String,
    /// Versions removed for good are neither sent to this peer nor taken from it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_version_deletes: bool,
}

/// Shortest secret a replication identity may have.
const MIN_LINK_SECRET: usize = 16;
/// Most endpoints one peer may have.
const MAX_ENDPOINTS: usize = 32;
/// How long `site/status` waits for a peer's digest.
const DIGEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
pub struct Configure {
    pub local: String,
    pub peers: Vec<PeerSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub endpoints: Vec<String>,
    /// The last of this site's outbox sequences the peer applied.
    pub acked: u64,
    /// Outbox entries the peer still lacks.
    pub backlog: u64,
    /// What the answering node saw of the peer: online, last contact and error, versions
    /// replicated, lag percentiles, recent failures, and each endpoint's state in the order
    /// its next call tries them.
    pub contact: crate::link::contacts::Contact,
    /// The latest resync to the peer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync: Option<ResyncStatus>,
    /// How the peer's buckets, users, groups, policies, service accounts and directory mappings
    /// differ from this site's (`site/status` only; unset when the peer did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub local: String,
    pub peers: Vec<PeerStatus>,
    /// Per peer: the last of its sequences applied here.
    pub received: BTreeMap<String, u64>,
    /// Per peer: its changes ignored here as stale, this site holding a later change of the
    /// same entity (last writer wins by hybrid logical clock, `cairn_control_plane::stamp`).
    #[serde(default)]
    pub stale: BTreeMap<String, u64>,
}

/// A resync as `site resync status` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResyncStatus {
    pub peer: String,
    pub id: u64,
    pub state: ResyncState,
    /// Versions and bytes sent, and what there is (`None` while still counting).
    pub done: Count,
    pub total: Option<Count>,
    pub failed: u64,
    pub failures: Vec<String>,
    /// Since counting finished: the rate so far, and the time left at that rate.
    pub objects_per_second: f64,
    pub bytes_per_second: f64,
    pub eta_seconds: Option<u64>,
}

impl ResyncStatus {
    fn of(peer: &str, r: &Resync, now_ns: i64) -> Self {
        let end = if r.running() { now_ns } else { r.updated_ns };
        let secs = (end - r.started_ns) as f64 / 1e9;
        let per_second = |n: u64| {
            if r.started_ns > 0 && secs > 0.0 {
                n as f64 / secs
            } else {
                0.0
            }
        };
        let (objects_per_second, bytes_per_second) =
            (per_second(r.done.objects), per_second(r.done.bytes));
        let left = |total: u64, done: u64, rate: f64| {
            let left = total.saturating_sub(done);
            if left == 0 {
                Some(0.0)
            } else if rate > 0.0 {
                Some(left as f64 / rate)
            } else {
                None
            }
        };
        let eta_seconds = match (r.state, r.total) {
            (ResyncState::Running, Some(t)) => {
                match (
                    left(t.objects, r.done.objects, objects_per_second),
                    left(t.bytes, r.done.bytes, bytes_per_second),
                ) {
                    (Some(a), Some(b)) => Some(a.max(b).ceil() as u64),
                    _ => None,
                }
            }
            (ResyncState::Running, None) => None,
            _ => Some(0),
        };
        ResyncStatus {
            peer: peer.to_string(),
            id: r.id,
            state: r.state,
            done: r.done,
            total: r.total,
            failed: r.failed,
            failures: r.failures.clone(),
            objects_per_second,
            bytes_per_second,
            eta_seconds,
        }
    }
}

/// The admin access decision for a peer's replication identity, or for `site/apply` (which only
/// such an identity may call); `None` for everything else, which the usual checks decide.
pub fn peer_access(
    node: &Node,
    method: &Method,
    op: &str,
    access_key: &str,
) -> Option<S3Result<()>> {
    let apply = *method == Method::POST && [APPLY_OP, OBJECTS_OP, DIGEST_OP].contains(&op);
    let peer = node.iam.as_ref().and_then(|a| a.iam.site_peer(access_key));
    if !apply && peer.is_none() {
        return None;
    }
    if apply && peer.is_some() {
        return Some(Ok(()));
    }
    tracing::info!(
        op,
        access_key,
        "admin access denied: site/apply is for peer sites only"
    );
    Some(Err(s3_error!(AccessDenied, "Access Denied.")))
}

pub async fn handle(
    node: &Node,
    region: &str,
    req: &mut S3Request<Body>,
    op: &str,
) -> S3Result<S3Response<Body>> {
    match (&req.method, op) {
        (&Method::POST, "site/configure") => configure(node, req).await,
        (&Method::GET, "site/status") => json(&with_drift(node, region, status(node)).await),
        (&Method::GET, "site/buckets") => {
            let s = node
                .catalog
                .state_linearizable()
                .await
                .map_err(S3Error::from)?;
            json(&s.buckets.values().collect::<Vec<&BucketInfo>>())
        }
        (&Method::POST, "site/remove") => {
            let peer = peer_param(req)?;
            propose(node, SiteCommand::Remove { peer }).await?;
            json(&status(node))
        }
        (&Method::POST, "site/resync/start" | "site/resync/cancel") => {
            let peer = peer_param(req)?;
            let cmd = if op.ends_with("start") {
                ResyncCommand::Start { peer: peer.clone() }
            } else {
                ResyncCommand::Cancel { peer: peer.clone() }
            };
            propose(node, SiteCommand::Resync(cmd)).await?;
            resync_status(node, &peer)
        }
        (&Method::GET, "site/resync/status") => resync_status(node, &peer_param(req)?),
        (&Method::POST, APPLY_OP) => apply(node, req).await,
        (&Method::POST, OBJECTS_OP) => object_change(node, req).await,
        (&Method::POST, DIGEST_OP) => digest(node, req),
        _ => Err(s3_error!(NotImplemented, "unknown admin operation {op}")),
    }
}

fn peer_param(req: &S3Request<Body>) -> S3Result<String> {
    query_param(&req.uri, "peer")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "query parameter peer (a site name) is required"
            )
        })
}

async fn propose(node: &Node, cmd: SiteCommand) -> S3Result<()> {
    node.catalog
        .propose(Command::Site(cmd))
        .await
        .map_err(S3Error::from)
}

fn resync_status(node: &Node, peer: &str) -> S3Result<S3Response<Body>> {
    let state = node.catalog.state();
    let r = state
        .sites
        .resyncs
        .get(peer)
        .ok_or_else(|| s3_error!(InvalidArgument, "no resync to {peer:?}"))?;
    json(&ResyncStatus::of(peer, r, node.objects.clock.now_ns()))
}

pub(crate) fn status(node: &Node) -> Status {
    let s = node.catalog.state();
    Status {
        local: s.sites.local.clone(),
        peers: s
            .sites
            .peers
            .iter()
            .map(|(name, p)| PeerStatus {
                name: name.clone(),
                endpoints: p.endpoints.clone(),
                acked: p.acked,
                backlog: s.sites.backlog(name),
                contact: node.link.contacts.report(name, &p.endpoints),
                resync: s
                    .sites
                    .resyncs
                    .get(name)
                    .map(|r| ResyncStatus::of(name, r, node.objects.clock.now_ns())),
                drift: None,
                drift_error: None,
            })
            .collect(),
        received: s.sites.received.clone(),
        stale: s.sites.stale.clone(),
    }
}

/// `status` with each peer's drift: the peers' digests are asked for at once, each within
/// [`DIGEST_TIMEOUT`].
async fn with_drift(node: &Node, region: &str, mut status: Status) -> Status {
    let Some(auth) = &node.iam else {
        return status;
    };
    let state = node.catalog.state();
    let asks = status.peers.iter().map(|p| {
        let state = &state;
        async move {
            let peer = state
                .sites
                .peers
                .get(&p.name)
                .ok_or_else(|| "no longer a peer".to_string())?;
            let link = target(auth, &p.name, peer, region)
                .ok_or_else(|| "the pair's replication identity does not open".to_string())?;
            let theirs: drift::Digest =
                tokio::time::timeout(DIGEST_TIMEOUT, node.link.admin_json(&link, DIGEST_OP, &()))
                    .await
                    .map_err(|_| format!("no digest within {DIGEST_TIMEOUT:?}"))?
                    .map_err(|e| e.to_string())?;
            let ours = drift::digest(state, &auth.iam.sealer, link.secret_key.as_bytes());
            Ok::<Drift, String>(drift::compare(&ours, &theirs))
        }
    });
    let answers = futures::future::join_all(asks).await;
    for (p, a) in status.peers.iter_mut().zip(answers) {
        match a {
            Ok(d) => p.drift = Some(d),
            Err(e) => p.drift_error = Some(e),
        }
    }
    status
}

/// This site's digest for the peer whose replication identity signed the request, under the
/// pair's secret.
fn digest(node: &Node, req: &S3Request<Body>) -> S3Result<S3Response<Body>> {
    let denied = || s3_error!(AccessDenied, "Access Denied.");
    let (Some(auth), Some(c)) = (&node.iam, &req.credentials) else {
        return Err(denied());
    };
    let state = node.catalog.state();
    let (peer, site_peer) = state.sites.peer_by_key(&c.access_key).ok_or_else(denied)?;
    let link = target(auth, peer, site_peer, "").ok_or_else(denied)?;
    json(&drift::digest(
        &state,
        &auth.iam.sealer,
        link.secret_key.as_bytes(),
    ))
}

async fn configure(node: &Node, req: &mut S3Request<Body>) -> S3Result<S3Response<Body>> {
    let Some(auth) = &node.iam else {
        return Err(s3_error!(
            NotImplemented,
            "site replication needs root credentials"
        ));
    };
    let c: Configure = body_json(req).await?;
    let mut peers = BTreeMap::new();
    for p in c.peers {
        // A peer gets a replication identity of its own, never this site's root.
        if auth.iam.is_root(&p.access_key)
            || p.access_key.is_empty()
            || p.secret_key.len() < MIN_LINK_SECRET
        {
            return Err(s3_error!(
                InvalidArgument,
                "peer {:?} needs a replication identity: an access key that is not root's and a secret of at least {MIN_LINK_SECRET} characters",
                p.name
            ));
        }
        if p.endpoints.is_empty() || p.endpoints.len() > MAX_ENDPOINTS {
            return Err(s3_error!(
                InvalidArgument,
                "peer {:?} needs 1 to {MAX_ENDPOINTS} endpoints",
                p.name
            ));
        }
        let mut endpoints: Vec<String> = Vec::new();
        for e in &p.endpoints {
            let uri: hyper::Uri = e
                .parse()
                .map_err(|_| s3_error!(InvalidArgument, "invalid peer endpoint {e:?}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(s3_error!(
                    InvalidArgument,
                    "peer endpoint {e:?} must be http(s)://HOST[:PORT]"
                ));
            }
            let e = e.trim_end_matches('/').to_string();
            if !endpoints.contains(&e) {
                endpoints.push(e);
            }
        }
        let secret = auth.with_rng(|rng| auth.iam.sealer.seal(&p.access_key, &p.secret_key, rng));
        peers.insert(
            p.name,
            PeerConfig {
                endpoints,
                access_key: p.access_key,
                secret,
                skip_version_deletes: p.skip_version_deletes,
            },
        );
    }
    node.catalog
        .propose(Command::Site(SiteCommand::Configure {
            local: c.local,
            peers,
        }))
        .await
        .map_err(S3Error::from)?;
    json(&status(node))
}

/// A peer's change to a version it replicated here (`replication::changes`): only the pair's
/// replication identity may send one, and the change comes from that identity's peer.
async fn object_change(node: &Node, req: &mut S3Request<Body>) -> S3Result<S3Response<Body>> {
    let denied = || s3_error!(AccessDenied, "Access Denied.");
    let access_key = req
        .credentials
        .as_ref()
        .ok_or_else(denied)?
        .access_key
        .clone();
    let state = node.catalog.state();
    let (peer, site_peer) = state.sites.peer_by_key(&access_key).ok_or_else(denied)?;
    let change: ObjectChange = body_json(req).await?;
    match changes::apply(node, peer, site_peer, &change).await {
        Ok(outcome) => json(&outcome),
        Err(e) => Err(s3_error!(ServiceUnavailable, "{e}")),
    }
}

/// Applies a peer's entries in order. A bucket deletion waits (the answer stops short of it)
/// while the bucket still holds objects here: their deletions are still on their way (unless
/// this site keeps the versions the peer removes).
async fn apply(node: &Node, req: &mut S3Request<Body>) -> S3Result<S3Response<Body>> {
    let denied = || s3_error!(AccessDenied, "Access Denied.");
    let (Some(auth), Some(c)) = (&node.iam, &req.credentials) else {
        return Err(denied());
    };
    let access_key = c.access_key.clone();
    let state = node.catalog.state();
    let Some((peer, site_peer)) = state.sites.peer_by_key(&access_key) else {
        return Err(denied());
    };
    let link = target(auth, peer, site_peer, "").ok_or_else(denied)?;
    let r: ApplyRequest = body_json(req).await?;
    // Entries come from the peer the identity belongs to, whatever the body says.
    if r.origin != peer {
        return Err(s3_error!(
            InvalidArgument,
            "entries from {:?} signed by peer {peer:?}",
            r.origin
        ));
    }
    let theirs = link_sealer(&link);
    // A site that keeps the versions this peer removes may never see such a bucket empty: the
    // deletion does not wait, and is declined while the bucket holds versions here.
    let keeps_versions = site_peer.skip_version_deletes;
    for e in r.entries {
        let e = Entry {
            seq: e.seq,
            command: reseal(auth, &theirs, &auth.iam.sealer, e.command),
            stamp_ns: e.stamp_ns,
        };
        let mut cmd = Command::Site(SiteCommand::FromPeer {
            origin: r.origin.clone(),
            seq: e.seq,
            command: Box::new(e.command.clone()),
            stamp_ns: e.stamp_ns,
        });
        if let Command::DeleteBucket { name } = &e.command {
            let known = node.catalog.state().bucket(name).is_some();
            let empty = node
                .objects
                .bucket_is_empty(name)
                .await
                .map_err(|e| s3_error!(ServiceUnavailable, "{e}"))?;
            if known && !empty && keeps_versions {
                tracing::info!(bucket = %name, origin = %r.origin, "replicated bucket deletion declined: the bucket keeps versions its peer removed");
                cmd = Command::Site(SiteCommand::Declined {
                    origin: r.origin.clone(),
                    seq: e.seq,
                });
            } else if known && !empty {
                tracing::info!(bucket = %name, origin = %r.origin, "replicated bucket deletion waits for its objects to go");
                break;
            }
        }
        match node.catalog.propose(cmd).await {
            Ok(()) => {}
            Err(CatalogError::Command(c)) => {
                tracing::debug!(origin = %r.origin, seq = e.seq, error = %c, "replicated command had no effect here");
            }
            Err(e) => return Err(S3Error::from(e)),
        }
    }
    let received = node
        .catalog
        .state()
        .sites
        .received
        .get(&r.origin)
        .copied()
        .unwrap_or(0);
    json(&ApplyResponse { received })
}
