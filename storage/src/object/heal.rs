//! Healing: rebuilding missing or damaged shards from the healthy ones. Triggered by reads that hit
//! damage, by `cairn admin heal`, and at start-up when a drive comes back empty.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::join_all;
use prost::Message;
use serde::{Deserialize, Serialize};

use cairn_proto::meta::{ObjectRecord, ObjectVersion, PartInfo};

use super::error::{ObjectError, ObjectResult};
use super::read::{fetch_checked, ShardFault, ShardReader, ShardSource};
use super::set::{decode_record, ErasureSet};
use super::{keys, quorum, replace_version, settle, shard_reader, swap_record, ObjectLayer};
use crate::bitrot::{self, HASH_LEN};
use crate::drive::{DriveError, MetaOp, ShardWriter};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealSummary {
    pub objects_scanned: u64,
    pub objects_healed: u64,
    pub shards_written: u64,
    /// Records removed: failed writes' leftovers, and versions lost beyond their parity (those
    /// are also counted apart, in `ObjectLayer::lost_versions_removed`).
    pub dangling_removed: u64,
    /// Shards heal rebuilt but could not write (their drive did not answer): a retry may.
    pub shards_unwritten: u64,
    pub errors: u64,
}

impl HealSummary {
    fn add(&mut self, o: &HealSummary) {
        self.objects_scanned += o.objects_scanned;
        self.objects_healed += o.objects_healed;
        self.shards_written += o.shards_written;
        self.dangling_removed += o.dangling_removed;
        self.shards_unwritten += o.shards_unwritten;
        self.errors += o.errors;
    }
}

/// What full heals ([`ObjectLayer::heal_all`]) on this node have done since start-up, object by
/// object, so that `cairn admin heal` can show how far its call got while it runs. A full heal
/// has no total to show against: it walks the drives' records without counting them first.
#[derive(Debug, Default)]
pub struct HealProgress {
    running: AtomicU64,
    objects_scanned: AtomicU64,
    objects_healed: AtomicU64,
    shards_written: AtomicU64,
    errors: AtomicU64,
}

/// [`HealProgress`] at one moment (`GET /cairn/admin/v1/heal/status`).
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealProgressSnapshot {
    /// Full heals running on this node now (admin calls and background heals).
    pub running: u64,
    pub objects_scanned: u64,
    pub objects_healed: u64,
    pub shards_written: u64,
    pub errors: u64,
}

impl HealProgressSnapshot {
    /// What was done between `earlier` and this snapshot (`running` is this one's).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            running: self.running,
            objects_scanned: self.objects_scanned.saturating_sub(earlier.objects_scanned),
            objects_healed: self.objects_healed.saturating_sub(earlier.objects_healed),
            shards_written: self.shards_written.saturating_sub(earlier.shards_written),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

impl HealProgress {
    pub fn snapshot(&self) -> HealProgressSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HealProgressSnapshot {
            running: get(&self.running),
            objects_scanned: get(&self.objects_scanned),
            objects_healed: get(&self.objects_healed),
            shards_written: get(&self.shards_written),
            errors: get(&self.errors),
        }
    }

    fn add(&self, s: &HealSummary) {
        self.objects_scanned
            .fetch_add(s.objects_scanned, Ordering::Relaxed);
        self.objects_healed
            .fetch_add(s.objects_healed, Ordering::Relaxed);
        self.shards_written
            .fetch_add(s.shards_written, Ordering::Relaxed);
        self.errors.fetch_add(s.errors, Ordering::Relaxed);
    }
}

/// Counts a full heal as running while it lives (a cancelled heal stops counting too).
struct Running<'a>(&'a AtomicU64);

