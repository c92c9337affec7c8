//! A [`Kms`] backed by a KES server (another Cairn site's `CAIRN_KES_ADDRESS`, or MinIO KES), over
//! mutual TLS, configured like MinIO's `MINIO_KMS_KES_*`:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `CAIRN_KMS_KES_ENDPOINT` | `https://HOST:PORT`, or several comma-separated (tried in order) |
//! | `CAIRN_KMS_KES_CERT_FILE` | this client's certificate (PEM): its KES identity |
//! | `CAIRN_KMS_KES_KEY_FILE` | the certificate's private key (PEM) |
//! | `CAIRN_KMS_KES_KEY_NAME` | the default key: SSE-S3, and SSE-KMS without a key id |
//! | `CAIRN_KMS_KES_CAPATH` | CA certificate file or directory to verify the server; default: the certs directory's `CAs/` |
//!
//! Every key id is sent to KES (none falls through to the local registry), and KES' answers map
//! onto the same [`SseError`]s as the built-in registry's, so S3 clients see the same error codes
//! whichever KMS a site uses.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tracing::Instrument;
use zeroize::Zeroizing;

use super::{
    context_to_bytes, identity_of, messages, DecryptRequest, DecryptResponse, ErrorBody,
    GenerateRequest, GenerateResponse, Identity, Status, MAX_BODY,
};
use crate::sse::kms::validate_key_name;
use crate::sse::{Context, DataKey, Kms, Secret, SseError, SseResult, KEY_LEN};

pub const ENDPOINT_ENV: &str = "CAIRN_KMS_KES_ENDPOINT";
pub const KEY_FILE_ENV: &str = "CAIRN_KMS_KES_KEY_FILE";
pub const CERT_FILE_ENV: &str = "CAIRN_KMS_KES_CERT_FILE";
pub const KEY_NAME_ENV: &str = "CAIRN_KMS_KES_KEY_NAME";
pub const CAPATH_ENV: &str = "CAIRN_KMS_KES_CAPATH";

/// Connecting plus the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, connection included (KES' own API timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections kept per endpoint: a data key per object write and read, each on its own
/// TLS handshake, would cost more than the request.
const POOL_SIZE: usize = 8;
/// Idle connections older than this are dropped rather than reused: servers close idle
/// connections after a while (Go's default is in the minutes, some proxies much sooner), and a
/// request racing that close would fail.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// One KES server address.
struct Endpoint {
    /// As configured, for messages.
    url: String,
    host: String,
    port: u16,
    /// `HOST:PORT` for the `Host` header.
    authority: String,
    server_name: ServerName<'static>,
    /// Connections back from a finished exchange, with when they became idle.
    idle: Mutex<Vec<(Instant, SendRequest<Full<Bytes>>)>>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{url:?}: KES is only spoken over https://"));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        let port = auth.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{url:?}: {host:?} is not a host name or IP address"))?;
        Ok(Self {
            url: url.to_string(),
            host: host.to_string(),
            port,
            authority: auth.as_str().to_string(),
            server_name,
            idle: Mutex::new(Vec::new()),
        })
    }
}

/// A failure to reach an endpoint (the next one is tried), as opposed to an answer.
struct Unreachable(String);

/// A KES client: the [`Kms`] of a site whose keys live in KES.
pub struct KesClient {
    endpoints: Vec<Endpoint>,
    default_key: String,
    tls: tokio_rustls::TlsConnector,
    identity: Identity,
}

impl std::fmt::Debug for KesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.url.as_str()).collect();
        write!(f, "KesClient({urls:?}, key {})", self.default_key)
    }
}

fn config_err(var: &str, msg: impl std::fmt::Display) -> SseError {
    SseError::KmsConfig(format!("{var}: {msg}"))
}

fn read_file(var: &str, path: &Path) -> SseResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| config_err(var, format!("cannot read {}: {e}", path.display())))
}

/// PEM certificates from a file, or from every file of a directory (sorted).
fn read_ca_path(path: &Path) -> SseResult<Vec<u8>> {
    if !path.is_dir() {
        return read_file(CAPATH_ENV, path);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| config_err(CAPATH_ENV, format!("cannot read {}: {e}", path.display())))?;
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut pem = Vec::new();
    for f in files {
        pem.extend(read_file(CAPATH_ENV, &f)?);
        pem.push(b'\n');
    }
    Ok(pem)
}

