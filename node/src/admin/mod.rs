//! The admin API under `/cairn/admin/v1/` on the S3 port: SigV4-signed (s3s checks the signature
//! before the route runs), JSON in and out. Each call needs its `admin:*` action (`actions`);
//! calls without one are root's alone, and peer sites' replication identities may make only
//! their own calls (`site::peer_access`).

pub mod actions;
pub mod alias;
mod bucket;
pub mod bucket_cli;
pub mod bucket_encryption;
pub mod cli;
pub mod heal_cli;
pub mod iam;
pub mod iam_cli;
pub mod info;
pub mod info_cli;
pub mod kms;
pub mod kms_cli;
pub mod progress;
pub mod prometheus;
pub mod site;
pub mod site_cli;
pub mod top;
pub mod top_cli;
pub mod trace;
pub mod trace_cli;

use std::sync::Arc;

use hyper::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};
use serde::Serialize;

use cairn_control_plane::raft::ProposeError;

use crate::auth::authorize::condition_keys::{query_pairs, session_token};
use crate::auth::authorize::Signer;
use crate::node::Node;
use crate::object::heal::HealSummary;

/// The admin API's paths (peer sites call `site/apply` under it, through [`crate::link`]).
pub use crate::link::ADMIN_PREFIX as PREFIX;

/// The other nodes of the site (`HOST:PORT` of their S3 API), each as a target the admin API
/// calls over `https` when `secure` (a site serves TLS on every node or on none), signed with
/// the site's root credentials: the caller was authorized on the node that calls them. Empty
/// without root credentials.
pub(crate) fn peer_nodes(node: &Node, secure: bool) -> Vec<(String, crate::link::PeerTarget)> {
    let Some(root) = node.credentials.root() else {
        return Vec::new();
    };
    let scheme = if secure { "https" } else { "http" };
    node.topology
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != node.topology.local)
        .map(|(_, peer)| {
            let url = format!("{scheme}://{}", peer.s3);
            let target = crate::link::PeerTarget {
                name: url.clone(),
                endpoints: vec![url],
                access_key: root.access_key.clone(),
                secret_key: zeroize::Zeroizing::new(root.secret_key.clone()),
                region: "us-east-1".into(),
            };
            (peer.s3.clone(), target)
        })
        .collect()
}

/// Whether `req` came over TLS.
pub(crate) fn secure(req: &S3Request<Body>) -> bool {
    req.extensions
        .get::<crate::auth::ConnInfo>()
        .is_some_and(|c| c.secure)
}

/// Heals every object of every bucket (Raft keeps the control-plane state itself).
pub async fn heal_everything(node: &Node) -> HealSummary {
    let buckets: Vec<String> = node.catalog.state().buckets.keys().cloned().collect();
    node.objects.heal_all(&buckets).await
}

/// The value of query parameter `name` (percent-decoded).
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Every value of a repeated query parameter.
pub(crate) fn query_values(uri: &Uri, name: &str) -> Vec<String> {
    query_pairs(uri)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}

fn node_id_param(uri: &Uri) -> S3Result<u64> {
    query_param(uri, "id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "query parameter id (a Raft node id) is required"
            )
        })
}

fn addr_param(uri: &Uri) -> S3Result<String> {
    query_param(uri, "addr")
        .filter(|a| {
            a.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        })
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "query parameter addr (HOST:PORT) is required"
            )
        })
}

/// Only nodes of the endpoint list the site was started with may join its Raft group: a new
/// member receives the site's internode secret, so an address outside the topology is refused.
fn topology_member(node: &Node, uri: &Uri) -> S3Result<(u64, String)> {
    let (id, addr) = (node_id_param(uri)?, addr_param(uri)?);
    if node.topology.members().get(&id) != Some(&addr) {
        return Err(s3_error!(
            InvalidArgument,
            "node {id} at {addr} is not a node of this site's endpoint list"
        ));
    }
    Ok((id, addr))
}

#[derive(Serialize)]
struct InternodeSecret<'a> {
    secret: &'a str,
}

/// A membership change failed: without a leader or quorum that is 503, like any other write.
fn membership_error(e: ProposeError) -> s3s::S3Error {
    match e {
        ProposeError::Rejected(c) => s3_error!(InvalidRequest, "{c}"),
        ProposeError::Membership(m) => s3_error!(InvalidRequest, "{m}"),
        other => s3_error!(ServiceUnavailable, "{other}"),
    }
}

pub struct AdminRoute {
    pub node: Arc<Node>,
    /// The region this site signs its calls to peer sites in.
    pub region: String,
}

