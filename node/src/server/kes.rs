//! The KES API listener on top of a node's KMS (the control plane's key registry, plus the static key if one
//! is configured), so that other sites, or anything speaking KES, can use this site's keys.
//!
//! Only clients with a certificate that chains to the certs directory's `CAs/` get past the TLS
//! handshake (the listener *requires* one, unlike the S3 port), and of those only the KES
//! identities listed in `CAIRN_KES_IDENTITIES` are let in: unset, nobody is. A CA that signs node
//! certificates usually signs more than the KES clients, so "signed by the CA" alone is opt-in
//! (`CAIRN_KES_IDENTITIES=*`). Every key operation a KES client may do here it could also do
//! through the admin API with root credentials, so being let in means being trusted with the keys.
//!
//! Routes, as in KES: `POST /v1/key/create/<name>`, `POST /v1/key/generate/<name>`,
//! `POST /v1/key/decrypt/<name>`, `GET /v1/status`, `GET /version`. Error bodies are KES'
//! `{"message": ...}` with KES' statuses (404 missing key, 400 bad request or key exists, 403 not
//! allowed) and, for the key states KES does not have, `cairn_key_state` (see [`crate::sse::kes::ErrorBody`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use serde::Serialize;
use tokio::net::TcpListener;
use tracing::Instrument;
use zeroize::Zeroizing;

use cairn_control_plane::kms::KmsCommand;
use cairn_control_plane::{Command, CommandError};

use crate::catalog::CatalogError;
use crate::net::Listen;
use crate::node::Node;
use crate::sse::kes::{
    context_from_bytes, identity_of, messages, DecryptRequest, DecryptResponse, ErrorBody,
    GenerateRequest, GenerateResponse, Identity, KesError, Status, MAX_BODY,
};
use crate::sse::kms::validate_key_name;
use crate::sse::{Context, DataKey, Kms, Secret, SseError, SseResult};

/// Address of the KES listener (`HOST:PORT` or `:PORT`); unset: no KES API.
pub const ADDRESS_ENV: &str = "CAIRN_KES_ADDRESS";
/// Comma-separated KES identities allowed in, or `*` for every client the CA vouches for; unset:
/// no client.
pub const IDENTITIES_ENV: &str = "CAIRN_KES_IDENTITIES";

/// KES' per-request timeout; also the TLS handshake and header read limit, so a silent client
/// cannot pin a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What the KES API serves from. The node's implementation is [`NodeKeys`]; tests use their own.
#[async_trait]
pub trait KeyService: Send + Sync {
    /// Creates key `name` with fresh material.
    async fn create(&self, name: &str) -> Result<(), KesError>;
    async fn generate(&self, name: &str, context: &Context) -> SseResult<DataKey>;
    async fn decrypt(&self, name: &str, ciphertext: &[u8], context: &Context) -> SseResult<Secret>;
    /// Whether the key store answers now, and how long it took (`/v1/status`).
    async fn probe(&self) -> Result<Duration, String>;
}

/// A node's keys: data keys through its KMS (registry, and the static key for its own name), new
/// keys proposed to the control plane like `cairn admin kms key create`.
pub struct NodeKeys {
    node: Arc<Node>,
    kms: Arc<dyn Kms>,
}

impl NodeKeys {
    /// `None` when the node has no KMS at all.
    pub fn new(node: Arc<Node>) -> Option<Self> {
        let kms = node.sse.site_kms()?;
        Some(Self { node, kms })
    }
}

#[async_trait]
impl KeyService for NodeKeys {
    async fn create(&self, name: &str) -> Result<(), KesError> {
        let registry = self
            .node
            .sse
            .registry
            .as_ref()
            .ok_or_else(crate::sse::registry::master_key_missing)?;
        let wrapped = registry.wrap_new_key(name)?;
        let cmd = KmsCommand::Create {
            name: name.to_string(),
            created_ns: self.node.objects.clock.now_ns(),
            wrapped,
        };
        self.node
            .catalog
            .propose(Command::Kms(cmd))
            .await
            .map_err(|e| match e {
                // A deleted key's name is never reused: to KES it still exists.
                CatalogError::Command(
                    CommandError::KmsKeyExists(n) | CommandError::KmsKeyDeleted(n),
                ) => KesError::KeyExists(n),
                CatalogError::Command(other) => SseError::KmsConfig(other.to_string()).into(),
                CatalogError::Unavailable(m) => SseError::KmsUnavailable(m).into(),
            })
    }

