//! Bucket versioning at the API edge: Put/GetBucketVersioning (a control-plane command) and
//! ListObjectVersions (versions and delete markers, as AWS lists them).

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use cairn_control_plane::{Command, Versioning};

use super::convert::{self, url_encode};
use super::error::object_error;
use super::list::{echo, is_url, max_keys, owner};
use super::CairnS3;
use crate::object::list::Entry;

pub async fn put(
    s3: &CairnS3,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let versioning = match input.versioning_configuration.status.as_ref().map(|s| s.as_str()) {
        Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
        Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ))
        }
    };
    s3.catalog
        .propose(Command::SetVersioning {
            name: input.bucket,
            versioning,
        })
        .await?;
    Ok(S3Response::new(PutBucketVersioningOutput {}))
}

pub async fn get(
    s3: &CairnS3,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let b = s3.require_bucket(&req.input.bucket).await?;
    let status = match b.versioning {
        Versioning::Unversioned => None,
        Versioning::Enabled => Some(BucketVersioningStatus::ENABLED),
        Versioning::Suspended => Some(BucketVersioningStatus::SUSPENDED),
    };
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: status.map(BucketVersioningStatus::from_static),
        mfa_delete: None,
    }))
}

/// The version id a response names: only versioned buckets have one (AWS sends none otherwise).
pub fn version_header(versioning: Versioning, id: &str) -> Option<String> {
    (versioning != Versioning::Unversioned).then(|| id.to_string())
}

pub async fn list(
    s3: &CairnS3,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket).await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys)?;
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let page = s3
        .objects
        .list_object_versions(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &key_marker,
            input.version_id_marker.as_deref(),
            max,
        )
        .await
        .map_err(object_error)?;
    let url = is_url(&input.encoding_type);
    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    let (mut versions, mut markers, mut prefixes) = (Vec::new(), Vec::new(), Vec::new());
    for e in &page.entries {
        match e {
            Entry::Object {
                key,
                version,
                is_latest,
            } if version.delete_marker => markers.push(DeleteMarkerEntry {
                is_latest: Some(*is_latest),
                key: Some(enc(key)),
                last_modified: Some(convert::timestamp(version.mod_time_ns)),
                owner: Some(owner()),
                version_id: Some(version.version_id.clone()),
            }),
            Entry::Object {
                key,
                version,
                is_latest,
            } => versions.push(ObjectVersion {
                e_tag: Some(convert::etag(version)),
                is_latest: Some(*is_latest),
                key: Some(enc(key)),
                last_modified: Some(convert::timestamp(version.mod_time_ns)),
                owner: Some(owner()),
                size: Some(i64::try_from(version.size).unwrap_or(i64::MAX)),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                version_id: Some(version.version_id.clone()),
                ..Default::default()
            }),
            Entry::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc(p)),
            }),
        }
    }
    let (next_key, next_version) = match page.entries.last().filter(|_| page.truncated) {
        Some(Entry::Object { key, version, .. }) => {
            (Some(key.clone()), Some(version.version_id.clone()))
        }
        Some(Entry::Prefix(p)) => (Some(p.clone()), None),
        None => (None, None),
    };
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: echo(url, input.prefix),
        delimiter: echo(url, input.delimiter),
        key_marker: Some(echo(url, input.key_marker).unwrap_or_default()),
        version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_key_marker: echo(url, next_key),
        next_version_id_marker: next_version,
        versions: (!versions.is_empty()).then_some(versions),
        delete_markers: (!markers.is_empty()).then_some(markers),
        common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