impl<'a> Running<'a> {
    fn start(n: &'a AtomicU64) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How old a record below quorum must be before heal removes it as a failed write's leftover:
/// far longer than any write takes to reach quorum, with room for clock skew between nodes.
const DANGLING_GRACE_NS: i64 = 3_600 * 1_000_000_000;

/// Stored lengths of every block of a part's shard.
fn shard_lens(r: &ShardReader, part: &PartInfo) -> Vec<usize> {
    (0..r.blocks(part.size))
        .map(|b| r.erasure.shard_len(r.block_len(part.size, b)))
        .collect()
}

/// Does shard `src` hold every block of every part intact, and if not, is that for good?
async fn shard_check(
    r: &ShardReader,
    src: &ShardSource,
    parts: &[PartInfo],
) -> Result<(), ShardFault> {
    for part in parts {
        let lens = shard_lens(r, part);
        let total = bitrot::stored_len(lens.iter().copied());
        fetch_checked(src, &keys::part_file(part.number), 0, total, &lens).await?;
    }
    Ok(())
}

impl ObjectLayer {
    /// Checks every shard of the key's latest version and rewrites the missing or damaged ones.
    pub async fn heal_object(&self, bucket: &str, key: &str) -> ObjectResult<HealSummary> {
        let _guard = self.locks.lock(self.key_hash(bucket, key)).await;
        let (set, dist) = self.place(bucket, key);
        let meta_key = keys::object(bucket, key);
        let mut records = set.read_records(&meta_key).await;
        let mut summary = HealSummary {
            objects_scanned: 1,
            ..Default::default()
        };
        let removed = self
            .remove_unacknowledged(set, &meta_key, &records, bucket, key)
            .await;
        if removed > 0 {
            summary.dangling_removed = removed;
            records = set.read_records(&meta_key).await;
        }
        // Pending copies of the resolved version are committed first, and the records read again.
        let mut committed = false;
        let resolved = loop {
            match quorum::resolve(&records, None, set.read_quorum, set.write_quorum) {
                Ok(r) if !committed && commit_copies(set, &meta_key, &r).await => {
                    committed = true;
                    records = set.read_records(&meta_key).await;
                }
                Ok(r) => break r,
                Err(ObjectError::NoSuchKey) => {
                    summary.dangling_removed +=
                        remove_dangling(set, &meta_key, &records, self.clock.now_ns()).await;
                    return Ok(summary);
                }
                Err(e) => return Err(e),
            }
        };
        let version = resolved.version.clone();
        // A delete marker has no shards (older versions are not healed yet).
        if version.delete_marker {
            return Ok(summary);
        }
        let dist = version
            .erasure
            .as_ref()
            .map(|e| e.distribution.clone())
            .unwrap_or(dist);
        let stored = self.stored.stored_parts(&version);
        let mut reader = shard_reader(set, &resolved)?;
        let n = reader.erasure.total_shards();

        // Which shards need rewriting: absent, or failing verification.
        let checks = join_all((0..n).map(|i| {
            let src = reader.sources[i].clone();
            let (r, parts) = (&reader, &stored);
            async move {
                match src {
                    Some(s) => shard_check(r, &s, parts).await,
                    // The drive's record lacks this version (or the drive did not answer).
                    None => Err(ShardFault::Damaged),
                }
            }
        }))
        .await;
        let targets: Vec<usize> = (0..n).filter(|i| checks[*i].is_err()).collect();
        if targets.is_empty() {
            return Ok(summary);
        }
        // Fewer intact shards than the code needs, with every drive answering: no later heal can
        // rebuild this version, and left in place it makes the key unreadable for good. Like
        // MinIO's dangling-object purge, it goes, and the key shows what it had before it.
        let intact = n - targets.len();
        let for_good = records.iter().all(Result::is_ok)
            && checks.iter().all(|c| *c != Err(ShardFault::Unavailable));
        // The one removal that does not ask `retention` (the data is gone whatever its lock
        // says): logged and counted (`admin info`) so that it is never silent.
        if intact < reader.erasure.data_shards() && for_good {
            tracing::warn!(
                bucket,
                key,
                version_id = %version.version_id,
                intact,
                lock_mode = %version.lock_mode,
                legal_hold = version.legal_hold,
                "version lost beyond its parity; removing it"
            );
            let removed = remove_seen(set, &meta_key, &records, |rec| {
                rec.versions.retain(|v| !quorum::same_version(v, &version));
            })
            .await;
            if removed > 0 {
                tracing::warn!(bucket, key, version_id = %version.version_id, "lost version removed");
                self.lost_versions_removed
                    .fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
            }
            summary.dangling_removed = removed;
            return Ok(summary);
        }
        for &t in &targets {
            reader.sources[t] = None;
            reader.bad[t] = true;
        }

        // What each drive held when the heal decided: a drive whose record changed since (a write
        // or delete served by another node, which this node's key lock does not exclude) is left
        // alone, so a heal never puts back an older version over a newer one.
        let seen: Vec<Option<ObjectRecord>> = records
            .iter()
            .map(|r| r.as_ref().ok().cloned().flatten())
            .collect();
        let tmp = keys::tmp_dir(&self.new_id());
        let result = self
            .rebuild(
                set,
                &dist,
                &version,
                &mut reader,
                &targets,
                &tmp,
                &meta_key,
                &seen,
            )
            .await;
        futures::future::join_all(
            targets
                .iter()
                .map(|&t| set.drives[dist[t] as usize].delete(&tmp)),
        )
        .await;
        let (written, unwritten) = result?;
        summary.shards_written = written as u64;
        summary.shards_unwritten = unwritten as u64;
        summary.objects_healed = u64::from(written > 0);
        Ok(summary)
    }

    /// Rebuilds shards `targets` of `version` block by block and commits them on their drives;
    /// returns how many were written and how many failed to be (a drive that did not answer).
    #[allow(clippy::too_many_arguments)]
    async fn rebuild(
        &self,
        set: &ErasureSet,
        dist: &[u32],
        version: &ObjectVersion,
        reader: &mut ShardReader,
        targets: &[usize],
        tmp: &str,
        meta_key: &[u8],
        seen: &[Option<ObjectRecord>],
    ) -> ObjectResult<(usize, usize)> {
        let drive_of = |t: usize| set.drives[dist[t] as usize].clone();
        let mut inline: Vec<Vec<u8>> = vec![Vec::new(); targets.len()];
        let mut healthy = vec![true; targets.len()];
        for part in self.stored.stored_parts(version).iter() {
            let mut writers: Vec<Option<Box<dyn ShardWriter>>> = Vec::new();
            if !version.inlined {
                for &t in targets {
                    let path = format!("{tmp}/{}", keys::part_file(part.number));
                    writers.push(drive_of(t).create_file(&path).await.ok());
                }
            }
            let blocks = reader.blocks(part.size);
            let mut b = 0;
            while b < blocks {
                let last = (b + 3).min(blocks - 1);
                let mut got = reader.read_blocks(part, b, last).await?;
                for shards in got.iter_mut() {
                    reader.erasure.reconstruct(shards, true)?;
                    for (j, &t) in targets.iter().enumerate() {
                        let chunk = shards[t].as_deref().unwrap_or_default();
                        if version.inlined {
                            bitrot::append_block(&mut inline[j], chunk);
                        } else if let Some(w) = writers[j].as_mut() {
                            let mut buf = Vec::with_capacity(HASH_LEN + chunk.len());
                            bitrot::append_block(&mut buf, chunk);
                            if w.write(Bytes::from(buf)).await.is_err() {
                                writers[j] = None;
                            }
                        }
                    }
                }
                b = last + 1;
            }
            for (j, w) in writers.into_iter().enumerate() {
                let ok = match w {
                    Some(w) => w.finish().await.is_ok(),
                    None => false,
                };
                healthy[j] &= ok;
            }
        }

        let mut written = 0;
        let mut unwritten = healthy.iter().filter(|h| !**h).count();
        for (j, &t) in targets.iter().enumerate().filter(|(j, _)| healthy[*j]) {
            let drive = drive_of(t);
            let mut v = version.clone();
            if let Some(e) = v.erasure.as_mut() {
                e.shard_index = t as u32;
            }
            if version.inlined {
                v.inline_data = std::mem::take(&mut inline[j]);
            }
            let res: Result<bool, DriveError> = async {
                let raw = drive.get(meta_key).await?;
                let current = raw.as_deref().map(decode_record).transpose()?;
                if current != seen.get(dist[t] as usize).cloned().flatten() {
                    return Ok(false);
                }
                // Never put an older version over a newer one: a newer record below quorum may
                // be a write another node is landing, which reaches quorum moments later. Times
                // are hybrid logical clock stamps, later than everything on the key their writer
                // saw (`ObjectLayer::stamp`), so "newer" holds however skewed the clocks were.
                if current.as_ref().is_some_and(|r| {
                    r.versions
                        .iter()
                        .any(|x| x.mod_time_ns > version.mod_time_ns)
                }) {
                    return Ok(false);
                }
                if !version.inlined {
                    let dir = keys::data_dir(&version.data_dir);
                    for part in &version.parts {
                        let f = keys::part_file(part.number);
                        drive
                            .rename(&format!("{tmp}/{f}"), &format!("{dir}/{f}"))
                            .await?;
                    }
                }
                let mut record = current.unwrap_or_default();
                let freed = replace_version(&mut record, v);
                // Conditional on the record just read: a write served by another node in
                // between wins, and this heal leaves the drive to the next pass.
                match drive
                    .apply(vec![
                        MetaOp::Expect(meta_key.to_vec(), raw),
                        MetaOp::Put(meta_key.to_vec(), record.encode_to_vec()),
                    ])
                    .await
                {
                    Err(DriveError::Conflict) => return Ok(false),
                    r => r?,
                }
                for old in freed {
                    drive.delete(&keys::data_dir(&old)).await?;
                }
                Ok(true)
            }
            .await;
            match res {
                Ok(true) => written += 1,
                Ok(false) => {
                    tracing::debug!(
                        drive = drive.label(),
                        "record changed while healing; left alone"
                    )
                }
                Err(e) => {
                    unwritten += 1;
                    tracing::warn!(drive = drive.label(), error = %e, "heal write failed")
                }
            }
        }
        Ok((written, unwritten))
    }

    /// Heals every object of the given buckets on every set.
    pub async fn heal_all(&self, buckets: &[String]) -> HealSummary {
        let _running = Running::start(&self.heal_progress.running);
        let mut summary = HealSummary::default();
        for bucket in buckets {
            for set in &self.sets {
                let prefix = keys::bucket_objects(bucket);
                let mut cursor = prefix.clone();
                loop {
                    let rows =
                        join_all(set.drives.iter().map(|d| d.scan(&prefix, &cursor, 1000))).await;
                    let mut keys_seen = BTreeSet::new();
                    let mut bound: Option<Vec<u8>> = None;
                    for r in rows.iter().flatten() {
                        if r.len() >= 1000 {
                            if let Some((k, _)) = r.last() {
                                bound =
                                    Some(bound.map_or(k.clone(), |b: Vec<u8>| b.min(k.clone())));
                            }
                        }
                        keys_seen.extend(r.iter().map(|(k, _)| k.clone()));
                    }
                    for k in keys_seen
                        .iter()
                        .filter(|k| bound.as_ref().is_none_or(|b| *k <= b))
                    {
                        let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                        let one = match self.heal_object(bucket, &key).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(bucket, key, error = %e, "heal failed");
                                HealSummary {
                                    objects_scanned: 1,
                                    errors: 1,
                                    ..Default::default()
                                }
                            }
                        };
                        summary.add(&one);
                        self.heal_progress.add(&one);
                    }
                    match bound {
                        Some(b) => cursor = b,
                        None => break,
                    }
                }
            }
        }
        summary
    }
}

