//! Settling a write: telling a version that was never acknowledged from one that was, on the
//! drives alone, whatever became of its coordinator.
//!
//! A write (PUT, delete marker, multipart completion, replica) records its version on every drive
//! as *pending*, stamped with the write's deadline ([`ObjectVersion::pending_until_ns`]); once
//! write quorum holds it, the coordinator *commits* it (clears the mark on every drive that took
//! it), and acknowledges the write only when write quorum committed. Both batches carry the
//! deadline ([`MetaOp::NotAfter`]): a peer's data service refuses either after it, however late
//! it arrives (a paused peer, simulator seed 117), and the coordinator sends no commit after it
//! (its own drives take a batch as it is sent).
//!
//! So an acknowledged version is committed on at least write quorum drives, and at most `parity`
//! of those can be lost (beyond that its data is gone too). A version of which fewer committed
//! copies are seen than `write quorum - parity`, counting every drive that did not answer as one,
//! was never acknowledged ([`unacknowledged`]): reads take it out, with what it replaced put back
//! where the drive kept that (its coordinator crashed, or its rollback could not reach a drive),
//! and heal removes it once its deadline has passed, with a margin for clock skew between nodes
//! ([`SETTLE_MARGIN_NS`]). Its object lock is not asked: a lock protects an acknowledged version,
//! and this one never was (simulator seed 33: a COMPLIANCE PUT cut by its coordinator's crash).
//! Three wiped drives of six still leave the three committed copies an acknowledged version has
//! there: unreadable (503), never absent.

use futures::future::join_all;
use prost::Message;

use cairn_proto::meta::{ObjectRecord, ObjectVersion};

use super::quorum::same_version;
use super::set::{decode_record, ErasureSet};
use super::{replica, swap_record, RecordChange};
use crate::clock::Clock;
use crate::drive::{DriveError, MetaOp};

/// How long a write may take from its first record change to its commit. Generous: phase 1
/// waits for every drive, and a hung peer's calls each take up to 10 s before they count as
/// failed; a write past it fails (503) rather than commits.
pub const WRITE_WINDOW_NS: i64 = 60 * 1_000_000_000;

/// How long after a pending version's deadline heal waits before removing it: the deadline is
/// on the coordinator's clock, heal reads its own.
pub const SETTLE_MARGIN_NS: i64 = 60 * 1_000_000_000;

type Records = [Result<Option<ObjectRecord>, DriveError>];

/// A write being settled: its version (as the coordinator holds it), its deadline, and the
/// coordinator's clock.
#[derive(Clone, Copy)]
pub struct Pending<'a> {
    pub version: &'a ObjectVersion,
    pub deadline_ns: i64,
    pub clock: &'a dyn Clock,
}

/// Second phase of a write whose records reached write quorum: clears the pending mark of the
/// version on every drive whose first phase succeeded. Returns, per drive, whether it committed.
/// A drive whose record changed since phase 1 (another node's write, a heal) is committed over
/// its newer record, if that still holds the version.
pub(super) async fn commit(
    set: &ErasureSet,
    meta_key: &[u8],
    p: Pending<'_>,
    phase1: &[RecordChange],
) -> Vec<bool> {
    if p.clock.now_ns() > p.deadline_ns {
        tracing::warn!("write took longer than its window; not committed");
        return vec![false; set.size()];
    }
    join_all(set.drives.iter().zip(phase1).map(|(drive, r)| async move {
        let Ok(c) = r else { return false };
        let fence = MetaOp::NotAfter(p.deadline_ns);
        // Fast path: the record is still what phase 1 wrote; one batch, no read.
        if let Some(mut record) = c.after.as_deref().and_then(|a| decode_record(a).ok()) {
            if mark_committed(&mut record, p.version) {
                let ops = vec![
                    fence.clone(),
                    MetaOp::Expect(meta_key.to_vec(), c.after.clone()),
                    MetaOp::Put(meta_key.to_vec(), record.encode_to_vec()),
                ];
                match drive.apply(ops).await {
                    Ok(()) => return true,
                    Err(DriveError::Conflict) => {}
                    Err(e) => {
                        tracing::warn!(drive = drive.label(), error = %e, "commit failed");
                        return false;
                    }
                }
            }
        }
        match swap_record(drive.as_ref(), meta_key, &[fence], |record| {
            mark_committed(record, p.version)
        })
        .await
        {
            Ok((_, _, found)) => found,
            Err(e) => {
                tracing::warn!(drive = drive.label(), error = %e, "commit failed");
                false
            }
        }
    }))
    .await
}

