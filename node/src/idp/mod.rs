//! External identity providers: an AD/LDAP directory and OpenID Connect providers. Each one
//! proves who someone is; the STS flows in `sts/` turn that proof into a session, and the
//! policies it gets come from the site state (LDAP DN mappings) or the provider's token (OIDC).
//!
//! Their outbound connections are handed in (`net::Dial` for HTTP, [`ldap::Directory`] for the
//! directory), so the simulator can stand in for them, and their secrets (client secret, bind
//! password) never reach a log line, an error or `Debug` output.

pub mod dn;
pub mod ldap;
pub mod openid;

use std::sync::Arc;

use crate::net::Dial;

/// A configuration variable that does not make sense; the server refuses to start with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {reason}")]
    Invalid { var: String, reason: String },
}

impl ConfigError {
    pub fn invalid(var: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            var: var.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Turns on STS `AssumeRoleWithCertificate` (MinIO's `MINIO_IDENTITY_TLS_ENABLE`).
pub const TLS_ENABLE_ENV: &str = "CAIRN_IDENTITY_TLS_ENABLE";

/// The external identity providers a node was configured with.
#[derive(Default, Clone)]
pub struct Providers {
    pub ldap: Option<Arc<ldap::Ldap>>,
    pub openid: Vec<Arc<openid::Provider>>,
    /// Client certificates issued by the certificates directory's `CAs/` identify their
    /// holders (the subject's common name names their policy).
    pub certificates: bool,
}

/// An on/off setting: `on`/`true`, `off`/`false` or unset (off).
pub(crate) fn flag(vars: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<bool, ConfigError> {
    match vars(var).as_deref().map(str::trim) {
        None | Some("") | Some("off") | Some("false") => Ok(false),
        Some("on") | Some("true") => Ok(true),
        Some(_) => Err(ConfigError::invalid(var, "expected on or off")),
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("ldap", &self.ldap.is_some())
            .field("openid", &self.openid.len())
            .field("certificates", &self.certificates)
            .finish()
    }
}

impl Providers {
    /// Reads `CAIRN_IDENTITY_LDAP_*` and `CAIRN_IDENTITY_OPENID_*` through `vars`.
    /// `ca_pem`: the certificates directory's `CAs/`, trusted for the providers' TLS.
    pub fn from_env(
        vars: &dyn Fn(&str) -> Option<String>,
        dial: Arc<dyn Dial>,
        ca_pem: &[u8],
    ) -> Result<Self, ConfigError> {
        let ldap = ldap::Config::from_env(vars)?
            .map(|c| {
                let interval = c.check_interval;
                ldap::Ldap::new(Arc::new(ldap::Ldap3::new(c, ca_pem)), interval)
            })
            .map(Arc::new);
        Ok(Self {
            ldap,
            openid: openid::from_env(vars, dial, ca_pem)?,
            certificates: flag(vars, TLS_ENABLE_ENV)?,
        })
    }

    /// True when some external provider owns the site's identities: the internal IDP then
    /// refuses new users (service accounts still work), as MinIO does.
    pub fn external(&self) -> bool {
        self.ldap.is_some() || !self.openid.is_empty()
    }
}
