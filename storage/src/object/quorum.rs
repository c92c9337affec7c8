//! Deciding what a set of drives agrees on. A version exists when at least `read_quorum` drives hold
//! identical copies of it; it is known absent when enough drives lack it that no quorum write can
//! have happened; anything between is not safe to answer.

use cairn_proto::meta::{ObjectRecord, ObjectVersion};

use super::error::{ObjectError, ObjectResult};
use crate::drive::DriveError;

/// What identifies one write of a version across drives (shard index and inline bytes differ per drive).
pub fn same_version(a: &ObjectVersion, b: &ObjectVersion) -> bool {
    a.version_id == b.version_id
        && a.mod_time_ns == b.mod_time_ns
        && a.etag == b.etag
        && a.size == b.size
        && a.data_dir == b.data_dir
        && a.delete_marker == b.delete_marker
}

/// The agreed version of a key, with each drive's own copy of it (None where a drive lacks it).
pub struct Resolved {
    pub version: ObjectVersion,
    pub copies: Vec<Option<ObjectVersion>>,
}

impl Resolved {
    pub fn holders(&self) -> usize {
        self.copies.iter().filter(|c| c.is_some()).count()
    }
}

fn pick<'a>(rec: &'a ObjectRecord, version_id: Option<&str>) -> Option<&'a ObjectVersion> {
    match version_id {
        None => rec.versions.first(),
        Some(id) => rec.versions.iter().find(|v| v.version_id == id),
    }
}

/// Resolves the latest version (or `version_id`) from every drive's record.
pub fn resolve(
    records: &[Result<Option<ObjectRecord>, DriveError>],
    version_id: Option<&str>,
    read_quorum: usize,
    write_quorum: usize,
) -> ObjectResult<Resolved> {
    // Versions that were never acknowledged are not there for a read (`settle`).
    let settled = super::settle::settled(records, read_quorum, write_quorum);
    let records = settled.as_deref().unwrap_or(records);
    let answered = records.iter().filter(|r| r.is_ok()).count();
    if answered < read_quorum {
        return Err(ObjectError::ReadQuorum {
            have: answered,
            need: read_quorum,
        });
    }
    let candidates: Vec<Option<&ObjectVersion>> = records
        .iter()
        .map(|r| {
            r.as_ref()
                .ok()
                .and_then(|o| o.as_ref())
                .and_then(|rec| pick(rec, version_id))
        })
        .collect();
    // The candidate with the most identical copies; ties go to the newest.
    let mut best: Option<(&ObjectVersion, usize)> = None;
    for v in candidates.iter().flatten() {
        let n = candidates
            .iter()
            .flatten()
            .filter(|o| same_version(o, v))
            .count();
        let better = match best {
            None => true,
            Some((b, bn)) => n > bn || (n == bn && v.mod_time_ns > b.mod_time_ns),
        };
        if better {
            best = Some((v, n));
        }
    }
    let absent = candidates
        .iter()
        .zip(records)
        .filter(|(c, r)| c.is_none() && r.is_ok())
        .count();
    match best {
        Some((v, n)) if n >= read_quorum => {
            let copies = candidates
                .iter()
                .map(|c| c.filter(|o| same_version(o, v)).cloned())
                .collect();
            let mut version = v.clone();
            version.inline_data.clear();
            version.pending_until_ns = 0;
            Ok(Resolved { version, copies })
        }
        _ if absent >= write_quorum || best.is_none() && absent >= read_quorum => {
            Err(if version_id.is_some() {
                ObjectError::NoSuchVersion
            } else {
                ObjectError::NoSuchKey
            })
        }
        best => fallback(records, version_id, read_quorum, write_quorum).ok_or(
            ObjectError::ReadQuorum {
                have: best.map_or(0, |(_, n)| n),
                need: read_quorum,
            },
        ),
    }
}

