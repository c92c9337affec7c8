//! A drive held in memory, with the crash semantics of a local disk, for the deterministic
//! simulator.
//!
//! [`MemoryDisk`] is the medium: it outlives a simulated process crash, so the simulator keeps it
//! and opens a new [`MemoryDrive`] on it after a restart. Everything runs inline (no blocking
//! pool, no clock, no RNG) and every map is a `BTreeMap`, so a run is a pure function of its seed.
//!
//! # Crash model
//!
//! The disk keeps two images of the file tree: the *volatile* one (what a running process sees,
//! i.e. the page cache) and the *durable* one (what survives [`MemoryDisk::crash`]). They differ
//! exactly where [`LocalDrive`](super::local::LocalDrive) has not synced yet:
//!
//! * metadata: `apply` is synced, so there is a single, always durable key-value map;
//! * a file from `create_file` becomes durable (contents and directory entry) at `finish`, the
//!   fsync, unless the planted bug [`MemoryDisk::skip_fsync`] is on;
//! * `rename` is durable when it returns (the local drive syncs the target's parent directory);
//! * `delete` is not synced by the local drive; as on a journaling file system it becomes durable
//!   with the next sync on the drive (`apply`, `finish` or `rename`), so a crash may resurrect
//!   files deleted since then.
//!
//! Files are inodes: a writer keeps writing to its file even if it is renamed, as with a real
//! file descriptor, and a renamed file whose contents were never synced comes back empty.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Drive, DriveError, MetaOp, ShardWriter};

/// A path inside the drive, as its components; the drive's root is the empty path.
type Key = Vec<String>;
/// Identity of a file's contents (an inode), stable across renames.
type FileId = u64;

/// The directory `LocalDrive::open` empties: nothing in it is referenced by metadata.
const TMP_DIR: &str = "tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(FileId),
}

/// A file tree. The root directory is implicit; every other directory is an explicit node, so an
/// emptied directory still exists, as on disk. Descendants of a path sort right after it.
#[derive(Debug, Clone, Default)]
struct Tree {
    nodes: BTreeMap<Key, Node>,
}

impl Tree {
    fn get(&self, key: &[String]) -> Option<Node> {
        if key.is_empty() {
            return Some(Node::Dir);
        }
        self.nodes.get(key).copied()
    }

    /// Fails like the OS when a proper ancestor of `key` is a file.
    fn check_ancestors(&self, key: &[String]) -> Result<(), DriveError> {
        for end in 1..key.len() {
            if let Some(Node::File(_)) = self.nodes.get(&key[..end]) {
                return Err(io_error(ErrorKind::NotADirectory, "not a directory"));
            }
        }
        Ok(())
    }

    /// `create_dir_all`: creates `key` and its ancestors as directories.
    fn create_dirs(&mut self, key: &[String]) -> Result<(), DriveError> {
        for end in 1..=key.len() {
            match self.nodes.get(&key[..end]) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) if end == key.len() => {
                    return Err(io_error(ErrorKind::AlreadyExists, "file exists"));
                }
                Some(Node::File(_)) => {
                    return Err(io_error(ErrorKind::NotADirectory, "not a directory"));
                }
                None => {
                    self.nodes.insert(key[..end].to_vec(), Node::Dir);
                }
            }
        }
        Ok(())
    }

    /// Like `create_dirs`, but a file in the way is removed (its id is pushed to `dropped`). Used
    /// on the durable image, which follows the volatile one's decisions instead of making its own.
    fn force_dirs(&mut self, key: &[String], dropped: &mut Vec<FileId>) {
        for end in 1..=key.len() {
            if let Some(Node::File(id)) = self.nodes.insert(key[..end].to_vec(), Node::Dir) {
                dropped.push(id);
            }
        }
    }

    fn subtree_keys(&self, key: &[String]) -> Vec<Key> {
        self.nodes
            .range(key.to_vec()..)
            .take_while(|(k, _)| k.starts_with(key))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Removes `key` and everything below it; returns the removed nodes, paths relative to `key`.
    fn take_subtree(&mut self, key: &[String]) -> Vec<(Key, Node)> {
        let mut out = Vec::new();
        for k in self.subtree_keys(key) {
            if let Some(node) = self.nodes.remove(&k) {
                out.push((k[key.len()..].to_vec(), node));
            }
        }
        out
    }

    /// Removes `key` and everything below it; returns the ids of the removed files.
    fn remove_subtree(&mut self, key: &[String]) -> Vec<FileId> {
        file_ids(&self.take_subtree(key))
    }

    /// Puts nodes taken by `take_subtree` back under `key`.
    fn insert_subtree(&mut self, key: &[String], nodes: Vec<(Key, Node)>) {
        for (suffix, node) in nodes {
            let mut k = key.to_vec();
            k.extend(suffix);
            self.nodes.insert(k, node);
        }
    }

    fn children(&self, key: &[String]) -> Vec<String> {
        self.nodes
            .range(key.to_vec()..)
            .take_while(|(k, _)| k.starts_with(key))
            .filter(|(k, _)| k.len() == key.len() + 1)
            .map(|(k, _)| k[key.len()].clone())
            .collect()
    }

    fn path_of(&self, id: FileId) -> Option<Key> {
        self.nodes
            .iter()
            .find(|(_, n)| **n == Node::File(id))
            .map(|(k, _)| k.clone())
    }
}

