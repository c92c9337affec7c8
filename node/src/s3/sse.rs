//! Server-side encryption at the S3 edge: which encryption a request asks for (its headers, else
//! the bucket's default, else auto-encryption), the SSE headers of responses, and SSE errors as
//! AWS reports them. The crypto itself is in `crate::sse`.

use base64::Engine;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use s3s::dto::ServerSideEncryption;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

use cairn_control_plane::BucketInfo;
use cairn_proto::meta::{ObjectVersion, SseInfo};

use super::convert::ClientChecksums;
use super::error::object_error;
use super::CairnS3;
use crate::auth::ConnInfo;
use crate::object::write::WriteOutcome;
use crate::object::{GetHandle, ObjectResult};
use crate::sse::object::{self as sse_object, Body, Mode, SealedWrite};
use crate::sse::stream::StreamError;
use crate::sse::{Context, CustomerKey, ObjectKey, SseError, SseKind};

/// The three SSE-C headers of a request (or its copy-source variants).
#[derive(Default, Clone, Copy)]
pub struct CustomerHeaders<'a> {
    pub algorithm: Option<&'a str>,
    pub key: Option<&'a str>,
    pub key_md5: Option<&'a str>,
}

/// The SSE headers of a write request.
pub struct WriteHeaders<'a> {
    pub sse: Option<&'a ServerSideEncryption>,
    pub kms_key_id: Option<&'a str>,
    pub context: Option<&'a str>,
    pub customer: CustomerHeaders<'a>,
}

/// `CustomerHeaders` of an s3s input (`sse_customer_*`).
macro_rules! customer_headers {
    ($input:expr) => {
        $crate::s3::sse::CustomerHeaders {
            algorithm: $input.sse_customer_algorithm.as_deref(),
            key: $input.sse_customer_key.as_deref(),
            key_md5: $input.sse_customer_key_md5.as_deref(),
        }
    };
}
pub(crate) use customer_headers;

/// `CustomerHeaders` of a copy source (`copy_source_sse_customer_*`).
macro_rules! copy_source_customer_headers {
    ($input:expr) => {
        $crate::s3::sse::CustomerHeaders {
            algorithm: $input.copy_source_sse_customer_algorithm.as_deref(),
            key: $input.copy_source_sse_customer_key.as_deref(),
            key_md5: $input.copy_source_sse_customer_key_md5.as_deref(),
        }
    };
}
pub(crate) use copy_source_customer_headers;

/// `WriteHeaders` of an s3s input that can ask for any SSE type.
macro_rules! write_headers {
    ($input:expr) => {
        $crate::s3::sse::WriteHeaders {
            sse: $input.server_side_encryption.as_ref(),
            kms_key_id: $input.ssekms_key_id.as_deref(),
            context: $input.ssekms_encryption_context.as_deref(),
            customer: $crate::s3::sse::customer_headers!($input),
        }
    };
}
pub(crate) use write_headers;

/// Whether a request may carry an SSE-C key: it came over TLS, or the node was told
/// (`CAIRN_INSECURE_SSE_C=on`) that a TLS-terminating proxy stands in front of it. A request without
/// connection facts counts as plain HTTP.
pub fn ssec_allowed(s3: &CairnS3, extensions: &http::Extensions) -> bool {
    s3.sse.insecure_sse_c || extensions.get::<ConnInfo>().is_some_and(|c| c.secure)
}

/// The SSE-C key of a request; `None` when it sends no SSE-C header. `transport_ok` is
/// [`ssec_allowed`]: a key sent in the clear is refused, as AWS and MinIO do, before it is used.
pub fn customer_key(h: CustomerHeaders<'_>, transport_ok: bool) -> S3Result<Option<CustomerKey>> {
    let any = h.algorithm.is_some() || h.key.is_some() || h.key_md5.is_some();
    if any && !transport_ok {
        return Err(s3_error!(
            InvalidRequest,
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
        ));
    }
    match (h.algorithm, h.key, h.key_md5) {
        (None, None, None) => Ok(None),
        (Some(a), Some(k), Some(m)) => CustomerKey::parse(a, k, m).map(Some).map_err(error),
        (None, ..) => Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
        )),
        (_, None, _) => Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
        )),
        (_, _, None) => Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
        )),
    }
}

/// `x-amz-server-side-encryption-context`: base64 of a JSON object of strings.
fn parse_context(b64: &str) -> S3Result<Context> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The SSE-KMS encryption context is not valid"
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad())?;
    serde_json::from_slice::<Context>(&raw).map_err(|_| bad())
}

