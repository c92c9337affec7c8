//! Signed HTTP(S) requests to a peer site's S3 endpoint, carrying the W3C `traceparent` of the
//! calling span when traces are on (and [`Link::get`] and [`Link::post`], the unsigned fetches of
//! an identity provider's public documents and the audit webhook's posts, over the same
//! handed-in network and roots).
//!
//! Sites talk over their public S3 port, as an operator's `aws` or `cairn admin` would: a peer is
//! a set of URLs (its load balancer, or its nodes) plus credentials, and nothing about its nodes or
//! internode token is shared. A call tries the URLs in turn (`Contacts::order`: the one that
//! answered last first), moving on only when one cannot be reached: once a request went out, its
//! (streamed) body is spent, and an HTTP answer, even an error, is the peer's answer. The network
//! is handed in as a [`Dial`] (DESIGN.md §9), so the simulator can run two sites on its own
//! network; TLS (rustls, the certificates directory's `CAs/` as roots) runs over whatever it
//! returns.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use thiserror::Error;
use tracing::Instrument;

pub mod contacts;

use crate::clock::SharedClock;
use crate::net::{Dial, Stream};
use crate::sign::{amz_date, SignRequest, Signer, UNSIGNED_PAYLOAD};
use contacts::Contacts;

/// The path prefix of Cairn's admin API, where a peer site takes replicated commands.
pub const ADMIN_PREFIX: &str = "/cairn/admin/v1/";

/// Marks a read one site proxies to a peer (its value: the asking site). The peer answers it from
/// what it holds and never proxies it further, so two sites missing a key cannot ask each other
/// in a loop; from anyone but a pair's replication identity it only turns proxying off.
pub const PROXIED_HEADER: &str = "x-cairn-proxied-by";

/// Connecting plus the TLS and HTTP handshakes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From the request's start to the response's headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer [`Link::call`] reads: a peer, or whatever answers at its address, cannot make
/// this node hold more.
const MAX_ANSWER: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("invalid peer endpoint {0:?}")]
    Endpoint(String),
    #[error("peer {0} has no endpoint")]
    NoEndpoint(String),
    #[error("peer {endpoint} unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("peer {endpoint} answered HTTP {status}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        message: String,
    },
}

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn full(b: Bytes) -> Body {
    http_body_util::Full::new(b)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Where a peer is and who signs for this site there.
#[derive(Clone)]
pub struct PeerTarget {
    /// Names the peer in contacts and metrics (its site name).
    pub name: String,
    /// Where it answers, any of them (tried in turn).
    pub endpoints: Vec<String>,
    pub access_key: String,
    pub secret_key: zeroize::Zeroizing<String>,
    pub region: String,
}

impl std::fmt::Debug for PeerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTarget")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// One request to a peer: `path` already URI-encoded, `query` raw.
pub struct PeerRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    /// Extra headers, signed too (lower-case names).
    pub headers: &'a [(&'a str, String)],
    pub body: Body,
}

/// The authorities in `dir/CAs/` (PEM, concatenated, in file name order), trusted for outbound
/// TLS: peer sites, the LDAP directory, OpenID providers, and the admin CLI's servers. Nothing
/// when the directory does not exist.
pub fn trusted_cas(dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut ca_pem = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("CAs")) {
        let mut paths: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths.iter().filter(|p| p.is_file()) {
            ca_pem.extend(std::fs::read(p)?);
            ca_pem.push(b'\n');
        }
    }
    Ok(ca_pem)
}

/// An `http(s)://` URL taken apart for dialing.
struct Url {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    uri: hyper::Uri,
}

impl Url {
    fn parse(url: &str) -> Result<Self, LinkError> {
        let bad = || LinkError::Endpoint(url.to_owned());
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?.to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri.authority().ok_or_else(bad)?.to_string();
        Ok(Self {
            tls,
            host,
            port,
            authority,
            uri,
        })
    }
}

/// Sends signed requests to peer sites.
#[derive(Clone)]
pub struct Link {
    dial: Arc<dyn Dial>,
    tls: tokio_rustls::TlsConnector,
    /// What every call saw of its peer (`cairn admin site status`).
    pub contacts: Arc<Contacts>,
    /// From a request's start to its answer's headers, and again for its body.
    response_timeout: Duration,
}

