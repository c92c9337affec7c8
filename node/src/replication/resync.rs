//! Sends every version this site holds to one peer again (`cairn_control_plane::resync`): after a
//! pairing of sites that both held data, or for a peer that lost its own.
//!
//! The record of the resync is in the replicated state; the Raft leader does the work. It waits
//! until the peer applied the buckets and IAM the resync exported through the outbox, counts what
//! there is to send, then goes bucket by bucket, a listing page at a time: each version goes as
//! the replica write the replicator sends (`objects::send`, signed with the pair's replication
//! identity: no other way in), and once a page is through, its end is recorded as the bucket's
//! cursor. A restarted or new leader resends at most the page under way.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use cairn_control_plane::raft::Role;
use cairn_control_plane::resync::{Count, Cursor, Progress, Resync, ResyncCommand};
use cairn_control_plane::site::SiteCommand;
use cairn_control_plane::Command;
use cairn_proto::meta::ObjectVersion;

use super::backoff::Retry;
use super::objects::{send, ReplicateError, SSE_C};
use super::outbox::target;
use crate::link::LinkError;
use crate::node::Node;
use crate::object::list::Entry;
use crate::object::ObjectError;
use crate::s3::CairnS3;

/// Versions listed and sent per recorded step.
const BATCH: usize = 100;
/// Versions sent at once.
const PARALLEL: usize = 4;
/// How often a node that cannot go on (not the leader, the peer behind on the outbox) looks again.
const WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum ResyncError {
    #[error("the pair's replication identity does not open: pair the sites again")]
    Identity,
    #[error("listing {bucket}: {error}")]
    List { bucket: String, error: ObjectError },
    #[error(transparent)]
    Send(#[from] ReplicateError),
    #[error("recording progress: {0}")]
    Record(String),
}

/// What one step did.
enum Step {
    /// Counted or sent a batch.
    Went,
    /// Nothing to do yet (the peer still lacks the exported buckets).
    Waiting,
}

/// How one version fared.
enum Sent {
    Done(u64),
    /// Not to be sent (removed since it was listed).
    Gone,
    /// Refused for good: counted as failed, with the reason.
    Failed(String),
}

/// Whether a failed send is worth repeating: the peer or the link may recover; a peer that
/// refuses the version itself (a conflicting version under its id, an invalid request) will not.
fn transient(e: &ReplicateError) -> bool {
    match e {
        ReplicateError::Link(LinkError::Status { status, .. }) => {
            matches!(status, 403 | 404 | 408 | 429) || *status >= 500
        }
        ReplicateError::Link(_) => true,
        ReplicateError::Read(_) => false,
    }
}

async fn send_one(
    s3: &CairnS3,
    node: &Node,
    peer: &crate::link::PeerTarget,
    bucket: &str,
    key: &str,
    v: &ObjectVersion,
) -> Result<Sent, ReplicateError> {
    let what = |e: &dyn std::fmt::Display| format!("{bucket}/{key} version {}: {e}", v.version_id);
    if v.sse.as_ref().is_some_and(|s| s.kind == SSE_C) {
        return Ok(Sent::Failed(what(&"SSE-C objects are not replicated")));
    }
    match send(s3, node, peer, bucket, key, v).await {
        Ok(()) => Ok(Sent::Done(if v.delete_marker { 0 } else { v.size })),
        Err(ReplicateError::Read(_))
            if matches!(
                s3.objects.head_version(bucket, key, &v.version_id).await,
                Err(ObjectError::NoSuchKey | ObjectError::NoSuchVersion)
            ) =>
        {
            Ok(Sent::Gone)
        }
        Err(e) if transient(&e) => Err(e),
        Err(e) => Ok(Sent::Failed(what(&e))),
    }
}

/// Every version of one bucket page by page, from `cursor` on.
async fn page(
    s3: &CairnS3,
    bucket: &str,
    cursor: &Cursor,
    max: usize,
) -> Result<(Vec<(String, ObjectVersion)>, bool), ResyncError> {
    let page = s3
        .objects
        .list_object_versions(
            bucket,
            "",
            None,
            &cursor.key,
            cursor.version.as_deref(),
            max,
        )
        .await
        .map_err(|error| ResyncError::List {
            bucket: bucket.to_string(),
            error,
        })?;
    let versions = page
        .entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Object { key, version, .. } => Some((key, *version)),
            Entry::Prefix(_) => None,
        })
        .collect();
    Ok((versions, page.truncated))
}