/// The encryption a write request asks for by its headers alone (`transport_ok`: see
/// [`customer_key`]).
pub fn requested(h: WriteHeaders<'_>, transport_ok: bool) -> S3Result<Option<Mode>> {
    let customer = customer_key(h.customer, transport_ok)?;
    let sse = h.sse.map(ServerSideEncryption::as_str);
    if customer.is_some() && sse.is_some() {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        ));
    }
    if sse != Some(ServerSideEncryption::AWS_KMS) && (h.kms_key_id.is_some() || h.context.is_some())
    {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption-aws-kms-key-id and -context are only valid with aws:kms"
        ));
    }
    match sse {
        None => Ok(customer.map(Mode::C)),
        Some(ServerSideEncryption::AES256) => Ok(Some(Mode::S3)),
        Some(ServerSideEncryption::AWS_KMS) => Ok(Some(Mode::Kms {
            key_id: h.kms_key_id.map(kms_key_name),
            context: h
                .context
                .map(parse_context)
                .transpose()?
                .unwrap_or_default(),
        })),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "The encryption method specified is not supported"
        )),
    }
}

/// A KMS key id as clients send it: a bare name, or an ARN ending in `key/NAME`.
fn kms_key_name(id: &str) -> String {
    id.rsplit_once(":key/")
        .map_or(id, |(_, name)| name)
        .to_string()
}

/// The encryption a write gets: what its headers ask for, else the bucket's default, else
/// auto-encryption's SSE-S3, else none.
pub fn effective(s3: &CairnS3, bucket: &BucketInfo, asked: Option<Mode>) -> Option<Mode> {
    asked
        .or_else(|| super::bucket_encryption::default_mode(bucket))
        .or_else(|| s3.sse.auto_encryption.then_some(Mode::S3))
}

/// An encrypted write: the record to store and the key that seals the body.
pub struct Plan {
    pub write: SealedWrite,
    key: ObjectKey,
    customer_md5: Option<String>,
}

impl Plan {
    pub fn echo(&self) -> Echo {
        echo(Some(&self.write.info), self.customer_md5.clone())
    }
}

/// A new object key for `bucket/key` under `mode`; `None` for an unencrypted write.
pub async fn plan(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    mode: Option<Mode>,
    multipart: bool,
) -> S3Result<Option<Plan>> {
    let Some(mode) = mode else { return Ok(None) };
    let customer_md5 = match &mode {
        Mode::C(ck) => Some(ck.key_md5_b64()),
        _ => None,
    };
    let (info, object_key) = s3
        .sse
        .create(bucket, key, &mode, multipart)
        .await
        .map_err(error)?;
    Ok(Some(Plan {
        write: SealedWrite::new(info),
        key: object_key,
        customer_md5,
    }))
}

/// The key of an upload's parts: reopened from the upload's record (SSE-C: with the request's key).
pub async fn plan_part(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    upload_id: &str,
    customer: Option<CustomerKey>,
) -> S3Result<Option<Plan>> {
    let (_, upload) = s3
        .objects
        .read_upload(bucket, key, upload_id)
        .await
        .map_err(object_error)?;
    let Some(info) = upload.sse else {
        return match customer {
            Some(_) => Err(error(SseError::CustomerKeyNotApplicable)),
            None => Ok(None),
        };
    };
    let object_key = s3
        .sse
        .open(bucket, key, &info, customer.as_ref())
        .await
        .map_err(error)?;
    Ok(Some(Plan {
        write: SealedWrite::part(info, s3.sse.part_salt()),
        key: object_key,
        customer_md5: customer.map(|c| c.key_md5_b64()),
    }))
}

/// The body the object layer stores: sealed as stream `part` when `plan` says so, with the client's
/// checksums then taken over the plaintext here (the object layer sees only ciphertext).
pub fn body<S, E>(
    plan: Option<&Plan>,
    body: S,
    part: u32,
    hasher: ClientChecksums,
) -> S3Result<(Body<E>, ClientChecksums)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: Send + 'static,
{
    match plan {
        None => Ok((Box::pin(body.map(|r| r.map_err(StreamError::Body))), hasher)),
        Some(p) => Ok((
            p.write.seal(body, &p.key, part, hasher.0).map_err(error)?,
            ClientChecksums::default(),
        )),
    }
}

/// Runs the client's digest checks on what it sent: the plaintext of an encrypted write.
pub fn verify_with<R>(
    plan: Option<&Plan>,
    out: &WriteOutcome<s3s::dto::Checksum>,
    check: impl FnOnce(&WriteOutcome<s3s::dto::Checksum>) -> R,
) -> R {
    match plan {
        Some(p) => check(&p.write.plain_outcome(out)),
        None => check(out),
    }
}

/// Reopens the key of a version to read it; `None` for an unencrypted version.
pub async fn open(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    v: &ObjectVersion,
    customer: Option<&CustomerKey>,
) -> S3Result<Option<ObjectKey>> {
    match &v.sse {
        None if customer.is_some() => Err(error(SseError::CustomerKeyNotApplicable)),
        None => Ok(None),
        Some(info) => s3
            .sse
            .open(bucket, key, info, customer)
            .await
            .map(Some)
            .map_err(error),
    }
}