/// The STS session token a signed admin request carries.
pub(crate) fn signer_token(req: &S3Request<Body>) -> Option<String> {
    session_token(&req.headers, &query_pairs(&req.uri))
}

/// The condition keys of a signed admin request.
pub(crate) fn request_keys(
    auth: &crate::auth::authorize::Authorizer,
    req: &S3Request<Body>,
) -> Vec<(String, Vec<String>)> {
    crate::auth::authorize::condition_keys::request_keys(
        &req.headers,
        &req.uri,
        req.extensions.get().copied(),
        req.uri.path().trim_start_matches(PREFIX),
        auth.clock.now(),
    )
}

pub(crate) fn json<T: Serialize>(v: &T) -> S3Result<S3Response<Body>> {
    let body = serde_json::to_vec(v).map_err(|e| s3_error!(InternalError, "{e}"))?;
    let mut r = S3Response::new(Body::from(body));
    r.headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[async_trait::async_trait]
impl S3Route for AdminRoute {
    fn is_match(
        &self,
        _m: &Method,
        uri: &Uri,
        _h: &HeaderMap,
        _e: &mut hyper::http::Extensions,
    ) -> bool {
        uri.path().starts_with(PREFIX)
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let Some(c) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let op = req.uri.path().trim_start_matches(PREFIX);
        if let Some(decided) = site::peer_access(&self.node, &req.method, op, &c.access_key) {
            return decided;
        }
        let token = signer_token(req);
        let denied = match (
            &self.node.iam,
            actions::admin_action(req.method.as_str(), op),
        ) {
            (Some(auth), Some(action)) => {
                let needed: Vec<(&str, Option<String>)> =
                    action.map(|a| (a, None)).into_iter().collect();
                let keys = request_keys(auth, req);
                let signer = Signer {
                    access_key: &c.access_key,
                    session_token: token.as_deref(),
                };
                auth.authorize(Some(signer), &needed, &keys)
                    .map_err(|e| {
                        tracing::info!(op, access_key = %c.access_key, reason = %e, "admin access denied");
                        e.to_s3()
                    })
                    .err()
            }
            _ => (!self.node.credentials.is_root_key(&c.access_key))
                .then(|| s3_error!(AccessDenied, "Access Denied.")),
        };
        denied.map_or(Ok(()), Err)
    }

    #[tracing::instrument(skip_all, fields(path = %req.uri.path()))]
    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let path = req.uri.path().to_owned();
        let op = path.trim_start_matches(PREFIX);
        if let Some(auth) = &self.node.iam {
            if let Some(r) = iam::handle(&self.node, auth, &mut req, op).await {
                return r;
            }
        }
        match (&req.method, op) {
            (&Method::POST, "heal") => json(&heal_everything(&self.node).await),
            (&Method::GET, "heal/status") => json(&self.node.objects.heal_progress.snapshot()),
            (&Method::GET, "info") => json(&info::info(&self.node, secure(&req)).await),
            (&Method::GET, "info/drives") => json(&info::local_space(&self.node)),
            (_, "bucket/encryption") => {
                bucket_encryption::handle(&self.node, &req.method, &req.uri).await
            }
            (_, op) if op.starts_with("bucket/") => bucket::handle(&self.node, &req, op).await,
            (&Method::GET, "raft/status") => json(&self.node.catalog.control.status()),
            (&Method::GET, "trace") => Ok(trace::handle(&self.node, &req)),
            (&Method::GET, "internode/secret") => json(&InternodeSecret {
                secret: &self.node.site_secret,
            }),
            (&Method::POST, "raft/add-voter") => {
                let (id, addr) = topology_member(&self.node, &req.uri)?;
                let cp = &self.node.catalog.control;
                cp.add_voter(id, addr).await.map_err(membership_error)?;
                json(&cp.status())
            }
            (&Method::POST, "raft/add-learner") => {
                let (id, addr) = topology_member(&self.node, &req.uri)?;
                let cp = &self.node.catalog.control;
                cp.add_learner(id, addr).await.map_err(membership_error)?;
                json(&cp.status())
            }
            (&Method::POST, "raft/remove-voter") => {
                let id = node_id_param(&req.uri)?;
                let cp = &self.node.catalog.control;
                cp.remove_voter(id).await.map_err(membership_error)?;
                json(&cp.status())
            }
            (_, op) if op.starts_with("site/") => {
                site::handle(&self.node, &self.region, &mut req, op).await
            }
            (m, op) if op.starts_with("kms/key/") => {
                kms::handle(&self.node, m, op.trim_start_matches("kms/key/"), &req.uri).await
            }
            _ => Err(s3_error!(NotImplemented, "unknown admin operation {op}")),
        }
    }
}
