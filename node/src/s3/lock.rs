//! S3 Object Lock at the API edge: bucket lock configuration, per-version retention and legal
//! hold, and the lock a new version gets from request headers or the bucket default. The rules
//! about removing locked versions live in `object::retention`.

use s3s::dto::DefaultRetention as DefaultRetention_;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use cairn_control_plane::{BucketInfo, Command, DefaultRetention, LockMode, RetentionPeriod};
use cairn_proto::meta::ObjectVersion;

use super::convert::{self, ChecksumRequest};
use super::error::object_error;
use super::CairnS3;
use crate::auth::authorize::s3_access::GovernanceBypass;
use crate::object::metadata::Field;
use crate::object::retention::{self, Bypass, LockState};
use crate::object::ObjectError;

fn missing_lock() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration"
    )
}

fn to_ns(t: &Timestamp) -> i64 {
    let t = time::OffsetDateTime::from(t.clone());
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn parse_mode(m: &str) -> S3Result<LockMode> {
    LockMode::parse(m).ok_or_else(|| s3_error!(InvalidArgument, "Unknown wormMode directive."))
}

/// The object-lock headers of a PutObject, CopyObject or CreateMultipartUpload.
pub struct LockHeaders<'a> {
    pub mode: Option<&'a ObjectLockMode>,
    pub retain_until: Option<&'a Timestamp>,
    pub legal_hold: Option<&'a ObjectLockLegalHoldStatus>,
}

/// The `LockHeaders` of any input that has the three object-lock fields.
macro_rules! lock_headers {
    ($input:expr) => {
        $crate::s3::lock::LockHeaders {
            mode: $input.object_lock_mode.as_ref(),
            retain_until: $input.object_lock_retain_until_date.as_ref(),
            legal_hold: $input.object_lock_legal_hold_status.as_ref(),
        }
    };
}
pub(crate) use lock_headers;

/// The lock of a version written now: the request's headers, else the bucket's default retention.
/// `integrity`: the request carries Content-MD5 or a checksum, which AWS requires with a retention.
pub fn lock_for_write(
    bucket: &BucketInfo,
    h: &LockHeaders<'_>,
    integrity: bool,
    now_ns: i64,
) -> S3Result<LockState> {
    let any = h.mode.is_some() || h.retain_until.is_some() || h.legal_hold.is_some();
    if any && !bucket.object_lock {
        return Err(missing_lock());
    }
    let mut lock = LockState {
        legal_hold: h
            .legal_hold
            .is_some_and(|s| s.as_str() == ObjectLockLegalHoldStatus::ON),
        ..Default::default()
    };
    match (h.mode, h.retain_until) {
        (Some(m), Some(t)) => {
            let until = to_ns(t);
            if until <= now_ns {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            lock.mode = Some(parse_mode(m.as_str())?);
            lock.retain_until_ns = until;
        }
        (None, None) => {
            if let Some(d) = bucket.default_retention.filter(|_| bucket.object_lock) {
                lock.mode = Some(d.mode);
                lock.retain_until_ns = d.retain_until_ns(now_ns);
            }
        }
        _ => {
            return Err(s3_error!(
            InvalidArgument,
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
        ))
        }
    }
    if (h.mode.is_some() || h.legal_hold.is_some()) && !integrity {
        return Err(s3_error!(
            InvalidRequest,
            "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters"
        ));
    }
    Ok(lock)
}

/// The request carries Content-MD5 or a checksum of the body (header or trailer).
pub fn has_integrity(cr: &ChecksumRequest) -> bool {
    let d = &cr.declared;
    cr.content_md5.is_some()
        || cr.algorithm.is_some()
        || d.checksum_crc32.is_some()
        || d.checksum_crc32c.is_some()
        || d.checksum_sha1.is_some()
        || d.checksum_sha256.is_some()
        || d.checksum_crc64nvme.is_some()
}

/// The lock of a replica: exactly what its origin sent. The origin applied its bucket's default
/// retention when the version was written; applying this bucket's default again would lock a
/// version the origin does not (one written before the default was set, or whose retention ran
/// out). Its integrity was checked where it was written; its bytes travel under TLS.
pub fn lock_of_replica(
    bucket: &BucketInfo,
    h: &LockHeaders<'_>,
    now_ns: i64,
) -> S3Result<LockState> {
    let bucket = BucketInfo {
        default_retention: None,
        ..bucket.clone()
    };
    lock_for_write(&bucket, h, true, now_ns)
}

/// Whether the request may bypass GOVERNANCE retention: the header, and the permission
/// `s3:BypassGovernanceRetention`, which the authorizer marks as granted in the request's
/// extensions ([`GovernanceBypass`]); root holds it also where no authorizer runs.
pub fn bypass<T>(s3: &CairnS3, req: &S3Request<T>, header: Option<bool>) -> Bypass {
    let header = header.unwrap_or(false);
    // The permission only matters with the header: no credential lookup on plain deletes.
    let allowed =
        header && (req.extensions.get::<GovernanceBypass>().is_some() || s3.signed_by_root(req));
    Bypass { header, allowed }
}

/// The lock headers GET and HEAD return for a version.
pub fn response_lock(
    v: &ObjectVersion,
) -> (
    Option<ObjectLockMode>,
    Option<Timestamp>,
    Option<ObjectLockLegalHoldStatus>,
) {
    let l = LockState::of(v);
    (
        l.mode.map(|m| ObjectLockMode::from(m.as_str().to_string())),
        l.mode.map(|_| convert::timestamp(l.retain_until_ns)),
        l.legal_hold
            .then(|| ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON)),
    )
}

