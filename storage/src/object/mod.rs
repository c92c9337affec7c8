//! The object layer: objects as erasure-coded versions spread over sets of drives.
//!
//! Every write goes to temp files first, is fsynced, renamed into place and only then recorded in
//! each drive's metadata (synced), so an interrupted write is never visible. Reads trust only what
//! a read quorum of drives agrees on.

pub mod error;
pub mod heal;
pub mod keys;
pub mod lifecycle;
pub mod list;
pub mod list_versions;
pub mod metadata;
pub mod multipart;
pub mod purge;
pub mod quorum;
pub mod read;
pub mod replica;
pub mod retention;
pub mod retire;
pub mod set;
pub mod settle;
pub mod stage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod versions;
pub mod write;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use futures::Stream;
use highway::{HighwayHash, HighwayHasher, Key};
use prost::Message;
use rand::RngCore;
use tokio::sync::mpsc;

use cairn_proto::meta::{ErasureInfo, KeyValue, ObjectRecord, ObjectVersion, PartInfo};

pub use error::{ObjectError, ObjectResult};
use read::{ObjectReader, ShardReader, ShardSource};
pub use set::ErasureSet;
use write::{ShardTargets, WriteOutcome};

use crate::clock::{Hlc, SharedClock};
use crate::drive::{Drive, MetaOp};
use crate::erasure::layout::{distribution, Layout};
use crate::erasure::{Erasure, BLOCK_SIZE};

/// AWS's limit for a single PUT.
pub const MAX_OBJECT_SIZE: u64 = 5 << 30;
/// The version id of objects written while versioning is off.
pub const NULL_VERSION: &str = "null";
/// The time of a version not stamped yet: `commit` stamps it under the key's lock
/// ([`ObjectLayer::stamp`]). Replicas and lifecycle markers come with their time fixed.
pub const UNSTAMPED: i64 = 0;

/// A version as S3 responses describe it (no shard bytes).
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub version: ObjectVersion,
}

/// What the client sent along with the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub headers: Vec<KeyValue>,
    pub user_metadata: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
    /// The bucket's versioning state: which version id the write gets.
    pub versioning: cairn_control_plane::Versioning,
    /// Object lock of the new version (request headers or the bucket default).
    pub lock: retention::LockState,
    /// Set when a stage above stores other bytes than the client sent (a sealed body): the
    /// version then shows what that stage says.
    pub stored_form: Option<Arc<dyn stage::StoredForm>>,
    pub replication: replica::Replication,
}

/// An object (key in a bucket) that needs its shards checked and repaired: a read found it
/// damaged, or a write reached write quorum but missed drives (which leaves it with less
/// redundancy than its parity until healed, MinIO's MRF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealRequest {
    pub bucket: String,
    pub key: String,
    /// Heals of it tried so far (retried while a drive it needs does not answer).
    pub attempt: u32,
}

impl HealRequest {
    pub fn new(bucket: &str, key: &str) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            attempt: 0,
        }
    }
}

/// A version opened for reading: its description and a reader of any byte range of it.
pub struct GetHandle {
    pub info: ObjectInfo,
    /// The version's parts as the drives hold them.
    stored_parts: Vec<PartInfo>,
    reader: ShardReader,
    heal: HealRequest,
    heal_tx: mpsc::UnboundedSender<HealRequest>,
}

impl GetHandle {
    /// Streams bytes `start..end` (end exclusive, within the object).
    pub fn stream(self, start: u64, end: u64) -> impl Stream<Item = ObjectResult<Bytes>> + Send {
        let tx = self.heal_tx;
        let req = self.heal;
        let on_damage = Box::new(move || {
            let _ = tx.send(req);
        });
        ObjectReader::new(self.reader, self.stored_parts, start, end, on_damage).into_stream()
    }
}

/// Namespace locks: writers of one key commit one at a time, so every drive sees the same order.
struct NsLocks(Vec<tokio::sync::Mutex<()>>);

