//! Pairing sites that both hold buckets: the union of their buckets, merged by name.
//!
//! On pairing, each site sends the other its buckets and their configs (`site::export`); a
//! bucket the receiver already holds is not created again, and a config set on one side only is
//! taken by the other. That is only sound when the two sites do not disagree: where both set the
//! same config differently, the later arrival would silently win on one side and lose on the
//! other. [`clashes`] finds those cases, so `cairn admin site add` refuses the pairing before
//! anything changes (MinIO refuses any pairing where more than one site holds data).

use std::collections::BTreeMap;

use crate::model::{BucketInfo, Versioning};

/// Versioning as it is once paired: site replication turns never-configured buckets on.
fn paired_versioning(v: Versioning) -> Versioning {
    match v {
        Versioning::Unversioned => Versioning::Enabled,
        v => v,
    }
}

/// A config set on both sides must be equal; one side's absence takes the other's.
fn differs<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x != y)
}

/// Why bucket `a` (one site's) and `b` (the other's, same name) cannot be merged, if they cannot.
pub fn clash(a: &BucketInfo, b: &BucketInfo) -> Option<String> {
    let what = if a.object_lock != b.object_lock {
        "object lock is enabled on one site only (it cannot be turned off, nor on for objects already written)"
    } else if paired_versioning(a.versioning) != paired_versioning(b.versioning) {
        "versioning is suspended on one site only"
    } else if differs(&a.default_retention, &b.default_retention) {
        "the default retentions differ"
    } else if differs(&a.encryption, &b.encryption) {
        "the default encryptions differ"
    } else if differs(&a.policy, &b.policy) {
        "the bucket policies differ"
    } else if !a.tags.is_empty() && !b.tags.is_empty() && a.tags != b.tags {
        "the bucket tags differ"
    } else if !a.lifecycle.is_empty() && !b.lifecycle.is_empty() && a.lifecycle != b.lifecycle {
        "the lifecycle rules differ"
    } else if !a.cors.is_empty() && !b.cors.is_empty() && a.cors != b.cors {
        "the CORS rules differ"
    } else {
        return None;
    };
    Some(format!("bucket {}: {what}", a.name))
}

/// Every bucket name both sites hold that cannot be merged, with the reason.
pub fn clashes(a: &BTreeMap<String, BucketInfo>, b: &BTreeMap<String, BucketInfo>) -> Vec<String> {
    a.iter()
        .filter_map(|(name, x)| clash(x, b.get(name)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(name: &str) -> BucketInfo {
        BucketInfo {
            name: name.into(),
            created_ns: 1,
            versioning: Versioning::Unversioned,
            object_lock: false,
            default_retention: None,
            encryption: None,
            policy: None,
            tags: Vec::new(),
            lifecycle: Vec::new(),
            cors: Vec::new(),
        }
    }

    #[test]
    fn compatible_buckets_merge_and_real_clashes_are_named() {
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        a.insert("only-a".into(), bucket("only-a"));
        b.insert("only-b".into(), bucket("only-b"));
        let mut shared = bucket("shared");
        shared.versioning = Versioning::Enabled;
        a.insert("shared".into(), shared.clone());
        b.insert("shared".into(), {
            let mut s = bucket("shared");
            s.policy = Some("{}".into());
            s
        });
        assert!(clashes(&a, &b).is_empty(), "{:?}", clashes(&a, &b));

        let mut locked = bucket("shared");
        locked.object_lock = true;
        locked.versioning = Versioning::Enabled;
        b.insert("shared".into(), locked);
        let c = clashes(&a, &b);
        assert_eq!(c.len(), 1);
        assert!(c[0].contains("bucket shared: object lock"), "{c:?}");

        let mut suspended = bucket("shared");
        suspended.versioning = Versioning::Suspended;
        b.insert("shared".into(), suspended);
        assert!(clashes(&a, &b)[0].contains("suspended"));

        let mut p = bucket("shared");
        p.policy = Some("{\"a\":1}".into());
        a.insert("shared".into(), p);
        let mut q = bucket("shared");
        q.policy = Some("{\"b\":1}".into());
        b.insert("shared".into(), q);
        assert!(clashes(&a, &b)[0].contains("policies differ"));

        let tagged = |v: &str| {
            let mut t = bucket("shared");
            t.tags = vec![crate::model::BucketTag {
                key: "team".into(),
                value: v.into(),
            }];
            t
        };
        a.insert("shared".into(), tagged("blue"));
        b.insert("shared".into(), bucket("shared"));
        assert!(clashes(&a, &b).is_empty(), "tags on one side only merge");
        b.insert("shared".into(), tagged("red"));
        assert!(clashes(&a, &b)[0].contains("tags differ"));

        let expiring = |days: i64| {
            let mut t = bucket("shared");
            t.lifecycle = vec![crate::lifecycle::LifecycleRule {
                id: "r".into(),
                enabled: true,
                filter: crate::lifecycle::LifecycleFilter::All,
                expiration: Some(crate::lifecycle::Expiration::Days(days)),
                expired_object_delete_marker: false,
                noncurrent: None,
                abort_multipart_days: None,
            }];
            t
        };
        a.insert("shared".into(), expiring(1));
        b.insert("shared".into(), bucket("shared"));
        assert!(clashes(&a, &b).is_empty(), "rules on one side only merge");
        b.insert("shared".into(), expiring(2));
        assert!(clashes(&a, &b)[0].contains("lifecycle rules differ"));

        let cors = |origin: &str| {
            let mut t = bucket("shared");
            t.cors = vec![crate::cors::CorsRule {
                id: None,
                allowed_origins: vec![origin.into()],
                allowed_methods: vec!["GET".into()],
                allowed_headers: Vec::new(),
                expose_headers: Vec::new(),
                max_age_seconds: None,
            }];
            t
        };
        a.insert("shared".into(), cors("https://a.example"));
        b.insert("shared".into(), bucket("shared"));
        assert!(clashes(&a, &b).is_empty(), "CORS on one side only merges");
        b.insert("shared".into(), cors("https://b.example"));
        assert!(clashes(&a, &b)[0].contains("CORS rules differ"));
    }
}
