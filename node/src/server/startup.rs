//! Turning the endpoint list into formatted, opened drives: this node's local drives (checks,
//! `format.json`) and the other nodes' drives through the data service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_control_plane::transport::Transport;
use thiserror::Error;

use crate::clock::SharedClock;
use crate::drive::format::{self, Format, SYS_DIR};
use crate::drive::local::LocalDrive;
use crate::drive::metered::Metered;
use crate::drive::remote::RemoteDrive;
use crate::drive::{Drive, DriveError};
use crate::erasure::layout::{Layout, LayoutError};
use crate::topology::Topology;

#[derive(Debug, Error)]
pub enum StartupError {
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
    /// This node's drive directories.
    pub paths: Vec<PathBuf>,
    /// This node's drives by site position: what the data service serves.
    pub local: BTreeMap<u32, Arc<dyn Drive>>,
    pub layout: Layout,
    pub deployment_id: String,
    /// Drives that were blank in an existing deployment: they need healing.
    pub fresh: usize,
    /// Some drive of this node was formatted before this start.
    pub formatted_before: bool,
}

impl Drives {
    /// Every drive of the site in endpoint order: this node's own, the others' through the data
    /// service over `transport`.
    /// Every drive of the site as this node's object layer reaches it, each counted
    /// ([`Metered`]) for the metrics.
    pub fn site_drives(
        &self,
        topology: &Topology,
        transport: &Transport,
        clock: SharedClock,
    ) -> Vec<Arc<dyn Drive>> {
        (0..topology.drives.len())
            .map(|i| {
                let d = match self.local.get(&(i as u32)) {
                    Some(d) => d.clone(),
                    None => {
                        let node = &topology.nodes[topology.drives[i].node];
                        Arc::new(RemoteDrive::new(
                            transport.clone(),
                            node.internode.clone(),
                            i as u32,
                            topology.label(i),
                            clock.clone(),
                        )) as Arc<dyn Drive>
                    }
                };
                Arc::new(Metered::new(d, clock.clone())) as Arc<dyn Drive>
            })
            .collect()
    }
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

/// Checks, formats and opens this node's drives. A networked site derives its deployment id from
/// the endpoint list, so every node formats its own drives alike without coordination.
pub fn open_drives(topology: &Topology, parity: Option<usize>) -> Result<Drives, StartupError> {
    let mine: Vec<(usize, PathBuf)> = topology
        .local_drives()
        .map(|(i, d)| (i, d.path.clone()))
        .collect();
    for (n, (_, p)) in mine.iter().enumerate() {
        if mine[..n].iter().any(|(_, q)| q == p) {
            return Err(StartupError::Duplicate(p.clone()));
        }
    }
    let layout = Layout::plan(topology.drives.len(), parity)?;
    for (_, p) in &mine {
        prepare_dir(p)?;
    }
    let formats: Vec<Option<Format>> = mine
        .iter()
        .map(|(_, p)| format::read(p).map_err(|e| StartupError::Io(p.clone(), e)))
        .collect::<Result<_, _>>()?;
    let deployment_id = if topology.networked {
        topology.derived_deployment_id()
    } else {
        match formats.iter().flatten().next() {
            Some(f) => f.deployment_id.clone(),
            None => uuid::Uuid::new_v4().to_string(),
        }
    };
    let existing = formats.iter().any(Option::is_some);
    let mut fresh = 0;
    for ((i, p), f) in mine.iter().zip(&formats) {
        match f {
            Some(f) if f.deployment_id != deployment_id => {
                return Err(StartupError::OtherDeployment {
                    path: p.clone(),
                    found: f.deployment_id.clone(),
                    expected: deployment_id,
                })
            }
            Some(f) if f.position != *i || f.layout != layout => {
                return Err(StartupError::Moved {
                    path: p.clone(),
                    was: f.position,
                    now: *i,
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
                    position: *i,
                };
                format::write(p, &f).map_err(|e| StartupError::Io(p.clone(), e))?;
                if existing {
                    fresh += 1;
                }
            }
        }
    }
    let mut local: BTreeMap<u32, Arc<dyn Drive>> = BTreeMap::new();
    for (i, p) in &mine {
        let d = LocalDrive::open(p).map_err(|e| StartupError::Drive(p.clone(), e))?;
        local.insert(*i as u32, Arc::new(d));
    }
    Ok(Drives {
        paths: mine.into_iter().map(|(_, p)| p).collect(),
        local,
        layout,
        deployment_id,
        fresh,
        formatted_before: existing,
    })
}