impl ObjectLayer {
    /// Removes the versions of a key that were never acknowledged ([`settle::unacknowledged`])
    /// once their deadline and the margin for clock skew have passed: no drive takes a commit
    /// of them any more, and left in place they would stand over the key's versions (heal never
    /// puts an older version over a newer one). Their lock is not asked: it protects
    /// acknowledged versions only. Returns 1 if any drive changed.
    async fn remove_unacknowledged(
        &self,
        set: &ErasureSet,
        meta_key: &[u8],
        records: &[Result<Option<ObjectRecord>, DriveError>],
        bucket: &str,
        key: &str,
    ) -> u64 {
        let now = self.clock.now_ns();
        let expired: Vec<ObjectVersion> =
            settle::unacknowledged(records, set.read_quorum, set.write_quorum)
                .into_iter()
                .filter(|v| now > v.pending_until_ns.saturating_add(settle::SETTLE_MARGIN_NS))
                .collect();
        if expired.is_empty() {
            return 0;
        }
        for v in &expired {
            tracing::warn!(
                bucket,
                key,
                version_id = %v.version_id,
                lock_mode = %v.lock_mode,
                "removing a version that was never acknowledged"
            );
        }
        remove_seen(set, meta_key, records, |rec| {
            settle::take_out(rec, &expired)
        })
        .await
    }
}

