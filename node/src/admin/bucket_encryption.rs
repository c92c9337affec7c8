//! Admin API `bucket/encryption`: a bucket's default encryption (the same setting as
//! Put/Get/DeleteBucketEncryption), for `cairn admin bucket encryption`.

use hyper::{Method, Uri};
use s3s::{s3_error, Body, S3Response, S3Result};
use serde::Serialize;

use cairn_control_plane::BucketEncryption;

use super::{json, query_param};
use crate::node::Node;

/// What `info` prints.
#[derive(Serialize)]
struct EncryptionInfo {
    bucket: String,
    /// `none`, `sse-s3` or `sse-kms`.
    algorithm: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

/// The setting named by query parameters `sse` (`sse-s3` | `sse-kms`) and `key`.
fn parse_setting(uri: &Uri) -> S3Result<BucketEncryption> {
    match query_param(uri, "sse").as_deref() {
        Some("sse-s3") => Ok(BucketEncryption::SseS3),
        Some("sse-kms") => Ok(BucketEncryption::SseKms {
            key_id: query_param(uri, "key").filter(|k| !k.is_empty()),
        }),
        _ => Err(s3_error!(
            InvalidArgument,
            "query parameter sse must be sse-s3 or sse-kms"
        )),
    }
}

pub async fn handle(node: &Node, method: &Method, uri: &Uri) -> S3Result<S3Response<Body>> {
    let name = query_param(uri, "bucket")
        .ok_or_else(|| s3_error!(InvalidArgument, "query parameter bucket is required"))?;
    let catalog = &node.catalog;
    if catalog.bucket(&name).await?.is_none() {
        return Err(s3_error!(
            NoSuchBucket,
            "The specified bucket does not exist"
        ));
    }
    match *method {
        Method::PUT => {
            crate::s3::bucket_encryption::set(catalog, &name, Some(parse_setting(uri)?)).await?
        }
        Method::DELETE => crate::s3::bucket_encryption::set(catalog, &name, None).await?,
        Method::GET => {}
        _ => return Err(s3_error!(MethodNotAllowed, "use GET, PUT or DELETE")),
    }
    let current = catalog.bucket(&name).await?.and_then(|b| b.encryption);
    let (algorithm, key_id) = match current {
        None => ("none", None),
        Some(BucketEncryption::SseS3) => ("sse-s3", None),
        Some(BucketEncryption::SseKms { key_id }) => ("sse-kms", key_id),
    };
    json(&EncryptionInfo {
        bucket: name,
        algorithm,
        key_id,
    })
}
