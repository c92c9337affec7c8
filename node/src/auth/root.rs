//! Root credentials: from `CAIRN_ROOT_USER`/`CAIRN_ROOT_PASSWORD`, else the ones generated on the
//! first start (printed once, kept on every drive so losing one drive does not lose them).

use std::path::PathBuf;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::RootCredentials;
use crate::drive::format::{write_atomic, SYS_DIR};

const FILE: &str = "root.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    access_key: String,
    secret_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("set both CAIRN_ROOT_USER and CAIRN_ROOT_PASSWORD, or neither")]
    Partial,
    #[error("CAIRN_ROOT_USER must be at least 3 characters")]
    ShortUser,
    #[error("CAIRN_ROOT_PASSWORD must be at least 8 characters")]
    ShortPassword,
    #[error("cannot store generated root credentials: {0}")]
    Io(#[from] std::io::Error),
}

/// How the credentials were obtained; `Generated` ones must be shown to the operator once.
pub enum Origin {
    Environment,
    Stored,
    Generated,
}

pub(crate) fn random_string(rng: &mut (impl Rng + ?Sized), len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

pub fn load_or_create(
    user: Option<String>,
    password: Option<String>,
    drives: &[PathBuf],
    rng: &mut impl Rng,
) -> Result<(RootCredentials, Origin), RootError> {
    match (user, password) {
        (Some(u), Some(p)) => {
            if u.len() < 3 {
                return Err(RootError::ShortUser);
            }
            if p.len() < 8 {
                return Err(RootError::ShortPassword);
            }
            return Ok((
                RootCredentials {
                    access_key: u,
                    secret_key: p,
                },
                Origin::Environment,
            ));
        }
        (None, None) => {}
        _ => return Err(RootError::Partial),
    }
    for d in drives {
        if let Ok(b) = std::fs::read(d.join(SYS_DIR).join(FILE)) {
            if let Ok(s) = serde_json::from_slice::<Stored>(&b) {
                return Ok((
                    RootCredentials {
                        access_key: s.access_key,
                        secret_key: s.secret_key,
                    },
                    Origin::Stored,
                ));
            }
        }
    }
    let access_key = random_string(rng, 20, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    let secret_key = random_string(
        rng,
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    );
    let body = serde_json::to_vec(&Stored {
        access_key: access_key.clone(),
        secret_key: secret_key.clone(),
    })
    .map_err(std::io::Error::other)?;
    for d in drives {
        let dir = d.join(SYS_DIR);
        write_atomic(&dir, FILE, &body)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(FILE), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok((
        RootCredentials {
            access_key,
            secret_key,
        },
        Origin::Generated,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_once_then_reused() {
        let d = tempfile::tempdir().unwrap();
        let drives = vec![d.path().to_path_buf()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (a, o) = load_or_create(None, None, &drives, &mut rng).unwrap();
        assert!(matches!(o, Origin::Generated));
        let (b, o) = load_or_create(None, None, &drives, &mut rng).unwrap();
        assert!(matches!(o, Origin::Stored));
        assert_eq!((a.access_key, a.secret_key), (b.access_key, b.secret_key));
    }

    #[test]
    fn environment_is_validated() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert!(matches!(
            load_or_create(Some("admin".into()), None, &[], &mut rng),
            Err(RootError::Partial)
        ));
        assert!(matches!(
            load_or_create(Some("admin".into()), Some("short".into()), &[], &mut rng),
            Err(RootError::ShortPassword)
        ));
    }
}
