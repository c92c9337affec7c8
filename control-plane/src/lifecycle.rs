//! Bucket lifecycle rules (PutBucketLifecycleConfiguration), as the control plane keeps them.
//!
//! A rule set is checked against AWS's limits where it is applied ([`check_rules`]), so one a
//! peer site sends is held to them too. The filter keeps the shape it was given in (a rule's
//! legacy `Prefix`, `Filter` with one condition, or `And`), so GET returns what PUT sent.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::BucketTag;

/// AWS's limits.
pub const MAX_RULES: usize = 1000;
pub const MAX_RULE_ID: usize = 255;
pub const MAX_NEWER_NONCURRENT: u32 = 100;

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    pub filter: LifecycleFilter,
    /// Of the current version: a delete marker on a versioned bucket, removal on another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    /// Removes a delete marker that is the only version left of its key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_object_delete_marker: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent: Option<NoncurrentExpiration>,
    /// Days after initiation an incomplete multipart upload is aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_multipart_days: Option<i64>,
}

/// When a current version expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiration {
    /// Days after the version was written (rounded up to the next midnight UTC).
    Days(i64),
    /// At this instant (nanoseconds since the epoch, midnight UTC).
    Date(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    /// Days after the version became noncurrent (its successor was written).
    pub days: i64,
    /// The newest this many noncurrent versions are kept whatever their age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_versions: Option<u32>,
}

/// Which objects a rule applies to, in the shape it was put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LifecycleFilter {
    /// `<Filter/>` (or no filter at all): every object.
    #[default]
    All,
    /// The rule's own `<Prefix>` (deprecated by AWS, still accepted).
    RulePrefix(String),
    Prefix(String),
    Tag(BucketTag),
    SizeGreaterThan(i64),
    SizeLessThan(i64),
    And(AndFilter),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AndFilter {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tags: Vec<BucketTag>,
    #[serde(default)]
    pub size_greater_than: Option<i64>,
    #[serde(default)]
    pub size_less_than: Option<i64>,
}

/// What a filter is matched against: a delete marker has no size and no tags.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub key: &'a str,
    pub size: Option<i64>,
    pub tags: &'a [(&'a str, &'a str)],
}

impl LifecycleFilter {
    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        let tag = |t: &BucketTag| c.tags.iter().any(|(k, v)| *k == t.key && *v == t.value);
        let gt = |n: i64| c.size.is_some_and(|s| s > n);
        let lt = |n: i64| c.size.is_some_and(|s| s < n);
        match self {
            LifecycleFilter::All => true,
            LifecycleFilter::RulePrefix(p) | LifecycleFilter::Prefix(p) => c.key.starts_with(p),
            LifecycleFilter::Tag(t) => tag(t),
            LifecycleFilter::SizeGreaterThan(n) => gt(*n),
            LifecycleFilter::SizeLessThan(n) => lt(*n),
            LifecycleFilter::And(a) => {
                a.prefix.as_ref().is_none_or(|p| c.key.starts_with(p))
                    && a.tags.iter().all(tag)
                    && a.size_greater_than.is_none_or(gt)
                    && a.size_less_than.is_none_or(lt)
            }
        }
    }

    /// The prefix every matching key has (multipart uploads are matched on it alone).
    pub fn prefix(&self) -> &str {
        match self {
            LifecycleFilter::RulePrefix(p) | LifecycleFilter::Prefix(p) => p,
            LifecycleFilter::And(a) => a.prefix.as_deref().unwrap_or(""),
            _ => "",
        }
    }

    fn has_tags(&self) -> bool {
        match self {
            LifecycleFilter::Tag(_) => true,
            LifecycleFilter::And(a) => !a.tags.is_empty(),
            _ => false,
        }
    }

    fn has_size(&self) -> bool {
        match self {
            LifecycleFilter::SizeGreaterThan(_) | LifecycleFilter::SizeLessThan(_) => true,
            LifecycleFilter::And(a) => a.size_greater_than.is_some() || a.size_less_than.is_some(),
            _ => false,
        }
    }
}

