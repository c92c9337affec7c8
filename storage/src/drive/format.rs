//! `format.json`: which deployment a drive belongs to and where it sits, so drives are never mixed up.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::erasure::layout::Layout;

pub const SYS_DIR: &str = ".cairn";
pub const FORMAT_FILE: &str = "format.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    pub version: u32,
    pub deployment_id: String,
    pub drive_id: String,
    pub layout: Layout,
    /// Position of this drive in the endpoint list.
    pub position: usize,
}

pub fn read(root: &Path) -> std::io::Result<Option<Format>> {
    let p = root.join(SYS_DIR).join(FORMAT_FILE);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", p.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn write(root: &Path, f: &Format) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(f).map_err(std::io::Error::other)?;
    write_atomic(&root.join(SYS_DIR), FORMAT_FILE, &body)
}

/// Writes `dir/name` through a temp file, fsync and rename, then syncs the directory.
pub fn write_atomic(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    fs::File::open(dir)?.sync_all()
}
