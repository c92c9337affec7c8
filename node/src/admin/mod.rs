//! The admin API under `/cairn/admin/v1/` on the S3 port: SigV4-signed (s3s checks the signature
//! before the route runs), JSON in and out. Only root may call it until IAM adds `admin:*` actions.

pub mod cli;

use std::sync::Arc;

use hyper::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};
use serde::Serialize;

use crate::object::heal::HealSummary;
use crate::server::Node;

pub const PREFIX: &str = "/cairn/admin/v1/";

pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Heals the control-plane state and every object of every bucket.
pub async fn heal_everything(node: &Node) -> HealSummary {
    node.catalog.heal().await;
    let buckets: Vec<String> = node.catalog.state().await.buckets.keys().cloned().collect();
    node.objects.heal_all(&buckets).await
}

#[derive(Serialize)]
struct DriveInfo {
    endpoint: String,
    set: usize,
    state: &'static str,
}

#[derive(Serialize)]
struct Info {
    sets: usize,
    set_size: usize,
    parity: usize,
    drives: Vec<DriveInfo>,
    buckets: usize,
}

pub struct AdminRoute {
    pub node: Arc<Node>,
}

fn json<T: Serialize>(v: &T) -> S3Result<S3Response<Body>> {
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
        match self.node.credentials.lookup(&c.access_key) {
            Some((id, _)) if id.is_root => Ok(()),
            _ => Err(s3_error!(AccessDenied, "Access Denied.")),
        }
    }

    #[tracing::instrument(skip_all, fields(path = %req.uri.path()))]
    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let op = req.uri.path().trim_start_matches(PREFIX);
        match (&req.method, op) {
            (&Method::POST, "heal") => json(&heal_everything(&self.node).await),
            (&Method::GET, "info") => {
                let mut drives = Vec::new();
                for (s, set) in self.node.objects.sets.iter().enumerate() {
                    for d in &set.drives {
                        let state = if d.health().await.is_ok() {
                            "ok"
                        } else {
                            "offline"
                        };
                        drives.push(DriveInfo {
                            endpoint: d.label().to_string(),
                            set: s,
                            state,
                        });
                    }
                }
                let l = self.node.objects.layout;
                let buckets = self.node.catalog.state().await.buckets.len();
                json(&Info {
                    sets: l.sets,
                    set_size: l.set_size,
                    parity: l.parity,
                    drives,
                    buckets,
                })
            }
            _ => Err(s3_error!(NotImplemented, "unknown admin operation {op}")),
        }
    }
}
