//! STS `AssumeRole`: an enabled user (or root) gets temporary credentials that act with its
//! permissions, narrowed by an optional session policy, until `DurationSeconds` pass.

use cairn_control_plane::iam::identity::Parent;
use cairn_control_plane::iam::Policy;

use super::StsError;
use crate::auth::iam::Caller;
use crate::auth::session::{Claims, DEFAULT_DURATION_SECS, MAX_DURATION_SECS, MIN_DURATION_SECS};

/// Validates an `AssumeRole` call by `caller`; the session's claims and the parent's name.
pub(super) fn validate<'a>(
    caller: &Caller,
    param: &impl Fn(&str) -> Option<&'a str>,
    now_ns: i64,
) -> Result<(Claims, String), StsError> {
    match param("Action") {
        Some("AssumeRole") => {}
        Some(other) => {
            return Err(StsError::bad(
                "InvalidAction",
                format!("Could not find operation {other} for version 2011-06-15"),
            ))
        }
        None => return Err(StsError::bad("MissingAction", "Action is required")),
    }
    let (parent, user) = match caller {
        Caller::Root => (Parent::Root, "root".to_owned()),
        Caller::User(u) => (Parent::User(u.clone()), u.clone()),
        Caller::ServiceAccount { .. } | Caller::Session { .. } => {
            return Err(StsError::new(
                http::StatusCode::FORBIDDEN,
                "AccessDenied",
                "only users and root can assume a role, not service accounts or sessions",
            ))
        }
    };
    let duration = match param("DurationSeconds") {
        None => DEFAULT_DURATION_SECS,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|d| (MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(d))
            .ok_or_else(|| {
                StsError::bad(
                    "ValidationError",
                    format!(
                        "DurationSeconds {v:?} must be an integer from {MIN_DURATION_SECS} to {MAX_DURATION_SECS}"
                    ),
                )
            })?,
    };
    let policy = match param("Policy").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => {
            Policy::parse_identity(p).map_err(|e| {
                StsError::bad("MalformedPolicyDocument", format!("session policy: {e}"))
            })?;
            Some(p.to_owned())
        }
    };
    let expires_ns = now_ns.saturating_add((duration as i64).saturating_mul(1_000_000_000));
    Ok((
        Claims {
            parent,
            expires_ns,
            policy,
        },
        user,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authorize::condition_keys::form_pairs;

    fn call(caller: &Caller, form: &str) -> Result<(Claims, String), StsError> {
        let pairs = form_pairs(form);
        let param = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        validate(caller, &param, 1_000)
    }

    fn code(r: Result<(Claims, String), StsError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn assume_role_validates_its_parameters() {
        let alice = Caller::User("alice".into());
        let (claims, user) = call(&alice, "Action=AssumeRole&Version=2011-06-15").unwrap();
        assert_eq!(user, "alice");
        assert_eq!(claims.parent, Parent::User("alice".into()));
        assert_eq!(claims.expires_ns, 1_000 + 3_600 * 1_000_000_000);
        assert_eq!(claims.policy, None);
        let (claims, _) = call(&alice, "Action=AssumeRole&DurationSeconds=900").unwrap();
        assert_eq!(claims.expires_ns, 1_000 + 900 * 1_000_000_000);
        for bad in ["899", "43201", "-1", "ten", ""] {
            let form = format!("Action=AssumeRole&DurationSeconds={bad}");
            assert_eq!(code(call(&alice, &form)), "ValidationError", "{bad}");
        }
        assert_eq!(
            code(call(&alice, "Action=AssumeRole&DurationSeconds=43200")),
            "ok"
        );
        let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGetObject%22%2C%22Resource%22%3A%22*%22%7D%5D%7D";
        let (claims, _) = call(&alice, &format!("Action=AssumeRole&Policy={policy}")).unwrap();
        assert!(claims.policy.unwrap().contains("s3:GetObject"));
        assert_eq!(
            code(call(&alice, "Action=AssumeRole&Policy=%7Bnot-json")),
            "MalformedPolicyDocument"
        );
        assert_eq!(
            code(call(&alice, "Action=GetCallerIdentity")),
            "InvalidAction"
        );
        assert_eq!(code(call(&alice, "Version=2011-06-15")), "MissingAction");
        let svc = Caller::ServiceAccount {
            access_key: "svc".into(),
            parent: Parent::User("alice".into()),
            policy: None,
        };
        assert_eq!(code(call(&svc, "Action=AssumeRole")), "AccessDenied");
        let (claims, user) = call(&Caller::Root, "Action=AssumeRole").unwrap();
        assert_eq!((claims.parent, user.as_str()), (Parent::Root, "root"));
    }
}
