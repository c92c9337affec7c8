//! Versions through the object layer on in-memory drives with a clock the test moves: markers,
//! reads by id, removal under the lock, and rollback of a removal that misses write quorum.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cairn_control_plane::LockMode;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::drive::memory::{MemoryDisk, MemoryDrive};
use crate::drive::Drive;
use crate::erasure::layout::Layout;
use crate::object::retention::LockState;
use crate::object::PutOptions;

const SEC: i64 = 1_000_000_000;

fn layer(disks: &[MemoryDisk]) -> (ObjectLayer, Arc<ManualClock>) {
    layer_over(drives(disks), 3)
}

fn drives(disks: &[MemoryDisk]) -> Vec<Arc<dyn Drive>> {
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| Arc::new(MemoryDrive::new(d.clone(), format!("mem{i}"))) as _)
        .collect()
}

/// A layer over `drives` whose ids come from RNG seed `seed` (two layers over one site's or two
/// sites' drives need ids of their own), with a clock of its own.
fn layer_over(drives: Vec<Arc<dyn Drive>>, seed: u64) -> (ObjectLayer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000 * SEC)));
    let n = drives.len();
    let (l, _heal) = ObjectLayer::new(
        drives,
        Layout::plan(n, Some(2)).unwrap(),
        "test-deployment",
        clock.clone(),
        Box::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed)),
        Arc::new(crate::object::stage::AsSent),
    )
    .unwrap();
    (l, clock)
}

async fn put(l: &ObjectLayer, key: &str, lock: LockState) -> String {
    let body = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]);
    let opts = PutOptions {
        versioning: Versioning::Enabled,
        lock,
        ..Default::default()
    };
    l.put_object("b", key, body, (), opts, |_| Ok(vec![]))
        .await
        .unwrap()
        .version
        .version_id
}

fn delete(id: Option<&str>, bypass: Bypass) -> DeleteRequest<'_> {
    DeleteRequest {
        versioning: Versioning::Enabled,
        version_id: id,
        bypass,
        replication: &crate::object::replica::Replication::None,
    }
}

