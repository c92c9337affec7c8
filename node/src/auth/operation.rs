//! Which IAM action(s) each S3 operation needs, on which resource: the table every request is
//! authorized against. Names follow AWS's "Actions defined by Amazon S3" (and MinIO where it
//! differs); an operation missing here is refused for everyone but root.

use hyper::HeaderMap;

use cairn_control_plane::iam::{bucket_arn, object_arn};

/// One permission a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub action: &'static str,
    /// The bucket or object ARN (`arn:aws:s3:::*` for account-wide calls).
    pub resource: String,
}

/// What the mapping looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct OpRequest<'a> {
    /// `S3Operation::name()`, e.g. `ListObjectsV2`.
    pub op: &'a str,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    /// The request names a version (`versionId` query parameter, `null` included).
    pub versioned: bool,
    pub headers: &'a HeaderMap,
}

fn header_is(headers: &HeaderMap, name: &str, value: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(value))
}

/// What reading a copy's source needs: s3s's parsed copy source (bucket, key, whether a
/// version id, `null` included, is named), the one the handler reads.
pub fn copy_source_read(bucket: &str, key: &str, versioned: bool) -> Needed {
    Needed {
        action: if versioned {
            "s3:GetObjectVersion"
        } else {
            "s3:GetObject"
        },
        resource: object_arn(bucket, key),
    }
}

/// What deleting one key (or one version of it) needs; with the bypass header, also
/// `s3:BypassGovernanceRetention`.
pub fn delete_key(bucket: &str, key: &str, versioned: bool, bypass: bool) -> Vec<Needed> {
    let resource = object_arn(bucket, key);
    let action = if versioned {
        "s3:DeleteObjectVersion"
    } else {
        "s3:DeleteObject"
    };
    let mut n = vec![Needed {
        action,
        resource: resource.clone(),
    }];
    if bypass {
        n.push(Needed {
            action: "s3:BypassGovernanceRetention",
            resource,
        });
    }
    n
}

