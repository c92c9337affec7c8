//! Put/Get/DeleteBucketEncryption: a bucket's default encryption, kept in the control plane and
//! applied to writes that send no SSE header.

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use cairn_control_plane::{BucketEncryption, BucketInfo, Command};

use super::CairnS3;
use crate::catalog::Catalog;
use crate::sse::object::Mode;

/// The encryption a write without SSE headers gets from its bucket's default.
pub fn default_mode(bucket: &BucketInfo) -> Option<Mode> {
    match bucket.encryption.as_ref()? {
        BucketEncryption::SseS3 => Some(Mode::S3),
        BucketEncryption::SseKms { key_id } => Some(Mode::Kms {
            key_id: key_id.clone(),
            context: Default::default(),
        }),
    }
}

/// Records `encryption` as the default of `bucket` (also the admin API's way in).
pub async fn set(
    catalog: &Catalog,
    bucket: &str,
    encryption: Option<BucketEncryption>,
) -> S3Result<()> {
    catalog
        .propose(Command::SetBucketEncryption {
            name: bucket.to_string(),
            encryption,
        })
        .await?;
    Ok(())
}

/// The configuration as S3 shows it.
pub fn to_configuration(e: &BucketEncryption) -> ServerSideEncryptionConfiguration {
    let (alg, key) = match e {
        BucketEncryption::SseS3 => (ServerSideEncryption::AES256, None),
        BucketEncryption::SseKms { key_id } => (ServerSideEncryption::AWS_KMS, key_id.clone()),
    };
    ServerSideEncryptionConfiguration {
        rules: vec![ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                sse_algorithm: ServerSideEncryption::from_static(alg),
                kms_master_key_id: key,
            }),
            bucket_key_enabled: None,
        }],
    }
}

fn from_configuration(c: &ServerSideEncryptionConfiguration) -> S3Result<BucketEncryption> {
    let bad = |m: &str| S3Error::with_message(S3ErrorCode::MalformedXML, m.to_string());
    let [rule] = c.rules.as_slice() else {
        return Err(bad("exactly one encryption rule is supported"));
    };
    let by_default = rule
        .apply_server_side_encryption_by_default
        .as_ref()
        .ok_or_else(|| bad("ApplyServerSideEncryptionByDefault is required"))?;
    match by_default.sse_algorithm.as_str() {
        ServerSideEncryption::AES256 if by_default.kms_master_key_id.is_none() => {
            Ok(BucketEncryption::SseS3)
        }
        ServerSideEncryption::AES256 => Err(s3_error!(
            InvalidArgument,
            "a KMS key id is only valid with aws:kms"
        )),
        ServerSideEncryption::AWS_KMS => Ok(BucketEncryption::SseKms {
            key_id: by_default.kms_master_key_id.clone(),
        }),
        _ => Err(s3_error!(
            InvalidArgument,
            "The encryption method specified is not supported"
        )),
    }
}

fn not_found() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("ServerSideEncryptionConfigurationNotFoundError".into()),
        "The server side encryption configuration was not found",
    );
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

pub async fn put(
    s3: &CairnS3,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let e = from_configuration(&input.server_side_encryption_configuration)?;
    set(&s3.catalog, &input.bucket, Some(e)).await?;
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

pub async fn get(
    s3: &CairnS3,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    let bucket = s3.require_bucket(&req.input.bucket).await?;
    let e = bucket.encryption.as_ref().ok_or_else(not_found)?;
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(to_configuration(e)),
    }))
}

pub async fn delete(
    s3: &CairnS3,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    s3.require_bucket(&req.input.bucket).await?;
    set(&s3.catalog, &req.input.bucket, None).await?;
    Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
}
