//! S3 Object Lock enforcement: the one decision every path that removes a version, or weakens its
//! retention, asks before it acts (DeleteObject with a version id, DeleteObjects, PutObjectRetention,
//! a site replica that would replace the null version (`object::replica`), a peer site's removal of
//! a version or change of its retention (`object::metadata`), and later lifecycle and admin). Pure: the caller hands in the time (from the node's clock) and whether the caller may
//! bypass governance (from IAM; root only until IAM lands).
//!
//! The second removal path, which does not ask: heal (`object::heal`) removes a version lost
//! beyond its parity (fewer intact shards than the code needs, with every drive answering), locked
//! or not, since its data is gone and left in place it makes the key unreadable. Each such removal
//! is logged (warn, with bucket, key and version) and counted: `lost_versions_removed` in
//! `cairn admin info` (and among `dangling_removed` in the heal result).

use cairn_control_plane::LockMode;
use cairn_proto::meta::ObjectVersion;
use thiserror::Error;

/// A version's lock: retention (mode + retain-until) and legal hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockState {
    pub mode: Option<LockMode>,
    pub retain_until_ns: i64,
    pub legal_hold: bool,
}

impl LockState {
    pub fn of(v: &ObjectVersion) -> Self {
        Self {
            mode: LockMode::parse(&v.lock_mode),
            retain_until_ns: v.retain_until_ns,
            legal_hold: v.legal_hold,
        }
    }

    pub fn write_to(&self, v: &mut ObjectVersion) {
        v.lock_mode = self
            .mode
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        v.retain_until_ns = if self.mode.is_some() {
            self.retain_until_ns
        } else {
            0
        };
        v.legal_hold = self.legal_hold;
    }

    /// The retention mode still in force at `now_ns`, if any.
    pub fn active_mode(&self, now_ns: i64) -> Option<LockMode> {
        self.mode.filter(|_| self.retain_until_ns > now_ns)
    }
}

/// What the request says about bypassing GOVERNANCE retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bypass {
    /// `x-amz-bypass-governance-retention: true` was sent.
    pub header: bool,
    /// The caller is allowed `s3:BypassGovernanceRetention`.
    pub allowed: bool,
}

impl Bypass {
    pub fn applies(self) -> bool {
        self.header && self.allowed
    }
}

/// Why the lock refuses; AWS answers all of these with 403 AccessDenied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LockDenied {
    #[error("Access Denied because object protected by object lock (legal hold).")]
    LegalHold,
    #[error("Access Denied because object protected by object lock (compliance retention).")]
    Compliance,
    #[error("Access Denied because object protected by object lock (governance retention).")]
    Governance,
}

/// May this version be removed now? Legal hold blocks always; COMPLIANCE until it expires;
/// GOVERNANCE until it expires unless bypassed. (A delete marker write removes nothing and never
/// asks.)
pub fn check_removal(lock: &LockState, bypass: Bypass, now_ns: i64) -> Result<(), LockDenied> {
    if lock.legal_hold {
        return Err(LockDenied::LegalHold);
    }
    match lock.active_mode(now_ns) {
        None => Ok(()),
        Some(LockMode::Compliance) => Err(LockDenied::Compliance),
        Some(LockMode::Governance) if bypass.applies() => Ok(()),
        Some(LockMode::Governance) => Err(LockDenied::Governance),
    }
}

/// May the retention of a version change from `current` to `new` (mode, retain-until; `None`
/// removes it)? Extending, or moving GOVERNANCE to COMPLIANCE without shortening, is always
/// allowed; weakening an active COMPLIANCE retention never is; weakening an active GOVERNANCE
/// retention needs the bypass. Legal hold is separate and does not matter here.
pub fn check_retention_change(
    current: &LockState,
    new: Option<(LockMode, i64)>,
    bypass: Bypass,
    now_ns: i64,
) -> Result<(), LockDenied> {
    let Some(mode) = current.active_mode(now_ns) else {
        return Ok(());
    };
    let keeps = new.is_some_and(|(m, until)| {
        until >= current.retain_until_ns && (m == mode || m == LockMode::Compliance)
    });
    match mode {
        _ if keeps => Ok(()),
        LockMode::Compliance => Err(LockDenied::Compliance),
        LockMode::Governance if bypass.applies() => Ok(()),
        LockMode::Governance => Err(LockDenied::Governance),
    }
}

#[cfg(test)]
mod tests;
