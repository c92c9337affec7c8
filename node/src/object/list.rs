//! Listing: every drive of a set streams its sorted keys; a key is listed when a read quorum of
//! drives agrees on its latest version. Sets are merged in key order, delimiters fold keys into
//! common prefixes.

use std::collections::BTreeMap;

use futures::future::join_all;
use prost::Message;

use cairn_proto::meta::{ObjectRecord, ObjectVersion};

use super::error::{ObjectError, ObjectResult};
use super::keys;
use super::quorum;
use super::set::ErasureSet;
use super::ObjectLayer;

const SCAN_BATCH: usize = 1000;

/// One listing entry: an object or a common prefix.
#[derive(Debug, Clone)]
pub enum Entry {
    Object {
        key: String,
        version: Box<ObjectVersion>,
    },
    Prefix(String),
}

#[derive(Debug, Default)]
pub struct ListPage {
    pub entries: Vec<Entry>,
    /// More entries follow the last one returned.
    pub truncated: bool,
}

impl ListPage {
    /// The key or prefix to continue after.
    pub fn last(&self) -> Option<&str> {
        self.entries.last().map(|e| match e {
            Entry::Object { key, .. } => key.as_str(),
            Entry::Prefix(p) => p.as_str(),
        })
    }
}

/// One set's batch of agreed entries after a cursor, and whether the set has more.
struct SetBatch {
    entries: Vec<(String, ObjectVersion)>,
    /// The largest key this batch covers completely (None: the set is exhausted).
    bound: Option<Vec<u8>>,
}

async fn scan_set(
    set: &ErasureSet,
    bucket: &str,
    prefix: &str,
    cursor: &[u8],
) -> ObjectResult<SetBatch> {
    let base = keys::bucket_objects(bucket);
    let mut scan_prefix = base.clone();
    scan_prefix.extend_from_slice(prefix.as_bytes());
    let mut after = base.clone();
    after.extend_from_slice(cursor);
    let rows = join_all(
        set.drives
            .iter()
            .map(|d| d.scan(&scan_prefix, &after, SCAN_BATCH)),
    )
    .await;
    let answered = rows.iter().filter(|r| r.is_ok()).count();
    if answered < set.read_quorum {
        return Err(ObjectError::ReadQuorum {
            have: answered,
            need: set.read_quorum,
        });
    }
    // A drive that returned a full batch may hold more keys past its last one: only keys up to the
    // smallest such last key are complete.
    let mut bound: Option<Vec<u8>> = None;
    for r in rows.iter().flatten() {
        if r.len() >= SCAN_BATCH {
            if let Some((k, _)) = r.last() {
                let k = k[base.len()..].to_vec();
                bound = Some(match bound {
                    Some(b) if b < k => b,
                    _ => k,
                });
            }
        }
    }
    let mut by_key: BTreeMap<Vec<u8>, Vec<ObjectVersion>> = BTreeMap::new();
    for r in rows.into_iter().flatten() {
        for (k, v) in r {
            let key = k[base.len()..].to_vec();
            if bound.as_ref().is_some_and(|b| &key > b) {
                continue;
            }
            if let Ok(rec) = ObjectRecord::decode(v.as_slice()) {
                if let Some(latest) = rec.versions.into_iter().next() {
                    by_key.entry(key).or_default().push(latest);
                }
            }
        }
    }
    let mut entries = Vec::new();
    for (k, versions) in by_key {
        let best = versions.iter().find(|v| {
            versions
                .iter()
                .filter(|o| quorum::same_version(o, v))
                .count()
                >= set.read_quorum
        });
        if let Some(v) = best {
            if !v.delete_marker {
                let mut v = v.clone();
                v.inline_data.clear();
                entries.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
        }
    }
    Ok(SetBatch { entries, bound })
}

impl ObjectLayer {
    /// Lists up to `max` entries after `marker` (exclusive). A marker that is a common prefix skips
    /// everything under it, as S3 does.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        marker: &str,
        max: usize,
    ) -> ObjectResult<ListPage> {
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut cursor: Vec<u8> = marker.as_bytes().to_vec();
        if let Some(d) = delimiter {
            if marker.starts_with(prefix) && marker.len() > prefix.len() && marker.ends_with(d) {
                cursor.push(0xFF);
            }
        }
        let mut page = ListPage::default();
        loop {
            let batches = join_all(
                self.sets
                    .iter()
                    .map(|s| scan_set(s, bucket, prefix, &cursor)),
            )
            .await;
            let mut bound: Option<Vec<u8>> = None;
            let mut merged = Vec::new();
            for b in batches {
                let b = b?;
                if let Some(k) = b.bound {
                    bound = Some(match bound {
                        Some(x) if x < k => x,
                        _ => k,
                    });
                }
                merged.extend(b.entries);
            }
            merged.retain(|(k, _)| bound.as_ref().is_none_or(|b| k.as_bytes() <= b.as_slice()));
            merged.sort_by(|a, b| a.0.cmp(&b.0));
            let mut restart = false;
            for (key, version) in merged {
                let folded = delimiter.and_then(|d| {
                    key[prefix.len()..]
                        .find(d)
                        .map(|i| key[..prefix.len() + i + d.len()].to_string())
                });
                if page.entries.len() == max {
                    page.truncated = true;
                    return Ok(page);
                }
                match folded {
                    Some(cp) => {
                        cursor = cp.as_bytes().to_vec();
                        cursor.push(0xFF);
                        page.entries.push(Entry::Prefix(cp));
                        restart = true;
                        break;
                    }
                    None => {
                        cursor = key.as_bytes().to_vec();
                        page.entries.push(Entry::Object {
                            key,
                            version: Box::new(version),
                        });
                    }
                }
            }
            if restart {
                continue;
            }
            match bound {
                None => return Ok(page),
                Some(b) => {
                    if b > cursor {
                        cursor = b;
                    }
                }
            }
        }
    }

    /// True when no object is listed in the bucket.
    pub async fn bucket_is_empty(&self, bucket: &str) -> ObjectResult<bool> {
        Ok(self
            .list_objects(bucket, "", None, "", 1)
            .await?
            .entries
            .is_empty())
    }

    /// Removes every trace of a deleted bucket from the drives (leftover uploads, stale records).
    pub async fn purge_bucket(&self, bucket: &str) {
        for set in &self.sets {
            for d in &set.drives {
                for prefix in [keys::bucket_objects(bucket), keys::bucket_uploads(bucket)] {
                    let mut after = Vec::new();
                    while let Ok(rows) = d.scan(&prefix, &after, SCAN_BATCH).await {
                        let Some((last, _)) = rows.last() else { break };
                        after = last.clone();
                        let ops = rows
                            .into_iter()
                            .map(|(k, _)| crate::drive::MetaOp::Delete(k))
                            .collect();
                        if d.apply(ops).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
}
