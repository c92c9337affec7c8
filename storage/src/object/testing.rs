//! A small object layer on real local drives in a temporary directory, for tests of this crate
//! and of the stages above it (feature `testing`).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::stage::{AsSent, StoredLayout};
use super::{HealRequest, ObjectLayer};
use crate::clock::SystemClock;
use crate::drive::local::LocalDrive;
use crate::drive::Drive;
use crate::erasure::layout::Layout;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub roots: Vec<std::path::PathBuf>,
    pub layer: ObjectLayer,
    pub heal_rx: mpsc::UnboundedReceiver<HealRequest>,
}

pub fn fixture(n: usize, parity: usize) -> Fixture {
    fixture_with(n, parity, Arc::new(AsSent))
}

/// A layer whose versions' parts lie as `stored` says (an encryption stage's tests pass theirs).
pub fn fixture_with(n: usize, parity: usize, stored: Arc<dyn StoredLayout>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<_> = (0..n).map(|i| dir.path().join(format!("d{i}"))).collect();
    let drives: Vec<Arc<dyn Drive>> = roots
        .iter()
        .map(|r| {
            std::fs::create_dir_all(r).unwrap();
            Arc::new(LocalDrive::open(r).unwrap()) as Arc<dyn Drive>
        })
        .collect();
    let layout = Layout::plan(n, Some(parity)).unwrap();
    let (layer, heal_rx) = ObjectLayer::new(
        drives,
        layout,
        "test-deployment",
        Arc::new(SystemClock),
        Box::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7)),
        stored,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        roots,
        layer,
        heal_rx,
    }
}

pub fn shard_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part."))
            {
                out.push(p);
            }
        }
    }
    out
}
