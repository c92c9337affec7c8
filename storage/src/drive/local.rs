//! A drive on a local directory: RocksDB (`.cairn/meta`) for metadata, plain files for shards.
//! Every call runs on the blocking pool; every write is fsynced before it returns.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::format::SYS_DIR;
use super::{Drive, DriveError, MetaOp, ShardWriter};

/// The room on the filesystem of a drive directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    pub total: u64,
}

/// The room on the filesystem holding `dir` (one `statvfs`).
pub fn space(dir: &Path) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(Space {
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

pub struct LocalDrive {
    label: String,
    /// `<drive>/.cairn`: everything Cairn writes lives below it.
    base: PathBuf,
    db: Arc<DB>,
    /// Metadata batches apply one at a time, so a batch's `Expect` checks and its writes are
    /// atomic with respect to every other batch.
    apply_lock: Arc<std::sync::Mutex<()>>,
}

impl LocalDrive {
    /// Opens (creating if needed) the drive's metadata store and clears leftovers of interrupted writes.
    pub fn open(root: &Path) -> Result<Self, DriveError> {
        let base = root.join(SYS_DIR);
        fs::create_dir_all(base.join("tmp"))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(64 << 20);
        let db = DB::open(&opts, base.join("meta")).map_err(|e| DriveError::Meta(e.to_string()))?;
        // A temp file is never referenced by metadata: whatever is left there died with a crash.
        let _ = fs::remove_dir_all(base.join("tmp"));
        fs::create_dir_all(base.join("tmp"))?;
        Ok(Self {
            label: root.display().to_string(),
            base,
            db: Arc::new(db),
            apply_lock: Arc::default(),
        })
    }

    fn path(&self, rel: &str) -> Result<PathBuf, DriveError> {
        let p = Path::new(rel);
        let ok = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(DriveError::InvalidPath(rel.to_string()));
        }
        Ok(self.base.join(p))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriveError> + Send + 'static,
) -> Result<T, DriveError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DriveError::Io(std::io::Error::other(e)))?
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn not_found_to_none<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

struct LocalShardWriter {
    file: Option<fs::File>,
}

#[async_trait]
impl ShardWriter for LocalShardWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), DriveError> {
        let mut f = self.file.take().ok_or(DriveError::Offline)?;
        let f = blocking(move || {
            f.write_all(&data)?;
            Ok(f)
        })
        .await?;
        self.file = Some(f);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), DriveError> {
        let f = self.file.take().ok_or(DriveError::Offline)?;
        blocking(move || Ok(f.sync_all()?)).await
    }
}

