//! OpenID Connect providers (`CAIRN_IDENTITY_OPENID_*`, MinIO's settings with Cairn's prefix).
//!
//! A provider is known by its discovery document (`CONFIG_URL`): it names the issuer every token
//! must carry and where the signing keys are published (`jwks_uri`). Both are fetched in the
//! background at start and again on use until they arrive, so a provider that is down does not
//! keep the server from starting: STS calls fail with `IDPCommunicationError` meanwhile. Only
//! these two public documents are ever fetched, never a URL a token names (`jku`, `x5u`), and
//! redirects are not followed.
//!
//! Keys rotate: a token signed by a key the cached set does not hold (an unknown `kid`, or no
//! cached key verifying a token without `kid`) makes the provider's key set fetched again, at
//! most once per [`MIN_REFRESH_INTERVAL`], so forged tokens cannot make Cairn hammer the
//! provider, and a rotated key works without a restart. Keys are also re-read when older than
//! [`KEYS_MAX_AGE`], so a key the provider withdrew stops working.
//!
//! Policies come from exactly one of two places per provider, as MinIO requires: the token's
//! policy claim (`CLAIM_NAME`, `policy` by default, behind the optional `CLAIM_PREFIX`), or the
//! provider's `ROLE_POLICY`, which every token of that provider gets and which callers select
//! with the provider's role ARN. At most one provider may be claim-based: a token does not say
//! which provider to check it with, and only one can be the default.

pub mod jwt;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;
use zeroize::Zeroizing;

use self::jwt::{Jwt, JwtError, KeySet};
use super::ConfigError;
use crate::link::Link;
use crate::net::Dial;

const PREFIX: &str = "CAIRN_IDENTITY_OPENID_";
/// The settings a provider takes, MinIO's names. `DISPLAY_NAME`, `REDIRECT_URI_DYNAMIC`,
/// `SCOPES` and `REDIRECT_URI` belong to MinIO's console login flow, which Cairn does not have:
/// they are taken (so settings move over unchanged) and kept, not used.
const KEYS: [&str; 12] = [
    "CONFIG_URL",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLAIM_NAME",
    "CLAIM_PREFIX",
    "CLAIM_USERINFO",
    "ROLE_POLICY",
    "SCOPES",
    "REDIRECT_URI",
    "REDIRECT_URI_DYNAMIC",
    "DISPLAY_NAME",
    "ENABLE",
];
/// The policy claim when `CLAIM_NAME` is not set.
pub const DEFAULT_CLAIM: &str = "policy";
/// Role ARNs of role-policy providers: `arn:cairn:iam:::role/<configuration name>`.
pub const ROLE_ARN_PREFIX: &str = "arn:cairn:iam:::role/";
/// The role name of the provider configured without a suffix.
pub const DEFAULT_NAME: &str = "default";

/// Largest discovery document or key set read.
pub const MAX_DOCUMENT: usize = 1024 * 1024;
/// One fetch, connecting included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two fetches of the key set caused by tokens no cached key verifies (and
/// between two attempts while the provider is unreachable).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again before use.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// How far a token's `nbf` may lie in the future: the provider's clock and the site's differ a
/// little. `exp` gets no such slack: a session must not start on an expired token.
pub const NOT_BEFORE_LEEWAY_SECS: i64 = 60;
/// Longest `sub` taken (it is sealed into the session token and shown in responses).
pub const MAX_SUBJECT: usize = 1024;
/// Most policy names taken from one token.
pub const MAX_POLICIES: usize = 128;

/// Fetches a provider's documents; production's goes through [`Link`] over the handed-in
/// [`Dial`], tests and the simulator may hand in their own.
#[async_trait]
pub trait Fetch: Send + Sync + 'static {
    /// The body of a successful `GET url`, at most `max` bytes.
    async fn get(&self, url: &str, max: usize) -> Result<Bytes, String>;
}

#[async_trait]
impl Fetch for Link {
    async fn get(&self, url: &str, max: usize) -> Result<Bytes, String> {
        Link::get(self, url, max).await.map_err(|e| e.to_string())
    }
}

/// What a provider's discovery document says that Cairn uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
}

impl Discovery {
    fn parse(doc: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(doc)
            .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
        let text = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("the discovery document has no {name}"))
        };
        let jwks_uri = text("jwks_uri")?;
        if !(jwks_uri.starts_with("https://") || jwks_uri.starts_with("http://")) {
            return Err(format!("jwks_uri {jwks_uri:?} is not an http(s) URL"));
        }
        Ok(Self {
            issuer: text("issuer")?,
            jwks_uri,
        })
    }
}

