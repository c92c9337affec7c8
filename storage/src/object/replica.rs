//! A version's place in site replication (DESIGN.md §7). The status lives in the version's own
//! record, written in the same synced batch as the version: a version is never acknowledged
//! without the mark that makes it replicate, and a crash loses no replication task.
//!
//! A replica (only a paired peer's replication identity sends one, `s3::replica`) is stored under
//! the version id it names, so it could replace the version with that id: `admit_replica` lets
//! it only add a version, or repeat one already here.

use cairn_proto::meta::{ObjectRecord, ObjectVersion};
use tokio::sync::mpsc;

use super::retention::{self, Bypass, LockState};
use super::{keys, quorum, ErasureSet, ObjectError, NULL_VERSION};

pub const PENDING: &str = "PENDING";
pub const COMPLETED: &str = "COMPLETED";
pub const REPLICA: &str = "REPLICA";
/// A version no peer can be given (SSE-C: the site never holds the customer's key).
pub const FAILED: &str = "FAILED";

/// Headers of a replica write: the version id, time and ETag it keeps from its origin.
pub const VERSION_ID_HEADER: &str = "x-cairn-replica-version-id";
pub const MTIME_HEADER: &str = "x-cairn-replica-mtime";
pub const ETAG_HEADER: &str = "x-cairn-replica-etag";

/// One version to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
}

/// Where writes report versions to replicate now.
#[derive(Debug, Clone)]
pub struct Hints(mpsc::UnboundedSender<VersionRef>);

impl Hints {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<VersionRef>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Replicates `version` now if it is a local write, or carries a local metadata change,
    /// that peers must receive.
    pub fn send(&self, bucket: &str, key: &str, version: &ObjectVersion) {
        if version.replication == PENDING || version.metadata_replication == PENDING {
            self.send_id(bucket, key, &version.version_id);
        }
    }

    pub fn send_id(&self, bucket: &str, key: &str, version_id: &str) {
        let _ = self.0.send(VersionRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
        });
    }
}

/// What a write is, for replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Replication {
    /// No peer sites.
    #[default]
    None,
    /// A local write that peers must receive.
    Pending,
    /// Another site's version, stored under its own id, time and ETag.
    Replica(ReplicaOf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOf {
    pub version_id: String,
    pub mod_time_ns: i64,
    /// The source's ETag (a multipart object's is not the MD5 of its bytes); `None` for markers.
    pub etag: Option<String>,
}

impl Replication {
    pub fn status(&self) -> &'static str {
        match self {
            Replication::None => "",
            Replication::Pending => PENDING,
            Replication::Replica(_) => REPLICA,
        }
    }

    pub fn replica(&self) -> Option<&ReplicaOf> {
        match self {
            Replication::Replica(r) => Some(r),
            _ => None,
        }
    }
}

/// Where `v` goes among `record`'s versions (newest first): by time (then version id), local
/// writes and replicas alike, so every drive and every site that holds the same versions orders
/// them alike whichever arrived first. Times are hybrid logical clock stamps (`clock::Hlc`): a
/// local write is stamped after the key's newest version, so it goes first unless a concurrent
/// write through another node or site was stamped later.
pub fn position(record: &ObjectRecord, v: &ObjectVersion) -> usize {
    let key = |x: &ObjectVersion| (x.mod_time_ns, x.version_id.clone());
    record
        .versions
        .iter()
        .position(|x| key(x) < key(v))
        .unwrap_or(record.versions.len())
}

/// Whether two versions under one id are the same version: a resent replica (the source fixes
/// the time and ETag, so a resend matches exactly).
fn same_content(a: &ObjectVersion, b: &ObjectVersion) -> bool {
    a.delete_marker == b.delete_marker
        && a.etag == b.etag
        && a.size == b.size
        && a.mod_time_ns == b.mod_time_ns
}

/// Whether null version `a` wins over `b`: the later write, then the greater ETag.
fn newer_null(a: &ObjectVersion, b: &ObjectVersion) -> bool {
    (a.mod_time_ns, &a.etag, a.delete_marker) > (b.mod_time_ns, &b.etag, b.delete_marker)
}

