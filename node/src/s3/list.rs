//! ListObjects (v1) and ListObjectsV2 over the object layer's merged, quorum-checked listing.

use base64::Engine;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::convert::{self, url_encode};
use super::error::object_error;
use super::CairnS3;
use crate::object::list::{Entry, ListPage};

const MAX_KEYS: i32 = 1000;

/// The single owner every bucket has until IAM lands.
pub fn owner() -> Owner {
    Owner {
        display_name: Some("cairn".into()),
        id: Some("cairn-root".into()),
    }
}

pub(super) fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys cannot be negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
        None => Ok(MAX_KEYS as usize),
    }
}

fn render(page: &ListPage, url: bool, with_owner: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for e in &page.entries {
        match e {
            Entry::Object { key, version, .. } => objects.push(Object {
                key: Some(enc(key)),
                size: Some(i64::try_from(version.size).unwrap_or(i64::MAX)),
                e_tag: Some(convert::etag(version)),
                last_modified: Some(convert::timestamp(version.mod_time_ns)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                owner: with_owner.then(owner),
                ..Default::default()
            }),
            Entry::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc(p)),
            }),
        }
    }
    (objects, prefixes)
}

/// A request field echoed in the response, URL-encoded when the client asked for `encoding-type=url`.
pub(super) fn echo(url: bool, v: Option<String>) -> Option<String> {
    v.map(|v| if url { url_encode(&v) } else { v })
}

/// An empty delimiter is no delimiter, as on AWS (which does not echo it either).
fn delimiter(d: Option<String>) -> Option<String> {
    d.filter(|d| !d.is_empty())
}

pub(super) fn is_url(e: &Option<EncodingType>) -> bool {
    e.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL)
}

pub async fn v1(
    s3: &CairnS3,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let mut input = req.input;
    s3.require_bucket(&input.bucket).await?;
    input.delimiter = delimiter(input.delimiter);
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys)?;
    let marker = input.marker.clone().unwrap_or_default();
    let page = s3
        .objects
        .list_objects(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &marker,
            max,
        )
        .await
        .map_err(object_error)?;
    let url = is_url(&input.encoding_type);
    let (objects, prefixes) = render(&page, url, true);
    // A page of at most 0 keys is complete: AWS does not call it truncated.
    let truncated = page.truncated && max > 0;
    // AWS returns NextMarker only when a delimiter is given; clients use the last key otherwise.
    let next_marker = (truncated && input.delimiter.is_some())
        .then(|| page.last().map(str::to_string))
        .flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: echo(url, input.prefix),
        // v1 always echoes the marker, empty when none was given.
        marker: Some(echo(url, input.marker).unwrap_or_default()),
        delimiter: echo(url, input.delimiter),
        max_keys: Some(max as i32),
        is_truncated: Some(truncated),
        next_marker: echo(url, next_marker),
        contents: (!objects.is_empty()).then_some(objects),
        common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

fn encode_token(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

pub async fn v2(
    s3: &CairnS3,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let mut input = req.input;
    s3.require_bucket(&input.bucket).await?;
    input.delimiter = delimiter(input.delimiter);
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys)?;
    let marker = match (&input.continuation_token, &input.start_after) {
        (Some(t), _) => decode_token(t)?,
        (None, Some(s)) => s.clone(),
        (None, None) => String::new(),
    };
    let page = s3
        .objects
        .list_objects(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &marker,
            max,
        )
        .await
        .map_err(object_error)?;
    let url = is_url(&input.encoding_type);
    let (objects, prefixes) = render(&page, url, input.fetch_owner.unwrap_or(false));
    let count = page.entries.len() as i32;
    let truncated = page.truncated && max > 0;
    let next = truncated.then(|| page.last().map(encode_token)).flatten();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: echo(url, input.prefix),
        delimiter: echo(url, input.delimiter),
        max_keys: Some(max as i32),
        key_count: Some(count),
        is_truncated: Some(truncated),
        continuation_token: input.continuation_token,
        next_continuation_token: next,
        start_after: echo(url, input.start_after),
        contents: (!objects.is_empty()).then_some(objects),
        common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
