//! Object operations: PUT, GET, HEAD, DELETE, multi-delete, copy and tagging.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use cairn_proto::meta::ObjectVersion;

use super::convert::{self, ChecksumRequest, ContentHeaders};
use super::error::object_error;
use super::versioning::version_header;
use super::{lock, proxy, sse, CairnS3};
use crate::auth::authorize::s3_access::KeyCheck;
use crate::object::metadata::Field;
use crate::object::retention::Bypass;
use crate::object::stage::StoredForm;
use crate::object::versions::{DeleteOutcome, DeleteRequest};
use crate::object::{ObjectError, PutOptions, MAX_OBJECT_SIZE};

/// AWS's limits on keys and multi-delete.
pub const MAX_KEY_LEN: usize = 1024;
pub const MAX_DELETE_KEYS: usize = 1000;

pub fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is too long (at most 1024 bytes)"
        ));
    }
    Ok(())
}

/// Streams object bytes to the client through a small channel: bounded memory, and the body the
/// HTTP layer holds is `Sync` as s3s requires.
pub fn body_of<S, E>(stream: S) -> StreamingBlob
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, E>>(2);
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    StreamingBlob::wrap(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

fn etag_matches(cond: &ETagCondition, v: &ObjectVersion) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == v.etag,
    }
}

/// RFC 7232 precedence as S3 applies it. `copy` turns "not modified" into 412, as CopyObject does.
pub fn check_conditions(
    v: &ObjectVersion,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
    copy: bool,
) -> S3Result<()> {
    let modified = time::OffsetDateTime::from(convert::timestamp(v.mod_time_ns))
        .replace_nanosecond(0)
        .ok();
    let after = |t: &Timestamp| modified.is_some_and(|m| m > time::OffsetDateTime::from(t.clone()));
    match if_match {
        Some(c) if !etag_matches(c, v) => {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
        None if if_unmodified_since.is_some_and(after) => {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
        _ => {}
    }
    let not_modified = match if_none_match {
        Some(c) => etag_matches(c, v),
        None => if_modified_since.is_some_and(|t| !after(t)),
    };
    if not_modified {
        return Err(if copy {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        } else {
            not_modified_error(v)
        });
    }
    Ok(())
}

/// 304 Not Modified with the validators a cache revalidates with (RFC 7232 §4.1, as AWS sends
/// them): the ETag and Last-Modified of the version.
fn not_modified_error(v: &ObjectVersion) -> s3s::S3Error {
    let mut e = s3_error!(NotModified);
    let mut h = http::HeaderMap::new();
    if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", v.etag)) {
        h.insert(http::header::ETAG, etag);
    }
    let mut date = Vec::new();
    if convert::timestamp(v.mod_time_ns)
        .format(TimestampFormat::HttpDate, &mut date)
        .is_ok()
    {
        if let Ok(date) = http::HeaderValue::from_bytes(&date) {
            h.insert(http::header::LAST_MODIFIED, date);
        }
    }
    e.set_headers(h);
    e
}

/// Byte range `start..end` of a part (1-based) and the part count; a part the version lacks is
/// AWS's `400 InvalidPartNumber` (not a range error).
fn part_range(v: &ObjectVersion, n: i32) -> S3Result<(u64, u64)> {
    let idx = usize::try_from(n)
        .ok()
        .filter(|i| *i >= 1 && *i <= v.parts.len())
        .ok_or_else(|| {
            let mut e = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
                "The requested partnumber is not satisfiable",
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        })?;
    let start: u64 = v.parts[..idx - 1].iter().map(|p| p.size).sum();
    Ok((start, start + v.parts[idx - 1].size))
}

pub async fn put(
    s3: &CairnS3,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let replication = super::replica::of_request(s3, &req)?;
    let ssec_ok = sse::ssec_allowed(s3, &req.extensions);
    let input = req.input;
    let bucket = s3.require_bucket(&input.bucket).await?;
    check_key(&input.key)?;
    if input
        .content_length
        .is_some_and(|l| l < 0 || l as u64 > MAX_OBJECT_SIZE)
    {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size (5 GiB)"
        ));
    }
    if let Some(cond) = &input.if_none_match {
        match s3
            .objects
            .head_object(&input.bucket, &input.key, None)
            .await
        {
            Ok(info) if etag_matches(cond, &info.version) => {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ))
            }
            Ok(_) | Err(ObjectError::NoSuchKey | ObjectError::DeleteMarker { .. }) => {}
            Err(e) => return Err(object_error(e)),
        }
    }
    if let Some(cond) = &input.if_match {
        let info = s3
            .objects
            .head_object(&input.bucket, &input.key, None)
            .await
            .map_err(|e| match e {
                ObjectError::NoSuchKey | ObjectError::DeleteMarker { .. } => s3_error!(NoSuchKey),
                e => object_error(e),
            })?;
        if !etag_matches(cond, &info.version) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    }
    let user_metadata = convert::user_metadata(input.metadata);
    convert::check_metadata_size(&user_metadata)?;
    let cr = convert::checksum_request!(input);
    let (headers, now) = (lock::lock_headers!(input), s3.objects.clock.now_ns());
    let lock = match replication.replica() {
        Some(_) => lock::lock_of_replica(&bucket, &headers, now)?,
        None => lock::lock_for_write(&bucket, &headers, lock::has_integrity(&cr), now)?,
    };
    let mode = sse::effective(
        s3,
        &bucket,
        sse::requested(sse::write_headers!(input), ssec_ok)?,
    );
    let plan = sse::plan(s3, &input.bucket, &input.key, mode, false).await?;
    let opts = PutOptions {
        headers: convert::content_headers!(input).to_kv(),
        user_metadata,
        tags: crate::tagging::parse_tagging_header(input.tagging.as_deref())?,
        versioning: bucket.versioning,
        lock,
        stored_form: plan
            .as_ref()
            .map(|p| Arc::new(p.write.clone()) as Arc<dyn StoredForm>),
        replication,
    };
    let trailers = req.trailing_headers;
    let body = convert::request_body(input.body.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
    }));
    let (body, hasher) = sse::body(plan.as_ref(), body, 1, cr.hasher()?)?;
    let info = s3
        .objects
        .put_object(&input.bucket, &input.key, body, hasher, opts, |out| {
            let t = trailers.as_ref().and_then(|t| t.take());
            sse::verify_with(plan.as_ref(), out, |o| cr.verify(o, t.as_ref()))
        })
        .await
        .map_err(object_error)?;
    s3.replication
        .send(&input.bucket, &input.key, &info.version);
    let sums = convert::checksum_fields(&info.version.checksums);
    let echo = plan.as_ref().map(sse::Plan::echo).unwrap_or_default();
    let mut out = PutObjectOutput {
        e_tag: Some(convert::etag(&info.version)),
        version_id: version_header(bucket.versioning, &info.version.version_id),
        ..Default::default()
    };
    sse::set_echo!(out, echo);
    convert::set_checksums!(out, sums);
    out.expiration =
        super::bucket_lifecycle::expiration_header(s3, &bucket, &input.key, &info.version);
    Ok(S3Response::new(out))
}

