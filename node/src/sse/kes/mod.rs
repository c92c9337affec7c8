//! KES: the key registry served over MinIO's KES HTTP API, and a [`Kms`](super::Kms) that talks to
//! a KES server.
//!
//! Why: one site's registry (`cairn admin kms key ...`, replicated by Raft) can then be the KMS of
//! several sites, and Cairn can use any KES-compatible KMS a deployment already runs, the way MinIO
//! does with `MINIO_KMS_KES_*`. Both halves speak the same wire format (this file), so the client is
//! tested against the server.
//!
//! * `server::kes` (a listener, so beside the other listeners): HTTPS with *required* client certificates (mutual TLS) on `CAIRN_KES_ADDRESS`,
//!   `POST /v1/key/create/<name>`, `POST /v1/key/generate/<name>`, `POST /v1/key/decrypt/<name>`,
//!   `GET /v1/status` and `GET /version`;
//! * [`client`]: `CAIRN_KMS_KES_ENDPOINT`, `_KEY_FILE`, `_CERT_FILE`, `_KEY_NAME`, `_CAPATH`.
//!
//! As in KES, a client is known by its *identity*: the hex SHA-256 of its certificate's
//! SubjectPublicKeyInfo ([`identity_of`]), so a renewed certificate for the same key keeps its
//! identity, and an identity can be listed before the certificate exists (`kes identity of`).

pub mod client;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Context, SseError};

/// Bodies KES accepts on the key API are at most 1 MiB; so are ours, and the client reads no more.
pub const MAX_BODY: usize = 1 << 20;

/// KES' error texts, kept byte for byte: KES clients (MinIO's `kes-go`) compare them.
pub mod messages {
    pub const KEY_NOT_FOUND: &str = "key does not exist";
    pub const KEY_EXISTS: &str = "key already exists";
    pub const NOT_ALLOWED: &str = "not authorized: insufficient permissions";
    pub const DECRYPT: &str = "decryption failed: ciphertext is not authentic";
    /// Cairn's own: KES keys cannot be disabled, registry keys can.
    pub const KEY_DISABLED: &str = "key is disabled";
}

/// A KES identity: lowercase hex of SHA-256 over the DER SubjectPublicKeyInfo.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub String);

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Identity {
    /// Parses the hex form (as `kes identity of` prints it); case-insensitive.
    pub fn parse(s: &str) -> Option<Identity> {
        let s = s.trim().to_ascii_lowercase();
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Identity(s))
    }

    /// The first 16 hex digits, enough to tell clients apart in a log line.
    pub fn short(&self) -> &str {
        self.0.get(..16).unwrap_or(&self.0)
    }
}

/// The KES identity of a DER certificate; `None` if it does not parse as X.509.
pub fn identity_of(cert_der: &[u8]) -> Option<Identity> {
    let der = rustls::pki_types::CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    let spki = cert.subject_public_key_info();
    Some(Identity(hex::encode(Sha256::digest(spki.as_ref()))))
}

/// `[]byte` as Go's `encoding/json` writes it: standard base64 with padding, `null` for nil.
mod b64 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes));
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text.map(Zeroizing::new) {
            None => Ok(Zeroizing::new(Vec::new())),
            Some(t) => base64::engine::general_purpose::STANDARD
                .decode(t.as_bytes())
                .map(Zeroizing::new)
                .map_err(|_| serde::de::Error::custom("invalid base64")),
        }
    }
}