/// Why a token buys no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Malformed(#[from] JwtError),
    #[error("the token is not signed by a key the provider publishes")]
    Signature,
    #[error("the token's issuer {got:?} is not the provider's ({want:?})")]
    Issuer { got: String, want: String },
    #[error("the token is not for client {0:?} (neither its aud nor its azp names it)")]
    Audience(String),
    #[error("the token expired at {exp} (Unix seconds)")]
    Expired { exp: i64 },
    #[error("the token is not valid before {nbf} (Unix seconds)")]
    NotYetValid { nbf: i64 },
    #[error("the token's {0} claim is missing or malformed")]
    Claim(&'static str),
    #[error("the identity provider could not be asked: {0}")]
    Unreachable(String),
}

/// A verified token: who it names, for whom, until when, and all its claims.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub issuer: String,
    /// The client the token is for (this provider's client id).
    pub audience: String,
    /// The token's `exp`, in nanoseconds since the epoch.
    pub expires_ns: i64,
    pub claims: Map<String, Value>,
}

/// A role-policy provider's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub arn: String,
    pub policies: Vec<String>,
}

/// The key set in use and the discovery document it came with.
struct Keys {
    discovery: Arc<Discovery>,
    set: KeySet,
    /// Bumped on every successful fetch, so callers that waited for a refresh see it happened.
    generation: u64,
    fetched: Instant,
}

#[derive(Default)]
struct Attempts {
    /// Any fetch of the key set.
    last: Option<Instant>,
    /// The last one caused by a token no cached key verified.
    last_miss: Option<Instant>,
}

/// One configured OpenID Connect provider. `Debug` leaves the client secret out.
pub struct Provider {
    name: String,
    config_url: String,
    client_id: String,
    /// For the console's authorization-code flow (not served); kept only so the setting is
    /// taken. Never shown.
    client_secret: Option<Zeroizing<String>>,
    /// `CLAIM_PREFIX` + `CLAIM_NAME`.
    claim: String,
    role: Option<Role>,
    scopes: Vec<String>,
    redirect_uri: Option<String>,
    fetch: Arc<dyn Fetch>,
    discovery: RwLock<Option<Arc<Discovery>>>,
    keys: RwLock<Option<Arc<Keys>>>,
    attempts: tokio::sync::Mutex<Attempts>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("config_url", &self.config_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<set>"),
            )
            .field("claim", &self.claim)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// The settings of one provider as read from the environment.
#[derive(Default)]
struct Settings(BTreeMap<&'static str, String>);

impl Settings {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// The variable name of `key` for the provider `name`.
fn var(key: &str, name: &str) -> String {
    if name.is_empty() {
        format!("{PREFIX}{key}")
    } else {
        format!("{PREFIX}{key}_{name}")
    }
}

/// Splits a variable name into its setting and provider name (`CLIENT_ID_APP2` is `CLIENT_ID`
/// of `APP2`); `None` for a name that is no setting. The longest setting wins, so
/// `REDIRECT_URI_DYNAMIC` is a setting of the default provider.
fn split_var(name: &str) -> Option<(&'static str, &str)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut keys = KEYS;
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    keys.into_iter().find_map(|k| {
        if rest == k {
            Some((k, ""))
        } else {
            rest.strip_prefix(k)
                .and_then(|s| s.strip_prefix('_'))
                .filter(|s| !s.is_empty())
                .map(|s| (k, s))
        }
    })
}

/// A comma-separated list; empty items refused (MinIO's rule for `SCOPES`).
fn list(var: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            var,
            "empty item in the comma-separated list",
        ));
    }
    Ok(items)
}

fn on_off(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(ConfigError::invalid(var, "expected on or off")),
    }
}