    async fn generate(&self, name: &str, context: &Context) -> SseResult<DataKey> {
        self.kms.generate_data_key(name, context).await
    }

    async fn decrypt(&self, name: &str, ciphertext: &[u8], context: &Context) -> SseResult<Secret> {
        self.kms.decrypt(name, ciphertext, context).await
    }

    async fn probe(&self) -> Result<Duration, String> {
        let start = Instant::now();
        self.node
            .catalog
            .state_linearizable()
            .await
            .map_err(|e| e.to_string())?;
        Ok(start.elapsed())
    }
}

/// Which verified clients may use the API.
#[derive(Clone, Debug)]
pub enum Allowed {
    /// Any certificate the CA vouches for (`CAIRN_KES_IDENTITIES=*`, explicitly).
    AnyTrusted,
    /// These identities; empty (the default) lets no client in.
    Only(BTreeSet<Identity>),
}

impl Allowed {
    /// Parses `CAIRN_KES_IDENTITIES`: comma-separated hex identities, or `*`.
    pub fn parse(list: &str) -> Result<Self, KesError> {
        if list.trim() == "*" {
            return Ok(Allowed::AnyTrusted);
        }
        let mut ids = BTreeSet::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id = Identity::parse(item).ok_or_else(|| {
                KesError::Listener(format!(
                    "{IDENTITIES_ENV}: {item:?} is not a KES identity (64 hex digits)"
                ))
            })?;
            ids.insert(id);
        }
        if ids.is_empty() {
            return Err(KesError::Listener(format!(
                "{IDENTITIES_ENV} is set but names no identity (list identities, or `*` for every \
                 certificate the CA signs)"
            )));
        }
        Ok(Allowed::Only(ids))
    }

    /// [`IDENTITIES_ENV`]; unset: nobody, logged so that the operator sees why clients get 403.
    pub fn from_env() -> Result<Self, KesError> {
        match std::env::var(IDENTITIES_ENV) {
            Ok(v) => Self::parse(&v),
            Err(_) => {
                tracing::warn!(
                    "{IDENTITIES_ENV} is not set: the KES API lets no client in; list the KES \
                     identities of its clients (or `*` for every certificate the CA signs)"
                );
                Ok(Allowed::Only(BTreeSet::new()))
            }
        }
    }

    fn admits(&self, id: Option<&Identity>) -> bool {
        match (self, id) {
            (_, None) => false,
            (Allowed::AnyTrusted, Some(_)) => true,
            (Allowed::Only(ids), Some(id)) => ids.contains(id),
        }
    }
}