impl NsLocks {
    fn new() -> Self {
        Self((0..1024).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    async fn lock(&self, hash: u64) -> tokio::sync::MutexGuard<'_, ()> {
        self.0[(hash % self.0.len() as u64) as usize].lock().await
    }
}

pub struct ObjectLayer {
    pub sets: Vec<ErasureSet>,
    pub layout: Layout,
    placement_key: Key,
    pub clock: SharedClock,
    /// Times of new versions and metadata changes: ordered by what was seen, not by a wall clock
    /// that may be skewed between nodes or sites (`clock::Hlc`).
    pub hlc: Hlc,
    rng: std::sync::Mutex<Box<dyn rand::RngCore + Send>>,
    locks: NsLocks,
    heal_tx: mpsc::UnboundedSender<HealRequest>,
    /// Versions heal removed since start-up because they were lost beyond their parity.
    pub lost_versions_removed: std::sync::atomic::AtomicU64,
    /// What full heals did so far (`cairn admin heal` shows it while its call runs).
    pub heal_progress: heal::HealProgress,
    /// How versions' parts lie on the drives (encrypted parts are larger than they look).
    stored: Arc<dyn stage::StoredLayout>,
}

impl ObjectLayer {
    /// Builds the layer over `drives` (in endpoint order); the receiver yields objects found damaged.
    /// `stored` tells where the parts of any version lie (see [`stage::StoredLayout`]).
    pub fn new(
        drives: Vec<Arc<dyn Drive>>,
        layout: Layout,
        deployment_id: &str,
        clock: SharedClock,
        rng: Box<dyn rand::RngCore + Send>,
        stored: Arc<dyn stage::StoredLayout>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<HealRequest>), ObjectError> {
        let erasure = Erasure::new(layout.data(), layout.parity)?;
        let sets = drives
            .chunks(layout.set_size)
            .map(|c| ErasureSet {
                drives: c.to_vec(),
                erasure,
                read_quorum: layout.read_quorum(),
                write_quorum: layout.write_quorum(),
            })
            .collect();
        let mut k = [0u64; 4];
        for (i, chunk) in deployment_id.as_bytes().chunks(8).take(4).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            k[i] = u64::from_le_bytes(b);
        }
        let (heal_tx, heal_rx) = mpsc::unbounded_channel();
        Ok((
            Self {
                sets,
                layout,
                placement_key: Key(k),
                hlc: Hlc::new(clock.clone()),
                clock,
                rng: std::sync::Mutex::new(rng),
                locks: NsLocks::new(),
                heal_tx,
                lost_versions_removed: Default::default(),
                heal_progress: Default::default(),
                stored,
            },
            heal_rx,
        ))
    }

    /// Queues a heal of `req` for the node's heal worker.
    pub fn request_heal(&self, req: HealRequest) {
        let _ = self.heal_tx.send(req);
    }

    fn key_hash(&self, bucket: &str, key: &str) -> u64 {
        let mut h = HighwayHasher::new(self.placement_key);
        h.append(bucket.as_bytes());
        h.append(b"/");
        h.append(key.as_bytes());
        h.finalize64()
    }

    /// The set an object lives in and the set-drive index of each of its shards.
    pub fn place(&self, bucket: &str, key: &str) -> (&ErasureSet, Vec<u32>) {
        let h = self.key_hash(bucket, key);
        let set = &self.sets[(h % self.sets.len() as u64) as usize];
        (set, distribution(h >> 20, set.size()))
    }