fn required_env(var: &str) -> SseResult<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(config_err(var, format!("must be set with {ENDPOINT_ENV}"))),
    }
}

impl KesClient {
    /// Reads `CAIRN_KMS_KES_*`; `Ok(None)` when no endpoint is set. `certs_ca` is what the node
    /// trusts from its certs directory (`CAs/`), used when `CAIRN_KMS_KES_CAPATH` is unset.
    pub fn from_env(certs_ca: Option<&[u8]>) -> SseResult<Option<Self>> {
        let endpoints = match std::env::var(ENDPOINT_ENV) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => return Ok(None),
        };
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let key_path = required_env(KEY_FILE_ENV)?;
        let cert_path = required_env(CERT_FILE_ENV)?;
        let key_name = required_env(KEY_NAME_ENV)?;
        let key_pem = Zeroizing::new(read_file(KEY_FILE_ENV, Path::new(&key_path))?);
        let cert_pem = read_file(CERT_FILE_ENV, Path::new(&cert_path))?;
        let ca_pem = match std::env::var(CAPATH_ENV) {
            Ok(p) if !p.trim().is_empty() => read_ca_path(Path::new(p.trim()))?,
            _ => certs_ca.map(<[u8]>::to_vec).ok_or_else(|| {
                config_err(
                    CAPATH_ENV,
                    "not set, and the certs directory has no CAs/ to verify the KES server with",
                )
            })?,
        };
        Self::new(&endpoints, &cert_pem, &key_pem, &ca_pem, &key_name).map(Some)
    }

    /// A client for `endpoints` presenting `cert_pem`/`key_pem`, trusting `ca_pem`, whose default
    /// key is `default_key`. Errors name the variable to fix.
    pub fn new(
        endpoints: &[String],
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        default_key: &str,
    ) -> SseResult<Self> {
        if endpoints.is_empty() {
            return Err(config_err(ENDPOINT_ENV, "names no endpoint"));
        }
        let endpoints = endpoints
            .iter()
            .map(|e| Endpoint::parse(e).map_err(|m| config_err(ENDPOINT_ENV, m)))
            .collect::<SseResult<Vec<_>>>()?;
        validate_key_name(default_key).map_err(|e| config_err(KEY_NAME_ENV, e))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .filter_map(Result::ok)
            .collect();
        let identity = chain
            .first()
            .and_then(|c| identity_of(c.as_ref()))
            .ok_or_else(|| config_err(CERT_FILE_ENV, "holds no PEM certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| config_err(KEY_FILE_ENV, "holds no PEM private key"))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem).filter_map(Result::ok) {
            roots
                .add(c)
                .map_err(|e| config_err(CAPATH_ENV, format!("bad CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(config_err(CAPATH_ENV, "holds no PEM CA certificate"));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| SseError::KmsConfig(format!("KES TLS: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                SseError::KmsConfig(format!(
                    "{CERT_FILE_ENV} and {KEY_FILE_ENV} do not form a TLS identity: {e}"
                ))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            endpoints,
            default_key: default_key.to_string(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            identity,
        })
    }

    /// This client's KES identity (what a KES server's policy or `CAIRN_KES_IDENTITIES` lists).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// `POST /v1/key/create/<name>`.
    pub async fn create_key(&self, name: &str) -> SseResult<()> {
        check_name(name)?;
        self.call(
            Method::POST,
            &format!("/v1/key/create/{name}"),
            name,
            Bytes::new(),
        )
        .await
        .map(drop)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> SseResult<Status> {
        let body = self
            .call(Method::GET, "/v1/status", "", Bytes::new())
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| SseError::KmsUnavailable(format!("KES status is not valid JSON: {e}")))
    }

    /// Sends one request to the first endpoint that answers; returns the body of a 2xx answer,
    /// and maps any other onto an [`SseError`] about `key`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Bytes,
    ) -> SseResult<Zeroizing<Vec<u8>>> {
        let span = tracing::debug_span!("kes_client", %method, path);
        async {
            let mut failures = Vec::new();
            for ep in &self.endpoints {
                let started = Instant::now();
                let attempt = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    // Everything but create can be sent twice without harm.
                    self.send(ep, &method, path, body.clone(), !path.starts_with("/v1/key/create/")),
                )
                .await
                .unwrap_or_else(|_| Err(Unreachable("timed out".into())));
                match attempt {
                    Ok((status, bytes)) => {
                        tracing::debug!(
                            endpoint = %ep.url,
                            status = status.as_u16(),
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "KES answered"
                        );
                        return answer(status, bytes, key);
                    }
                    Err(Unreachable(why)) => {
                        tracing::warn!(endpoint = %ep.url, error = %why, "KES endpoint unreachable");
                        failures.push(format!("{}: {why}", ep.url));
                    }
                }
            }
            Err(SseError::KmsUnavailable(format!(
                "no KES endpoint answered ({})",
                failures.join("; ")
            )))
        }
        .instrument(span)
        .await
    }

    fn request(ep: &Endpoint, method: &Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method.clone();
        *req.uri_mut() = http::Uri::try_from(path).unwrap_or_default();
        let h = req.headers_mut();
        if let Ok(v) = http::HeaderValue::from_str(&ep.authority) {
            h.insert(http::header::HOST, v);
        }
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        req
    }

    /// One exchange with `ep`: on an idle pooled connection if one takes the request, else on a
    /// new one. A request a pooled connection did not send goes to the next one; one it sent but
    /// got no answer for (the server closed it meanwhile) is sent again on a new connection only
    /// if `idempotent` (create is not).
    async fn send(
        &self,
        ep: &Endpoint,
        method: &Method,
        path: &str,
        body: Bytes,
        idempotent: bool,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), Unreachable> {
        loop {
            let pooled = ep.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some((since, mut sender)) = pooled else {
                break;
            };
            if since.elapsed() > IDLE_LIMIT || sender.is_closed() || sender.ready().await.is_err() {
                continue;
            }
            match sender
                .try_send_request(Self::request(ep, method, path, body.clone()))
                .await
            {
                Ok(resp) => return Self::finish(ep, sender, resp).await,
                Err(mut e) => {
                    if e.take_message().is_some() {
                        continue;
                    }
                    if !idempotent {
                        return Err(Unreachable(e.into_error().to_string()));
                    }
                    tracing::debug!(error = %e.error(), "pooled KES connection failed; retrying on a new one");
                    break;
                }
            }
        }
        let mut sender = self.connect(ep).await?;
        let resp = sender
            .send_request(Self::request(ep, method, path, body))
            .await
            .map_err(|e| Unreachable(e.to_string()))?;
        Self::finish(ep, sender, resp).await
    }

    /// Reads the answer (at most [`MAX_BODY`]) and keeps the connection for the next request.
    async fn finish(
        ep: &Endpoint,
        sender: SendRequest<Full<Bytes>>,
        resp: http::Response<hyper::body::Incoming>,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), Unreachable> {
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| Unreachable(format!("reading the answer: {e}")))?;
        // `Vec::from` takes the buffer over when it can, so the zeroized copy is the only one.
        let body = Zeroizing::new(Vec::from(body.to_bytes()));
        if !sender.is_closed() {
            let mut idle = ep.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < POOL_SIZE {
                idle.push((Instant::now(), sender));
            }
        }
        Ok((status, body))
    }

    async fn connect(&self, ep: &Endpoint) -> Result<SendRequest<Full<Bytes>>, Unreachable> {
        let dial = async {
            let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
                .await
                .map_err(|e| Unreachable(format!("connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            self.tls
                .connect(ep.server_name.clone(), tcp)
                .await
                .map_err(|e| Unreachable(format!("TLS: {e}")))
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .map_err(|_| Unreachable("connect timed out".into()))??;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Unreachable(format!("HTTP: {e}")))?;
        let url = ep.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %url, error = %e, "KES connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A key id that is no valid key name cannot exist (the registry says the same).
fn check_name(name: &str) -> SseResult<()> {
    validate_key_name(name).map_err(|_| SseError::KmsKeyNotFound(name.to_string()))
}

/// Maps a KES answer onto the registry's errors: same S3 error codes whichever KMS a site uses.
fn answer(
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
    key: &str,
) -> SseResult<Zeroizing<Vec<u8>>> {
    if status.is_success() {
        return Ok(body);
    }
    let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|_| ErrorBody {
        message: String::from_utf8_lossy(&body).into_owned(),
        ..Default::default()
    });
    let text: String = err.text().chars().take(200).collect();
    let state = err.cairn_key_state.as_deref();
    let key = key.to_string();
    Err(match (status, state) {
        (StatusCode::NOT_FOUND, Some("deleted")) => SseError::KmsKeyDeleted(key),
        (StatusCode::NOT_FOUND, _) if text == messages::KEY_NOT_FOUND => {
            SseError::KmsKeyNotFound(key)
        }
        (StatusCode::BAD_REQUEST, Some("disabled")) => SseError::KmsKeyDisabled(key),
        (StatusCode::BAD_REQUEST, _) if text == messages::DECRYPT => SseError::KmsDecrypt,
        (StatusCode::FORBIDDEN, _) => SseError::KmsConfig(format!(
            "the KES server refused this client ({CERT_FILE_ENV}): {text}"
        )),
        _ => SseError::KmsUnavailable(format!("KES answered {status}: {text}")),
    })
}

/// A data key as KES returned it, checked to be a 256-bit key.
fn data_key(bytes: &[u8]) -> SseResult<Secret> {
    if bytes.len() != KEY_LEN {
        return Err(SseError::KmsUnavailable(format!(
            "KES returned a {}-byte data key, expected {KEY_LEN}",
            bytes.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(bytes);
    Ok(key)
}

#[async_trait]
impl Kms for KesClient {
    fn default_key_id(&self) -> &str {
        &self.default_key
    }

    /// Every key lives in KES.
    fn owns(&self, _key_id: &str) -> bool {
        true
    }

    async fn generate_data_key(&self, key_id: &str, context: &Context) -> SseResult<DataKey> {
        check_name(key_id)?;
        let req = GenerateRequest {
            context: Zeroizing::new(context_to_bytes(context)),
        };
        let body = serde_json::to_vec(&req).map_err(|e| SseError::KmsConfig(e.to_string()))?;
        let answer = self
            .call(
                Method::POST,
                &format!("/v1/key/generate/{key_id}"),
                key_id,
                Bytes::from(body),
            )
            .await?;
        let resp: GenerateResponse = serde_json::from_slice(&answer).map_err(|e| {
            SseError::KmsUnavailable(format!("KES generate answer is not valid: {e}"))
        })?;
        if resp.ciphertext.is_empty() {
            return Err(SseError::KmsUnavailable(
                "KES returned an empty ciphertext".into(),
            ));
        }
        Ok(DataKey {
            plaintext: data_key(&resp.plaintext)?,
            ciphertext: resp.ciphertext.to_vec(),
        })
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &Context,
    ) -> SseResult<Secret> {
        check_name(key_id)?;
        let req = DecryptRequest {
            ciphertext: Zeroizing::new(ciphertext.to_vec()),
            context: Zeroizing::new(context_to_bytes(context)),
        };
        let body = serde_json::to_vec(&req).map_err(|e| SseError::KmsConfig(e.to_string()))?;
        let answer = self
            .call(
                Method::POST,
                &format!("/v1/key/decrypt/{key_id}"),
                key_id,
                Bytes::from(body),
            )
            .await?;
        let resp: DecryptResponse = serde_json::from_slice(&answer).map_err(|e| {
            SseError::KmsUnavailable(format!("KES decrypt answer is not valid: {e}"))
        })?;
        data_key(&resp.plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::kes::tests::MemKeys;
    use crate::server::kes::{self as server, Allowed, KesServer};
    use cairn_control_plane::kms::KeyState;

    fn ca(name: &str) -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String) {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        (issuer, pem)
    }

    fn leaf(issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A KES server on loopback serving `keys`, trusting `ca_pem` for clients.
    async fn start_server(
        keys: Arc<MemKeys>,
        ca_pem: &str,
        server_pair: &(String, String),
        allowed: Allowed,
    ) -> String {
        crate::server::tls::install_crypto_provider();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(server_pair.0.as_bytes())
                .filter_map(Result::ok)
                .collect();
        let key = PrivateKeyDer::from_pem_slice(server_pair.1.as_bytes()).unwrap();
        let certified = rustls::sign::CertifiedKey::from_der(
            chain,
            key,
            &rustls::crypto::aws_lc_rs::default_provider(),
        )
        .unwrap();
        let resolver = Arc::new(Fixed(Arc::new(certified)));
        let tls = server::tls_config(ca_pem.as_bytes(), resolver).unwrap();
        let addr = server::spawn(
            "127.0.0.1:0".parse().unwrap(),
            tls,
            Arc::new(KesServer::new(keys, allowed)),
        )
        .await
        .unwrap();
        format!("https://127.0.0.1:{}", addr.port())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_and_server_speak_kes_over_mutual_tls() {
        let (issuer, ca_pem) = ca("site CA");
        let server_pair = leaf(&issuer);
        let client_pair = leaf(&issuer);
        let keys = Arc::new(MemKeys::new());
        let url = start_server(keys.clone(), &ca_pem, &server_pair, Allowed::AnyTrusted).await;
        let client = KesClient::new(
            std::slice::from_ref(&url),
            client_pair.0.as_bytes(),
            client_pair.1.as_bytes(),
            ca_pem.as_bytes(),
            "k1",
        )
        .unwrap();
        assert!(client.owns("anything"));

        let mut ctx = Context::new();
        ctx.insert("cairn:object".into(), "b/o".into());
        assert_eq!(
            client.generate_data_key("k1", &ctx).await.err(),
            Some(SseError::KmsKeyNotFound("k1".into()))
        );
        client.create_key("k1").await.unwrap();
        assert!(matches!(
            client.create_key("k1").await,
            Err(SseError::KmsUnavailable(m)) if m.contains("already exists")
        ));
        // Many requests: pooled connections are reused.
        for _ in 0..20 {
            let dk = client.generate_data_key("k1", &ctx).await.unwrap();
            let back = client.decrypt("k1", &dk.ciphertext, &ctx).await.unwrap();
            assert_eq!(*back, *dk.plaintext);
        }
        let dk = client.generate_data_key("k1", &ctx).await.unwrap();
        assert!(client.endpoints[0].idle.lock().unwrap().len() <= POOL_SIZE);
        let mut other = ctx.clone();
        other.insert("x".into(), "y".into());
        assert_eq!(
            client.decrypt("k1", &dk.ciphertext, &other).await.err(),
            Some(SseError::KmsDecrypt)
        );
        assert_eq!(
            client.decrypt("../k1", &dk.ciphertext, &ctx).await.err(),
            Some(SseError::KmsKeyNotFound("../k1".into()))
        );
        keys.set("k1", KeyState::Disabled);
        assert_eq!(
            client.decrypt("k1", &dk.ciphertext, &ctx).await.err(),
            Some(SseError::KmsKeyDisabled("k1".into()))
        );
        keys.set("k1", KeyState::Deleted);
        assert_eq!(
            client.generate_data_key("k1", &ctx).await.err(),
            Some(SseError::KmsKeyDeleted("k1".into()))
        );
        let status = client.status().await.unwrap();
        assert!(!status.keystore_unreachable);

        // A client whose certificate is from another CA fails the handshake: unavailable.
        let (rogue_ca, _) = ca("rogue");
        let rogue = leaf(&rogue_ca);
        let stranger = KesClient::new(
            std::slice::from_ref(&url),
            rogue.0.as_bytes(),
            rogue.1.as_bytes(),
            ca_pem.as_bytes(),
            "k1",
        )
        .unwrap();
        assert!(matches!(
            stranger.status().await,
            Err(SseError::KmsUnavailable(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identities_list_and_failover() {
        let (issuer, ca_pem) = ca("site CA");
        let server_pair = leaf(&issuer);
        let (allowed_pair, other_pair) = (leaf(&issuer), leaf(&issuer));
        let allowed_client = |pair: &(String, String), urls: &[String]| {
            KesClient::new(
                urls,
                pair.0.as_bytes(),
                pair.1.as_bytes(),
                ca_pem.as_bytes(),
                "k",
            )
            .unwrap()
        };
        let probe = allowed_client(&allowed_pair, &["https://127.0.0.1:1".into()]);
        let url = start_server(
            Arc::new(MemKeys::new()),
            &ca_pem,
            &server_pair,
            Allowed::parse(&probe.identity().0).unwrap(),
        )
        .await;
        // A dead endpoint first: the next one answers.
        let urls = vec!["https://127.0.0.1:1".to_string(), url.clone()];
        let good = allowed_client(&allowed_pair, &urls);
        good.create_key("k").await.unwrap();
        let other = allowed_client(&other_pair, &urls);
        match other.create_key("k2").await {
            Err(SseError::KmsConfig(m)) => assert!(m.contains("not authorized"), "{m}"),
            r => panic!("an unlisted identity was let in: {r:?}"),
        }
        let dead = allowed_client(&allowed_pair, &["https://127.0.0.1:1".into()]);
        assert!(matches!(
            dead.generate_data_key("k", &Context::new()).await,
            Err(SseError::KmsUnavailable(_))
        ));
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        let (issuer, ca_pem) = ca("CA");
        let (cert, key) = leaf(&issuer);
        let url = vec!["https://127.0.0.1:7373".to_string()];
        let err = |r: SseResult<KesClient>| match r {
            Err(SseError::KmsConfig(m)) => m,
            other => panic!("expected a configuration error, got {other:?}"),
        };
        let m = err(KesClient::new(
            &["http://x:1".into()],
            cert.as_bytes(),
            key.as_bytes(),
            ca_pem.as_bytes(),
            "k",
        ));
        assert!(m.contains(ENDPOINT_ENV), "{m}");
        let m = err(KesClient::new(
            &url,
            b"nope",
            key.as_bytes(),
            ca_pem.as_bytes(),
            "k",
        ));
        assert!(m.contains(CERT_FILE_ENV), "{m}");
        let m = err(KesClient::new(
            &url,
            cert.as_bytes(),
            b"nope",
            ca_pem.as_bytes(),
            "k",
        ));
        assert!(m.contains(KEY_FILE_ENV), "{m}");
        assert!(!m.contains("PRIVATE"), "{m}");
        let m = err(KesClient::new(
            &url,
            cert.as_bytes(),
            key.as_bytes(),
            b"",
            "k",
        ));
        assert!(m.contains(CAPATH_ENV), "{m}");
        let m = err(KesClient::new(
            &url,
            cert.as_bytes(),
            key.as_bytes(),
            ca_pem.as_bytes(),
            "a b",
        ));
        assert!(m.contains(KEY_NAME_ENV), "{m}");
        let m =
            err(read_file(KEY_FILE_ENV, Path::new("/nonexistent/kes.key")).map(|_| unreachable!()));
        assert!(
            m.contains(KEY_FILE_ENV) && m.contains("/nonexistent/kes.key"),
            "{m}"
        );
    }

    #[test]
    fn answers_map_onto_registry_errors() {
        let body = |s: &str| Zeroizing::new(s.as_bytes().to_vec());
        let e = |st: u16, b: &str| answer(StatusCode::from_u16(st).unwrap(), body(b), "k").err();
        assert_eq!(
            e(404, r#"{"message":"key does not exist"}"#),
            Some(SseError::KmsKeyNotFound("k".into()))
        );
        assert_eq!(
            e(
                404,
                r#"{"message":"key does not exist","cairn_key_state":"deleted"}"#
            ),
            Some(SseError::KmsKeyDeleted("k".into()))
        );
        assert_eq!(
            e(
                400,
                r#"{"message":"key is disabled","cairn_key_state":"disabled"}"#
            ),
            Some(SseError::KmsKeyDisabled("k".into()))
        );
        assert_eq!(
            e(
                400,
                r#"{"message":"decryption failed: ciphertext is not authentic"}"#
            ),
            Some(SseError::KmsDecrypt)
        );
        // Older KES servers: `error` instead of `message`.
        assert_eq!(
            e(404, r#"{"error":"key does not exist"}"#),
            Some(SseError::KmsKeyNotFound("k".into()))
        );
        // A 404 that is not about the key (wrong endpoint path) is no "key not found".
        assert!(matches!(
            e(404, "404 page not found"),
            Some(SseError::KmsUnavailable(_))
        ));
        assert!(matches!(
            e(
                403,
                r#"{"message":"not authorized: insufficient permissions"}"#
            ),
            Some(SseError::KmsConfig(_))
        ));
        assert!(matches!(e(503, "{}"), Some(SseError::KmsUnavailable(_))));
        assert!(answer(StatusCode::OK, body("{}"), "k").is_ok());
    }
}
