//! The one place where internal errors become S3 errors (code, status, message).

use s3s::{S3Error, S3ErrorCode};

use crate::catalog::CatalogError;
use crate::object::ObjectError;
use cairn_control_plane::CommandError;

fn err(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::with_message(code, msg.into())
}

impl From<ObjectError> for S3Error {
    fn from(e: ObjectError) -> Self {
        use ObjectError as E;
        let msg = e.to_string();
        match e {
            E::NoSuchBucket => err(S3ErrorCode::NoSuchBucket, msg),
            E::NoSuchKey => err(S3ErrorCode::NoSuchKey, msg),
            E::NoSuchVersion => err(S3ErrorCode::NoSuchVersion, msg),
            E::NoSuchUpload => err(S3ErrorCode::NoSuchUpload, msg),
            E::ReadQuorum { .. } | E::WriteQuorum { .. } | E::Unrecoverable => {
                err(S3ErrorCode::ServiceUnavailable, msg)
            }
            E::BadDigest(_) => err(S3ErrorCode::BadDigest, msg),
            E::EntityTooLarge => err(S3ErrorCode::EntityTooLarge, msg),
            E::EntityTooSmall => err(S3ErrorCode::EntityTooSmall, msg),
            E::InvalidPart => err(S3ErrorCode::InvalidPart, msg),
            E::InvalidPartOrder => err(S3ErrorCode::InvalidPartOrder, msg),
            E::ChunkSignature => err(S3ErrorCode::SignatureDoesNotMatch, msg),
            E::IncompleteBody(_) => err(S3ErrorCode::IncompleteBody, msg),
            E::InvalidArgument(_) => err(S3ErrorCode::InvalidArgument, msg),
            E::Drive(_) | E::Erasure(_) | E::CorruptMeta(_) => {
                tracing::error!(error = %msg, "internal storage error");
                err(
                    S3ErrorCode::InternalError,
                    "We encountered an internal error. Please try again.",
                )
            }
        }
    }
}

impl From<CatalogError> for S3Error {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Command(CommandError::BucketExists(_)) => err(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            ),
            CatalogError::Command(CommandError::NoSuchBucket(_)) => err(S3ErrorCode::NoSuchBucket, e.to_string()),
            CatalogError::Command(CommandError::NotEmpty) => err(S3ErrorCode::InternalError, e.to_string()),
            CatalogError::Command(CommandError::Iam(i)) => crate::admin::iam::iam_error(i),
            CatalogError::Unavailable(_) => err(S3ErrorCode::ServiceUnavailable, e.to_string()),
        }
    }
}
