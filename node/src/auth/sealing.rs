//! Sealing IAM secret keys for the replicated state (which is mirrored on the drives): AES-256-GCM
//! with the access key as associated data, so a sealed secret copied onto another identity does
//! not open.
//!
//! The key: derived from the KMS master key (`CAIRN_KMS_MASTER_KEY`) when the node has one, so the
//! drives hold nothing that opens the secrets. Without one, derived (HKDF-SHA256) from the root
//! credentials, as before: with generated credentials `root.json` lies on the same drives, so a
//! stolen drive then yields these secrets, but it yields root itself anyway. Secrets sealed under
//! the root-derived key (earlier versions, a site that had no master key, a peer site's reseal)
//! still open, and are sealed under the master key when next written.

use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use cairn_control_plane::iam::identity::SealedSecret;

use super::RootCredentials;
use crate::sse::package::{Backend, TAG_LEN};
use crate::sse::registry::MasterKey;
use crate::sse::KEY_LEN;

const SALT: &[u8] = b"cairn-iam-secret-v1";
/// What the master key derives the sealing key for.
const MASTER_PURPOSE: &[u8] = b"cairn-iam-secret-v2";
const NONCE_LEN: usize = 12;

/// Seals and opens secret keys; `Debug` shows nothing of the key.
pub struct SecretSealer {
    /// Seals, and is tried first to open.
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The root-derived key, when `key` is the master key's: still opens what it sealed.
    legacy: Option<Zeroizing<[u8; KEY_LEN]>>,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(..)")
    }
}

impl SecretSealer {
    /// The sealer of a site given `root` and, if any, the KMS master key.
    pub fn new(root: &RootCredentials, master: Option<&MasterKey>) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), root.secret_key.as_bytes());
        let mut rooted = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
        let _ = hk.expand(root.access_key.as_bytes(), &mut rooted[..]);
        match master {
            Some(m) => Self {
                key: m.derive(MASTER_PURPOSE),
                legacy: Some(rooted),
            },
            None => Self {
                key: rooted,
                legacy: None,
            },
        }
    }

    /// Encrypts `secret` for the identity `access_key` with a fresh nonce from `rng`.
    pub fn seal(&self, access_key: &str, secret: &str, rng: &mut dyn RngCore) -> SealedSecret {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut buf = secret.as_bytes().to_vec();
        let tag = Backend::default()
            .cipher(&self.key)
            .and_then(|c| c.seal(&nonce, access_key.as_bytes(), &mut buf));
        match tag {
            Ok(tag) => {
                buf.extend_from_slice(&tag);
                SealedSecret {
                    nonce: nonce.to_vec(),
                    ciphertext: buf,
                }
            }
            // AES-GCM with a valid 32-byte key does not fail; an unopenable record just means the
            // identity cannot sign (never a secret stored in clear).
            Err(_) => SealedSecret {
                nonce: nonce.to_vec(),
                ciphertext: Vec::new(),
            },
        }
    }

    /// The secret, or `None` if it was sealed under another master key or root credentials, or
    /// for another access key.
    pub fn open(&self, access_key: &str, sealed: &SealedSecret) -> Option<Zeroizing<String>> {
        std::iter::once(&self.key)
            .chain(&self.legacy)
            .find_map(|key| Self::open_with(key, access_key, sealed))
    }

    fn open_with(
        key: &[u8; KEY_LEN],
        access_key: &str,
        sealed: &SealedSecret,
    ) -> Option<Zeroizing<String>> {
        let nonce: [u8; NONCE_LEN] = sealed.nonce.as_slice().try_into().ok()?;
        let split = sealed.ciphertext.len().checked_sub(TAG_LEN)?;
        let (body, tag) = sealed.ciphertext.split_at(split);
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        let mut buf = Zeroizing::new(body.to_vec());
        Backend::default()
            .cipher(key)
            .and_then(|c| c.open(&nonce, access_key.as_bytes(), &mut buf, &tag))
            .ok()?;
        String::from_utf8(buf.to_vec()).ok().map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn root(secret: &str) -> RootCredentials {
        RootCredentials {
            access_key: "admin".into(),
            secret_key: secret.into(),
        }
    }

    #[test]
    fn opens_only_for_the_same_root_and_access_key() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let s = SecretSealer::new(&root("root-secret-1"), None);
        let sealed = s.seal("alice", "alice-secret", &mut rng);
        assert!(!sealed.ciphertext.windows(12).any(|w| w == b"alice-secret"));
        assert_eq!(
            s.open("alice", &sealed).as_deref().map(String::as_str),
            Some("alice-secret")
        );
        assert!(s.open("bob", &sealed).is_none());
        assert!(SecretSealer::new(&root("root-secret-2"), None)
            .open("alice", &sealed)
            .is_none());
        let mut truncated = sealed.clone();
        truncated.ciphertext.truncate(3);
        assert!(s.open("alice", &truncated).is_none());
        assert_ne!(s.seal("alice", "alice-secret", &mut rng), sealed);
        assert!(!format!("{s:?}").contains("root-secret"));
    }

    #[test]
    fn with_a_master_key_the_root_credentials_alone_do_not_open() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let master = |b: u8| MasterKey {
            name: "m".into(),
            key: Zeroizing::new([b; KEY_LEN]),
        };
        let r = root("root-secret-1");
        let s = SecretSealer::new(&r, Some(&master(1)));
        let sealed = s.seal("alice", "alice-secret", &mut rng);
        assert!(SecretSealer::new(&r, None).open("alice", &sealed).is_none());
        assert!(SecretSealer::new(&r, Some(&master(2)))
            .open("alice", &sealed)
            .is_none());
        assert_eq!(
            s.open("alice", &sealed).as_deref().map(String::as_str),
            Some("alice-secret")
        );
        // What the root-derived key sealed (earlier versions) still opens.
        let old = SecretSealer::new(&r, None).seal("bob", "bob-secret", &mut rng);
        assert_eq!(
            s.open("bob", &old).as_deref().map(String::as_str),
            Some("bob-secret")
        );
    }
}
