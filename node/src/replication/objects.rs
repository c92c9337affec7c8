//! Object replication between sites: every version written here while the site has peers is
//! marked PENDING in its own record (`object::replica`) and sent to each peer as a replica write
//! (the S3 PUT or DELETE it would take, plus headers fixing the version id, time and ETag, which
//! only the pair's replication identity may send, signed with it). Once every peer has it, the
//! version becomes COMPLETED.
//!
//! Two paths find the work: the node that took a write replicates it at once (a hint), and the
//! Raft leader rescans every bucket now and then for versions still PENDING (a peer was down,
//! the node crashed before its hint ran). Sending a version twice is harmless: the peer stores
//! it under the same id. The same two paths carry the changes made to a version afterwards, its
//! metadata and its removal for good (`changes`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, Semaphore};

use cairn_control_plane::raft::Role;
use cairn_proto::meta::ObjectVersion;

use super::backoff::Retry;
use super::outbox::target;
use crate::link::{empty, LinkError, PeerRequest, PeerTarget};
use crate::node::Node;
use crate::object::list::Entry;
use crate::object::metadata::Metadata;
use crate::object::replica::{
    VersionRef, COMPLETED, ETAG_HEADER, FAILED, MTIME_HEADER, PENDING, VERSION_ID_HEADER,
};
use crate::object::ObjectError;
use crate::s3::CairnS3;
use crate::sign::uri_encode;

/// Versions sent at once by one node. Each send streams its version (a few blocks in memory);
/// with 4 a node delivered 50-70 versions/s of 64 KiB, below the rate one node takes writes.
const PARALLEL: usize = 16;
/// How often the leader looks for versions still PENDING.
const RESCAN: Duration = Duration::from_secs(30);
/// Versions one node keeps waiting for their next try; more are left to the rescan.
const MAX_WAITING: usize = 100_000;
const SCAN_PAGE: usize = 1000;
/// SSE-C keys live only with the client: such versions cannot be read, let alone sent.
pub(super) const SSE_C: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub(super) enum ReplicateError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("reading the version: {0}")]
    Read(String),
}

fn headers_of(v: &ObjectVersion) -> Vec<(&'static str, String)> {
    let mut h = vec![
        (VERSION_ID_HEADER, v.version_id.clone()),
        (MTIME_HEADER, v.mod_time_ns.to_string()),
    ];
    if v.delete_marker {
        return h;
    }
    h.push((ETAG_HEADER, v.etag.clone()));
    h.push(("content-length", v.size.to_string()));
    h
}

/// A metadata value as a header carries it: as stored when the peer reads it back unchanged
/// (printable ASCII, not trimmed, not an encoded-word), else one RFC 2047 encoded-word, which
/// the peer decodes as it does from any client. A value stored from an encoded-word may hold
/// line breaks, which no header can: sent raw, the version would never reach the peer.
fn mail_safe(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && value.trim() == value
        && !value.starts_with("=?");
    if plain {
        return value.to_owned();
    }
    format!(
        "=?UTF-8?B?{}?=",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value)
    )
}

