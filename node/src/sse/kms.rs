//! The KMS abstraction and its simplest backend, one static key from the environment.
//!
//! A KMS hands out *data keys*: a fresh 256-bit secret plus the same secret encrypted under a named
//! master key ("ciphertext blob"). Cairn stores only the blob; reading an object asks the KMS to
//! decrypt it again, so disabling or deleting the master key in the KMS makes every object under it
//! unreadable (secure erasure). The registry and KES backends implement the same trait.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

use super::package::Backend;
use super::{random_secret, Secret, SseError, SseResult, KEY_LEN};

/// Encryption context: authenticated, non-secret key/value pairs bound to a data key. A `BTreeMap`
/// so that its canonical encoding (sorted by key) is deterministic.
pub type Context = BTreeMap<String, String>;

/// A data key: use `plaintext` and drop it; store `ciphertext`.
pub struct DataKey {
    pub plaintext: Secret,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({} byte blob)", self.ciphertext.len())
    }
}

/// A key management service. Async because the registry (Raft) and KES backends go over the network.
///
/// Key status is reported as distinct errors so the S3 edge and the operator can tell a missing key
/// ([`SseError::KmsKeyNotFound`]) from one that is switched off ([`SseError::KmsKeyDisabled`]) or
/// gone for good ([`SseError::KmsKeyDeleted`]).
#[async_trait]
pub trait Kms: Send + Sync {
    /// The key SSE-S3 uses, and SSE-KMS when the request names none.
    fn default_key_id(&self) -> &str;

    /// A fresh data key under `key_id`, bound to `context`.
    async fn generate_data_key(&self, key_id: &str, context: &Context) -> SseResult<DataKey>;

    /// The plaintext of a data key generated under `key_id` with the same `context`.
    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &Context,
    ) -> SseResult<Secret>;

    /// Whether this KMS answers for `key_id` when a node also has its key registry
    /// ([`super::registry::SiteKms`]). A single static key owns only its own name; a remote KMS
    /// (KES) owns every name, so no key id silently falls through to the local registry.
    fn owns(&self, key_id: &str) -> bool {
        key_id == self.default_key_id()
    }
}

/// Appends `bytes` with a 4-byte big-endian length, so that concatenated fields cannot be shifted
/// into one another ("a" + "bc" vs "ab" + "c").
pub(crate) fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Canonical encoding of a context: pair count, then each key and value, sorted by key.
pub(crate) fn put_context(out: &mut Vec<u8>, context: &Context) {
    out.extend_from_slice(&(context.len() as u32).to_be_bytes());
    for (k, v) in context {
        put_field(out, k.as_bytes());
        put_field(out, v.as_bytes());
    }
}

/// Environment variable holding the static key, `NAME:BASE64(32 bytes)`.
pub const STATIC_KEY_ENV: &str = "CAIRN_KMS_SECRET_KEY";

const STATIC_BLOB_VERSION: u8 = 1;
const STATIC_AAD_LABEL: &[u8] = b"cairn-kms-static-v1";
const IV_LEN: usize = 12;
const BLOB_LEN: usize = 1 + IV_LEN + KEY_LEN + super::TAG_LEN;

/// The built-in single-key KMS (`CAIRN_KMS_SECRET_KEY`), for deployments without a real KMS yet.
/// Its one key is always enabled; it cannot be disabled or deleted, only replaced by moving to the
/// registry KMS.
///
/// Blob format (v1): `0x01 || iv (12) || AES-256-GCM(static_key, iv, aad, data_key) (32 + 16)`,
/// `aad = "cairn-kms-static-v1" || len-prefixed key name || canonical context`.
pub struct StaticKms {
    name: String,
    key: Secret,
    rng: Mutex<Box<dyn RngCore + Send>>,
}

impl std::fmt::Debug for StaticKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKms({})", self.name)
    }
}

impl StaticKms {
    /// A static KMS whose IVs and data keys come from `rng` (seeded in the simulator).
    pub fn new(name: &str, key: [u8; KEY_LEN], rng: Box<dyn RngCore + Send>) -> SseResult<Self> {
        validate_key_name(name)?;
        Ok(Self {
            name: name.to_string(),
            key: Zeroizing::new(key),
            rng: Mutex::new(rng),
        })
    }

