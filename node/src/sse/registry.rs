//! The KMS backed by the control plane's key registry (`cairn admin kms key ...`), and the KMS a
//! node serves with: the static key (if configured) for its own name, the registry for the rest.
//!
//! Registry key material lives in the replicated state only wrapped by the root key
//! (`CAIRN_KMS_MASTER_KEY`, or derived from the root credentials), so neither the Raft log nor the
//! state mirrored on the drives holds a usable key. Every data-key request looks at the key's
//! current state: a disabled key refuses until enabled, a deleted one (material wiped) for good.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use cairn_control_plane::kms::KeyState;

use super::kms::{new_data_key, open_blob, seal_blob, validate_key_name};
use super::{random_secret, Context, DataKey, Kms, Secret, SseError, SseResult, KEY_LEN};
use crate::catalog::Catalog;

/// Binds wrapped key material to the registry and the key's name.
const WRAP_LABEL: &[u8] = b"cairn-kms-registry-wrap-v1";
/// Binds data-key blobs of registry keys.
const DATA_KEY_LABEL: &[u8] = b"cairn-kms-registry-v1";
/// The key SSE-S3 uses when no static key is configured.
pub const DEFAULT_KEY: &str = "cairn-default";
/// Base64 of 32 bytes: the root key wrapping registry material.
pub const MASTER_KEY_ENV: &str = "CAIRN_KMS_MASTER_KEY";

/// The root key derived from the root secret key, when no `CAIRN_KMS_MASTER_KEY` is given.
pub fn derive_root_key(root_secret: &str) -> Secret {
    let hk = Hkdf::<Sha256>::new(Some(b"cairn-kms-root-v1"), root_secret.as_bytes());
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
    let _ = hk.expand(b"registry root key", &mut k[..]);
    k
}

pub struct RegistryKms {
    catalog: Arc<Catalog>,
    root: Secret,
    rng: Mutex<Box<dyn RngCore + Send>>,
}

impl RegistryKms {
    pub fn new(catalog: Arc<Catalog>, root: Secret, rng: Box<dyn RngCore + Send>) -> Self {
        Self {
            catalog,
            root,
            rng: Mutex::new(rng),
        }
    }

    /// Fresh key material for a new key `name`, wrapped for the registry (the proposer's half of
    /// `kms key create`; applying it is then pure).
    pub fn wrap_new_key(&self, name: &str) -> SseResult<Vec<u8>> {
        validate_key_name(name)?;
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let material = random_secret(&mut **rng);
        seal_blob(
            &self.root,
            WRAP_LABEL,
            name,
            &Context::new(),
            &material,
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
}

#[async_trait]
impl Kms for RegistryKms {
    fn default_key_id(&self) -> &str {
        DEFAULT_KEY
    }

    async fn generate_data_key(&self, key_id: &str, context: &Context) -> SseResult<DataKey> {
        let master = self.material(key_id)?;
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        new_data_key(&master, DATA_KEY_LABEL, key_id, context, &mut **rng)
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &Context,
    ) -> SseResult<Secret> {
        let master = self.material(key_id)?;
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
            (None, None) => Err(SseError::KmsConfig("no KMS is configured".into())),
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