/// Content headers, user metadata, tags, lock and SSE of `v`, as a PUT carries them. A retention
/// that ran out by `now_ns` is not sent: it protects nothing any more, and a PUT may only set
/// one that ends in the future.
fn object_headers(v: &ObjectVersion, now_ns: i64) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = v
        .headers
        .iter()
        .map(|kv| (kv.key.to_ascii_lowercase(), kv.value.clone()))
        .collect();
    for kv in &v.user_metadata {
        h.push((
            format!("x-amz-meta-{}", kv.key.to_ascii_lowercase()),
            mail_safe(&kv.value),
        ));
    }
    if !v.tags.is_empty() {
        let tags = v
            .tags
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    uri_encode(&kv.key, true),
                    uri_encode(&kv.value, true)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        h.push(("x-amz-tagging".into(), tags));
    }
    if !v.lock_mode.is_empty() && v.retain_until_ns > now_ns {
        h.push(("x-amz-object-lock-mode".into(), v.lock_mode.clone()));
        let until = crate::clock::to_datetime(v.retain_until_ns)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        h.push(("x-amz-object-lock-retain-until-date".into(), until));
    }
    if v.legal_hold {
        h.push(("x-amz-object-lock-legal-hold".into(), "ON".into()));
    }
    // The peer encrypts anew under its own KMS: the same key name, and the same context.
    match v.sse.as_ref().map(|s| (s.kind, s)) {
        Some((1, _)) => h.push(("x-amz-server-side-encryption".into(), "AES256".into())),
        Some((2, sse)) => {
            h.push(("x-amz-server-side-encryption".into(), "aws:kms".into()));
            h.push((
                "x-amz-server-side-encryption-aws-kms-key-id".into(),
                sse.key_id.clone(),
            ));
            if !sse.context.is_empty() {
                let context: serde_json::Map<String, serde_json::Value> = sse
                    .context
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone().into()))
                    .collect();
                h.push((
                    "x-amz-server-side-encryption-context".into(),
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        serde_json::Value::Object(context).to_string(),
                    ),
                ));
            }
        }
        _ => {}
    }
    h
}

/// Sends version `v` of `bucket/key` to one peer.
pub(super) async fn send(
    s3: &CairnS3,
    node: &Node,
    peer: &PeerTarget,
    bucket: &str,
    key: &str,
    v: &ObjectVersion,
) -> Result<(), ReplicateError> {
    let path = format!("/{}/{}", uri_encode(bucket, true), uri_encode(key, false));
    let mut headers: Vec<(String, String)> = headers_of(v)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (method, body) = if v.delete_marker {
        ("DELETE", empty())
    } else {
        headers.extend(object_headers(v, node.objects.clock.now_ns()));
        let handle = s3
            .objects
            .get_object(bucket, key, Some(&v.version_id))
            .await
            .map_err(|e| ReplicateError::Read(e.to_string()))?;
        let object_key = crate::s3::sse::open(s3, bucket, key, v, None)
            .await
            .map_err(|e| ReplicateError::Read(e.to_string()))?;
        let stream = crate::s3::sse::read(handle, object_key.as_ref(), 0, v.size)
            .map_err(|e| ReplicateError::Read(e.to_string()))?
            .map(|r| {
                r.map(hyper::body::Frame::data)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
        (
            "PUT",
            BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream)),
        )
    };
    let headers: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    node.link
        .call(
            peer,
            PeerRequest {
                method,
                path: &path,
                query: &[],
                headers: &headers,
                body,
            },
        )
        .await?;
    Ok(())
}

/// Sends one version to every peer (it becomes COMPLETED once all have it), then its metadata
/// if that changed since, or its removal if it is gone (`changes`). True when something is left
/// to send again later (a peer did not get it, or waits out a backoff).
async fn replicate(s3: &CairnS3, node: &Node, retry: &Retry, region: &str, r: &VersionRef) -> bool {
    let v = match s3
        .objects
        .head_version(&r.bucket, &r.key, &r.version_id)
        .await
    {
        Ok(v) => v,
        Err(ObjectError::NoSuchKey | ObjectError::NoSuchVersion) => {
            return !super::changes::send_purge(node, retry, region, r, true).await;
        }
        Err(e) => {
            tracing::debug!(bucket = %r.bucket, key = %r.key, error = %e, "replication: version not readable now");
            return true;
        }
    };
    if v.replication == PENDING {
        match replicate_data(s3, node, retry, region, r, &v).await {
            Sent::All => {}
            Sent::Later => return true,
            Sent::Never => return false,
        }
    }
    if v.metadata_replication == PENDING {
        return !super::changes::send_metadata(node, retry, region, r, Metadata::of(&v)).await;
    }
    false
}

/// How far a version got.
enum Sent {
    /// Every peer has it: it is COMPLETED.
    All,
    /// Not every peer yet: to send again.
    Later,
    /// It cannot be sent (SSE-C, no peers any more): sending again would change nothing.
    Never,
}

