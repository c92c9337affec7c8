//! STS session credentials that need no replicated state. The secret key is an HMAC of the
//! access key, and the session token seals the claims (parent, expiry, session policy) bound to
//! that access key, both under keys derived from the root credentials that every node of a site
//! holds. So any node verifies a session without a Raft round trip, issuing one costs no
//! consensus write, and expired sessions leave nothing behind. Changing the root credentials
//! revokes every session (as MinIO's STS tokens, signed with the root secret, are revoked).

use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use cairn_control_plane::iam::identity::{Asserted, Parent};

use super::RootCredentials;
use crate::sse::package::{Backend, TAG_LEN};
use crate::sse::KEY_LEN;

/// AWS's prefix for temporary access keys; IAM users and service accounts that happen to use it
/// still take precedence, since their keys are looked up first.
pub const ACCESS_KEY_PREFIX: &str = "ASIA";
const ACCESS_KEY_LEN: usize = 20;
/// `DurationSeconds` bounds (AWS: 15 minutes to 12 hours) and its default.
pub const MIN_DURATION_SECS: u64 = 900;
pub const MAX_DURATION_SECS: u64 = 43_200;
pub const DEFAULT_DURATION_SECS: u64 = 3_600;

const SALT: &[u8] = b"cairn-sts-v1";
const TOKEN_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
/// Tokens longer than this are refused unopened (a session policy is at most 64 KiB).
const MAX_TOKEN_LEN: usize = 96 * 1024;
const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// What a session token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Whose permissions the session has (narrowed by `policy`).
    pub parent: Parent,
    /// Expiry, in nanoseconds since the Unix epoch on the site's clock.
    pub expires_ns: i64,
    /// The inline session policy, which can only narrow the parent's permissions.
    pub policy: Option<String>,
    /// What an external identity provider asserted at login (group DNs, policy names).
    #[serde(default, skip_serializing_if = "Asserted::is_empty")]
    pub asserted: Asserted,
}

/// A freshly issued set of temporary credentials.
pub struct Issued {
    pub access_key: String,
    pub secret_key: Zeroizing<String>,
    pub session_token: String,
}

/// Why a session token does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session token is malformed or was not issued for this access key")]
    Invalid,
}

