//! The front router: health probes for load balancers, CORS preflights (`super::cors`), bodies
//! s3s reads before authenticating (read first, outside the slots), the concurrency cap, then S3.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use hyper::{Request, Response, StatusCode};
use s3s::service::S3Service;
use s3s::Body;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::metrics::guard;
use super::preauth::PreAuthBodies;
use super::Node;

#[derive(Clone)]
pub struct Router {
    pub s3: S3Service,
    pub node: Arc<Node>,
    pub limit: Arc<Semaphore>,
    /// Bodies s3s reads before authenticating: read first, outside the request slots.
    pub preauth: Arc<PreAuthBodies>,
    pub request_ids: Arc<RequestIds>,
    pub metrics: Arc<super::metrics::Metrics>,
    /// Who may scrape `/cairn/metrics` (`CAIRN_PROMETHEUS_AUTH_TYPE`).
    pub metrics_auth: super::metrics::guard::AuthType,
}

/// Request ids unique within a site without drawing randomness (the simulator replays them):
/// this node's place in the endpoint list, then a counter.
pub struct RequestIds {
    node: u64,
    next: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    pub fn new(node: u64) -> Self {
        RequestIds {
            node,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{:04X}{:012X}", self.node & 0xFFFF, n & 0xFFFF_FFFF_FFFF)
    }
}

/// Error documents longer than this are passed on as they are (s3s's are a few hundred bytes).
const MAX_ERROR_DOCUMENT: usize = 64 << 10;

/// Adds the request id header, and to an S3 `<Error>` document without one, its `RequestId`;
/// a POST policy's failed condition gets AWS's answer (`s3::error::post_condition_refusal`).
async fn stamp(resp: Response<Body>, id: &str) -> Response<Body> {
    use http_body_util::BodyExt;
    let (mut parts, body) = resp.into_parts();
    if let Ok(v) = hyper::header::HeaderValue::from_str(id) {
        parts.headers.insert("x-amz-request-id", v);
    }
    let xml = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    if parts.status.as_u16() < 400 || !xml {
        return Response::from_parts(parts, body);
    }
    let bytes = match http_body_util::Limited::new(body, MAX_ERROR_DOCUMENT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let mut doc = String::from_utf8_lossy(&bytes);
    if let Some((status, aws)) = crate::s3::error::post_condition_refusal(parts.status, &doc) {
        parts.status = status;
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
        doc = aws.into();
    }
    let body = match doc.rfind("</Error>") {
        Some(end) if !doc.contains("<RequestId>") => {
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            format!("{}<RequestId>{id}</RequestId>{}", &doc[..end], &doc[end..]).into()
        }
        _ => Bytes::from(doc.into_owned()),
    };
    Response::from_parts(parts, Body::from(body))
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

/// A request to a bucket whose name s3s would refuse, refused here with the reason (s3s gives
/// none). Requests are path-style, so the bucket is the path's first segment.
fn bucket_name_rejection(uri: &hyper::Uri) -> Option<crate::auth::request::Rejection> {
    let first = uri.path().trim_start_matches('/').split('/').next()?;
    if first.is_empty() {
        return None;
    }
    let name = percent_encoding::percent_decode_str(first)
        .decode_utf8()
        .ok()?;
    let why = crate::s3::bucket_name::problem(&name)?;
    Some(crate::auth::request::Rejection::new(
        StatusCode::BAD_REQUEST,
        "InvalidBucketName",
        why,
    ))
}

/// One erasure set as a health probe sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SetHealth {
    healthy: usize,
    /// Healthy drives of this set on this node (what taking the node down removes).
    healthy_here: usize,
    read_quorum: usize,
    write_quorum: usize,
}

/// The site's erasure sets, each drive asked once.
struct SiteHealth(Vec<SetHealth>);

impl SiteHealth {
    async fn probe(node: &Node) -> SiteHealth {
        let local: std::collections::BTreeSet<usize> =
            node.topology.local_drives().map(|(i, _)| i).collect();
        let size = node.objects.layout.set_size;
        let mut sets = Vec::with_capacity(node.objects.sets.len());
        for (s, set) in node.objects.sets.iter().enumerate() {
            let answers = join_all(set.drives.iter().map(|d| d.health())).await;
            let healthy: Vec<usize> = answers
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| s * size + i)
                .collect();
            sets.push(SetHealth {
                healthy: healthy.len(),
                healthy_here: healthy.iter().filter(|i| local.contains(i)).count(),
                read_quorum: set.read_quorum,
                write_quorum: set.write_quorum,
            });
        }
        SiteHealth(sets)
    }

    fn write_ok(&self) -> bool {
        self.0.iter().all(|s| s.healthy >= s.write_quorum)
    }

    fn read_ok(&self) -> bool {
        self.0.iter().all(|s| s.healthy >= s.read_quorum)
    }

    /// Whether every set keeps write quorum without this node's drives (MinIO's
    /// `?maintenance=true`: may this node be taken down now).
    fn write_ok_without_here(&self) -> bool {
        self.0
            .iter()
            .all(|s| s.healthy - s.healthy_here >= s.write_quorum)
    }

    /// The quorums a probe states in its headers (the largest over the sets).
    fn quorums(&self) -> (usize, usize) {
        let read = self.0.iter().map(|s| s.read_quorum).max().unwrap_or(0);
        let write = self.0.iter().map(|s| s.write_quorum).max().unwrap_or(0);
        (read, write)
    }
}

impl Router {
    /// Ready means this node can take writes: its control plane knows a leader.
    fn has_leader(&self) -> bool {
        self.node.catalog.control.status().leader.is_some()
    }

