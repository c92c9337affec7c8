//! A drive that counts its calls, their time and their failures ([`DriveStats`]), for the node's
//! metrics: the wrapper passes every call through unchanged. Only atomics on the call path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Drive, DriveError, MetaOp, ShardWriter};
use crate::clock::SharedClock;

/// What one drive's callers saw of it since start-up.
#[derive(Debug, Default)]
pub struct DriveStats {
    calls: AtomicU64,
    /// Failed calls; a missing file or a lost precondition is an answer, not a failure.
    errors: AtomicU64,
    /// Time spent in calls, nanoseconds.
    busy_ns: AtomicU64,
}

/// A copy of [`DriveStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveCounts {
    pub calls: u64,
    pub errors: u64,
    pub busy_ns: u64,
}

impl DriveStats {
    pub fn counts(&self) -> DriveCounts {
        DriveCounts {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
        }
    }

    fn record<T>(&self, started_ns: i64, now_ns: i64, r: &Result<T, DriveError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(now_ns.saturating_sub(started_ns)).unwrap_or(0);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
        if matches!(r, Err(e) if !matches!(e, DriveError::NotFound | DriveError::Conflict | DriveError::Expired))
        {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `inner`, counted in `stats`.
pub struct Metered {
    inner: Arc<dyn Drive>,
    stats: Arc<DriveStats>,
    clock: SharedClock,
}

impl Metered {
    pub fn new(inner: Arc<dyn Drive>, clock: SharedClock) -> Self {
        Self {
            inner,
            stats: Arc::default(),
            clock,
        }
    }

    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, DriveError>>,
    ) -> Result<T, DriveError> {
        let start = self.clock.now_ns();
        let r = call.await;
        self.stats.record(start, self.clock.now_ns(), &r);
        r
    }
}

struct MeteredWriter {
    inner: Box<dyn ShardWriter>,
    stats: Arc<DriveStats>,
    clock: SharedClock,
}

#[async_trait]
impl ShardWriter for MeteredWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), DriveError> {
        let start = self.clock.now_ns();
        let r = self.inner.write(data).await;
        self.stats.record(start, self.clock.now_ns(), &r);
        r
    }

    async fn finish(self: Box<Self>) -> Result<(), DriveError> {
        let start = self.clock.now_ns();
        let r = self.inner.finish().await;
        self.stats.record(start, self.clock.now_ns(), &r);
        r
    }
}

#[async_trait]
impl Drive for Metered {
    fn label(&self) -> &str {
        self.inner.label()
    }

    fn stats(&self) -> Option<&DriveStats> {
        Some(&self.stats)
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DriveError> {
        self.timed(self.inner.get(key)).await
    }

    async fn apply(&self, ops: Vec<MetaOp>) -> Result<(), DriveError> {
        self.timed(self.inner.apply(ops)).await
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DriveError> {
        self.timed(self.inner.scan(prefix, after, limit)).await
    }

    async fn create_file(&self, path: &str) -> Result<Box<dyn ShardWriter>, DriveError> {
        let inner = self.timed(self.inner.create_file(path)).await?;
        Ok(Box::new(MeteredWriter {
            inner,
            stats: self.stats.clone(),
            clock: self.clock.clone(),
        }))
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> Result<Bytes, DriveError> {
        self.timed(self.inner.read_file(path, offset, len)).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DriveError> {
        self.timed(self.inner.rename(from, to)).await
    }

    async fn delete(&self, path: &str) -> Result<(), DriveError> {
        self.timed(self.inner.delete(path)).await
    }

    async fn health(&self) -> Result<(), DriveError> {
        self.timed(self.inner.health()).await
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>, DriveError> {
        self.timed(self.inner.list_dir(path)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::memory::{MemoryDisk, MemoryDrive};

    #[tokio::test]
    async fn counts_calls_and_failures_but_not_answers() {
        let disk = MemoryDisk::new();
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let d = Metered::new(Arc::new(MemoryDrive::new(disk.clone(), "m")), clock);
        assert_eq!(d.get(b"k").await.unwrap(), None);
        let mut w = d.create_file("a/b").await.unwrap();
        w.write(Bytes::from_static(b"xyz")).await.unwrap();
        w.finish().await.unwrap();
        assert!(matches!(
            d.read_file("nope", 0, 1).await,
            Err(DriveError::NotFound)
        ));
        d.health().await.unwrap();
        let c = d.stats().unwrap().counts();
        assert_eq!((c.calls, c.errors), (6, 0));
        disk.set_offline(true);
        assert!(d.health().await.is_err());
        assert!(d.get(b"k").await.is_err());
        let c = d.stats().unwrap().counts();
        assert_eq!((c.calls, c.errors), (8, 2));
    }
}