    /// Parses `NAME:BASE64` as in `CAIRN_KMS_SECRET_KEY`. Errors never echo the key.
    pub fn parse(value: &str, rng: Box<dyn RngCore + Send>) -> SseResult<Self> {
        let bad = |m: &str| SseError::KmsConfig(format!("{STATIC_KEY_ENV}: {m}"));
        let (name, b64) = value
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("expected NAME:BASE64KEY"))?;
        if name.is_empty() {
            return Err(bad("key name is empty"));
        }
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| bad("key is not valid base64"))?,
        );
        let key: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| {
            bad(&format!(
                "key must decode to {KEY_LEN} bytes, got {}",
                raw.len()
            ))
        })?;
        let kms = Self::new(name, key, rng);
        let mut key = key;
        zeroize::Zeroize::zeroize(&mut key);
        kms.map_err(|e| match e {
            SseError::KmsConfig(m) => bad(&m),
            other => other,
        })
    }

    /// Reads [`STATIC_KEY_ENV`]; `Ok(None)` when it is unset.
    pub fn from_env(rng: Box<dyn RngCore + Send>) -> SseResult<Option<Self>> {
        match std::env::var(STATIC_KEY_ENV) {
            Ok(v) => Self::parse(&v, rng).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SseError::KmsConfig(format!(
                "{STATIC_KEY_ENV} is not valid UTF-8"
            ))),
        }
    }

    fn check_key(&self, key_id: &str) -> SseResult<()> {
        if key_id == self.name {
            Ok(())
        } else {
            Err(SseError::KmsKeyNotFound(key_id.to_string()))
        }
    }
}

/// `label || field(name) || context`: what a data-key blob is bound to.
fn blob_aad(label: &[u8], name: &str, context: &Context) -> Vec<u8> {
    let mut aad = label.to_vec();
    put_field(&mut aad, name.as_bytes());
    put_context(&mut aad, context);
    aad
}

/// Seals a 32-byte secret under `master` as a v1 blob
/// (`0x01 || iv || AES-256-GCM(master, iv, blob_aad, secret) || tag`), bound to `label`, the key
/// `name` and `context`. Shared by the static and the registry KMS.
pub(crate) fn seal_blob(
    master: &[u8; KEY_LEN],
    label: &[u8],
    name: &str,
    context: &Context,
    secret: &[u8; KEY_LEN],
    rng: &mut dyn RngCore,
) -> SseResult<Vec<u8>> {
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let mut buf = Zeroizing::new(*secret);
    let tag = Backend::default().cipher(master)?.seal(
        &iv,
        &blob_aad(label, name, context),
        &mut buf[..],
    )?;
    let mut ciphertext = Vec::with_capacity(BLOB_LEN);
    ciphertext.push(STATIC_BLOB_VERSION);
    ciphertext.extend_from_slice(&iv);
    ciphertext.extend_from_slice(&buf[..]);
    ciphertext.extend_from_slice(&tag);
    Ok(ciphertext)
}

/// A fresh data key under `master`, its blob bound to `label`, `name` and `context`.
pub(crate) fn new_data_key(
    master: &[u8; KEY_LEN],
    label: &[u8],
    name: &str,
    context: &Context,
    rng: &mut dyn RngCore,
) -> SseResult<DataKey> {
    let plaintext = random_secret(rng);
    let ciphertext = seal_blob(master, label, name, context, &plaintext, rng)?;
    Ok(DataKey {
        plaintext,
        ciphertext,
    })
}

/// Opens a blob of [`seal_blob`]; anything but the exact master, label, name and context is
/// [`SseError::KmsDecrypt`].
pub(crate) fn open_blob(
    master: &[u8; KEY_LEN],
    label: &[u8],
    name: &str,
    context: &Context,
    ciphertext: &[u8],
) -> SseResult<Secret> {
    if ciphertext.len() != BLOB_LEN || ciphertext[0] != STATIC_BLOB_VERSION {
        return Err(SseError::KmsDecrypt);
    }
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&ciphertext[1..1 + IV_LEN]);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&ciphertext[1 + IV_LEN..1 + IV_LEN + KEY_LEN]);
    let mut tag = [0u8; super::TAG_LEN];
    tag.copy_from_slice(&ciphertext[1 + IV_LEN + KEY_LEN..]);
    Backend::default()
        .cipher(master)?
        .open(&iv, &blob_aad(label, name, context), &mut key[..], &tag)
        .map_err(|_| SseError::KmsDecrypt)?;
    Ok(key)
}