/// Why a rule set is refused, each with the S3 error AWS gives.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum LifecycleError {
    /// 400 MalformedXML.
    #[error("{0}")]
    Malformed(String),
    /// 400 InvalidArgument.
    #[error("{0}")]
    InvalidArgument(String),
    /// 400 InvalidRequest.
    #[error("{0}")]
    InvalidRequest(String),
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// AWS's limits on a rule set (an empty one deletes the configuration).
pub fn check_rules(rules: &[LifecycleRule]) -> Result<(), LifecycleError> {
    use LifecycleError::{InvalidArgument as Arg, InvalidRequest as Req};
    if rules.len() > MAX_RULES {
        return Err(LifecycleError::Malformed(format!(
            "A lifecycle configuration can have at most {MAX_RULES} rules"
        )));
    }
    let positive = |what: &str, n: i64| {
        if n > 0 {
            Ok(())
        } else {
            Err(Arg(format!("'{what}' must be a positive integer")))
        }
    };
    for (i, r) in rules.iter().enumerate() {
        if r.id.chars().count() > MAX_RULE_ID {
            return Err(Arg(format!(
                "ID length should not exceed allowed limit of {MAX_RULE_ID}"
            )));
        }
        if !r.id.is_empty() && rules[..i].iter().any(|o| o.id == r.id) {
            return Err(Arg(
                "Rule ID must be unique. Found same ID for more than one rule".into(),
            ));
        }
        if r.expiration.is_none()
            && !r.expired_object_delete_marker
            && r.noncurrent.is_none()
            && r.abort_multipart_days.is_none()
        {
            return Err(Req(
                "At least one action needs to be specified in a rule".into()
            ));
        }
        match r.expiration {
            Some(Expiration::Days(d)) => positive("Days", d)?,
            Some(Expiration::Date(ns)) if ns.rem_euclid(NANOS_PER_DAY) != 0 => {
                return Err(Arg("'Date' must be at midnight GMT".into()))
            }
            _ => {}
        }
        if r.expired_object_delete_marker && r.expiration.is_some() {
            return Err(LifecycleError::Malformed(
                "ExpiredObjectDeleteMarker cannot be specified with Days or Date".into(),
            ));
        }
        if let Some(n) = &r.noncurrent {
            positive("NoncurrentDays", n.days)?;
            if n.newer_versions
                .is_some_and(|v| v == 0 || v > MAX_NEWER_NONCURRENT)
            {
                return Err(Arg(format!(
                    "'NewerNoncurrentVersions' must be between 1 and {MAX_NEWER_NONCURRENT}"
                )));
            }
        }
        if let Some(d) = r.abort_multipart_days {
            positive("DaysAfterInitiation", d)?;
            if r.filter.has_tags() || r.filter.has_size() {
                return Err(Req(
                    "AbortIncompleteMultipartUpload cannot be specified with Tags or object size filters"
                        .into(),
                ));
            }
        }
        if r.expired_object_delete_marker && r.filter.has_tags() {
            return Err(Req(
                "ExpiredObjectDeleteMarker cannot be specified with Tags".into(),
            ));
        }
        check_filter(&r.filter)?;
    }
    Ok(())
}

