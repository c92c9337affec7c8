//! Put/Get/DeleteBucketTagging: a bucket's tag set, kept in the control plane (so it replicates
//! to paired sites like every bucket config) and checked against AWS's limits where it is applied.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use cairn_control_plane::{BucketTag, Command};

use super::CairnS3;

/// AWS's answer for a bucket without tags.
fn no_tag_set(bucket: &str) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::NoSuchTagSet,
        format!("The TagSet does not exist for bucket {bucket}"),
    );
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

async fn set(s3: &CairnS3, bucket: &str, tags: Vec<BucketTag>) -> S3Result<()> {
    let name = bucket.to_string();
    s3.set_bucket_config(bucket, Command::SetBucketTagging { name, tags })
        .await
}

pub async fn put(
    s3: &CairnS3,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let tags = input
        .tagging
        .tag_set
        .into_iter()
        .map(|t| BucketTag {
            key: t.key.unwrap_or_default(),
            value: t.value.unwrap_or_default(),
        })
        .collect();
    set(s3, &input.bucket, tags).await?;
    Ok(S3Response::new(PutBucketTaggingOutput::default()))
}

pub async fn get(
    s3: &CairnS3,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let bucket = s3.require_bucket(&req.input.bucket).await?;
    if bucket.tags.is_empty() {
        return Err(no_tag_set(&req.input.bucket));
    }
    let tag_set = bucket
        .tags
        .iter()
        .map(|t| Tag {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect();
    Ok(S3Response::new(GetBucketTaggingOutput { tag_set }))
}

pub async fn delete(
    s3: &CairnS3,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    set(s3, &req.input.bucket, Vec::new()).await?;
    Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
}
