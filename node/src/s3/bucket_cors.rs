//! Put/Get/DeleteBucketCors: a bucket's CORS rules, kept in the control plane (so they replicate
//! to paired sites like every bucket config) and checked against AWS's limits where they are
//! applied. The preflight and the headers of actual requests are `crate::server::cors`.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use cairn_control_plane::cors::{self as rules, CorsRule};
use cairn_control_plane::Command;

use super::CairnS3;

/// AWS's answer for a bucket without CORS rules.
fn no_configuration() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::NoSuchCORSConfiguration,
        "The CORS configuration does not exist",
    );
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

fn rule_of(r: CORSRule) -> CorsRule {
    CorsRule {
        id: r.id.filter(|id| !id.is_empty()),
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: r.allowed_headers.unwrap_or_default(),
        expose_headers: r.expose_headers.unwrap_or_default(),
        max_age_seconds: r.max_age_seconds,
    }
}

fn dto_of(r: &CorsRule) -> CORSRule {
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    CORSRule {
        id: r.id.clone(),
        allowed_origins: r.allowed_origins.clone(),
        allowed_methods: r.allowed_methods.clone(),
        allowed_headers: some(&r.allowed_headers),
        expose_headers: some(&r.expose_headers),
        max_age_seconds: r.max_age_seconds,
    }
}

async fn set(s3: &CairnS3, bucket: &str, rules: Vec<CorsRule>) -> S3Result<()> {
    let name = bucket.to_string();
    s3.set_bucket_config(bucket, Command::SetBucketCors { name, rules })
        .await
}

pub async fn put(
    s3: &CairnS3,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let cors_rules = input.cors_configuration.cors_rules;
    if cors_rules.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            "a CORSConfiguration needs at least one CORSRule",
        ));
    }
    let cors_rules: Vec<CorsRule> = cors_rules.into_iter().map(rule_of).collect();
    // Refused before it reaches the log; the state machine checks again what peers send.
    rules::check_rules(&cors_rules).map_err(super::error::cors_error)?;
    set(s3, &input.bucket, cors_rules).await?;
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

pub async fn get(
    s3: &CairnS3,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let bucket = s3.require_bucket(&req.input.bucket).await?;
    if bucket.cors.is_empty() {
        return Err(no_configuration());
    }
    Ok(S3Response::new(GetBucketCorsOutput {
        cors_rules: Some(bucket.cors.iter().map(dto_of).collect()),
    }))
}

pub async fn delete(
    s3: &CairnS3,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    set(s3, &req.input.bucket, Vec::new()).await?;
    Ok(S3Response::new(DeleteBucketCorsOutput::default()))
}