fn check_filter(f: &LifecycleFilter) -> Result<(), LifecycleError> {
    use LifecycleError::{InvalidArgument as Arg, InvalidRequest as Req};
    let size = |n: Option<i64>| match n {
        Some(n) if n < 0 => Err(Arg("Object size filters must not be negative".into())),
        _ => Ok(()),
    };
    let tag = |t: &BucketTag| {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            Err(Arg(
                "The TagKey or TagValue you have provided is invalid".into()
            ))
        } else {
            Ok(())
        }
    };
    match f {
        LifecycleFilter::Tag(t) => tag(t),
        LifecycleFilter::SizeGreaterThan(n) | LifecycleFilter::SizeLessThan(n) => size(Some(*n)),
        LifecycleFilter::And(a) => {
            size(a.size_greater_than)?;
            size(a.size_less_than)?;
            if let (Some(g), Some(l)) = (a.size_greater_than, a.size_less_than) {
                if g >= l {
                    return Err(Arg(
                        "ObjectSizeGreaterThan must be less than ObjectSizeLessThan".into(),
                    ));
                }
            }
            for (i, t) in a.tags.iter().enumerate() {
                tag(t)?;
                if a.tags[..i].iter().any(|o| o.key == t.key) {
                    return Err(Req("Duplicate Tag Keys are not allowed".into()));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The instant `days` days after `from_ns`, rounded up to the next day boundary ("midnight UTC":
/// a multiple of `day_ns` since the epoch), as AWS computes an expiry. `day_ns` is a real day
/// but for tests, which shorten it.
pub fn after_days(from_ns: i64, days: i64, day_ns: i64) -> i64 {
    let day = day_ns.max(1);
    let at = from_ns.saturating_add(days.saturating_mul(day));
    let rem = at.rem_euclid(day);
    if rem == 0 {
        at
    } else {
        at.saturating_add(day - rem)
    }
}

/// When a current version written at `mod_ns` expires under `e`.
pub fn expires_at(e: Expiration, mod_ns: i64, day_ns: i64) -> i64 {
    match e {
        Expiration::Days(d) => after_days(mod_ns, d, day_ns),
        Expiration::Date(ns) => ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str) -> LifecycleRule {
        LifecycleRule {
            id: id.into(),
            enabled: true,
            filter: LifecycleFilter::All,
            expiration: Some(Expiration::Days(1)),
            expired_object_delete_marker: false,
            noncurrent: None,
            abort_multipart_days: None,
        }
    }

    #[test]
    fn rule_sets_are_held_to_aws_limits() {
        assert_eq!(check_rules(&[rule("a"), rule("b")]), Ok(()));
        let arg = |rules: &[LifecycleRule]| {
            matches!(check_rules(rules), Err(LifecycleError::InvalidArgument(_)))
        };
        assert!(arg(&[rule("a"), rule("a")]));
        assert!(arg(&[rule(&"x".repeat(256))]));
        let mut r = rule("a");
        r.expiration = Some(Expiration::Days(0));
        assert!(arg(&[r.clone()]));
        r.expiration = Some(Expiration::Date(NANOS_PER_DAY + 1));
        assert!(arg(&[r.clone()]));
        r.expiration = Some(Expiration::Date(NANOS_PER_DAY * 20_000));
        assert_eq!(check_rules(&[r.clone()]), Ok(()));
        r.expiration = None;
        assert!(matches!(
            check_rules(&[r.clone()]),
            Err(LifecycleError::InvalidRequest(_))
        ));
        r.noncurrent = Some(NoncurrentExpiration {
            days: 1,
            newer_versions: Some(0),
        });
        assert!(arg(&[r.clone()]));
        r.noncurrent = None;
        r.abort_multipart_days = Some(1);
        r.filter = LifecycleFilter::Tag(BucketTag {
            key: "k".into(),
            value: "v".into(),
        });
        assert!(matches!(
            check_rules(&[r]),
            Err(LifecycleError::InvalidRequest(_))
        ));
        let many: Vec<_> = (0..=MAX_RULES).map(|i| rule(&i.to_string())).collect();
        assert!(matches!(
            check_rules(&many),
            Err(LifecycleError::Malformed(_))
        ));
    }

    #[test]
    fn filters_match_prefix_tags_and_size() {
        let tags = [("team", "blue")];
        let obj = Candidate {
            key: "logs/a",
            size: Some(100),
            tags: &tags,
        };
        let marker = Candidate {
            key: "logs/a",
            size: None,
            tags: &[],
        };
        let blue = BucketTag {
            key: "team".into(),
            value: "blue".into(),
        };
        assert!(LifecycleFilter::Prefix("logs/".into()).matches(&obj));
        assert!(!LifecycleFilter::Prefix("tmp/".into()).matches(&obj));
        assert!(LifecycleFilter::Tag(blue.clone()).matches(&obj));
        assert!(!LifecycleFilter::Tag(blue.clone()).matches(&marker));
        assert!(LifecycleFilter::SizeGreaterThan(99).matches(&obj));
        assert!(!LifecycleFilter::SizeGreaterThan(100).matches(&obj));
        assert!(!LifecycleFilter::SizeLessThan(100).matches(&obj));
        let and = LifecycleFilter::And(AndFilter {
            prefix: Some("logs/".into()),
            tags: vec![blue],
            size_greater_than: Some(10),
            size_less_than: Some(1000),
        });
        assert!(and.matches(&obj));
        assert!(!and.matches(&Candidate { key: "x", ..obj }));
        assert!(LifecycleFilter::RulePrefix("logs/".into()).matches(&marker));
    }

    #[test]
    fn expiry_rounds_up_to_the_next_day_boundary() {
        let day = NANOS_PER_DAY;
        assert_eq!(after_days(0, 1, day), day);
        assert_eq!(after_days(1, 1, day), 2 * day);
        assert_eq!(after_days(day / 2, 2, day), 3 * day);
        // A 2 s test day.
        let short = 2_000_000_000;
        assert_eq!(after_days(3_000_000_000, 1, short), 6_000_000_000);
    }
}