fn file_ids(nodes: &[(Key, Node)]) -> Vec<FileId> {
    nodes
        .iter()
        .filter_map(|(_, n)| match n {
            Node::File(id) => Some(*id),
            Node::Dir => None,
        })
        .collect()
}

fn io_error(kind: ErrorKind, msg: &'static str) -> DriveError {
    DriveError::Io(std::io::Error::new(kind, msg))
}

/// Validates a drive-relative path exactly as `LocalDrive` does (only normal components, so no
/// root, `..` or leading `.`; `a//b` and `a/./b` are `a/b`) and splits it.
fn parse_path(rel: &str) -> Result<Key, DriveError> {
    let invalid = || DriveError::InvalidPath(rel.to_string());
    if rel.is_empty() {
        return Err(invalid());
    }
    Path::new(rel)
        .components()
        .map(|c| match c {
            Component::Normal(name) => name.to_str().map(str::to_string).ok_or_else(invalid),
            _ => Err(invalid()),
        })
        .collect()
}

fn join(key: &[String]) -> String {
    key.join("/")
}

/// Everything on the medium.
#[derive(Debug, Default)]
struct DiskState {
    /// Metadata is only changed by the synced `apply`, so it is always durable.
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
    volatile: Tree,
    volatile_data: BTreeMap<FileId, Vec<u8>>,
    durable: Tree,
    /// Synced contents of the files of the durable tree (a file without an entry is empty).
    durable_data: BTreeMap<FileId, Bytes>,
    /// Deletes not yet durable, in order: applied to the durable tree at the next sync.
    pending_deletes: Vec<Key>,
    next_file: FileId,
    /// Bumped by every crash and every opening: handles and writers of an older generation belong
    /// to a dead (or replaced) process and fail.
    generation: u64,
    offline: bool,
    skip_fsync: bool,
}

impl DiskState {
    fn check(&self, generation: u64) -> Result<(), DriveError> {
        if self.offline || generation != self.generation {
            return Err(DriveError::Offline);
        }
        Ok(())
    }

    fn drop_durable(&mut self, ids: Vec<FileId>) {
        for id in ids {
            self.durable_data.remove(&id);
        }
    }

    fn drop_volatile(&mut self, ids: Vec<FileId>) {
        for id in ids {
            self.volatile_data.remove(&id);
        }
    }

    /// A sync point: the file system's journal commits every earlier delete.
    fn flush_deletes(&mut self) {
        for key in std::mem::take(&mut self.pending_deletes) {
            let dropped = self.durable.remove_subtree(&key);
            self.drop_durable(dropped);
        }
    }

    /// The fsync of file `id`: its contents and its current directory entry become durable.
    fn sync_file(&mut self, id: FileId, hint: &[String]) {
        self.flush_deletes();
        let key = if self.volatile.get(hint) == Some(Node::File(id)) {
            Some(hint.to_vec())
        } else {
            self.volatile.path_of(id)
        };
        // An unlinked file has nothing left to make durable.
        let (Some(key), Some(data)) = (key, self.volatile_data.get(&id)) else {
            return;
        };
        let data = Bytes::copy_from_slice(data);
        let mut dropped = Vec::new();
        if let Some((_, parent)) = key.split_last() {
            self.durable.force_dirs(parent, &mut dropped);
        }
        dropped.extend(self.durable.remove_subtree(&key));
        self.drop_durable(dropped);
        self.durable.nodes.insert(key, Node::File(id));
        self.durable_data.insert(id, data);
    }

    /// Replays a rename the volatile tree already accepted on the durable tree. `moved` is the
    /// volatile node that was renamed, used when the durable image never saw the source.
    fn rename_durable(&mut self, from: &[String], to: &[String], moved: Node) {
        self.flush_deletes();
        let mut dropped = Vec::new();
        if let Some((_, parent)) = to.split_last() {
            self.durable.force_dirs(parent, &mut dropped);
        }
        let mut nodes = self.durable.take_subtree(from);
        dropped.extend(self.durable.remove_subtree(to));
        if nodes.is_empty() {
            // Only the directory entry was synced: a never-synced directory arrives empty, a
            // never-synced file with no contents.
            nodes.push((Vec::new(), moved));
        }
        self.durable.insert_subtree(to, nodes);
        self.drop_durable(dropped);
    }

