//! AD/LDAP identities (`CAIRN_IDENTITY_LDAP_*`, MinIO's settings): a login binds with the lookup
//! account, finds the user's DN with the search filter, binds as that DN with the user's password,
//! then finds the user's groups. The session gets the DN and group DNs; its policies are the ones
//! mapped to them in the site state.
//!
//! The directory is reached through [`Directory`], handed in: production's is [`Ldap3`] (the
//! `ldap3` crate over TCP, TLS by rustls), the simulator may hand in its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zeroize::Zeroizing;

use cairn_control_plane::iam::identity::{IamCommand, Parent};
use cairn_control_plane::Command;

use super::{dn, ConfigError};
use crate::catalog::Catalog;

const PREFIX: &str = "CAIRN_IDENTITY_LDAP_";
/// Longest user name and password taken (both cross the trust boundary unauthenticated).
pub const MAX_USERNAME: usize = 256;
pub const MAX_PASSWORD: usize = 1024;
/// Most groups a session carries (its token holds them).
pub const MAX_GROUPS: usize = 256;
/// One login, all its round trips together.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The directory settings; `Debug` leaves out the bind password.
#[derive(Clone)]
pub struct Config {
    /// `HOST:PORT` (default port 636, or 389 with StartTLS or without TLS).
    pub server_addr: String,
    pub lookup_bind_dn: String,
    pub lookup_bind_password: Zeroizing<String>,
    pub user_dn_search_base_dn: String,
    /// `%s` is the user name (escaped).
    pub user_dn_search_filter: String,
    pub group_search_base_dn: Option<String>,
    /// `%s` the user name, `%d` the user's DN (both escaped).
    pub group_search_filter: Option<String>,
    pub tls_skip_verify: bool,
    /// Plain LDAP, no TLS at all.
    pub server_insecure: bool,
    pub server_starttls: bool,
    /// `CAIRN_IDENTITY_LDAP_CHECK_INTERVAL`: how often directory users' service accounts are
    /// checked (default 5 minutes).
    pub check_interval: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server_addr", &self.server_addr)
            .field("lookup_bind_dn", &self.lookup_bind_dn)
            .field("user_dn_search_base_dn", &self.user_dn_search_base_dn)
            .field("user_dn_search_filter", &self.user_dn_search_filter)
            .field("group_search_base_dn", &self.group_search_base_dn)
            .field("group_search_filter", &self.group_search_filter)
            .field("tls_skip_verify", &self.tls_skip_verify)
            .field("server_insecure", &self.server_insecure)
            .field("server_starttls", &self.server_starttls)
            .field("check_interval", &self.check_interval)
            .finish_non_exhaustive()
    }
}

