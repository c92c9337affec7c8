//! TLS, MinIO's way: a certificates directory holding `public.crt` and `private.key` turns on
//! HTTPS (TLS 1.2 and 1.3 only, rustls) on the S3 port and mutual TLS on the internode gRPC port;
//! `CAs/*.crt` are the authorities trusted for peers (and the node's own certificate when there
//! are none, so one self-signed certificate shared by a site also works). Without the two files
//! the node serves plain HTTP, as MinIO does, and says so in its log.
//!
//! The S3 certificate is re-read when its files change, so a renewal needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;

pub const CERT_FILE: &str = "public.crt";
pub const KEY_FILE: &str = "private.key";
pub const CA_DIR: &str = "CAs";
/// How often the certificate files are checked for a renewal.
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("{CERT_FILE} and {KEY_FILE} must both be present in {dir}, or neither")]
    Partial { dir: PathBuf },
    #[error("certificate and key do not form a usable TLS identity: {0}")]
    Identity(String),
}

/// The PEM files of a certificates directory, as read at one moment.
#[derive(Clone)]
pub struct TlsMaterial {
    pub dir: PathBuf,
    pub cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// Certificates trusted for peers: `CAs/*.crt`, else the node's own certificate chain.
    pub ca_pem: Vec<u8>,
    /// The parsed key pair the S3 port serves (parsing it is also what validates the files).
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The authorities in `dir/CAs/` (see [`crate::link::trusted_cas`]). Read even without a server
/// certificate, so a node that serves plain HTTP still verifies the servers it calls.
pub fn trusted_cas(dir: &Path) -> Result<Vec<u8>, TlsError> {
    crate::link::trusted_cas(dir).map_err(|source| TlsError::Read {
        path: dir.join(CA_DIR),
        source,
    })
}

impl TlsMaterial {
    /// The material in `dir`, `None` when it holds neither file (plain HTTP).
    pub fn load(dir: &Path) -> Result<Option<Self>, TlsError> {
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        match (cert.exists(), key.exists()) {
            (false, false) => return Ok(None),
            (true, true) => {}
            _ => {
                return Err(TlsError::Partial {
                    dir: dir.to_path_buf(),
                })
            }
        }
        let cert_pem = read(&cert)?;
        let key_pem = read(&key)?;
        let mut ca_pem = trusted_cas(dir)?;
        if ca_pem.is_empty() {
            ca_pem = cert_pem.clone();
        }
        let certified = certified_key(dir, &cert_pem, &key_pem)?;
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            cert_pem,
            key_pem,
            ca_pem,
            certified,
        }))
    }

    /// The key pair in the PEM form tonic takes.
    pub fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// Mutual TLS for the internode gRPC server: peers must present a certificate issued by a
    /// trusted authority.
    pub fn internode_server(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
    }

    /// Mutual TLS for internode calls: the peer is checked against the trusted authorities and
    /// this node presents its own certificate.
    pub fn internode_client(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
    }
}

/// Parses and checks the pair: a certificate chain, a private key, and the key matching the chain.
fn certified_key(
    dir: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: dir.join(CERT_FILE),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey {
        path: dir.join(KEY_FILE),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| TlsError::Identity(e.to_string()))
}

/// Makes rustls use aws-lc-rs whatever other providers the dependency graph enables.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Serves the current certificate; `reload_forever` swaps it when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

impl ReloadingCert {
    fn set(&self, key: Arc<CertifiedKey>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }
}

/// The S3 port's TLS acceptor (TLS 1.2+, HTTP/2 and HTTP/1.1) and the certificate it serves.
/// With `client_certificates` it asks clients for a certificate issued by one of `CAs/`
/// (optional: clients without one are served as before; one that does not verify fails the
/// handshake), for STS `AssumeRoleWithCertificate`.
pub fn s3_acceptor(
    material: &TlsMaterial,
    client_certificates: bool,
) -> Result<(tokio_rustls::TlsAcceptor, Arc<ReloadingCert>), TlsError> {
    let cert = Arc::new(ReloadingCert {
        current: RwLock::new(material.certified.clone()),
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Identity(e.to_string()))?;
    let builder = if client_certificates {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&material.ca_pem) {
            let c = c.map_err(|e| TlsError::Identity(format!("CAs/: {e}")))?;
            roots
                .add(c)
                .map_err(|e| TlsError::Identity(format!("CAs/: {e}")))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Identity(format!("client certificates: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert))
}

/// Re-reads the certificate directory whenever `public.crt` or `private.key` changes; a broken
/// renewal is logged and the previous certificate kept.
pub async fn reload_forever(dir: PathBuf, cert: Arc<ReloadingCert>) {
    let stamp = |d: &Path| (modified(&d.join(CERT_FILE)), modified(&d.join(KEY_FILE)));
    let mut seen = stamp(&dir);
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        let now = stamp(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        match TlsMaterial::load(&dir).and_then(|m| match m {
            Some(m) => Ok(m.certified),
            None => Err(TlsError::Partial { dir: dir.clone() }),
        }) {
            Ok(key) => {
                cert.set(key);
                tracing::info!(dir = %dir.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; keeping the previous one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, name: &str) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(dir.join(CERT_FILE), c.cert.pem()).unwrap();
        std::fs::write(dir.join(KEY_FILE), c.signing_key.serialize_pem()).unwrap();
    }

    #[test]
    fn empty_dir_is_plain_http_and_half_a_pair_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(TlsMaterial::load(d.path()).unwrap().is_none());
        std::fs::write(d.path().join(CERT_FILE), "x").unwrap();
        assert!(matches!(
            TlsMaterial::load(d.path()),
            Err(TlsError::Partial { .. })
        ));
        std::fs::write(d.path().join(KEY_FILE), "y").unwrap();
        assert!(matches!(
            TlsMaterial::load(d.path()),
            Err(TlsError::NoCertificate { .. })
        ));
    }

    #[test]
    fn own_certificate_is_trusted_without_a_ca_dir_and_debug_hides_the_key() {
        let d = tempfile::tempdir().unwrap();
        write_cert(d.path(), "localhost");
        let m = TlsMaterial::load(d.path()).unwrap().unwrap();
        assert_eq!(m.ca_pem, m.cert_pem);
        assert!(!format!("{m:?}").contains("PRIVATE"));
        install_crypto_provider();
        assert!(s3_acceptor(&m, false).is_ok());
        assert!(s3_acceptor(&m, true).is_ok());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_cert(a.path(), "a");
        write_cert(b.path(), "b");
        std::fs::copy(b.path().join(KEY_FILE), a.path().join(KEY_FILE)).unwrap();
        assert!(matches!(
            TlsMaterial::load(a.path()),
            Err(TlsError::Identity(_))
        ));
    }
}