    /// Removes `TMP_DIR` from both images and recreates it empty, as `LocalDrive::open` does.
    fn clear_tmp(&mut self) {
        let tmp = vec![TMP_DIR.to_string()];
        let dropped = self.volatile.remove_subtree(&tmp);
        self.drop_volatile(dropped);
        let dropped = self.durable.remove_subtree(&tmp);
        self.drop_durable(dropped);
        self.pending_deletes.retain(|k| !k.starts_with(&tmp));
        self.volatile.nodes.insert(tmp.clone(), Node::Dir);
        self.durable.nodes.insert(tmp, Node::Dir);
    }

    fn crash(&mut self) {
        self.pending_deletes.clear();
        self.volatile = self.durable.clone();
        self.volatile_data = self
            .durable
            .nodes
            .values()
            .filter_map(|n| match n {
                Node::File(id) => Some(*id),
                Node::Dir => None,
            })
            .map(|id| {
                let data = self.durable_data.get(&id).map(|b| b.to_vec());
                (id, data.unwrap_or_default())
            })
            .collect();
        self.generation += 1;
    }
}

/// The persistent medium of one simulated drive. Clones share it; keep one across a simulated
/// process crash and open a new [`MemoryDrive`] on it afterwards. The fault methods are for the
/// simulator's fault schedule and checkers.
#[derive(Debug, Clone, Default)]
pub struct MemoryDisk {
    state: Arc<Mutex<DiskState>>,
}

impl MemoryDisk {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panic while holding the lock cannot leave a half-applied change: every mutation is
        // computed before it is stored, so the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Power loss: everything not durable is dropped (unsynced files, deletes not yet committed),
    /// and every drive handle and open writer from before fails with `Offline` from now on.
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// While offline every call of every handle (and writer) fails with `DriveError::Offline`.
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    /// Planted bug for the simulator's self-test: while on, `finish` returns success but makes
    /// nothing durable, so a crash loses the file.
    pub fn skip_fsync(&self, skip: bool) {
        self.lock().skip_fsync = skip;
    }

    /// Bit rot: flips every bit of the byte at `offset` of the durable file `path` (the running
    /// process reads the damaged byte too). `NotFound` when no durable file is there,
    /// `Io(InvalidInput)` when `offset` is past its end.
    pub fn corrupt_file(&self, path: &str, offset: u64) -> Result<(), DriveError> {
        let key = parse_path(path)?;
        let mut s = self.lock();
        let Some(Node::File(id)) = s.durable.get(&key) else {
            return Err(DriveError::NotFound);
        };
        let data = s.durable_data.get(&id).cloned().unwrap_or_default();
        let pos = usize::try_from(offset)
            .ok()
            .filter(|&p| p < data.len())
            .ok_or_else(|| io_error(ErrorKind::InvalidInput, "offset past the end of the file"))?;
        let mut damaged = data.to_vec();
        damaged[pos] ^= 0xFF;
        s.durable_data.insert(id, Bytes::from(damaged));
        if let Some(byte) = s.volatile_data.get_mut(&id).and_then(|v| v.get_mut(pos)) {
            *byte ^= 0xFF;
        }
        Ok(())
    }

    /// A lost file (or directory tree): gone from both images at once. `NotFound` when neither
    /// image has anything at `path`.
    pub fn drop_file(&self, path: &str) -> Result<(), DriveError> {
        let key = parse_path(path)?;
        let mut s = self.lock();
        let volatile = s.volatile.take_subtree(&key);
        let durable = s.durable.take_subtree(&key);
        if volatile.is_empty() && durable.is_empty() {
            return Err(DriveError::NotFound);
        }
        s.drop_volatile(file_ids(&volatile));
        s.drop_durable(file_ids(&durable));
        Ok(())
    }

    /// Every durable file with its synced contents, by path (`a/b/part.1`), for checks such as
    /// "no plaintext at rest".
    pub fn durable_files(&self) -> Vec<(String, Bytes)> {
        let s = self.lock();
        s.durable
            .nodes
            .iter()
            .filter_map(|(k, n)| match n {
                Node::File(id) => Some((join(k), s.durable_data.get(id).cloned())),
                Node::Dir => None,
            })
            .map(|(path, data)| (path, data.unwrap_or_default()))
            .collect()
    }

    /// Calls `f` on every byte string the drive holds: synced and unsynced file contents (open
    /// writers' too) and metadata keys and values; for "no plaintext at rest" scans.
    pub fn visit_contents(&self, mut f: impl FnMut(&[u8])) {
        let s = self.lock();
        s.durable_data.values().for_each(|b| f(b));
        s.volatile_data.values().for_each(|b| f(b));
        for (k, v) in &s.meta {
            f(k);
            f(v);
        }
    }

    /// Every metadata entry (all of them are durable), in key order.
    pub fn meta_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.lock()
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A [`Drive`] on a [`MemoryDisk`], behaving like [`LocalDrive`](super::local::LocalDrive).
pub struct MemoryDrive {
    disk: MemoryDisk,
    label: String,
    generation: u64,
}

impl MemoryDrive {
    /// Opens the drive as a (re)started process would: handles from an earlier opening stop
    /// working, and leftovers of interrupted writes in `tmp/` are cleared.
    pub fn new(disk: MemoryDisk, label: impl Into<String>) -> Self {
        let generation = {
            let mut s = disk.lock();
            s.generation += 1;
            s.clear_tmp();
            s.generation
        };
        Self {
            disk,
            label: label.into(),
            generation,
        }
    }