fn flag(vars: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<bool, ConfigError> {
    super::flag(vars, &format!("{PREFIX}{name}"))
}

impl Config {
    /// The settings, or `None` when `CAIRN_IDENTITY_LDAP_SERVER_ADDR` is unset (no directory).
    pub fn from_env(vars: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = |name: &str| vars(&format!("{PREFIX}{name}")).filter(|v| !v.trim().is_empty());
        let Some(server_addr) = get("SERVER_ADDR") else {
            return Ok(None);
        };
        let required = |name: &str| {
            get(name).ok_or_else(|| {
                ConfigError::invalid(&format!("{PREFIX}{name}"), "required with SERVER_ADDR")
            })
        };
        let checked_dn = |name: &str, v: String| {
            dn::normalize(&v)
                .map(|_| v)
                .ok_or_else(|| ConfigError::invalid(&format!("{PREFIX}{name}"), "not a DN"))
        };
        let user_dn_search_filter = required("USER_DN_SEARCH_FILTER")?;
        if !user_dn_search_filter.contains("%s") {
            return Err(ConfigError::invalid(
                &format!("{PREFIX}USER_DN_SEARCH_FILTER"),
                "must contain %s (the user name)",
            ));
        }
        let group_search_filter = get("GROUP_SEARCH_FILTER");
        let group_search_base_dn = get("GROUP_SEARCH_BASE_DN")
            .map(|v| checked_dn("GROUP_SEARCH_BASE_DN", v))
            .transpose()?;
        if group_search_filter.is_some() != group_search_base_dn.is_some() {
            return Err(ConfigError::invalid(
                &format!("{PREFIX}GROUP_SEARCH_FILTER"),
                "GROUP_SEARCH_FILTER and GROUP_SEARCH_BASE_DN go together",
            ));
        }
        let config = Self {
            lookup_bind_dn: checked_dn("LOOKUP_BIND_DN", required("LOOKUP_BIND_DN")?)?,
            lookup_bind_password: Zeroizing::new(required("LOOKUP_BIND_PASSWORD")?),
            user_dn_search_base_dn: checked_dn(
                "USER_DN_SEARCH_BASE_DN",
                required("USER_DN_SEARCH_BASE_DN")?,
            )?,
            user_dn_search_filter,
            group_search_base_dn,
            group_search_filter,
            tls_skip_verify: flag(vars, "TLS_SKIP_VERIFY")?,
            server_insecure: flag(vars, "SERVER_INSECURE")?,
            server_starttls: flag(vars, "SERVER_STARTTLS")?,
            check_interval: match get("CHECK_INTERVAL") {
                None => DEFAULT_CHECK_INTERVAL,
                Some(v) => crate::units::parse_duration(&v)
                    .map_err(|e| ConfigError::invalid(&format!("{PREFIX}CHECK_INTERVAL"), e))?,
            },
            server_addr,
        };
        if config.server_insecure && config.server_starttls {
            return Err(ConfigError::invalid(
                &format!("{PREFIX}SERVER_STARTTLS"),
                "SERVER_INSECURE and SERVER_STARTTLS exclude each other",
            ));
        }
        config.url()?;
        Ok(Some(config))
    }

    /// The URL `ldap3` dials.
    fn url(&self) -> Result<String, ConfigError> {
        let addr = self.server_addr.trim();
        let has_port = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok());
        if addr.is_empty() || addr.contains('/') || addr.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                &format!("{PREFIX}SERVER_ADDR"),
                "expected HOST:PORT",
            ));
        }
        let plain = self.server_insecure || self.server_starttls;
        let scheme = if plain { "ldap" } else { "ldaps" };
        let port = match (has_port, plain) {
            (true, _) => String::new(),
            (false, true) => ":389".into(),
            (false, false) => ":636".into(),
        };
        Ok(format!("{scheme}://{addr}{port}"))
    }
}

/// What a successful login established: the user's DN and its groups' DNs, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub dn: String,
    pub groups: Vec<String>,
}

/// Why a login or a lookup failed. The messages name no password and no bind DN's secret.
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// Wrong password, unknown or ambiguous user: one error for all, so a caller learns
    /// nothing about which names exist.
    #[error("the user name or password is wrong")]
    InvalidCredentials,
    #[error("the directory is unreachable or failed: {0}")]
    Directory(String),
}

/// A directory that checks passwords and finds users and groups.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Binds as `username` with `password` and finds its groups.
    async fn login(&self, username: &str, password: &str) -> Result<Login, LdapError>;
    /// Whether the user `dn` (normalized) is still one: with the `username` it logged in with,
    /// the user search must still find exactly that entry (a filter that leaves disabled
    /// accounts out then stops them); without, the entry must exist. The periodic check of an
    /// LDAP user's service accounts.
    async fn user_valid(&self, dn: &str, username: Option<&str>) -> Result<bool, LdapError>;
}

/// How often the leader checks that LDAP users with service accounts still exist (MinIO
/// checks every few minutes).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Logins under way at once: the calls are unauthenticated, so a flood must not open a
/// directory connection per request (the rest wait, within [`LOGIN_TIMEOUT`]).
const MAX_CONCURRENT_LOGINS: usize = 32;

