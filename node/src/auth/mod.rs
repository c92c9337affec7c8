//! Who is calling: access keys resolve to identities through one interface, so the IAM issue only
//! has to add identities. s3s verifies the signatures (SigV4 header/presigned/streaming, SigV2)
//! against the secret this returns; [`request`] and [`chunked`] add, in front of s3s, the checks
//! it does not make (SigV2 freshness, sub-resources and constant-time comparison, the presigned
//! expiry cap, `host` signed, complete aws-chunked bodies).

pub mod authorize;
pub mod chunked;
pub mod iam;
pub mod operation;
pub mod request;
pub mod root;
pub mod sealing;
pub mod session;
pub mod sigv2;

use std::sync::Arc;

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

/// Who is on the other end of a request's connection, for `aws:SourceIp` and
/// `aws:SecureTransport`; the HTTP listener puts one into every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    /// The connection is TLS.
    pub secure: bool,
}

/// The id a request's answer carries (`x-amz-request-id`), as a request extension, so that
/// documents naming it (STS's `RequestId`) name the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The verified client certificate of a mutual-TLS connection (request extension), for STS
/// `AssumeRoleWithCertificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's common name: the policy the certificate's sessions get.
    pub common_name: String,
    /// The end of its validity, nanoseconds since the epoch: no session outlives it.
    pub not_after_ns: i64,
}

impl ClientCertificate {
    /// The subject and expiry of a DER certificate (the TLS layer has verified it already);
    /// `None` without exactly one common name or if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names = cert.subject().iter_common_name();
        let cn = names.next()?.as_str().ok()?.to_owned();
        if names.next().is_some() || cn.is_empty() {
            return None;
        }
        let not_after = cert.validity().not_after.timestamp();
        Some(Self {
            common_name: cn,
            not_after_ns: not_after.saturating_mul(1_000_000_000),
        })
    }
}

/// A principal that can sign requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub access_key: String,
    pub is_root: bool,
}

/// Resolves access keys. Implementations never log secrets.
pub trait CredentialStore: Send + Sync + 'static {
    /// The identity and its secret key, if the access key is known and enabled.
    fn lookup(&self, access_key: &str) -> Option<(Identity, String)>;

    /// Whether `access_key` is root's (all a site without IAM lets in).
    fn is_root_key(&self, access_key: &str) -> bool {
        matches!(self.lookup(access_key), Some((id, _)) if id.is_root)
    }

    /// The site's root credentials, when this store holds them (IAM seals secrets under a key
    /// derived from them).
    fn root(&self) -> Option<RootCredentials> {
        None
    }

    /// The peer site whose replication identity `access_key` is (only those may write replicas).
    fn site_peer(&self, _access_key: &str) -> Option<String> {
        None
    }
}

/// The deployment's root credentials: the only identity until IAM lands.
#[derive(Clone)]
pub struct RootCredentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for RootCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCredentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl CredentialStore for RootCredentials {
    fn lookup(&self, access_key: &str) -> Option<(Identity, String)> {
        use subtle::ConstantTimeEq;
        let same: bool = access_key
            .as_bytes()
            .ct_eq(self.access_key.as_bytes())
            .into();
        same.then(|| {
            (
                Identity {
                    access_key: access_key.to_string(),
                    is_root: true,
                },
                self.secret_key.clone(),
            )
        })
    }

    fn root(&self) -> Option<RootCredentials> {
        Some(self.clone())
    }
}

/// Plugs a credential store into s3s's signature checks.
pub struct Authenticator(pub Arc<dyn CredentialStore>);

#[async_trait::async_trait]
impl S3Auth for Authenticator {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.lookup(access_key) {
            Some((_, secret)) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_key_is_invalid_access_key_id() {
        let root = RootCredentials {
            access_key: "admin".into(),
            secret_key: "secret123".into(),
        };
        let auth = Authenticator(Arc::new(root));
        assert!(auth.get_secret_key("admin").await.is_ok());
        let err = auth.get_secret_key("nobody").await.unwrap_err();
        assert_eq!(err.code(), &s3s::S3ErrorCode::InvalidAccessKeyId);
    }

    #[test]
    fn debug_hides_the_secret() {
        let root = RootCredentials {
            access_key: "admin".into(),
            secret_key: "topsecret".into(),
        };
        assert!(!format!("{root:?}").contains("topsecret"));
    }

    #[test]
    fn client_certificates_give_one_common_name_and_their_expiry() {
        let cert = |names: &[&str]| {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new();
            for n in names {
                p.distinguished_name
                    .push(rcgen::DnType::CommonName, n.to_string());
            }
            p.not_after = rcgen::date_time_ymd(2031, 1, 2);
            let key = rcgen::KeyPair::generate().unwrap();
            p.self_signed(&key).unwrap().der().to_vec()
        };
        let c = ClientCertificate::from_der(&cert(&["cert-reader"])).unwrap();
        assert_eq!(c.common_name, "cert-reader");
        assert_eq!(c.not_after_ns, 1_925_078_400 * 1_000_000_000);
        assert_eq!(ClientCertificate::from_der(&cert(&[])), None);
        assert_eq!(ClientCertificate::from_der(b"not a certificate"), None);
    }
}
