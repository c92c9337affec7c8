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
}

/// A bucket's default server-side encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BucketEncryption {
    /// SSE-S3 (`AES256`).
    SseS3,
    /// SSE-KMS under `key_id`, or the KMS's default key when `None`.
    SseKms { key_id: Option<String> },
}
