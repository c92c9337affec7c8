//! Bucket versioning and object-lock configuration: the AWS rules for changing them, applied by
//! the state machine. Object lock needs versioning on, and a locked bucket can never suspend it.

use serde::{Deserialize, Serialize};

use crate::command::CommandError;
use crate::model::{BucketInfo, Versioning};

/// The two retention modes of S3 Object Lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// Removable early only with `s3:BypassGovernanceRetention` and the bypass header.
    Governance,
    /// Nobody, root included, removes the version or shortens its retention before it expires.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// How long a bucket's default retention lasts: AWS takes days or years, never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionPeriod {
    Days(u32),
    Years(u32),
}

/// A bucket's default retention, applied to versions written after it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    pub mode: LockMode,
    pub period: RetentionPeriod,
}

impl DefaultRetention {
    /// The retain-until time of a version written at `now_ns`.
    pub fn retain_until_ns(&self, now_ns: i64) -> i64 {
        const DAY_NS: i64 = 86_400 * 1_000_000_000;
        let days = match self.period {
            RetentionPeriod::Days(d) => i64::from(d),
            RetentionPeriod::Years(y) => i64::from(y) * 365,
        };
        now_ns.saturating_add(days.saturating_mul(DAY_NS))
    }
}

/// PutBucketVersioning: a bucket with object lock can never leave `Enabled`.
pub fn set_versioning(b: &mut BucketInfo, v: Versioning) -> Result<(), CommandError> {
    if b.object_lock && v != Versioning::Enabled {
        return Err(CommandError::InvalidBucketState(
            "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.".into(),
        ));
    }
    if v == Versioning::Unversioned {
        return Err(CommandError::InvalidRequest(
            "versioning can only be Enabled or Suspended".into(),
        ));
    }
    b.versioning = v;
    Ok(())
}

/// PutObjectLockConfiguration: turns object lock on (only with versioning enabled) and sets or
/// clears the default retention.
pub fn set_lock_config(
    b: &mut BucketInfo,
    default: Option<DefaultRetention>,
) -> Result<(), CommandError> {
    if !b.object_lock && b.versioning != Versioning::Enabled {
        return Err(CommandError::InvalidBucketState(
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
                .into(),
        ));
    }
    if let Some(d) = default {
        let n = match d.period {
            RetentionPeriod::Days(n) | RetentionPeriod::Years(n) => n,
        };
        if n == 0 {
            return Err(CommandError::InvalidRequest(
                "Default retention period must be a positive integer value".into(),
            ));
        }
    }
    b.object_lock = true;
    b.default_retention = default;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(versioning: Versioning, object_lock: bool) -> BucketInfo {
        BucketInfo {
            name: "b".into(),
            created_ns: 0,
            versioning,
            object_lock,
            default_retention: None,
            encryption: None,
            policy: None,
            tags: Vec::new(),
            lifecycle: Vec::new(),
            cors: Vec::new(),
        }
    }

    #[test]
    fn locked_bucket_cannot_suspend() {
        let mut b = bucket(Versioning::Enabled, true);
        assert!(matches!(
            set_versioning(&mut b, Versioning::Suspended),
            Err(CommandError::InvalidBucketState(_))
        ));
        assert_eq!(b.versioning, Versioning::Enabled);
        let mut b = bucket(Versioning::Enabled, false);
        set_versioning(&mut b, Versioning::Suspended).unwrap();
        assert_eq!(b.versioning, Versioning::Suspended);
    }

    #[test]
    fn lock_needs_versioning() {
        let rule = Some(DefaultRetention {
            mode: LockMode::Governance,
            period: RetentionPeriod::Days(1),
        });
        let mut b = bucket(Versioning::Unversioned, false);
        assert!(matches!(
            set_lock_config(&mut b, rule),
            Err(CommandError::InvalidBucketState(_))
        ));
        let mut b = bucket(Versioning::Enabled, false);
        set_lock_config(&mut b, rule).unwrap();
        assert!(b.object_lock);
        assert_eq!(b.default_retention, rule);
        let zero = Some(DefaultRetention {
            mode: LockMode::Compliance,
            period: RetentionPeriod::Years(0),
        });
        assert!(set_lock_config(&mut b, zero).is_err());
    }

    #[test]
    fn retention_period_in_days() {
        let d = DefaultRetention {
            mode: LockMode::Compliance,
            period: RetentionPeriod::Years(1),
        };
        assert_eq!(d.retain_until_ns(5), 5 + 365 * 86_400 * 1_000_000_000);
    }
}