    /// The medium under this drive.
    pub fn disk(&self) -> &MemoryDisk {
        &self.disk
    }

    /// Runs `f` on the disk if this handle may still use it.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut DiskState) -> Result<T, DriveError>,
    ) -> Result<T, DriveError> {
        let mut s = self.disk.lock();
        s.check(self.generation)?;
        f(&mut s)
    }
}

struct MemoryShardWriter {
    disk: MemoryDisk,
    generation: u64,
    id: FileId,
    /// Where the file was created: where `finish` looks first.
    key: Key,
}

#[async_trait]
impl ShardWriter for MemoryShardWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), DriveError> {
        let mut s = self.disk.lock();
        s.check(self.generation)?;
        // Writing to an unlinked file succeeds and the bytes go nowhere, as with a descriptor.
        if let Some(buf) = s.volatile_data.get_mut(&self.id) {
            buf.extend_from_slice(&data);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), DriveError> {
        let mut s = self.disk.lock();
        s.check(self.generation)?;
        if !s.skip_fsync {
            s.sync_file(self.id, &self.key);
        }
        Ok(())
    }
}

#[async_trait]
impl Drive for MemoryDrive {
    fn label(&self) -> &str {
        &self.label
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DriveError> {
        self.with(|s| Ok(s.meta.get(key).cloned()))
    }

    async fn apply(&self, ops: Vec<MetaOp>) -> Result<(), DriveError> {
        self.with(|s| {
            s.flush_deletes();
            for op in &ops {
                if let MetaOp::Expect(k, want) = op {
                    if s.meta.get(k) != want.as_ref() {
                        return Err(DriveError::Conflict);
                    }
                }
            }
            for op in ops {
                match op {
                    MetaOp::Put(k, v) => {
                        s.meta.insert(k, v);
                    }
                    MetaOp::Delete(k) => {
                        s.meta.remove(&k);
                    }
                    MetaOp::Expect(..) | MetaOp::NotAfter(_) => {}
                }
            }
            Ok(())
        })
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DriveError> {
        self.with(|s| {
            let start = if after > prefix { after } else { prefix };
            Ok(s.meta
                .range(start.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter(|(k, _)| k.as_slice() != after)
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        })
    }

    async fn create_file(&self, path: &str) -> Result<Box<dyn ShardWriter>, DriveError> {
        let key = parse_path(path)?;
        let id = self.with(|s| {
            if let Some((_, parent)) = key.split_last() {
                s.volatile.create_dirs(parent)?;
            }
            match s.volatile.get(&key) {
                Some(Node::Dir) => return Err(io_error(ErrorKind::IsADirectory, "is a directory")),
                Some(Node::File(old)) => s.drop_volatile(vec![old]),
                None => {}
            }
            let id = s.next_file;
            s.next_file += 1;
            s.volatile.nodes.insert(key.clone(), Node::File(id));
            s.volatile_data.insert(id, Vec::new());
            Ok(id)
        })?;
        Ok(Box::new(MemoryShardWriter {
            disk: self.disk.clone(),
            generation: self.generation,
            id,
            key,
        }))
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> Result<Bytes, DriveError> {
        let key = parse_path(path)?;
        self.with(|s| {
            s.volatile.check_ancestors(&key)?;
            let node = s.volatile.get(&key).ok_or(DriveError::NotFound)?;
            if i64::try_from(offset).is_err() {
                return Err(io_error(ErrorKind::InvalidInput, "invalid seek offset"));
            }
            // Like `read_exact`, an empty read succeeds wherever it starts.
            if len == 0 {
                return Ok(Bytes::new());
            }
            let Node::File(id) = node else {
                return Err(io_error(ErrorKind::IsADirectory, "is a directory"));
            };
            let data = s.volatile_data.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let range = usize::try_from(offset)
                .ok()
                .and_then(|start| Some(start..start.checked_add(len)?))
                .filter(|r| r.end <= data.len())
                .ok_or_else(|| io_error(ErrorKind::UnexpectedEof, "failed to fill whole buffer"))?;
            Ok(Bytes::copy_from_slice(&data[range]))
        })
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DriveError> {
        let from = parse_path(from)?;
        let to = parse_path(to)?;
        self.with(|s| {
            if let Some((_, parent)) = to.split_last() {
                s.volatile.create_dirs(parent)?;
            }
            // The local drive's steps, in its order: a directory replaces a directory by
            // removing it first.
            if s.volatile.get(&from) == Some(Node::Dir) && s.volatile.get(&to) == Some(Node::Dir) {
                let dropped = s.volatile.remove_subtree(&to);
                s.drop_volatile(dropped);
            }
            s.volatile.check_ancestors(&from)?;
            let moved = s.volatile.get(&from).ok_or(DriveError::NotFound)?;
            if from == to {
                s.flush_deletes();
                return Ok(());
            }
            match (moved, s.volatile.get(&to)) {
                (Node::File(_), Some(Node::Dir)) => {
                    return Err(io_error(ErrorKind::IsADirectory, "is a directory"));
                }
                (Node::Dir, Some(Node::File(_))) => {
                    return Err(io_error(ErrorKind::NotADirectory, "not a directory"));
                }
                (Node::Dir, _) if to.starts_with(&from) => {
                    return Err(io_error(
                        ErrorKind::InvalidInput,
                        "cannot move a directory into itself",
                    ));
                }
                _ => {}
            }
            let nodes = s.volatile.take_subtree(&from);
            let replaced = s.volatile.remove_subtree(&to);
            s.drop_volatile(replaced);
            s.volatile.insert_subtree(&to, nodes);
            s.rename_durable(&from, &to, moved);
            Ok(())
        })
    }

    async fn delete(&self, path: &str) -> Result<(), DriveError> {
        let key = parse_path(path)?;
        self.with(|s| {
            s.volatile.check_ancestors(&key)?;
            if s.volatile.get(&key).is_none() {
                return Ok(());
            }
            let dropped = s.volatile.remove_subtree(&key);
            s.drop_volatile(dropped);
            s.pending_deletes.push(key);
            Ok(())
        })
    }

    async fn health(&self) -> Result<(), DriveError> {
        self.with(|_| Ok(()))
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>, DriveError> {
        let key = parse_path(path)?;
        self.with(|s| {
            s.volatile.check_ancestors(&key)?;
            match s.volatile.get(&key) {
                None => Ok(Vec::new()),
                Some(Node::File(_)) => Err(io_error(ErrorKind::NotADirectory, "not a directory")),
                Some(Node::Dir) => Ok(s.volatile.children(&key)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use futures::{FutureExt, StreamExt};

    use super::*;
    use crate::clock::Clock;
    use crate::drive::local::LocalDrive;
    use crate::erasure::layout::Layout;
    use crate::object::{ObjectLayer, PutOptions};

    /// A result in a form both drives can be compared on.
    fn outcome<T: Debug>(r: Result<T, DriveError>) -> String {
        match r {
            Ok(v) => format!("ok {v:?}"),
            Err(DriveError::Io(e)) => format!("io {:?}", e.kind()),
            Err(e) => format!("err {e}"),
        }
    }

    async fn write(d: &dyn Drive, path: &str, chunks: &[&[u8]]) -> Result<(), DriveError> {
        let mut w = d.create_file(path).await?;
        for c in chunks {
            w.write(Bytes::copy_from_slice(c)).await?;
        }
        w.finish().await
    }

    fn put(k: &str, v: &str) -> MetaOp {
        MetaOp::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    /// Exercises every method, edge cases included, and records what each call returned.
    async fn script(d: &dyn Drive) -> Vec<String> {
        let mut t = Vec::new();
        macro_rules! rec {
            ($e:expr) => {
                t.push(format!("{} => {}", stringify!($e), outcome($e.await)))
            };
        }
        // Metadata.
        rec!(d.apply(vec![
            put("o/b/a", "1"),
            put("o/b/b", "2"),
            put("o/b/c", "3"),
            put("o/c/a", "4"),
            put("p", "5"),
        ]));
        rec!(d.get(b"o/b/a"));
        rec!(d.get(b"o/b/zz"));
        for (prefix, after, limit) in [
            ("o/b/", "", 10),
            ("o/b/", "o/b/a", 10),
            ("o/b/", "o/b/b", 1),
            ("o/b/", "", 0),
            ("o/b/", "a", 10),
            ("o/b/", "o/c", 10),
            ("o/b/", "o/b/", 10),
            ("o/b/zz", "", 10),
            ("", "", 100),
            ("", "o/b/c", 100),
        ] {
            t.push(format!("scan {prefix:?} after {after:?} limit {limit}"));
            rec!(d.scan(prefix.as_bytes(), after.as_bytes(), limit));
        }
        rec!(d.apply(vec![
            MetaOp::Delete(b"o/b/b".to_vec()),
            put("o/b/d", "6"),
            MetaOp::Delete(b"missing".to_vec()),
            put("o/b/a", "7"),
        ]));
        rec!(d.apply(Vec::new()));
        rec!(d.scan(b"o/", b"", 100));

        // Files: writing, reading, listing.
        rec!(d.list_dir("tmp"));
        rec!(write(d, "tmp/x/part.1", &[b"hello ", b"world"]));
        for (offset, len) in [
            (0, 11),
            (6, 5),
            (6, 6),
            (11, 0),
            (100, 0),
            (12, 1),
            (u64::MAX, 0),
            (u64::MAX, 1),
        ] {
            t.push(format!("read at {offset} len {len}"));
            rec!(d.read_file("tmp/x/part.1", offset, len));
        }
        rec!(d.read_file("tmp//x/./part.1", 0, 5));
        rec!(d.read_file("tmp/x/missing", 0, 1));
        rec!(d.read_file("nowhere/part.1", 0, 1));
        rec!(d.read_file("tmp/x/part.1/y", 0, 1));
        rec!(d.read_file("tmp/x", 0, 1));
        rec!(d.read_file("tmp/x", 0, 0));
        rec!(d.list_dir("tmp"));
        rec!(d.list_dir("tmp/x"));
        rec!(d.list_dir("tmp/x/"));
        rec!(d.list_dir("tmp/nope"));
        rec!(d.list_dir("tmp/x/part.1"));
        rec!(d.list_dir("tmp/x/part.1/z"));
        // Truncation, and bytes visible before `finish`.
        rec!(write(d, "tmp/x/part.1", &[b"abc"]));
        rec!(d.read_file("tmp/x/part.1", 0, 3));
        rec!(d.read_file("tmp/x/part.1", 0, 4));
        let unfinished = async {
            let mut w = d.create_file("tmp/y/part.2").await?;
            w.write(Bytes::from_static(b"zz")).await
        };
        t.push(format!("unfinished write => {}", outcome(unfinished.await)));
        rec!(d.read_file("tmp/y/part.2", 0, 2));
        rec!(d.create_file("tmp/x").map(|r| r.map(|_| ())));
        rec!(d.create_file("tmp/x/part.1/sub").map(|r| r.map(|_| ())));
        rec!(d.create_file("tmp/x/part.1/sub/f").map(|r| r.map(|_| ())));

        // Renames.
        rec!(d.rename("tmp/x/part.1", "data/ab/f1"));
        rec!(d.read_file("data/ab/f1", 0, 3));
        rec!(d.list_dir("tmp/x"));
        rec!(write(d, "tmp/f2", &[b"second"]));
        rec!(d.rename("tmp/f2", "data/ab/f1"));
        rec!(d.read_file("data/ab/f1", 0, 6));
        rec!(write(d, "tmp/up/part.1", &[b"one"]));
        rec!(write(d, "tmp/up/sub/part.2", &[b"two"]));
        rec!(d.rename("tmp/up", "data/cd/up"));
        rec!(d.list_dir("data/cd/up"));
        rec!(d.read_file("data/cd/up/sub/part.2", 0, 3));
        rec!(d.list_dir("tmp"));
        rec!(write(d, "tmp/v2/part.1", &[b"new"]));
        rec!(d.rename("tmp/v2", "data/cd/up"));
        rec!(d.list_dir("data/cd/up"));
        rec!(d.read_file("data/cd/up/part.1", 0, 3));
        rec!(d.read_file("data/cd/up/sub/part.2", 0, 3));
        rec!(d.rename("tmp/none", "data/none"));
        rec!(d.rename("data/ab/f1", "data/cd"));
        rec!(d.rename("data/cd", "data/ab/f1"));
        rec!(d.rename("data/cd", "data/cd/up/inner"));
        rec!(d.rename("data/ab/f1", "data/ab/f1"));
        rec!(d.rename("tmp/y", "data/ab/f1/x"));
        rec!(d.list_dir("data"));
        rec!(d.list_dir("data/cd"));

        // Deletes.
        rec!(d.delete("data/ab/f1"));
        rec!(d.read_file("data/ab/f1", 0, 1));
        rec!(d.list_dir("data/ab"));
        rec!(d.delete("data/cd"));
        rec!(d.list_dir("data"));
        rec!(d.delete("data/cd"));
        rec!(d.delete("never/there"));
        rec!(d.delete("tmp/y/part.2/x"));
        rec!(d.list_dir("tmp/y"));

        // Invalid paths.
        for bad in ["", "/abs", "../x", "a/../b", "./a", ".", "a/.."] {
            rec!(d.create_file(bad).map(|r| r.map(|_| ())));
            rec!(d.read_file(bad, 0, 0));
            rec!(d.rename(bad, "tmp/ok"));
            rec!(d.rename("tmp/y", bad));
            rec!(d.delete(bad));
            rec!(d.list_dir(bad));
        }
        t
    }

    #[tokio::test]
    async fn behaves_like_the_local_drive() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDrive::open(dir.path()).unwrap();
        let memory = MemoryDrive::new(MemoryDisk::new(), "mem");
        let expected = script(&local).await;
        let got = script(&memory).await;
        for (e, g) in expected.iter().zip(&got) {
            assert_eq!(e, g);
        }
        assert_eq!(expected.len(), got.len());
    }

    async fn read_all(d: &dyn Drive, path: &str, len: usize) -> Result<Bytes, DriveError> {
        d.read_file(path, 0, len).await
    }

    #[tokio::test]
    async fn crash_keeps_only_what_was_synced() {
        let disk = MemoryDisk::new();
        let d = MemoryDrive::new(disk.clone(), "mem");
        d.apply(vec![put("k", "v")]).await.unwrap();
        write(&d, "data/done", &[b"synced"]).await.unwrap();
        let mut open = d.create_file("data/open").await.unwrap();
        open.write(Bytes::from_static(b"unsynced")).await.unwrap();
        disk.skip_fsync(true);
        write(&d, "data/skipped", &[b"lost"]).await.unwrap();
        disk.skip_fsync(false);
        assert_eq!(&read_all(&d, "data/skipped", 4).await.unwrap()[..], b"lost");

        disk.crash();
        // The old process is gone: its handle and its writer fail.
        assert!(matches!(d.get(b"k").await, Err(DriveError::Offline)));
        assert!(matches!(
            open.write(Bytes::from_static(b"more")).await,
            Err(DriveError::Offline)
        ));
        assert!(matches!(open.finish().await, Err(DriveError::Offline)));

        let d = MemoryDrive::new(disk.clone(), "mem");
        assert_eq!(d.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(&read_all(&d, "data/done", 6).await.unwrap()[..], b"synced");
        assert!(matches!(
            d.read_file("data/open", 0, 1).await,
            Err(DriveError::NotFound)
        ));
        assert!(matches!(
            d.read_file("data/skipped", 0, 1).await,
            Err(DriveError::NotFound)
        ));
        assert_eq!(d.list_dir("data").await.unwrap(), vec!["done"]);
        assert_eq!(
            disk.durable_files(),
            vec![("data/done".to_string(), Bytes::from_static(b"synced"))]
        );
        assert_eq!(disk.meta_entries(), vec![(b"k".to_vec(), b"v".to_vec())]);
    }

    #[tokio::test]
    async fn renames_are_durable_and_deletes_wait_for_a_sync() {
        let disk = MemoryDisk::new();
        let d = MemoryDrive::new(disk.clone(), "mem");
        write(&d, "tmp/v1/part.1", &[b"one"]).await.unwrap();
        d.rename("tmp/v1", "data/v1").await.unwrap();
        write(&d, "data/old", &[b"old"]).await.unwrap();
        d.delete("data/old").await.unwrap();
        disk.crash();

        // The rename survived; the delete was never committed, so the file is back.
        let d = MemoryDrive::new(disk.clone(), "mem");
        assert_eq!(
            &read_all(&d, "data/v1/part.1", 3).await.unwrap()[..],
            b"one"
        );
        assert_eq!(&read_all(&d, "data/old", 3).await.unwrap()[..], b"old");
        d.delete("data/old").await.unwrap();
        d.apply(vec![put("k", "v")]).await.unwrap();
        disk.crash();

        let d = MemoryDrive::new(disk.clone(), "mem");
        assert_eq!(d.list_dir("data").await.unwrap(), vec!["v1"]);
        // A renamed directory whose files were never synced arrives empty.
        let mut w = d.create_file("tmp/v2/part.1").await.unwrap();
        w.write(Bytes::from_static(b"unsynced")).await.unwrap();
        drop(w);
        d.rename("tmp/v2", "data/v2").await.unwrap();
        disk.crash();
        let d = MemoryDrive::new(disk.clone(), "mem");
        assert_eq!(d.list_dir("data").await.unwrap(), vec!["v1", "v2"]);
        assert!(d.list_dir("data/v2").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn writer_follows_its_file_through_a_rename() {
        let disk = MemoryDisk::new();
        let d = MemoryDrive::new(disk.clone(), "mem");
        let mut w = d.create_file("tmp/a").await.unwrap();
        w.write(Bytes::from_static(b"12")).await.unwrap();
        d.rename("tmp/a", "data/a").await.unwrap();
        w.write(Bytes::from_static(b"34")).await.unwrap();
        w.finish().await.unwrap();
        disk.crash();
        let d = MemoryDrive::new(disk, "mem");
        assert_eq!(&read_all(&d, "data/a", 4).await.unwrap()[..], b"1234");
    }

    #[tokio::test]
    async fn reopening_clears_tmp() {
        let disk = MemoryDisk::new();
        let d = MemoryDrive::new(disk.clone(), "mem");
        write(&d, "tmp/x/part.1", &[b"left over"]).await.unwrap();
        let d = MemoryDrive::new(disk.clone(), "mem");
        assert!(d.list_dir("tmp").await.unwrap().is_empty());
        disk.crash();
        let d = MemoryDrive::new(disk.clone(), "mem");
        assert!(d.list_dir("tmp").await.unwrap().is_empty());
        assert!(disk.durable_files().is_empty());
    }

    #[tokio::test]
    async fn offline_disk_refuses_everything() {
        let disk = MemoryDisk::new();
        let d = MemoryDrive::new(disk.clone(), "mem");
        let mut w = d.create_file("data/a").await.unwrap();
        disk.set_offline(true);
        assert!(matches!(d.health().await, Err(DriveError::Offline)));
        assert!(matches!(d.get(b"k").await, Err(DriveError::Offline)));
        assert!(matches!(d.apply(vec![]).await, Err(DriveError::Offline)));
        assert!(matches!(
            d.scan(b"", b"", 1).await,
            Err(DriveError::Offline)
        ));
        assert!(matches!(d.list_dir("data").await, Err(DriveError::Offline)));
        assert!(matches!(d.delete("data/a").await, Err(DriveError::Offline)));
        assert!(matches!(
            d.rename("data/a", "b").await,
            Err(DriveError::Offline)
        ));
        assert!(matches!(
            d.read_file("data/a", 0, 0).await,
            Err(DriveError::Offline)
        ));
        assert!(matches!(
            d.create_file("data/b").await,
            Err(DriveError::Offline)
        ));
        assert!(matches!(
            w.write(Bytes::from_static(b"x")).await,
            Err(DriveError::Offline)
        ));
        disk.set_offline(false);
        d.health().await.unwrap();
        w.write(Bytes::from_static(b"x")).await.unwrap();
        w.finish().await.unwrap();
        assert_eq!(&read_all(&d, "data/a", 1).await.unwrap()[..], b"x");
    }

    #[tokio::test]
    async fn faults_damage_and_drop_files() {
        let disk = MemoryDisk::new();
        let d = MemoryDrive::new(disk.clone(), "mem");
        write(&d, "data/a", &[b"abc"]).await.unwrap();
        write(&d, "data/b/part.1", &[b"xyz"]).await.unwrap();
        disk.corrupt_file("data/a", 1).unwrap();
        assert_eq!(
            &read_all(&d, "data/a", 3).await.unwrap()[..],
            &[b'a', !b'b', b'c']
        );
        assert!(matches!(
            disk.corrupt_file("data/a", 3),
            Err(DriveError::Io(_))
        ));
        assert!(matches!(
            disk.corrupt_file("data/none", 0),
            Err(DriveError::NotFound)
        ));
        disk.drop_file("data/b").unwrap();
        assert!(d.list_dir("data/b").await.unwrap().is_empty());
        assert!(matches!(
            disk.drop_file("data/b"),
            Err(DriveError::NotFound)
        ));
        disk.crash();
        let d = MemoryDrive::new(disk.clone(), "mem");
        assert_eq!(d.list_dir("data").await.unwrap(), vec!["a"]);
        assert_eq!(
            disk.durable_files(),
            vec![("data/a".to_string(), Bytes::from(vec![b'a', !b'b', b'c']))]
        );
    }

    /// Virtual time for the object layer.
    struct FixedClock;

    impl Clock for FixedClock {
        fn now_ns(&self) -> i64 {
            1_700_000_000_000_000_000
        }
    }

    fn layer(disks: &[MemoryDisk], parity: usize) -> ObjectLayer {
        let drives: Vec<Arc<dyn Drive>> = disks
            .iter()
            .enumerate()
            .map(|(i, disk)| Arc::new(MemoryDrive::new(disk.clone(), format!("mem{i}"))) as _)
            .collect();
        let layout = Layout::plan(disks.len(), Some(parity)).unwrap();
        let (layer, _heal) = ObjectLayer::new(
            drives,
            layout,
            "test-deployment",
            Arc::new(FixedClock),
            Box::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7)),
            Arc::new(crate::object::stage::AsSent),
        )
        .unwrap();
        layer
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31)).collect()
    }

    async fn put_object(l: &ObjectLayer, key: &str, body: &[u8]) {
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        l.put_object(
            "b",
            key,
            futures::stream::iter(chunks),
            (),
            PutOptions::default(),
            |_| Ok(vec![]),
        )
        .await
        .unwrap();
    }

    async fn get_object(l: &ObjectLayer, key: &str, len: usize) -> Result<Vec<u8>, String> {
        let h = l
            .get_object("b", key, None)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = Box::pin(h.stream(0, len as u64));
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn object_layer_reads_through_a_corrupted_shard() {
        let disks: Vec<MemoryDisk> = (0..6).map(|_| MemoryDisk::new()).collect();
        let l = layer(&disks, 2);
        let data = body(1_500_000);
        put_object(&l, "o", &data).await;
        let (path, shard) = disks[1]
            .durable_files()
            .into_iter()
            .find(|(p, _)| p.ends_with("part.1"))
            .unwrap();
        assert!(shard.len() > 1000);
        disks[1].corrupt_file(&path, 1000).unwrap();
        assert_eq!(get_object(&l, "o", data.len()).await.unwrap(), data);
    }

    #[tokio::test]
    async fn object_survives_a_crash_unless_fsync_is_skipped() {
        let disks: Vec<MemoryDisk> = (0..6).map(|_| MemoryDisk::new()).collect();
        let l = layer(&disks, 2);
        let data = body(300_000);
        put_object(&l, "kept", &data).await;
        for d in &disks {
            d.skip_fsync(true);
        }
        put_object(&l, "lost", &data).await;
        for d in &disks {
            d.crash();
        }
        let l = layer(&disks, 2);
        assert_eq!(get_object(&l, "kept", data.len()).await.unwrap(), data);
        assert!(get_object(&l, "lost", data.len()).await.is_err());
    }
}
