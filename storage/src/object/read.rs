//! Reading erasure-coded shards back: any `data` verified shards of a block rebuild it. Data shards
//! are read first (no decoding needed); a missing, short or bitrotted shard is swapped for a parity
//! shard and remembered, so the object can be healed afterwards.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use futures::Stream;

use cairn_proto::meta::PartInfo;

use super::error::{ObjectError, ObjectResult};
use super::keys;
use super::retire::retired_path;
use crate::bitrot::{self, HASH_LEN};
use crate::drive::{Drive, DriveError};
use crate::erasure::Erasure;

/// Where one shard of a version can be read.
#[derive(Clone)]
pub enum ShardSource {
    File { drive: Arc<dyn Drive>, dir: String },
    Inline(Bytes),
}

/// Blocks of a part held in memory at once while streaming.
const BATCH_BLOCKS: u64 = 4;

pub struct ShardReader {
    pub erasure: Erasure,
    pub block_size: u64,
    /// Per shard index; `None` where the drive does not hold this version.
    pub sources: Vec<Option<ShardSource>>,
    /// Per shard index: found missing or damaged during this read.
    pub bad: Vec<bool>,
}

impl ShardReader {
    pub fn new(erasure: Erasure, block_size: u64, sources: Vec<Option<ShardSource>>) -> Self {
        let bad = sources.iter().map(Option::is_none).collect();
        Self {
            erasure,
            block_size,
            sources,
            bad,
        }
    }

    pub fn damaged(&self) -> bool {
        self.bad.iter().any(|b| *b)
    }

    pub fn block_len(&self, part_size: u64, block: u64) -> usize {
        let start = block * self.block_size;
        usize::try_from(part_size.saturating_sub(start).min(self.block_size)).unwrap_or(0)
    }

    pub fn blocks(&self, part_size: u64) -> u64 {
        part_size.div_ceil(self.block_size)
    }

    /// Reads blocks `first..=last` of `part`: per block, the shards (at least `data` of them present).
    pub async fn read_blocks(
        &mut self,
        part: &PartInfo,
        first: u64,
        last: u64,
    ) -> ObjectResult<Vec<Vec<Option<Vec<u8>>>>> {
        let n = self.erasure.total_shards();
        let k = self.erasure.data_shards();
        let full = self
            .erasure
            .shard_len(usize::try_from(self.block_size).unwrap_or(usize::MAX));
        let lens: Vec<usize> = (first..=last)
            .map(|b| self.erasure.shard_len(self.block_len(part.size, b)))
            .collect();
        let offset = first * (HASH_LEN + full) as u64;
        let total = bitrot::stored_len(lens.iter().copied());
        let file = keys::part_file(part.number);

        let mut got: Vec<Option<Vec<Vec<u8>>>> = vec![None; n];
        let mut candidates = (0..n)
            .filter(|i| !self.bad[*i])
            .collect::<Vec<_>>()
            .into_iter();
        let mut good = 0;
        while good < k {
            let batch: Vec<usize> = candidates.by_ref().take(k - good).collect();
            if batch.is_empty() {
                return Err(if self.sources.iter().filter(|s| s.is_some()).count() < k {
                    ObjectError::ReadQuorum {
                        have: good,
                        need: k,
                    }
                } else {
                    ObjectError::Unrecoverable
                });
            }
            let reads = join_all(batch.iter().map(|&i| {
                let src = self.sources[i].clone();
                let (file, lens) = (&file, &lens);
                async move { fetch_verified(src.as_ref()?, file, offset, total, lens).await }
            }))
            .await;
            for (&i, chunks) in batch.iter().zip(reads) {
                match chunks {
                    Some(chunks) => {
                        got[i] = Some(chunks);
                        good += 1;
                    }
                    None => self.bad[i] = true,
                }
            }
        }

        let mut out = Vec::with_capacity(lens.len());
        for b in 0..lens.len() {
            let mut shards: Vec<Option<Vec<u8>>> = got
                .iter_mut()
                .map(|g| g.as_mut().map(|chunks| std::mem::take(&mut chunks[b])))
                .collect();
            if shards[..k].iter().any(Option::is_none) {
                self.erasure.reconstruct(&mut shards, false)?;
            }
            out.push(shards);
        }
        Ok(out)
    }
}

/// Why a shard range could not be read: gone or corrupt for good, or its drive not answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardFault {
    Damaged,
    Unavailable,
}

/// Reads `total` stored bytes of `file` at `offset` and splits them into verified chunks of `lens`;
/// `None` when the shard is missing, short or damaged.
pub async fn fetch_verified(
    src: &ShardSource,
    file: &str,
    offset: u64,
    total: usize,
    lens: &[usize],
) -> Option<Vec<Vec<u8>>> {
    fetch_checked(src, file, offset, total, lens).await.ok()
}

