//! What bucket lifecycle rules do to a key, made safe against the key changing between the scan
//! that chose an action and the action: each one is taken under the key's lock, only while the
//! key's versions are still as the rule saw them (`Expect`), and a removal passes the one
//! retention check (`retention::check_removal`, without bypass) like every other removal, so a
//! locked version outlives its expiration.

use cairn_proto::meta::{ObjectRecord, ObjectVersion};

use super::list::agreed_versions;
use super::retention::Bypass;
use super::versions::DeleteOutcome;
use super::{ObjectError, ObjectLayer, ObjectResult};
use crate::drive::DriveError;

/// A condition on a key's agreed versions (newest first) for a lifecycle action to go ahead.
pub type Expect<'a> = dyn Fn(&[ObjectVersion]) -> bool + Send + Sync + 'a;

/// NoSuchVersion unless `expect` accepts the versions that `records` agree on.
pub(super) fn check(
    expect: &Expect<'_>,
    records: &[Result<Option<ObjectRecord>, DriveError>],
    read_quorum: usize,
) -> ObjectResult<()> {
    let held: Vec<ObjectRecord> = records
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(Clone::clone))
        .collect();
    if expect(&agreed_versions(&held, read_quorum)) {
        Ok(())
    } else {
        Err(ObjectError::NoSuchVersion)
    }
}

impl ObjectLayer {
    /// Removes version `id` of a key if `expect` still holds and its lock lets it go now.
    pub async fn expire_version(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        expect: &Expect<'_>,
    ) -> ObjectResult<DeleteOutcome> {
        self.remove_version(bucket, key, id, Bypass::default(), None, Some(expect))
            .await
    }

    /// Writes delete marker `marker` (its id and time fixed by the caller: every site expiring
    /// the version makes the same marker, so a peer's copy of it is a resend) over a key's
    /// current version if `expect` still holds; `false` when it no longer does. A marker removes
    /// nothing, so the lock is not asked (as for a DELETE without a version id).
    pub async fn expire_with_marker(
        &self,
        bucket: &str,
        key: &str,
        marker: &ObjectVersion,
        expect: &Expect<'_>,
    ) -> ObjectResult<bool> {
        let (set, _) = self.place(bucket, key);
        let all: Vec<u32> = (0..set.size() as u32).collect();
        let ok = vec![true; all.len()];
        let mut marker = marker.clone();
        match self
            .commit(
                set,
                bucket,
                key,
                &all,
                &mut marker,
                &ok,
                None,
                &[],
                Some(expect),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(ObjectError::NoSuchVersion) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cairn_control_plane::Versioning;

    use super::*;
    use crate::object::retention::LockState;
    use crate::object::PutOptions;

    async fn put(l: &ObjectLayer, legal_hold: bool) -> String {
        let body = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]);
        let opts = PutOptions {
            versioning: Versioning::Enabled,
            lock: LockState {
                legal_hold,
                ..Default::default()
            },
            ..Default::default()
        };
        let info = l.put_object("b", "k", body, (), opts, |_| Ok(vec![]));
        info.await.unwrap().version.version_id
    }

    fn latest_is(id: &str) -> impl Fn(&[ObjectVersion]) -> bool + Send + Sync + '_ {
        move |vs| vs.first().is_some_and(|v| v.version_id == id)
    }

    #[tokio::test]
    async fn actions_wait_for_the_key_as_the_scan_saw_it_and_spare_locked_versions() {
        let f = crate::object::testing::fixture(4, 2);
        let l = &f.layer;
        let held = put(l, true).await;
        let v1 = put(l, false).await;
        let v2 = put(l, false).await;
        // The node's lifecycle worker times a marker after the version it covers.
        let marker = ObjectVersion {
            version_id: "6f1c8a52-43e4-4c1e-9a43-0f5f3cbd2a11".into(),
            delete_marker: true,
            mod_time_ns: l.hlc.now_ns() + 1_000_000_000,
            ..Default::default()
        };
        // The scan saw v1 as the current version: v2 came since, so no marker.
        assert!(!l
            .expire_with_marker("b", "k", &marker, &latest_is(&v1))
            .await
            .unwrap());
        // Removing v2 as noncurrent is refused while it is the current version.
        let noncurrent = |id: &str| {
            let id = id.to_string();
            move |vs: &[ObjectVersion]| vs.first().is_some_and(|v| v.version_id != id)
        };
        assert!(matches!(
            l.expire_version("b", "k", &v2, &noncurrent(&v2)).await,
            Err(ObjectError::NoSuchVersion)
        ));
        l.expire_version("b", "k", &v1, &noncurrent(&v1))
            .await
            .unwrap();
        // A version under legal hold outlives its expiration.
        assert!(matches!(
            l.expire_version("b", "k", &held, &noncurrent(&held)).await,
            Err(ObjectError::Locked(_))
        ));
        assert!(l
            .expire_with_marker("b", "k", &marker, &latest_is(&v2))
            .await
            .unwrap());
        assert!(matches!(
            l.head_object("b", "k", None).await,
            Err(ObjectError::DeleteMarker { .. })
        ));
        for id in [&held, &v2] {
            l.head_object("b", "k", Some(id)).await.unwrap();
        }
        assert!(matches!(
            l.head_object("b", "k", Some(&v1)).await,
            Err(ObjectError::NoSuchVersion)
        ));
    }
}