/// The configured directory.
pub struct Ldap {
    directory: Arc<dyn Directory>,
    pub check_interval: Duration,
    logins: tokio::sync::Semaphore,
}

impl Ldap {
    pub fn new(directory: Arc<dyn Directory>, check_interval: Duration) -> Self {
        Self {
            directory,
            check_interval,
            logins: tokio::sync::Semaphore::new(MAX_CONCURRENT_LOGINS),
        }
    }

    /// A login, with the checks every directory gets: bounded input, no empty password (an
    /// LDAP simple bind with a DN and no password is an *unauthenticated* bind, which servers
    /// answer with success), bounded time.
    pub async fn login(&self, username: &str, password: &str) -> Result<Login, LdapError> {
        if username.is_empty()
            || username.len() > MAX_USERNAME
            || password.is_empty()
            || password.len() > MAX_PASSWORD
            || username.chars().any(char::is_control)
        {
            return Err(LdapError::InvalidCredentials);
        }
        let attempt = async {
            let _slot = self.logins.acquire().await;
            self.directory.login(username, password).await
        };
        let mut login = tokio::time::timeout(LOGIN_TIMEOUT, attempt)
            .await
            .map_err(|_| LdapError::Directory("timed out".into()))??;
        login.groups.sort();
        login.groups.dedup();
        login.groups.truncate(MAX_GROUPS);
        Ok(login)
    }

    pub async fn user_valid(&self, dn: &str, username: Option<&str>) -> Result<bool, LdapError> {
        tokio::time::timeout(LOGIN_TIMEOUT, self.directory.user_valid(dn, username))
            .await
            .map_err(|_| LdapError::Directory("timed out".into()))?
    }

    /// One pass of the check of directory users' service accounts: the enabled accounts of a
    /// user who is gone or disabled (see [`Directory::user_valid`]) are disabled through the
    /// control plane (so every node and peer site stops them). A directory error changes
    /// nothing: an outage must not lock out every account. Returns how many it disabled.
    pub async fn check_accounts(&self, catalog: &Catalog) -> Result<usize, CheckError> {
        let state = catalog.state();
        let mut by_user: BTreeMap<(&str, Option<&str>), Vec<&str>> = BTreeMap::new();
        for (key, account) in &state.iam.service_accounts {
            if let (Parent::Ldap(dn), true) = (&account.parent, account.enabled) {
                let username = account.asserted.username.as_deref();
                by_user.entry((dn, username)).or_default().push(key);
            }
        }
        let mut disabled = 0;
        for ((dn, username), keys) in by_user {
            if self.user_valid(dn, username).await? {
                continue;
            }
            for key in keys {
                tracing::info!(%dn, access_key = %key, "LDAP user is gone from the directory or disabled: disabling its service account");
                catalog
                    .propose(Command::Iam(IamCommand::UpdateServiceAccount {
                        access_key: key.to_owned(),
                        secret: None,
                        policy: None,
                        remove_policy: false,
                        expires_ns: None,
                        enabled: Some(false),
                    }))
                    .await?;
                disabled += 1;
            }
        }
        Ok(disabled)
    }
}

/// Why a check of service accounts stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Directory(#[from] LdapError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// The production directory: `ldap3` over TCP.
pub struct Ldap3 {
    config: Config,
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn failed(e: impl std::fmt::Display) -> LdapError {
    LdapError::Directory(e.to_string())
}

impl Ldap3 {
    /// `ca_pem` (the certificates directory's `CAs/`) is trusted for the directory's TLS.
    pub fn new(config: Config, ca_pem: &[u8]) -> Self {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem).flatten() {
            let _ = roots.add(cert);
        }
        let tls = (!config.server_insecure).then(|| {
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        });
        Self {
            url: config.url().unwrap_or_default(),
            config,
            tls,
        }
    }