impl super::ObjectLayer {
    /// What replica `v` finds under its version id, under the key's lock, before it is written:
    /// nothing (`None`: write it), or the same version (`Some`: a resend, nothing to write).
    /// Another version under that id is refused: an id names one content for good, and a
    /// replica never removes what another path could not. Only the null version is replaced
    /// (as a PUT to a suspended bucket replaces it), by a newer one only, and only if its lock
    /// lets it go now ([`retention::check_removal`], without bypass).
    pub(super) async fn admit_replica(
        &self,
        set: &ErasureSet,
        bucket: &str,
        key: &str,
        v: &ObjectVersion,
    ) -> super::ObjectResult<Option<ObjectVersion>> {
        let records = set.read_records(&keys::object(bucket, key)).await;
        let existing = match quorum::resolve(
            &records,
            Some(&v.version_id),
            set.read_quorum,
            set.write_quorum,
        ) {
            Ok(r) => r.version,
            Err(ObjectError::NoSuchKey | ObjectError::NoSuchVersion) => return Ok(None),
            Err(e) => return Err(e),
        };
        if same_content(&existing, v) {
            return Ok(Some(existing));
        }
        if v.version_id != NULL_VERSION {
            tracing::warn!(bucket, key, version_id = %v.version_id, "replica refused: the version exists here with other content");
            return Err(ObjectError::ReplicaConflict(v.version_id.clone()));
        }
        // Two sites paired with a null version of the same key each send theirs to the other:
        // the newer one stays on both (the same choice on each side), the older one is dropped.
        if newer_null(&existing, v) {
            return Ok(Some(existing));
        }
        retention::check_removal(
            &LockState::of(&existing),
            Bypass::default(),
            self.clock.now_ns(),
        )?;
        Ok(None)
    }

    /// Version `id` as a read quorum agrees on it, delete markers included.
    pub async fn head_version(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> super::ObjectResult<ObjectVersion> {
        Ok(self.resolve(bucket, key, Some(id)).await?.version)
    }

    /// Moves version `id` on from PENDING (to COMPLETED or FAILED) on every drive holding it.
    pub async fn settle_replication(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        status: &'static str,
    ) -> super::ObjectResult<()> {
        self.change_version(
            bucket,
            key,
            Some(id),
            |_| Ok(()),
            move |v| {
                if v.replication == PENDING {
                    v.replication = status.to_string();
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

    fn version(id: &str, t: i64, replication: &str) -> ObjectVersion {
        ObjectVersion {
            version_id: id.into(),
            mod_time_ns: t,
            replication: replication.into(),
            ..Default::default()
        }
    }

    #[test]
    fn of_two_null_versions_the_newer_wins_on_both_sides() {
        let a = version(NULL_VERSION, 10, REPLICA);
        let mut b = version(NULL_VERSION, 10, REPLICA);
        b.etag = "ff".into();
        assert!(newer_null(&b, &a) && !newer_null(&a, &b));
        let c = version(NULL_VERSION, 20, REPLICA);
        assert!(newer_null(&c, &b) && !newer_null(&b, &c));
    }

    #[test]
    fn versions_take_their_place_by_time_wherever_they_were_written() {
        let record = ObjectRecord {
            versions: vec![version("c", 30, ""), version("a", 10, "")],
            replaced: vec![],
        };
        assert_eq!(position(&record, &version("b", 20, REPLICA)), 1);
        assert_eq!(position(&record, &version("d", 40, REPLICA)), 0);
        assert_eq!(position(&record, &version("z", 5, REPLICA)), 2);
        assert_eq!(position(&record, &version("e", 1, PENDING)), 2);
        assert_eq!(position(&record, &version("f", 35, PENDING)), 0);
        assert_eq!(
            position(&record, &version("b", 30, "")),
            1,
            "a tie goes to the version id"
        );
    }
}