    /// A fresh id (version, upload, temp dir) from the handed-in RNG, never a global one.
    fn new_id(&self) -> String {
        let mut b = [0u8; 16];
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fill_bytes(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }

    /// Reads and resolves the agreed version of a key.
    async fn resolve(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> ObjectResult<quorum::Resolved> {
        if let Some(id) = version_id {
            versions::check_version_id(id)?;
        }
        let (set, _) = self.place(bucket, key);
        let records = set.read_records(&keys::object(bucket, key)).await;
        quorum::resolve(&records, version_id, set.read_quorum, set.write_quorum)
    }

    pub async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> ObjectResult<ObjectInfo> {
        let r = self.resolve(bucket, key, version_id).await?;
        if r.version.delete_marker {
            return Err(versions::marker_error(&r.version, version_id));
        }
        Ok(ObjectInfo {
            bucket: bucket.into(),
            key: key.into(),
            version: r.version,
        })
    }

    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> ObjectResult<GetHandle> {
        let (set, _) = self.place(bucket, key);
        let r = self.resolve(bucket, key, version_id).await?;
        if r.version.delete_marker {
            return Err(versions::marker_error(&r.version, version_id));
        }
        let reader = shard_reader(set, &r)?;
        Ok(GetHandle {
            stored_parts: self.stored.stored_parts(&r.version).into_owned(),
            info: ObjectInfo {
                bucket: bucket.into(),
                key: key.into(),
                version: r.version,
            },
            reader,
            heal: HealRequest::new(bucket, key),
            heal_tx: self.heal_tx.clone(),
        })
    }

    /// Stores a new object from `body`. `verify` sees the digests before anything becomes visible
    /// and returns the checksums to record.
    pub async fn put_object<S, E, H, V>(
        &self,
        bucket: &str,
        key: &str,
        body: S,
        hasher: H,
        opts: PutOptions,
        verify: V,
    ) -> ObjectResult<ObjectInfo>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Into<stage::BodyError>,
        H: stage::Checksummer,
        V: FnOnce(&WriteOutcome<H::Sums>) -> ObjectResult<Vec<KeyValue>>,
    {
        let (set, dist) = self.place(bucket, key);
        let tmp = keys::tmp_dir(&self.new_id());
        let targets = ShardTargets {
            drives: dist
                .iter()
                .map(|&d| set.drives[d as usize].clone())
                .collect(),
            path: format!("{tmp}/{}", keys::part_file(1)),
        };
        let want_md5 = opts
            .stored_form
            .as_ref()
            .is_none_or(|s| s.needs_stored_md5());
        let outcome =
            write::write_stream(set, &targets, body, hasher, MAX_OBJECT_SIZE, true, want_md5).await;
        let outcome = match outcome.and_then(|o| verify(&o).map(|c| (o, c))) {
            Ok(v) => v,
            Err(e) => {
                cleanup(set, &tmp).await;
                return Err(e);
            }
        };
        let (out, checksums) = outcome;
        let mut etag = hex::encode(out.md5);
        let (mut stamp, mut part_time) = (UNSTAMPED, self.clock.now_ns());
        let mut version_id = self.version_id_for(opts.versioning);
        if let Some(r) = opts.replication.replica() {
            version_id = r.version_id.clone();
            (stamp, part_time) = (r.mod_time_ns, r.mod_time_ns);
            if let Some(e) = &r.etag {
                etag = e.clone();
            }
        }
        let data_dir = if out.inline.is_some() {
            String::new()
        } else {
            self.new_id()
        };
        let mut version = ObjectVersion {
            version_id,
            replication: opts.replication.status().to_string(),
            delete_marker: false,
            mod_time_ns: stamp,
            size: out.size,
            etag: etag.clone(),
            headers: opts.headers,
            user_metadata: opts.user_metadata,
            tags: opts.tags,
            checksums: checksums.clone(),
            parts: vec![PartInfo {
                number: 1,
                size: out.size,
                etag,
                mod_time_ns: part_time,
                checksums,
                sse_salt: Vec::new(),
            }],
            erasure: Some(erasure_info(set, &dist)),
            data_dir,
            inline_data: Vec::new(),
            inlined: out.inline.is_some(),
            ..Default::default()
        };
        opts.lock.write_to(&mut version);
        if let Some(s) = &opts.stored_form {
            s.apply_version(&mut version);
        }
        let moves = if out.inline.is_some() {
            vec![]
        } else {
            vec![(tmp.clone(), keys::data_dir(&version.data_dir))]
        };
        let res = self
            .commit(
                set,
                bucket,
                key,
                &dist,
                &mut version,
                &out.ok,
                out.inline.as_deref(),
                &moves,
                None,
            )
            .await;
        if !matches!(res, Ok(None)) {
            cleanup(set, &tmp).await;
        }
        if let Some(existing) = res? {
            version = existing;
        }
        Ok(ObjectInfo {
            bucket: bucket.into(),
            key: key.into(),
            version,
        })
    }

    /// Records `version` on every drive whose shard was written: moves the shard files into place,
    /// then replaces any version with the same id in the drive's metadata. A replica asks
    /// [`replica`] first: `Some` is the version already stored under its id, and nothing was
    /// written. A local version whose time is [`UNSTAMPED`] is stamped here ([`Self::stamp`]).
    /// A lifecycle action's `expect` must accept the key's versions first (else NoSuchVersion).
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        set: &ErasureSet,
        bucket: &str,
        key: &str,
        dist: &[u32],
        version: &mut ObjectVersion,
        shard_ok: &[bool],
        inline: Option<&[Vec<u8>]>,
        moves: &[(String, String)],
        expect: Option<&lifecycle::Expect<'_>>,
    ) -> ObjectResult<Option<ObjectVersion>> {
        let _guard = self.locks.lock(self.key_hash(bucket, key)).await;
        let meta_key = keys::object(bucket, key);
        if version.replication == replica::REPLICA {
            self.hlc.observe(version.mod_time_ns);
            if let Some(existing) = self.admit_replica(set, bucket, key, version).await? {
                return Ok(Some(existing));
            }
        } else {
            let records = set.read_records(&meta_key).await;
            if let Some(expect) = expect {
                lifecycle::check(expect, &records, set.read_quorum)?;
            }
            if version.mod_time_ns == UNSTAMPED {
                version.mod_time_ns = self.stamp(&records);
            }
        }
        // The drives record it pending until it is committed ([`settle`]); the caller's copy
        // describes the version as it is once acknowledged.
        let deadline_ns = self.write_deadline();
        let version = &ObjectVersion {
            pending_until_ns: deadline_ns,
            ..version.clone()
        };
        let fence = &[MetaOp::NotAfter(deadline_ns)];
        // Phase 1: every drive records the new version but keeps the data of the versions it
        // replaces, so a write that misses quorum can be rolled back without losing the old object.
        let results = join_all(set.drives.iter().enumerate().map(|(d, drive)| {
            let shard = dist.iter().position(|&x| x as usize == d).unwrap_or(0);
            let ok = shard_ok.get(shard).copied().unwrap_or(false);
            let mut v = version.clone();
            if let Some(e) = v.erasure.as_mut() {
                e.shard_index = shard as u32;
            }
            if let Some(inline) = inline {
                v.inline_data = inline.get(shard).cloned().unwrap_or_default();
            }
            let (meta_key, drive) = (meta_key.clone(), drive.clone());
            async move {
                if !ok {
                    return Err(crate::drive::DriveError::Offline);
                }
                for (from, to) in moves {
                    drive.rename(from, to).await?;
                }
                // The key's lock is this node's only: another node (a replica arriving from a
                // peer site, a client of another node) may change the record in between.
                put_version(drive.as_ref(), &meta_key, fence, v).await
            }
        }))
        .await;
        let undo: Vec<String> = moves.iter().map(|(_, to)| to.clone()).collect();
        let pending = settle::Pending {
            version,
            deadline_ns,
            clock: &*self.clock,
        };
        let missed = settle_records(set, &meta_key, results, &undo, Some(pending)).await?;
        if missed {
            self.request_heal(HealRequest::new(bucket, key));
        }
        Ok(None)
    }

    /// The deadline of a write starting now ([`settle`]).
    fn write_deadline(&self) -> i64 {
        self.clock.now_ns().saturating_add(settle::WRITE_WINDOW_NS)
    }

    /// The time of a local change of a key whose drives hold `records`, taken under the key's
    /// lock: later than every version any drive holds (current or replaced), so the change
    /// orders after what it replaces however far this node's clock runs behind the node or site
    /// that wrote those (per-key causal order; `clock::Hlc`). Every drive is counted, not only
    /// a quorum's agreement: a time only has to be later, and the newest acknowledged version
    /// is on a write quorum, which meets any set of drives a write can reach quorum on.
    fn stamp(&self, records: &[Result<Option<ObjectRecord>, crate::drive::DriveError>]) -> i64 {
        let newest = records
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(Option::as_ref))
            .flat_map(|r| r.versions.iter().chain(&r.replaced))
            .map(|v| v.mod_time_ns)
            .max();
        newest.map_or_else(|| self.hlc.now_ns(), |t| self.hlc.after(t))
    }