/// What `buckets` hold: versions and bytes.
async fn count(s3: &CairnS3, node: &Node, r: &Resync) -> Result<Count, ResyncError> {
    let mut total = Count::default();
    for bucket in r.buckets.keys() {
        if node.catalog.state().bucket(bucket).is_none() {
            continue;
        }
        let mut cursor = Cursor::default();
        loop {
            let (versions, more) = page(s3, bucket, &cursor, 1000).await?;
            for (_, v) in &versions {
                total.objects += 1;
                total.bytes += if v.delete_marker { 0 } else { v.size };
            }
            match versions.last() {
                Some((key, v)) if more => {
                    cursor.key.clone_from(key);
                    cursor.version = Some(v.version_id.clone());
                }
                _ => break,
            }
        }
    }
    Ok(total)
}

async fn record(node: &Node, cmd: ResyncCommand) -> Result<(), ResyncError> {
    node.catalog
        .propose(Command::Site(SiteCommand::Resync(cmd)))
        .await
        .map_err(|e| ResyncError::Record(e.to_string()))
}

/// One step of `peer`'s resync: count, or send one batch and record it.
async fn step(
    s3: &CairnS3,
    node: &Node,
    region: &str,
    rate: u32,
    peer: &str,
    r: &Resync,
) -> Result<Step, ResyncError> {
    let state = node.catalog.state();
    let Some(site_peer) = state.sites.peers.get(peer) else {
        return Ok(Step::Waiting);
    };
    if site_peer.acked < r.after_seq {
        return Ok(Step::Waiting);
    }
    let auth = node.iam.as_ref().ok_or(ResyncError::Identity)?;
    let link = target(auth, peer, site_peer, region).ok_or(ResyncError::Identity)?;
    let now = || node.objects.clock.now_ns();
    if r.total.is_none() {
        let total = count(s3, node, r).await?;
        let cmd = ResyncCommand::Counted {
            peer: peer.to_string(),
            id: r.id,
            total,
            now_ns: now(),
        };
        record(node, cmd).await?;
        return Ok(Step::Went);
    }
    let Some((bucket, cursor)) = r.next_bucket() else {
        return Ok(Step::Waiting);
    };
    let began = tokio::time::Instant::now();
    let (versions, more) = if state.bucket(bucket).is_some() {
        page(s3, bucket, cursor, BATCH).await?
    } else {
        (Vec::new(), false)
    };
    let sends: Vec<_> = versions
        .iter()
        .map(|(key, v)| send_one(s3, node, &link, bucket, key, v))
        .collect();
    let results: Vec<Result<Sent, ReplicateError>> = futures::stream::iter(sends)
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut sent = Count::default();
    let mut failures = Vec::new();
    for r in results {
        match r? {
            Sent::Done(bytes) => {
                sent.objects += 1;
                sent.bytes += bytes;
            }
            Sent::Gone => {}
            Sent::Failed(why) => {
                tracing::warn!(peer, reason = %why, "resync: version refused");
                node.link.contacts.failed(&link.name, why.clone());
                failures.push(why);
            }
        }
    }
    let next = match versions.last() {
        Some((key, v)) => Cursor {
            key: key.clone(),
            version: Some(v.version_id.clone()),
            done: !more,
        },
        None => Cursor {
            done: true,
            ..cursor.clone()
        },
    };
    if rate > 0 {
        let least = Duration::from_secs_f64(versions.len() as f64 / f64::from(rate));
        tokio::time::sleep_until(began + least).await;
    }
    let progress = Progress {
        bucket: bucket.to_string(),
        cursor: next,
        sent,
        failures,
        now_ns: now(),
    };
    let cmd = ResyncCommand::Progress {
        peer: peer.to_string(),
        id: r.id,
        progress,
    };
    record(node, cmd).await?;
    Ok(Step::Went)
}

/// Runs every running resync while this node leads; idle (not even woken) while none runs.
/// `rate`: versions per second at most (0: as fast as it goes). Steps that fail are tried again
/// after `retry`'s backoff.
pub async fn run_forever(
    node: Arc<Node>,
    s3: Arc<CairnS3>,
    region: String,
    rate: u32,
    retry: Arc<Retry>,
) {
    let mut failures = 0u32;
    loop {
        node.catalog.resyncing.notified().await;
        loop {
            let state = node.catalog.state();
            let running: Vec<(&String, &Resync)> = state
                .sites
                .resyncs
                .iter()
                .filter(|(_, r)| r.running())
                .collect();
            if running.is_empty() {
                break;
            }
            let mut went = false;
            let mut failed = false;
            if node.catalog.control.status().role == Role::Leader {
                for (peer, r) in running {
                    match step(&s3, &node, &region, rate, peer, r).await {
                        Ok(Step::Went) => went = true,
                        Ok(Step::Waiting) => {}
                        Err(e) => {
                            tracing::warn!(peer = %peer, error = %e, "resync");
                            failed = true;
                        }
                    }
                }
            }
            if went && !failed {
                failures = 0;
                continue;
            }
            if failed {
                failures = failures.saturating_add(1);
                tokio::time::sleep(retry.delay(failures)).await;
            } else {
                tokio::time::sleep(WAIT).await;
            }
        }
    }
}