/// Commits the copies of a resolved version still marked pending (its coordinator stopped
/// between the phases): it is readable, so it stays, and the marks must not make it look
/// unacknowledged once some of its drives are lost. A drive that fails is left for the next pass.
/// Returns whether any copy was pending.
async fn commit_copies(set: &ErasureSet, meta_key: &[u8], resolved: &quorum::Resolved) -> bool {
    let pending = resolved
        .copies
        .iter()
        .enumerate()
        .filter(|(_, c)| c.as_ref().is_some_and(|c| c.pending_until_ns != 0))
        .collect::<Vec<_>>();
    if pending.is_empty() {
        return false;
    }
    join_all(pending.into_iter().map(|(d, _)| {
        let drive = set.drives[d].clone();
        async move {
            let r = swap_record(drive.as_ref(), meta_key, &[], |rec| {
                settle::mark_committed(rec, &resolved.version)
            })
            .await;
            if let Err(e) = r {
                tracing::warn!(drive = drive.label(), error = %e, "pending copy not committed");
            }
        }
    }))
    .await;
    true
}

/// Deletes a key that exists on too few drives to ever be read (a write that never reached quorum).
async fn remove_dangling(
    set: &ErasureSet,
    meta_key: &[u8],
    records: &[Result<Option<ObjectRecord>, DriveError>],
    now_ns: i64,
) -> u64 {
    // A record below quorum may be a PUT that another node is landing right now: only records
    // older than the grace period are leftovers of a failed write.
    let stale: Vec<Result<Option<ObjectRecord>, DriveError>> = records
        .iter()
        .map(|r| match r {
            Ok(Some(rec))
                if rec
                    .versions
                    .iter()
                    .all(|v| now_ns.saturating_sub(v.mod_time_ns) >= DANGLING_GRACE_NS) =>
            {
                Ok(Some(rec.clone()))
            }
            _ => Ok(None),
        })
        .collect();
    remove_seen(set, meta_key, &stale, |rec| {
        rec.versions.clear();
        rec.replaced.clear();
    })
    .await
}

