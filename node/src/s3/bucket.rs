//! Bucket operations: the bucket list lives in the control-plane state.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use cairn_control_plane::Command;

use super::convert::timestamp;
use super::error::object_error;
use super::CairnS3;

pub async fn create(
    s3: &CairnS3,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let input = req.input;
    if let Some(why) = super::bucket_name::problem(&input.bucket) {
        return Err(s3_error!(InvalidBucketName, "{why}"));
    }
    if let Some(loc) = input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
    {
        if loc.as_str() != s3.region && !(loc.as_str().is_empty() && s3.region == "us-east-1") {
            return Err(s3_error!(
                InvalidLocationConstraint,
                "The specified location-constraint is not valid for this endpoint ({})",
                s3.region
            ));
        }
    }
    let cmd = Command::CreateBucket {
        name: input.bucket.clone(),
        created_ns: s3.objects.clock.now_ns(),
        object_lock: input.object_lock_enabled_for_bucket.unwrap_or(false),
    };
    s3.catalog.propose(cmd).await?;
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    }))
}

pub async fn delete(
    s3: &CairnS3,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let bucket = req.input.bucket;
    s3.require_bucket(&bucket).await?;
    if !s3
        .objects
        .bucket_is_empty(&bucket)
        .await
        .map_err(object_error)?
    {
        return Err(s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty"
        ));
    }
    s3.catalog
        .propose(Command::DeleteBucket {
            name: bucket.clone(),
        })
        .await?;
    s3.objects.purge_bucket(&bucket).await;
    Ok(S3Response::new(DeleteBucketOutput {}))
}

pub async fn list(s3: &CairnS3) -> S3Result<S3Response<ListBucketsOutput>> {
    let state = s3.catalog.state_linearizable().await?;
    let buckets = state
        .buckets
        .values()
        .map(|b| Bucket {
            name: Some(b.name.clone()),
            creation_date: Some(timestamp(b.created_ns)),
            bucket_region: None,
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(super::list::owner()),
        ..Default::default()
    }))
}