/// Key names end up in object metadata, logs and CLI output: keep them to a safe alphabet.
pub(crate) fn validate_key_name(name: &str) -> SseResult<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(SseError::KmsConfig(
            "key name must be 1 to 255 characters".into(),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(SseError::KmsConfig(
            "key name may only contain letters, digits, '-', '_' and '.'".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Kms for StaticKms {
    fn default_key_id(&self) -> &str {
        &self.name
    }

    async fn generate_data_key(&self, key_id: &str, context: &Context) -> SseResult<DataKey> {
        self.check_key(key_id)?;
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        new_data_key(&self.key, STATIC_AAD_LABEL, &self.name, context, &mut **rng)
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &Context,
    ) -> SseResult<Secret> {
        self.check_key(key_id)?;
        open_blob(&self.key, STATIC_AAD_LABEL, &self.name, context, ciphertext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> Box<dyn RngCore + Send> {
        Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(7))
    }

    const SEED_KEY: &str = "minio-default-key:IyqsU3kMFloCNup4BsZtf/rmfHVcTgznO2F25CkEH1g=";

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_seed_format() {
        let kms = StaticKms::parse(SEED_KEY, rng()).expect("valid");
        assert_eq!(kms.default_key_id(), "minio-default-key");
    }

    #[test]
    fn parse_errors_are_clear_and_never_echo_the_key() {
        let cases = [
            ("no-colon-here", "expected NAME:BASE64KEY"),
            (
                ":IyqsU3kMFloCNup4BsZtf/rmfHVcTgznO2F25CkEH1g=",
                "name is empty",
            ),
            ("k:not*base64!", "not valid base64"),
            ("k:AAAA", "got 3"),
            (
                "bad name:IyqsU3kMFloCNup4BsZtf/rmfHVcTgznO2F25CkEH1g=",
                "may only contain",
            ),
        ];
        for (value, want) in cases {
            let err = StaticKms::parse(value, rng()).expect_err(value).to_string();
            assert!(err.contains(want), "{value}: {err}");
            assert!(!err.contains("IyqsU3k"), "key material leaked: {err}");
            assert!(err.contains(STATIC_KEY_ENV), "{err}");
        }
    }

    #[tokio::test]
    async fn data_key_round_trip_and_context_binding() {
        let kms = StaticKms::parse(SEED_KEY, rng()).expect("valid");
        let id = kms.default_key_id().to_string();
        let c = ctx(&[("bucket", "b/o")]);
        let dk = kms.generate_data_key(&id, &c).await.expect("generate");
        assert_eq!(dk.ciphertext.len(), BLOB_LEN);
        let back = kms.decrypt(&id, &dk.ciphertext, &c).await.expect("decrypt");
        assert_eq!(*back, *dk.plaintext);

        let other = ctx(&[("bucket", "b/x")]);
        assert_eq!(
            kms.decrypt(&id, &dk.ciphertext, &other).await.err(),
            Some(SseError::KmsDecrypt)
        );
        assert_eq!(
            kms.decrypt(&id, &dk.ciphertext, &Context::new())
                .await
                .err(),
            Some(SseError::KmsDecrypt)
        );
        let mut bad = dk.ciphertext.clone();
        bad[20] ^= 1;
        assert_eq!(
            kms.decrypt(&id, &bad, &c).await.err(),
            Some(SseError::KmsDecrypt)
        );
        assert_eq!(
            kms.decrypt(&id, &dk.ciphertext[..10], &c).await.err(),
            Some(SseError::KmsDecrypt)
        );
        assert_eq!(
            kms.generate_data_key("other", &c).await.err(),
            Some(SseError::KmsKeyNotFound("other".into()))
        );
        assert_eq!(
            kms.decrypt("other", &dk.ciphertext, &c).await.err(),
            Some(SseError::KmsKeyNotFound("other".into()))
        );
    }

    #[tokio::test]
    async fn data_keys_are_fresh_and_deterministic_per_seed() {
        let a = StaticKms::parse(SEED_KEY, rng()).expect("valid");
        let b = StaticKms::parse(SEED_KEY, rng()).expect("valid");
        let c = Context::new();
        let a1 = a
            .generate_data_key("minio-default-key", &c)
            .await
            .expect("a1");
        let a2 = a
            .generate_data_key("minio-default-key", &c)
            .await
            .expect("a2");
        let b1 = b
            .generate_data_key("minio-default-key", &c)
            .await
            .expect("b1");
        assert_ne!(*a1.plaintext, *a2.plaintext);
        assert_ne!(a1.ciphertext, a2.ciphertext);
        assert_eq!(*a1.plaintext, *b1.plaintext);
        assert_eq!(a1.ciphertext, b1.ciphertext);
    }

    #[test]
    fn context_encoding_is_unambiguous() {
        let mut x = Vec::new();
        put_context(&mut x, &ctx(&[("a", "bc")]));
        let mut y = Vec::new();
        put_context(&mut y, &ctx(&[("ab", "c")]));
        assert_ne!(x, y);
    }
}
