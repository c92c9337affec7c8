//! Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus. The document is validated here, once,
//! before it enters the Raft log; the authorizer applies it to every request on the bucket,
//! anonymous ones included.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use cairn_control_plane::iam::Policy;
use cairn_control_plane::Command;

use super::CairnS3;

fn no_policy() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchBucketPolicy,
        "The bucket policy does not exist",
    )
}

async fn set(s3: &CairnS3, bucket: &str, policy: Option<String>) -> S3Result<()> {
    s3.catalog
        .propose(Command::SetBucketPolicy {
            bucket: bucket.to_owned(),
            policy,
        })
        .await?;
    Ok(())
}

/// The bucket's policy, parsed; NoSuchBucketPolicy when it has none.
async fn stored(s3: &CairnS3, bucket: &str) -> S3Result<(String, Policy)> {
    let info = s3.require_bucket(bucket).await?;
    let text = info.policy.ok_or_else(no_policy)?;
    let parsed = Policy::load_bucket(&text, bucket)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
    Ok((text, parsed))
}

pub async fn put(
    s3: &CairnS3,
    req: S3Request<PutBucketPolicyInput>,
) -> S3Result<S3Response<PutBucketPolicyOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    Policy::parse_bucket(&input.policy, &input.bucket)
        .map_err(|e| S3Error::with_message(S3ErrorCode::MalformedPolicy, e.to_string()))?;
    set(s3, &input.bucket, Some(input.policy)).await?;
    Ok(S3Response::with_status(
        PutBucketPolicyOutput::default(),
        http::StatusCode::NO_CONTENT,
    ))
}

pub async fn get(
    s3: &CairnS3,
    req: S3Request<GetBucketPolicyInput>,
) -> S3Result<S3Response<GetBucketPolicyOutput>> {
    let (text, _) = stored(s3, &req.input.bucket).await?;
    Ok(S3Response::new(GetBucketPolicyOutput {
        policy: Some(text),
    }))
}

pub async fn delete(
    s3: &CairnS3,
    req: S3Request<DeleteBucketPolicyInput>,
) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
    s3.require_bucket(&req.input.bucket).await?;
    set(s3, &req.input.bucket, None).await?;
    Ok(S3Response::with_status(
        DeleteBucketPolicyOutput::default(),
        http::StatusCode::NO_CONTENT,
    ))
}

pub async fn status(
    s3: &CairnS3,
    req: S3Request<GetBucketPolicyStatusInput>,
) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
    let (_, policy) = stored(s3, &req.input.bucket).await?;
    Ok(S3Response::new(GetBucketPolicyStatusOutput {
        policy_status: Some(PolicyStatus {
            is_public: Some(policy.is_public()),
        }),
    }))
}