/// When no version has a read quorum of current copies, a change may be stuck below write
/// quorum on some drives (its coordinator crashed, or could not reach them to roll back). Those
/// drives still hold what the change replaced (`ObjectRecord::replaced`), which counts as well,
/// but only where the change is known to have failed: so few drives answered with it, even
/// counting every drive that did not answer, that it cannot have reached write quorum (and so
/// cannot have been acknowledged). Each drive counts once per version, whichever list holds it.
fn fallback(
    records: &[Result<Option<ObjectRecord>, DriveError>],
    version_id: Option<&str>,
    read_quorum: usize,
    write_quorum: usize,
) -> Option<Resolved> {
    let current: Vec<Option<&ObjectVersion>> = records
        .iter()
        .map(|r| match r {
            Ok(Some(rec)) => pick(rec, version_id),
            _ => None,
        })
        .collect();
    let silent = records.iter().filter(|r| r.is_err()).count();
    let failed = |head: Option<&ObjectVersion>| {
        let holders = current
            .iter()
            .zip(records)
            .filter(|(c, r)| {
                r.is_ok()
                    && match (c, head) {
                        (Some(c), Some(h)) => same_version(c, h),
                        (None, None) => true,
                        _ => false,
                    }
            })
            .count();
        holders + silent < write_quorum
    };
    let offers: Vec<[Option<&ObjectVersion>; 2]> = records
        .iter()
        .zip(&current)
        .map(|(r, &head)| match r {
            Ok(Some(rec)) if failed(head) => [
                head,
                match version_id {
                    None => rec.replaced.first(),
                    Some(id) => rec.replaced.iter().find(|v| v.version_id == id),
                },
            ],
            _ => [head, None],
        })
        .collect();
    fn holds<'a>(
        o: &[Option<&'a ObjectVersion>; 2],
        v: &ObjectVersion,
    ) -> Option<&'a ObjectVersion> {
        o.iter().flatten().find(|c| same_version(c, v)).copied()
    }
    // `w` superseded `v` where a drive holds `w` over `v` replaced: that drive saw the change
    // from one to the other, an order modification times (skewed between nodes) cannot give.
    let supersedes = |w: &ObjectVersion, v: &ObjectVersion| {
        records.iter().any(|r| match r {
            Ok(Some(rec)) => {
                pick(rec, version_id).is_some_and(|h| same_version(h, w))
                    && rec.replaced.iter().any(|x| same_version(x, v))
            }
            _ => false,
        })
    };
    let mut best: Option<(&ObjectVersion, usize)> = None;
    for v in offers.iter().flatten().flatten() {
        let n = offers.iter().filter(|o| holds(o, v).is_some()).count();
        let better = match best {
            None => true,
            Some((b, bn)) => {
                n > bn
                    || (n == bn
                        && (supersedes(v, b)
                            || (!supersedes(b, v) && v.mod_time_ns > b.mod_time_ns)))
            }
        };
        if better {
            best = Some((v, n));
        }
    }
    let (v, _) = best.filter(|(_, n)| *n >= read_quorum)?;
    let copies = offers.iter().map(|o| holds(o, v).cloned()).collect();
    let mut version = v.clone();
    version.inline_data.clear();
    version.pending_until_ns = 0;
    Some(Resolved { version, copies })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(etag: &str) -> Result<Option<ObjectRecord>, DriveError> {
        Ok(Some(ObjectRecord {
            versions: vec![ObjectVersion {
                version_id: "null".into(),
                etag: etag.into(),
                mod_time_ns: 1,
                ..Default::default()
            }],
            replaced: vec![],
        }))
    }

    #[test]
    fn quorum_found() {
        let rs = vec![
            rec("a"),
            rec("a"),
            rec("a"),
            rec("a"),
            Ok(None),
            Err(DriveError::Offline),
        ];
        let r = resolve(&rs, None, 4, 4).unwrap();
        assert_eq!(r.version.etag, "a");
        assert_eq!(r.holders(), 4);
    }

    #[test]
    fn absent_when_write_quorum_lacks_it() {
        let rs = vec![rec("a"), rec("a"), Ok(None), Ok(None), Ok(None), Ok(None)];
        assert!(matches!(
            resolve(&rs, None, 4, 4),
            Err(ObjectError::NoSuchKey)
        ));
    }

    #[test]
    fn ambiguous_is_a_quorum_error() {
        // Three copies of the four a write needs, the rest empty: three drives may have been
        // wiped (an operator may still restore them), so unreadable, not absent.
        let rs = vec![rec("a"), rec("a"), rec("a"), Ok(None), Ok(None), Ok(None)];
        assert!(matches!(
            resolve(&rs, None, 4, 4),
            Err(ObjectError::ReadQuorum { .. })
        ));
        let rs = vec![
            rec("a"),
            rec("a"),
            Err(DriveError::Offline),
            Err(DriveError::Offline),
            Err(DriveError::Offline),
            rec("a"),
        ];
        assert!(matches!(
            resolve(&rs, None, 4, 4),
            Err(ObjectError::ReadQuorum { .. })
        ));
    }

    /// A removal that reached two drives before its coordinator crashed (tombstones holding the
    /// removed version) must not hide the version the other two drives still hold.
    #[test]
    fn a_stuck_change_falls_back_to_what_it_replaced() {
        let stuck = |replaced: &str| {
            Ok(Some(ObjectRecord {
                versions: vec![],
                replaced: rec(replaced).unwrap().unwrap().versions,
            }))
        };
        let rs = vec![
            stuck("a"),
            stuck("a"),
            rec("a"),
            rec("a"),
            rec("old"),
            rec("old"),
        ];
        let r = resolve(&rs, None, 4, 4).unwrap();
        assert_eq!(r.version.etag, "a");
        assert_eq!(r.holders(), 4);
        // Without the replaced copies there is no quorum to fall back to.
        let rs = vec![
            stuck("x"),
            stuck("x"),
            rec("a"),
            rec("a"),
            rec("old"),
            rec("old"),
        ];
        assert!(matches!(
            resolve(&rs, None, 4, 4),
            Err(ObjectError::ReadQuorum { .. })
        ));
        // A settled change (current copies at quorum) never looks at what it replaced.
        let settled = |cur: &str, old: &str| {
            Ok(Some(ObjectRecord {
                versions: rec(cur).unwrap().unwrap().versions,
                replaced: rec(old).unwrap().unwrap().versions,
            }))
        };
        let rs = vec![
            settled("b", "a"),
            settled("b", "a"),
            settled("b", "a"),
            settled("b", "a"),
            rec("a"),
            rec("a"),
        ];
        assert_eq!(resolve(&rs, None, 4, 4).unwrap().version.etag, "b");
        // A change that may have reached write quorum (a drive holding it did not answer) may
        // have been acknowledged: what it replaced is stale, and the read must fail instead.
        let rs = vec![
            settled("b", "a"),
            settled("b", "a"),
            settled("b", "a"),
            Err(DriveError::Offline),
            rec("a"),
            rec("a"),
        ];
        assert!(matches!(
            resolve(&rs, None, 4, 4),
            Err(ObjectError::ReadQuorum { .. })
        ));
    }

    fn over(
        cur: &str,
        cur_ns: i64,
        old: &str,
        old_ns: i64,
    ) -> Result<Option<ObjectRecord>, DriveError> {
        let v = |etag: &str, ns: i64| ObjectVersion {
            version_id: "null".into(),
            etag: etag.into(),
            mod_time_ns: ns,
            ..Default::default()
        };
        Ok(Some(ObjectRecord {
            versions: vec![v(cur, cur_ns)],
            replaced: vec![v(old, old_ns)],
        }))
    }

    /// Simulator seed 172: `acked` was written through a node whose clock ran 80 s behind, over
    /// `stale` (two drives missed it); a failed PUT then landed on two of its drives. `acked` and
    /// `stale` both reach read quorum through what the changes replaced, and the clocks would
    /// pick `stale`; the drives that replaced `stale` by `acked` say which came last.
    #[test]
    fn ties_go_to_the_version_that_superseded_the_other() {
        let rs = vec![
            over("stale", 100, "older", 90),
            over("stale", 100, "older", 90),
            over("failed", 110, "acked", 20),
            over("failed", 110, "acked", 20),
            over("acked", 20, "stale", 100),
            over("acked", 20, "stale", 100),
        ];
        assert_eq!(resolve(&rs, None, 4, 4).unwrap().version.etag, "acked");
    }

    #[test]
    fn disagreeing_copies_need_quorum_each() {
        let rs = vec![rec("a"), rec("a"), rec("a"), rec("a"), rec("b"), rec("b")];
        let r = resolve(&rs, None, 4, 4).unwrap();
        assert_eq!(r.version.etag, "a");
        assert!(r.copies[4].is_none());
    }
}