/// [`fetch_verified`], telling a missing or damaged shard from a drive that did not answer.
pub async fn fetch_checked(
    src: &ShardSource,
    file: &str,
    offset: u64,
    total: usize,
    lens: &[usize],
) -> Result<Vec<Vec<u8>>, ShardFault> {
    let stored = match src {
        ShardSource::File { drive, dir } => {
            let path = format!("{dir}/{file}");
            let mut read = drive.read_file(&path, offset, total).await;
            // Freed by a change that settled after this read began: retired, not gone.
            if let (Err(DriveError::NotFound), Some(retired)) = (&read, retired_path(&path)) {
                read = drive.read_file(&retired, offset, total).await;
            }
            read.map_err(|e| match e {
                DriveError::NotFound => ShardFault::Damaged,
                _ => ShardFault::Unavailable,
            })?
        }
        ShardSource::Inline(b) => {
            let start = usize::try_from(offset).map_err(|_| ShardFault::Damaged)?;
            b.get(start..start + total)
                .map(Bytes::copy_from_slice)
                .ok_or(ShardFault::Damaged)?
        }
    };
    split_verified(&stored, lens).ok_or(ShardFault::Damaged)
}

/// Splits a stored shard range into its verified chunks; `None` on any damage.
fn split_verified(stored: &[u8], lens: &[usize]) -> Option<Vec<Vec<u8>>> {
    let mut at = 0;
    let mut out = Vec::with_capacity(lens.len());
    for &len in lens {
        let chunk = bitrot::verify_block(stored.get(at..)?, len).ok()?;
        out.push(chunk.to_vec());
        at += HASH_LEN + len;
    }
    Some(out)
}

/// Streams bytes `pos..end` of a version, a batch of blocks at a time.
pub struct ObjectReader {
    shards: ShardReader,
    parts: Vec<PartInfo>,
    pos: u64,
    end: u64,
    on_damage: Option<Box<dyn FnOnce() + Send>>,
}

impl ObjectReader {
    pub fn new(
        shards: ShardReader,
        parts: Vec<PartInfo>,
        pos: u64,
        end: u64,
        on_damage: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Self {
            shards,
            parts,
            pos,
            end,
            on_damage: Some(on_damage),
        }
    }

    pub async fn next_chunk(&mut self) -> Option<ObjectResult<Bytes>> {
        if self.pos >= self.end {
            return None;
        }
        let mut part_start = 0u64;
        let mut found = None;
        for p in &self.parts {
            if self.pos < part_start + p.size {
                found = Some(p.clone());
                break;
            }
            part_start += p.size;
        }
        let Some(part) = found else {
            return Some(Err(ObjectError::CorruptMeta(
                "range beyond the parts".into(),
            )));
        };
        let bs = self.shards.block_size;
        let off = self.pos - part_start;
        let want_end = (self.end - part_start).min(part.size);
        let first = off / bs;
        let last = ((want_end - 1) / bs).min(first + BATCH_BLOCKS - 1);
        let blocks = match self.shards.read_blocks(&part, first, last).await {
            Ok(b) => b,
            Err(e) => {
                self.pos = self.end;
                return Some(Err(e));
            }
        };
        let mut out = Vec::with_capacity(((last - first + 1) * bs) as usize);
        for (i, shards) in blocks.iter().enumerate() {
            let b = first + i as u64;
            let len = self.shards.block_len(part.size, b);
            let block_start = b * bs;
            let mut block = Vec::with_capacity(len);
            if let Err(e) = self.shards.erasure.join(shards, len, &mut block) {
                self.pos = self.end;
                return Some(Err(e.into()));
            }
            let from = usize::try_from(off.saturating_sub(block_start))
                .unwrap_or(0)
                .min(len);
            let to = usize::try_from(want_end.saturating_sub(block_start))
                .unwrap_or(0)
                .min(len);
            out.extend_from_slice(&block[from..to]);
        }
        self.pos += out.len() as u64;
        Some(Ok(Bytes::from(out)))
    }

    /// Fused: callers that peek at the first chunk may poll again after the end.
    pub fn into_stream(self) -> impl Stream<Item = ObjectResult<Bytes>> + Send {
        futures::StreamExt::fuse(futures::stream::unfold(self, |mut r| async move {
            r.next_chunk().await.map(|c| (c, r))
        }))
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        if self.shards.damaged() {
            if let Some(f) = self.on_damage.take() {
                f();
            }
        }
    }
}
