//! Root credentials: from `CAIRN_ROOT_USER`/`CAIRN_ROOT_PASSWORD`, else the ones generated on the
//! first start (printed once, kept on every drive so losing one drive does not lose them).

use std::path::PathBuf;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::RootCredentials;
use crate::drive::format::SYS_DIR;

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
                tighten(&d.join(SYS_DIR).join(FILE));
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
        write_private(&d.join(SYS_DIR), FILE, &body)?;
    }
    Ok((
        RootCredentials {
            access_key,
            secret_key,
        },
        Origin::Generated,
    ))
}

/// Writes `dir/name` atomically (temporary file, fsync, rename) readable by the owner only from the
/// moment it exists: the temporary file is created with mode 0600 (`create_new`, so a file some
/// other user left at that path is never written into), never created wider and narrowed after.
fn write_private(dir: &std::path::Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::remove_file(&tmp).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
    })?;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut f = open.open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// A stored `root.json` that others may read (written by an older version, or copied) is narrowed
/// to the owner, with a warning.
fn tighten(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "root credentials were readable by others: mode set to 0600");
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(path = %path.display(), error = %e, "cannot narrow the mode of the root credentials");
            }
        }
    }
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

    #[cfg(unix)]
    #[test]
    fn stored_owner_only_even_over_a_stale_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join(SYS_DIR);
        std::fs::create_dir_all(&sys).unwrap();
        let stale = sys.join(format!(".{FILE}.tmp"));
        std::fs::write(&stale, b"junk").unwrap();
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        load_or_create(None, None, &[d.path().to_path_buf()], &mut rng).unwrap();
        let mode = std::fs::metadata(sys.join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A wider stored file is narrowed when loaded.
        std::fs::set_permissions(sys.join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create(None, None, &[d.path().to_path_buf()], &mut rng).unwrap();
        let mode = std::fs::metadata(sys.join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
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