/// HEAD's check: an SSE-C object needs its key (no KMS call: metadata is not encrypted).
pub fn check_head(
    bucket: &str,
    key: &str,
    v: &ObjectVersion,
    customer: Option<&CustomerKey>,
) -> S3Result<()> {
    match &v.sse {
        None if customer.is_some() => Err(error(SseError::CustomerKeyNotApplicable)),
        None => Ok(()),
        Some(info) => sse_object::check_customer_key(bucket, key, info, customer)
            .map(drop)
            .map_err(error),
    }
}

/// Plaintext bytes `start..end` of a version opened with `key` (or stored plain).
pub fn read(
    handle: GetHandle,
    key: Option<&ObjectKey>,
    start: u64,
    end: u64,
) -> S3Result<BoxStream<'static, ObjectResult<Bytes>>> {
    match key {
        None => Ok(handle.stream(start, end).boxed()),
        Some(k) => Ok(sse_object::open_range(handle, k, start, end)
            .map_err(error)?
            .boxed()),
    }
}

/// Sets the SSE response fields of an s3s output (every output that has them names them alike).
macro_rules! set_echo {
    ($out:expr, $echo:expr) => {{
        let echo: $crate::s3::sse::Echo = $echo;
        $out.server_side_encryption = echo.sse;
        $out.ssekms_key_id = echo.kms_key_id;
        $out.sse_customer_algorithm = echo.customer_algorithm;
        $out.sse_customer_key_md5 = echo.customer_key_md5;
    }};
}
pub(crate) use set_echo;

/// The SSE response headers of an object.
#[derive(Default)]
pub struct Echo {
    pub sse: Option<ServerSideEncryption>,
    pub kms_key_id: Option<String>,
    pub customer_algorithm: Option<String>,
    pub customer_key_md5: Option<String>,
}

/// What AWS echoes for an object encrypted as `info`; SSE-C echoes the request's key MD5.
pub fn echo(info: Option<&SseInfo>, customer_md5: Option<String>) -> Echo {
    let Some(info) = info else {
        return Echo::default();
    };
    match sse_object::kind_of(info) {
        Ok(SseKind::S3) => Echo {
            sse: Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AES256,
            )),
            ..Default::default()
        },
        Ok(SseKind::Kms) => Echo {
            sse: Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AWS_KMS,
            )),
            kms_key_id: Some(info.key_id.clone()),
            ..Default::default()
        },
        Ok(SseKind::C) => Echo {
            customer_algorithm: Some(CustomerKey::ALGORITHM.into()),
            customer_key_md5: customer_md5,
            ..Default::default()
        },
        Err(_) => Echo::default(),
    }
}

fn coded(code: &str, status: http::StatusCode, msg: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.to_string().into()), msg);
    e.set_status_code(status);
    e
}

/// SSE errors as AWS reports them. Messages never hold key material.
pub fn error(e: SseError) -> S3Error {
    use http::StatusCode as C;
    use SseError as E;
    let msg = e.to_string();
    match e {
        E::CustomerKeyInvalid(_) => S3Error::with_message(S3ErrorCode::InvalidArgument, msg),
        E::CustomerKeyMd5Mismatch => S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        ),
        E::CustomerKeyMismatch => S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Access Denied: the SSE-C key does not match the object's key",
        ),
        E::CustomerKeyRequired | E::CustomerKeyNotApplicable => {
            S3Error::with_message(S3ErrorCode::InvalidRequest, msg)
        }
        E::KmsKeyNotFound(_) => coded("KMS.NotFoundException", C::BAD_REQUEST, msg),
        E::KmsKeyDisabled(_) => coded("KMS.DisabledException", C::BAD_REQUEST, msg),
        E::KmsKeyDeleted(_) => coded("KMS.KMSInvalidStateException", C::BAD_REQUEST, msg),
        E::KmsConfig(_) => coded(
            "NotImplemented",
            C::NOT_IMPLEMENTED,
            "Server side encryption specified but KMS is not configured".into(),
        ),
        E::KmsNotConfigured(_) => coded(
            "NotImplemented",
            C::NOT_IMPLEMENTED,
            format!("Server side encryption specified but {msg}"),
        ),
        E::KmsUnavailable(_) => coded("KMS.KMSInternalException", C::SERVICE_UNAVAILABLE, msg),
        E::InvalidRange { .. } => S3Error::with_message(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        ),
        E::PackageAuth { .. }
        | E::Truncated
        | E::TrailingData
        | E::TooLarge
        | E::UnsupportedVersion(_)
        | E::MalformedSealedKey(_)
        | E::KeyUnseal
        | E::KmsDecrypt
        | E::Cipher => {
            tracing::error!(error = %msg, "encrypted object cannot be opened");
            S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            )
        }
    }
}
