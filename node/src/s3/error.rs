//! The one place where internal errors become S3 errors (code, status, message).

use http::StatusCode;
use s3s::{S3Error, S3ErrorCode};

use crate::catalog::CatalogError;
use crate::object::ObjectError;
use cairn_control_plane::cors::CorsError;
use cairn_control_plane::iam::identity::IamError;
use cairn_control_plane::lifecycle::LifecycleError;
use cairn_control_plane::CommandError;

fn err(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::with_message(code, msg.into())
}

/// A read that met a delete marker: 405 when the marker was named by id, else 404 NoSuchKey;
/// both tell the client it was a marker, as AWS does.
fn delete_marker_error(version_id: &str, requested: bool) -> S3Error {
    let mut e = if requested {
        err(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        )
    } else {
        err(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
    };
    // s3s replaces the error response's headers with these: keep the XML content type.
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    h.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Ok(v) = http::HeaderValue::from_str(version_id) {
        h.insert("x-amz-version-id", v);
    }
    e.set_headers(h);
    e
}

/// s3s refuses a POST form that fails a condition of its policy (the bucket's included) with
/// 400 `InvalidPolicyDocument`, before Cairn sees the request; AWS answers 403 `AccessDenied`
/// ("Invalid according to Policy: Policy Condition failed") and keeps `InvalidPolicyDocument` for
/// a policy it cannot read. The error document s3s wrote, as AWS would have answered it.
pub fn post_condition_refusal(status: StatusCode, doc: &str) -> Option<(StatusCode, String)> {
    const FROM: &str = "<Code>InvalidPolicyDocument</Code><Message>";
    let failed = status == StatusCode::BAD_REQUEST
        && ["Policy condition ", "Bucket in form field "]
            .iter()
            .any(|m| doc.contains(&format!("{FROM}{m}")));
    failed.then(|| {
        let to = "<Code>AccessDenied</Code><Message>Invalid according to Policy: Policy Condition failed: ";
        (StatusCode::FORBIDDEN, doc.replacen(FROM, to, 1))
    })
}

/// The S3 error for an object-layer error (a function, not `From`: both types are other crates').
pub fn object_error(e: ObjectError) -> S3Error {
    use ObjectError as E;
    let msg = e.to_string();
    match e {
        E::NoSuchBucket => err(S3ErrorCode::NoSuchBucket, msg),
        E::NoSuchKey => err(S3ErrorCode::NoSuchKey, msg),
        E::NoSuchVersion => err(S3ErrorCode::NoSuchVersion, msg),
        E::NoSuchUpload => err(S3ErrorCode::NoSuchUpload, msg),
        E::DeleteMarker {
            version_id,
            requested,
        } => delete_marker_error(&version_id, requested),
        E::Locked(_) => err(S3ErrorCode::AccessDenied, msg),
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
        E::RequestTimeout(_) => err(S3ErrorCode::RequestTimeout, msg),
        E::InvalidArgument(_) => err(S3ErrorCode::InvalidArgument, msg),
        E::ReplicaConflict(_) => err(S3ErrorCode::InvalidRequest, msg),
        E::Stage(e) => match e.downcast::<crate::sse::SseError>() {
            Ok(e) => super::sse::error(*e),
            Err(e) => {
                tracing::error!(error = %e, "storage stage error");
                err(
                    S3ErrorCode::InternalError,
                    "We encountered an internal error. Please try again.",
                )
            }
        },
        E::Drive(_) | E::Erasure(_) | E::CorruptMeta(_) => {
            tracing::error!(error = %msg, "internal storage error");
            err(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            )
        }
    }
}

/// A peer site's refusal of a read proxied to it (`s3::proxy`), as this site answers its client:
/// the peer's code and message from its XML `body` (or, when it sent none, as for a HEAD or a
/// 304, the code its status stands for), its status, and the object's `headers` it sent (the
/// ETag of a 304, the delete marker of a 405).
pub fn peer_error(status: StatusCode, body: &[u8], mut headers: http::HeaderMap) -> S3Error {
    let text = String::from_utf8_lossy(body);
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(text[start..start + len].to_owned())
    };
    let code = element("Code")
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
        .map(|c| S3ErrorCode::from_bytes(c.as_bytes()).unwrap_or(S3ErrorCode::Custom(c.into())))
        .unwrap_or_else(|| match status.as_u16() {
            304 => S3ErrorCode::NotModified,
            404 => S3ErrorCode::NoSuchKey,
            405 => S3ErrorCode::MethodNotAllowed,
            412 => S3ErrorCode::PreconditionFailed,
            416 => S3ErrorCode::InvalidRange,
            _ => S3ErrorCode::InvalidRequest,
        });
    let mut e = match element("Message") {
        Some(m) => err(code, m),
        None => S3Error::new(code),
    };
    e.set_status_code(status);
    // s3s replaces the error response's headers with these: keep the XML content type.
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    headers.remove(http::header::CONTENT_LENGTH);
    e.set_headers(headers);
    e
}

