//! Admin API for site replication: `site/configure` names this site and its peers, `site/status`
//! shows how far each peer got, and `site/apply` is what a peer's replicator calls with outbox
//! entries (root only, like the rest of the admin API).

use std::collections::BTreeMap;

use hyper::Method;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

use cairn_control_plane::site::{PeerConfig, SiteCommand};
use cairn_control_plane::Command;

use super::iam::{body_json, catalog_error};
use super::json;
use crate::catalog::CatalogError;
use crate::server::Node;
use crate::site::outbox::{ApplyRequest, ApplyResponse, APPLY_OP};

#[derive(Debug, Serialize, Deserialize)]
pub struct PeerSpec {
    pub name: String,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Configure {
    pub local: String,
    pub peers: Vec<PeerSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub endpoint: String,
    /// The last of this site's outbox sequences the peer applied.
    pub acked: u64,
    /// Outbox entries the peer still lacks.
    pub backlog: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub local: String,
    pub peers: Vec<PeerStatus>,
    /// Per peer: the last of its sequences applied here.
    pub received: BTreeMap<String, u64>,
}

pub async fn handle(
    node: &Node,
    req: &mut S3Request<Body>,
    op: &str,
) -> S3Result<S3Response<Body>> {
    match (&req.method, op) {
        (&Method::POST, "site/configure") => configure(node, req).await,
        (&Method::GET, "site/status") => json(&status(node)),
        (&Method::POST, APPLY_OP) => apply(node, req).await,
        _ => Err(s3_error!(NotImplemented, "unknown admin operation {op}")),
    }
}

fn status(node: &Node) -> Status {
    let s = node.catalog.state();
    Status {
        local: s.sites.local.clone(),
        peers: s
            .sites
            .peers
            .iter()
            .map(|(name, p)| PeerStatus {
                name: name.clone(),
                endpoint: p.endpoint.clone(),
                acked: p.acked,
                backlog: s.sites.backlog(name),
            })
            .collect(),
        received: s.sites.received.clone(),
    }
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
        let uri: hyper::Uri = p
            .endpoint
            .parse()
            .map_err(|_| s3_error!(InvalidArgument, "invalid peer endpoint {:?}", p.endpoint))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "peer endpoint {:?} must be http(s)://HOST[:PORT]",
                p.endpoint
            ));
        }
        let secret = auth.with_rng(|rng| auth.iam.sealer.seal(&p.access_key, &p.secret_key, rng));
        peers.insert(
            p.name,
            PeerConfig {
                endpoint: p.endpoint.trim_end_matches('/').to_string(),
                access_key: p.access_key,
                secret,
            },
        );
    }
    node.catalog
        .propose(Command::Site(SiteCommand::Configure {
            local: c.local,
            peers,
        }))
        .await
        .map_err(catalog_error)?;
    json(&status(node))
}

/// Applies a peer's entries in order. A bucket deletion waits (the answer stops short of it)
/// while the bucket still holds objects here: their deletions are still on their way.
async fn apply(node: &Node, req: &mut S3Request<Body>) -> S3Result<S3Response<Body>> {
    let r: ApplyRequest = body_json(req).await?;
    for e in r.entries {
        if let Command::DeleteBucket { name } = &e.command {
            let known = node.catalog.state().bucket(name).is_some();
            let empty = node
                .objects
                .bucket_is_empty(name)
                .await
                .map_err(|e| s3_error!(ServiceUnavailable, "{e}"))?;
            if known && !empty {
                tracing::info!(bucket = %name, origin = %r.origin, "replicated bucket deletion waits for its objects to go");
                break;
            }
        }
        let cmd = Command::Site(SiteCommand::FromPeer {
            origin: r.origin.clone(),
            seq: e.seq,
            command: Box::new(e.command),
        });
        match node.catalog.propose(cmd).await {
            Ok(()) => {}
            Err(CatalogError::Command(c)) => {
                tracing::debug!(origin = %r.origin, seq = e.seq, error = %c, "replicated command had no effect here");
            }
            Err(e) => return Err(catalog_error(e)),
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