    /// Changes metadata of the agreed version in place (tags): only drives holding it are updated.
    pub async fn update_version<F>(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        f: F,
    ) -> ObjectResult<ObjectInfo>
    where
        F: Fn(&mut ObjectVersion) + Send + Sync,
    {
        self.update_version_if(bucket, key, version_id, |_| Ok(()), f)
            .await
    }

    /// Like `update_version`, after `check` accepted the agreed version (under the key's lock, so
    /// nothing changes it in between).
    pub async fn update_version_if<C, F>(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        check: C,
        f: F,
    ) -> ObjectResult<ObjectInfo>
    where
        C: FnOnce(&ObjectVersion) -> ObjectResult<()>,
        F: Fn(&mut ObjectVersion) + Send + Sync,
    {
        let check = |v: &ObjectVersion| {
            if v.delete_marker {
                return Err(versions::marker_error(v, version_id));
            }
            check(v)
        };
        self.change_version(bucket, key, version_id, check, f).await
    }

    /// Applies `f` to the agreed version (a delete marker too) on every drive holding it, after
    /// `check` accepted it, under the key's lock.
    pub(crate) async fn change_version<C, F>(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        check: C,
        f: F,
    ) -> ObjectResult<ObjectInfo>
    where
        C: FnOnce(&ObjectVersion) -> ObjectResult<()>,
        F: Fn(&mut ObjectVersion) + Send + Sync,
    {
        let _guard = self.locks.lock(self.key_hash(bucket, key)).await;
        let (set, _) = self.place(bucket, key);
        let r = self.resolve(bucket, key, version_id).await?;
        check(&r.version)?;
        let meta_key = keys::object(bucket, key);
        let target = &r.version;
        let f = &f;
        set.on_all(|d, drive| {
            let meta_key = meta_key.clone();
            let holds = r.copies[d].is_some();
            async move {
                if !holds {
                    return Err(crate::drive::DriveError::NotFound);
                }
                swap_record(drive.as_ref(), &meta_key, &[], |record| {
                    for v in record
                        .versions
                        .iter_mut()
                        .filter(|v| quorum::same_version(v, target))
                    {
                        f(v);
                    }
                })
                .await
                .map(|_| ())
            }
        })
        .await?;
        let mut version = r.version.clone();
        f(&mut version);
        Ok(ObjectInfo {
            bucket: bucket.into(),
            key: key.into(),
            version,
        })
    }
}

