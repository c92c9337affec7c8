//! Multipart upload operations.

use std::sync::Arc;

use bytes::Bytes;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::convert::{self, ChecksumRequest};
use super::error::object_error;
use super::list::owner;
use super::object::{check_key, copy_source};
use super::sse;
use super::CairnS3;
use crate::object::multipart::{MAX_PART_NUMBER, MAX_PART_SIZE};
use crate::object::stage::StoredForm;
use crate::object::PutOptions;

pub async fn create(
    s3: &CairnS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let ssec_ok = sse::ssec_allowed(s3, &req.extensions);
    let input = req.input;
    let bucket = s3.require_bucket(&input.bucket).await?;
    check_key(&input.key)?;
    let user_metadata = convert::user_metadata(input.metadata);
    convert::check_metadata_size(&user_metadata)?;
    let mode = sse::effective(
        s3,
        &bucket,
        sse::requested(sse::write_headers!(input), ssec_ok)?,
    );
    let plan = sse::plan(s3, &input.bucket, &input.key, mode, true).await?;
    let echo = plan.as_ref().map(sse::Plan::echo).unwrap_or_default();
    let opts = PutOptions {
        headers: convert::content_headers!(input).to_kv(),
        user_metadata,
        tags: crate::tagging::parse_tagging_header(input.tagging.as_deref())?,
        versioning: bucket.versioning,
        lock: super::lock::lock_for_write(
            &bucket,
            &super::lock::lock_headers!(input),
            true,
            s3.objects.clock.now_ns(),
        )?,
        stored_form: plan.map(|p| Arc::new(p.write) as Arc<dyn StoredForm>),
        replication: Default::default(),
    };
    let alg = input
        .checksum_algorithm
        .as_ref()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let upload_id = s3
        .objects
        .create_multipart(&input.bucket, &input.key, opts, alg)
        .await
        .map_err(object_error)?;
    let mut out = CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: input.checksum_algorithm,
        ..Default::default()
    };
    sse::set_echo!(out, echo);
    Ok(S3Response::new(out))
}

fn check_part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })
}

pub async fn upload_part(
    s3: &CairnS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let ssec_ok = sse::ssec_allowed(s3, &req.extensions);
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let number = check_part_number(input.part_number)?;
    if input
        .content_length
        .is_some_and(|l| l < 0 || l as u64 > MAX_PART_SIZE)
    {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size (5 GiB)"
        ));
    }
    let cr = convert::checksum_request!(input);
    let trailers = req.trailing_headers;
    let body = convert::request_body(input.body.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
    }));
    let customer = sse::customer_key(sse::customer_headers!(input), ssec_ok)?;
    let plan = sse::plan_part(s3, &input.bucket, &input.key, &input.upload_id, customer).await?;
    let (body, hasher) = sse::body(plan.as_ref(), body, number, cr.hasher()?)?;
    let part = s3
        .objects
        .put_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            number,
            body,
            hasher,
            |out| {
                let t = trailers.as_ref().and_then(|t| t.take());
                sse::verify_with(plan.as_ref(), out, |o| cr.verify(o, t.as_ref()))
            },
            plan.as_ref().map(|p| &p.write as &dyn StoredForm),
        )
        .await
        .map_err(object_error)?;
    let sums = convert::checksum_fields(&part.checksums);
    let echo = plan.as_ref().map(sse::Plan::echo).unwrap_or_default();
    let mut out = UploadPartOutput {
        e_tag: Some(ETag::Strong(part.etag)),
        ..Default::default()
    };
    sse::set_echo!(out, echo);
    convert::set_checksums!(out, sums);
    Ok(S3Response::new(out))
}

/// `bytes=first-last` of a copy source, checked against the source size.
pub fn copy_range(r: Option<&str>, size: u64) -> S3Result<(u64, u64)> {
    let Some(r) = r else { return Ok((0, size)) };
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
        )
    };
    let spec = r.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok((first, last + 1))
}

