//! Reed-Solomon erasure coding of object blocks (`reed-solomon-simd`) and the set layout rules.
//!
//! A block of up to `block_size` bytes becomes `data` shards of `shard_len(block)` bytes (the last
//! one zero-padded) plus `parity` recovery shards; any `data` of them rebuild the block.

pub mod layout;

use thiserror::Error;

/// Erasure block size: large enough for SIMD throughput, small enough to bound memory per request.
pub const BLOCK_SIZE: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum ErasureError {
    #[error("unsupported erasure geometry {data}+{parity}")]
    Geometry { data: usize, parity: usize },
    #[error("not enough shards to reconstruct: have {have}, need {need}")]
    TooFewShards { have: usize, need: usize },
    #[error("reed-solomon: {0}")]
    Codec(#[from] reed_solomon_simd::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    data: usize,
    parity: usize,
}

impl Erasure {
    pub fn new(data: usize, parity: usize) -> Result<Self, ErasureError> {
        let ok = data >= 1
            && data + parity <= 256
            && (parity == 0 || reed_solomon_simd::ReedSolomonEncoder::supports(data, parity));
        if !ok {
            return Err(ErasureError::Geometry { data, parity });
        }
        Ok(Self { data, parity })
    }

    pub fn data_shards(&self) -> usize {
        self.data
    }

    pub fn parity_shards(&self) -> usize {
        self.parity
    }

    pub fn total_shards(&self) -> usize {
        self.data + self.parity
    }

    /// Bytes of each shard for a block of `block_len` bytes (even, as the SIMD codec requires).
    pub fn shard_len(&self, block_len: usize) -> usize {
        let per = block_len.div_ceil(self.data);
        per + (per & 1)
    }

    /// Splits `block` into data shards and computes the parity shards.
    pub fn encode(&self, block: &[u8]) -> Result<Vec<Vec<u8>>, ErasureError> {
        let len = self.shard_len(block.len());
        let mut shards: Vec<Vec<u8>> = (0..self.data)
            .map(|i| {
                let start = (i * len).min(block.len());
                let end = ((i + 1) * len).min(block.len());
                let mut s = Vec::with_capacity(len);
                s.extend_from_slice(&block[start..end]);
                s.resize(len, 0);
                s
            })
            .collect();
        if self.parity > 0 && len > 0 {
            let parity = reed_solomon_simd::encode(self.data, self.parity, &shards)?;
            shards.extend(parity);
        } else {
            shards.extend((0..self.parity).map(|_| vec![0u8; len]));
        }
        Ok(shards)
    }

    /// Fills in the missing data shards, and the missing parity shards too when `parity` is set,
    /// from any `data` present ones.
    pub fn reconstruct(
        &self,
        shards: &mut [Option<Vec<u8>>],
        parity: bool,
    ) -> Result<(), ErasureError> {
        let have = shards.iter().filter(|s| s.is_some()).count();
        if have < self.data || shards.len() != self.total_shards() {
            return Err(ErasureError::TooFewShards {
                have,
                need: self.data,
            });
        }
        if have == shards.len() {
            return Ok(());
        }
        let data_missing = shards[..self.data].iter().any(Option::is_none);
        if data_missing {
            let original = shards[..self.data]
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)));
            let recovery = shards[self.data..]
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)));
            let restored = reed_solomon_simd::decode(self.data, self.parity, original, recovery)?;
            for (i, s) in restored {
                shards[i] = Some(s);
            }
        }
        if parity && shards[self.data..].iter().any(Option::is_none) {
            let data: Vec<&Vec<u8>> = shards[..self.data].iter().flatten().collect();
            let parity = reed_solomon_simd::encode(self.data, self.parity, data)?;
            for (i, p) in parity.into_iter().enumerate() {
                shards[self.data + i].get_or_insert(p);
            }
        }
        Ok(())
    }

    /// Appends the first `block_len` bytes held by the data shards to `out`.
    pub fn join(
        &self,
        shards: &[Option<Vec<u8>>],
        block_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ErasureError> {
        let mut left = block_len;
        for s in &shards[..self.data] {
            let s = s.as_ref().ok_or(ErasureError::TooFewShards {
                have: 0,
                need: self.data,
            })?;
            let n = left.min(s.len());
            out.extend_from_slice(&s[..n]);
            left -= n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn encode_join_roundtrip_all_sizes() {
        let e = Erasure::new(4, 2).unwrap();
        for n in [0, 1, 2, 3, 7, 8, 1000, 4097, BLOCK_SIZE - 1, BLOCK_SIZE] {
            let block = sample(n);
            let shards: Vec<Option<Vec<u8>>> =
                e.encode(&block).unwrap().into_iter().map(Some).collect();
            let mut out = Vec::new();
            e.join(&shards, n, &mut out).unwrap();
            assert_eq!(out, block, "size {n}");
        }
    }

    #[test]
    fn any_parity_many_losses_reconstruct() {
        let e = Erasure::new(4, 2).unwrap();
        let block = sample(100_003);
        let full = e.encode(&block).unwrap();
        for a in 0..6 {
            for b in (a + 1)..6 {
                let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
                shards[a] = None;
                shards[b] = None;
                e.reconstruct(&mut shards, true).unwrap();
                for (i, s) in shards.iter().enumerate() {
                    assert_eq!(s.as_ref().unwrap(), &full[i], "lost {a},{b}: shard {i}");
                }
            }
        }
    }

    #[test]
    fn too_many_losses_fail() {
        let e = Erasure::new(4, 2).unwrap();
        let mut shards: Vec<Option<Vec<u8>>> = e
            .encode(&sample(5000))
            .unwrap()
            .into_iter()
            .map(Some)
            .collect();
        shards[0] = None;
        shards[1] = None;
        shards[5] = None;
        assert!(matches!(
            e.reconstruct(&mut shards, true),
            Err(ErasureError::TooFewShards { have: 3, need: 4 })
        ));
    }

    #[test]
    fn no_parity_single_drive() {
        let e = Erasure::new(1, 0).unwrap();
        let block = sample(12345);
        let shards: Vec<Option<Vec<u8>>> =
            e.encode(&block).unwrap().into_iter().map(Some).collect();
        assert_eq!(shards.len(), 1);
        let mut out = Vec::new();
        e.join(&shards, block.len(), &mut out).unwrap();
        assert_eq!(out, block);
    }
}