fn erasure_info(set: &ErasureSet, dist: &[u32]) -> ErasureInfo {
    ErasureInfo {
        data_shards: set.erasure.data_shards() as u32,
        parity_shards: set.erasure.parity_shards() as u32,
        block_size: BLOCK_SIZE as u32,
        distribution: dist.to_vec(),
        shard_index: 0,
    }
}

/// Where each shard of a resolved version can be read from.
fn shard_reader(set: &ErasureSet, r: &quorum::Resolved) -> ObjectResult<ShardReader> {
    let e = r
        .version
        .erasure
        .clone()
        .ok_or_else(|| ObjectError::CorruptMeta("no erasure info".into()))?;
    let erasure = Erasure::new(e.data_shards as usize, e.parity_shards as usize)?;
    let n = erasure.total_shards();
    let mut sources = vec![None; n];
    for (d, copy) in r.copies.iter().enumerate() {
        let Some(copy) = copy else { continue };
        let idx = copy
            .erasure
            .as_ref()
            .map_or(usize::MAX, |e| e.shard_index as usize);
        if idx >= n || e.distribution.get(idx).copied() != Some(d as u32) {
            continue;
        }
        sources[idx] = Some(if copy.inlined {
            ShardSource::Inline(Bytes::from(copy.inline_data.clone()))
        } else {
            ShardSource::File {
                drive: set.drives[d].clone(),
                dir: keys::data_dir(&copy.data_dir),
            }
        });
    }
    Ok(ShardReader::new(
        erasure,
        u64::from(e.block_size.max(1)),
        sources,
    ))
}