/// The providers configured in the environment: variables are found by name in the process
/// environment (a lookup cannot list the `_SUFFIX` providers), their values read through `vars`.
pub fn from_env(
    vars: &dyn Fn(&str) -> Option<String>,
    dial: Arc<dyn Dial>,
    ca_pem: &[u8],
) -> Result<Vec<Arc<Provider>>, ConfigError> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with(PREFIX))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // Public providers (Google, Okta...) are trusted through the system's authorities, private
    // ones through the certificates directory's `CAs/`.
    let mut roots = ca_pem.to_vec();
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(pem) = std::fs::read(bundle) {
            roots.push(b'\n');
            roots.extend_from_slice(&pem);
            break;
        }
    }
    // The clock times a link's peer contacts, which fetches from a provider do not record.
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    let fetch: Arc<dyn Fetch> = Arc::new(Link::new(dial, &roots, clock));
    let providers = from_vars(&names, vars, fetch)?;
    for p in &providers {
        // The role ARN is what callers of a role-policy provider must send: the log is where an
        // operator finds it.
        tracing::info!(
            provider = p.display_name(),
            config_url = %p.config_url,
            client_id = %p.client_id,
            role_arn = p.role.as_ref().map(|r| r.arn.as_str()),
            claim = (p.role.is_none()).then_some(p.claim.as_str()),
            "OpenID Connect provider configured"
        );
    }
    // Fetch the keys now, so a wrong URL shows in the start-up log and the first login does not
    // wait for them; failing is no reason not to start (the first use tries again).
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        for p in &providers {
            let p = p.clone();
            runtime.spawn(async move {
                let _ = p.keys().await;
            });
        }
    }
    Ok(providers)
}

/// [`from_env`] with the variable names given and the fetcher handed in.
pub fn from_vars(
    names: &[String],
    vars: &dyn Fn(&str) -> Option<String>,
    fetch: Arc<dyn Fetch>,
) -> Result<Vec<Arc<Provider>>, ConfigError> {
    let mut configs: BTreeMap<String, Settings> = BTreeMap::new();
    for name in names {
        let Some(value) = vars(name) else { continue };
        let Some((key, provider)) = split_var(name) else {
            return Err(ConfigError::invalid(
                name,
                format!(
                    "not a setting of OpenID Connect providers (known: {})",
                    KEYS.join(", ")
                ),
            ));
        };
        if value.trim().is_empty() {
            continue;
        }
        configs
            .entry(provider.to_owned())
            .or_default()
            .0
            .insert(key, value);
    }
    let mut providers: Vec<Arc<Provider>> = Vec::new();
    for (name, settings) in configs {
        if let Some(v) = settings.get("ENABLE") {
            if !on_off(&var("ENABLE", &name), v)? {
                continue;
            }
        }
        if name.eq_ignore_ascii_case(DEFAULT_NAME) {
            return Err(ConfigError::invalid(
                &var("CONFIG_URL", &name),
                format!(
                    "{DEFAULT_NAME:?} names the provider without a suffix; choose another name"
                ),
            ));
        }
        let p = Provider::configure(&name, &settings, fetch.clone())?;
        if let Some(other) = providers.iter().find(|o| o.client_id == p.client_id) {
            return Err(ConfigError::invalid(
                &var("CLIENT_ID", &name),
                format!(
                    "client id {:?} is also the one of the provider {:?}",
                    p.client_id,
                    other.display_name()
                ),
            ));
        }
        if p.role.is_none() {
            if let Some(other) = providers.iter().find(|o| o.role.is_none()) {
                return Err(ConfigError::invalid(
                    &var("ROLE_POLICY", &name),
                    format!(
                        "only one provider may take policies from its tokens' claim, and {:?} \
                         does: give this one a role policy",
                        other.display_name()
                    ),
                ));
            }
        }
        providers.push(Arc::new(p));
    }
    Ok(providers)
}