impl Link {
    /// `ca_pem`: the authorities trusted for `https` peers; `clock` times the contacts.
    pub fn new(dial: Arc<dyn Dial>, ca_pem: &[u8], clock: SharedClock) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem).flatten() {
            let _ = roots.add(c);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let config = match config {
            Ok(c) => c,
            // Both versions are supported by aws-lc-rs; unreachable, but never a panic.
            Err(_) => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        Self {
            dial,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            contacts: Arc::new(Contacts::new(clock)),
            response_timeout: RESPONSE_TIMEOUT,
        }
    }

    /// The same link with another response timeout (the admin CLI waits for a long heal).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sends `req` to `peer`, signed with its credentials (`UNSIGNED-PAYLOAD`: bodies stream),
    /// at the first of its endpoints that takes a connection. A non-2xx answer is
    /// [`LinkError::Status`] with the start of the peer's message. The outcome is noted in
    /// [`Link::contacts`].
    pub async fn send(
        &self,
        peer: &PeerTarget,
        req: PeerRequest<'_>,
    ) -> Result<hyper::Response<Incoming>, LinkError> {
        self.send_any(peer, req, false).await.map(|(_, r)| r)
    }

    /// [`Link::send`], but any HTTP answer is the peer's answer, returned as it came (a proxied
    /// read passes the peer's 304, 412 or 404 on to its client).
    pub async fn forward(
        &self,
        peer: &PeerTarget,
        req: PeerRequest<'_>,
    ) -> Result<hyper::Response<Incoming>, LinkError> {
        self.send_any(peer, req, true).await.map(|(_, r)| r)
    }

    /// [`Link::send`] (or [`Link::forward`] with `any_status`), and which endpoint answered.
    async fn send_any(
        &self,
        peer: &PeerTarget,
        req: PeerRequest<'_>,
        any_status: bool,
    ) -> Result<(String, hyper::Response<Incoming>), LinkError> {
        let mut last = LinkError::NoEndpoint(peer.name.clone());
        for endpoint in self.contacts.order(&peer.endpoints) {
            let url = match Url::parse(&endpoint) {
                Ok(u) => u,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let sender = match self.connect(&endpoint, &url.host, url.port, url.tls).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(peer = %peer.name, %endpoint, error = %e, "peer endpoint unreachable, trying the next");
                    self.contacts.unreachable(&endpoint, e.to_string());
                    last = e;
                    continue;
                }
            };
            // One span per call: the trace a peer's request span joins (`traceparent`), a
            // child of the caller's span when there is one.
            let span = tracing::info_span!("peer_call", peer = %peer.name, method = req.method, path = req.path);
            let r = self
                .exchange(peer, &endpoint, &url.authority, sender, req, any_status)
                .instrument(span)
                .await;
            match &r {
                Ok(_) => self.contacts.answered(&endpoint, None),
                Err(e @ LinkError::Status { .. }) => {
                    self.contacts.answered(&endpoint, Some(e.to_string()))
                }
                Err(e) => self.contacts.unreachable(&endpoint, e.to_string()),
            }
            return r.map(|resp| (endpoint, resp));
        }
        Err(last)
    }

    /// Signs `req` for `endpoint` (its `host` is signed) and sends it on `sender`; a non-2xx
    /// answer is an error unless `any_status`.
    async fn exchange(
        &self,
        peer: &PeerTarget,
        endpoint: &str,
        authority: &str,
        mut sender: hyper::client::conn::http1::SendRequest<Body>,
        req: PeerRequest<'_>,
        any_status: bool,
    ) -> Result<hyper::Response<Incoming>, LinkError> {
        let endpoint = endpoint.to_owned();
        let bad = || LinkError::Endpoint(endpoint.clone());
        // The peer's s3s checks the signature date against its operating system's clock, not
        // a handed-in one, so the date must be OS time (it reaches nothing else).
        let date = amz_date(time::OffsetDateTime::now_utc());
        let mut signed: Vec<(&str, &str)> = vec![
            ("host", authority),
            ("x-amz-date", &date),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ];
        signed.extend(req.headers.iter().map(|(k, v)| (*k, v.as_str())));
        // The peer's request span joins this trace (`telemetry::follow_caller` over there).
        let traceparent = crate::telemetry::current_traceparent();
        if let Some(tp) = &traceparent {
            signed.push(("traceparent", tp));
        }
        let query: Vec<(&str, &str)> = req.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut signer = Signer::new(&peer.access_key, &peer.secret_key, &peer.region, "s3");
        let auth = signer.authorization(&SignRequest {
            method: req.method,
            path: req.path,
            query: &query,
            headers: &signed,
            payload_hash: UNSIGNED_PAYLOAD,
            amz_date: &date,
        });
        let query_string = req
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::sign::uri_encode(v, true)))
            .collect::<Vec<_>>()
            .join("&");
        let target = if query_string.is_empty() {
            req.path.to_string()
        } else {
            format!("{}?{query_string}", req.path)
        };
        let mut builder = hyper::Request::builder()
            .method(req.method)
            .uri(target)
            .header("authorization", auth);
        for (k, v) in &signed {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(req.body).map_err(|_| bad())?;
        let unreachable = |reason: String| LinkError::Unreachable {
            endpoint: endpoint.clone(),
            reason,
        };
        let resp = tokio::time::timeout(self.response_timeout, sender.send_request(request))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(format!("request: {e}")))?;
        if any_status || resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(self.response_timeout, resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Err(LinkError::Status {
            endpoint,
            status,
            message,
        })
    }

    /// An HTTP/1.1 connection to `host:port` (TLS when `tls`), handshakes done within
    /// [`CONNECT_TIMEOUT`]; `endpoint` names the peer in errors.
    async fn connect(
        &self,
        endpoint: &str,
        host: &str,
        port: u16,
        tls: bool,
    ) -> Result<hyper::client::conn::http1::SendRequest<Body>, LinkError> {
        let unreachable = |reason: String| LinkError::Unreachable {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let connect = async {
            let stream = self
                .dial
                .dial(host, port)
                .await
                .map_err(|e| unreachable(format!("connect: {e}")))?;
            let stream: Box<dyn Stream> = if tls {
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|_| LinkError::Endpoint(endpoint.to_owned()))?;
                Box::new(
                    self.tls
                        .connect(name, stream)
                        .await
                        .map_err(|e| unreachable(format!("TLS: {e}")))?,
                )
            } else {
                stream
            };
            hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(format!("HTTP: {e}")))
        };
        let (sender, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| unreachable("connect timed out".into()))??;
        let label = endpoint.to_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %label, error = %e, "peer connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// An unsigned `GET` of `url` (an identity provider's discovery document or keys, which are
    /// public): the body of a 2xx answer, refused past `max` bytes.
    pub async fn get(&self, url: &str, max: usize) -> Result<Bytes, LinkError> {
        let accept = [("accept", "application/json".to_owned())];
        self.unsigned("GET", url, &accept, empty(), max).await
    }

    /// An unsigned `POST` of `body` to `url` with `headers` (the audit log's webhook): the body
    /// of a 2xx answer, refused past `max` bytes.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        max: usize,
    ) -> Result<Bytes, LinkError> {
        self.unsigned("POST", url, headers, full(body), max).await
    }

    /// One unsigned request to `url` on a connection of its own.
    async fn unsigned(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
        max: usize,
    ) -> Result<Bytes, LinkError> {
        let bad = || LinkError::Endpoint(url.to_owned());
        let Url {
            tls,
            host,
            port,
            authority,
            uri,
        } = Url::parse(url)?;
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header("host", authority);
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        let request = builder.body(body).map_err(|_| bad())?;
        let unreachable = |reason: String| LinkError::Unreachable {
            endpoint: url.to_owned(),
            reason,
        };
        let mut sender = self.connect(url, &host, port, tls).await?;
        let resp = tokio::time::timeout(self.response_timeout, sender.send_request(request))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(format!("request: {e}")))?;
        if !resp.status().is_success() {
            return Err(LinkError::Status {
                endpoint: url.to_owned(),
                status: resp.status().as_u16(),
                message: String::new(),
            });
        }
        tokio::time::timeout(
            self.response_timeout,
            http_body_util::Limited::new(resp.into_body(), max).collect(),
        )
        .await
        .map_err(|_| unreachable("answer timed out".into()))?
        .map(|b| b.to_bytes())
        .map_err(|e| unreachable(format!("reading the answer (at most {max} bytes): {e}")))
    }

    /// POSTs `body` as JSON to the peer's admin operation `op` (e.g. `site/apply`) and decodes
    /// its JSON answer; an answer that does not decode counts as the peer being unreachable.
    pub async fn admin_json<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        peer: &PeerTarget,
        op: &str,
        body: &Req,
    ) -> Result<Resp, LinkError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        let path = format!("{ADMIN_PREFIX}{op}");
        let answer = self
            .call(
                peer,
                PeerRequest {
                    method: "POST",
                    path: &path,
                    query: &[],
                    headers: &[],
                    body: full(body.into()),
                },
            )
            .await?;
        serde_json::from_slice(&answer).map_err(|e| LinkError::Unreachable {
            endpoint: peer.name.clone(),
            reason: format!("invalid answer: {e}"),
        })
    }

    /// Sends `req` and reads the whole (small: at most [`MAX_ANSWER`] bytes) answer.
    pub async fn call(&self, peer: &PeerTarget, req: PeerRequest<'_>) -> Result<Bytes, LinkError> {
        let (endpoint, resp) = self.send_any(peer, req, false).await?;
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
        tokio::time::timeout(self.response_timeout, body.collect())
            .await
            .map_err(|_| LinkError::Unreachable {
                endpoint: endpoint.clone(),
                reason: "answer timed out".into(),
            })?
            .map(|b| b.to_bytes())
            .map_err(|e| LinkError::Unreachable {
                endpoint,
                reason: format!("reading the answer (at most {MAX_ANSWER} bytes): {e}"),
            })
    }
}
