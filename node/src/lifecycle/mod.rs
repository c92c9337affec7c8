//! Bucket lifecycle: the worker that applies the rules (`s3::bucket_lifecycle` keeps them).
//!
//! On the control plane's leader only, every `scan_every` it lists each bucket with rules and
//! acts on what is due ([`plan`]), at most `rate` actions a second so foreground traffic keeps
//! the drives. Every action is taken under the key's lock while the key is still as the scan saw
//! it, and every removal passes the retention check (`object::lifecycle`): a locked version
//! survives its expiration and is looked at again next scan.
//!
//! Paired sites hold the same rules (they replicate) and each applies them. Removals are the
//! same on both sides; the delete marker an expiration writes on a versioned bucket is made the
//! same on both too: its id is derived from the expired version and its time is the expiry
//! instant, so the two sites write one version, and each one's copy arriving from the other is a
//! resend (`object::replica::admit_replica`) rather than a second marker.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use cairn_control_plane::lifecycle::after_days;
use cairn_control_plane::{BucketInfo, Role, Versioning};
use cairn_proto::meta::ObjectVersion;

use crate::node::Node;
use crate::object::list::Entry;
use crate::object::{ObjectError, NULL_VERSION};
use crate::s3::CairnS3;
use plan::{Action, KeyPlan};

/// Versions listed per page of a scan.
const SCAN_PAGE: usize = 1000;
/// Keys acted on at once (each action waits for its drives' fsyncs; the rate bounds them all).
const PARALLEL: usize = 8;

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Actions (expirations, removals, aborted uploads) per second at most.
    pub rate: u32,
    /// The length of a rule's "day". A real day, but for tests.
    pub day: Duration,
    /// How often the leader scans buckets with rules.
    pub scan_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate: 1000,
            day: Duration::from_secs(86_400),
            scan_every: Duration::from_secs(3600),
        }
    }
}