/// `POST /v1/key/generate/<name>`.
#[derive(Serialize, Deserialize, Default)]
pub struct GenerateRequest {
    /// Authenticated, non-secret bytes the data key is bound to (optional).
    #[serde(default, with = "b64")]
    pub context: Zeroizing<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
pub struct GenerateResponse {
    #[serde(with = "b64")]
    pub plaintext: Zeroizing<Vec<u8>>,
    #[serde(with = "b64")]
    pub ciphertext: Zeroizing<Vec<u8>>,
}

/// `POST /v1/key/decrypt/<name>`.
#[derive(Serialize, Deserialize)]
pub struct DecryptRequest {
    #[serde(with = "b64")]
    pub ciphertext: Zeroizing<Vec<u8>>,
    #[serde(default, with = "b64")]
    pub context: Zeroizing<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
pub struct DecryptResponse {
    #[serde(with = "b64")]
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// Every KES error body: `{"message": "..."}`. Cairn adds `cairn_key_state` (`disabled`,
/// `deleted`) so a Cairn client can tell those apart from a missing key, which KES has no words
/// for; other KES clients ignore the field and see KES' own status and message. Older KES servers
/// wrote `error` instead of `message`: both are read.
#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cairn_key_state: Option<String>,
}

impl ErrorBody {
    pub fn text(&self) -> &str {
        if self.message.is_empty() {
            &self.error
        } else {
            &self.message
        }
    }
}

/// `GET /v1/status`, with the field names of KES' `State` (uptime in seconds, latency in
/// nanoseconds as Go's `time.Duration`).
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Status {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub uptime: f64,
    #[serde(default)]
    pub num_cpu: usize,
    #[serde(default)]
    pub num_cpu_used: usize,
    #[serde(default)]
    pub mem_heap_used: u64,
    #[serde(default)]
    pub mem_stack_used: u64,
    #[serde(default)]
    pub keystore_latency: u64,
    #[serde(default)]
    pub keystore_unreachable: bool,
    #[serde(default)]
    pub keystore_unavailable: bool,
}

/// Context entry under which the server binds a KES request's raw context bytes.
const CONTEXT_ENTRY: &str = "kes:context";

/// The registry binds data keys to a key/value [`Context`]; KES clients send opaque bytes. The
/// bytes are bound exactly (as base64 under one entry), whatever their shape, so any KES client
/// gets the same answer for the same bytes and nothing can be re-parsed into another context.
pub fn context_from_bytes(bytes: &[u8]) -> Context {
    let mut c = Context::new();
    if !bytes.is_empty() {
        c.insert(
            CONTEXT_ENTRY.to_string(),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        );
    }
    c
}

/// What the client sends as KES context for a Cairn [`Context`]: its JSON object, keys sorted
/// (`BTreeMap`), which is deterministic, so decrypting sends the bytes generating sent. An empty
/// context is sent as no context, as KES clients do.
pub fn context_to_bytes(context: &Context) -> Vec<u8> {
    if context.is_empty() {
        return Vec::new();
    }
    // A map of strings always serialises.
    serde_json::to_vec(context).unwrap_or_default()
}

/// Errors of the KES listener and client set-up. Request-level failures are [`SseError`]s.
#[derive(Debug, thiserror::Error)]
pub enum KesError {
    #[error("KES key '{0}' already exists")]
    KeyExists(String),
    #[error(transparent)]
    Sse(#[from] SseError),
    #[error("KES listener: {0}")]
    Listener(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_sha256_of_the_spki() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["kes-client".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let id = identity_of(cert.der()).expect("identity");
        let want = hex::encode(Sha256::digest(
            rcgen::PublicKeyData::subject_public_key_info(&key),
        ));
        assert_eq!(id.0, want);
        assert_eq!(id.0.len(), 64);
        // Another certificate for the same key pair: same identity (renewal keeps it).
        let again = rcgen::CertificateParams::new(vec!["renewed".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(identity_of(again.der()), Some(id.clone()));
        assert_eq!(identity_of(b"not a certificate"), None);
        assert_eq!(Identity::parse(&id.0.to_uppercase()), Some(id.clone()));
        assert_eq!(Identity::parse("abc"), None);
        assert_eq!(Identity::parse(&"g".repeat(64)), None);
        assert_eq!(id.short().len(), 16);
    }

    #[test]
    fn wire_format_matches_kes() {
        // Go encodes []byte as padded standard base64 and nil as null.
        let g: GenerateRequest = serde_json::from_str(r#"{"context":"YWJj"}"#).expect("json");
        assert_eq!(g.context.as_slice(), b"abc");
        let g: GenerateRequest = serde_json::from_str(r#"{"context":null}"#).expect("null");
        assert!(g.context.is_empty());
        let g: GenerateRequest = serde_json::from_str("{}").expect("empty");
        assert!(g.context.is_empty());
        assert!(serde_json::from_str::<GenerateRequest>(r#"{"context":"*"}"#).is_err());

        let r = GenerateResponse {
            plaintext: Zeroizing::new(vec![1, 2, 3]),
            ciphertext: Zeroizing::new(vec![0xff; 4]),
        };
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"plaintext":"AQID","ciphertext":"/////w=="}"#
        );
        let d: DecryptRequest =
            serde_json::from_str(r#"{"ciphertext":"/////w==","context":"YWJj"}"#).expect("json");
        assert_eq!(d.ciphertext.as_slice(), &[0xff; 4]);
        assert_eq!(d.context.as_slice(), b"abc");
        let d: DecryptResponse = serde_json::from_str(r#"{"plaintext":"AQID"}"#).expect("json");
        assert_eq!(d.plaintext.as_slice(), &[1, 2, 3]);
    }

    #[test]
    fn error_bodies_read_both_spellings_and_write_kes_form() {
        let e = ErrorBody {
            message: messages::KEY_NOT_FOUND.into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&e).expect("json"),
            r#"{"message":"key does not exist"}"#
        );
        let old: ErrorBody = serde_json::from_str(r#"{"error":"boom"}"#).expect("json");
        assert_eq!(old.text(), "boom");
        let ours: ErrorBody =
            serde_json::from_str(r#"{"message":"key is disabled","cairn_key_state":"disabled"}"#)
                .expect("json");
        assert_eq!(ours.text(), messages::KEY_DISABLED);
        assert_eq!(ours.cairn_key_state.as_deref(), Some("disabled"));
    }

    #[test]
    fn contexts_round_trip_deterministically() {
        let mut c = Context::new();
        c.insert("z".into(), "1".into());
        c.insert("a".into(), "2".into());
        let bytes = context_to_bytes(&c);
        assert_eq!(bytes, br#"{"a":"2","z":"1"}"#);
        assert!(context_to_bytes(&Context::new()).is_empty());
        assert!(context_from_bytes(b"").is_empty());
        let bound = context_from_bytes(&bytes);
        assert_eq!(bound.len(), 1);
        assert_ne!(context_from_bytes(b"x"), context_from_bytes(b"y"));
    }
}