#[tokio::test]
async fn markers_and_reads_by_id() {
    let disks: Vec<_> = (0..4).map(|_| MemoryDisk::new()).collect();
    let (l, _) = layer(&disks);
    let v1 = put(&l, "k", LockState::default()).await;
    let v2 = put(&l, "k", LockState::default()).await;
    assert_ne!(v1, v2);
    let out = l
        .delete_object("b", "k", delete(None, Bypass::default()))
        .await
        .unwrap();
    assert!(out.delete_marker);
    let marker = out.version_id.unwrap();
    assert!(matches!(
        l.head_object("b", "k", None).await,
        Err(ObjectError::DeleteMarker {
            requested: false,
            ..
        })
    ));
    assert!(matches!(
        l.head_object("b", "k", Some(&marker)).await,
        Err(ObjectError::DeleteMarker {
            requested: true,
            ..
        })
    ));
    let page = l
        .list_object_versions("b", "", None, "", None, 10)
        .await
        .unwrap();
    let ids: Vec<_> = page
        .entries
        .iter()
        .map(|e| match e {
            crate::object::list::Entry::Object {
                version, is_latest, ..
            } => (version.version_id.clone(), *is_latest),
            crate::object::list::Entry::Prefix(p) => (p.clone(), false),
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            (marker.clone(), true),
            (v2.clone(), false),
            (v1.clone(), false)
        ]
    );
    assert!(l
        .list_objects("b", "", None, "", 10)
        .await
        .unwrap()
        .entries
        .is_empty());
    l.delete_object("b", "k", delete(Some(&marker), Bypass::default()))
        .await
        .unwrap();
    assert_eq!(
        l.head_object("b", "k", None)
            .await
            .unwrap()
            .version
            .version_id,
        v2
    );
    assert!(matches!(
        l.delete_object("b", "k", delete(Some("bogus"), Bypass::default()))
            .await,
        Err(ObjectError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn locked_version_is_removed_only_after_the_clock_passes() {
    let disks: Vec<_> = (0..4).map(|_| MemoryDisk::new()).collect();
    let (l, clock) = layer(&disks);
    let until = clock.now_ns() + 10 * SEC;
    let lock = LockState {
        mode: Some(LockMode::Compliance),
        retain_until_ns: until,
        legal_hold: false,
    };
    let v = put(&l, "k", lock).await;
    let root = Bypass {
        header: true,
        allowed: true,
    };
    assert!(matches!(
        l.delete_object("b", "k", delete(Some(&v), root)).await,
        Err(ObjectError::Locked(retention::LockDenied::Compliance))
    ));
    // A marker write removes nothing and is always allowed.
    l.delete_object("b", "k", delete(None, root)).await.unwrap();
    // Shortening through the guarded update is refused, and changes nothing.
    let now = clock.now_ns();
    let shorten = l
        .update_version_if(
            "b",
            "k",
            Some(&v),
            |cur| {
                retention::check_retention_change(
                    &LockState::of(cur),
                    Some((LockMode::Compliance, now + SEC)),
                    root,
                    now,
                )
                .map_err(ObjectError::Locked)
            },
            |cur| cur.retain_until_ns = now + SEC,
        )
        .await;
    assert!(matches!(shorten, Err(ObjectError::Locked(_))));
    let info = l.head_object("b", "k", Some(&v)).await.unwrap();
    assert_eq!(info.version.retain_until_ns, until);

    clock.0.store(until, Ordering::SeqCst);
    l.delete_object("b", "k", delete(Some(&v), Bypass::default()))
        .await
        .unwrap();
    assert!(matches!(
        l.head_object("b", "k", Some(&v)).await,
        Err(ObjectError::NoSuchVersion)
    ));
}

#[tokio::test]
async fn removal_below_write_quorum_rolls_back() {
    let disks: Vec<_> = (0..4).map(|_| MemoryDisk::new()).collect();
    let (l, _) = layer(&disks);
    let v1 = put(&l, "k", LockState::default()).await;
    let v2 = put(&l, "k", LockState::default()).await;
    // Two of four drives answer: enough to read (2), not to write (3).
    disks[0].set_offline(true);
    disks[1].set_offline(true);
    assert!(matches!(
        l.delete_object("b", "k", delete(Some(&v1), Bypass::default()))
            .await,
        Err(ObjectError::WriteQuorum { .. })
    ));
    disks[0].set_offline(false);
    disks[1].set_offline(false);
    let page = l
        .list_object_versions("b", "", None, "", None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.entries.len(),
        2,
        "both versions survive the failed removal"
    );
    assert_eq!(
        l.head_object("b", "k", Some(&v1))
            .await
            .unwrap()
            .version
            .version_id,
        v1
    );
    assert_eq!(
        l.head_object("b", "k", None)
            .await
            .unwrap()
            .version
            .version_id,
        v2
    );
}

#[tokio::test]
async fn a_removal_to_replicate_leaves_its_mark_in_the_same_write() {
    let disks: Vec<_> = (0..4).map(|_| MemoryDisk::new()).collect();
    let (l, _) = layer(&disks);
    let v = put(&l, "k", LockState::default()).await;
    let held = put(
        &l,
        "h",
        LockState {
            legal_hold: true,
            ..Default::default()
        },
    )
    .await;
    let pending = crate::object::replica::Replication::Pending;
    let req = |id| DeleteRequest {
        replication: &pending,
        ..delete(Some(id), Bypass::default())
    };
    l.delete_object("b", "k", req(v.as_str())).await.unwrap();
    assert!(matches!(
        l.delete_object("b", "h", req(held.as_str())).await,
        Err(ObjectError::Locked(retention::LockDenied::LegalHold))
    ));
    let marks = l.pending_purges(10).await;
    assert_eq!(marks.len(), 1, "{marks:?}: the refused removal left none");
    assert_eq!((marks[0].key.as_str(), &marks[0].version_id), ("k", &v));
    // Every drive holds it, so any one of them is enough to find it.
    for d in &disks[..3] {
        d.set_offline(true);
    }
    assert!(l.purge_mark("b", "k", &v).await.is_some());
    for d in &disks[..3] {
        d.set_offline(false);
    }
    l.clear_purge("b", "k", &v).await;
    assert!(l.pending_purges(10).await.is_empty());
    // A peer's removal (no replication) leaves no mark.
    let w = put(&l, "k", LockState::default()).await;
    l.delete_object("b", "k", delete(Some(&w), Bypass::default()))
        .await
        .unwrap();
    assert!(l.pending_purges(10).await.is_empty());
}

#[tokio::test]
async fn a_peers_metadata_applies_over_older_changes_and_never_weakens_compliance() {
    use crate::object::metadata::{Field, Metadata, PeerMetadata};
    let disks: Vec<_> = (0..4).map(|_| MemoryDisk::new()).collect();
    let (l, clock) = layer(&disks);
    let until = clock.now_ns() + 100 * SEC;
    let v = put(
        &l,
        "k",
        LockState {
            mode: Some(LockMode::Compliance),
            retain_until_ns: until,
            legal_hold: false,
        },
    )
    .await;
    let tag = |v: &mut ObjectVersion, value: &str| {
        v.tags = vec![cairn_proto::meta::KeyValue {
            key: "t".into(),
            value: value.into(),
        }]
    };
    let here = l
        .change_metadata(
            "b",
            "k",
            Some(&v),
            Field::Tags,
            true,
            |_| Ok(()),
            |x| tag(x, "here"),
        )
        .await
        .unwrap()
        .version;
    assert_eq!(here.metadata_replication, crate::object::replica::PENDING);
    let mut theirs = Metadata::of(&here);
    theirs.tags = vec![("t".into(), "older".into())];
    theirs.tags_changed_ns = here.tags_changed_ns - 1;
    assert_eq!(
        l.apply_peer_metadata("b", "k", &v, &theirs).await.unwrap(),
        PeerMetadata::Stale
    );
    theirs.tags = vec![("t".into(), "newer".into())];
    theirs.tags_changed_ns = here.tags_changed_ns + 1;
    // Removing the COMPLIANCE retention, however new, is refused; the tags still apply.
    theirs.lock_mode.clear();
    theirs.retain_until_ns = 0;
    theirs.retention_changed_ns = i64::MAX / 2;
    assert_eq!(
        l.apply_peer_metadata("b", "k", &v, &theirs).await.unwrap(),
        PeerMetadata::Refused(retention::LockDenied::Compliance)
    );
    let now = l.head_object("b", "k", Some(&v)).await.unwrap().version;
    assert_eq!(now.tags[0].value, "newer");
    assert_eq!(
        (now.lock_mode.as_str(), now.retain_until_ns),
        ("COMPLIANCE", until)
    );
    // The mark is cleared only for the changes that were sent.
    l.settle_metadata("b", "k", &v, &Metadata::of(&here))
        .await
        .unwrap();
    let after = l.head_object("b", "k", Some(&v)).await.unwrap().version;
    assert_eq!(after.metadata_replication, crate::object::replica::PENDING);
    l.settle_metadata("b", "k", &v, &Metadata::of(&after))
        .await
        .unwrap();
    let settled = l.head_object("b", "k", Some(&v)).await.unwrap().version;
    assert!(settled.metadata_replication.is_empty());
}

/// The latest version of `key` as `l` resolves it (a marker too).
async fn latest(l: &ObjectLayer, key: &str) -> ObjectVersion {
    l.resolve("b", key, None).await.unwrap().version
}

/// Sends version `id` of `key` from `from` to `to` as site replication does: a replica keeps
/// its origin's id, time and ETag.
async fn replicate(from: &ObjectLayer, to: &ObjectLayer, key: &str, id: &str) {
    use crate::object::replica::{ReplicaOf, Replication};
    let v = from.head_version("b", key, id).await.unwrap();
    let replication = Replication::Replica(ReplicaOf {
        version_id: v.version_id.clone(),
        mod_time_ns: v.mod_time_ns,
        etag: (!v.delete_marker).then(|| v.etag.clone()),
    });
    if v.delete_marker {
        let req = DeleteRequest {
            replication: &replication,
            ..delete(None, Bypass::default())
        };
        to.delete_object("b", key, req).await.unwrap();
        return;
    }
    let body = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]);
    let opts = PutOptions {
        versioning: Versioning::Enabled,
        replication,
        ..Default::default()
    };
    to.put_object("b", key, body, (), opts, |_| Ok(vec![]))
        .await
        .unwrap();
}

/// Simulator seed 172's cause, on one site: a node whose clock runs behind writes over a
/// version another node wrote; the later write must be the latest, not the one the faster
/// clock stamped later.
#[tokio::test]
async fn a_write_through_a_node_whose_clock_is_behind_still_wins() {
    let disks: Vec<_> = (0..4).map(|_| MemoryDisk::new()).collect();
    // Two nodes of one site: each its own clock, both over the same drives.
    let shared = drives(&disks);
    let (fast, _) = layer_over(shared.clone(), 3);
    let (slow, slow_clock) = layer_over(shared, 4);
    slow_clock.0.fetch_sub(100 * SEC, Ordering::SeqCst);
    let first = put(&fast, "k", LockState::default()).await;
    let second = put(&slow, "k", LockState::default()).await;
    let v = latest(&fast, "k").await;
    assert_eq!(v.version_id, second, "the later write is the latest");
    let older = fast.head_version("b", "k", &first).await.unwrap();
    assert!(v.mod_time_ns > older.mod_time_ns);
    // A marker and an overwrite through the slow node order after it too.
    let marker = slow
        .delete_object("b", "k", delete(None, Bypass::default()))
        .await
        .unwrap()
        .version_id
        .unwrap();
    assert_eq!(latest(&fast, "k").await.version_id, marker);
    let third = put(&fast, "k", LockState::default()).await;
    assert_eq!(latest(&slow, "k").await.version_id, third);
}

/// Two sites with clocks 100 s apart write one key at once (neither saw the other's write), then
/// exchange replicas in either order: both end with the same latest version. A write after
/// the exchange, through the site whose clock is behind, is the latest on both.
#[tokio::test]
async fn concurrent_writes_on_two_sites_end_with_the_same_latest_version() {
    let (a_disks, b_disks): (Vec<_>, Vec<_>) = (0..4)
        .map(|_| (MemoryDisk::new(), MemoryDisk::new()))
        .unzip();
    let (a, _) = layer(&a_disks);
    let (b, b_clock) = layer_over(drives(&b_disks), 4);
    b_clock.0.fetch_sub(100 * SEC, Ordering::SeqCst);
    let on_a = put(&a, "k", LockState::default()).await;
    let on_b = put(&b, "k", LockState::default()).await;
    replicate(&b, &a, "k", &on_b).await;
    replicate(&a, &b, "k", &on_a).await;
    let (la, lb) = (latest(&a, "k").await, latest(&b, "k").await);
    assert_eq!(la.version_id, lb.version_id, "the same latest on both");
    assert_eq!(la.version_id, on_a, "concurrent: the greater stamp");

    let after = put(&b, "k", LockState::default()).await;
    replicate(&b, &a, "k", &after).await;
    assert_eq!(latest(&a, "k").await.version_id, after);
    assert_eq!(latest(&b, "k").await.version_id, after);
    let marker = b
        .delete_object("b", "k", delete(None, Bypass::default()))
        .await
        .unwrap()
        .version_id
        .unwrap();
    replicate(&b, &a, "k", &marker).await;
    assert_eq!(latest(&a, "k").await.version_id, marker);
    // The replicas moved a's clock past what it saw: its next write orders after them even
    // on another key.
    let other = put(&a, "other", LockState::default()).await;
    let t = a.head_version("b", "other", &other).await.unwrap();
    assert!(t.mod_time_ns > latest(&a, "k").await.mod_time_ns);
}