/// Clears the pending mark of `v` in `record`; false if the record does not hold it.
pub(super) fn mark_committed(record: &mut ObjectRecord, v: &ObjectVersion) -> bool {
    let mut found = false;
    for x in record.versions.iter_mut().filter(|x| same_version(x, v)) {
        x.pending_until_ns = 0;
        found = true;
    }
    found
}

/// The pending versions in `records` that were never acknowledged: no drive shows them
/// committed in enough places for write quorum to have committed them, even counting every
/// drive that did not answer as a committed copy and `parity` more as lost.
pub fn unacknowledged(
    records: &Records,
    read_quorum: usize,
    write_quorum: usize,
) -> Vec<ObjectVersion> {
    let parity = records.len().saturating_sub(read_quorum);
    let silent = records.iter().filter(|r| r.is_err()).count();
    let held = || {
        records
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(Option::as_ref))
    };
    let mut out: Vec<ObjectVersion> = Vec::new();
    for v in held()
        .flat_map(|r| &r.versions)
        .filter(|v| v.pending_until_ns != 0)
    {
        if out.iter().any(|o| same_version(o, v)) {
            continue;
        }
        let committed = held()
            .filter(|r| {
                r.versions
                    .iter()
                    .chain(&r.replaced)
                    .any(|x| same_version(x, v) && x.pending_until_ns == 0)
            })
            .count();
        if committed + silent + parity < write_quorum {
            out.push(v.clone());
        }
    }
    out
}

/// Takes the versions of `gone` out of `record`; where one of them had replaced a version of
/// the same id (`ObjectRecord::replaced`: the drive's latest change), that version is back.
pub fn take_out(record: &mut ObjectRecord, gone: &[ObjectVersion]) {
    let is_gone = |x: &ObjectVersion| gone.iter().any(|g| same_version(g, x));
    let ids: Vec<String> = record
        .versions
        .iter()
        .filter(|x| is_gone(x))
        .map(|x| x.version_id.clone())
        .collect();
    record.versions.retain(|x| !is_gone(x));
    for r in std::mem::take(&mut record.replaced) {
        if is_gone(&r) {
            continue;
        }
        // A later change of the same id would hold the id itself (and have replaced the gone
        // version): only an id nothing holds any more gets its replaced version back.
        if ids.contains(&r.version_id)
            && record.versions.iter().all(|x| x.version_id != r.version_id)
        {
            let at = replica::position(record, &r);
            record.versions.insert(at, r);
        } else {
            record.replaced.push(r);
        }
    }
}

/// `records` as reads see them: with every version that was never acknowledged taken out;
/// `None` when there is none (the common case: nothing to copy).
pub fn settled(
    records: &Records,
    read_quorum: usize,
    write_quorum: usize,
) -> Option<Vec<Result<Option<ObjectRecord>, DriveError>>> {
    let gone = unacknowledged(records, read_quorum, write_quorum);
    if gone.is_empty() {
        return None;
    }
    Some(
        records
            .iter()
            .map(|r| match r {
                Ok(Some(rec)) => {
                    let mut rec = rec.clone();
                    take_out(&mut rec, &gone);
                    Ok(Some(rec))
                }
                Ok(None) => Ok(None),
                Err(_) => Err(DriveError::Offline),
            })
            .collect(),
    )
}

/// The records of the drives that answered, as reads see them ([`settled`]).
pub fn settled_answers(
    records: &Records,
    read_quorum: usize,
    write_quorum: usize,
) -> Vec<ObjectRecord> {
    let settled = settled(records, read_quorum, write_quorum);
    settled
        .as_deref()
        .unwrap_or(records)
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(Option::clone))
        .collect()
}

#[cfg(test)]
mod tests;