async fn lock_bucket(s3: &CairnS3, bucket: &str) -> S3Result<BucketInfo> {
    let b = s3.require_bucket(bucket).await?;
    if !b.object_lock {
        return Err(missing_lock());
    }
    Ok(b)
}

/// The version a lock read names, in a bucket that has object lock.
async fn locked_version(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<crate::object::ObjectInfo> {
    lock_bucket(s3, bucket).await?;
    s3.objects
        .head_object(bucket, key, version_id)
        .await
        .map_err(object_error)
}

fn malformed() -> s3s::S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

fn default_retention(r: &DefaultRetention_) -> S3Result<DefaultRetention> {
    let mode = parse_mode(r.mode.as_ref().ok_or_else(malformed)?.as_str())?;
    let period = match (r.days, r.years) {
        (Some(d), None) => RetentionPeriod::Days(u32::try_from(d).unwrap_or(0)),
        (None, Some(y)) => RetentionPeriod::Years(u32::try_from(y).unwrap_or(0)),
        _ => return Err(malformed()),
    };
    Ok(DefaultRetention { mode, period })
}

pub async fn put_config(
    s3: &CairnS3,
    req: S3Request<PutObjectLockConfigurationInput>,
) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let cfg = input.object_lock_configuration.ok_or_else(malformed)?;
    if cfg
        .object_lock_enabled
        .as_ref()
        .is_none_or(|e| e.as_str() != ObjectLockEnabled::ENABLED)
    {
        return Err(malformed());
    }
    let default = match cfg.rule.and_then(|r| r.default_retention) {
        Some(r) => Some(default_retention(&r)?),
        None => None,
    };
    s3.catalog
        .propose(Command::SetObjectLock {
            name: input.bucket,
            default_retention: default,
        })
        .await?;
    Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
}

