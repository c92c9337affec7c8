//! Versions removed for good here (a DELETE with a version id) that peer sites must remove too.
//! The removal writes a mark ([`PurgeMark`]) under [`keys::purge`] in the same synced batch that
//! drops the version from each drive's record, so an acknowledged removal always leaves the mark
//! that replicates it, and a crash loses none. The replicator sends each mark to every peer and
//! clears it. A removal that missed write quorum (and so was rolled back) clears its marks
//! itself; should that fail too, the replicator sends a mark only while its version is gone here.

use std::collections::BTreeMap;

use futures::future::join_all;
use prost::Message;

use cairn_proto::meta::PurgeMark;

use super::{keys, ObjectLayer};
use crate::drive::MetaOp;

const SCAN_BATCH: usize = 1000;

/// One version to remove on the peers.
#[derive(Debug, Clone, PartialEq)]
pub struct Purge {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub mark: PurgeMark,
}

/// The op that records `mark` for version `id` of `bucket/key`, in the removal's batch.
pub(super) fn mark_op(bucket: &str, key: &str, id: &str, mark: &PurgeMark) -> MetaOp {
    MetaOp::Put(keys::purge(bucket, id, key), mark.encode_to_vec())
}

impl ObjectLayer {
    /// Up to `limit` marks, from every drive (a mark any drive holds counts: sending one twice is
    /// harmless, missing one is not).
    pub async fn pending_purges(&self, limit: usize) -> Vec<Purge> {
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for set in &self.sets {
            for d in &set.drives {
                let mut after = Vec::new();
                while found.len() < limit {
                    let Ok(rows) = d.scan(keys::PURGES.as_bytes(), &after, SCAN_BATCH).await else {
                        break;
                    };
                    let Some((last, _)) = rows.last() else { break };
                    after = last.clone();
                    let full = rows.len() >= SCAN_BATCH;
                    found.extend(rows);
                    if !full {
                        break;
                    }
                }
            }
        }
        found
            .into_iter()
            .take(limit)
            .filter_map(|(k, v)| {
                let (bucket, version_id, key) = keys::parse_purge(&k)?;
                let mark = PurgeMark::decode(v.as_slice()).ok()?;
                Some(Purge {
                    bucket,
                    key,
                    version_id,
                    mark,
                })
            })
            .collect()
    }

    /// The mark of version `id` of a key, as any drive of its set holds it.
    pub async fn purge_mark(&self, bucket: &str, key: &str, id: &str) -> Option<PurgeMark> {
        let (set, _) = self.place(bucket, key);
        let k = keys::purge(bucket, id, key);
        for d in &set.drives {
            if let Ok(Some(v)) = d.get(&k).await {
                if let Ok(m) = PurgeMark::decode(v.as_slice()) {
                    return Some(m);
                }
            }
        }
        None
    }

    /// Clears the mark of version `id` of a key on every drive of its set (best effort: a mark
    /// left behind is sent again, which is harmless).
    pub async fn clear_purge(&self, bucket: &str, key: &str, id: &str) {
        let (set, _) = self.place(bucket, key);
        let k = keys::purge(bucket, id, key);
        join_all(set.drives.iter().map(|d| {
            let k = k.clone();
            async move {
                if let Err(e) = d.apply(vec![MetaOp::Delete(k)]).await {
                    tracing::debug!(drive = d.label(), error = %e, "purge mark not cleared");
                }
            }
        }))
        .await;
    }
}