/// The site's session keys; `Debug` shows nothing of them.
pub struct SessionKeys {
    mac: Zeroizing<[u8; KEY_LEN]>,
    seal: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// True for access keys of the shape this module issues.
pub fn is_session_key(access_key: &str) -> bool {
    access_key.len() == ACCESS_KEY_LEN
        && access_key.starts_with(ACCESS_KEY_PREFIX)
        && access_key.bytes().all(|b| KEY_ALPHABET.contains(&b))
}

impl SessionKeys {
    pub fn new(root: &RootCredentials) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), root.secret_key.as_bytes());
        let mut mac = Zeroizing::new([0u8; KEY_LEN]);
        let mut seal = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
        let _ = hk.expand(b"secret-key", &mut mac[..]);
        let _ = hk.expand(b"session-token", &mut seal[..]);
        Self { mac, seal }
    }

    /// The secret key of a session access key (40 characters, like AWS's).
    pub fn secret_for(&self, access_key: &str) -> Zeroizing<String> {
        // HMAC takes keys of any length: new_from_slice cannot fail.
        let tag = match <Hmac<Sha256> as Mac>::new_from_slice(&self.mac[..]) {
            Ok(mut m) => {
                m.update(access_key.as_bytes());
                m.finalize().into_bytes()
            }
            Err(_) => Default::default(),
        };
        Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..30]))
    }

    fn aad(access_key: &str) -> Vec<u8> {
        let mut aad = SALT.to_vec();
        aad.extend_from_slice(access_key.as_bytes());
        aad
    }

    /// New temporary credentials carrying `claims`.
    pub fn issue(&self, claims: &Claims, rng: &mut dyn RngCore) -> Issued {
        let access_key: String = ACCESS_KEY_PREFIX
            .chars()
            .chain(
                (ACCESS_KEY_PREFIX.len()..ACCESS_KEY_LEN)
                    .map(|_| KEY_ALPHABET[(rng.next_u32() as usize) % KEY_ALPHABET.len()] as char),
            )
            .collect();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut body = serde_json::to_vec(claims).unwrap_or_default();
        let tag = Backend::default()
            .cipher(&self.seal)
            .and_then(|c| c.seal(&nonce, &Self::aad(&access_key), &mut body));
        let mut token = vec![TOKEN_VERSION];
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&body);
        // AES-GCM with a valid 32-byte key does not fail; a token without its tag never opens.
        if let Ok(tag) = tag {
            token.extend_from_slice(&tag);
        }
        Issued {
            secret_key: self.secret_for(&access_key),
            session_token: base64::engine::general_purpose::STANDARD.encode(token),
            access_key,
        }
    }

    /// The claims of `token`, if it was issued by this site for `access_key`. Expiry is the
    /// caller's to check, so that it can tell an expired session from a forged one.
    pub fn open(&self, access_key: &str, token: &str) -> Result<Claims, SessionError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SessionError::Invalid);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| SessionError::Invalid)?;
        let (&version, rest) = raw.split_first().ok_or(SessionError::Invalid)?;
        if version != TOKEN_VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SessionError::Invalid);
        }
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SessionError::Invalid)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| SessionError::Invalid)?;
        let mut buf = body.to_vec();
        Backend::default()
            .cipher(&self.seal)
            .and_then(|c| c.open(&nonce, &Self::aad(access_key), &mut buf, &tag))
            .map_err(|_| SessionError::Invalid)?;
        serde_json::from_slice(&buf).map_err(|_| SessionError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn keys(secret: &str) -> SessionKeys {
        SessionKeys::new(&RootCredentials {
            access_key: "admin".into(),
            secret_key: secret.into(),
        })
    }

    fn claims() -> Claims {
        Claims {
            parent: Parent::User("alice".into()),
            expires_ns: 42,
            policy: Some(r#"{"Statement":[]}"#.into()),
            asserted: Asserted::default(),
        }
    }

    #[test]
    fn issued_credentials_verify_and_carry_their_claims() {
        let k = keys("rootsecret");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let issued = k.issue(&claims(), &mut rng);
        assert!(is_session_key(&issued.access_key), "{}", issued.access_key);
        assert_eq!(issued.secret_key.len(), 40);
        assert_eq!(*k.secret_for(&issued.access_key), *issued.secret_key);
        assert_eq!(
            k.open(&issued.access_key, &issued.session_token),
            Ok(claims())
        );
    }

    #[test]
    fn forged_moved_or_foreign_tokens_do_not_open() {
        let k = keys("rootsecret");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let a = k.issue(&claims(), &mut rng);
        let b = k.issue(&claims(), &mut rng);
        assert_ne!(a.access_key, b.access_key);
        assert_ne!(*a.secret_key, *b.secret_key);
        // A token presented with another session's access key.
        assert_eq!(
            k.open(&b.access_key, &a.session_token),
            Err(SessionError::Invalid)
        );
        // Issued by a site with other root credentials.
        assert_eq!(
            keys("otherroot").open(&a.access_key, &a.session_token),
            Err(SessionError::Invalid)
        );
        // Any flipped byte.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a.session_token)
            .unwrap();
        for i in 0..raw.len() {
            let mut m = raw.clone();
            m[i] ^= 0x01;
            let t = base64::engine::general_purpose::STANDARD.encode(&m);
            assert_eq!(k.open(&a.access_key, &t), Err(SessionError::Invalid), "{i}");
        }
        for junk in ["", "!!!", "AQ==", &"A".repeat(MAX_TOKEN_LEN + 4)] {
            assert_eq!(k.open(&a.access_key, junk), Err(SessionError::Invalid));
        }
        assert_ne!(*keys("otherroot").secret_for(&a.access_key), *a.secret_key);
    }

    #[test]
    fn session_key_shape() {
        assert!(is_session_key("ASIAABCDEFGHIJKLMNOP"));
        assert!(!is_session_key("ASIAABCDEFGHIJKLMNO"));
        assert!(!is_session_key("AKIAABCDEFGHIJKLMNOP"));
        assert!(!is_session_key("ASIAabcdefghijklmnop"));
    }
}
