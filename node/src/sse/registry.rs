//! The KMS backed by the control plane's key registry (`cairn admin kms key ...`), and the KMS a
//! node serves with: the static key (if configured) for its own name, the registry for the rest.
//!
//! Registry key material lives in the replicated state only wrapped by the master key
//! (`CAIRN_KMS_MASTER_KEY`), which is given to every node and never written to a drive, so neither
//! the Raft log nor the state mirrored on the drives holds a usable key. Without a master key the
//! registry is off: a key derived from anything on the drives (the generated root password lives
//! in `root.json` there) would hand every key to whoever takes one drive. Every data-key request
//! looks at the key's current state: a disabled key refuses until enabled, a deleted one (material
//! wiped) for good.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use cairn_control_plane::kms::{KeyState, KmsCommand};
use cairn_control_plane::Command;

use super::kms::{new_data_key, open_blob, seal_blob, validate_key_name};
use super::{random_secret, Context, DataKey, Kms, Secret, SseError, SseResult, KEY_LEN};
use crate::catalog::Catalog;

/// Binds wrapped key material to the registry and the key's name.
const WRAP_LABEL: &[u8] = b"cairn-kms-registry-wrap-v1";
/// Binds data-key blobs of registry keys.
const DATA_KEY_LABEL: &[u8] = b"cairn-kms-registry-v1";
/// The key SSE-S3 uses when no static key is configured.
pub const DEFAULT_KEY: &str = "cairn-default";
/// `NAME:BASE64(32 bytes)` (MinIO's `MINIO_KMS_SECRET_KEY` format; a bare base64 key, as
/// earlier versions took, is accepted too): the master key wrapping registry material.
pub const MASTER_KEY_ENV: &str = "CAIRN_KMS_MASTER_KEY";

/// The master key of the registry, and the name it was given (for logs; never the key).
pub struct MasterKey {
    pub name: String,
    pub key: Secret,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.name)
    }
}

impl MasterKey {
    /// Parses `NAME:BASE64` or bare `BASE64` (base64 has no `:`, so the two cannot be confused).
    /// Errors name the variable and never echo the key.
    pub fn parse(value: &str) -> SseResult<Self> {
        let bad = |m: &str| SseError::KmsConfig(format!("{MASTER_KEY_ENV}: {m}"));
        let (name, b64) = match value.trim().split_once(':') {
            Some((name, b64)) => {
                validate_key_name(name).map_err(|e| match e {
                    SseError::KmsConfig(m) => bad(&m),
                    other => other,
                })?;
                (name, b64)
            }
            None => ("master", value),
        };
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| {
                    bad("expected NAME:BASE64 of 32 bytes; the key is not valid base64")
                })?,
        );
        let key: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| {
            bad(&format!(
                "key must decode to {KEY_LEN} bytes, got {}",
                raw.len()
            ))
        })?;
        Ok(Self {
            name: name.to_string(),
            key: Zeroizing::new(key),
        })
    }

    /// Reads [`MASTER_KEY_ENV`]; `Ok(None)` when it is unset or empty.
    pub fn from_env() -> SseResult<Option<Self>> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => Self::parse(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SseError::KmsConfig(format!(
                "{MASTER_KEY_ENV} is not valid UTF-8"
            ))),
        }
    }

    /// A key for `purpose` derived from the master key (HKDF-SHA256), so the registry wrap and
    /// other users (IAM secret sealing) never share a key.
    pub fn derive(&self, purpose: &[u8]) -> Secret {
        let hk = Hkdf::<Sha256>::new(Some(b"cairn-kms-master-v1"), &self.key[..]);
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
        let _ = hk.expand(purpose, &mut k[..]);
        k
    }
}

/// The root key earlier versions derived from the root secret key when no master key was given.
/// Only to recognise registry keys wrapped by it, so that the error can say what happened: it is
/// never used to unwrap (the root password lies on the drives when it was generated).
fn legacy_root_key(root_secret: &str) -> Secret {
    let hk = Hkdf::<Sha256>::new(Some(b"cairn-kms-root-v1"), root_secret.as_bytes());
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
    let _ = hk.expand(b"registry root key", &mut k[..]);
    k
}

