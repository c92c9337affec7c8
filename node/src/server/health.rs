//! The front router: health probes for load balancers, bodies s3s reads before authenticating
//! (read first, outside the slots), the concurrency cap, then S3.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use hyper::{Request, Response, StatusCode};
use s3s::service::S3Service;
use s3s::Body;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::preauth::PreAuthBodies;
use super::Node;

#[derive(Clone)]
pub struct Router {
    pub s3: S3Service,
    pub node: Arc<Node>,
    pub limit: Arc<Semaphore>,
    /// Bodies s3s reads before authenticating: read first, outside the request slots.
    pub preauth: Arc<PreAuthBodies>,
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r
}

/// An S3 error document, for answers given before s3s sees the request.
pub(super) fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut r = text(status, &xml);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    r
}

pub(super) fn slow_down() -> Response<Body> {
    let mut r = s3_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SlowDown",
        "Please reduce your request rate.",
    );
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    r
}

/// A request the checks in front of s3s refused ([`crate::auth::request`]).
pub(super) fn rejected(r: &crate::auth::request::Rejection) -> Response<Body> {
    let mut resp = text(r.status, &r.to_xml());
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    resp
}

/// True while every erasure set has write quorum of healthy drives.
pub async fn write_quorum_ok(node: &Node) -> bool {
    for set in &node.objects.sets {
        let ok = join_all(set.drives.iter().map(|d| d.health()))
            .await
            .iter()
            .filter(|r| r.is_ok())
            .count();
        if ok < set.write_quorum {
            return false;
        }
    }
    true
}

impl Router {
    /// Ready means this node can take writes: its control plane knows a leader.
    fn has_leader(&self) -> bool {
        self.node.catalog.control.status().leader.is_some()
    }

    pub async fn handle<B>(&self, mut req: Request<B>) -> Result<Response<Body>, s3s::HttpError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        s3s::StdError: From<B::Error>,
    {
        if let Some(uri) = super::sigv2::canonical_bucket_uri(req.headers(), req.uri()) {
            *req.uri_mut() = uri;
        }
        match req.uri().path() {
            "/cairn/health/live" => return Ok(text(StatusCode::OK, "OK")),
            "/cairn/health/ready" => {
                return Ok(if self.has_leader() {
                    text(StatusCode::OK, "OK")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "no control-plane leader")
                })
            }
            "/cairn/health/cluster" => {
                return Ok(if !self.has_leader() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "no control-plane leader")
                } else if write_quorum_ok(&self.node).await {
                    text(StatusCode::OK, "OK")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "write quorum lost")
                })
            }
            _ => {}
        }
        if let Err(r) = crate::auth::request::check(
            req.method(),
            req.headers(),
            req.uri(),
            self.node.credentials.as_ref(),
            self.node.objects.clock.now(),
        ) {
            return Ok(rejected(&r));
        }
        let sts = crate::sts::is_sts_request(req.method(), req.uri(), req.headers());
        let http1 = req.version() < hyper::Version::HTTP_2;
        let (req, read_first) = match self.preauth.read(req.map(Body::http_body), sts).await {
            Ok(r) => r,
            Err(mut refused) => {
                if http1 {
                    // The rest of the body is not read: the connection cannot carry another request.
                    refused.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                return Ok(if sts {
                    crate::sts::as_sts_error(refused).await
                } else {
                    refused
                });
            }
        };
        let Ok(permit) = self.limit.clone().try_acquire_owned() else {
            return Ok(slow_down());
        };
        let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
        // The handler runs as its own task, so a client that disconnects (or times out) cannot
        // cancel it halfway: a write that changed some drives' records must get to settle them
        // (commit at quorum or roll back below it), or it leaves the key with no quorum at all.
        let s3 = self.s3.clone();
        let handler = tokio::spawn(
            async move {
                let _permits = (permit, read_first);
                let (parts, body) = req.into_parts();
                let body = crate::auth::chunked::guard(&parts.headers, body);
                s3.call(Request::from_parts(parts, body)).await
            }
            .instrument(span),
        );
        let resp = match handler.await {
            Ok(r) => r?,
            Err(e) => {
                tracing::error!(error = %e, "request handler failed");
                return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
            }
        };
        if sts && (resp.status().is_client_error() || resp.status().is_server_error()) {
            return Ok(crate::sts::as_sts_error(resp).await);
        }
        Ok(resp)
    }
}
