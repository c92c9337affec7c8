//! Changes to a version's metadata after it was written (tags, retention, legal hold), as site
//! replication needs them. Each of the three remembers when it last changed, so a change another
//! site made applies only over an older one: last writer wins, per field (a tag change on one
//! site and a legal hold set on the other both stay, and two sites that exchanged their changes
//! hold the same metadata whichever arrived first). A change made here is marked for replication
//! in the same record write (`metadata_replication`), so a crash loses no such task; the
//! replicator clears the mark once every peer has the change.
//!
//! A peer's retention change still passes the one retention check
//! ([`retention::check_retention_change`]): a COMPLIANCE retention is never shortened or removed
//! by a replica. A GOVERNANCE one is, as its origin decided: the origin allowed it only to a
//! caller with `s3:BypassGovernanceRetention`, and IAM is the same on every paired site.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use cairn_control_plane::LockMode;
use cairn_proto::meta::{KeyValue, ObjectVersion};

use super::replica::PENDING;
use super::retention::{self, Bypass, LockDenied, LockState};
use super::{ObjectError, ObjectInfo, ObjectLayer, ObjectResult};

/// One of the metadata a version keeps after it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Tags,
    Retention,
    LegalHold,
}

fn changed_at(v: &ObjectVersion, field: Field) -> i64 {
    match field {
        Field::Tags => v.tags_changed_ns,
        Field::Retention => v.retention_changed_ns,
        Field::LegalHold => v.legal_hold_changed_ns,
    }
}

fn changed_ns(v: &mut ObjectVersion, field: Field) -> &mut i64 {
    match field {
        Field::Tags => &mut v.tags_changed_ns,
        Field::Retention => &mut v.retention_changed_ns,
        Field::LegalHold => &mut v.legal_hold_changed_ns,
    }
}

/// A version's metadata as one site sends it to another: each field with when it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub tags: Vec<(String, String)>,
    pub tags_changed_ns: i64,
    /// `GOVERNANCE`, `COMPLIANCE`, or empty for none.
    pub lock_mode: String,
    pub retain_until_ns: i64,
    pub retention_changed_ns: i64,
    pub legal_hold: bool,
    pub legal_hold_changed_ns: i64,
}

impl Metadata {
    pub fn of(v: &ObjectVersion) -> Self {
        Self {
            tags: v
                .tags
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
            tags_changed_ns: v.tags_changed_ns,
            lock_mode: v.lock_mode.clone(),
            retain_until_ns: v.retain_until_ns,
            retention_changed_ns: v.retention_changed_ns,
            legal_hold: v.legal_hold,
            legal_hold_changed_ns: v.legal_hold_changed_ns,
        }
    }

    /// Whether `v` still carries exactly the changes this was taken from.
    fn same_changes(&self, v: &ObjectVersion) -> bool {
        (
            self.tags_changed_ns,
            self.retention_changed_ns,
            self.legal_hold_changed_ns,
        ) == (
            v.tags_changed_ns,
            v.retention_changed_ns,
            v.legal_hold_changed_ns,
        )
    }

    /// Which of this (a peer's) fields win over `v`'s: the later change, a tie going to the
    /// greater value, so both sites choose alike. A field never changed after the write (time 0)
    /// wins nothing.
    fn newer_than(&self, v: &ObjectVersion) -> Taken {
        let mine = Metadata::of(v);
        let wins = |theirs: (i64, String), ours: (i64, String)| theirs.0 > 0 && theirs > ours;
        Taken {
            tags: wins(
                (self.tags_changed_ns, format!("{:?}", self.tags)),
                (mine.tags_changed_ns, format!("{:?}", mine.tags)),
            ),
            retention: wins(
                (
                    self.retention_changed_ns,
                    format!("{}{}", self.lock_mode, self.retain_until_ns),
                ),
                (
                    mine.retention_changed_ns,
                    format!("{}{}", mine.lock_mode, mine.retain_until_ns),
                ),
            ),
            legal_hold: wins(
                (self.legal_hold_changed_ns, self.legal_hold.to_string()),
                (mine.legal_hold_changed_ns, mine.legal_hold.to_string()),
            ),
        }
    }

    /// The retention this sets: `None` removes it.
    fn retention(&self) -> Option<(LockMode, i64)> {
        LockMode::parse(&self.lock_mode).map(|m| (m, self.retain_until_ns))
    }

    fn write(&self, v: &mut ObjectVersion, taken: Taken) {
        if taken.tags {
            v.tags = self
                .tags
                .iter()
                .map(|(k, value)| KeyValue {
                    key: k.clone(),
                    value: value.clone(),
                })
                .collect();
            v.tags_changed_ns = self.tags_changed_ns;
        }
        if taken.retention {
            let mut l = LockState::of(v);
            (l.mode, l.retain_until_ns) = match self.retention() {
                Some((mode, until)) => (Some(mode), until),
                None => (None, 0),
            };
            l.write_to(v);
            v.retention_changed_ns = self.retention_changed_ns;
        }
        if taken.legal_hold {
            v.legal_hold = self.legal_hold;
            v.legal_hold_changed_ns = self.legal_hold_changed_ns;
        }
    }
}

/// Which fields of a peer's change apply here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Taken {
    tags: bool,
    retention: bool,
    legal_hold: bool,
}

impl Taken {
    fn any(self) -> bool {
        self.tags || self.retention || self.legal_hold
    }
}

