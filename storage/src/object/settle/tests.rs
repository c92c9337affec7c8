//! Settling writes on in-memory drives with a clock the test moves: a write cut below quorum
//! (its coordinator crashed, or it landed late) is not read and is removed by heal after its
//! deadline, a locked one too; an acknowledged version is never taken for one.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cairn_control_plane::{LockMode, Versioning};
use prost::Message;

use super::*;
use crate::clock::ManualClock;
use crate::drive::memory::{MemoryDisk, MemoryDrive};
use crate::drive::Drive;
use crate::erasure::layout::Layout;
use crate::object::retention::LockState;
use crate::object::{keys, ObjectError, ObjectLayer, PutOptions};

const SEC: i64 = 1_000_000_000;

fn layer() -> (ObjectLayer, Arc<ManualClock>) {
    let drives: Vec<Arc<dyn Drive>> = (0..6)
        .map(|i| Arc::new(MemoryDrive::new(MemoryDisk::new(), format!("mem{i}"))) as _)
        .collect();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000 * SEC)));
    let (l, _heal) = ObjectLayer::new(
        drives,
        Layout::plan(6, Some(2)).unwrap(),
        "test-deployment",
        clock.clone(),
        Box::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5)),
        Arc::new(crate::object::stage::AsSent),
    )
    .unwrap();
    (l, clock)
}

async fn put(
    l: &ObjectLayer,
    body: &'static [u8],
    versioning: Versioning,
    lock: LockState,
) -> ObjectVersion {
    let body = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(body))]);
    let opts = PutOptions {
        versioning,
        lock,
        ..Default::default()
    };
    l.put_object("b", "k", body, (), opts, |_| Ok(vec![]))
        .await
        .unwrap()
        .version
}

/// Rewrites drive `d`'s record of the key with `f`.
async fn edit(l: &ObjectLayer, d: usize, f: impl FnOnce(&mut ObjectRecord)) {
    let drive = &l.sets[0].drives[d];
    let key = keys::object("b", "k");
    let mut rec = drive
        .get(&key)
        .await
        .unwrap()
        .map(|raw| decode_record(&raw).unwrap())
        .unwrap_or_default();
    f(&mut rec);
    let op = if rec.versions.is_empty() {
        MetaOp::Delete(key)
    } else {
        MetaOp::Put(key, rec.encode_to_vec())
    };
    drive.apply(vec![op]).await.unwrap();
}

/// What every drive's record holds of version `id`: None where it lacks it, else its pending mark.
async fn copies(l: &ObjectLayer, id: &str) -> Vec<Option<i64>> {
    let records = l.sets[0].read_records(&keys::object("b", "k")).await;
    records
        .iter()
        .map(|r| {
            r.as_ref()
                .unwrap()
                .as_ref()
                .and_then(|rec| rec.versions.iter().find(|v| v.version_id == id))
                .map(|v| v.pending_until_ns)
        })
        .collect()
}

/// Simulator seed 33: a COMPLIANCE PUT whose coordinator crashed after its first phase reached
/// two drives of six. Reads show the version before it; heal leaves it while its deadline may
/// still let a commit land, then removes it although the lock would refuse a removal (it was
/// never acknowledged), and a second heal finds nothing.
#[tokio::test]
async fn heal_settles_a_locked_write_cut_below_quorum() {
    let (l, clock) = layer();
    let v0 = put(&l, b"first", Versioning::Enabled, LockState::default()).await;
    let locked = LockState {
        mode: Some(LockMode::Compliance),
        retain_until_ns: clock.now_ns() + 3_600 * SEC,
        legal_hold: false,
    };
    let v1 = put(&l, b"second", Versioning::Enabled, locked).await;
    assert_eq!(
        copies(&l, &v1.version_id).await,
        vec![Some(0); 6],
        "an acknowledged write is committed everywhere"
    );
    // As the cut write left it: pending on drives 0 and 1 only.
    let deadline = clock.now_ns() + WRITE_WINDOW_NS;
    for d in 0..6 {
        edit(&l, d, |rec| {
            if d < 2 {
                rec.versions[0].pending_until_ns = deadline;
            } else {
                rec.versions.retain(|v| v.version_id != v1.version_id);
            }
        })
        .await;
    }
    let latest = l.head_object("b", "k", None).await.unwrap();
    assert_eq!(latest.version.version_id, v0.version_id);
    assert!(matches!(
        l.head_object("b", "k", Some(&v1.version_id)).await,
        Err(ObjectError::NoSuchVersion)
    ));

    // Within the deadline and its margin a late commit could still land: left alone.
    clock.0.store(deadline + SETTLE_MARGIN_NS, Ordering::SeqCst);
    let s = l.heal_object("b", "k").await.unwrap();
    assert_eq!(s.dangling_removed, 0);
    assert_eq!(copies(&l, &v1.version_id).await[..2], [Some(deadline); 2]);

    clock
        .0
        .store(deadline + SETTLE_MARGIN_NS + 1, Ordering::SeqCst);
    let s = l.heal_object("b", "k").await.unwrap();
    assert_eq!(s.dangling_removed, 1);
    assert_eq!(copies(&l, &v1.version_id).await, vec![None; 6]);
    assert_eq!(copies(&l, &v0.version_id).await, vec![Some(0); 6]);
    let again = l.heal_object("b", "k").await.unwrap();
    assert_eq!((again.dangling_removed, again.shards_written), (0, 0));
}

