//! STS `AssumeRoleWithLDAPIdentity` (MinIO's): a directory user's name and password buy a
//! session whose permissions are the policies mapped to the user's DN and its groups' DNs
//! (`cairn admin idp ldap policy attach`). No mapped policy: no session. The session carries the
//! DN and group DNs as they were at login; it ends at the latest when it expires, so a user
//! removed from the directory loses access within `DurationSeconds`.

use cairn_control_plane::iam::identity::{Asserted, Parent};

use super::{duration_secs, expiry_after, session_policy, Form, Login, StsError};
use crate::auth::session::{Claims, MAX_DURATION_SECS};
use crate::idp::ldap::LdapError;
use crate::node::Node;

pub(super) async fn validate(node: &Node, form: &Form, now_ns: i64) -> Result<Login, StsError> {
    let Some(ldap) = &node.idp.ldap else {
        return Err(StsError::bad(
            "InvalidParameterValue",
            "AssumeRoleWithLDAPIdentity: no LDAP directory is configured",
        ));
    };
    let (Some(username), Some(password)) = (form.get("LDAPUsername"), form.get("LDAPPassword"))
    else {
        return Err(StsError::bad(
            "MissingParameter",
            "LDAPUsername and LDAPPassword are required",
        ));
    };
    let duration = duration_secs(form, MAX_DURATION_SECS)?;
    let policy = session_policy(form)?;
    let login = ldap.login(username, password).await.map_err(|e| match e {
        LdapError::InvalidCredentials => {
            tracing::info!("LDAP login refused: wrong user name or password");
            StsError::denied(e.to_string())
        }
        LdapError::Directory(reason) => {
            tracing::warn!(%reason, "LDAP login failed: directory error");
            StsError::bad(
                "IDPCommunicationError",
                "the LDAP directory could not be reached",
            )
        }
    })?;
    let state = node.catalog.state();
    if state
        .iam
        .ldap
        .policies_of(&login.dn, &login.groups)
        .next()
        .is_none()
    {
        tracing::info!(dn = %login.dn, groups = login.groups.len(), "LDAP login refused: no policy is mapped to the user or its groups");
        return Err(StsError::denied(
            "no policy is mapped to this user or its groups",
        ));
    }
    Ok(Login {
        claims: Claims {
            parent: Parent::Ldap(login.dn),
            expires_ns: expiry_after(now_ns, duration),
            policy,
            asserted: Asserted {
                groups: login.groups,
                policies: Vec::new(),
                username: Some(username.to_owned()),
            },
        },
        user: username.to_owned(),
        extra: Vec::new(),
    })
}