    /// A connection bound as the lookup account.
    async fn lookup_connection(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut settings = ldap3::LdapConnSettings::new()
            .set_conn_timeout(LOGIN_TIMEOUT)
            .set_starttls(self.config.server_starttls)
            .set_no_tls_verify(self.config.tls_skip_verify);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(failed)?;
        ldap3::drive!(conn);
        self.bind_lookup(&mut ldap).await?;
        Ok(ldap)
    }

    async fn bind_lookup(&self, ldap: &mut ldap3::Ldap) -> Result<(), LdapError> {
        ldap.simple_bind(
            &self.config.lookup_bind_dn,
            &self.config.lookup_bind_password,
        )
        .await
        .and_then(|r| r.success())
        .map(drop)
        .map_err(|e| LdapError::Directory(format!("lookup bind: {e}")))
    }

    /// DNs of the entries the user search finds for `username` (at most 2: one is a match).
    async fn find_user(
        &self,
        ldap: &mut ldap3::Ldap,
        username: &str,
    ) -> Result<Vec<String>, LdapError> {
        let filter = self
            .config
            .user_dn_search_filter
            .replace("%s", &ldap3::ldap_escape(username));
        Self::search(ldap, &self.config.user_dn_search_base_dn, &filter, 2).await
    }

    /// DNs of the entries `filter` finds under `base`.
    async fn search(
        ldap: &mut ldap3::Ldap,
        base: &str,
        filter: &str,
        limit: usize,
    ) -> Result<Vec<String>, LdapError> {
        let (entries, _) = ldap
            .search(base, ldap3::Scope::Subtree, filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(failed)?;
        Ok(entries
            .into_iter()
            .take(limit)
            .map(|e| ldap3::SearchEntry::construct(e).dn)
            .collect())
    }
}

#[async_trait]
impl Directory for Ldap3 {
    async fn login(&self, username: &str, password: &str) -> Result<Login, LdapError> {
        let mut ldap = self.lookup_connection().await?;
        let found = self.find_user(&mut ldap, username).await?;
        let [user_dn] = found.as_slice() else {
            tracing::info!(
                found = found.len(),
                "LDAP login: the user search did not find exactly one entry"
            );
            let _ = ldap.unbind().await;
            return Err(LdapError::InvalidCredentials);
        };
        let bound = ldap.simple_bind(user_dn, password).await.map_err(failed)?;
        if bound.rc != 0 {
            let _ = ldap.unbind().await;
            return Err(LdapError::InvalidCredentials);
        }
        let mut groups = Vec::new();
        if let (Some(base), Some(filter)) = (
            &self.config.group_search_base_dn,
            &self.config.group_search_filter,
        ) {
            // Groups are searched as the lookup account, which may read them (the user may not).
            self.bind_lookup(&mut ldap).await?;
            let filter = filter
                .replace("%s", &ldap3::ldap_escape(username))
                .replace("%d", &ldap3::ldap_escape(user_dn.as_str()));
            groups = Self::search(&mut ldap, base, &filter, MAX_GROUPS).await?;
        }
        let _ = ldap.unbind().await;
        Ok(Login {
            dn: dn::normalize(user_dn)
                .ok_or_else(|| failed("the directory returned a malformed DN"))?,
            groups: groups.iter().filter_map(|g| dn::normalize(g)).collect(),
        })
    }