impl Settings {
    pub fn day_ns(&self) -> i64 {
        i64::try_from(self.day.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// Keeps actions under `rate` a second, without bursts: each starts at least `1/rate` after the
/// one before (at once when that one took longer), however many run at once.
struct Pacer {
    interval: Duration,
    /// The earliest start of the next action.
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Self {
            interval: Self::interval(rate),
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// The time between two actions; a rate of 0 is taken as 1 a second, never as unbounded.
    fn interval(rate: u32) -> Duration {
        Duration::from_secs(1) / rate.max(1)
    }

    /// Takes the next start slot and waits for it.
    async fn wait(&self) {
        let at = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Starts the worker once some bucket has rules (a site that never sets any runs no task).
pub async fn start_when_configured(node: Arc<Node>, s3: CairnS3, settings: Settings) {
    node.catalog.lifecycle.notified().await;
    run_forever(node, s3, settings).await;
}

async fn run_forever(node: Arc<Node>, s3: CairnS3, settings: Settings) {
    let mut tick = tokio::time::interval(settings.scan_every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pacer = Pacer::new(settings.rate);
    loop {
        tick.tick().await;
        if node.catalog.control.status().role != Role::Leader {
            continue;
        }
        let state = node.catalog.state();
        for bucket in state.buckets.values().filter(|b| !b.lifecycle.is_empty()) {
            let span = tracing::info_span!("lifecycle", bucket = %bucket.name);
            let done = scan_bucket(&s3, bucket, &settings, &pacer)
                .instrument(span)
                .await;
            if done > 0 {
                tracing::info!(bucket = %bucket.name, actions = done, "lifecycle applied");
            }
        }
    }
}

/// Applies the rules of one bucket; returns the actions taken.
async fn scan_bucket(s3: &CairnS3, bucket: &BucketInfo, settings: &Settings, pacer: &Pacer) -> u64 {
    let day_ns = settings.day_ns();
    let mut taken = abort_uploads(s3, bucket, day_ns, pacer).await;
    let (mut key_marker, mut version_marker) = (String::new(), None::<String>);
    let mut current: Option<KeyPlan<'_>> = None;
    loop {
        let page = match s3
            .objects
            .list_object_versions(
                &bucket.name,
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
                tracing::warn!(bucket = %bucket.name, error = %e, "lifecycle scan stopped");
                return taken;
            }
        };
        let now = s3.objects.clock.now_ns();
        let mut actions = Vec::new();
        for e in &page.entries {
            let Entry::Object { key, version, .. } = e else {
                continue;
            };
            if current.as_ref().is_none_or(|p| &p.key != key) {
                finish(current.take(), &mut actions);
                current = Some(KeyPlan::new(bucket, key, now, day_ns));
            }
            if let Some(a) = current.as_mut().and_then(|p| p.next(version)) {
                actions.push((key.clone(), a));
            }
            key_marker.clone_from(key);
            version_marker = Some(version.version_id.clone());
        }
        if !page.truncated {
            finish(current.take(), &mut actions);
        }
        // A removal of the page's last version makes the next page skip the rest of its key
        // (the listing resumes after that version): those wait for the next scan.
        taken += apply_all(s3, bucket, actions, pacer).await;
        if !page.truncated {
            return taken;
        }
    }
}

/// Takes `actions`, several keys at once (one key's in order: a lone marker goes after the
/// versions under it), paced by `pacer`; returns how many changed something.
async fn apply_all(
    s3: &CairnS3,
    bucket: &BucketInfo,
    actions: Vec<(String, Action)>,
    pacer: &Pacer,
) -> u64 {
    let mut by_key: Vec<(String, Vec<Action>)> = Vec::new();
    for (key, action) in actions {
        match by_key.last_mut() {
            Some((k, list)) if *k == key => list.push(action),
            _ => by_key.push((key, vec![action])),
        }
    }
    futures::stream::iter(by_key)
        .map(|(key, list)| async move {
            let mut changed = 0;
            for action in list {
                pacer.wait().await;
                changed += u64::from(apply(s3, bucket, &key, action).await);
            }
            changed
        })
        .buffer_unordered(PARALLEL)
        .fold(0, |a, b| async move { a + b })
        .await
}

/// Adds the action due once every version of a key was seen.
fn finish(plan: Option<KeyPlan<'_>>, actions: &mut Vec<(String, Action)>) {
    if let Some(p) = plan {
        let key = p.key.clone();
        actions.extend(p.finish().map(|a| (key, a)));
    }
}

/// The delete marker an expiration writes: the same on every site that expires this version.
fn expiry_marker(
    bucket: &str,
    key: &str,
    expired: &ObjectVersion,
    due_ns: i64,
    s3: &CairnS3,
) -> ObjectVersion {
    let mut h = Sha256::new();
    let written = expired.mod_time_ns.to_string();
    for part in [
        "cairn lifecycle expiration",
        bucket,
        key,
        expired.version_id.as_str(),
        written.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize()[..16]);
    ObjectVersion {
        version_id: uuid::Builder::from_random_bytes(id).into_uuid().to_string(),
        delete_marker: true,
        // Never older than what it covers, so a peer orders the two alike.
        mod_time_ns: due_ns.max(expired.mod_time_ns.saturating_add(1)),
        replication: crate::s3::replica::local(s3).status().to_string(),
        ..Default::default()
    }
}

/// Takes one action; whether it changed anything.
async fn apply(s3: &CairnS3, bucket: &BucketInfo, key: &str, action: Action) -> bool {
    let name = &bucket.name;
    let result = match action {
        Action::ExpireCurrent { version, due_ns } => {
            let (id, written) = (version.version_id.clone(), version.mod_time_ns);
            let still_current = move |vs: &[ObjectVersion]| {
                vs.first().is_some_and(|v| {
                    v.version_id == id && !v.delete_marker && v.mod_time_ns == written
                })
            };
            match bucket.versioning {
                Versioning::Unversioned => s3
                    .objects
                    .expire_version(name, key, NULL_VERSION, &still_current)
                    .await
                    .map(|_| true),
                v => {
                    let mut marker = expiry_marker(name, key, &version, due_ns, s3);
                    if v == Versioning::Suspended {
                        marker.version_id = NULL_VERSION.to_string();
                    }
                    let written = s3
                        .objects
                        .expire_with_marker(name, key, &marker, &still_current)
                        .await;
                    if matches!(written, Ok(true)) {
                        s3.replication.send(name, key, &marker);
                    }
                    written
                }
            }
        }
        Action::RemoveNoncurrent { version_id } => {
            let id = version_id.clone();
            let noncurrent =
                move |vs: &[ObjectVersion]| vs.first().is_some_and(|v| v.version_id != id);
            s3.objects
                .expire_version(name, key, &version_id, &noncurrent)
                .await
                .map(|_| true)
        }
        Action::RemoveLoneMarker { version_id } => {
            let id = version_id.clone();
            let alone = move |vs: &[ObjectVersion]| matches!(vs, [v] if v.version_id == id && v.delete_marker);
            s3.objects
                .expire_version(name, key, &version_id, &alone)
                .await
                .map(|_| true)
        }
    };
    match result {
        Ok(changed) => changed,
        // The key changed since the scan: nothing is due now.
        Err(ObjectError::NoSuchVersion) => false,
        Err(ObjectError::Locked(why)) => {
            tracing::debug!(bucket = %name, key, reason = %why, "lifecycle: locked version kept");
            false
        }
        Err(e) => {
            tracing::warn!(bucket = %name, key, error = %e, "lifecycle action failed");
            false
        }
    }
}

/// Aborts the bucket's multipart uploads that a rule's `DaysAfterInitiation` has passed.
async fn abort_uploads(s3: &CairnS3, bucket: &BucketInfo, day_ns: i64, pacer: &Pacer) -> u64 {
    let rules: Vec<_> = bucket
        .lifecycle
        .iter()
        .filter(|r| r.enabled)
        .filter_map(|r| Some((r.filter.prefix(), r.abort_multipart_days?)))
        .collect();
    if rules.is_empty() {
        return 0;
    }
    let uploads = match s3.objects.list_uploads(&bucket.name, "").await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(bucket = %bucket.name, error = %e, "lifecycle: uploads not listed");
            return 0;
        }
    };
    let now = s3.objects.clock.now_ns();
    let mut aborted = 0;
    for u in uploads {
        let due = rules.iter().any(|(prefix, days)| {
            u.key.starts_with(prefix) && now >= after_days(u.initiated_ns, *days, day_ns)
        });
        if !due {
            continue;
        }
        pacer.wait().await;
        match s3
            .objects
            .abort_multipart(&bucket.name, &u.key, &u.upload_id)
            .await
        {
            Ok(()) => aborted += 1,
            Err(ObjectError::NoSuchUpload) => {}
            Err(e) => {
                tracing::warn!(bucket = %bucket.name, key = %u.key, error = %e, "lifecycle: upload not aborted")
            }
        }
    }
    aborted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spaces_actions_by_the_rate() {
        assert_eq!(Pacer::interval(100), Duration::from_millis(10));
        assert_eq!(Pacer::interval(20), Duration::from_millis(50));
        assert_eq!(Pacer::interval(0), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_pass_takes_at_least_its_actions_over_the_rate() {
        let start = tokio::time::Instant::now();
        let p = Pacer::new(200);
        for _ in 0..41 {
            p.wait().await;
        }
        // 41 actions at 200/s: the last starts 200 ms after the first, however fast they are.
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
    }
}
