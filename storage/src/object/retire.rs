//! Data a settled change freed (an overwritten or removed version's shard files) is retired, not
//! deleted: its directory moves from `data/` to `retired/` under the same name, a read that began
//! on it finds its shards there (`read::fetch_checked` looks there after a miss), and the node that
//! holds the drive removes it once it has been retired for [`GRACE`] ([`Sweeper`]). So a GET that
//! started before an overwrite or a delete returns the whole old object, never an error
//! mid-stream, whichever node serves it: the reader needs no lease the writer would have to know
//! of. A crash between the move and the sweep leaves the directory under `retired/`, where the next
//! sweep finds it.

use std::collections::HashMap;
use std::time::Duration;

use crate::drive::{Drive, DriveError};

/// How long retired data stays readable: a GET slower than this over a replaced object (1 GiB
/// at about 1 MiB/s) may still fail mid-stream.
pub const GRACE: Duration = Duration::from_secs(15 * 60);

/// How often a node sweeps its drives.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Retired directories one sweeper tracks; past this, the ones it has not seen yet are removed
/// at once (a drive freeing data faster than this per [`GRACE`] loses the grace, not space).
const MAX_TRACKED: usize = 200_000;

const DATA: &str = "data/";
const RETIRED: &str = "retired/";

/// Moves the data directory `dir` (a path under `data/`) to `retired/`; a directory already gone
/// is no error.
pub async fn retire(drive: &dyn Drive, dir: &str) -> Result<(), DriveError> {
    let Some(to) = retired_path(dir) else {
        return drive.delete(dir).await;
    };
    match drive.rename(dir, &to).await {
        Ok(()) | Err(DriveError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where a path under `data/` lies once its directory is retired.
pub fn retired_path(path: &str) -> Option<String> {
    path.strip_prefix(DATA)
        .map(|rest| format!("{RETIRED}{rest}"))
}

/// Removes one drive's retired directories once they have been retired for [`GRACE`], counted
/// from when this sweeper first saw each (a restarted node grants a full grace again: sooner
/// would cut short a read another node began).
pub struct Sweeper {
    grace_ns: i64,
    /// Path of each retired directory -> when this sweeper first saw it.
    seen: HashMap<String, i64>,
}

impl Default for Sweeper {
    fn default() -> Self {
        Self::new(GRACE)
    }
}

impl Sweeper {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace_ns: i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX),
            seen: HashMap::new(),
        }
    }

    /// One pass over `drive` at `now_ns`: returns how many directories it removed.
    pub async fn sweep(&mut self, drive: &dyn Drive, now_ns: i64) -> Result<usize, DriveError> {
        let mut present = Vec::new();
        for fan in drive.list_dir(RETIRED.trim_end_matches('/')).await? {
            let fan_dir = format!("{RETIRED}{fan}");
            for name in drive.list_dir(&fan_dir).await? {
                present.push(format!("{fan_dir}/{name}"));
            }
        }
        let current: std::collections::HashSet<&String> = present.iter().collect();
        self.seen.retain(|p, _| current.contains(p));
        let mut removed = 0;
        for path in &present {
            let first = match self.seen.get(path) {
                Some(t) => *t,
                None if self.seen.len() < MAX_TRACKED => {
                    self.seen.insert(path.clone(), now_ns);
                    now_ns
                }
                None => i64::MIN,
            };
            if now_ns.saturating_sub(first) >= self.grace_ns {
                drive.delete(path).await?;
                self.seen.remove(path);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Retired directories waiting out their grace.
    pub fn waiting(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::memory::{MemoryDisk, MemoryDrive};

    async fn file(drive: &dyn Drive, path: &str, data: &[u8]) {
        let mut w = drive.create_file(path).await.unwrap();
        w.write(bytes::Bytes::copy_from_slice(data)).await.unwrap();
        w.finish().await.unwrap();
    }

    #[tokio::test]
    async fn retired_data_stays_readable_until_its_grace_has_passed() {
        let drive = MemoryDrive::new(MemoryDisk::new(), "mem");
        file(&drive, "data/ab/abcd/part.1", b"old shards").await;
        file(&drive, "data/cd/cdef/part.1", b"live shards").await;
        retire(&drive, "data/ab/abcd").await.unwrap();
        retire(&drive, "data/ab/gone").await.unwrap();
        assert!(matches!(
            drive.read_file("data/ab/abcd/part.1", 0, 3).await,
            Err(DriveError::NotFound)
        ));
        let moved = retired_path("data/ab/abcd/part.1").unwrap();
        assert_eq!(&drive.read_file(&moved, 0, 3).await.unwrap()[..], b"old");

        let grace = Duration::from_secs(10);
        let mut s = Sweeper::new(grace);
        let t0 = 1_000_000_000_000;
        assert_eq!(s.sweep(&drive, t0).await.unwrap(), 0, "first seen");
        assert_eq!(s.waiting(), 1);
        let almost = t0 + grace.as_nanos() as i64 - 1;
        assert_eq!(s.sweep(&drive, almost).await.unwrap(), 0, "within grace");
        assert!(drive.read_file(&moved, 0, 3).await.is_ok());
        assert_eq!(s.sweep(&drive, almost + 1).await.unwrap(), 1, "past grace");
        assert!(drive.read_file(&moved, 0, 3).await.is_err());
        assert_eq!(s.waiting(), 0);
        assert_eq!(
            &drive.read_file("data/cd/cdef/part.1", 0, 4).await.unwrap()[..],
            b"live",
            "live data is never swept"
        );
    }

    #[test]
    fn only_data_paths_have_a_retired_place() {
        assert_eq!(
            retired_path("data/ab/abcd/part.2").as_deref(),
            Some("retired/ab/abcd/part.2")
        );
        assert_eq!(retired_path("tmp/x"), None);
    }
}
