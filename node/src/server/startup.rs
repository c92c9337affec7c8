//! Turning the command line into formatted, opened drives: expansion, checks, `format.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::drive::format::{self, Format, SYS_DIR};
use crate::drive::local::LocalDrive;
use crate::drive::{Drive, DriveError};
use crate::endpoints::{self, EllipsisError};
use crate::erasure::layout::{Layout, LayoutError};

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Ellipsis(#[from] EllipsisError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("drive {0}: its parent directory does not exist")]
    MissingParent(PathBuf),
    #[error("drive {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("drive {0}: not writable: {1}")]
    NotWritable(PathBuf, std::io::Error),
    #[error("drive {0} is given twice")]
    Duplicate(PathBuf),
    #[error("drive {path} belongs to deployment {found}, the other drives to {expected}")]
    OtherDeployment {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("drive {path} was formatted as drive #{was} of {layout_was:?}, now given as #{now} of {layout_now:?}")]
    Moved {
        path: PathBuf,
        was: usize,
        now: usize,
        layout_was: Layout,
        layout_now: Layout,
    },
    #[error("drive {0}: {1}")]
    Drive(PathBuf, DriveError),
    #[error("drive {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Opened drives in endpoint order, with what start-up learned about them.
pub struct Drives {
    pub paths: Vec<PathBuf>,
    pub drives: Vec<Arc<dyn Drive>>,
    pub layout: Layout,
    pub deployment_id: String,
    /// Drives that were blank in an existing deployment: they need healing.
    pub fresh: usize,
}

/// Creates a missing drive directory (when its parent exists) and proves it writable.
fn prepare_dir(p: &Path) -> Result<(), StartupError> {
    if p.exists() {
        if !p.is_dir() {
            return Err(StartupError::NotADirectory(p.to_path_buf()));
        }
    } else {
        let parent = p
            .parent()
            .filter(|x| !x.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(StartupError::MissingParent(p.to_path_buf()));
        }
        std::fs::create_dir(p).map_err(|e| StartupError::NotWritable(p.to_path_buf(), e))?;
    }
    let sys = p.join(SYS_DIR);
    std::fs::create_dir_all(&sys).map_err(|e| StartupError::NotWritable(p.to_path_buf(), e))?;
    let probe = sys.join(".write-probe");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| StartupError::NotWritable(p.to_path_buf(), e))
}

/// Expands, checks, formats and opens the drives of `args`.
pub fn open_drives(args: &[String], parity: Option<usize>) -> Result<Drives, StartupError> {
    let paths: Vec<PathBuf> = endpoints::expand_all(args)?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    for (i, p) in paths.iter().enumerate() {
        if paths[..i].contains(p) {
            return Err(StartupError::Duplicate(p.clone()));
        }
    }
    let layout = Layout::plan(paths.len(), parity)?;
    for p in &paths {
        prepare_dir(p)?;
    }
    let formats: Vec<Option<Format>> = paths
        .iter()
        .map(|p| format::read(p).map_err(|e| StartupError::Io(p.clone(), e)))
        .collect::<Result<_, _>>()?;
    let deployment_id = match formats.iter().flatten().next() {
        Some(f) => f.deployment_id.clone(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let existing = formats.iter().any(Option::is_some);
    let mut fresh = 0;
    for (i, (p, f)) in paths.iter().zip(&formats).enumerate() {
        match f {
            Some(f) if f.deployment_id != deployment_id => {
                return Err(StartupError::OtherDeployment {
                    path: p.clone(),
                    found: f.deployment_id.clone(),
                    expected: deployment_id,
                })
            }
            Some(f) if f.position != i || f.layout != layout => {
                return Err(StartupError::Moved {
                    path: p.clone(),
                    was: f.position,
                    now: i,
                    layout_was: f.layout,
                    layout_now: layout,
                })
            }
            Some(_) => {}
            None => {
                let f = Format {
                    version: 1,
                    deployment_id: deployment_id.clone(),
                    drive_id: uuid::Uuid::new_v4().to_string(),
                    layout,
                    position: i,
                };
                format::write(p, &f).map_err(|e| StartupError::Io(p.clone(), e))?;
                if existing {
                    fresh += 1;
                }
            }
        }
    }
    let mut drives: Vec<Arc<dyn Drive>> = Vec::with_capacity(paths.len());
    for p in &paths {
        drives.push(Arc::new(
            LocalDrive::open(p).map_err(|e| StartupError::Drive(p.clone(), e))?,
        ));
    }
    Ok(Drives {
        paths,
        drives,
        layout,
        deployment_id,
        fresh,
    })
}
