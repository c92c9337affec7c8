use cairn_control_plane::iam::actions::check_action;

use super::*;

/// Every operation s3s 0.14.1 dispatches (`S3Operation::name()`).
const ALL_OPS: &str = "AbortMultipartUpload CompleteMultipartUpload CopyObject CreateBucket \
CreateBucketMetadataTableConfiguration CreateMultipartUpload CreateSession DeleteBucket \
DeleteBucketAnalyticsConfiguration DeleteBucketCors DeleteBucketEncryption \
DeleteBucketIntelligentTieringConfiguration DeleteBucketInventoryConfiguration DeleteBucketLifecycle \
DeleteBucketMetadataTableConfiguration DeleteBucketMetricsConfiguration DeleteBucketOwnershipControls \
DeleteBucketPolicy DeleteBucketReplication DeleteBucketTagging DeleteBucketWebsite DeleteObject \
DeleteObjectTagging DeleteObjects DeletePublicAccessBlock GetBucketAccelerateConfiguration GetBucketAcl \
GetBucketAnalyticsConfiguration GetBucketCors GetBucketEncryption \
GetBucketIntelligentTieringConfiguration GetBucketInventoryConfiguration \
GetBucketLifecycleConfiguration GetBucketLocation GetBucketLogging GetBucketMetadataTableConfiguration \
GetBucketMetricsConfiguration GetBucketNotificationConfiguration GetBucketOwnershipControls \
GetBucketPolicy GetBucketPolicyStatus GetBucketReplication GetBucketRequestPayment GetBucketTagging \
GetBucketVersioning GetBucketWebsite GetObject GetObjectAcl GetObjectAttributes GetObjectLegalHold \
GetObjectLockConfiguration GetObjectRetention GetObjectTagging GetObjectTorrent GetPublicAccessBlock \
HeadBucket HeadObject ListBucketAnalyticsConfigurations ListBucketIntelligentTieringConfigurations \
ListBucketInventoryConfigurations ListBucketMetricsConfigurations ListBuckets ListDirectoryBuckets \
ListMultipartUploads ListObjectVersions ListObjects ListObjectsV2 ListParts PostObject \
PutBucketAccelerateConfiguration PutBucketAcl PutBucketAnalyticsConfiguration PutBucketCors \
PutBucketEncryption PutBucketIntelligentTieringConfiguration PutBucketInventoryConfiguration \
PutBucketLifecycleConfiguration PutBucketLogging PutBucketMetricsConfiguration \
PutBucketNotificationConfiguration PutBucketOwnershipControls PutBucketPolicy PutBucketReplication \
PutBucketRequestPayment PutBucketTagging PutBucketVersioning PutBucketWebsite PutObject PutObjectAcl \
PutObjectLegalHold PutObjectLockConfiguration PutObjectRetention PutObjectTagging PutPublicAccessBlock \
RestoreObject SelectObjectContent UploadPart UploadPartCopy WriteGetObjectResponse";

fn req<'a>(op: &'a str, headers: &'a HeaderMap, versioned: bool) -> OpRequest<'a> {
    OpRequest {
        op,
        bucket: Some("b"),
        key: Some("k/x"),
        versioned,
        headers,
    }
}

fn actions(op: &str, headers: &HeaderMap, versioned: bool) -> Vec<(&'static str, String)> {
    needed(&req(op, headers, versioned))
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.action, n.resource))
        .collect()
}

#[test]
fn every_operation_maps_to_known_actions() {
    let h = HeaderMap::new();
    let ops: Vec<&str> = ALL_OPS.split_whitespace().collect();
    assert_eq!(ops.len(), 99);
    for op in ops {
        for versioned in [false, true] {
            let n = needed(&req(op, &h, versioned)).unwrap_or_else(|| panic!("{op} unmapped"));
            // DeleteObjects authorizes each key in its handler, PostObject its form's key and
            // fields in its hook.
            assert!(
                !n.is_empty() || op == "DeleteObjects" || op == "PostObject",
                "{op}"
            );
            for x in n {
                assert_eq!(check_action(x.action), Ok(()), "{op} -> {}", x.action);
                assert!(x.resource.starts_with("arn:aws:s3:::"), "{op}");
            }
        }
    }
    assert!(needed(&req("NoSuchOperation", &h, false)).is_none());
}

#[test]
fn operations_map_as_aws_does() {
    let h = HeaderMap::new();
    assert_eq!(
        actions("ListObjectsV2", &h, false),
        vec![("s3:ListBucket", "arn:aws:s3:::b".to_owned())]
    );
    assert_eq!(
        actions("GetObject", &h, true),
        vec![("s3:GetObjectVersion", "arn:aws:s3:::b/k/x".to_owned())]
    );
    assert_eq!(actions("HeadObject", &h, false)[0].0, "s3:GetObject");
    assert_eq!(
        actions("DeleteObject", &h, true)[0].0,
        "s3:DeleteObjectVersion"
    );
    assert_eq!(actions("UploadPart", &h, false)[0].0, "s3:PutObject");
    assert_eq!(
        actions("ListBuckets", &h, false),
        vec![("s3:ListAllMyBuckets", "arn:aws:s3:::*".to_owned())]
    );
    // Nothing at the request level: each key is checked as its handler reads it.
    assert_eq!(actions("DeleteObjects", &h, false), vec![]);
    let names = |n: Vec<Needed>| n.into_iter().map(|n| n.action).collect::<Vec<_>>();
    assert_eq!(
        names(delete_key("b", "k", false, false)),
        vec!["s3:DeleteObject"]
    );
    assert_eq!(
        names(delete_key("b", "k", true, true)),
        vec!["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"]
    );
    assert_eq!(
        delete_key("b", "k/x", false, false)[0].resource,
        "arn:aws:s3:::b/k/x"
    );
}

#[test]
fn headers_add_permissions() {
    let mut h = HeaderMap::new();
    h.insert("x-amz-bypass-governance-retention", "true".parse().unwrap());
    assert_eq!(
        actions("PutObjectRetention", &h, false)
            .into_iter()
            .map(|a| a.0)
            .collect::<Vec<_>>(),
        vec!["s3:PutObjectRetention", "s3:BypassGovernanceRetention"]
    );
    let mut h = HeaderMap::new();
    h.insert("x-amz-object-lock-mode", "GOVERNANCE".parse().unwrap());
    h.insert("x-amz-tagging", "a=b".parse().unwrap());
    assert_eq!(
        actions("PutObject", &h, false)
            .into_iter()
            .map(|a| a.0)
            .collect::<Vec<_>>(),
        vec![
            "s3:PutObject",
            "s3:PutObjectRetention",
            "s3:PutObjectTagging"
        ]
    );
    let mut h = HeaderMap::new();
    h.insert(
        "x-amz-copy-source",
        "/src/a%20b?versionId=v1".parse().unwrap(),
    );
    // The source is read as s3s parsed it, in the operation's hook, never from the header.
    assert_eq!(
        actions("CopyObject", &h, false),
        vec![("s3:PutObject", "arn:aws:s3:::b/k/x".to_owned())]
    );
    assert_eq!(
        copy_source_read("src", "a b", true),
        Needed {
            action: "s3:GetObjectVersion",
            resource: "arn:aws:s3:::src/a b".to_owned()
        }
    );
    assert_eq!(copy_source_read("src", "?k", false).action, "s3:GetObject");
}