impl Provider {
    fn configure(name: &str, s: &Settings, fetch: Arc<dyn Fetch>) -> Result<Self, ConfigError> {
        let config_url = s.get("CONFIG_URL").ok_or_else(|| {
            ConfigError::invalid(
                &var("CONFIG_URL", name),
                "required by the provider's other settings",
            )
        })?;
        let uri: hyper::Uri = config_url
            .parse()
            .map_err(|_| ConfigError::invalid(&var("CONFIG_URL", name), "not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ConfigError::invalid(
                &var("CONFIG_URL", name),
                "must be an http:// or https:// URL of the discovery document",
            ));
        }
        // Without the client id the audience cannot be checked, and any token the provider
        // issued for any application would buy a session here.
        let client_id = s.get("CLIENT_ID").ok_or_else(|| {
            ConfigError::invalid(
                &var("CLIENT_ID", name),
                "required: tokens must be for this client",
            )
        })?;
        if let Some(v) = s.get("CLAIM_USERINFO") {
            if on_off(&var("CLAIM_USERINFO", name), v)? {
                return Err(ConfigError::invalid(
                    &var("CLAIM_USERINFO", name),
                    "claims from the userinfo endpoint are not supported",
                ));
            }
        }
        let role = match s.get("ROLE_POLICY") {
            None => None,
            Some(policies) => {
                for other in ["CLAIM_NAME", "CLAIM_PREFIX"] {
                    if s.get(other).is_some() {
                        return Err(ConfigError::invalid(
                            &var(other, name),
                            "a provider maps policies from a claim or has a role policy, not both",
                        ));
                    }
                }
                let role = if name.is_empty() { DEFAULT_NAME } else { name };
                Some(Role {
                    arn: format!("{ROLE_ARN_PREFIX}{role}"),
                    policies: list(&var("ROLE_POLICY", name), policies)?,
                })
            }
        };
        let claim = format!(
            "{}{}",
            s.get("CLAIM_PREFIX").unwrap_or_default(),
            s.get("CLAIM_NAME").unwrap_or(DEFAULT_CLAIM)
        );
        let scopes = match s.get("SCOPES") {
            Some(v) => list(&var("SCOPES", name), v)?,
            None => Vec::new(),
        };
        if let Some(v) = s.get("REDIRECT_URI_DYNAMIC") {
            on_off(&var("REDIRECT_URI_DYNAMIC", name), v)?;
        }
        Ok(Self {
            name: name.to_owned(),
            config_url: config_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: s.get("CLIENT_SECRET").map(|v| Zeroizing::new(v.to_owned())),
            claim,
            role,
            scopes,
            redirect_uri: s.get("REDIRECT_URI").map(str::to_owned),
            fetch,
            discovery: RwLock::new(None),
            keys: RwLock::new(None),
            attempts: tokio::sync::Mutex::new(Attempts::default()),
        })
    }

    /// The configuration's name: empty for the default provider, else its suffix (`APP2`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name in messages: the suffix, or `default`.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            DEFAULT_NAME
        } else {
            &self.name
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The role of a role-policy provider; `None` for the claim-based one.
    pub fn role(&self) -> Option<&Role> {
        self.role.as_ref()
    }

    /// The claim policies are read from (`CLAIM_PREFIX` + `CLAIM_NAME`).
    pub fn claim(&self) -> &str {
        &self.claim
    }

    /// The policy names a verified token grants: the role's, or its policy claim's.
    pub fn policies(&self, claims: &Map<String, Value>) -> Vec<String> {
        match &self.role {
            Some(role) => role.policies.clone(),
            None => claim_policies(claims.get(&self.claim)),
        }
    }

    fn current(&self) -> Option<Arc<Keys>> {
        self.keys.read().ok().and_then(|k| k.clone())
    }

    async fn fetch_discovery(&self) -> Result<Arc<Discovery>, VerifyError> {
        let cached = self.discovery.read().ok().and_then(|d| d.clone());
        if let Some(d) = cached {
            return Ok(d);
        }
        let doc = self.get(&self.config_url).await?;
        let d = Arc::new(Discovery::parse(&doc).map_err(VerifyError::Unreachable)?);
        if let Ok(mut slot) = self.discovery.write() {
            *slot = Some(d.clone());
        }
        Ok(d)
    }

    async fn get(&self, url: &str) -> Result<Bytes, VerifyError> {
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch.get(url, MAX_DOCUMENT)).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(VerifyError::Unreachable(e)),
            Err(_) => Err(VerifyError::Unreachable(format!(
                "{url}: no answer within {FETCH_TIMEOUT:?}"
            ))),
        }
    }

    /// Fetches the key set again, unless another caller did since the caller saw generation
    /// `seen`, or the last attempt of this kind is too recent: then the keys as they are.
    /// `miss`: the caller holds a token no cached key verifies.
    async fn refresh(&self, seen: Option<u64>, miss: bool) -> Result<Arc<Keys>, VerifyError> {
        let mut attempts = self.attempts.lock().await;
        let current = self.current();
        if current.as_ref().map(|k| k.generation) != seen {
            if let Some(k) = current {
                return Ok(k);
            }
        }
        let now = Instant::now();
        let limiter = if miss {
            attempts.last_miss
        } else {
            attempts.last
        };
        if limiter.is_some_and(|t| now.duration_since(t) < MIN_REFRESH_INTERVAL) {
            return current.ok_or_else(|| {
                VerifyError::Unreachable(format!(
                    "it did not answer a moment ago; asked again at most every {MIN_REFRESH_INTERVAL:?}"
                ))
            });
        }
        attempts.last = Some(now);
        if miss {
            attempts.last_miss = Some(now);
        }
        let started = std::time::Instant::now();
        let fetched = async {
            let discovery = self.fetch_discovery().await?;
            let doc = self.get(&discovery.jwks_uri).await?;
            let set = KeySet::parse(&doc)
                .map_err(|e| VerifyError::Unreachable(format!("{}: {e}", discovery.jwks_uri)))?;
            Ok::<_, VerifyError>((discovery, set))
        }
        .await;
        match fetched {
            Ok((discovery, set)) => {
                tracing::info!(
                    provider = self.display_name(),
                    keys = set.keys.len(),
                    skipped = set.skipped,
                    miss,
                    elapsed_ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0,
                    "OpenID Connect keys fetched"
                );
                let keys = Arc::new(Keys {
                    discovery,
                    set,
                    generation: seen.map_or(1, |g| g + 1),
                    fetched: now,
                });
                if let Ok(mut slot) = self.keys.write() {
                    *slot = Some(keys.clone());
                }
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(provider = self.display_name(), error = %e, "OpenID Connect keys not fetched");
                // Keys that worked keep working while the provider is away.
                current.ok_or(e)
            }
        }
    }

    /// The keys to check a token with: fetched on first use and when old.
    async fn keys(&self) -> Result<Arc<Keys>, VerifyError> {
        match self.current() {
            Some(k) if k.fetched.elapsed() < KEYS_MAX_AGE => Ok(k),
            current => self.refresh(current.map(|k| k.generation), false).await,
        }
    }

    /// Verifies `token` (signature, issuer, audience, expiry) at `now_ns` on the site's clock.
    pub async fn verify(&self, token: &str, now_ns: i64) -> Result<Identity, VerifyError> {
        let jwt = jwt::parse(token)?;
        let verifies = |keys: &Keys| keys.set.verifies(&jwt);
        let mut keys = self.keys().await?;
        if !verifies(&keys) {
            // A token naming a key that is cached was signed by it or is forged: no refresh.
            let known = jwt.kid.is_some() && keys.set.keys.iter().any(|k| k.kid == jwt.kid);
            if known {
                return Err(VerifyError::Signature);
            }
            let fresh = self.refresh(Some(keys.generation), true).await?;
            if fresh.generation == keys.generation || !verifies(&fresh) {
                return Err(VerifyError::Signature);
            }
            keys = fresh;
        }
        self.check_claims(&jwt, &keys.discovery.issuer, now_ns)
    }

    /// The checks of a token whose signature holds.
    fn check_claims(&self, jwt: &Jwt, issuer: &str, now_ns: i64) -> Result<Identity, VerifyError> {
        let c = &jwt.claims;
        let iss = c
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(VerifyError::Claim("iss"))?;
        if iss != issuer {
            return Err(VerifyError::Issuer {
                got: iss.to_owned(),
                want: issuer.to_owned(),
            });
        }
        let for_us = match c.get("aud") {
            Some(Value::String(a)) => a == &self.client_id,
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(self.client_id.as_str())),
            _ => false,
        } || c.get("azp").and_then(Value::as_str) == Some(self.client_id.as_str());
        if !for_us {
            return Err(VerifyError::Audience(self.client_id.clone()));
        }
        let now = now_ns.div_euclid(1_000_000_000);
        let exp = seconds(c.get("exp")).ok_or(VerifyError::Claim("exp"))?;
        if now >= exp {
            return Err(VerifyError::Expired { exp });
        }
        if let Some(nbf) = c.get("nbf") {
            let nbf = seconds(Some(nbf)).ok_or(VerifyError::Claim("nbf"))?;
            if nbf > now.saturating_add(NOT_BEFORE_LEEWAY_SECS) {
                return Err(VerifyError::NotYetValid { nbf });
            }
        }
        let subject = c
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT)
            .ok_or(VerifyError::Claim("sub"))?;
        Ok(Identity {
            subject: subject.to_owned(),
            issuer: iss.to_owned(),
            audience: self.client_id.clone(),
            expires_ns: exp.saturating_mul(1_000_000_000),
            claims: c.clone(),
        })
    }
}

/// A NumericDate claim (seconds since the epoch; fractions are allowed and dropped).
fn seconds(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// The policy names in a claim, as MinIO reads them: a string of comma-separated names, or a
/// list of such strings; anything else grants nothing. Duplicates dropped, order kept.
pub fn claim_policies(claim: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if out.len() < MAX_POLICIES && !out.iter().any(|o| o == name) {
                out.push(name.to_owned());
            }
        }
    };
    match claim {
        Some(Value::String(s)) => add(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut add),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests;
