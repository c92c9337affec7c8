//! The records the control plane holds.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Versioning {
    /// Never configured: writes replace the `null` version.
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub name: String,
    /// Nanoseconds since the epoch, fixed by whoever proposed the command (never read at apply time).
    pub created_ns: i64,
    #[serde(default)]
    pub versioning: Versioning,
    #[serde(default)]
    pub object_lock: bool,
    /// Retention given to new versions when the request names none (object-lock buckets only).
    #[serde(default)]
    pub default_retention: Option<crate::bucket_versioning::DefaultRetention>,
    /// Default encryption for objects written without SSE headers (PutBucketEncryption).
    #[serde(default)]
    pub encryption: Option<BucketEncryption>,
    /// The bucket policy document, validated when it was put.
    #[serde(default)]
    pub policy: Option<String>,
    /// PutBucketTagging's tag set, in the order it was put.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<BucketTag>,
    /// PutBucketLifecycleConfiguration's rules (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<crate::lifecycle::LifecycleRule>,
    /// PutBucketCors's rules (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<crate::cors::CorsRule>,
}

/// One tag of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTag {
    pub key: String,
    pub value: String,
}

/// AWS's limits on a bucket's tag set: at most 50 tags, keys of 1 to 128 and values of up to 256
/// characters, keys unique and not in the reserved `aws:` space. Checked where a tag set is
/// applied, so one that a peer site sends is held to them too.
pub fn check_bucket_tags(tags: &[BucketTag]) -> Result<(), String> {
    if tags.len() > 50 {
        return Err("Bucket tag count cannot be greater than 50".into());
    }
    for (i, t) in tags.iter().enumerate() {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err("The TagKey or TagValue you have provided is invalid".into());
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err("System tags cannot be added/updated by requester".into());
        }
        if tags[..i].iter().any(|o| o.key == t.key) {
            return Err("Cannot provide multiple Tags with the same key".into());
        }
    }
    Ok(())
}

/// A bucket's default server-side encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BucketEncryption {
    /// SSE-S3 (`AES256`).
    SseS3,
    /// SSE-KMS under `key_id`, or the KMS's default key when `None`.
    SseKms { key_id: Option<String> },
}
