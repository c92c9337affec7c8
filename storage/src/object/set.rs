//! One erasure set: its drives, its code and its quorums.

use std::sync::Arc;

use futures::future::join_all;

use cairn_proto::meta::ObjectRecord;
use prost::Message;

use super::error::{ObjectError, ObjectResult};
use crate::drive::{Drive, DriveError, MetaOp};
use crate::erasure::Erasure;

/// A key's record as a drive stores it; undecodable bytes are the drive's metadata error.
pub fn decode_record(raw: &[u8]) -> Result<ObjectRecord, DriveError> {
    ObjectRecord::decode(raw).map_err(|e| DriveError::Meta(e.to_string()))
}

pub struct ErasureSet {
    pub drives: Vec<Arc<dyn Drive>>,
    pub erasure: Erasure,
    pub read_quorum: usize,
    pub write_quorum: usize,
}

impl ErasureSet {
    pub fn size(&self) -> usize {
        self.drives.len()
    }

    /// Reads `key` from every drive; `Err` marks a drive that did not answer.
    pub async fn read_records(&self, key: &[u8]) -> Vec<Result<Option<ObjectRecord>, DriveError>> {
        join_all(
            self.drives.iter().map(|d| async move {
                d.get(key).await?.as_deref().map(decode_record).transpose()
            }),
        )
        .await
    }

    /// Runs `f` on every drive at once and requires `write_quorum` successes.
    pub async fn on_all<F, Fut>(&self, f: F) -> ObjectResult<Vec<bool>>
    where
        F: Fn(usize, Arc<dyn Drive>) -> Fut,
        Fut: std::future::Future<Output = Result<(), DriveError>>,
    {
        let results = join_all(self.drives.iter().enumerate().map(|(i, d)| f(i, d.clone()))).await;
        let ok: Vec<bool> = results
            .iter()
            .zip(&self.drives)
            .map(|(r, d)| {
                if let Err(e) = r {
                    tracing::warn!(drive = d.label(), error = %e, "drive write failed");
                }
                r.is_ok()
            })
            .collect();
        self.require_write_quorum(&ok)?;
        Ok(ok)
    }

    pub fn require_write_quorum(&self, ok: &[bool]) -> ObjectResult<()> {
        let have = ok.iter().filter(|b| **b).count();
        if have < self.write_quorum {
            return Err(ObjectError::WriteQuorum {
                have,
                need: self.write_quorum,
            });
        }
        Ok(())
    }

    /// Writes the same metadata batch to every drive, with write quorum.
    pub async fn apply_all(&self, ops: Vec<MetaOp>) -> ObjectResult<Vec<bool>> {
        self.on_all(|_, d| {
            let ops = ops.clone();
            async move { d.apply(ops).await }
        })
        .await
    }
}
