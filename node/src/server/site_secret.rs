//! The site's internode secret: the token every internode request (Raft, data service) carries.
//!
//! It is 32 random bytes (hex), not derived from the root password, so a captured token is no
//! offline oracle for that password and the root credentials alone do not open the internode
//! port. It is kept next to the Raft state (`<first drive>/.cairn/site-secret`, mode 0600 from
//! creation) and must be identical on every node of the site:
//!
//! - A node that holds it uses it.
//! - A node without it asks the other nodes of the endpoint list for it over their S3 port, with
//!   a request signed by the root credentials (admin call `internode/secret`, root only), and
//!   keeps the answer. Over plain HTTP this exchange is as visible as every internode request;
//!   a site of several nodes needs TLS (`--certs-dir`) to keep either secret.
//! - Only the first node of the endpoint list creates it: at once when none of its drives was
//!   formatted before this start (a new site) and no other node answers, otherwise (an upgraded
//!   site, or its first drive lost) after [`SEED_GRACE`] without any answer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use zeroize::Zeroizing;

use crate::topology::{NodeEndpoint, Topology};

/// File name, in the `.cairn` directory of the node's first drive.
pub const FILE: &str = "site-secret";
/// Random bytes in a secret.
const BYTES: usize = 32;
/// How long the first node of an already formatted site waits for another node to hand it the
/// secret before it creates one.
pub const SEED_GRACE: Duration = Duration::from_secs(30);
/// Pause between rounds of asking the other nodes.
const RETRY: Duration = Duration::from_millis(300);
/// How often waiting is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The path of the secret for a node whose first drive is `drive`.
pub fn path(drive: &Path) -> PathBuf {
    drive.join(crate::drive::format::SYS_DIR).join(FILE)
}

/// True for a well-formed secret (what a peer hands over is checked before it is kept).
pub fn valid(s: &str) -> bool {
    s.len() == BYTES * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A new secret from `rng`.
pub fn generate(rng: &mut dyn rand::RngCore) -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; BYTES]);
    rng.fill_bytes(&mut *b);
    Zeroizing::new(hex::encode(*b))
}

/// Reads the secret at `path`; `None` when there is none.
pub fn read(path: &Path) -> anyhow::Result<Option<Zeroizing<String>>> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let s = Zeroizing::new(s.trim().to_owned());
            anyhow::ensure!(
                valid(&s),
                "{} is not a site secret (64 hex digits); remove it to fetch the site's from another node",
                path.display()
            );
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the secret durably, readable by this user only from the moment the file exists.
pub fn write(path: &Path, secret: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let write = || -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Asks one other node for the secret; `None` when it does not hand one over (yet).
#[async_trait::async_trait]
pub trait Fetch {
    async fn fetch(&self, node: &NodeEndpoint) -> Option<Zeroizing<String>>;
}

/// The site's secret for this node: kept at `path`, else fetched from another node, else (first
/// node of the endpoint list only) created. `formatted_before`: some drive of this node already
/// belonged to the site before this start.
pub async fn obtain(
    topology: &Topology,
    path: &Path,
    formatted_before: bool,
    fetch: &dyn Fetch,
    rng: &mut dyn rand::RngCore,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(s) = read(path)? {
        return Ok(s);
    }
    let peers: Vec<&NodeEndpoint> = topology
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != topology.local)
        .map(|(_, n)| n)
        .collect();
    let seed = topology.local == 0;
    let start = tokio::time::Instant::now();
    let mut logged = start;
    loop {
        for p in &peers {
            if let Some(s) = fetch.fetch(p).await.filter(|s| valid(s)) {
                tracing::info!(from = %p.s3, "received the site's internode secret");
                write(path, &s)?;
                return Ok(s);
            }
        }
        if seed && (peers.is_empty() || !formatted_before || start.elapsed() >= SEED_GRACE) {
            let s = generate(rng);
            write(path, &s)?;
            tracing::info!(path = %path.display(), "created the site's internode secret");
            return Ok(s);
        }
        if logged.elapsed() >= LOG_EVERY {
            logged = tokio::time::Instant::now();
            tracing::warn!(
                first = %topology.nodes[0].s3,
                "waiting for another node of the site to hand over the internode secret (the first node of the endpoint list creates it)"
            );
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Never;

    #[async_trait::async_trait]
    impl Fetch for Never {
        async fn fetch(&self, _: &NodeEndpoint) -> Option<Zeroizing<String>> {
            None
        }
    }

    struct Gives(String);

    #[async_trait::async_trait]
    impl Fetch for Gives {
        async fn fetch(&self, _: &NodeEndpoint) -> Option<Zeroizing<String>> {
            Some(Zeroizing::new(self.0.clone()))
        }
    }

    fn site(local: &str) -> Topology {
        let args = vec!["http://127.0.0.1:900{1...3}/d".to_string()];
        Topology::parse(&args, local, 10000).unwrap()
    }

    #[tokio::test]
    async fn first_node_creates_others_fetch_and_all_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::OsRng;
        let p0 = dir.path().join("s0");
        let s0 = obtain(&site("127.0.0.1:9001"), &p0, false, &Never, &mut rng)
            .await
            .unwrap();
        assert!(valid(&s0));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p0).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let p1 = dir.path().join("s1");
        let s1 = obtain(
            &site("127.0.0.1:9002"),
            &p1,
            false,
            &Gives(s0.to_string()),
            &mut rng,
        )
        .await
        .unwrap();
        assert_eq!(*s1, *s0);
        // Kept: the next start reads it without asking.
        let again = obtain(&site("127.0.0.1:9002"), &p1, true, &Never, &mut rng)
            .await
            .unwrap();
        assert_eq!(*again, *s0);
        // A malformed answer is not kept; a malformed file is an error, not a silent new secret.
        std::fs::write(&p1, "short").unwrap();
        assert!(read(&p1).is_err());
    }

    #[tokio::test]
    async fn other_nodes_never_create_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let (topology, fetch, mut rng) = (
            site("127.0.0.1:9003"),
            Gives("not-hex".into()),
            rand::rngs::OsRng,
        );
        let waiting = obtain(&topology, &p, false, &fetch, &mut rng);
        // Already formatted or not, a node other than the first only waits (a few rounds here).
        let r = tokio::time::timeout(RETRY * 4, waiting).await;
        assert!(r.is_err(), "a node other than the first created a secret");
        assert!(!p.exists());
    }
}
