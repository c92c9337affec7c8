//! Put/Get/DeleteBucketLifecycleConfiguration: a bucket's lifecycle rules, kept in the control
//! plane (so they replicate to paired sites like every bucket config) and checked against AWS's
//! limits where they are applied; and the `x-amz-expiration` header of a version a rule will
//! expire. The rules are applied by `crate::lifecycle`.

use s3s::dto::LifecycleRule as RuleDto;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use cairn_control_plane::lifecycle::{
    self as rules, AndFilter, Candidate, Expiration, LifecycleFilter, LifecycleRule,
    NoncurrentExpiration,
};
use cairn_control_plane::{BucketInfo, BucketTag, Command};
use cairn_proto::meta::ObjectVersion;

use super::CairnS3;

/// AWS's answer for a bucket without rules.
fn no_configuration(bucket: &str) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::NoSuchLifecycleConfiguration,
        format!("The lifecycle configuration does not exist for bucket {bucket}"),
    );
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

fn malformed(why: &str) -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema: {why}"
    )
}

fn bucket_tag(t: Tag) -> BucketTag {
    BucketTag {
        key: t.key.unwrap_or_default(),
        value: t.value.unwrap_or_default(),
    }
}

fn tag(t: &BucketTag) -> Tag {
    Tag {
        key: Some(t.key.clone()),
        value: Some(t.value.clone()),
    }
}

/// A rule's filter: its legacy `Prefix`, or `Filter` with at most one condition (several go in
/// `And`); neither is malformed, as on AWS.
fn filter_of(
    prefix: Option<String>,
    filter: Option<LifecycleRuleFilter>,
) -> S3Result<LifecycleFilter> {
    let f = match (prefix, filter) {
        (Some(p), None) => return Ok(LifecycleFilter::RulePrefix(p)),
        (None, Some(f)) => f,
        (Some(_), Some(_)) => return Err(malformed("a rule has both Prefix and Filter")),
        (None, None) => return Err(malformed("a rule needs a Filter")),
    };
    let given = usize::from(f.and.is_some())
        + usize::from(f.prefix.is_some())
        + usize::from(f.tag.is_some())
        + usize::from(f.object_size_greater_than.is_some())
        + usize::from(f.object_size_less_than.is_some());
    if given > 1 {
        return Err(malformed(
            "a Filter holds one condition; use And for several",
        ));
    }
    Ok(if let Some(a) = f.and {
        LifecycleFilter::And(AndFilter {
            prefix: a.prefix,
            tags: a
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(bucket_tag)
                .collect(),
            size_greater_than: a.object_size_greater_than,
            size_less_than: a.object_size_less_than,
        })
    } else if let Some(p) = f.prefix {
        LifecycleFilter::Prefix(p)
    } else if let Some(t) = f.tag {
        LifecycleFilter::Tag(bucket_tag(t))
    } else if let Some(n) = f.object_size_greater_than {
        LifecycleFilter::SizeGreaterThan(n)
    } else if let Some(n) = f.object_size_less_than {
        LifecycleFilter::SizeLessThan(n)
    } else {
        LifecycleFilter::All
    })
}

fn rule_of(r: RuleDto) -> S3Result<LifecycleRule> {
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            NotImplemented,
            "Transitions are not supported: Cairn has one storage class"
        ));
    }
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        _ => return Err(malformed("Status must be Enabled or Disabled")),
    };
    let mut expired_object_delete_marker = false;
    let expiration = match r.expiration {
        None => None,
        Some(e) => {
            expired_object_delete_marker = e.expired_object_delete_marker.unwrap_or(false);
            match (e.days, e.date) {
                (Some(_), Some(_)) => return Err(malformed("Expiration has both Days and Date")),
                (Some(d), None) => Some(Expiration::Days(i64::from(d))),
                (None, Some(t)) => {
                    let t = time::OffsetDateTime::from(t);
                    let ns = i64::try_from(t.unix_timestamp_nanos())
                        .map_err(|_| s3_error!(InvalidArgument, "'Date' is out of range"))?;
                    Some(Expiration::Date(ns))
                }
                (None, None) if e.expired_object_delete_marker.is_some() => None,
                (None, None) => {
                    return Err(malformed(
                        "Expiration needs Days, Date or ExpiredObjectDeleteMarker",
                    ))
                }
            }
        }
    };
    let noncurrent = match r.noncurrent_version_expiration {
        None => None,
        Some(n) => Some(NoncurrentExpiration {
            days: n
                .noncurrent_days
                .map(i64::from)
                .ok_or_else(|| malformed("NoncurrentVersionExpiration needs NoncurrentDays"))?,
            newer_versions: n
                .newer_noncurrent_versions
                .map(|v| u32::try_from(v).unwrap_or(0)),
        }),
    };
    let abort_multipart_days = match r.abort_incomplete_multipart_upload {
        None => None,
        Some(a) => Some(i64::from(a.days_after_initiation.ok_or_else(|| {
            malformed("AbortIncompleteMultipartUpload needs DaysAfterInitiation")
        })?)),
    };
    Ok(LifecycleRule {
        id: r.id.unwrap_or_default(),
        enabled,
        filter: filter_of(r.prefix, r.filter)?,
        expiration,
        expired_object_delete_marker,
        noncurrent,
        abort_multipart_days,
    })
}