/// Applies `change` to each drive's record as `records` saw it, only where the drive still holds
/// exactly that record (a write since wins), deleting the record once no version is left and the
/// data of every version the change dropped. Returns 1 if any drive changed.
async fn remove_seen(
    set: &ErasureSet,
    meta_key: &[u8],
    records: &[Result<Option<ObjectRecord>, DriveError>],
    change: impl Fn(&mut ObjectRecord),
) -> u64 {
    let mut removed = 0;
    for (d, r) in records.iter().enumerate() {
        let Ok(Some(rec)) = r else { continue };
        let mut next = rec.clone();
        change(&mut next);
        if &next == rec && !next.versions.is_empty() {
            continue;
        }
        if next.versions.is_empty() {
            next.replaced.clear();
        }
        let drive = &set.drives[d];
        let Ok(Some(raw)) = drive.get(meta_key).await else {
            continue;
        };
        if decode_record(&raw).ok().as_ref() != Some(rec) {
            continue;
        }
        let write = if next.versions.is_empty() {
            MetaOp::Delete(meta_key.to_vec())
        } else {
            MetaOp::Put(meta_key.to_vec(), next.encode_to_vec())
        };
        let ops = vec![MetaOp::Expect(meta_key.to_vec(), Some(raw)), write];
        if drive.apply(ops).await.is_ok() {
            let kept: BTreeSet<&str> = next
                .versions
                .iter()
                .chain(&next.replaced)
                .map(|v| v.data_dir.as_str())
                .collect();
            let dropped: BTreeSet<&str> = rec
                .versions
                .iter()
                .chain(&rec.replaced)
                .map(|v| v.data_dir.as_str())
                .filter(|dir| !dir.is_empty() && !kept.contains(dir))
                .collect();
            for dir in dropped {
                let _ = drive.delete(&keys::data_dir(dir)).await;
            }
            removed = 1;
        }
    }
    removed
}
