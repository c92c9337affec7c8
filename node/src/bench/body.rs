//! Request bodies: unique pseudo-random object data streamed from a small per-worker pool of reusable buffers.
//!
//! Each PUT body is a xorshift stream seeded per request, so no two objects share content (nothing downstream
//! can deduplicate or compress it away), and generating it costs far less than sending it. A body is produced
//! chunk by chunk into buffers borrowed from the worker's [`BufPool`]; a chunk goes back to the pool as soon as
//! the HTTP connection has written it, so a worker holds only a few chunk buffers however large the objects are.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Size of one generated chunk (the unit handed to the connection).
pub const CHUNK_SIZE: usize = 256 << 10;

/// Idle buffers a pool keeps; extra ones are freed.
const MAX_IDLE_BUFFERS: usize = 4;

/// A per-worker pool of chunk buffers, shared with the chunks in flight so they can return their buffer.
#[derive(Debug, Clone, Default)]
pub struct BufPool {
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BufPool {
    pub fn new() -> Self {
        Self::default()
    }

    fn take(&self) -> Vec<u8> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.pop().unwrap_or_else(|| vec![0; CHUNK_SIZE])
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_BUFFERS {
            idle.push(buf);
        }
    }

    /// Buffers currently idle in the pool (for tests).
    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A filled chunk; dropping it (when hyper is done with the bytes) returns the buffer to its pool.
struct PooledChunk {
    buf: Vec<u8>,
    len: usize,
    pool: BufPool,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// splitmix64: turns any seed (even 0 or consecutive integers) into well-mixed, non-zero-ish state words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Four independent xorshift64 lanes: cheap, and the lanes run in parallel on a superscalar CPU.
#[derive(Debug, Clone)]
pub struct Xorshift4 {
    lanes: [u64; 4],
}

impl Xorshift4 {
    pub fn new(seed: u64) -> Self {
        let mut s = seed;
        let mut lanes = [0u64; 4];
        for lane in &mut lanes {
            // xorshift must never hold zero.
            *lane = splitmix64(&mut s) | 1;
        }
        Self { lanes }
    }

    #[inline]
    fn next_block(&mut self) -> [u64; 4] {
        for x in &mut self.lanes {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
        }
        self.lanes
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut blocks = out.chunks_exact_mut(32);
        for block in &mut blocks {
            let words = self.next_block();
            for (dst, word) in block.chunks_exact_mut(8).zip(words) {
                dst.copy_from_slice(&word.to_le_bytes());
            }
        }
        let tail = blocks.into_remainder();
        if !tail.is_empty() {
            let words = self.next_block();
            let mut bytes = [0u8; 32];
            for (dst, word) in bytes.chunks_exact_mut(8).zip(words) {
                dst.copy_from_slice(&word.to_le_bytes());
            }
            tail.copy_from_slice(&bytes[..tail.len()]);
        }
    }

    /// A small random number for workload decisions.
    pub fn next_u64(&mut self) -> u64 {
        self.next_block()[0]
    }
}

/// A generated object body of a fixed length.
#[derive(Debug)]
pub struct GenBody {
    remaining: u64,
    rng: Xorshift4,
    pool: BufPool,
}

impl GenBody {
    pub fn new(len: u64, seed: u64, pool: BufPool) -> Self {
        Self {
            remaining: len,
            rng: Xorshift4::new(seed),
            pool,
        }
    }
}

impl Body for GenBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(this.remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
        let mut buf = this.pool.take();
        this.rng.fill(&mut buf[..len]);
        this.remaining -= len as u64;
        let chunk = PooledChunk {
            buf,
            len,
            pool: this.pool.clone(),
        };
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_owner(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Any request body the benchmark sends.
#[derive(Debug)]
pub enum ReqBody {
    Empty,
    Full(Option<Bytes>),
    Generated(GenBody),
}

impl ReqBody {
    pub fn content_length(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Full(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Self::Generated(g) => g.remaining,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Self::Empty => Poll::Ready(None),
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Generated(g) => Pin::new(g).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(b) => b.is_none(),
            Self::Generated(g) => g.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.content_length())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn collect(body: GenBody) -> Vec<u8> {
        let collected = body.collect().await.unwrap_or_else(|never| match never {});
        collected.to_bytes().to_vec()
    }

    #[tokio::test]
    async fn generates_exact_lengths_and_returns_buffers() {
        let pool = BufPool::new();
        for len in [
            0u64,
            1,
            31,
            32,
            33,
            CHUNK_SIZE as u64,
            CHUNK_SIZE as u64 + 5,
            3 * CHUNK_SIZE as u64,
        ] {
            let body = GenBody::new(len, 7, pool.clone());
            assert_eq!(body.size_hint().exact(), Some(len));
            assert_eq!(collect(body).await.len() as u64, len);
        }
        // Every chunk was dropped after collection: its buffer is back in the pool (capped).
        assert!(pool.idle_len() >= 1 && pool.idle_len() <= MAX_IDLE_BUFFERS);
    }

    #[tokio::test]
    async fn bodies_are_unique_per_seed_and_reproducible() {
        let pool = BufPool::new();
        let len = CHUNK_SIZE as u64 + 100;
        let a = collect(GenBody::new(len, 1, pool.clone())).await;
        let b = collect(GenBody::new(len, 2, pool.clone())).await;
        let a2 = collect(GenBody::new(len, 1, pool.clone())).await;
        assert_ne!(a, b);
        assert_eq!(a, a2);
        // The stream continues across chunk boundaries instead of repeating the first chunk.
        assert_ne!(a[..100], a[CHUNK_SIZE..]);
        // Not trivially compressible: no long runs of a single byte value.
        assert!(a.windows(8).all(|w| w.iter().any(|&x| x != w[0])));
    }

    #[test]
    fn fill_is_a_single_stream() {
        let mut whole = vec![0u8; 100];
        Xorshift4::new(42).fill(&mut whole);
        let mut parts = vec![0u8; 100];
        let mut rng = Xorshift4::new(42);
        rng.fill(&mut parts[..64]);
        rng.fill(&mut parts[64..]);
        assert_eq!(whole, parts);
    }
}
