//! STS `AssumeRoleWithWebIdentity` and `AssumeRoleWithClientGrants`: a token signed by an OpenID
//! Connect provider buys a session. The call is unsigned (the token is the proof); the token is
//! verified by the provider it was issued for ([`crate::idp::openid::Provider::verify`]), and the
//! session's policies are the ones the token (or the provider's role) names that exist on the
//! site.
//!
//! Which provider: a `RoleArn` of a role-policy provider (`arn:cairn:iam:::role/NAME`) selects
//! it; otherwise the one claim-based provider checks the token. Any other `RoleArn` is taken as
//! no selection, as AWS SDKs insist on sending one; a Cairn role ARN naming no provider is an
//! error, so a typo does not silently fall back.
//!
//! How long: `DurationSeconds` (900 s to 12 hours, 1 hour by default), but never past the token's
//! `exp`. MinIO does the same when `DurationSeconds` is given; without it MinIO takes the token's
//! `exp` as it is, which can be minutes or days: Cairn keeps AWS's one-hour default instead, so
//! sessions are as long whoever issued the token, and only ever shorter than asked when the
//! provider's own assertion runs out first.

use std::sync::Arc;

use cairn_control_plane::iam::identity::{Asserted, Parent};

use super::{duration_secs, expiry_after, session_policy, Form, Login, StsError};
use crate::auth::session::{Claims, MAX_DURATION_SECS};
use crate::idp::openid::jwt::MAX_TOKEN_LEN;
use crate::idp::openid::{Provider, VerifyError, ROLE_ARN_PREFIX};
use crate::node::Node;

/// The token's form parameter and the result element naming its subject, per action.
fn parameters(action: &str) -> (&'static str, &'static str) {
    if action == "AssumeRoleWithClientGrants" {
        ("Token", "SubjectFromToken")
    } else {
        ("WebIdentityToken", "SubjectFromWebIdentityToken")
    }
}

/// The provider that checks the token (see the module's documentation).
fn select<'a>(
    providers: &'a [Arc<Provider>],
    role_arn: Option<&str>,
) -> Result<&'a Arc<Provider>, StsError> {
    if providers.is_empty() {
        return Err(StsError::bad(
            "InvalidParameterValue",
            "no OpenID Connect provider is configured",
        ));
    }
    if let Some(arn) = role_arn.filter(|a| !a.is_empty()) {
        if let Some(p) = providers
            .iter()
            .find(|p| p.role().is_some_and(|r| r.arn == arn))
        {
            return Ok(p);
        }
        if arn.starts_with(ROLE_ARN_PREFIX) {
            return Err(StsError::bad(
                "InvalidParameterValue",
                format!("RoleArn {arn} is not the role of a configured OpenID Connect provider"),
            ));
        }
    }
    providers
        .iter()
        .find(|p| p.role().is_none())
        .ok_or_else(|| {
            let roles: Vec<&str> = providers
                .iter()
                .filter_map(|p| p.role().map(|r| r.arn.as_str()))
                .collect();
            StsError::bad(
                "InvalidParameterValue",
                format!(
                    "RoleArn must name the provider's role: one of {}",
                    roles.join(", ")
                ),
            )
        })
}

/// AWS's error for each way a token fails.
fn refusal(e: &VerifyError) -> StsError {
    match e {
        VerifyError::Expired { .. } => StsError::bad("ExpiredTokenException", e.to_string()),
        VerifyError::Unreachable(_) => StsError::bad("IDPCommunicationError", e.to_string()),
        _ => StsError::bad("InvalidIdentityToken", e.to_string()),
    }
}