/// What one drive's record change did: the record before and after it (`None`: absent), and the
/// data dirs it freed.
pub(crate) struct Changed {
    pub before: Option<Vec<u8>>,
    pub after: Option<Vec<u8>>,
    pub freed: Vec<String>,
    /// `after` has no versions left: a removal's tombstone, deleted once the change settles.
    pub tombstone: bool,
}

type RecordChange = Result<Changed, crate::drive::DriveError>;

/// Second phase of a change to `meta_key` on every drive of `set`. Below write quorum every drive
/// that changed gets its previous record back and `undo_paths` (new data) are removed everywhere,
/// so the previous version stays whole; at quorum a `pending` version is committed
/// ([`settle::commit`]) and then the data the change freed is removed. A commit that misses write
/// quorum fails the change but undoes nothing: the version may be read from then on, or settled
/// by heal as never acknowledged, and the data it replaced stays for either. Returns whether the
/// change missed a drive.
async fn settle_records(
    set: &ErasureSet,
    meta_key: &[u8],
    results: Vec<RecordChange>,
    undo_paths: &[String],
    pending: Option<settle::Pending<'_>>,
) -> ObjectResult<bool> {
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    for (r, d) in results.iter().zip(&set.drives) {
        if let Err(e) = r {
            tracing::warn!(drive = d.label(), error = %e, "drive write failed");
        }
    }
    if let Err(e) = set.require_write_quorum(&ok) {
        join_all(
            set.drives
                .iter()
                .zip(&results)
                .map(|(drive, r)| async move {
                    if let Ok(c) = r {
                        let undo = match &c.before {
                            Some(b) => MetaOp::Put(meta_key.to_vec(), b.clone()),
                            None => MetaOp::Delete(meta_key.to_vec()),
                        };
                        // Only while the drive still holds this change: a record another node
                        // wrote since (an acknowledged write) is not rolled back over.
                        let expect = MetaOp::Expect(meta_key.to_vec(), c.after.clone());
                        match drive.apply(vec![expect, undo]).await {
                            Ok(()) | Err(crate::drive::DriveError::Conflict) => {}
                            Err(e) => {
                                tracing::warn!(drive = drive.label(), error = %e, "rollback failed")
                            }
                        }
                    }
                    for p in undo_paths {
                        let _ = drive.delete(p).await;
                    }
                }),
        )
        .await;
        return Err(e);
    }
    let mut missed = ok.contains(&false);
    if let Some(p) = pending {
        let committed = settle::commit(set, meta_key, p, &results).await;
        set.require_write_quorum(&committed)?;
        missed |= committed.contains(&false);
    }
    join_all(set.drives.iter().zip(results).map(|(drive, r)| async move {
        let Ok(c) = r else { return };
        if let Some(after) = c.after.filter(|_| c.tombstone) {
            let ops = vec![
                MetaOp::Expect(meta_key.to_vec(), Some(after)),
                MetaOp::Delete(meta_key.to_vec()),
            ];
            match drive.apply(ops).await {
                Ok(()) | Err(crate::drive::DriveError::Conflict) => {}
                Err(e) => tracing::warn!(drive = drive.label(), error = %e, "tombstone kept"),
            }
        }
        for dir in c.freed {
            if let Err(e) = retire::retire(drive.as_ref(), &keys::data_dir(&dir)).await {
                tracing::warn!(drive = drive.label(), error = %e, "old data not retired");
            }
        }
    }))
    .await;
    Ok(missed)
}

