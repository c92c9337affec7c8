//! Which lifecycle action each version of a key is due for, from the bucket's rules, the key's
//! versions (newest first, as a listing gives them, possibly over several pages) and the time.
//! Pure, so the decisions are tested without a server.

use cairn_control_plane::lifecycle::{after_days, Candidate};
use cairn_control_plane::BucketInfo;
use cairn_proto::meta::ObjectVersion;

use crate::s3::bucket_lifecycle::{current_expiry, tag_pairs};

/// What to do to one version.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The current version expired: a delete marker over it (versioned bucket), or its removal.
    ExpireCurrent {
        version: Box<ObjectVersion>,
        due_ns: i64,
    },
    /// A noncurrent version expired.
    RemoveNoncurrent { version_id: String },
    /// A delete marker with no version left under it.
    RemoveLoneMarker { version_id: String },
}

/// A key's versions as they stream in.
pub struct KeyPlan<'a> {
    bucket: &'a BucketInfo,
    pub key: String,
    now_ns: i64,
    day_ns: i64,
    /// Versions seen so far (the next one's index).
    seen: usize,
    /// Versions seen that stay (not removed by an action planned here).
    staying: usize,
    /// Time the last version seen was written: when the next one became noncurrent.
    successor_ns: i64,
    /// The current version is a delete marker an `ExpiredObjectDeleteMarker` rule applies to.
    lone_marker: Option<String>,
}

impl<'a> KeyPlan<'a> {
    pub fn new(bucket: &'a BucketInfo, key: &str, now_ns: i64, day_ns: i64) -> Self {
        Self {
            bucket,
            key: key.to_string(),
            now_ns,
            day_ns,
            seen: 0,
            staying: 0,
            successor_ns: 0,
            lone_marker: None,
        }
    }

    /// The action due for the key's next version (newest first), if any.
    pub fn next(&mut self, v: &ObjectVersion) -> Option<Action> {
        let index = self.seen;
        self.seen += 1;
        let successor_ns = std::mem::replace(&mut self.successor_ns, v.mod_time_ns);
        let action = if index == 0 {
            self.current(v)
        } else {
            self.noncurrent(v, index - 1, successor_ns)
        };
        if !matches!(action, Some(Action::RemoveNoncurrent { .. })) {
            self.staying += 1;
        }
        action
    }

    fn current(&mut self, v: &ObjectVersion) -> Option<Action> {
        if v.delete_marker {
            let c = Candidate {
                key: &self.key,
                size: None,
                tags: &[],
            };
            let applies = self
                .bucket
                .lifecycle
                .iter()
                .any(|r| r.enabled && r.expired_object_delete_marker && r.filter.matches(&c));
            if applies {
                self.lone_marker = Some(v.version_id.clone());
            }
            return None;
        }
        let (due_ns, _) = current_expiry(self.bucket, &self.key, v, self.day_ns)?;
        (self.now_ns >= due_ns).then(|| Action::ExpireCurrent {
            version: Box::new(v.clone()),
            due_ns,
        })
    }

    /// `rank`: how many noncurrent versions are newer than `v`.
    fn noncurrent(&self, v: &ObjectVersion, rank: usize, since_ns: i64) -> Option<Action> {
        let tags = tag_pairs(v);
        let c = Candidate {
            key: &self.key,
            size: (!v.delete_marker).then(|| i64::try_from(v.size).unwrap_or(i64::MAX)),
            tags: &tags,
        };
        let due = self.bucket.lifecycle.iter().any(|r| {
            let Some(n) = r.noncurrent.filter(|_| r.enabled && r.filter.matches(&c)) else {
                return false;
            };
            rank >= n.newer_versions.unwrap_or(0) as usize
                && self.now_ns >= after_days(since_ns, n.days, self.day_ns)
        });
        due.then(|| Action::RemoveNoncurrent {
            version_id: v.version_id.clone(),
        })
    }