impl From<CatalogError> for S3Error {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Command(CommandError::BucketExists(_)) => err(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            ),
            CatalogError::Command(CommandError::NoSuchBucket(_)) => err(S3ErrorCode::NoSuchBucket, e.to_string()),
            CatalogError::Command(CommandError::InvalidBucketState(m)) => err(S3ErrorCode::InvalidBucketState, m),
            CatalogError::Command(CommandError::InvalidRequest(m)) => err(S3ErrorCode::InvalidRequest, m),
            CatalogError::Command(CommandError::InvalidTag(m)) => err(S3ErrorCode::InvalidTag, m),
            CatalogError::Command(CommandError::InvalidLifecycle(l)) => lifecycle_error(l),
            CatalogError::Command(CommandError::InvalidCors(c)) => cors_error(c),
            CatalogError::Command(
                CommandError::KmsKeyExists(_)
                | CommandError::NoSuchKmsKey(_)
                | CommandError::KmsKeyDeleted(_),
            ) => err(S3ErrorCode::InvalidRequest, e.to_string()),
            CatalogError::Command(CommandError::NotEmpty) => err(S3ErrorCode::InternalError, e.to_string()),
            CatalogError::Command(CommandError::Iam(i)) => iam_error(i),
            CatalogError::Unavailable(_) => err(S3ErrorCode::ServiceUnavailable, e.to_string()),
        }
    }
}

/// A refused lifecycle configuration, with AWS's code for each reason.
pub fn lifecycle_error(e: LifecycleError) -> S3Error {
    match e {
        LifecycleError::Malformed(m) => err(S3ErrorCode::MalformedXML, m),
        LifecycleError::InvalidArgument(m) => err(S3ErrorCode::InvalidArgument, m),
        LifecycleError::InvalidRequest(m) => err(S3ErrorCode::InvalidRequest, m),
    }
}

/// A refused CORS configuration, with AWS's code for each reason.
pub fn cors_error(e: CorsError) -> S3Error {
    match e {
        CorsError::Malformed(m) => err(S3ErrorCode::MalformedXML, m),
        CorsError::InvalidRequest(m) => err(S3ErrorCode::InvalidRequest, m),
    }
}

fn with_status(code: &'static str, status: StatusCode, msg: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), msg);
    e.set_status_code(status);
    e
}

/// Maps a refused IAM command to MinIO's admin error codes.
pub fn iam_error(e: IamError) -> S3Error {
    let msg = e.to_string();
    match e {
        IamError::NoSuchUser(_) => with_status("XMinioAdminNoSuchUser", StatusCode::NOT_FOUND, msg),
        IamError::NoSuchGroup(_) => {
            with_status("XMinioAdminNoSuchGroup", StatusCode::NOT_FOUND, msg)
        }
        IamError::NoSuchPolicy(_) => {
            with_status("XMinioAdminNoSuchPolicy", StatusCode::NOT_FOUND, msg)
        }
        IamError::NoSuchServiceAccount(_) => with_status(
            "XMinioAdminNoSuchServiceAccount",
            StatusCode::NOT_FOUND,
            msg,
        ),
        IamError::MalformedPolicy(m) => S3Error::with_message(S3ErrorCode::MalformedPolicy, m),
        IamError::AccessKeyInUse(_) | IamError::PolicyInUse(_) | IamError::GroupNotEmpty(_) => {
            with_status("XMinioAdminConflict", StatusCode::CONFLICT, msg)
        }
        IamError::InvalidAccessKey(_)
        | IamError::InvalidName(_)
        | IamError::CannedPolicy(_)
        | IamError::InvalidDn(_) => S3Error::with_message(S3ErrorCode::InvalidArgument, msg),
    }
}
