//! Sealing the per-object key, and the SSE-C customer key.
//!
//! # Sealed key format (version 1, algorithm `AES-256-GCM-HKDF-SHA256`)
//!
//! ```text
//! binding = "cairn-sse-kek-v1" || kind (1: 1 = SSE-S3, 2 = SSE-KMS, 3 = SSE-C)
//!           || field(bucket) || field(object) || field(kms key id, empty for SSE-C)
//!           || context (u32be count, then field(key) || field(value) sorted by key; count 0 unless SSE-KMS)
//!           field(x) = u32be(len(x)) || x
//! kek     = HKDF-SHA256(ikm = secret, salt = "cairn-sse-kek-v1", info = binding, L = 32)
//!           secret = the KMS data key (SSE-S3, SSE-KMS) or the customer's key (SSE-C)
//! sealed  = AES-256-GCM(kek, iv (12 random bytes), aad = version || kind, object_key) (32 + 16)
//! bytes   = version (1) || kind (1) || iv (12) || sealed (48)          = 62 bytes
//! ```
//!
//! Because the KEK is derived from the binding, a sealed key copied onto another object, or read
//! under another SSE type, key id or context, fails to open ([`SseError::KeyUnseal`]).

use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::kms::{put_context, put_field, Context};
use super::package::Backend;
use super::{ObjectKey, Secret, SseError, SseResult, KEY_LEN, TAG_LEN};

/// Version of the sealed-key format written by this code.
pub const SEALED_KEY_VERSION: u8 = 1;
/// Name of the sealing algorithm, stored so a reader can refuse one it does not know.
pub const SEAL_ALGORITHM: &str = "AES-256-GCM-HKDF-SHA256";

const KEK_SALT: &[u8] = b"cairn-sse-kek-v1";
const IV_LEN: usize = 12;
const SEALED_LEN: usize = KEY_LEN + TAG_LEN;
/// Length of [`SealedKey::to_bytes`].
pub const SEALED_KEY_BYTES: usize = 2 + IV_LEN + SEALED_LEN;

/// The SSE type an object was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SseKind {
    /// `x-amz-server-side-encryption: AES256`
    S3,
    /// `x-amz-server-side-encryption: aws:kms`
    Kms,
    /// `x-amz-server-side-encryption-customer-algorithm: AES256`
    C,
}

impl SseKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            SseKind::S3 => 1,
            SseKind::Kms => 2,
            SseKind::C => 3,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(SseKind::S3),
            2 => Some(SseKind::Kms),
            3 => Some(SseKind::C),
            _ => None,
        }
    }
}

/// What a sealed object key is bound to.
#[derive(Debug, Clone)]
pub struct KeyBinding<'a> {
    pub bucket: &'a str,
    pub object: &'a str,
    pub kind: SseKind,
    /// KMS key id the data key came from (SSE-S3 and SSE-KMS); empty for SSE-C.
    pub key_id: &'a str,
    /// SSE-KMS encryption context; `None` for the other types.
    pub context: Option<&'a Context>,
}

impl<'a> KeyBinding<'a> {
    pub fn sse_s3(bucket: &'a str, object: &'a str, key_id: &'a str) -> Self {
        Self {
            bucket,
            object,
            kind: SseKind::S3,
            key_id,
            context: None,
        }
    }

    pub fn sse_kms(
        bucket: &'a str,
        object: &'a str,
        key_id: &'a str,
        context: &'a Context,
    ) -> Self {
        Self {
            bucket,
            object,
            kind: SseKind::Kms,
            key_id,
            context: Some(context),
        }
    }

    pub fn sse_c(bucket: &'a str, object: &'a str) -> Self {
        Self {
            bucket,
            object,
            kind: SseKind::C,
            key_id: "",
            context: None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = KEK_SALT.to_vec();
        out.push(self.kind.code());
        put_field(&mut out, self.bucket.as_bytes());
        put_field(&mut out, self.object.as_bytes());
        put_field(&mut out, self.key_id.as_bytes());
        match self.context {
            Some(c) => put_context(&mut out, c),
            None => put_context(&mut out, &Context::new()),
        }
        out
    }

    fn kek(&self, secret: &[u8; KEY_LEN]) -> Secret {
        let hk = Hkdf::<Sha256>::new(Some(KEK_SALT), secret);
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
        let _ = hk.expand(&self.encode(), &mut kek[..]);
        kek
    }
}

/// An object key sealed for storage in the object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    pub version: u8,
    pub algorithm: String,
    pub kind: SseKind,
    pub iv: [u8; IV_LEN],
    /// Encrypted object key followed by its tag.
    pub ciphertext: Vec<u8>,
}

impl SealedKey {
    /// Seals `key` under a KEK derived from `secret` (data key or customer key) and `binding`.
    pub fn seal(
        key: &ObjectKey,
        secret: &[u8; KEY_LEN],
        binding: &KeyBinding<'_>,
        rng: &mut dyn RngCore,
    ) -> SseResult<Self> {
        let mut iv = [0u8; IV_LEN];
        rng.fill_bytes(&mut iv);
        let kek = binding.kek(secret);
        let mut buf = Zeroizing::new(*key.as_bytes());
        let aad = [SEALED_KEY_VERSION, binding.kind.code()];
        let tag = Backend::default()
            .cipher(&kek)?
            .seal(&iv, &aad, &mut buf[..])?;
        let mut ciphertext = Vec::with_capacity(SEALED_LEN);
        ciphertext.extend_from_slice(&buf[..]);
        ciphertext.extend_from_slice(&tag);
        Ok(Self {
            version: SEALED_KEY_VERSION,
            algorithm: SEAL_ALGORITHM.to_string(),
            kind: binding.kind,
            iv,
            ciphertext,
        })
    }