    /// `/cairn/health/cluster` (the site can take writes: a control-plane leader and write
    /// quorum in every set) and `/cairn/health/cluster/read` (read quorum in every set), for
    /// load balancers and DNS failover. Headers state the quorums, whether this node is healing
    /// and whether the control plane is available. With `?maintenance=true` the cluster probe
    /// answers 412 when taking this node down would leave a set below write quorum.
    async fn cluster_health(&self, uri: &hyper::Uri) -> Response<Body> {
        let read_only = uri.path().ends_with("/read");
        let maintenance = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|kv| kv.eq_ignore_ascii_case("maintenance=true"));
        let site = SiteHealth::probe(&self.node).await;
        let leader = self.has_leader();
        let (status, why) = if read_only {
            if site.read_ok() {
                (StatusCode::OK, "OK")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "read quorum lost")
            }
        } else if !leader {
            (StatusCode::SERVICE_UNAVAILABLE, "no control-plane leader")
        } else if !site.write_ok() {
            (StatusCode::SERVICE_UNAVAILABLE, "write quorum lost")
        } else if maintenance && !site.write_ok_without_here() {
            (
                StatusCode::PRECONDITION_FAILED,
                "taking this node down would lose write quorum",
            )
        } else {
            (StatusCode::OK, "OK")
        };
        let mut r = text(status, why);
        let (read, write) = site.quorums();
        let healing = self.node.healing.load(std::sync::atomic::Ordering::SeqCst) > 0;
        let h = r.headers_mut();
        h.insert("x-cairn-read-quorum", read.into());
        h.insert("x-cairn-write-quorum", write.into());
        h.insert(
            "x-cairn-healing",
            hyper::header::HeaderValue::from_static(if healing { "true" } else { "false" }),
        );
        h.insert(
            "x-cairn-control-plane",
            hyper::header::HeaderValue::from_static(if leader {
                "available"
            } else {
                "unavailable"
            }),
        );
        r
    }

    /// Serves one request and stamps its answer with a request id (`x-amz-request-id`, and the
    /// `RequestId` of an S3 error document), as AWS does, so a client's report names the request
    /// in the server's log.
    pub async fn handle<B>(&self, mut req: Request<B>) -> Result<Response<Body>, s3s::HttpError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        s3s::StdError: From<B::Error>,
    {
        let id = self.request_ids.next();
        let span = tracing::debug_span!("request_id", id = %id);
        req.extensions_mut()
            .insert(crate::auth::RequestId(id.clone()));
        let (watch, notes) = super::observe::Watch::begin(&self.node, &req, &id);
        let cors = super::cors::Actual::of(&req);
        let resp = self.serve(req, notes).instrument(span).await?;
        let resp = match cors {
            Some(c) => c.answer(&self.node.catalog.state(), resp),
            None => resp,
        };
        let resp = stamp(resp, &id).await;
        Ok(match watch {
            Some(w) => w.finish(resp),
            None => resp,
        })
    }

    /// `notes`: what the handler learns about the request (its operation for the metrics,
    /// and for a watched request the details the trace and the audit log show).
    async fn serve<B>(
        &self,
        mut req: Request<B>,
        notes: crate::telemetry::SharedNotes,
    ) -> Result<Response<Body>, s3s::HttpError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        s3s::StdError: From<B::Error>,
    {
        if let Some(uri) = super::sigv2::canonical_bucket_uri(req.headers(), req.uri()) {
            *req.uri_mut() = uri;
        }
        if req.uri().path().starts_with("/cairn/health/") {
            notes.lock().unwrap_or_else(|e| e.into_inner()).api = Some("Health".into());
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
            "/cairn/health/cluster" | "/cairn/health/cluster/read" => {
                return Ok(self.cluster_health(req.uri()).await);
            }
            _ => {}
        }
        if req.method() == hyper::Method::OPTIONS {
            let state = self.node.catalog.state();
            if let Some(r) = super::cors::preflight(&state, req.uri(), req.headers()) {
                notes.lock().unwrap_or_else(|e| e.into_inner()).api = Some("PreflightCORS".into());
                return Ok(r);
            }
        }
        if let Some(r) = self.scrape_before_s3s(&req).await {
            return Ok(r);
        }
        if let Some(r) = bucket_name_rejection(req.uri()) {
            return Ok(rejected(&r));
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
        let (req, read_first) = match self
            .preauth
            .read(
                req.map(Body::http_body),
                sts,
                self.node.credentials.as_ref(),
            )
            .await
        {
            Ok(r) => r,
            Err(mut refused) => {
                if refused.status() == StatusCode::SERVICE_UNAVAILABLE {
                    // The forms' memory budget is spent (`preauth`).
                    self.metrics.slowed_down();
                }
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
            self.metrics.slowed_down();
            return Ok(slow_down());
        };
        let in_flight = self.metrics.begin();
        let api = if sts {
            "STS"
        } else if req.uri().path().starts_with(crate::admin::PREFIX) {
            "Admin"
        } else if guard::scope(req.uri().path()).is_some() {
            "Metrics"
        } else {
            ""
        };
        let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
        crate::telemetry::follow_caller(&span, req.headers());
        // The handler runs as its own task, so a client that disconnects (or times out) cannot
        // cancel it halfway: a write that changed some drives' records must get to settle them
        // (commit at quorum or roll back below it), or it leaves the key with no quorum at all.
        let s3 = self.s3.clone();
        let credentials = self.node.credentials.clone();
        let handler_notes = notes.clone();
        let handler = tokio::spawn(
            async move {
                let _permits = (permit, read_first);
                let (parts, body) = req.into_parts();
                let body = crate::auth::chunked::guard(&parts.headers, body, credentials.as_ref());
                crate::telemetry::with_notes(
                    handler_notes,
                    s3.call(Request::from_parts(parts, body)),
                )
                .await
            }
            .instrument(span),
        );
        let resp = match handler.await {
            Ok(r) => {
                let resp = r?;
                let mut n = notes.lock().unwrap_or_else(|e| e.into_inner());
                let api: std::borrow::Cow<'static, str> = match (api, n.operation.take()) {
                    ("", Some(op)) => op.into(),
                    ("", None) => "Unknown".into(),
                    (api, _) => api.into(),
                };
                if n.detailed {
                    n.api = Some(api.to_string());
                }
                drop(n);
                in_flight.answered(api, resp.status().as_u16());
                resp
            }
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

impl Router {
    /// A scrape of the metrics that does not go through s3s: public scraping, or a bearer
    /// token (a refused token is 403, with nothing else said). SigV4-signed scrapes go on to
    /// s3s, which checks the signature before [`guard::MetricsRoute`] decides.
    async fn scrape_before_s3s<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let scope = guard::scope(req.uri().path())?;
        let allowed = match self.metrics_auth {
            guard::AuthType::Public => true,
            guard::AuthType::Token => {
                let token = guard::bearer(req.headers())?;
                guard::token_allowed(
                    &self.node,
                    token,
                    req.headers(),
                    req.uri(),
                    req.extensions().get().copied(),
                )
            }
        };
        Some(if allowed {
            super::metrics::response(self.metrics.scrape(&self.node, scope).await)
        } else {
            s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied.")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(healthy: usize, healthy_here: usize) -> SetHealth {
        // 3 nodes x 2 drives, parity 2: read quorum 4, write quorum 4.
        SetHealth {
            healthy,
            healthy_here,
            read_quorum: 4,
            write_quorum: 4,
        }
    }

    #[test]
    fn quorums_and_maintenance() {
        let all = SiteHealth(vec![set(6, 2)]);
        assert!(all.write_ok() && all.read_ok() && all.write_ok_without_here());
        // Another node is down: this one must not go too.
        let one_down = SiteHealth(vec![set(4, 2)]);
        assert!(one_down.write_ok() && !one_down.write_ok_without_here());
        // This node's own drives are the ones missing: taking it down loses nothing more.
        let mine_down = SiteHealth(vec![set(4, 0)]);
        assert!(mine_down.write_ok_without_here());
        // Every set counts.
        let two = SiteHealth(vec![set(6, 2), set(3, 1)]);
        assert!(!two.write_ok() && !two.read_ok());
        assert_eq!(two.quorums(), (4, 4));
    }
}
