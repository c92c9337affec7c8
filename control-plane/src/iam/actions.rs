//! The action names Cairn knows. Policies are validated against these lists so that a typo such
//! as `s3:GetObjects` is refused when the policy is written (`MalformedPolicy`) instead of
//! silently granting nothing; the S3 edge maps each operation onto one of these names.

/// `s3:*` actions (the part after `s3:`), as AWS and MinIO spell them.
pub const S3_ACTIONS: &[&str] = &[
    "AbortMultipartUpload",
    "BypassGovernanceRetention",
    "CreateBucket",
    "CreateBucketMetadataTableConfiguration",
    "CreateSession",
    "DeleteBucket",
    "DeleteBucketMetadataTableConfiguration",
    "DeleteBucketPolicy",
    "DeleteBucketTagging",
    "DeleteBucketWebsite",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjectVersion",
    "DeleteObjectVersionTagging",
    "ForceDeleteBucket",
    "GetAccelerateConfiguration",
    "GetAnalyticsConfiguration",
    "GetBucketAcl",
    "GetBucketCORS",
    "GetBucketLocation",
    "GetBucketLogging",
    "GetBucketMetadataTableConfiguration",
    "GetBucketNotification",
    "GetBucketObjectLockConfiguration",
    "GetBucketOwnershipControls",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock",
    "GetBucketRequestPayment",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetBucketWebsite",
    "GetEncryptionConfiguration",
    "GetIntelligentTieringConfiguration",
    "GetInventoryConfiguration",
    "GetLifecycleConfiguration",
    "GetMetricsConfiguration",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectLegalHold",
    "GetObjectRetention",
    "GetObjectTagging",
    "GetObjectTorrent",
    "GetObjectVersion",
    "GetObjectVersionAcl",
    "GetObjectVersionAttributes",
    "GetObjectVersionForReplication",
    "GetObjectVersionTagging",
    "GetObjectVersionTorrent",
    "GetReplicationConfiguration",
    "ListAllMyBuckets",
    "ListBucket",
    "ListBucketMultipartUploads",
    "ListBucketVersions",
    "ListenBucketNotification",
    "ListenNotification",
    "ListMultipartUploadParts",
    "PutAccelerateConfiguration",
    "PutAnalyticsConfiguration",
    "PutBucketAcl",
    "PutBucketCORS",
    "PutBucketLogging",
    "PutBucketNotification",
    "PutBucketObjectLockConfiguration",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketPublicAccessBlock",
    "PutBucketRequestPayment",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutBucketWebsite",
    "PutEncryptionConfiguration",
    "PutIntelligentTieringConfiguration",
    "PutInventoryConfiguration",
    "PutLifecycleConfiguration",
    "PutMetricsConfiguration",
    "PutObject",
    "PutObjectAcl",
    "PutObjectLegalHold",
    "PutObjectRetention",
    "PutObjectTagging",
    "PutObjectVersionAcl",
    "PutObjectVersionTagging",
    "PutReplicationConfiguration",
    "ReplicateDelete",
    "ReplicateObject",
    "ReplicateTags",
    "ResetBucketReplicationState",
    "RestoreObject",
    "WriteGetObjectResponse",
];

/// `admin:*` actions (MinIO's admin API names, kept so MinIO policies load unchanged).
pub const ADMIN_ACTIONS: &[&str] = &[
    "AddUserToGroup",
    "AttachUserOrGroupPolicy",
    "BandwidthMonitor",
    "ConfigUpdate",
    "ConsoleLog",
    "CreatePolicy",
    "CreateServiceAccount",
    "CreateUser",
    "DecommissionInfo",
    "DeletePolicy",
    "DeleteUser",
    "DisableGroup",
    "DisableUser",
    "EnableGroup",
    "EnableUser",
    "ExportBucketMetadata",
    "ExportIAM",
    "ForceUnlock",
    "GetBucketQuota",
    "GetBucketTarget",
    "GetGroup",
    "GetPolicy",
    "GetUser",
    "Heal",
    "Health",
    "ImportBucketMetadata",
    "ImportIAM",
    "KMSCreateKey",
    "KMSKeyStatus",
    "ListBatchJobs",
    "ListGroups",
    "ListServiceAccounts",
    "ListTemporaryAccounts",
    "ListUserPolicies",
    "ListUsers",
    "OBDInfo",
    "Profiling",
    "Prometheus",
    "RebalanceStart",
    "RebalanceStop",
    "RemoveServiceAccount",
    "RemoveUserFromGroup",
    "ServerInfo",
    "ServerTrace",
    "ServerUpdate",
    "ServiceRestart",
    "ServiceStop",
    "SetBucketQuota",
    "SetBucketTarget",
    "SiteReplicationAdd",
    "SiteReplicationDisable",
    "SiteReplicationInfo",
    "SiteReplicationOperation",
    "SiteReplicationRemove",
    "StorageInfo",
    "TopLocksInfo",
    "UpdateServiceAccount",
];