/// The error of every registry operation on a node without a master key (and of SSE-S3 /
/// SSE-KMS on a node without any KMS): names the setting, never a key.
pub fn master_key_missing() -> SseError {
    SseError::KmsNotConfigured(format!(
        "the KMS key registry is off: set {MASTER_KEY_ENV}=NAME:BASE64 (32 random bytes, the same \
         on every node, kept off the data drives), or use {} or {}",
        super::kms::STATIC_KEY_ENV,
        super::kes::client::ENDPOINT_ENV
    ))
}

pub struct RegistryKms {
    catalog: Arc<Catalog>,
    root: Secret,
    /// The password-derived key earlier versions wrapped with: only to re-wrap such keys under
    /// `root` ([`RegistryKms::migrate`]), never to serve them.
    legacy: Option<Secret>,
    rng: Mutex<Box<dyn RngCore + Send>>,
}

impl RegistryKms {
    /// `root` is the master key; `legacy_root_secret` the root secret key, whose derived key
    /// wrapped registry keys before a master key was required.
    pub fn new(
        catalog: Arc<Catalog>,
        root: Secret,
        legacy_root_secret: Option<&str>,
        rng: Box<dyn RngCore + Send>,
    ) -> Self {
        Self {
            catalog,
            root,
            legacy: legacy_root_secret.map(legacy_root_key),
            rng: Mutex::new(rng),
        }
    }

    /// Fresh key material for a new key `name`, wrapped for the registry (the proposer's half of
    /// `kms key create`; applying it is then pure).
    pub fn wrap_new_key(&self, name: &str) -> SseResult<Vec<u8>> {
        validate_key_name(name)?;
        let material =
            random_secret(&mut **self.rng.lock().unwrap_or_else(PoisonError::into_inner));
        self.wrap(name, &material)
    }

    /// `material` of key `name` wrapped under the master key, as the registry stores it.
    fn wrap(&self, name: &str, material: &Secret) -> SseResult<Vec<u8>> {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        seal_blob(
            &self.root,
            WRAP_LABEL,
            name,
            &Context::new(),
            material,
            &mut **rng,
        )
    }

    /// The material of an enabled key.
    fn material(&self, name: &str) -> SseResult<Secret> {
        let state = self.catalog.state();
        let key = state
            .kms
            .keys
            .get(name)
            .ok_or_else(|| SseError::KmsKeyNotFound(name.to_string()))?;
        match key.state {
            KeyState::Enabled => {}
            KeyState::Disabled => return Err(SseError::KmsKeyDisabled(name.to_string())),
            KeyState::Deleted => return Err(SseError::KmsKeyDeleted(name.to_string())),
        }
        open_blob(&self.root, WRAP_LABEL, name, &Context::new(), &key.wrapped).map_err(|_| {
            SseError::KmsConfig(format!(
                "key {name} cannot be unwrapped: is {MASTER_KEY_ENV} the one it was created with?"
            ))
        })
    }

    /// Upgrade path: a key an earlier version wrapped with the password-derived key is re-wrapped
    /// under the master key (a compare-and-swap in the replicated state, so nodes racing to do it
    /// agree) and then served like any other. Returns whether it changed anything.
    async fn migrate(&self, name: &str) -> SseResult<bool> {
        let Some(legacy) = &self.legacy else {
            return Ok(false);
        };
        let from = match self.catalog.state().kms.keys.get(name) {
            Some(k) if !k.wrapped.is_empty() => k.wrapped.clone(),
            _ => return Ok(false),
        };
        if open_blob(&self.root, WRAP_LABEL, name, &Context::new(), &from).is_ok() {
            return Ok(false);
        }
        let Ok(material) = open_blob(legacy, WRAP_LABEL, name, &Context::new(), &from) else {
            return Ok(false);
        };
        let wrapped = self.wrap(name, &material)?;
        self.catalog
            .propose(Command::Kms(KmsCommand::Rewrap {
                name: name.to_string(),
                from,
                wrapped,
            }))
            .await
            .map_err(|e| SseError::KmsUnavailable(e.to_string()))?;
        tracing::warn!(
            key = name,
            "KMS key re-wrapped under {MASTER_KEY_ENV} (it was wrapped by the key earlier versions \
             derived from the root password)"
        );
        Ok(true)
    }