/// TLS for the KES port: TLS 1.2+, HTTP/1.1, the node's certificate (`cert`, the S3 port's
/// reloading one, so a renewal applies here too), and a client certificate chaining to `ca_pem`
/// required at the handshake.
pub fn tls_config(
    ca_pem: &[u8],
    cert: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, KesError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem).filter_map(Result::ok) {
        roots
            .add(c)
            .map_err(|e| KesError::Listener(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(KesError::Listener(
            "no CA certificate to verify KES clients against".into(),
        ));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| KesError::Listener(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| KesError::Listener(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The KES API: routing, identity check, JSON in and out.
pub struct KesServer {
    keys: Arc<dyn KeyService>,
    allowed: Allowed,
    started: Instant,
}

type Reply = Response<Full<Bytes>>;

fn json<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    // Zeroized once hyper has the copy it writes (generate and decrypt carry a data key).
    let bytes = Zeroizing::new(serde_json::to_vec(body).unwrap_or_default());
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(&bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn fail(status: StatusCode, message: &str) -> Reply {
    fail_with(status, message, None)
}

fn fail_with(status: StatusCode, message: &str, key_state: Option<&str>) -> Reply {
    json(
        status,
        &ErrorBody {
            message: message.to_string(),
            cairn_key_state: key_state.map(str::to_string),
            ..Default::default()
        },
    )
}

/// KES' answer for a KMS error; messages carry no key material (see [`SseError`]).
fn sse_failure(e: &SseError) -> Reply {
    match e {
        SseError::KmsKeyNotFound(_) => fail(StatusCode::NOT_FOUND, messages::KEY_NOT_FOUND),
        SseError::KmsKeyDeleted(_) => fail_with(
            StatusCode::NOT_FOUND,
            messages::KEY_NOT_FOUND,
            Some("deleted"),
        ),
        SseError::KmsKeyDisabled(_) => fail_with(
            StatusCode::BAD_REQUEST,
            messages::KEY_DISABLED,
            Some("disabled"),
        ),
        SseError::KmsDecrypt => fail(StatusCode::BAD_REQUEST, messages::DECRYPT),
        SseError::KmsUnavailable(m) => fail(StatusCode::SERVICE_UNAVAILABLE, m),
        other => fail(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    }
}

/// `<name>` of `/v1/key/<op>/<name>`, if it is a valid key name.
fn key_name<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let name = path.strip_prefix(prefix)?;
    validate_key_name(name).ok().map(|_| name)
}

impl KesServer {
    pub fn new(keys: Arc<dyn KeyService>, allowed: Allowed) -> Self {
        Self {
            keys,
            allowed,
            started: Instant::now(),
        }
    }

    /// Answers one request from the client known as `identity` (`None`: no usable certificate).
    pub async fn handle(
        &self,
        identity: Option<&Identity>,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Reply {
        if !self.allowed.admits(identity) {
            return fail(StatusCode::FORBIDDEN, messages::NOT_ALLOWED);
        }
        const CREATE: &str = "/v1/key/create/";
        const GENERATE: &str = "/v1/key/generate/";
        const DECRYPT: &str = "/v1/key/decrypt/";
        let (expected, op) = match path {
            "/version" => (Method::GET, "version"),
            "/v1/status" => (Method::GET, "status"),
            p if p.starts_with(CREATE) => (Method::POST, "create"),
            p if p.starts_with(GENERATE) => (Method::POST, "generate"),
            p if p.starts_with(DECRYPT) => (Method::POST, "decrypt"),
            _ => return fail(StatusCode::NOT_FOUND, "not found"),
        };
        if *method != expected {
            return fail(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        let name = |prefix: &str| key_name(path, prefix).ok_or(());
        let bad_name = || fail(StatusCode::BAD_REQUEST, "invalid key name");
        match op {
            "version" => json(
                StatusCode::OK,
                &serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
            ),
            "status" => self.status().await,
            "create" => {
                let Ok(name) = name(CREATE) else {
                    return bad_name();
                };
                match self.keys.create(name).await {
                    Ok(()) => Response::new(Full::new(Bytes::new())),
                    Err(KesError::KeyExists(_)) => {
                        fail(StatusCode::BAD_REQUEST, messages::KEY_EXISTS)
                    }
                    Err(KesError::Sse(e)) => sse_failure(&e),
                    Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            "generate" => {
                let Ok(name) = name(GENERATE) else {
                    return bad_name();
                };
                // An empty body is a generate without context (KES clients send `{}`).
                let req: GenerateRequest = if body.is_empty() {
                    GenerateRequest::default()
                } else {
                    match serde_json::from_slice(body) {
                        Ok(r) => r,
                        Err(e) => return fail(StatusCode::BAD_REQUEST, &e.to_string()),
                    }
                };
                match self
                    .keys
                    .generate(name, &context_from_bytes(&req.context))
                    .await
                {
                    Ok(dk) => json(
                        StatusCode::OK,
                        &GenerateResponse {
                            plaintext: Zeroizing::new(dk.plaintext.to_vec()),
                            ciphertext: Zeroizing::new(dk.ciphertext),
                        },
                    ),
                    Err(e) => sse_failure(&e),
                }
            }
            _ => {
                let Ok(name) = name(DECRYPT) else {
                    return bad_name();
                };
                let req: DecryptRequest = match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => return fail(StatusCode::BAD_REQUEST, &e.to_string()),
                };
                match self
                    .keys
                    .decrypt(name, &req.ciphertext, &context_from_bytes(&req.context))
                    .await
                {
                    Ok(secret) => json(
                        StatusCode::OK,
                        &DecryptResponse {
                            plaintext: Zeroizing::new(secret.to_vec()),
                        },
                    ),
                    Err(e) => sse_failure(&e),
                }
            }
        }
    }

    async fn status(&self) -> Reply {
        let probe = self.keys.probe().await;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let status = Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            uptime: self.started.elapsed().as_secs() as f64,
            num_cpu: cpus,
            num_cpu_used: cpus,
            keystore_latency: probe
                .as_ref()
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            keystore_unreachable: probe.is_err(),
            keystore_unavailable: probe.is_err(),
            ..Default::default()
        };
        json(StatusCode::OK, &status)
    }

    /// Reads the body (at most [`MAX_BODY`]) and answers, in a span naming the request and client.
    async fn serve_request(&self, identity: Option<&Identity>, req: Request<Incoming>) -> Reply {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let span = tracing::info_span!(
            "kes",
            method = %parts.method,
            path = %path,
            client = identity.map(Identity::short).unwrap_or("-"),
        );
        async {
            let started = Instant::now();
            // Requests of this API carry ciphertexts and contexts, not secrets; wiped after use
            // all the same, as a client may send anything.
            let body = match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => Zeroizing::new(b.to_bytes().to_vec()),
                Err(_) => {
                    return fail(
                        StatusCode::BAD_REQUEST,
                        "request body too large or unreadable",
                    )
                }
            };
            let reply = self.handle(identity, &parts.method, &path, &body).await;
            let status = reply.status();
            if status.is_success() {
                tracing::debug!(
                    status = status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "KES request"
                );
            } else {
                tracing::info!(
                    status = status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "KES request refused"
                );
            }
            reply
        }
        .instrument(span)
        .await
    }
}

/// Accepts KES connections on `listener` until the process ends.
pub async fn serve<L: Listen>(
    mut listener: L,
    acceptor: tokio_rustls::TlsAcceptor,
    server: Arc<KesServer>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "KES accept failed");
                continue;
            }
        };
        let (acceptor, server) = (acceptor.clone(), server.clone());
        tokio::spawn(async move { serve_connection(stream, peer, acceptor, server).await });
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    server: Arc<KesServer>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tls = match tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // A client without a certificate from the CA ends here.
            tracing::info!(%peer, error = %e, "KES TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "KES TLS handshake timed out");
            return;
        }
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|c| identity_of(c.as_ref()));
    tracing::debug!(%peer, client = identity.as_ref().map(Identity::short).unwrap_or("-"), "KES connection");
    let identity = Arc::new(identity);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (server, identity) = (server.clone(), identity.clone());
        async move {
            let reply = match tokio::time::timeout(
                REQUEST_TIMEOUT,
                server.serve_request(identity.as_ref().as_ref(), req),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => fail(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
            };
            Ok::<_, std::convert::Infallible>(reply)
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT);
    if let Err(e) = http.serve_connection(TokioIo::new(tls), svc).await {
        tracing::debug!(%peer, error = %e, "KES connection ended with an error");
    }
}

/// Binds `addr` and serves the KES API there in the background; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<KesServer>,
) -> Result<SocketAddr, KesError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| KesError::Listener(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| KesError::Listener(e.to_string()))?;
    tokio::spawn(serve(
        listener,
        tokio_rustls::TlsAcceptor::from(tls),
        server,
    ));
    Ok(local)
}

/// Serves `node`'s KMS over KES on `addr` (see [`tls_config`] for `ca_pem` and `cert`), letting in
/// the identities of `CAIRN_KES_IDENTITIES` (none when unset).
pub async fn start_for_node(
    addr: SocketAddr,
    ca_pem: &[u8],
    cert: Arc<dyn ResolvesServerCert>,
    node: Arc<Node>,
) -> Result<SocketAddr, KesError> {
    let keys = NodeKeys::new(node)
        .ok_or_else(|| KesError::Listener("this node has no KMS to serve".into()))?;
    let allowed = Allowed::from_env()?;
    let bound = spawn(
        addr,
        tls_config(ca_pem, cert)?,
        Arc::new(KesServer::new(Arc::new(keys), allowed.clone())),
    )
    .await?;
    tracing::info!(%bound, allowed = ?allowed, "KES API listening (mutual TLS)");
    Ok(bound)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sse::kms::{new_data_key, open_blob};
    use rand::SeedableRng;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use cairn_control_plane::kms::KeyState;

    /// An in-memory key store with the registry's states.
    pub(crate) struct MemKeys {
        keys: Mutex<BTreeMap<String, ([u8; 32], KeyState)>>,
        rng: Mutex<rand_chacha::ChaCha20Rng>,
    }

    impl MemKeys {
        pub(crate) fn new() -> Self {
            Self {
                keys: Mutex::new(BTreeMap::new()),
                rng: Mutex::new(rand_chacha::ChaCha20Rng::seed_from_u64(3)),
            }
        }

        pub(crate) fn set(&self, name: &str, state: KeyState) {
            if let Some(k) = self.keys.lock().unwrap().get_mut(name) {
                k.1 = state;
            }
        }

        fn material(&self, name: &str) -> SseResult<[u8; 32]> {
            match self.keys.lock().unwrap().get(name) {
                None => Err(SseError::KmsKeyNotFound(name.into())),
                Some((_, KeyState::Disabled)) => Err(SseError::KmsKeyDisabled(name.into())),
                Some((_, KeyState::Deleted)) => Err(SseError::KmsKeyDeleted(name.into())),
                Some((k, KeyState::Enabled)) => Ok(*k),
            }
        }
    }

    #[async_trait]
    impl KeyService for MemKeys {
        async fn create(&self, name: &str) -> Result<(), KesError> {
            let mut keys = self.keys.lock().unwrap();
            if keys.contains_key(name) {
                return Err(KesError::KeyExists(name.into()));
            }
            let mut k = [0u8; 32];
            rand::RngCore::fill_bytes(&mut *self.rng.lock().unwrap(), &mut k);
            keys.insert(name.into(), (k, KeyState::Enabled));
            Ok(())
        }
        async fn generate(&self, name: &str, context: &Context) -> SseResult<DataKey> {
            let m = self.material(name)?;
            new_data_key(&m, b"mem", name, context, &mut *self.rng.lock().unwrap())
        }
        async fn decrypt(&self, name: &str, c: &[u8], context: &Context) -> SseResult<Secret> {
            let m = self.material(name)?;
            open_blob(&m, b"mem", name, context, c)
        }
        async fn probe(&self) -> Result<Duration, String> {
            Ok(Duration::from_micros(5))
        }
    }

    fn id(c: char) -> Identity {
        Identity(c.to_string().repeat(64))
    }

    async fn call(
        s: &KesServer,
        who: Option<&Identity>,
        m: Method,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let r = s.handle(who, &m, path, body.as_bytes()).await;
        let status = r.status().as_u16();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    #[tokio::test]
    async fn key_api_round_trip_and_kes_errors() {
        let keys = Arc::new(MemKeys::new());
        let s = KesServer::new(keys.clone(), Allowed::AnyTrusted);
        let me = id('a');
        let who = Some(&me);
        assert_eq!(
            call(&s, who, Method::POST, "/v1/key/create/k1", "").await.0,
            200
        );
        let (st, v) = call(&s, who, Method::POST, "/v1/key/create/k1", "").await;
        assert_eq!(
            (st, v["message"].as_str()),
            (400, Some("key already exists"))
        );
        let (st, v) = call(&s, who, Method::POST, "/v1/key/create/bad name", "").await;
        assert_eq!((st, v["message"].as_str()), (400, Some("invalid key name")));

        let (st, gen) = call(
            &s,
            who,
            Method::POST,
            "/v1/key/generate/k1",
            r#"{"context":"YWJj"}"#,
        )
        .await;
        assert_eq!(st, 200, "{gen}");
        let plaintext = gen["plaintext"].as_str().unwrap().to_string();
        let ciphertext = gen["ciphertext"].as_str().unwrap().to_string();
        let body = format!(r#"{{"ciphertext":"{ciphertext}","context":"YWJj"}}"#);
        let (st, dec) = call(&s, who, Method::POST, "/v1/key/decrypt/k1", &body).await;
        assert_eq!(
            (st, dec["plaintext"].as_str()),
            (200, Some(plaintext.as_str()))
        );
        // Another context, or none: not authentic.
        let other = format!(r#"{{"ciphertext":"{ciphertext}","context":"YWJk"}}"#);
        let (st, v) = call(&s, who, Method::POST, "/v1/key/decrypt/k1", &other).await;
        assert_eq!((st, v["message"].as_str()), (400, Some(messages::DECRYPT)));
        let none = format!(r#"{{"ciphertext":"{ciphertext}"}}"#);
        assert_eq!(
            call(&s, who, Method::POST, "/v1/key/decrypt/k1", &none)
                .await
                .0,
            400
        );
        // Generate without a body: no context.
        assert_eq!(
            call(&s, who, Method::POST, "/v1/key/generate/k1", "")
                .await
                .0,
            200
        );

        let (st, v) = call(&s, who, Method::POST, "/v1/key/generate/nope", "{}").await;
        assert_eq!(
            (st, v["message"].as_str()),
            (404, Some("key does not exist"))
        );
        assert!(v.get("cairn_key_state").is_none());
        keys.set("k1", KeyState::Disabled);
        let (st, v) = call(&s, who, Method::POST, "/v1/key/decrypt/k1", &body).await;
        assert_eq!(st, 400);
        assert_eq!(v["cairn_key_state"], "disabled");
        keys.set("k1", KeyState::Deleted);
        let (st, v) = call(&s, who, Method::POST, "/v1/key/decrypt/k1", &body).await;
        assert_eq!(
            (st, v["message"].as_str()),
            (404, Some("key does not exist"))
        );
        assert_eq!(v["cairn_key_state"], "deleted");

        // Malformed requests.
        let (st, _) = call(&s, who, Method::POST, "/v1/key/decrypt/k1", "{").await;
        assert_eq!(st, 400);
        let (st, _) = call(
            &s,
            who,
            Method::POST,
            "/v1/key/decrypt/k1",
            r#"{"ciphertext":"%%"}"#,
        )
        .await;
        assert_eq!(st, 400);
        assert_eq!(
            call(&s, who, Method::GET, "/v1/key/generate/k1", "")
                .await
                .0,
            405
        );
        assert_eq!(call(&s, who, Method::GET, "/v1/nothing", "").await.0, 404);

        let (st, v) = call(&s, who, Method::GET, "/v1/status", "").await;
        assert_eq!(st, 200);
        assert_eq!(v["keystore_unreachable"], false);
        assert_eq!(v["keystore_latency"], 5000);
        assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()));
    }

    #[tokio::test]
    async fn only_listed_identities_are_let_in() {
        let s = KesServer::new(
            Arc::new(MemKeys::new()),
            Allowed::parse(&format!(" {} ,", id('b').0.to_uppercase())).unwrap(),
        );
        let (st, v) = call(&s, Some(&id('a')), Method::GET, "/v1/status", "").await;
        assert_eq!(
            (st, v["message"].as_str()),
            (403, Some(messages::NOT_ALLOWED))
        );
        assert_eq!(call(&s, None, Method::GET, "/v1/status", "").await.0, 403);
        assert_eq!(
            call(&s, Some(&id('b')), Method::GET, "/v1/status", "")
                .await
                .0,
            200
        );
        assert!(Allowed::parse("xyz").is_err());
        assert!(Allowed::parse(" , ").is_err());
        assert!(matches!(Allowed::parse(" * "), Ok(Allowed::AnyTrusted)));
        let nobody = KesServer::new(Arc::new(MemKeys::new()), Allowed::Only(BTreeSet::new()));
        assert_eq!(
            call(&nobody, Some(&id('b')), Method::GET, "/v1/status", "")
                .await
                .0,
            403,
            "an empty list lets nobody in"
        );
    }
}