/// Changes a drive's record of a key with `change`, applied only over the record it read (the
/// per-key lock is per node, so another node may write in between: a client of another node, a
/// replica arriving from a peer site, a replication-status update) and redone over the newer
/// record on a conflict; `extra` ops join the same batch. Returns the record before and after,
/// and what `change` returned.
async fn swap_record<T>(
    drive: &dyn Drive,
    key: &[u8],
    extra: &[MetaOp],
    mut change: impl FnMut(&mut ObjectRecord) -> T,
) -> Result<(Option<Vec<u8>>, Vec<u8>, T), crate::drive::DriveError> {
    let mut attempts = 0;
    loop {
        let before = drive.get(key).await?;
        let mut record = before
            .as_deref()
            .map(set::decode_record)
            .transpose()?
            .unwrap_or_default();
        let out = change(&mut record);
        let after = record.encode_to_vec();
        let mut ops = Vec::with_capacity(2 + extra.len());
        ops.push(MetaOp::Expect(key.to_vec(), before.clone()));
        ops.push(MetaOp::Put(key.to_vec(), after.clone()));
        ops.extend_from_slice(extra);
        match drive.apply(ops).await {
            Err(crate::drive::DriveError::Conflict) if attempts < COMMIT_RETRIES => attempts += 1,
            Err(e) => return Err(e),
            Ok(()) => return Ok((before, after, out)),
        }
    }
}

/// First phase of recording `v` on one drive (`extra` ops in the same batch): the data of what
/// it replaces is kept until the change settles.
async fn put_version(
    drive: &dyn Drive,
    meta_key: &[u8],
    extra: &[MetaOp],
    v: ObjectVersion,
) -> RecordChange {
    let (before, after, freed) = swap_record(drive, meta_key, extra, |record| {
        replace_version(record, v.clone())
    })
    .await?;
    Ok(Changed {
        before,
        after: Some(after),
        freed,
        tombstone: false,
    })
}

/// How often one drive's record update is redone after another node changed the record.
const COMMIT_RETRIES: usize = 16;

/// Puts `v` first in the record, moving any version with the same id to `replaced`; returns the
/// data dirs freed once the change settles.
fn replace_version(record: &mut ObjectRecord, v: ObjectVersion) -> Vec<String> {
    let (same, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut record.versions)
        .into_iter()
        .partition(|old| old.version_id == v.version_id);
    let freed = same
        .iter()
        .filter(|old| !old.data_dir.is_empty() && old.data_dir != v.data_dir)
        .map(|old| old.data_dir.clone())
        .collect();
    record.versions = kept;
    record.replaced = same;
    let at = replica::position(record, &v);
    record.versions.insert(at, v);
    freed
}

/// Best-effort removal of a failed write's temp files.
async fn cleanup(set: &ErasureSet, tmp: &str) {
    futures::future::join_all(set.drives.iter().map(|d| d.delete(tmp))).await;
}

#[cfg(test)]
pub(crate) mod tests;