    /// The material of an enabled key, re-wrapping a legacy key first.
    async fn material_migrating(&self, name: &str) -> SseResult<Secret> {
        match self.material(name) {
            Err(SseError::KmsConfig(m)) => {
                if self.migrate(name).await? {
                    self.material(name)
                } else {
                    Err(SseError::KmsConfig(m))
                }
            }
            other => other,
        }
    }
}

#[async_trait]
impl Kms for RegistryKms {
    fn default_key_id(&self) -> &str {
        DEFAULT_KEY
    }

    async fn generate_data_key(&self, key_id: &str, context: &Context) -> SseResult<DataKey> {
        let master = self.material_migrating(key_id).await?;
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        new_data_key(&master, DATA_KEY_LABEL, key_id, context, &mut **rng)
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &Context,
    ) -> SseResult<Secret> {
        let master = self.material_migrating(key_id).await?;
        open_blob(&master, DATA_KEY_LABEL, key_id, context, ciphertext)
    }
}

/// A node's KMS: the configured one answers for the keys it owns ([`Kms::owns`]: the static key
/// for its own name, a KES server for all), the registry for every other name.
pub struct SiteKms {
    pub external: Option<Arc<dyn Kms>>,
    pub registry: Option<Arc<RegistryKms>>,
}

impl SiteKms {
    fn route(&self, key_id: &str) -> SseResult<&dyn Kms> {
        match (&self.external, &self.registry) {
            (Some(e), _) if e.owns(key_id) => Ok(e.as_ref()),
            (_, Some(r)) => Ok(r.as_ref()),
            (Some(e), None) => Ok(e.as_ref()),
            (None, None) => Err(master_key_missing()),
        }
    }
}

#[async_trait]
impl Kms for SiteKms {
    fn default_key_id(&self) -> &str {
        match (&self.external, &self.registry) {
            (Some(e), _) => e.default_key_id(),
            _ => DEFAULT_KEY,
        }
    }

    async fn generate_data_key(&self, key_id: &str, context: &Context) -> SseResult<DataKey> {
        self.route(key_id)?.generate_data_key(key_id, context).await
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &Context,
    ) -> SseResult<Secret> {
        self.route(key_id)?
            .decrypt(key_id, ciphertext, context)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64: &str = "IyqsU3kMFloCNup4BsZtf/rmfHVcTgznO2F25CkEH1g=";

    #[test]
    fn master_key_takes_minio_format_and_bare_base64() {
        let m = MasterKey::parse(&format!("site-master:{B64}")).expect("NAME:BASE64");
        assert_eq!(m.name, "site-master");
        let bare = MasterKey::parse(B64).expect("bare base64");
        assert_eq!(*bare.key, *m.key);
        assert_ne!(*m.derive(b"a"), *m.derive(b"b"));
        assert_ne!(*m.derive(b"a"), *m.key);
        for (bad, want) in [
            ("m:AAAA", "got 3"),
            ("m:not*base64", "not valid base64"),
            (&format!("bad name:{B64}")[..], "may only contain"),
        ] {
            let e = MasterKey::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(want) && e.contains(MASTER_KEY_ENV), "{e}");
            assert!(!e.contains("IyqsU3k"), "key material leaked: {e}");
        }
        assert!(!format!("{m:?}").contains("IyqsU3k"));
    }

    #[test]
    fn missing_master_key_names_the_setting() {
        let e = master_key_missing().to_string();
        assert!(e.contains(MASTER_KEY_ENV), "{e}");
    }
}