/// Sends version `v` to every peer not waiting out a backoff; it is COMPLETED once all have it.
async fn replicate_data(
    s3: &CairnS3,
    node: &Node,
    retry: &Retry,
    region: &str,
    r: &VersionRef,
    v: &ObjectVersion,
) -> Sent {
    let state = node.catalog.state();
    let Some(auth) = node.iam.as_ref() else {
        return Sent::Never;
    };
    if !state.sites.enabled() {
        return Sent::Never;
    }
    if v.sse.as_ref().is_some_and(|s| s.kind == SSE_C) {
        tracing::warn!(bucket = %r.bucket, key = %r.key, version = %r.version_id, "SSE-C objects are not replicated");
        let _ = s3
            .objects
            .settle_replication(&r.bucket, &r.key, &r.version_id, FAILED)
            .await;
        return Sent::Never;
    }
    let mut all = true;
    for (name, peer) in &state.sites.peers {
        let target = target(auth, name, peer, region);
        let Some(t) = target.filter(|_| retry.ready(&node.link.contacts, name)) else {
            all = false;
            continue;
        };
        let sent = send(s3, node, &t, &r.bucket, &r.key, v).await;
        match &sent {
            Ok(()) => retry.called(&node.link.contacts, name, Ok(())),
            Err(ReplicateError::Link(e)) => retry.called(&node.link.contacts, name, Err(e)),
            Err(ReplicateError::Read(_)) => retry.not_called(&node.link.contacts, name),
        }
        match sent {
            Ok(()) => node.link.contacts.replicated(name, v.mod_time_ns, v.size),
            Err(e) => {
                tracing::warn!(peer = %name, bucket = %r.bucket, key = %r.key, error = %e, "object replication");
                let what = format!("{}/{} version {}: {e}", r.bucket, r.key, r.version_id);
                node.link.contacts.failed(name, what);
                all = false;
            }
        }
    }
    if !all {
        return Sent::Later;
    }
    match s3
        .objects
        .settle_replication(&r.bucket, &r.key, &r.version_id, COMPLETED)
        .await
    {
        Ok(()) => Sent::All,
        // Removed here while it was on its way: the removal may have reached the peers before
        // the version did, so it goes again.
        Err(ObjectError::NoSuchKey | ObjectError::NoSuchVersion) => {
            if super::changes::send_purge(node, retry, region, r, false).await {
                Sent::Never
            } else {
                Sent::Later
            }
        }
        Err(e) => {
            tracing::debug!(bucket = %r.bucket, key = %r.key, error = %e, "replication status not recorded");
            Sent::Later
        }
    }
}

/// Every version of every bucket still PENDING (its data or a metadata change), and every
/// removal not yet sent.
async fn pending(s3: &CairnS3, node: &Node) -> Vec<VersionRef> {
    let mut out: Vec<VersionRef> = s3
        .objects
        .pending_purges(SCAN_PAGE)
        .await
        .into_iter()
        .map(|p| VersionRef {
            bucket: p.bucket,
            key: p.key,
            version_id: p.version_id,
        })
        .collect();
    let buckets: Vec<String> = node.catalog.state().buckets.keys().cloned().collect();
    for bucket in buckets {
        let (mut key_marker, mut version_marker) = (String::new(), None::<String>);
        loop {
            let page = match s3
                .objects
                .list_object_versions(
                    &bucket,
                    "",
                    None,
                    &key_marker,
                    version_marker.as_deref(),
                    SCAN_PAGE,
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(bucket = %bucket, error = %e, "replication scan");
                    break;
                }
            };
            for e in &page.entries {
                if let Entry::Object { key, version, .. } = e {
                    key_marker.clone_from(key);
                    version_marker = Some(version.version_id.clone());
                    if version.replication == PENDING || version.metadata_replication == PENDING {
                        out.push(VersionRef {
                            bucket: bucket.clone(),
                            key: key.clone(),
                            version_id: version.version_id.clone(),
                        });
                    }
                }
            }
            if !page.truncated {
                break;
            }
        }
    }
    out
}

