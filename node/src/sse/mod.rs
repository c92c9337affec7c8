//! Server-side encryption core: the package cipher that turns a plaintext stream into
//! authenticated 64 KiB packages, the sealing of per-object keys, and the KMS abstraction.
//!
//! This module is pure crypto: no S3 headers beyond SSE-C key parsing, no storage. The on-disk
//! format is described in `README.md` beside this file and versioned by [`FORMAT_VERSION`] (package
//! stream) and [`seal::SEALED_KEY_VERSION`] (sealed object key); a reader refuses versions it does not
//! know rather than guessing.
//!
//! Key hierarchy, top to bottom:
//! - KMS master key (never leaves the KMS) -> per-object *data key* ([`kms::Kms::generate_data_key`]),
//!   or for SSE-C the customer's key (never stored);
//! - *key-encryption key* derived from that secret and bound to `bucket/object`, the SSE type and
//!   (SSE-KMS) key id + context -> seals the *object key* ([`seal`]);
//! - random 256-bit *object key* -> per-stream keys (whole object, or one multipart part) that seal
//!   the packages ([`package`]).

pub mod kes;
pub mod kms;
pub mod object;
pub mod package;
pub mod registry;
pub mod seal;
pub mod stream;

use rand::RngCore;
use zeroize::Zeroizing;

pub use kms::{Context, DataKey, Kms, StaticKms};
pub use package::{
    multipart_ranges, package_range, sealed_size, Backend, Decryptor, Encryptor, PackageRange,
    PartRange, StreamKey, PACKAGE_SIZE, TAG_LEN,
};
pub use seal::{CustomerKey, KeyBinding, SealedKey, SseKind};

/// Version of the package stream format written by this code.
pub const FORMAT_VERSION: u8 = 1;

/// Length of every symmetric key in this module (AES-256).
pub const KEY_LEN: usize = 32;

/// A 256-bit secret, wiped from memory when dropped.
pub type Secret = Zeroizing<[u8; KEY_LEN]>;

/// Draws a fresh secret from the handed-in RNG (never a global one: the simulator must replay).
pub fn random_secret(rng: &mut dyn RngCore) -> Secret {
    let mut s = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(&mut s[..]);
    s
}

/// The random per-object key. Every stream key is derived from it; it is stored only sealed.
pub struct ObjectKey(Secret);

impl ObjectKey {
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        Self(random_secret(rng))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for ObjectKey {
    /// Key material never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectKey(..)")
    }
}

/// Everything that can go wrong in SSE. Messages never carry key material, so they are safe to log
/// and to return to clients.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A package failed authentication: tampered, reordered, spliced from another object or part,
    /// duplicated, or opened with the wrong key.
    #[error("encrypted package {seq} failed authentication")]
    PackageAuth { seq: u64 },
    /// The ciphertext ended before the last package the object's size calls for.
    #[error("encrypted stream is truncated")]
    Truncated,
    /// More ciphertext arrived than the requested packages hold.
    #[error("encrypted stream has trailing data")]
    TrailingData,
    #[error("range {offset}+{len} lies outside the {size}-byte object")]
    InvalidRange { offset: u64, len: u64, size: u64 },
    #[error("stream exceeds the package cipher's maximum length")]
    TooLarge,
    #[error("encryption format version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("sealed key is malformed: {0}")]
    MalformedSealedKey(&'static str),
    /// The sealed object key does not open with this key-encryption key: moved to another object,
    /// read under another SSE type, key id or context, or the wrong data key.
    #[error("object key cannot be unsealed")]
    KeyUnseal,
    /// SSE-C headers are missing or malformed (S3: 400 InvalidArgument).
    #[error("invalid SSE-C customer key: {0}")]
    CustomerKeyInvalid(&'static str),
    /// SSE-C key MD5 does not match the key (S3: 400 InvalidArgument).
    #[error("SSE-C customer key MD5 does not match the key")]
    CustomerKeyMd5Mismatch,
    /// The object is SSE-C but the request gave no customer key (S3: 400 InvalidRequest).
    #[error(
        "the object was stored with a customer-provided key: the same key must be given to read it"
    )]
    CustomerKeyRequired,
    /// SSE-C headers on a request for an object that is not SSE-C (S3: 400 InvalidRequest).
    #[error("the encryption parameters are not applicable to this object")]
    CustomerKeyNotApplicable,
    /// SSE-C key differs from the one the object was written with (S3: 403 AccessDenied).
    #[error("SSE-C customer key does not match the object's key")]
    CustomerKeyMismatch,
    #[error("KMS key '{0}' does not exist")]
    KmsKeyNotFound(String),
    #[error("KMS key '{0}' is disabled")]
    KmsKeyDisabled(String),
    #[error("KMS key '{0}' has been deleted")]
    KmsKeyDeleted(String),
    /// The KMS could not decrypt a data key (wrong context, corrupt blob).
    #[error("KMS cannot decrypt the data key")]
    KmsDecrypt,
    #[error("KMS configuration: {0}")]
    KmsConfig(String),
    /// No KMS can serve the request: the message names the setting to give (S3: 501
    /// NotImplemented with that message).
    #[error("KMS is not configured: {0}")]
    KmsNotConfigured(String),
    /// The KMS backend is unreachable or failed (network, Raft).
    #[error("KMS unavailable: {0}")]
    KmsUnavailable(String),
    #[error("cipher failure")]
    Cipher,
}

pub type SseResult<T> = Result<T, SseError>;
