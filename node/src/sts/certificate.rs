//! STS `AssumeRoleWithCertificate` (MinIO's): the holder of a client certificate issued by one of
//! the certificates directory's `CAs/` gets a session over the same mutual-TLS connection. The
//! subject's common name names the session's policy, which must exist; the session ends by
//! `DurationSeconds` and never after the certificate does. Turned on by
//! `CAIRN_IDENTITY_TLS_ENABLE=on` (the S3 port then asks clients for a certificate; ones without
//! are served as before).

use std::sync::Arc;

use cairn_control_plane::iam::identity::{Asserted, Parent};
use s3s::{Body, S3Request};

use super::{duration_secs, expiry_after, session_policy, Form, Login, StsError};
use crate::auth::session::{Claims, MAX_DURATION_SECS};
use crate::auth::ClientCertificate;
use crate::node::Node;

pub(super) fn validate(
    node: &Node,
    req: &S3Request<Body>,
    form: &Form,
    now_ns: i64,
) -> Result<Login, StsError> {
    if !node.idp.certificates {
        return Err(StsError::bad(
            "InvalidParameterValue",
            "AssumeRoleWithCertificate: client certificates are not enabled (CAIRN_IDENTITY_TLS_ENABLE)",
        ));
    }
    let Some(cert) = req.extensions.get::<Arc<ClientCertificate>>() else {
        return Err(StsError::denied(
            "AssumeRoleWithCertificate needs a client certificate (mutual TLS)",
        ));
    };
    let left_secs = u64::try_from((cert.not_after_ns - now_ns) / 1_000_000_000).unwrap_or(0);
    if left_secs == 0 {
        return Err(StsError::denied("the client certificate has expired"));
    }
    let duration = match form.get("DurationSeconds") {
        // No longer than the certificate, however long the default is.
        None => duration_secs(form, MAX_DURATION_SECS)?.min(left_secs),
        Some(_) => duration_secs(form, MAX_DURATION_SECS.min(left_secs))?,
    };
    let state = node.catalog.state();
    let cn = &cert.common_name;
    if state.iam.policy_document(cn).is_none() {
        tracing::info!(%cn, "AssumeRoleWithCertificate refused: no policy has the certificate's name");
        return Err(StsError::denied(
            "no policy is named after the certificate's common name",
        ));
    }
    Ok(Login {
        claims: Claims {
            parent: Parent::Certificate(cn.clone()),
            expires_ns: expiry_after(now_ns, duration),
            policy: session_policy(form)?,
            asserted: Asserted {
                groups: Vec::new(),
                policies: vec![cn.clone()],
                ..Default::default()
            },
        },
        user: cn.clone(),
        extra: Vec::new(),
    })
}