/// `kms:*` actions (MinIO's KMS API).
pub const KMS_ACTIONS: &[&str] = &[
    "API",
    "CreateKey",
    "DeleteKey",
    "ImportKey",
    "KeyStatus",
    "ListKeys",
    "Metrics",
    "Status",
    "Version",
];

/// `sts:*` actions.
pub const STS_ACTIONS: &[&str] = &[
    "AssumeRole",
    "AssumeRoleWithClientGrants",
    "AssumeRoleWithCustomToken",
    "AssumeRoleWithLDAPIdentity",
    "AssumeRoleWithWebIdentity",
];

/// The service prefixes a policy may name; anything else is a typo or another cloud's service.
pub const SERVICES: &[(&str, &[&str])] = &[
    ("s3", S3_ACTIONS),
    ("admin", ADMIN_ACTIONS),
    ("kms", KMS_ACTIONS),
    ("sts", STS_ACTIONS),
];

/// Why an action name in a policy was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionProblem {
    /// No `service:` prefix, or an empty name after it.
    Malformed,
    /// The prefix is not one of [`SERVICES`].
    UnknownService,
    /// A known prefix with a name (without wildcards) that the service does not have.
    UnknownAction,
}

/// Checks one `Action`/`NotAction` entry: `*`, `service:*`-style wildcards (any name with `*` or
/// `?` under a known service) or an exact known name, all case-insensitively as AWS compares
/// action names.
pub fn check_action(name: &str) -> Result<(), ActionProblem> {
    if name == "*" {
        return Ok(());
    }
    let Some((service, rest)) = name.split_once(':') else {
        return Err(ActionProblem::Malformed);
    };
    if rest.is_empty() || rest.contains(':') {
        return Err(ActionProblem::Malformed);
    }
    let Some((_, known)) = SERVICES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(service))
    else {
        return Err(ActionProblem::UnknownService);
    };
    if rest.contains(['*', '?']) || known.iter().any(|a| a.eq_ignore_ascii_case(rest)) {
        Ok(())
    } else {
        Err(ActionProblem::UnknownAction)
    }
}

/// True for actions that act on an S3 resource (bucket or object ARN); admin, KMS and STS actions
/// are checked without a resource, as MinIO does.
pub fn is_s3_action(name: &str) -> bool {
    name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("s3:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_case_insensitively_without_duplicates() {
        for (service, list) in SERVICES {
            for pair in list.windows(2) {
                assert!(
                    pair[0].to_lowercase() < pair[1].to_lowercase(),
                    "{service}: {} before {}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }

    #[test]
    fn checks_names() {
        assert_eq!(check_action("s3:getobject"), Ok(()));
        assert_eq!(check_action("S3:Get*"), Ok(()));
        assert_eq!(check_action("admin:*"), Ok(()));
        assert_eq!(check_action("*"), Ok(()));
        assert_eq!(
            check_action("s3:GetObjects"),
            Err(ActionProblem::UnknownAction)
        );
        assert_eq!(check_action("ec2:*"), Err(ActionProblem::UnknownService));
        assert_eq!(check_action("GetObject"), Err(ActionProblem::Malformed));
        assert_eq!(check_action("s3:"), Err(ActionProblem::Malformed));
        assert!(is_s3_action("S3:GetObject"));
        assert!(!is_s3_action("admin:ServerInfo"));
    }
}
