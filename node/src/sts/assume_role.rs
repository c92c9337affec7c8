//! STS `AssumeRole`: an enabled user (or root) gets temporary credentials that act with its
//! permissions, narrowed by an optional session policy, until `DurationSeconds` pass.

use cairn_control_plane::iam::identity::Parent;
use s3s::{Body, S3Request};

use super::{duration_secs, expiry_after, session_policy, Form, Login, StsError};
use crate::auth::authorize::condition_keys::{query_pairs, session_token};
use crate::auth::authorize::{Authorizer, Denied};
use crate::auth::iam::{Caller, CallerError};
use crate::auth::session::{Claims, MAX_DURATION_SECS};

/// Validates a signed `AssumeRole` call.
pub(super) fn validate(
    auth: &Authorizer,
    req: &S3Request<Body>,
    form: &Form,
    now_ns: i64,
) -> Result<Login, StsError> {
    let Some(c) = &req.credentials else {
        return Err(StsError::denied("AssumeRole must be signed"));
    };
    let state = auth.iam.state();
    let token = session_token(&req.headers, &query_pairs(&req.uri));
    let caller = auth
        .iam
        .caller(&state.iam, &c.access_key, token.as_deref())
        .map_err(|e| {
            let code = match e {
                CallerError::ExpiredToken => "ExpiredToken",
                CallerError::InvalidToken => "InvalidToken",
                CallerError::Unknown => "AccessDenied",
            };
            let s3 = Denied::from(e).to_s3();
            let status = s3.status_code().unwrap_or(http::StatusCode::FORBIDDEN);
            StsError::new(status, code, s3.message().unwrap_or_default())
        })?;
    for_caller(&caller, form, now_ns)
}

/// The session `caller` gets.
fn for_caller(caller: &Caller, form: &Form, now_ns: i64) -> Result<Login, StsError> {
    let (parent, user) = match caller {
        Caller::Root => (Parent::Root, "root".to_owned()),
        Caller::User(u) => (Parent::User(u.clone()), u.clone()),
        Caller::ServiceAccount { .. } | Caller::Session { .. } => {
            return Err(StsError::denied(
                "only users and root can assume a role, not service accounts or sessions",
            ))
        }
    };
    let duration = duration_secs(form, MAX_DURATION_SECS)?;
    Ok(Login {
        claims: Claims {
            parent,
            expires_ns: expiry_after(now_ns, duration),
            policy: session_policy(form)?,
            asserted: Default::default(),
        },
        user,
        extra: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(caller: &Caller, form: &str) -> Result<(Claims, String), StsError> {
        for_caller(caller, &Form::parse(form), 1_000).map(|l| (l.claims, l.user))
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
        let svc = Caller::ServiceAccount {
            access_key: "svc".into(),
            parent: Parent::User("alice".into()),
            policy: None,
            asserted: Default::default(),
        };
        assert_eq!(code(call(&svc, "Action=AssumeRole")), "AccessDenied");
        let (claims, user) = call(&Caller::Root, "Action=AssumeRole").unwrap();
        assert_eq!((claims.parent, user.as_str()), (Parent::Root, "root"));
    }
}