    /// Opens the object key; fails with [`SseError::KeyUnseal`] unless `secret` and `binding` are
    /// exactly those it was sealed with.
    pub fn unseal(&self, secret: &[u8; KEY_LEN], binding: &KeyBinding<'_>) -> SseResult<ObjectKey> {
        if self.version != SEALED_KEY_VERSION {
            return Err(SseError::UnsupportedVersion(self.version));
        }
        if self.algorithm != SEAL_ALGORITHM {
            return Err(SseError::MalformedSealedKey("unknown algorithm"));
        }
        if self.ciphertext.len() != SEALED_LEN {
            return Err(SseError::MalformedSealedKey("wrong length"));
        }
        if self.kind != binding.kind {
            return Err(SseError::KeyUnseal);
        }
        let kek = binding.kek(secret);
        let mut buf = Zeroizing::new([0u8; KEY_LEN]);
        buf.copy_from_slice(&self.ciphertext[..KEY_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.ciphertext[KEY_LEN..]);
        let aad = [self.version, self.kind.code()];
        Backend::default()
            .cipher(&kek)?
            .open(&self.iv, &aad, &mut buf[..], &tag)
            .map_err(|_| SseError::KeyUnseal)?;
        Ok(ObjectKey::from_bytes(*buf))
    }

    /// Compact binary form for metadata records ([`SEALED_KEY_BYTES`] bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEALED_KEY_BYTES);
        out.push(self.version);
        out.push(self.kind.code());
        out.extend_from_slice(&self.iv);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn from_bytes(b: &[u8]) -> SseResult<Self> {
        let (&version, rest) = b
            .split_first()
            .ok_or(SseError::MalformedSealedKey("empty"))?;
        if version != SEALED_KEY_VERSION {
            return Err(SseError::UnsupportedVersion(version));
        }
        if b.len() != SEALED_KEY_BYTES {
            return Err(SseError::MalformedSealedKey("wrong length"));
        }
        let kind =
            SseKind::from_code(rest[0]).ok_or(SseError::MalformedSealedKey("unknown SSE type"))?;
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&rest[1..1 + IV_LEN]);
        Ok(Self {
            version,
            algorithm: SEAL_ALGORITHM.to_string(),
            kind,
            iv,
            ciphertext: rest[1 + IV_LEN..].to_vec(),
        })
    }
}

/// Length of the stored SSE-C key verifier.
pub const VERIFIER_LEN: usize = 32;
const VERIFIER_LABEL: &[u8] = b"cairn-ssec-verify-v1";

/// An SSE-C key from the request headers. Never stored: only [`CustomerKey::verifier`] is.
pub struct CustomerKey(Secret);

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(..)")
    }
}

impl CustomerKey {
    /// The only algorithm S3 accepts for SSE-C.
    pub const ALGORITHM: &'static str = "AES256";

    /// Validates the three SSE-C headers: algorithm, base64 key (32 bytes) and base64 MD5 of the key.
    /// A malformed header gives [`SseError::CustomerKeyInvalid`], a wrong MD5
    /// [`SseError::CustomerKeyMd5Mismatch`] (both 400 at the S3 edge).
    pub fn parse(algorithm: &str, key_b64: &str, key_md5_b64: &str) -> SseResult<Self> {
        if algorithm != Self::ALGORITHM {
            return Err(SseError::CustomerKeyInvalid("algorithm must be AES256"));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let raw = Zeroizing::new(
            b64.decode(key_b64.trim())
                .map_err(|_| SseError::CustomerKeyInvalid("key is not valid base64"))?,
        );
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if raw.len() != KEY_LEN {
            return Err(SseError::CustomerKeyInvalid("key must be 256 bits"));
        }
        key.copy_from_slice(&raw);
        let md5 = b64
            .decode(key_md5_b64.trim())
            .map_err(|_| SseError::CustomerKeyInvalid("key MD5 is not valid base64"))?;
        let actual = Md5::digest(&key[..]);
        if md5.len() != actual.len() || !bool::from(md5.as_slice().ct_eq(actual.as_slice())) {
            return Err(SseError::CustomerKeyMd5Mismatch);
        }
        Ok(Self(key))
    }

    pub fn from_bytes(key: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(key))
    }

    pub fn secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Base64 MD5 of the key, echoed in `x-amz-server-side-encryption-customer-key-MD5`.
    pub fn key_md5_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(&self.0[..]))
    }

    /// HMAC-SHA256 keyed by the customer key over the object's name: lets a GET tell a wrong key
    /// (403) from damage, without storing anything that helps recover the key. Bound to the object
    /// so equal keys on two objects do not show as equal verifiers.
    pub fn verifier(&self, bucket: &str, object: &str) -> [u8; VERIFIER_LEN] {
        let mut msg = VERIFIER_LABEL.to_vec();
        put_field(&mut msg, bucket.as_bytes());
        put_field(&mut msg, object.as_bytes());
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..]) {
            Ok(m) => m,
            Err(_) => return [0u8; VERIFIER_LEN],
        };
        mac.update(&msg);
        mac.finalize().into_bytes().into()
    }

    /// Compares in constant time with a stored verifier; a mismatch is
    /// [`SseError::CustomerKeyMismatch`] (403 AccessDenied at the S3 edge).
    pub fn verify(&self, bucket: &str, object: &str, stored: &[u8]) -> SseResult<()> {
        let ours = self.verifier(bucket, object);
        if stored.len() == VERIFIER_LEN && bool::from(ours.as_slice().ct_eq(stored)) {
            Ok(())
        } else {
            Err(SseError::CustomerKeyMismatch)
        }
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