/// The bytes a GET or HEAD answers with: `(start, end, partial)` for a part number, a range, or
/// the whole object.
fn read_range(
    v: &ObjectVersion,
    part_number: Option<i32>,
    range: Option<&Range>,
) -> S3Result<(u64, u64, bool)> {
    if let Some(n) = part_number {
        let (s, e) = part_range(v, n)?;
        Ok((s, e, v.parts.len() > 1))
    } else if let Some(r) = range {
        let r = r.check(v.size)?;
        Ok((r.start, r.end, true))
    } else {
        Ok((0, v.size, false))
    }
}

fn checksum_mode(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

/// The fields GET and HEAD share (s3s's two outputs name them alike): version, lock, SSE,
/// length and range, ETag, time, metadata, part count and, when asked, the checksums.
macro_rules! set_object_fields {
    ($out:expr, $v:expr, $versioning:expr, $range:expr, $part_number:expr, $echo:expr, $checksums:expr) => {{
        let v: &ObjectVersion = $v;
        let (start, end, partial): (u64, u64, bool) = $range;
        let (lock_mode, retain_until, legal_hold) = lock::response_lock(v);
        $out.version_id = version_header($versioning, &v.version_id);
        $out.object_lock_mode = lock_mode;
        $out.object_lock_retain_until_date = retain_until;
        $out.object_lock_legal_hold_status = legal_hold;
        sse::set_echo!($out, $echo);
        $out.content_length = Some(i64::try_from(end - start).unwrap_or(i64::MAX));
        $out.content_range =
            partial.then(|| format!("bytes {}-{}/{}", start, end.saturating_sub(1), v.size));
        $out.accept_ranges = Some("bytes".into());
        $out.e_tag = Some(convert::etag(v));
        $out.last_modified = Some(convert::timestamp(v.mod_time_ns));
        $out.metadata = convert::metadata_map(&v.user_metadata);
        $out.parts_count = $part_number.map(|_| v.parts.len() as i32);
        if $checksums {
            convert::set_checksums!($out, convert::checksum_fields(&v.checksums));
        }
    }};
}

pub async fn get(
    s3: &CairnS3,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let ssec_ok = sse::ssec_allowed(s3, &req.extensions);
    let plan = proxy::plan(s3, &req, "GET", &req.input.bucket, &req.input.key);
    let bucket = s3.require_bucket(&req.input.bucket).await?;
    let handle = match s3
        .objects
        .get_object(
            &req.input.bucket,
            &req.input.key,
            req.input.version_id.as_deref(),
        )
        .await
    {
        Ok(h) => h,
        Err(e) if proxy::absent(&e) => return proxy::get(s3, plan, e).await,
        Err(e) => return Err(object_error(e)),
    };
    let v = handle.info.version.clone();
    proxy::serve_to_peer(s3, &req, &v, req.input.version_id.is_some())?;
    let input = req.input;
    check_conditions(
        &v,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
        false,
    )?;
    let customer = sse::customer_key(sse::customer_headers!(input), ssec_ok)?;
    let key = sse::open(s3, &input.bucket, &input.key, &v, customer.as_ref()).await?;
    let (start, end, partial) = read_range(&v, input.part_number, input.range.as_ref())?;
    let headers = ContentHeaders::from_kv(&v.headers);
    // Read the first batch before answering: a read that cannot be served fails with a clean S3
    // error instead of a 200 whose body breaks off.
    let mut stream = sse::read(handle, key.as_ref(), start, end)?;
    let first = stream.next().await.transpose().map_err(object_error)?;
    let body = body_of(futures::stream::iter(first.map(Ok)).chain(stream));
    let mut out = GetObjectOutput {
        body: Some(body),
        content_type: input.response_content_type.or(headers.content_type),
        content_encoding: input.response_content_encoding.or(headers.content_encoding),
        content_disposition: input
            .response_content_disposition
            .or(headers.content_disposition),
        content_language: input.response_content_language.or(headers.content_language),
        cache_control: input.response_cache_control.or(headers.cache_control),
        expires: input.response_expires.or(headers.expires),
        tag_count: (!v.tags.is_empty()).then_some(v.tags.len() as i32),
        ..Default::default()
    };
    let echo = sse::echo(v.sse.as_ref(), customer.map(|c| c.key_md5_b64()));
    // A part or range is not what the whole-object checksums cover.
    let checksums = !partial && checksum_mode(input.checksum_mode.as_ref());
    set_object_fields!(
        out,
        &v,
        bucket.versioning,
        (start, end, partial),
        input.part_number,
        echo,
        checksums
    );
    if input.version_id.is_none() {
        out.expiration = super::bucket_lifecycle::expiration_header(s3, &bucket, &input.key, &v);
    }
    Ok(S3Response::new(out))
}

pub async fn head(
    s3: &CairnS3,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let ssec_ok = sse::ssec_allowed(s3, &req.extensions);
    let plan = proxy::plan(s3, &req, "HEAD", &req.input.bucket, &req.input.key);
    let bucket = s3.require_bucket(&req.input.bucket).await?;
    let info = match s3
        .objects
        .head_object(
            &req.input.bucket,
            &req.input.key,
            req.input.version_id.as_deref(),
        )
        .await
    {
        Ok(i) => i,
        Err(e) if proxy::absent(&e) => return proxy::head(s3, plan, e).await,
        Err(e) => return Err(object_error(e)),
    };
    let v = info.version;
    proxy::serve_to_peer(s3, &req, &v, req.input.version_id.is_some())?;
    let input = req.input;
    check_conditions(
        &v,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
        false,
    )?;
    let customer = sse::customer_key(sse::customer_headers!(input), ssec_ok)?;
    sse::check_head(&input.bucket, &input.key, &v, customer.as_ref())?;
    let range = read_range(&v, input.part_number, input.range.as_ref())?;
    let headers = ContentHeaders::from_kv(&v.headers);
    let mut out = HeadObjectOutput {
        content_type: headers.content_type,
        content_encoding: headers.content_encoding,
        content_disposition: headers.content_disposition,
        content_language: headers.content_language,
        cache_control: headers.cache_control,
        expires: headers.expires,
        ..Default::default()
    };
    let echo = sse::echo(v.sse.as_ref(), customer.map(|c| c.key_md5_b64()));
    let checksums = checksum_mode(input.checksum_mode.as_ref());
    set_object_fields!(
        out,
        &v,
        bucket.versioning,
        range,
        input.part_number,
        echo,
        checksums
    );
    if input.version_id.is_none() {
        out.expiration = super::bucket_lifecycle::expiration_header(s3, &bucket, &input.key, &v);
    }
    Ok(S3Response::new(out))
}

pub async fn delete(
    s3: &CairnS3,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let bypass = lock::bypass(s3, &req, req.input.bypass_governance_retention);
    let replication = super::replica::of_request(s3, &req)?;
    let input = req.input;
    if replication.replica().is_some() && input.version_id.is_some() {
        // A replica DELETE writes a delete marker; removing a version is no replica's to do.
        return Err(s3_error!(
            InvalidRequest,
            "a replica DELETE names no versionId"
        ));
    }
    let bucket = s3.require_bucket(&input.bucket).await?;
    let out = s3
        .objects
        .delete_object(
            &input.bucket,
            &input.key,
            DeleteRequest {
                versioning: bucket.versioning,
                version_id: input.version_id.as_deref(),
                bypass,
                replication: &replication,
            },
        )
        .await
        .map_err(object_error)?;
    hint_delete(s3, &replication, &input.bucket, &input.key, &out);
    Ok(S3Response::new(DeleteObjectOutput {
        delete_marker: out.delete_marker.then_some(true),
        version_id: out.version_id,
        ..Default::default()
    }))
}

/// Replicates a delete marker written here, or a version removed here for good.
fn hint_delete(
    s3: &CairnS3,
    replication: &crate::object::replica::Replication,
    bucket: &str,
    key: &str,
    out: &DeleteOutcome,
) {
    if let (crate::object::replica::Replication::Pending, Some(id)) = (replication, &out.version_id)
    {
        s3.replication.send_id(bucket, key, id);
    }
}

pub async fn delete_many(
    s3: &CairnS3,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let bypass = lock::bypass(s3, &req, req.input.bypass_governance_retention);
    // Each key is authorized here (the request-level check could not see them).
    let key_check = req.extensions.get::<Arc<KeyCheck>>().cloned();
    let input = req.input;
    let bucket = s3.require_bucket(&input.bucket).await?;
    if input.delete.objects.len() > MAX_DELETE_KEYS {
        return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
    }
    let replication = super::replica::local(s3);
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for obj in input.delete.objects {
        let version = obj.version_id.as_deref();
        let bypass = match &key_check {
            None => Ok(bypass),
            // Allowed with the header means allowed to bypass too.
            Some(c) => c
                .check(&input.bucket, &obj.key, version, bypass.header)
                .map(|()| Bypass {
                    header: bypass.header,
                    allowed: bypass.header,
                })
                .map_err(|e| e.to_s3()),
        };
        let result = match bypass {
            Ok(bypass) => {
                let req = DeleteRequest {
                    versioning: bucket.versioning,
                    version_id: version,
                    bypass,
                    replication: &replication,
                };
                let out = s3
                    .objects
                    .delete_object(&input.bucket, &obj.key, req)
                    .await
                    .map_err(object_error);
                if let Ok(out) = &out {
                    hint_delete(s3, &replication, &input.bucket, &obj.key, out);
                }
                out
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(out) => {
                if !quiet {
                    deleted.push(deleted_entry(obj.key, obj.version_id, out));
                }
            }
            Err(err) => {
                errors.push(Error {
                    key: Some(obj.key),
                    version_id: obj.version_id,
                    code: Some(err.code().as_str().to_string()),
                    message: err.message().map(str::to_string),
                });
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: (!deleted.is_empty()).then_some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}

/// A DeleteObjects result entry: the version asked for, and the marker removed or written.
fn deleted_entry(key: String, asked: Option<String>, out: DeleteOutcome) -> DeletedObject {
    let marker = out.delete_marker.then_some(true);
    DeletedObject {
        key: Some(key),
        version_id: asked,
        delete_marker: marker,
        delete_marker_version_id: marker.and(out.version_id),
    }
}

/// The bucket, key and version a copy reads from.
pub fn copy_source(src: &CopySource) -> S3Result<(String, String, Option<String>)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_ref().map(|v| v.to_string()),
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "access point copy sources are not supported"
        )),
    }
}

pub async fn copy(
    s3: &CairnS3,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let ssec_ok = sse::ssec_allowed(s3, &req.extensions);
    let input = req.input;
    let (sb, sk, svid) = copy_source(&input.copy_source)?;
    let src_bucket = s3.require_bucket(&sb).await?;
    let bucket = s3.require_bucket(&input.bucket).await?;
    check_key(&input.key)?;
    let src = s3
        .objects
        .get_object(&sb, &sk, svid.as_deref())
        .await
        .map_err(object_error)?;
    let v = src.info.version.clone();
    check_conditions(
        &v,
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
        true,
    )?;
    let src_customer = sse::customer_key(sse::copy_source_customer_headers!(input), ssec_ok)?;
    let src_key = sse::open(s3, &sb, &sk, &v, src_customer.as_ref()).await?;
    let asked = sse::requested(sse::write_headers!(input), ssec_ok)?;
    let new_encryption = asked.is_some();
    let replace_meta = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    let replace_tags = input
        .tagging_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
    if sb == input.bucket && sk == input.key && !replace_meta && !replace_tags && !new_encryption {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let plan = sse::plan(
        s3,
        &input.bucket,
        &input.key,
        sse::effective(s3, &bucket, asked),
        false,
    )
    .await?;
    let opts = PutOptions {
        stored_form: plan
            .as_ref()
            .map(|p| Arc::new(p.write.clone()) as Arc<dyn StoredForm>),
        headers: if replace_meta {
            convert::content_headers!(input).to_kv()
        } else {
            v.headers.clone()
        },
        user_metadata: if replace_meta {
            convert::user_metadata(input.metadata)
        } else {
            v.user_metadata.clone()
        },
        tags: if replace_tags {
            crate::tagging::parse_tagging_header(input.tagging.as_deref())?
        } else {
            v.tags.clone()
        },
        versioning: bucket.versioning,
        lock: lock::lock_for_write(
            &bucket,
            &lock::lock_headers!(input),
            true,
            s3.objects.clock.now_ns(),
        )?,
        replication: super::replica::local(s3),
    };
    convert::check_metadata_size(&opts.user_metadata)?;
    let stream = sse::read(src, src_key.as_ref(), 0, v.size)?;
    let checks = ChecksumRequest {
        algorithm: input.checksum_algorithm,
        ..Default::default()
    };
    let (stream, hasher) = sse::body(plan.as_ref(), stream, 1, checks.hasher()?)?;
    let info = s3
        .objects
        .put_object(&input.bucket, &input.key, stream, hasher, opts, |out| {
            sse::verify_with(plan.as_ref(), out, |o| checks.verify(o, None))
        })
        .await
        .map_err(object_error)?;
    s3.replication
        .send(&input.bucket, &input.key, &info.version);
    let echo = plan.as_ref().map(sse::Plan::echo).unwrap_or_default();
    let mut out = CopyObjectOutput {
        version_id: version_header(bucket.versioning, &info.version.version_id),
        copy_source_version_id: version_header(src_bucket.versioning, &v.version_id),
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(convert::etag(&info.version)),
            last_modified: Some(convert::timestamp(info.version.mod_time_ns)),
            ..Default::default()
        }),
        ..Default::default()
    };
    sse::set_echo!(out, echo);
    out.expiration =
        super::bucket_lifecycle::expiration_header(s3, &bucket, &input.key, &info.version);
    Ok(S3Response::new(out))
}

