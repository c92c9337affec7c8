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
    /// The bucket policy document, validated when it was put.
    #[serde(default)]
    pub policy: Option<String>,
}