pub async fn upload_part_copy(
    s3: &CairnS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let ssec_ok = sse::ssec_allowed(s3, &req.extensions);
    let input = req.input;
    let (sb, sk, svid) = copy_source(&input.copy_source)?;
    s3.require_bucket(&sb).await?;
    s3.require_bucket(&input.bucket).await?;
    let number = check_part_number(input.part_number)?;
    let src = s3
        .objects
        .get_object(&sb, &sk, svid.as_deref())
        .await
        .map_err(object_error)?;
    let v = src.info.version.clone();
    super::object::check_conditions(
        &v,
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
        true,
    )?;
    let (start, end) = copy_range(input.copy_source_range.as_deref(), v.size)?;
    let src_customer = sse::customer_key(sse::copy_source_customer_headers!(input), ssec_ok)?;
    let src_key = sse::open(s3, &sb, &sk, &v, src_customer.as_ref()).await?;
    let stream = sse::read(src, src_key.as_ref(), start, end)?;
    let customer = sse::customer_key(sse::customer_headers!(input), ssec_ok)?;
    let plan = sse::plan_part(s3, &input.bucket, &input.key, &input.upload_id, customer).await?;
    let cr = ChecksumRequest::default();
    let (stream, hasher) = sse::body(plan.as_ref(), stream, number, cr.hasher()?)?;
    let part = s3
        .objects
        .put_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            number,
            stream,
            hasher,
            |out| sse::verify_with(plan.as_ref(), out, |o| cr.verify(o, None)),
            plan.as_ref().map(|p| &p.write as &dyn StoredForm),
        )
        .await
        .map_err(object_error)?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(part.etag)),
            last_modified: Some(convert::timestamp(part.mod_time_ns)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub async fn complete(
    s3: &CairnS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let bucket = s3.require_bucket(&input.bucket).await?;
    let parts = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    let mut chosen = Vec::with_capacity(parts.len());
    for p in parts {
        let n = check_part_number(p.part_number.unwrap_or(0))?;
        let etag = p
            .e_tag
            .as_ref()
            .map(|e| e.value().to_string())
            .unwrap_or_default();
        chosen.push((n, etag));
    }
    let info = s3
        .objects
        .complete_multipart(
            &input.bucket,
            &input.key,
            &input.upload_id,
            &chosen,
            bucket.versioning,
            s3.catalog.state().sites.enabled(),
        )
        .await
        .map_err(object_error)?;
    s3.replication
        .send(&input.bucket, &input.key, &info.version);
    let echo = sse::echo(info.version.sse.as_ref(), None);
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        server_side_encryption: echo.sse,
        ssekms_key_id: echo.kms_key_id,
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(convert::etag(&info.version)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id: super::versioning::version_header(bucket.versioning, &info.version.version_id),
        expiration: super::bucket_lifecycle::expiration_header(
            s3,
            &bucket,
            &input.key,
            &info.version,
        ),
        ..Default::default()
    }))
}

pub async fn abort(
    s3: &CairnS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    s3.objects
        .abort_multipart(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(object_error)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(
    s3: &CairnS3,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let (upload, parts) = s3
        .objects
        .list_parts(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(object_error)?;
    let marker = input
        .part_number_marker
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0);
    let max = input.max_parts.map_or(1000, |m| m.clamp(0, 1000) as usize);
    let after: Vec<_> = parts.into_iter().filter(|p| p.number > marker).collect();
    let truncated = after.len() > max;
    let page: Vec<Part> = after
        .into_iter()
        .take(max)
        .map(|p| Part {
            part_number: Some(p.number as i32),
            size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
            e_tag: Some(ETag::Strong(p.etag.clone())),
            last_modified: Some(convert::timestamp(p.mod_time_ns)),
            ..Default::default()
        })
        .collect();
    let next = page.last().and_then(|p| p.part_number);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: Some(marker as i32),
        next_part_number_marker: if truncated { next } else { None },
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: Some(page),
        initiator: Some(Initiator {
            display_name: Some("cairn".into()),
            id: Some("cairn-root".into()),
        }),
        owner: Some(owner()),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        checksum_algorithm: (!upload.checksum_algorithm.is_empty())
            .then(|| ChecksumAlgorithm::from(upload.checksum_algorithm)),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    s3: &CairnS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = input
        .max_uploads
        .map_or(1000, |m| m.clamp(0, 1000) as usize);
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let all = s3
        .objects
        .list_uploads(&input.bucket, &prefix)
        .await
        .map_err(object_error)?;
    let after: Vec<_> = all
        .into_iter()
        .filter(|u| key_marker.is_empty() || u.key > key_marker)
        .collect();
    let truncated = after.len() > max;
    let uploads: Vec<MultipartUpload> = after
        .iter()
        .take(max)
        .map(|u| MultipartUpload {
            key: Some(u.key.clone()),
            upload_id: Some(u.upload_id.clone()),
            initiated: Some(convert::timestamp(u.initiated_ns)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            owner: Some(owner()),
            initiator: Some(Initiator {
                display_name: Some("cairn".into()),
                id: Some("cairn-root".into()),
            }),
            ..Default::default()
        })
        .collect();
    let last = uploads.last().map(|u| (u.key.clone(), u.upload_id.clone()));
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: if truncated {
            last.clone().and_then(|l| l.0)
        } else {
            None
        },
        next_upload_id_marker: if truncated {
            last.and_then(|l| l.1)
        } else {
            None
        },
        uploads: (!uploads.is_empty()).then_some(uploads),
        ..Default::default()
    }))
}