    /// Once every version of the key was seen: the marker left alone, if it is due.
    pub fn finish(self) -> Option<Action> {
        let id = self.lone_marker?;
        (self.staying == 1).then_some(Action::RemoveLoneMarker { version_id: id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_control_plane::lifecycle::{
        Expiration, LifecycleFilter, LifecycleRule, NoncurrentExpiration,
    };

    const DAY: i64 = 1_000;

    fn bucket(rules: Vec<LifecycleRule>) -> BucketInfo {
        BucketInfo {
            name: "b".into(),
            created_ns: 0,
            versioning: cairn_control_plane::Versioning::Enabled,
            object_lock: false,
            default_retention: None,
            encryption: None,
            policy: None,
            tags: Vec::new(),
            lifecycle: rules,
            cors: Vec::new(),
        }
    }

    fn rule() -> LifecycleRule {
        LifecycleRule {
            id: "r".into(),
            enabled: true,
            filter: LifecycleFilter::All,
            expiration: None,
            expired_object_delete_marker: false,
            noncurrent: None,
            abort_multipart_days: None,
        }
    }

    fn version(id: &str, t: i64, marker: bool) -> ObjectVersion {
        ObjectVersion {
            version_id: id.into(),
            mod_time_ns: t,
            delete_marker: marker,
            size: 10,
            ..Default::default()
        }
    }

    fn plan(b: &BucketInfo, now: i64, versions: &[ObjectVersion]) -> Vec<Action> {
        let mut p = KeyPlan::new(b, "k", now, DAY);
        let mut out: Vec<_> = versions.iter().filter_map(|v| p.next(v)).collect();
        out.extend(p.finish());
        out
    }

    #[test]
    fn current_versions_expire_at_the_day_boundary_after_their_days() {
        let b = bucket(vec![LifecycleRule {
            expiration: Some(Expiration::Days(2)),
            ..rule()
        }]);
        let v = [version("a", 500, false)];
        // Written at 500: 2 days later is 2500, rounded up to 3000.
        assert!(plan(&b, 2999, &v).is_empty());
        assert_eq!(
            plan(&b, 3000, &v),
            vec![Action::ExpireCurrent {
                version: Box::new(v[0].clone()),
                due_ns: 3000
            }]
        );
        let mut disabled = b.clone();
        disabled.lifecycle[0].enabled = false;
        assert!(plan(&disabled, 9999, &v).is_empty());
    }

    #[test]
    fn noncurrent_versions_count_from_their_successor_and_keep_the_newest() {
        let b = bucket(vec![LifecycleRule {
            noncurrent: Some(NoncurrentExpiration {
                days: 1,
                newer_versions: Some(1),
            }),
            ..rule()
        }]);
        let v = [
            version("d", 4000, false),
            version("c", 3000, false),
            version("b", 2000, false),
            version("a", 100, false),
        ];
        // c became noncurrent at 4000 (due 5000), b at 3000 (due 4000), a at 2000 (due 3000);
        // c is the one newer noncurrent version kept whatever its age.
        let removed = |now| -> Vec<String> {
            plan(&b, now, &v)
                .into_iter()
                .map(|a| match a {
                    Action::RemoveNoncurrent { version_id } => version_id,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert!(removed(2999).is_empty());
        assert_eq!(removed(3000), ["a"]);
        assert_eq!(removed(4000), ["b", "a"]);
        assert_eq!(removed(99_999), ["b", "a"]);
    }

    #[test]
    fn a_marker_left_alone_is_removed() {
        let b = bucket(vec![LifecycleRule {
            expired_object_delete_marker: true,
            noncurrent: Some(NoncurrentExpiration {
                days: 1,
                newer_versions: None,
            }),
            ..rule()
        }]);
        let lone = [version("m", 100, true)];
        assert_eq!(
            plan(&b, 0, &lone),
            vec![Action::RemoveLoneMarker {
                version_id: "m".into()
            }]
        );
        // Over a version still kept, the marker stays.
        let over = [version("m", 2000, true), version("a", 100, false)];
        assert!(plan(&b, 2500, &over).is_empty());
        // Once that version goes in the same pass, the marker goes too.
        assert_eq!(
            plan(&b, 3000, &over),
            vec![
                Action::RemoveNoncurrent {
                    version_id: "a".into()
                },
                Action::RemoveLoneMarker {
                    version_id: "m".into()
                }
            ]
        );
    }
}