/// The permissions `req` needs; `None` for an operation Cairn does not map (denied unless root).
pub fn needed(req: &OpRequest<'_>) -> Option<Vec<Needed>> {
    let v = req.versioned;
    let pick = |plain: &'static str, version: &'static str| if v { version } else { plain };
    let bucket = req.bucket.map(bucket_arn);
    let object = match (req.bucket, req.key) {
        (Some(b), Some(k)) => Some(object_arn(b, k)),
        _ => None,
    };
    let on_bucket =
        |action: &'static str| bucket.clone().map(|resource| Needed { action, resource });
    let on_object =
        |action: &'static str| object.clone().map(|resource| Needed { action, resource });
    let bypass = header_is(req.headers, "x-amz-bypass-governance-retention", "true");
    let one = |n: Option<Needed>| n.map(|n| vec![n]);
    match req.op {
        "ListBuckets" | "ListDirectoryBuckets" => Some(vec![Needed {
            action: "s3:ListAllMyBuckets",
            resource: "arn:aws:s3:::*".to_owned(),
        }]),
        "CreateBucket" => {
            let mut n = vec![on_bucket("s3:CreateBucket")?];
            if header_is(req.headers, "x-amz-bucket-object-lock-enabled", "true") {
                n.push(on_bucket("s3:PutBucketObjectLockConfiguration")?);
            }
            Some(n)
        }
        "DeleteBucket" => one(on_bucket(
            if header_is(req.headers, "x-minio-force-delete", "true") {
                "s3:ForceDeleteBucket"
            } else {
                "s3:DeleteBucket"
            },
        )),
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => one(on_bucket("s3:ListBucket")),
        "ListObjectVersions" => one(on_bucket("s3:ListBucketVersions")),
        "ListMultipartUploads" => one(on_bucket("s3:ListBucketMultipartUploads")),
        "GetBucketLocation" => one(on_bucket("s3:GetBucketLocation")),
        "GetBucketPolicy" => one(on_bucket("s3:GetBucketPolicy")),
        "PutBucketPolicy" => one(on_bucket("s3:PutBucketPolicy")),
        "DeleteBucketPolicy" => one(on_bucket("s3:DeleteBucketPolicy")),
        "GetBucketPolicyStatus" => one(on_bucket("s3:GetBucketPolicyStatus")),
        "GetBucketVersioning" => one(on_bucket("s3:GetBucketVersioning")),
        "PutBucketVersioning" => one(on_bucket("s3:PutBucketVersioning")),
        "GetBucketTagging" => one(on_bucket("s3:GetBucketTagging")),
        "PutBucketTagging" => one(on_bucket("s3:PutBucketTagging")),
        "DeleteBucketTagging" => one(on_bucket("s3:DeleteBucketTagging")),
        "GetBucketCors" => one(on_bucket("s3:GetBucketCORS")),
        "PutBucketCors" | "DeleteBucketCors" => one(on_bucket("s3:PutBucketCORS")),
        "GetBucketEncryption" => one(on_bucket("s3:GetEncryptionConfiguration")),
        "PutBucketEncryption" | "DeleteBucketEncryption" => {
            one(on_bucket("s3:PutEncryptionConfiguration"))
        }
        "GetBucketLifecycleConfiguration" => one(on_bucket("s3:GetLifecycleConfiguration")),
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => {
            one(on_bucket("s3:PutLifecycleConfiguration"))
        }
        "GetBucketReplication" => one(on_bucket("s3:GetReplicationConfiguration")),
        "PutBucketReplication" | "DeleteBucketReplication" => {
            one(on_bucket("s3:PutReplicationConfiguration"))
        }
        "GetBucketNotificationConfiguration" => one(on_bucket("s3:GetBucketNotification")),
        "PutBucketNotificationConfiguration" => one(on_bucket("s3:PutBucketNotification")),
        "GetBucketWebsite" => one(on_bucket("s3:GetBucketWebsite")),
        "PutBucketWebsite" => one(on_bucket("s3:PutBucketWebsite")),
        "DeleteBucketWebsite" => one(on_bucket("s3:DeleteBucketWebsite")),
        "GetBucketAcl" => one(on_bucket("s3:GetBucketAcl")),
        "PutBucketAcl" => one(on_bucket("s3:PutBucketAcl")),
        "GetBucketLogging" => one(on_bucket("s3:GetBucketLogging")),
        "PutBucketLogging" => one(on_bucket("s3:PutBucketLogging")),
        "GetBucketAccelerateConfiguration" => one(on_bucket("s3:GetAccelerateConfiguration")),
        "PutBucketAccelerateConfiguration" => one(on_bucket("s3:PutAccelerateConfiguration")),
        "GetBucketRequestPayment" => one(on_bucket("s3:GetBucketRequestPayment")),
        "PutBucketRequestPayment" => one(on_bucket("s3:PutBucketRequestPayment")),
        "GetBucketOwnershipControls" => one(on_bucket("s3:GetBucketOwnershipControls")),
        "PutBucketOwnershipControls" | "DeleteBucketOwnershipControls" => {
            one(on_bucket("s3:PutBucketOwnershipControls"))
        }
        "GetPublicAccessBlock" => one(on_bucket("s3:GetBucketPublicAccessBlock")),
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => {
            one(on_bucket("s3:PutBucketPublicAccessBlock"))
        }
        "GetObjectLockConfiguration" => one(on_bucket("s3:GetBucketObjectLockConfiguration")),
        "PutObjectLockConfiguration" => one(on_bucket("s3:PutBucketObjectLockConfiguration")),
        "GetBucketAnalyticsConfiguration" | "ListBucketAnalyticsConfigurations" => {
            one(on_bucket("s3:GetAnalyticsConfiguration"))
        }
        "PutBucketAnalyticsConfiguration" | "DeleteBucketAnalyticsConfiguration" => {
            one(on_bucket("s3:PutAnalyticsConfiguration"))
        }
        "GetBucketInventoryConfiguration" | "ListBucketInventoryConfigurations" => {
            one(on_bucket("s3:GetInventoryConfiguration"))
        }
        "PutBucketInventoryConfiguration" | "DeleteBucketInventoryConfiguration" => {
            one(on_bucket("s3:PutInventoryConfiguration"))
        }
        "GetBucketMetricsConfiguration" | "ListBucketMetricsConfigurations" => {
            one(on_bucket("s3:GetMetricsConfiguration"))
        }
        "PutBucketMetricsConfiguration" | "DeleteBucketMetricsConfiguration" => {
            one(on_bucket("s3:PutMetricsConfiguration"))
        }
        "GetBucketIntelligentTieringConfiguration"
        | "ListBucketIntelligentTieringConfigurations" => {
            one(on_bucket("s3:GetIntelligentTieringConfiguration"))
        }
        "PutBucketIntelligentTieringConfiguration"
        | "DeleteBucketIntelligentTieringConfiguration" => {
            one(on_bucket("s3:PutIntelligentTieringConfiguration"))
        }
        "GetBucketMetadataTableConfiguration" => {
            one(on_bucket("s3:GetBucketMetadataTableConfiguration"))
        }
        "CreateBucketMetadataTableConfiguration" => {
            one(on_bucket("s3:CreateBucketMetadataTableConfiguration"))
        }
        "DeleteBucketMetadataTableConfiguration" => {
            one(on_bucket("s3:DeleteBucketMetadataTableConfiguration"))
        }
        "CreateSession" => one(on_bucket("s3:CreateSession")),
        "GetObject" | "HeadObject" => one(on_object(pick("s3:GetObject", "s3:GetObjectVersion"))),
        "SelectObjectContent" => one(on_object("s3:GetObject")),
        "GetObjectTorrent" => one(on_object(pick(
            "s3:GetObjectTorrent",
            "s3:GetObjectVersionTorrent",
        ))),
        "GetObjectAttributes" => one(on_object(pick(
            "s3:GetObjectAttributes",
            "s3:GetObjectVersionAttributes",
        ))),
        // The key and fields of a POST form are parsed after this check: its `post_object` hook
        // decides them as the equivalent PutObject.
        "PostObject" => Some(Vec::new()),
        // The source read is decided on s3s's parsed copy source, in the operation's hook.
        "UploadPartCopy" => one(on_object("s3:PutObject")),
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "CopyObject" => {
            let mut n = vec![on_object("s3:PutObject")?];
            if req.headers.contains_key("x-amz-object-lock-mode")
                || req
                    .headers
                    .contains_key("x-amz-object-lock-retain-until-date")
            {
                n.push(on_object("s3:PutObjectRetention")?);
            }
            if req.headers.contains_key("x-amz-object-lock-legal-hold") {
                n.push(on_object("s3:PutObjectLegalHold")?);
            }
            if req.headers.contains_key("x-amz-tagging") {
                n.push(on_object("s3:PutObjectTagging")?);
            }
            Some(n)
        }
        "AbortMultipartUpload" => one(on_object("s3:AbortMultipartUpload")),
        "ListParts" => one(on_object("s3:ListMultipartUploadParts")),
        "DeleteObject" => Some(delete_key(req.bucket?, req.key?, v, bypass)),
        // The keys are in the body, which is not read yet: each key is authorized on its own
        // with [`delete_key`] as the handler reads it (AWS reports a denied key in the result).
        "DeleteObjects" => Some(Vec::new()),
        "GetObjectTagging" => one(on_object(pick(
            "s3:GetObjectTagging",
            "s3:GetObjectVersionTagging",
        ))),
        "PutObjectTagging" => one(on_object(pick(
            "s3:PutObjectTagging",
            "s3:PutObjectVersionTagging",
        ))),
        "DeleteObjectTagging" => one(on_object(pick(
            "s3:DeleteObjectTagging",
            "s3:DeleteObjectVersionTagging",
        ))),
        "GetObjectAcl" => one(on_object(pick("s3:GetObjectAcl", "s3:GetObjectVersionAcl"))),
        "PutObjectAcl" => one(on_object(pick("s3:PutObjectAcl", "s3:PutObjectVersionAcl"))),
        "GetObjectRetention" => one(on_object("s3:GetObjectRetention")),
        "PutObjectRetention" => {
            let mut n = vec![on_object("s3:PutObjectRetention")?];
            if bypass {
                n.push(on_object("s3:BypassGovernanceRetention")?);
            }
            Some(n)
        }
        "GetObjectLegalHold" => one(on_object("s3:GetObjectLegalHold")),
        "PutObjectLegalHold" => one(on_object("s3:PutObjectLegalHold")),
        "RestoreObject" => one(on_object("s3:RestoreObject")),
        "WriteGetObjectResponse" => Some(vec![Needed {
            action: "s3:WriteGetObjectResponse",
            resource: "arn:aws:s3:::*".to_owned(),
        }]),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