/// The session a web-identity (or client-grants) call buys: its token verified by the provider
/// the call selects, its policies those the token grants that the site has.
pub(super) async fn validate(
    node: &Node,
    action: &str,
    form: &Form,
    now_ns: i64,
) -> Result<Login, StsError> {
    let (param, subject_element) = parameters(action);
    let token = form.get(param).filter(|t| !t.is_empty()).ok_or_else(|| {
        StsError::bad(
            "ValidationError",
            format!("1 validation error detected: Value null at '{param}' failed to satisfy constraint: Member must not be null"),
        )
    })?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(StsError::bad(
            "ValidationError",
            format!("1 validation error detected: Value at '{param}' failed to satisfy constraint: Member must have length less than or equal to {MAX_TOKEN_LEN}"),
        ));
    }
    let provider = select(&node.idp.openid, form.get("RoleArn"))?;
    // The form's own mistakes are reported before the provider is asked.
    let duration = duration_secs(form, MAX_DURATION_SECS)?;
    let policy = session_policy(form)?;
    let identity = provider.verify(token, now_ns).await.map_err(|e| {
        tracing::info!(provider = provider.display_name(), error = %e, "{action}: token refused");
        refusal(&e)
    })?;
    let state = node.catalog.state();
    let claimed = provider.policies(&identity.claims);
    let policies: Vec<String> = claimed
        .iter()
        .filter(|p| state.iam.policy_document(p).is_some())
        .cloned()
        .collect();
    if policies.is_empty() {
        tracing::info!(
            provider = provider.display_name(),
            subject = %identity.subject,
            ?claimed,
            "{action}: the token grants no policy of this site"
        );
        return Err(StsError::denied(match provider.role() {
            Some(role) => format!("the role {}'s policies do not exist on this site", role.arn),
            None => format!(
                "the token's {:?} claim names no policy that exists on this site",
                provider.claim()
            ),
        }));
    }
    let expires_ns = expiry_after(now_ns, duration).min(identity.expires_ns);
    Ok(Login {
        claims: Claims {
            parent: Parent::OpenId {
                provider: provider.name().to_owned(),
                subject: identity.subject.clone(),
            },
            expires_ns,
            policy,
            asserted: Asserted {
                groups: Vec::new(),
                policies,
                ..Default::default()
            },
        },
        user: identity.subject.clone(),
        extra: vec![
            (subject_element, identity.subject),
            ("Audience", identity.audience),
            ("Provider", identity.issuer),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::openid::{from_vars, Fetch};

    struct Nowhere;

    #[async_trait::async_trait]
    impl Fetch for Nowhere {
        async fn get(&self, url: &str, _max: usize) -> Result<bytes::Bytes, String> {
            Err(format!("{url}: unreachable"))
        }
    }

    fn providers(pairs: &[(&str, &str)]) -> Vec<Arc<Provider>> {
        let map: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("CAIRN_IDENTITY_OPENID_{k}"), v.to_string()))
            .collect();
        let names: Vec<String> = map.keys().cloned().collect();
        from_vars(&names, &|k| map.get(k).cloned(), Arc::new(Nowhere)).unwrap()
    }

    fn picked(ps: &[Arc<Provider>], arn: Option<&str>) -> Result<String, &'static str> {
        select(ps, arn)
            .map(|p| p.display_name().to_owned())
            .map_err(|e| e.code)
    }

    #[test]
    fn role_arn_selects_the_provider() {
        let claim_and_roles = providers(&[
            ("CONFIG_URL", "http://a.test/c"),
            ("CLIENT_ID", "a"),
            ("CONFIG_URL_APP2", "http://b.test/c"),
            ("CLIENT_ID_APP2", "b"),
            ("ROLE_POLICY_APP2", "readonly"),
        ]);
        let ps = &claim_and_roles;
        assert_eq!(
            picked(ps, Some("arn:cairn:iam:::role/APP2")),
            Ok("APP2".into())
        );
        assert_eq!(picked(ps, None), Ok("default".into()));
        assert_eq!(picked(ps, Some("")), Ok("default".into()));
        assert_eq!(
            picked(ps, Some("arn:aws:iam::123456789012:role/x")),
            Ok("default".into())
        );
        assert_eq!(
            picked(ps, Some("arn:cairn:iam:::role/APP3")),
            Err("InvalidParameterValue")
        );
        let roles_only = providers(&[
            ("CONFIG_URL", "http://a.test/c"),
            ("CLIENT_ID", "a"),
            ("ROLE_POLICY", "readwrite"),
        ]);
        assert_eq!(
            picked(&roles_only, Some("arn:cairn:iam:::role/default")),
            Ok("default".into())
        );
        assert_eq!(picked(&roles_only, None), Err("InvalidParameterValue"));
        assert_eq!(picked(&[], None), Err("InvalidParameterValue"));
    }

    #[test]
    fn token_failures_map_to_aws_codes() {
        let table = [
            (VerifyError::Expired { exp: 1 }, "ExpiredTokenException"),
            (
                VerifyError::Unreachable("down".into()),
                "IDPCommunicationError",
            ),
            (VerifyError::Signature, "InvalidIdentityToken"),
            (VerifyError::Audience("c".into()), "InvalidIdentityToken"),
            (
                VerifyError::Issuer {
                    got: "a".into(),
                    want: "b".into(),
                },
                "InvalidIdentityToken",
            ),
            (VerifyError::NotYetValid { nbf: 1 }, "InvalidIdentityToken"),
            (VerifyError::Claim("sub"), "InvalidIdentityToken"),
            (
                VerifyError::Malformed(crate::idp::openid::jwt::JwtError::Shape),
                "InvalidIdentityToken",
            ),
        ];
        for (e, code) in table {
            let s = refusal(&e);
            assert_eq!((s.code, s.status.as_u16()), (code, 400), "{e}");
        }
        assert_eq!(
            parameters("AssumeRoleWithClientGrants"),
            ("Token", "SubjectFromToken")
        );
        assert_eq!(
            parameters("AssumeRoleWithWebIdentity"),
            ("WebIdentityToken", "SubjectFromWebIdentityToken")
        );
    }
}