#[async_trait]
impl Drive for LocalDrive {
    fn label(&self) -> &str {
        &self.label
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DriveError> {
        let db = self.db.clone();
        let key = key.to_vec();
        blocking(move || db.get(key).map_err(|e| DriveError::Meta(e.to_string()))).await
    }

    async fn apply(&self, ops: Vec<MetaOp>) -> Result<(), DriveError> {
        let (db, lock) = (self.db.clone(), self.apply_lock.clone());
        blocking(move || {
            let _guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut batch = WriteBatch::default();
            for op in ops {
                match op {
                    MetaOp::Put(k, v) => batch.put(k, v),
                    MetaOp::Delete(k) => batch.delete(k),
                    MetaOp::Expect(k, want) => {
                        let have = db.get(&k).map_err(|e| DriveError::Meta(e.to_string()))?;
                        if have != want {
                            return Err(DriveError::Conflict);
                        }
                    }
                    MetaOp::NotAfter(_) => {}
                }
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(batch, &wo)
                .map_err(|e| DriveError::Meta(e.to_string()))
        })
        .await
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DriveError> {
        let db = self.db.clone();
        let prefix = prefix.to_vec();
        let after = after.to_vec();
        blocking(move || {
            let start = if after.as_slice() > prefix.as_slice() {
                after.clone()
            } else {
                prefix.clone()
            };
            let mut out = Vec::new();
            for item in db.iterator(IteratorMode::From(&start, Direction::Forward)) {
                let (k, v) = item.map_err(|e| DriveError::Meta(e.to_string()))?;
                if !k.starts_with(&prefix) || out.len() >= limit {
                    break;
                }
                if *k == *after {
                    continue;
                }
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn create_file(&self, path: &str) -> Result<Box<dyn ShardWriter>, DriveError> {
        let p = self.path(path)?;
        let f = blocking(move || {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
            Ok(fs::File::create(&p)?)
        })
        .await?;
        Ok(Box::new(LocalShardWriter { file: Some(f) }))
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> Result<Bytes, DriveError> {
        let p = self.path(path)?;
        blocking(move || {
            let mut f = not_found_to_none(fs::File::open(&p))?.ok_or(DriveError::NotFound)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DriveError> {
        let from = self.path(from)?;
        let to = self.path(to)?;
        blocking(move || {
            let parent = to.parent().map(Path::to_path_buf).unwrap_or_default();
            fs::create_dir_all(&parent)?;
            if from.is_dir() && to.is_dir() {
                fs::remove_dir_all(&to)?;
            }
            not_found_to_none(fs::rename(&from, &to))?.ok_or(DriveError::NotFound)?;
            sync_dir(&parent)?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), DriveError> {
        let p = self.path(path)?;
        blocking(move || {
            let meta = match not_found_to_none(fs::symlink_metadata(&p))? {
                Some(m) => m,
                None => return Ok(()),
            };
            if meta.is_dir() {
                not_found_to_none(fs::remove_dir_all(&p))?;
            } else {
                not_found_to_none(fs::remove_file(&p))?;
            }
            Ok(())
        })
        .await
    }

    async fn health(&self) -> Result<(), DriveError> {
        let format = self.base.join(super::format::FORMAT_FILE);
        let db = self.db.clone();
        blocking(move || {
            fs::metadata(&format)?;
            db.get(b"health-probe")
                .map_err(|e| DriveError::Meta(e.to_string()))?;
            Ok(())
        })
        .await
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>, DriveError> {
        let p = self.path(path)?;
        blocking(move || {
            let Some(rd) = not_found_to_none(fs::read_dir(&p))? else {
                return Ok(Vec::new());
            };
            let mut names = Vec::new();
            for e in rd {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn meta_batch_scan_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = LocalDrive::open(dir.path()).unwrap();
        d.apply(vec![
            MetaOp::Put(b"o/b/a".to_vec(), b"1".to_vec()),
            MetaOp::Put(b"o/b/b".to_vec(), b"2".to_vec()),
            MetaOp::Put(b"o/c/a".to_vec(), b"3".to_vec()),
        ])
        .await
        .unwrap();
        let all = d.scan(b"o/b/", b"", 10).await.unwrap();
        assert_eq!(all.len(), 2);
        let after = d.scan(b"o/b/", b"o/b/a", 10).await.unwrap();
        assert_eq!(after, vec![(b"o/b/b".to_vec(), b"2".to_vec())]);
        d.apply(vec![MetaOp::Delete(b"o/b/a".to_vec())])
            .await
            .unwrap();
        assert_eq!(d.get(b"o/b/a").await.unwrap(), None);

        let mut w = d.create_file("tmp/x/part.1").await.unwrap();
        w.write(Bytes::from_static(b"hello world")).await.unwrap();
        w.finish().await.unwrap();
        d.rename("tmp/x", "data/ab/x").await.unwrap();
        assert_eq!(
            d.read_file("data/ab/x/part.1", 6, 5).await.unwrap(),
            Bytes::from_static(b"world")
        );
        assert!(d.read_file("data/ab/x/part.1", 6, 50).await.is_err());
        assert!(matches!(
            d.read_file("data/ab/y", 0, 1).await,
            Err(DriveError::NotFound)
        ));
        assert_eq!(d.list_dir("data/ab/x").await.unwrap(), vec!["part.1"]);
        d.delete("data/ab/x").await.unwrap();
        assert!(d.list_dir("data/ab/x").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn escaping_paths_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let d = LocalDrive::open(dir.path()).unwrap();
        assert!(matches!(
            d.create_file("../evil").await,
            Err(DriveError::InvalidPath(_))
        ));
        assert!(matches!(
            d.delete("/etc").await,
            Err(DriveError::InvalidPath(_))
        ));
    }
}
