//! STS `AssumeRoleWithWebIdentity` and `AssumeRoleWithClientGrants`: an OpenID Connect
//! provider's token buys a session. Placeholder until the flow lands.

use super::{Form, Login, StsError};
use crate::node::Node;

pub(super) async fn validate(
    node: &Node,
    action: &str,
    _form: &Form,
    _now_ns: i64,
) -> Result<Login, StsError> {
    if node.idp.openid.is_empty() {
        return Err(StsError::bad(
            "InvalidParameterValue",
            format!("{action}: no OpenID Connect provider is configured"),
        ));
    }
    Err(StsError::new(
        http::StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        format!("{action} is not implemented yet"),
    ))
}
