//! Streaming an upload into erasure-coded, hashed shard files on a set's drives.
//!
//! The body is cut into blocks; while one block is encoded and written to every drive, the next is
//! read and hashed. Memory is a few blocks whatever the object size. Small bodies are not written
//! to files at all: their shards are returned to be inlined into the metadata.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};

use super::error::{ObjectError, ObjectResult};
use super::set::ErasureSet;
use super::stage::{BodyError, Checksummer};
use crate::bitrot;
use crate::drive::{Drive, ShardWriter};
use crate::erasure::{Erasure, BLOCK_SIZE};

/// Objects up to this size live inside their metadata records.
pub const INLINE_MAX: u64 = 128 * 1024;

pub struct WriteOutcome<C> {
    pub size: u64,
    pub md5: [u8; 16],
    /// The client's checksums (see [`Checksummer`]).
    pub checksums: C,
    /// Per shard index: did its drive take every block.
    pub ok: Vec<bool>,
    /// Per shard index, for inlined objects: the stored shard (`hash || chunk`).
    pub inline: Option<Vec<Vec<u8>>>,
}

/// Where shard `i` goes: `drives[i]` at `path`.
pub struct ShardTargets {
    pub drives: Vec<Arc<dyn Drive>>,
    pub path: String,
}

type Writers = Vec<Option<Box<dyn ShardWriter>>>;

async fn open_writers(t: &ShardTargets) -> Writers {
    join_all(t.drives.iter().map(|d| async move {
        match d.create_file(&t.path).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(drive = d.label(), error = %e, "cannot create shard file");
                None
            }
        }
    }))
    .await
}

/// Encodes one block and appends each shard to its writer; a failing writer is dropped.
async fn write_block(
    erasure: Erasure,
    mut writers: Writers,
    block: Vec<u8>,
) -> ObjectResult<Writers> {
    let shards = erasure.encode(&block)?;
    let futs = writers.iter_mut().zip(shards).map(|(w, shard)| async move {
        let Some(writer) = w.as_mut() else { return };
        let mut buf = Vec::with_capacity(bitrot::HASH_LEN + shard.len());
        bitrot::append_block(&mut buf, &shard);
        if let Err(e) = writer.write(Bytes::from(buf)).await {
            tracing::warn!(error = %e, "shard write failed");
            *w = None;
        }
    });
    join_all(futs).await;
    Ok(writers)
}

fn live(writers: &Writers) -> Vec<bool> {
    writers.iter().map(Option::is_some).collect()
}

/// Reads `body` to the end and stores it erasure-coded at `targets`. Fails early once fewer than
/// write quorum drives are left. Temp files of a failed write are the caller's to remove.
pub async fn write_stream<S, E, H>(
    set: &ErasureSet,
    targets: &ShardTargets,
    mut body: S,
    mut checksums: H,
    max_size: u64,
    allow_inline: bool,
    want_md5: bool,
) -> ObjectResult<WriteOutcome<H::Sums>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Into<BodyError>,
    H: Checksummer,
{
    let erasure = set.erasure;
    // MD5 is the costliest pass over the data; a sealed body's ETag comes from its plaintext.
    let mut md5 = want_md5.then(Md5::new);
    let mut size: u64 = 0;
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK_SIZE);
    let mut writers: Option<Writers> = None;
    let mut pending: Option<tokio::task::JoinHandle<ObjectResult<Writers>>> = None;

    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ObjectError::from(e.into()))?;
        size += chunk.len() as u64;
        if size > max_size {
            return Err(ObjectError::EntityTooLarge);
        }
        if let Some(m) = md5.as_mut() {
            m.update(&chunk);
        }
        checksums.update(&chunk);
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let take = rest.len().min(BLOCK_SIZE - block.len());
            block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if block.len() == BLOCK_SIZE {
                let full = std::mem::replace(&mut block, Vec::with_capacity(BLOCK_SIZE));
                let ws = match pending.take() {
                    Some(h) => join(h).await?,
                    None => match writers.take() {
                        Some(ws) => ws,
                        None => open_writers(targets).await,
                    },
                };
                set.require_write_quorum(&live(&ws))?;
                pending = Some(tokio::spawn(write_block(erasure, ws, full)));
            }
        }
    }
    let md5: [u8; 16] = md5.map(|m| m.finalize().into()).unwrap_or_default();
    let checksums = checksums.finalize();

    let opened = pending.is_some() || writers.is_some();
    if !opened && allow_inline && size <= INLINE_MAX {
        let shards = erasure.encode(&block)?;
        let inline = shards
            .iter()
            .map(|s| {
                let mut buf = Vec::with_capacity(bitrot::HASH_LEN + s.len());
                if !block.is_empty() {
                    bitrot::append_block(&mut buf, s);
                }
                buf
            })
            .collect();
        return Ok(WriteOutcome {
            size,
            md5,
            checksums,
            ok: vec![true; erasure.total_shards()],
            inline: Some(inline),
        });
    }

    let mut ws = match pending.take() {
        Some(h) => join(h).await?,
        None => match writers.take() {
            Some(ws) => ws,
            None => open_writers(targets).await,
        },
    };
    if !block.is_empty() {
        ws = write_block(erasure, ws, block).await?;
    }
    let finished = join_all(ws.into_iter().map(|w| async move {
        match w {
            Some(w) => w
                .finish()
                .await
                .map_err(|e| tracing::warn!(error = %e, "shard fsync failed"))
                .is_ok(),
            None => false,
        }
    }))
    .await;
    set.require_write_quorum(&finished)?;
    Ok(WriteOutcome {
        size,
        md5,
        checksums,
        ok: finished,
        inline: None,
    })
}

async fn join(h: tokio::task::JoinHandle<ObjectResult<Writers>>) -> ObjectResult<Writers> {
    h.await
        .map_err(|e| ObjectError::Drive(crate::drive::DriveError::Io(std::io::Error::other(e))))?
}