/// What a peer's metadata change did here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMetadata {
    /// At least one field was newer and is now this version's.
    Applied,
    /// Every field here is as new or newer.
    Stale,
    /// The retention change was refused by the lock (any other newer field still applied).
    Refused(LockDenied),
}

impl ObjectLayer {
    /// Changes `field` of a version with `f` after `check` accepted it, stamping when (later than
    /// any change the field had, so this change orders after the one it replaces even on a clock
    /// behind a peer's) and marking it for replication when `replicate`, in the same write.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_metadata<C, F>(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        field: Field,
        replicate: bool,
        check: C,
        f: F,
    ) -> ObjectResult<ObjectInfo>
    where
        C: FnOnce(&ObjectVersion) -> ObjectResult<()>,
        F: Fn(&mut ObjectVersion) + Send + Sync,
    {
        let now = self.hlc.now_ns();
        let at = OnceLock::new();
        self.update_version_if(
            bucket,
            key,
            version_id,
            |v| {
                check(v)?;
                let _ = at.set(now.max(changed_at(v, field) + 1));
                Ok(())
            },
            |v| {
                f(v);
                *changed_ns(v, field) = at.get().copied().unwrap_or(now);
                if replicate {
                    v.metadata_replication = PENDING.to_string();
                }
            },
        )
        .await
    }

    /// Applies a peer's metadata of version `id`, each field only over an older one here.
    pub async fn apply_peer_metadata(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        theirs: &Metadata,
    ) -> ObjectResult<PeerMetadata> {
        let now = self.clock.now_ns();
        let decided: OnceLock<(Taken, Option<LockDenied>)> = OnceLock::new();
        let r = self
            .change_version(
                bucket,
                key,
                Some(id),
                |v| {
                    let mut taken = theirs.newer_than(v);
                    let mut refused = None;
                    if taken.retention {
                        // Bypass: a GOVERNANCE change applies as its origin decided; nothing
                        // bypasses COMPLIANCE.
                        let bypass = Bypass {
                            header: true,
                            allowed: true,
                        };
                        if let Err(e) = retention::check_retention_change(
                            &LockState::of(v),
                            theirs.retention(),
                            bypass,
                            now,
                        ) {
                            tracing::warn!(bucket, key, version_id = id, error = %e, "a peer's retention change refused");
                            taken.retention = false;
                            refused = Some(e);
                        }
                    }
                    let _ = decided.set((taken, refused));
                    if taken.any() {
                        Ok(())
                    } else {
                        // Nothing to write: the error only stops the write.
                        Err(ObjectError::Locked(refused.unwrap_or(LockDenied::Governance)))
                    }
                },
                |v| {
                    if let Some((taken, _)) = decided.get() {
                        theirs.write(v, *taken);
                    }
                },
            )
            .await;
        let (taken, refused) = decided.get().copied().unwrap_or_default();
        match (r, refused) {
            (Ok(_), None) => Ok(PeerMetadata::Applied),
            (Ok(_), Some(e)) => Ok(PeerMetadata::Refused(e)),
            (Err(ObjectError::Locked(_)), Some(e)) if !taken.any() => Ok(PeerMetadata::Refused(e)),
            (Err(ObjectError::Locked(_)), None) if !taken.any() => Ok(PeerMetadata::Stale),
            (Err(e), _) => Err(e),
        }
    }

    /// Clears the metadata replication mark of version `id` if it still carries exactly the
    /// changes `sent` was taken from (a change since is still to send).
    pub async fn settle_metadata(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        sent: &Metadata,
    ) -> ObjectResult<()> {
        self.change_version(
            bucket,
            key,
            Some(id),
            |_| Ok(()),
            |v| {
                if sent.same_changes(v) {
                    v.metadata_replication.clear();
                }
            },
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(tags: &[(&str, &str)], tags_ns: i64) -> ObjectVersion {
        ObjectVersion {
            version_id: "v".into(),
            tags: tags
                .iter()
                .map(|(k, v)| KeyValue {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            tags_changed_ns: tags_ns,
            ..Default::default()
        }
    }

    #[test]
    fn the_later_change_wins_on_both_sides_and_ties_choose_alike() {
        let a = version(&[("team", "a")], 10);
        let b = version(&[("team", "b")], 20);
        let (ma, mb) = (Metadata::of(&a), Metadata::of(&b));
        assert!(mb.newer_than(&a).tags && !ma.newer_than(&b).tags);
        let tie = version(&[("team", "c")], 20);
        let mt = Metadata::of(&tie);
        assert_ne!(mt.newer_than(&b).tags, mb.newer_than(&tie).tags);
        // Never changed after the write: nothing to take.
        assert!(!Metadata::of(&version(&[("x", "y")], 0))
            .newer_than(&version(&[], 0))
            .any());
    }

    #[test]
    fn fields_are_taken_one_by_one() {
        let mut here = version(&[("team", "a")], 10);
        here.legal_hold = true;
        here.legal_hold_changed_ns = 30;
        let mut theirs = version(&[("team", "b")], 20);
        theirs.legal_hold_changed_ns = 5;
        let m = Metadata::of(&theirs);
        let taken = m.newer_than(&here);
        assert!(taken.tags && !taken.legal_hold && !taken.retention);
        m.write(&mut here, taken);
        assert_eq!(here.tags[0].value, "b");
        assert!(here.legal_hold, "the newer hold here stays");
    }
}