pub async fn get_tagging(
    s3: &CairnS3,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let info = s3
        .objects
        .head_object(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .map_err(object_error)?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: convert::tag_set(&info.version.tags),
        version_id: None,
    }))
}

pub async fn put_tagging(
    s3: &CairnS3,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let tags: Vec<_> = input
        .tagging
        .tag_set
        .into_iter()
        .map(|t| convert::kv(&t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    crate::tagging::check_tags(&tags)?;
    let info = s3
        .objects
        .change_metadata(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            Field::Tags,
            super::replica::changes_replicate(s3),
            |_| Ok(()),
            |v| v.tags = tags.clone(),
        )
        .await
        .map_err(object_error)?;
    s3.replication
        .send(&input.bucket, &input.key, &info.version);
    Ok(S3Response::new(PutObjectTaggingOutput { version_id: None }))
}

pub async fn delete_tagging(
    s3: &CairnS3,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let info = s3
        .objects
        .change_metadata(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            Field::Tags,
            super::replica::changes_replicate(s3),
            |_| Ok(()),
            |v| v.tags.clear(),
        )
        .await
        .map_err(object_error)?;
    s3.replication
        .send(&input.bucket, &input.key, &info.version);
    Ok(S3Response::new(DeleteObjectTaggingOutput {
        version_id: None,
    }))
}
