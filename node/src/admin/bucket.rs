//! Admin API for a bucket's versioning and object-lock configuration (`bucket/versioning`,
//! `bucket/lock`), the same control-plane commands the S3 calls propose, as JSON.

use hyper::Method;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};
use serde::Serialize;

use cairn_control_plane::{
    BucketInfo, Command, DefaultRetention, LockMode, RetentionPeriod, Versioning,
};

use super::{json, query_param};
use crate::node::Node;

#[derive(Serialize)]
struct VersioningInfo {
    bucket: String,
    /// "Unversioned", "Enabled" or "Suspended".
    versioning: String,
}

#[derive(Serialize)]
struct LockInfo {
    bucket: String,
    object_lock: bool,
    mode: Option<&'static str>,
    days: Option<u32>,
    years: Option<u32>,
}

fn versioning_info(b: &BucketInfo) -> VersioningInfo {
    VersioningInfo {
        bucket: b.name.clone(),
        versioning: format!("{:?}", b.versioning),
    }
}

fn lock_info(b: &BucketInfo) -> LockInfo {
    let d = b.default_retention;
    LockInfo {
        bucket: b.name.clone(),
        object_lock: b.object_lock,
        mode: d.map(|d| d.mode.as_str()),
        days: d.and_then(|d| match d.period {
            RetentionPeriod::Days(n) => Some(n),
            RetentionPeriod::Years(_) => None,
        }),
        years: d.and_then(|d| match d.period {
            RetentionPeriod::Years(n) => Some(n),
            RetentionPeriod::Days(_) => None,
        }),
    }
}

/// The default retention named by `mode` + `days` | `years`; no mode clears it.
fn retention_param(req: &S3Request<Body>) -> S3Result<Option<DefaultRetention>> {
    let Some(mode) = query_param(&req.uri, "mode") else {
        return Ok(None);
    };
    let mode = LockMode::parse(&mode.to_ascii_uppercase())
        .ok_or_else(|| s3_error!(InvalidArgument, "mode must be GOVERNANCE or COMPLIANCE"))?;
    let num = |name: &str| -> S3Result<Option<u32>> {
        query_param(&req.uri, name)
            .map(|v| {
                v.parse()
                    .map_err(|_| s3_error!(InvalidArgument, "{name} must be a positive integer"))
            })
            .transpose()
    };
    let period = match (num("days")?, num("years")?) {
        (Some(d), None) => RetentionPeriod::Days(d),
        (None, Some(y)) => RetentionPeriod::Years(y),
        _ => {
            return Err(s3_error!(
                InvalidArgument,
                "a retention mode needs exactly one of days or years"
            ))
        }
    };
    Ok(Some(DefaultRetention { mode, period }))
}

/// Serves `bucket/versioning` and `bucket/lock` (GET reads, PUT changes).
pub async fn handle(node: &Node, req: &S3Request<Body>, op: &str) -> S3Result<S3Response<Body>> {
    let name = query_param(&req.uri, "bucket")
        .ok_or_else(|| s3_error!(InvalidArgument, "query parameter bucket is required"))?;
    let cmd = match (&req.method, op) {
        (&Method::PUT, "bucket/versioning") => {
            let versioning = match query_param(&req.uri, "status").as_deref() {
                Some("Enabled") => Versioning::Enabled,
                Some("Suspended") => Versioning::Suspended,
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "status must be Enabled or Suspended"
                    ))
                }
            };
            Some(Command::SetVersioning {
                name: name.clone(),
                versioning,
            })
        }
        (&Method::PUT, "bucket/lock") => Some(Command::SetObjectLock {
            name: name.clone(),
            default_retention: retention_param(req)?,
        }),
        (&Method::GET, "bucket/versioning" | "bucket/lock") => None,
        _ => return Err(s3_error!(NotImplemented, "unknown admin operation {op}")),
    };
    if let Some(cmd) = cmd {
        node.catalog.propose(cmd).await?;
    }
    let b = node
        .catalog
        .bucket(&name)
        .await?
        .ok_or_else(|| s3_error!(NoSuchBucket, "The specified bucket does not exist"))?;
    if op == "bucket/lock" {
        json(&lock_info(&b))
    } else {
        json(&versioning_info(&b))
    }
}
