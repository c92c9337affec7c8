//! How the nodes of a site reach each other over gRPC (Raft and the data service).
//!
//! Production dials TCP; the simulator hands in a connector over its simulated network. Either way
//! a caller only asks for a [`Channel`] to `HOST:PORT`, so the Raft network and the data-service
//! client never open sockets themselves (DESIGN.md §9). Every internode request carries the site's
//! internode secret (random per site, not derived from the root password): a node that does not
//! share it is refused.
//!
//! With traces on, every request also carries the caller's W3C `traceparent` ([`TraceContext`]),
//! so a PUT through one node and the shard writes it makes on the others form one trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use subtle::ConstantTimeEq;
use thiserror::Error;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

/// gRPC metadata key carrying the internode token.
pub const TOKEN_HEADER: &str = "x-cairn-internode";
/// gRPC metadata key carrying the caller's trace (W3C Trace Context).
pub const TRACE_HEADER: &str = "traceparent";

/// The trace a call belongs to, handed in by the node when traces are on: the layers below the
/// node know spans (`tracing`) but not OpenTelemetry.
pub trait TraceContext: Send + Sync + 'static {
    /// The `traceparent` of the current span, if it is part of a trace.
    fn current(&self) -> Option<String>;
    /// Makes `span` (a server's span for one call) a child of the caller's `traceparent`.
    fn follow(&self, span: &tracing::Span, traceparent: &str);
}

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("invalid peer address {0:?}")]
    Address(String),
    #[error("invalid internode token: it must be printable ASCII")]
    Token,
    #[error("internode TLS: {0}")]
    Tls(String),
}

/// Makes a (lazily connecting) channel to `HOST:PORT`.
pub type Connect = Arc<dyn Fn(&str) -> Result<Channel, TransportError> + Send + Sync>;

/// Channels to peers (one per address, reused: a channel multiplexes HTTP/2 streams) and the token
/// that authenticates this site's nodes to each other.
#[derive(Clone)]
pub struct Transport {
    connect: Connect,
    token: AsciiMetadataValue,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// `None` (traces off) costs nothing per call.
    trace: Option<Arc<dyn TraceContext>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(connect: Connect, token: &str) -> Result<Self, TransportError> {
        let token = AsciiMetadataValue::try_from(token).map_err(|_| TransportError::Token)?;
        Ok(Self {
            connect,
            token,
            channels: Arc::default(),
            trace: None,
        })
    }

    /// Carries traces across the calls made and served with this transport.
    pub fn with_trace(mut self, trace: Option<Arc<dyn TraceContext>>) -> Self {
        self.trace = trace;
        self
    }

    /// Plain TCP: a dead peer fails within the connect timeout instead of hanging requests.
    pub fn tcp(token: &str) -> Result<Self, TransportError> {
        Self::tcp_tls(token, None)
    }

    /// TCP, with mutual TLS when `tls` is given (the peer's certificate is checked against the
    /// site's authorities and this node presents its own).
    pub fn tcp_tls(token: &str, tls: Option<ClientTlsConfig>) -> Result<Self, TransportError> {
        let connect: Connect = Arc::new(move |addr: &str| {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
                .map_err(|_| TransportError::Address(addr.to_string()))?;
            if let Some(tls) = &tls {
                ep = ep
                    .tls_config(tls.clone())
                    .map_err(|e| TransportError::Tls(e.to_string()))?;
            }
            let ep = ep
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true);
            Ok(ep.connect_lazy())
        });
        Self::new(connect, token)
    }

    /// The channel to `addr` (`HOST:PORT`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = (self.connect)(addr)?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Wraps a request message with this site's token and the caller's trace.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert(TOKEN_HEADER, self.token.clone());
        if let Some(parent) = self.trace.as_ref().and_then(|t| t.current()) {
            if let Ok(v) = AsciiMetadataValue::try_from(parent) {
                req.metadata_mut().insert(TRACE_HEADER, v);
            }
        }
        req
    }

    /// Makes `span`, a server's span for a request with `metadata`, part of the caller's trace.
    pub fn follow(&self, span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
        let Some(trace) = &self.trace else {
            return;
        };
        if let Some(parent) = metadata.get(TRACE_HEADER).and_then(|v| v.to_str().ok()) {
            trace.follow(span, parent);
        }
    }

    /// Server-side check, for `XxxServer::with_interceptor`: refuses requests without this
    /// site's token (compared in constant time).
    pub fn check(&self, req: Request<()>) -> Result<Request<()>, Status> {
        let ok = req
            .metadata()
            .get(TOKEN_HEADER)
            .map(|v| v.as_bytes().ct_eq(self.token.as_bytes()).into())
            .unwrap_or(false);
        if ok {
            Ok(req)
        } else {
            Err(Status::unauthenticated("not a node of this site"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_accepts_own_token_only() {
        let a = Transport::tcp("secret-a").unwrap();
        let b = Transport::tcp("secret-b").unwrap();
        assert!(a.check(a.request(())).is_ok());
        let denied = a.check(b.request(())).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::Unauthenticated);
        assert!(a.check(Request::new(())).is_err());
    }

    #[test]
    fn bad_token_is_rejected() {
        assert!(matches!(
            Transport::tcp("line\nbreak"),
            Err(TransportError::Token)
        ));
    }
}
