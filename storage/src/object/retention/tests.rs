//! The matrix: (mode none/GOVERNANCE/COMPLIANCE) x (legal hold) x (retention expired or
//! not) x (bypass header) x (bypass permission) x (every removing operation), each checked
//! against the rule written out independently below.

use super::*;

const NOW: i64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
enum Op {
    /// DeleteObject with a version id, and each key of DeleteObjects (same check).
    DeleteVersion,
    /// PutObjectRetention with an earlier retain-until, same mode.
    ShortenRetention,
    /// PutObjectRetention with an empty retention.
    RemoveRetention,
    /// PutObjectRetention moving COMPLIANCE/GOVERNANCE to GOVERNANCE with the same date.
    WeakenToGovernance,
    /// PutObjectRetention with a later retain-until (never a removal; always allowed).
    ExtendRetention,
}

fn run(op: Op, lock: &LockState, bypass: Bypass) -> Result<(), LockDenied> {
    let until = lock.retain_until_ns;
    let mode = lock.mode.unwrap_or(LockMode::Governance);
    match op {
        Op::DeleteVersion => check_removal(lock, bypass, NOW),
        Op::ShortenRetention => check_retention_change(lock, Some((mode, NOW + 1)), bypass, NOW),
        Op::RemoveRetention => check_retention_change(lock, None, bypass, NOW),
        Op::WeakenToGovernance => {
            check_retention_change(lock, Some((LockMode::Governance, until)), bypass, NOW)
        }
        Op::ExtendRetention => {
            check_retention_change(lock, Some((mode, until + 1_000)), bypass, NOW)
        }
    }
}

/// The rule as the issue states it.
fn expected(op: Op, mode: Option<LockMode>, hold: bool, expired: bool, bypass: Bypass) -> bool {
    let deletes = matches!(op, Op::DeleteVersion);
    if deletes && hold {
        return false;
    }
    let active = mode.filter(|_| !expired);
    match (op, active) {
        (_, None) | (Op::ExtendRetention, _) => true,
        (Op::WeakenToGovernance, Some(LockMode::Governance)) => true,
        (_, Some(LockMode::Compliance)) => false,
        (_, Some(LockMode::Governance)) => bypass.header && bypass.allowed,
    }
}

#[test]
fn matrix() {
    let ops = [
        Op::DeleteVersion,
        Op::ShortenRetention,
        Op::RemoveRetention,
        Op::WeakenToGovernance,
        Op::ExtendRetention,
    ];
    let mut cases = 0;
    for mode in [None, Some(LockMode::Governance), Some(LockMode::Compliance)] {
        for hold in [false, true] {
            for expired in [false, true] {
                for header in [false, true] {
                    for allowed in [false, true] {
                        let lock = LockState {
                            mode,
                            retain_until_ns: if expired { NOW } else { NOW + 10_000 },
                            legal_hold: hold,
                        };
                        let bypass = Bypass { header, allowed };
                        for op in ops {
                            let got = run(op, &lock, bypass);
                            let want = expected(op, mode, hold, expired, bypass);
                            assert_eq!(
                                got.is_ok(),
                                want,
                                "{op:?} mode={mode:?} hold={hold} expired={expired} \
                                 header={header} allowed={allowed}: {got:?}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 3 * 2 * 2 * 2 * 2 * 5);
}

#[test]
fn denial_reasons() {
    let hold = LockState {
        legal_hold: true,
        ..Default::default()
    };
    assert_eq!(
        check_removal(
            &hold,
            Bypass {
                header: true,
                allowed: true
            },
            NOW
        ),
        Err(LockDenied::LegalHold)
    );
    let compliance = LockState {
        mode: Some(LockMode::Compliance),
        retain_until_ns: NOW + 1,
        legal_hold: false,
    };
    assert_eq!(
        check_removal(
            &compliance,
            Bypass {
                header: true,
                allowed: true
            },
            NOW
        ),
        Err(LockDenied::Compliance)
    );
    // Expiry is exclusive: at the retain-until instant the version is free.
    assert_eq!(
        check_removal(&compliance, Bypass::default(), NOW + 1),
        Ok(())
    );
    let governance = LockState {
        mode: Some(LockMode::Governance),
        ..compliance
    };
    assert_eq!(
        check_removal(
            &governance,
            Bypass {
                header: true,
                allowed: false
            },
            NOW
        ),
        Err(LockDenied::Governance)
    );
}

#[test]
fn lock_state_roundtrips_through_a_version() {
    let l = LockState {
        mode: Some(LockMode::Compliance),
        retain_until_ns: 42,
        legal_hold: true,
    };
    let mut v = ObjectVersion::default();
    l.write_to(&mut v);
    assert_eq!(v.lock_mode, "COMPLIANCE");
    assert_eq!(LockState::of(&v), l);
    LockState::default().write_to(&mut v);
    assert_eq!(
        (v.lock_mode.as_str(), v.retain_until_ns, v.legal_hold),
        ("", 0, false)
    );
}