    async fn user_valid(&self, user_dn: &str, username: Option<&str>) -> Result<bool, LdapError> {
        let mut ldap = self.lookup_connection().await?;
        if let Some(username) = username {
            let found = self.find_user(&mut ldap, username).await?;
            let _ = ldap.unbind().await;
            return Ok(match found.as_slice() {
                [one] => dn::normalize(one).as_deref() == Some(user_dn),
                _ => false,
            });
        }
        let found = ldap
            .search(user_dn, ldap3::Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .map_err(failed)?;
        let _ = ldap.unbind().await;
        // 32: noSuchObject.
        match found.1.rc {
            0 => Ok(!found.0.is_empty()),
            32 => Ok(false),
            rc => Err(failed(format!(
                "search for the user entry failed with code {rc}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the logins that reach it; answers with fixed groups.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Directory for Counting {
        async fn login(&self, _u: &str, _p: &str) -> Result<Login, LdapError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Login {
                dn: "uid=a,dc=x".into(),
                groups: vec!["cn=b,dc=x".into(), "cn=a,dc=x".into(), "cn=b,dc=x".into()],
            })
        }
        async fn user_valid(&self, _dn: &str, _u: Option<&str>) -> Result<bool, LdapError> {
            Ok(true)
        }
    }

    #[tokio::test]
    async fn hostile_logins_never_reach_the_directory() {
        let dir = Arc::new(Counting::default());
        let ldap = Ldap::new(dir.clone(), DEFAULT_CHECK_INTERVAL);
        let long = "u".repeat(MAX_USERNAME + 1);
        let huge = "p".repeat(MAX_PASSWORD + 1);
        for (u, p) in [
            ("alice", ""),
            ("", "pw"),
            (long.as_str(), "pw"),
            ("alice", huge.as_str()),
            ("al\0ice", "pw"),
            ("al\nice", "pw"),
        ] {
            assert!(matches!(
                ldap.login(u, p).await,
                Err(LdapError::InvalidCredentials)
            ));
        }
        assert_eq!(dir.0.load(Ordering::SeqCst), 0);
        let login = ldap.login("alice", "pw").await.unwrap();
        assert_eq!(login.groups, ["cn=a,dc=x", "cn=b,dc=x"]);
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Option<Config>, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("SERVER_ADDR", "ldap.example.org"),
            ("LOOKUP_BIND_DN", "cn=admin,dc=example,dc=org"),
            ("LOOKUP_BIND_PASSWORD", "bind-secret"),
            ("USER_DN_SEARCH_BASE_DN", "ou=people,dc=example,dc=org"),
            ("USER_DN_SEARCH_FILTER", "(uid=%s)"),
        ]
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect();
        for (k, v) in pairs {
            vars.insert(format!("{PREFIX}{k}"), v.to_string());
        }
        Config::from_env(&|k| vars.get(k).cloned())
    }

    #[test]
    fn settings_are_checked_and_the_password_is_never_shown() {
        assert!(Config::from_env(&|_| None).unwrap().is_none());
        let c = config(&[]).unwrap().unwrap();
        assert_eq!(c.url().unwrap(), "ldaps://ldap.example.org:636");
        assert!(!format!("{c:?}").contains("bind-secret"));
        let c = config(&[("SERVER_STARTTLS", "on")]).unwrap().unwrap();
        assert_eq!(c.url().unwrap(), "ldap://ldap.example.org:389");
        let c = config(&[("SERVER_INSECURE", "on"), ("SERVER_ADDR", "10.0.0.1:3389")])
            .unwrap()
            .unwrap();
        assert_eq!(c.url().unwrap(), "ldap://10.0.0.1:3389");
        let c = config(&[("CHECK_INTERVAL", "2s")]).unwrap().unwrap();
        assert_eq!(c.check_interval, Duration::from_secs(2));
        for (var, value) in [
            ("USER_DN_SEARCH_FILTER", "(uid=alice)"),
            ("LOOKUP_BIND_DN", "admin"),
            ("SERVER_STARTTLS", "yes please"),
            ("SERVER_ADDR", "ldap://host:389"),
            ("GROUP_SEARCH_FILTER", "(member=%d)"),
            ("CHECK_INTERVAL", "soon"),
            ("LOOKUP_BIND_PASSWORD", ""),
        ] {
            let e = config(&[(var, value)]).unwrap_err().to_string();
            assert!(e.starts_with(PREFIX), "{var}: {e}");
            assert!(!e.contains("bind-secret"), "{e}");
        }
        let e = config(&[("SERVER_INSECURE", "on"), ("SERVER_STARTTLS", "on")]).unwrap_err();
        assert!(e.to_string().contains("exclude"), "{e}");
    }
}
