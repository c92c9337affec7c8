//! OpenID Connect providers (`CAIRN_IDENTITY_OPENID_*`). Placeholder until the flow lands.

use std::sync::Arc;

use super::ConfigError;
use crate::net::Dial;

/// One configured OpenID Connect provider.
pub struct Provider {
    name: String,
}

impl Provider {
    /// The configuration's name: empty for the default provider, else its suffix (`APP2`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The providers configured through `vars`.
pub fn from_env(
    _vars: &dyn Fn(&str) -> Option<String>,
    _dial: Arc<dyn Dial>,
    _ca_pem: &[u8],
) -> Result<Vec<Arc<Provider>>, ConfigError> {
    Ok(Vec::new())
}