fn dto_of(r: &LifecycleRule) -> RuleDto {
    let (prefix, filter) = match &r.filter {
        LifecycleFilter::RulePrefix(p) => (Some(p.clone()), None),
        f => {
            let mut out = LifecycleRuleFilter::default();
            match f {
                LifecycleFilter::Prefix(p) => out.prefix = Some(p.clone()),
                LifecycleFilter::Tag(t) => out.tag = Some(tag(t)),
                LifecycleFilter::SizeGreaterThan(n) => out.object_size_greater_than = Some(*n),
                LifecycleFilter::SizeLessThan(n) => out.object_size_less_than = Some(*n),
                LifecycleFilter::And(a) => {
                    out.and = Some(LifecycleRuleAndOperator {
                        prefix: a.prefix.clone(),
                        tags: (!a.tags.is_empty()).then(|| a.tags.iter().map(tag).collect()),
                        object_size_greater_than: a.size_greater_than,
                        object_size_less_than: a.size_less_than,
                    })
                }
                LifecycleFilter::All | LifecycleFilter::RulePrefix(_) => {}
            }
            (None, Some(out))
        }
    };
    let expiration = match (r.expiration, r.expired_object_delete_marker) {
        (None, false) => None,
        (e, marker) => Some(LifecycleExpiration {
            days: match e {
                Some(Expiration::Days(d)) => i32::try_from(d).ok(),
                _ => None,
            },
            date: match e {
                Some(Expiration::Date(ns)) => {
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                        .ok()
                        .map(Timestamp::from)
                }
                _ => None,
            },
            expired_object_delete_marker: marker.then_some(true),
        }),
    };
    RuleDto {
        id: (!r.id.is_empty()).then(|| r.id.clone()),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        prefix,
        filter,
        expiration,
        noncurrent_version_expiration: r.noncurrent.map(|n| NoncurrentVersionExpiration {
            noncurrent_days: i32::try_from(n.days).ok(),
            newer_noncurrent_versions: n.newer_versions.and_then(|v| i32::try_from(v).ok()),
        }),
        abort_incomplete_multipart_upload: r.abort_multipart_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: i32::try_from(d).ok(),
            }
        }),
        noncurrent_version_transitions: None,
        transitions: None,
    }
}

async fn set(s3: &CairnS3, bucket: &str, rules: Vec<LifecycleRule>) -> S3Result<()> {
    let name = bucket.to_string();
    s3.set_bucket_config(bucket, Command::SetBucketLifecycle { name, rules })
        .await
}

pub async fn put(
    s3: &CairnS3,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
    let input = req.input;
    let config = input
        .lifecycle_configuration
        .ok_or_else(|| malformed("no LifecycleConfiguration"))?;
    if config.rules.is_empty() {
        return Err(malformed(
            "a LifecycleConfiguration needs at least one Rule",
        ));
    }
    if config.rules.len() > rules::MAX_RULES {
        return Err(malformed("too many rules"));
    }
    let rules = config
        .rules
        .into_iter()
        .map(rule_of)
        .collect::<S3Result<Vec<_>>>()?;
    set(s3, &input.bucket, rules).await?;
    Ok(S3Response::new(
        PutBucketLifecycleConfigurationOutput::default(),
    ))
}

pub async fn get(
    s3: &CairnS3,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    let bucket = s3.require_bucket(&req.input.bucket).await?;
    if bucket.lifecycle.is_empty() {
        return Err(no_configuration(&req.input.bucket));
    }
    Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
        rules: Some(bucket.lifecycle.iter().map(dto_of).collect()),
        ..Default::default()
    }))
}

pub async fn delete(
    s3: &CairnS3,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
    set(s3, &req.input.bucket, Vec::new()).await?;
    Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
}

/// The tags of a version as a filter matches them.
pub fn tag_pairs(v: &ObjectVersion) -> Vec<(&str, &str)> {
    v.tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect()
}

/// When current version `v` of `key` expires and by which rule: the earliest of the enabled rules
/// with an expiration whose filter it matches.
pub fn current_expiry<'a>(
    bucket: &'a BucketInfo,
    key: &str,
    v: &ObjectVersion,
    day_ns: i64,
) -> Option<(i64, &'a LifecycleRule)> {
    if v.delete_marker {
        return None;
    }
    let tags = tag_pairs(v);
    let c = Candidate {
        key,
        size: i64::try_from(v.size).ok(),
        tags: &tags,
    };
    bucket
        .lifecycle
        .iter()
        .filter(|r| r.enabled && r.filter.matches(&c))
        .filter_map(|r| Some((rules::expires_at(r.expiration?, v.mod_time_ns, day_ns), r)))
        .min_by_key(|(at, _)| *at)
}

/// `x-amz-expiration` for current version `v`: `expiry-date="<HTTP date>", rule-id="<id>"`.
pub fn expiration_header(
    s3: &CairnS3,
    bucket: &BucketInfo,
    key: &str,
    v: &ObjectVersion,
) -> Option<String> {
    let (at, rule) = current_expiry(bucket, key, v, s3.lifecycle_day_ns)?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at)).ok()?;
    let date = t
        .format(&time::format_description::well_known::Rfc2822)
        .ok()?;
    Some(format!(
        "expiry-date=\"{}\", rule-id=\"{}\"",
        http_date(&date),
        rule.id.replace('"', "%22")
    ))
}

/// RFC 2822's `+0000` as HTTP's `GMT` (`Fri, 23 Dec 2012 00:00:00 GMT`).
fn http_date(rfc2822: &str) -> String {
    rfc2822
        .strip_suffix(" +0000")
        .map_or_else(|| rfc2822.to_string(), |d| format!("{d} GMT"))
}
