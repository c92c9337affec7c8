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
use super::settle;
use super::ObjectLayer;
use crate::drive::DriveError;

const SCAN_BATCH: usize = 1000;

/// One listing entry: an object or a common prefix.
#[derive(Debug, Clone)]
pub enum Entry {
    Object {
        key: String,
        version: Box<ObjectVersion>,
        /// The key's newest version (always so in a listing of latest versions).
        is_latest: bool,
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

/// One set's batch of agreed entries after a cursor, and whether the set has more: per key its
/// latest version (unless a delete marker), or with `all` every agreed version, newest first.
struct SetBatch {
    entries: Vec<(String, Vec<ObjectVersion>)>,
    /// The largest key this batch covers completely (None: the set is exhausted).
    bound: Option<Vec<u8>>,
}

async fn scan_set(
    set: &ErasureSet,
    bucket: &str,
    prefix: &str,
    cursor: &[u8],
    all: bool,
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
    // Per key, every drive's view: its record, no record (`Ok(None)`), or no answer.
    let mut by_key: BTreeMap<Vec<u8>, Vec<Result<Option<ObjectRecord>, DriveError>>> =
        BTreeMap::new();
    let answering: Vec<bool> = rows.iter().map(Result::is_ok).collect();
    let blank = || -> Vec<Result<Option<ObjectRecord>, DriveError>> {
        answering
            .iter()
            .map(|&ok| {
                if ok {
                    Ok(None)
                } else {
                    Err(DriveError::Offline)
                }
            })
            .collect()
    };
    for (d, r) in rows.into_iter().enumerate() {
        let Ok(r) = r else { continue };
        for (k, v) in r {
            let key = k[base.len()..].to_vec();
            if bound.as_ref().is_some_and(|b| &key > b) {
                continue;
            }
            if let Ok(mut rec) = ObjectRecord::decode(v.as_slice()) {
                if !all {
                    rec.versions.truncate(1);
                    rec.replaced.truncate(1);
                }
                by_key.entry(key).or_insert_with(blank)[d] = Ok(Some(rec));
            }
        }
    }
    let mut entries = Vec::new();
    for (k, views) in by_key {
        let versions = if all {
            let records = settle::settled_answers(&views, set.read_quorum, set.write_quorum);
            agreed_versions(&records, set.read_quorum)
        } else {
            // The latest version as a GET resolves it, so a listing names exactly what a GET
            // would serve (including after a change stuck below quorum).
            match quorum::resolve(&views, None, set.read_quorum, set.write_quorum) {
                Ok(r) if !r.version.delete_marker => vec![r.version],
                _ => Vec::new(),
            }
        };
        if !versions.is_empty() {
            entries.push((String::from_utf8_lossy(&k).into_owned(), versions));
        }
    }
    Ok(SetBatch { entries, bound })
}

/// The versions at least `read_quorum` drives hold identical copies of, newest first. A drive
/// that missed a write lists its other versions at lower positions, so a version's order is the
/// highest position any drive gives it (then the newer modification time).
pub fn agreed_versions(records: &[ObjectRecord], read_quorum: usize) -> Vec<ObjectVersion> {
    let mut found: Vec<(usize, usize, &ObjectVersion)> = Vec::new();
    for rec in records {
        for (i, v) in rec.versions.iter().enumerate() {
            match found
                .iter_mut()
                .find(|(_, _, o)| quorum::same_version(o, v))
            {
                Some(f) => {
                    f.0 = f.0.max(i);
                    f.1 += 1;
                }
                None => found.push((i, 1, v)),
            }
        }
    }
    found.retain(|(_, n, _)| *n >= read_quorum);
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.mod_time_ns.cmp(&a.2.mod_time_ns)));
    found
        .into_iter()
        .map(|(_, _, v)| {
            let mut v = v.clone();
            v.inline_data.clear();
            v
        })
        .collect()
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
        self.walk(
            bucket,
            prefix,
            delimiter,
            marker,
            max,
            false,
            ListPage::default(),
        )
        .await
    }

    /// Continues `page` with the keys after `marker` until it holds `max` entries: each key's
    /// latest version, or with `all` every version (delete markers included).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn walk(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        marker: &str,
        max: usize,
        all: bool,
        mut page: ListPage,
    ) -> ObjectResult<ListPage> {
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut cursor: Vec<u8> = marker.as_bytes().to_vec();
        if let Some(d) = delimiter {
            if marker.starts_with(prefix) && marker.len() > prefix.len() && marker.ends_with(d) {
                cursor.push(0xFF);
            }
        }
        loop {
            let batches = join_all(
                self.sets
                    .iter()
                    .map(|s| scan_set(s, bucket, prefix, &cursor, all)),
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
            for (key, versions) in merged {
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
                        for (i, version) in versions.into_iter().enumerate() {
                            if page.entries.len() == max {
                                page.truncated = true;
                                return Ok(page);
                            }
                            page.entries.push(Entry::Object {
                                key: key.clone(),
                                version: Box::new(version),
                                is_latest: i == 0,
                            });
                        }
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

    /// True when the bucket holds no version of any key (delete markers count, as in AWS).
    pub async fn bucket_is_empty(&self, bucket: &str) -> ObjectResult<bool> {
        Ok(self
            .walk(bucket, "", None, "", 1, true, ListPage::default())
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