/// An acknowledged version is committed on write quorum: with two committed copies seen (and
/// two drives' worth of parity that may have been lost) it may have been, so it is neither
/// read past nor removed, whatever its age.
#[tokio::test]
async fn an_acknowledged_version_is_never_settled_away() {
    let (l, clock) = layer();
    put(&l, b"first", Versioning::Enabled, LockState::default()).await;
    let v1 = put(&l, b"second", Versioning::Enabled, LockState::default()).await;
    for d in 0..6 {
        edit(&l, d, |rec| match d {
            0 | 1 => {}
            2 | 3 => rec.versions[0].pending_until_ns = clock.now_ns(),
            _ => rec.versions.retain(|v| v.version_id != v1.version_id),
        })
        .await;
    }
    clock
        .0
        .fetch_add(3 * (WRITE_WINDOW_NS + SETTLE_MARGIN_NS), Ordering::SeqCst);
    let latest = l.head_object("b", "k", None).await.unwrap();
    assert_eq!(latest.version.version_id, v1.version_id);
    assert_eq!(l.heal_object("b", "k").await.unwrap().dangling_removed, 0);
    // Heal committed the pending copies of the version it read.
    assert_eq!(copies(&l, &v1.version_id).await[..4], [Some(0); 4]);
}

/// Simulator seed 117: an acknowledged DELETE missed drives 0 and 1, and a PUT that answered
/// 503 landed later on drives 2 and 3. The late write was never committed: the key reads as
/// the DELETE left it (404), not unreadable (503) for good.
#[tokio::test]
async fn a_failed_write_that_landed_late_reads_as_absent() {
    let (l, clock) = layer();
    put(&l, b"first", Versioning::Unversioned, LockState::default()).await;
    let late = ObjectVersion {
        etag: "late".into(),
        mod_time_ns: clock.now_ns() + SEC,
        pending_until_ns: clock.now_ns() + WRITE_WINDOW_NS,
        ..copies_of(&l).await
    };
    for d in 2..6 {
        let late = late.clone();
        edit(&l, d, |rec| {
            *rec = ObjectRecord::default();
            if d < 4 {
                rec.versions.push(late);
            }
        })
        .await;
    }
    assert!(matches!(
        l.head_object("b", "k", None).await,
        Err(ObjectError::NoSuchKey)
    ));
    // The same records with the late write committed: it may have been acknowledged, so the
    // key is unreadable rather than absent (as three wiped drives of six are).
    for d in 2..4 {
        edit(&l, d, |rec| rec.versions[0].pending_until_ns = 0).await;
    }
    assert!(matches!(
        l.head_object("b", "k", None).await,
        Err(ObjectError::ReadQuorum { .. })
    ));
}

/// Drive 0's copy of the key's latest version.
async fn copies_of(l: &ObjectLayer) -> ObjectVersion {
    let raw = l.sets[0].drives[0]
        .get(&keys::object("b", "k"))
        .await
        .unwrap()
        .unwrap();
    decode_record(&raw).unwrap().versions[0].clone()
}

#[test]
fn a_version_with_a_committed_copy_short_of_quorum_is_unacknowledged() {
    let v = |pending: i64| ObjectVersion {
        version_id: "null".into(),
        etag: "a".into(),
        mod_time_ns: 5,
        pending_until_ns: pending,
        ..Default::default()
    };
    let rec = |v: ObjectVersion| {
        Ok(Some(ObjectRecord {
            versions: vec![v],
            replaced: vec![],
        }))
    };
    // One committed copy (its commit reached one drive): at most 1 + 2 lost < 4.
    let rs = vec![
        rec(v(0)),
        rec(v(9)),
        rec(v(9)),
        Ok(None),
        Ok(None),
        Ok(None),
    ];
    assert_eq!(unacknowledged(&rs, 4, 4).len(), 1);
    // A drive that did not answer may hold another committed copy.
    let rs = vec![
        rec(v(0)),
        rec(v(9)),
        rec(v(9)),
        Err(DriveError::Offline),
        Ok(None),
        Ok(None),
    ];
    assert!(unacknowledged(&rs, 4, 4).is_empty());
}

/// A write whose coordinator stopped between the phases: recorded on every drive, committed on
/// none. It was never acknowledged: neither a read nor a listing shows it, and heal removes it
/// after its deadline.
#[tokio::test]
async fn a_write_recorded_everywhere_but_never_committed_is_not_shown() {
    let (l, clock) = layer();
    let v0 = put(&l, b"first", Versioning::Enabled, LockState::default()).await;
    let v1 = put(&l, b"second", Versioning::Enabled, LockState::default()).await;
    let deadline = clock.now_ns() + WRITE_WINDOW_NS;
    for d in 0..6 {
        edit(&l, d, |rec| rec.versions[0].pending_until_ns = deadline).await;
    }
    let latest = l.head_object("b", "k", None).await.unwrap();
    assert_eq!(latest.version.version_id, v0.version_id);
    let listed: Vec<String> = l
        .list_object_versions("b", "", None, "", None, 10)
        .await
        .unwrap()
        .entries
        .into_iter()
        .filter_map(|e| match e {
            crate::object::list::Entry::Object { version, .. } => Some(version.version_id),
            crate::object::list::Entry::Prefix(_) => None,
        })
        .collect();
    assert_eq!(
        listed,
        std::slice::from_ref(&v0.version_id),
        "only the acknowledged version"
    );
    clock
        .0
        .store(deadline + SETTLE_MARGIN_NS + 1, Ordering::SeqCst);
    assert_eq!(l.heal_object("b", "k").await.unwrap().dangling_removed, 1);
    assert_eq!(copies(&l, &v1.version_id).await, vec![None; 6]);
}
