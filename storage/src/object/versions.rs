//! Versions of a key: which id a write gets, delete markers, and removing one version, all under
//! the bucket's versioning state (AWS semantics: Enabled gives every write a new id; Suspended and
//! never-versioned buckets write the `null` version; a DELETE without a version id writes a delete
//! marker on a versioned bucket). Removing a version asks `retention` first and is two-phase like
//! a commit, so a removal that misses write quorum leaves every drive as it was.

use futures::future::join_all;
use prost::Message;

use cairn_control_plane::Versioning;
use cairn_proto::meta::{ObjectVersion, PurgeMark};

use super::retention::{self, Bypass};
use super::{keys, settle_records, Changed, ObjectError, ObjectLayer, ObjectResult, NULL_VERSION};
use crate::drive::MetaOp;

/// What a DELETE asks for.
#[derive(Debug, Clone, Copy)]
pub struct DeleteRequest<'a> {
    pub versioning: Versioning,
    /// Remove exactly this version (else: a delete marker, or the null version when unversioned).
    pub version_id: Option<&'a str>,
    pub bypass: Bypass,
    /// A marker written now is a local change to replicate, or another site's marker; a version
    /// removed for a local change to replicate leaves a mark that peers remove it too
    /// (`object::purge`).
    pub replication: &'a super::replica::Replication,
}

/// What a DELETE did, for `x-amz-version-id` / `x-amz-delete-marker`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    pub version_id: Option<String>,
    /// A marker was written, or the version removed was a marker.
    pub delete_marker: bool,
}

/// Version ids are `null` or what `new_id` makes (a UUID); anything else is malformed, as AWS says.
pub fn check_version_id(id: &str) -> ObjectResult<()> {
    if id == NULL_VERSION || uuid::Uuid::parse_str(id).is_ok() {
        Ok(())
    } else {
        Err(ObjectError::InvalidArgument(
            "Invalid version id specified".into(),
        ))
    }
}

/// The error for a read that met a delete marker: by id it is 405, as the latest it is 404.
pub fn marker_error(v: &ObjectVersion, requested: Option<&str>) -> ObjectError {
    ObjectError::DeleteMarker {
        version_id: v.version_id.clone(),
        requested: requested.is_some(),
    }
}

impl ObjectLayer {
    /// The id of a version written now into a bucket in state `v`.
    pub fn version_id_for(&self, v: Versioning) -> String {
        match v {
            Versioning::Enabled => self.new_id(),
            Versioning::Suspended | Versioning::Unversioned => NULL_VERSION.to_string(),
        }
    }

    /// DELETE of a key: writes a delete marker (versioned bucket, no version id) or removes one
    /// version after the lock allows it. An absent key or version is not an error.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        req: DeleteRequest<'_>,
    ) -> ObjectResult<DeleteOutcome> {
        let mark = (*req.replication == super::replica::Replication::Pending).then(|| PurgeMark {
            purged_ns: self.clock.now_ns(),
            bypass_governance: req.bypass.applies(),
        });
        if let Some(id) = req.version_id {
            check_version_id(id)?;
            return self
                .remove_version(bucket, key, id, req.bypass, mark, None)
                .await;
        }
        match req.versioning {
            Versioning::Unversioned => {
                self.remove_version(bucket, key, NULL_VERSION, req.bypass, mark, None)
                    .await?;
                Ok(DeleteOutcome::default())
            }
            v => {
                let mut marker = ObjectVersion {
                    version_id: self.version_id_for(v),
                    delete_marker: true,
                    mod_time_ns: super::UNSTAMPED,
                    replication: req.replication.status().to_string(),
                    ..Default::default()
                };
                if let Some(r) = req.replication.replica() {
                    marker.version_id = r.version_id.clone();
                    marker.mod_time_ns = r.mod_time_ns;
                }
                let (set, _) = self.place(bucket, key);
                let all: Vec<u32> = (0..set.size() as u32).collect();
                let ok = vec![true; all.len()];
                // A replica of a marker already here is a resend: nothing changes.
                self.commit(set, bucket, key, &all, &mut marker, &ok, None, &[], None)
                    .await?;
                Ok(DeleteOutcome {
                    version_id: Some(marker.version_id),
                    delete_marker: true,
                })
            }
        }
    }

    /// Removes version `id` of a key from every drive, if the lock allows it now (and `expect`,
    /// if given, accepts the key's versions as they are under its lock: NoSuchVersion if not),
    /// with `mark` for the peers in the same batch.
    pub(super) async fn remove_version(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        bypass: Bypass,
        mark: Option<PurgeMark>,
        expect: Option<&super::lifecycle::Expect<'_>>,
    ) -> ObjectResult<DeleteOutcome> {
        let _guard = self.locks.lock(self.key_hash(bucket, key)).await;
        let (set, _) = self.place(bucket, key);
        let meta_key = keys::object(bucket, key);
        let records = set.read_records(&meta_key).await;
        let found =
            match super::quorum::resolve(&records, Some(id), set.read_quorum, set.write_quorum) {
                Ok(r) => r.version,
                Err(ObjectError::NoSuchVersion) => {
                    return Ok(DeleteOutcome {
                        version_id: Some(id.to_string()),
                        delete_marker: false,
                    })
                }
                Err(e) => return Err(e),
            };
        if let Some(expect) = expect {
            super::lifecycle::check(expect, &records, set.read_quorum)?;
        }
        retention::check_removal(
            &retention::LockState::of(&found),
            bypass,
            self.clock.now_ns(),
        )
        .map_err(ObjectError::Locked)?;
        let mark_op = mark
            .as_ref()
            .map(|m| super::purge::mark_op(bucket, key, &found.version_id, m));
        let results = join_all(set.drives.iter().map(|drive| {
            let meta_key = meta_key.clone();
            let mark_op = mark_op.clone();
            async move {
                let before = drive.get(&meta_key).await?;
                let Some(raw) = &before else {
                    return Ok(Changed {
                        before: None,
                        after: None,
                        freed: Vec::new(),
                        tombstone: false,
                    });
                };
                let mut record = super::set::decode_record(raw)?;
                let (gone, kept): (Vec<_>, Vec<_>) = record
                    .versions
                    .into_iter()
                    .partition(|v| v.version_id == id);
                record.versions = kept;
                let freed = gone
                    .iter()
                    .filter(|v| !v.data_dir.is_empty())
                    .map(|v| v.data_dir.clone())
                    .collect();
                // Even a record left with no versions stays (a tombstone) until the removal
                // settles: what it removed must survive a crash of this coordinator.
                record.replaced = gone;
                let tombstone = record.versions.is_empty();
                let after = record.encode_to_vec();
                let mut ops = vec![MetaOp::Put(meta_key, after.clone())];
                ops.extend(mark_op);
                drive.apply(ops).await?;
                let after = Some(after);
                Ok(Changed {
                    before,
                    after,
                    freed,
                    tombstone,
                })
            }
        }))
        .await;
        if let Err(e) = settle_records(set, &meta_key, results, &[], None).await {
            if mark.is_some() {
                // Rolled back: the version stays, so its mark must go.
                self.clear_purge(bucket, key, &found.version_id).await;
            }
            return Err(e);
        }
        Ok(DeleteOutcome {
            version_id: Some(found.version_id),
            delete_marker: found.delete_marker,
        })
    }
}

#[cfg(test)]
mod tests;