pub async fn get_config(
    s3: &CairnS3,
    req: S3Request<GetObjectLockConfigurationInput>,
) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
    let b = s3.require_bucket(&req.input.bucket).await?;
    if !b.object_lock {
        return Err(s3_error!(
            ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket"
        ));
    }
    let rule = b.default_retention.map(|d| {
        let (days, years) = match d.period {
            RetentionPeriod::Days(n) => (Some(n as i32), None),
            RetentionPeriod::Years(n) => (None, Some(n as i32)),
        };
        ObjectLockRule {
            default_retention: Some(DefaultRetention_ {
                mode: Some(ObjectLockRetentionMode::from(d.mode.as_str().to_string())),
                days,
                years,
            }),
        }
    });
    Ok(S3Response::new(GetObjectLockConfigurationOutput {
        object_lock_configuration: Some(ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
            rule,
        }),
    }))
}

pub async fn put_retention(
    s3: &CairnS3,
    req: S3Request<PutObjectRetentionInput>,
) -> S3Result<S3Response<PutObjectRetentionOutput>> {
    let bypass = bypass(s3, &req, req.input.bypass_governance_retention);
    let input = req.input;
    lock_bucket(s3, &input.bucket).await?;
    let now = s3.objects.clock.now_ns();
    let r = input.retention.unwrap_or_default();
    let new = match (&r.mode, &r.retain_until_date) {
        (Some(m), Some(t)) => {
            let until = to_ns(t);
            if until <= now {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            Some((parse_mode(m.as_str())?, until))
        }
        (None, None) => None,
        _ => return Err(malformed()),
    };
    let info = s3
        .objects
        .change_metadata(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            Field::Retention,
            super::replica::changes_replicate(s3),
            |v| {
                retention::check_retention_change(&LockState::of(v), new, bypass, now)
                    .map_err(ObjectError::Locked)
            },
            |v| {
                let mut l = LockState::of(v);
                (l.mode, l.retain_until_ns) = match new {
                    Some((m, until)) => (Some(m), until),
                    None => (None, 0),
                };
                l.write_to(v);
            },
        )
        .await
        .map_err(object_error)?;
    s3.replication
        .send(&input.bucket, &input.key, &info.version);
    Ok(S3Response::new(PutObjectRetentionOutput::default()))
}

pub async fn get_retention(
    s3: &CairnS3,
    req: S3Request<GetObjectRetentionInput>,
) -> S3Result<S3Response<GetObjectRetentionOutput>> {
    let input = req.input;
    let info = locked_version(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let (mode, until, _) = response_lock(&info.version);
    let Some(mode) = mode else {
        return Err(s3_error!(
            NoSuchObjectLockConfiguration,
            "The specified object does not have a ObjectLock configuration"
        ));
    };
    Ok(S3Response::new(GetObjectRetentionOutput {
        retention: Some(ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from(mode.as_str().to_string())),
            retain_until_date: until,
        }),
    }))
}

pub async fn put_legal_hold(
    s3: &CairnS3,
    req: S3Request<PutObjectLegalHoldInput>,
) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
    let input = req.input;
    lock_bucket(s3, &input.bucket).await?;
    let on = match input.legal_hold.and_then(|h| h.status) {
        Some(s) if s.as_str() == ObjectLockLegalHoldStatus::ON => true,
        Some(s) if s.as_str() == ObjectLockLegalHoldStatus::OFF => false,
        _ => return Err(malformed()),
    };
    let info = s3
        .objects
        .change_metadata(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            Field::LegalHold,
            super::replica::changes_replicate(s3),
            |_| Ok(()),
            |v| v.legal_hold = on,
        )
        .await
        .map_err(object_error)?;
    s3.replication
        .send(&input.bucket, &input.key, &info.version);
    Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
}

pub async fn get_legal_hold(
    s3: &CairnS3,
    req: S3Request<GetObjectLegalHoldInput>,
) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
    let input = req.input;
    let info = locked_version(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let status = if info.version.legal_hold {
        ObjectLockLegalHoldStatus::ON
    } else {
        ObjectLockLegalHoldStatus::OFF
    };
    Ok(S3Response::new(GetObjectLegalHoldOutput {
        legal_hold: Some(ObjectLockLegalHold {
            status: Some(ObjectLockLegalHoldStatus::from_static(status)),
        }),
    }))
}