/// A version waiting to be sent again: how many times it was taken without reaching every peer.
type Attempts = HashMap<(String, String, String), u32>;

fn id(r: &VersionRef) -> (String, String, String) {
    (r.bucket.clone(), r.key.clone(), r.version_id.clone())
}

/// Replicates hinted versions at once, takes again after a backoff those that did not reach
/// every peer (`backoff`), and, on the leader, rescans for what is left.
pub async fn replicate_forever(
    node: Arc<Node>,
    s3: CairnS3,
    mut hints: mpsc::UnboundedReceiver<VersionRef>,
    region: String,
    retry: Arc<Retry>,
) {
    let s3 = Arc::new(s3);
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let mut state = node.catalog.control.subscribe();
    // An interval, not a sleep started anew each turn: hints arriving more often than RESCAN must
    // not put the rescan off for ever.
    let mut rescan = tokio::time::interval_at(tokio::time::Instant::now() + RESCAN, RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (done_tx, mut done) = mpsc::unbounded_channel::<(VersionRef, bool)>();
    // Versions taken and not yet through (in flight or waiting), and when each waiting one is
    // due; past MAX_WAITING, a version is left to the rescan (it stays PENDING in its record).
    let mut attempts = Attempts::new();
    let mut waiting: BTreeMap<(tokio::time::Instant, u64), VersionRef> = BTreeMap::new();
    let mut seq = 0u64;
    loop {
        // Without peers there is nothing to rescan for: wait for a hint or a new state only.
        let enabled = state.borrow_and_update().sites.enabled();
        let due = waiting.first_key_value().map(|((at, _), _)| *at);
        let batch = tokio::select! {
            h = hints.recv() => match h {
                Some(h) => vec![h],
                None => return,
            },
            Some((r, again)) = done.recv() => {
                let Some(n) = attempts.get_mut(&id(&r)) else {
                    continue;
                };
                if !again {
                    attempts.remove(&id(&r));
                } else if waiting.len() < MAX_WAITING {
                    *n += 1;
                    let at = tokio::time::Instant::now() + retry.delay(*n);
                    seq += 1;
                    waiting.insert((at, seq), r);
                } else {
                    attempts.remove(&id(&r));
                }
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                let now = tokio::time::Instant::now();
                let mut batch = Vec::new();
                while let Some(entry) = waiting.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    batch.push(entry.remove());
                }
                batch
            }
            _ = rescan.tick(), if enabled => {
                if node.catalog.control.status().role != Role::Leader {
                    continue;
                }
                // Those already waiting keep their own schedule.
                pending(&s3, &node)
                    .await
                    .into_iter()
                    .filter(|r| !attempts.contains_key(&id(r)))
                    .collect()
            }
            r = state.changed(), if !enabled => {
                if r.is_err() {
                    return;
                }
                continue;
            }
        };
        for r in batch {
            attempts.entry(id(&r)).or_insert(0);
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (s3, node, region, retry, done) = (
                s3.clone(),
                node.clone(),
                region.clone(),
                retry.clone(),
                done_tx.clone(),
            );
            tokio::spawn(async move {
                let again = replicate(&s3, &node, &retry, &region, &r).await;
                drop(permit);
                let _ = done.send((r, again));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mail_safe;

    #[test]
    fn metadata_values_travel_as_header_values_the_peer_decodes_back() {
        assert_eq!(mail_safe("Ada Lovelace"), "Ada Lovelace");
        for v in [
            "line one\nline two",
            "Zürich",
            " padded ",
            "=?UTF-8?B?eA==?=",
        ] {
            let sent = mail_safe(v);
            assert!(http::HeaderValue::from_str(&sent).is_ok(), "{sent:?}");
            let inner = sent
                .strip_prefix("=?UTF-8?B?")
                .and_then(|s| s.strip_suffix("?="))
                .unwrap_or_else(|| panic!("{v:?} not encoded: {sent:?}"));
            let back = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, inner);
            assert_eq!(back.ok().as_deref(), Some(v.as_bytes()));
        }
    }
}
