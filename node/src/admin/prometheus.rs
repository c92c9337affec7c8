//! Scrape tokens for `/cairn/metrics` and `cairn admin prometheus generate`, as MinIO makes
//! them for `mc admin prometheus generate`: a JWT signed with HS512 under the secret key of the
//! access key it names (`sub`), so Prometheus never holds the secret itself. The server checks
//! the signature, the expiry, and on every scrape that the key's policies still allow
//! `admin:Prometheus`: removing the user, disabling it, changing its secret or its policy
//! revokes the token. Session (STS) credentials cannot make one: their secret alone does not
//! prove the session.

use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha512;

use super::alias::Aliases;
use crate::units::parse_duration;

/// The action a scraper needs (MinIO's name).
pub const ACTION: &str = "admin:Prometheus";
/// Every node's metrics, and this node's only.
pub const SITE_PATH: &str = "/cairn/metrics";
pub const NODE_PATH: &str = "/cairn/metrics/node";
/// `public`: anyone may scrape (MinIO's `MINIO_PROMETHEUS_AUTH_TYPE`); unset or `jwt`: a bearer
/// token or a SigV4 signature of an identity allowed [`ACTION`].
pub const AUTH_TYPE_ENV: &str = "CAIRN_PROMETHEUS_AUTH_TYPE";
/// The issuer MinIO writes into its scrape tokens.
const ISSUER: &str = "prometheus";
/// A longer `Authorization` header is no token of ours (bounded work per request).
const MAX_TOKEN: usize = 4096;
/// The JOSE header of every token: verification refuses any other algorithm.
const HEADER: &str = r#"{"alg":"HS512","typ":"JWT"}"#;

#[derive(Serialize, Deserialize)]
struct Claims {
    /// The access key whose secret signed the token.
    sub: String,
    /// Seconds since the epoch.
    exp: i64,
    #[serde(default)]
    iss: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

fn sign(secret: &str, signed_part: &str) -> Hmac<Sha512> {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(signed_part.as_bytes());
    mac
}

/// A token for `access_key` valid until `exp` (seconds since the epoch).
pub fn token(access_key: &str, secret_key: &str, exp: i64) -> String {
    let claims = Claims {
        sub: access_key.to_owned(),
        exp,
        iss: ISSUER.to_owned(),
    };
    let payload = serde_json::to_vec(&claims).expect("claims serialize");
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = sign(secret_key, &signed).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The access key a token speaks for, if it is well formed, signed with that key's secret (as
/// `secret_of` returns it) and not expired at `now` (seconds since the epoch). Whether the key
/// may scrape is for the caller to decide.
pub fn verify(token: &str, secret_of: impl Fn(&str) -> Option<String>, now: i64) -> Option<String> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let (signed, sig) = token.rsplit_once('.')?;
    let (header, payload) = signed.split_once('.')?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.alg != "HS512" {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let secret = secret_of(&claims.sub)?;
    sign(&secret, signed)
        .verify_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?)
        .ok()?;
    (now < claims.exp).then_some(claims.sub)
}

#[derive(clap::Subcommand, Debug)]
pub enum PrometheusCommand {
    /// Print a Prometheus scrape configuration for ALIAS, with a bearer token signed by the
    /// alias's credentials (they must be allowed `admin:Prometheus`).
    Generate {
        alias: String,
        /// Scrape `/cairn/metrics/node` (each node's own figures) instead of `/cairn/metrics`.
        #[arg(long)]
        node: bool,
        /// More targets (`HOST:PORT`) beside the alias's, e.g. the site's other nodes: one
        /// token works on every node of a site.
        #[arg(long = "target", value_name = "HOST:PORT")]
        targets: Vec<String>,
        /// Scrape interval of this job (Prometheus's global default otherwise), e.g. `15s`.
        #[arg(long, value_parser = parse_duration)]
        scrape_interval: Option<Duration>,
        /// How long the token is valid (MinIO's are valid 100 years: revoke one by taking
        /// `admin:Prometheus` away, or disabling or removing the key).
        #[arg(long, default_value = "36500d", value_parser = parse_duration)]
        expiry: Duration,
        /// For an `https` alias: the PEM file of the authority that issued the nodes'
        /// certificates, as Prometheus will read it (`tls_config.ca_file`).
        #[arg(long, value_name = "PATH")]
        ca_file: Option<String>,
    },
}

pub fn run(cmd: &PrometheusCommand) -> anyhow::Result<()> {
    let PrometheusCommand::Generate {
        alias,
        node,
        targets,
        scrape_interval,
        expiry,
        ca_file,
    } = cmd;
    let target = Aliases::load()?.resolve(alias)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let exp = i64::try_from((now + *expiry).as_secs()).context("--expiry is too long")?;
    let (scheme, host) = target
        .url
        .split_once("://")
        .context("the alias's URL has no scheme")?;
    let host = host.trim_end_matches('/');
    let config = ScrapeConfig {
        job: "cairn-job",
        token: &token(&target.access_key, &target.secret_key, exp),
        path: if *node { NODE_PATH } else { SITE_PATH },
        scheme,
        interval: *scrape_interval,
        ca_file: ca_file.as_deref(),
        targets: std::iter::once(host)
            .chain(targets.iter().map(String::as_str))
            .collect(),
    };
    print!("{}", config.yaml());
    Ok(())
}

/// One scrape job as `prometheus.yml` spells it.
struct ScrapeConfig<'a> {
    job: &'a str,
    token: &'a str,
    path: &'a str,
    scheme: &'a str,
    interval: Option<Duration>,
    ca_file: Option<&'a str>,
    targets: Vec<&'a str>,
}

impl ScrapeConfig<'_> {
    /// A whole `prometheus.yml` (YAML's flow style: every value is a JSON string).
    fn yaml(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let mut out = format!(
            "scrape_configs:\n- job_name: {}\n  bearer_token: {}\n  metrics_path: {}\n  scheme: {}\n",
            q(self.job),
            q(self.token),
            q(self.path),
            q(self.scheme)
        );
        if let Some(i) = self.interval {
            out += &format!("  scrape_interval: {}ms\n", i.as_millis().max(1));
        }
        if let Some(ca) = self.ca_file {
            out += &format!("  tls_config:\n    ca_file: {}\n", q(ca));
        }
        let targets: Vec<String> = self.targets.iter().map(|t| q(t)).collect();
        out += &format!("  static_configs:\n  - targets: [{}]\n", targets.join(", "));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(k: &str) -> Option<String> {
        (k == "scraper").then(|| "s3cr3t-key".to_owned())
    }

    #[test]
    fn tokens_verify_only_with_the_right_secret_and_before_expiry() {
        let t = token("scraper", "s3cr3t-key", 1_000);
        assert_eq!(verify(&t, secrets, 999).as_deref(), Some("scraper"));
        assert_eq!(verify(&t, secrets, 1_000), None, "expired");
        let forged = token("scraper", "another-key", 1_000);
        assert_eq!(verify(&forged, secrets, 0), None);
        assert_eq!(
            verify(&token("nobody", "s3cr3t-key", 1_000), secrets, 0),
            None
        );
        // Claims changed after signing.
        let (h, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let later = URL_SAFE_NO_PAD.encode(r#"{"sub":"scraper","exp":99999,"iss":"prometheus"}"#);
        assert_eq!(verify(&format!("{h}.{later}.{sig}"), secrets, 0), None);
        // Unsigned ("alg": "none") and malformed tokens.
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"scraper","exp":99999}"#);
        assert_eq!(verify(&format!("{none}.{claims}."), secrets, 0), None);
        for bad in ["", ".", "..", "a.b.c", &"x".repeat(MAX_TOKEN + 1)] {
            assert_eq!(verify(bad, secrets, 0), None, "{bad}");
        }
    }

    #[test]
    fn scrape_config_is_a_prometheus_yml() {
        let c = ScrapeConfig {
            job: "cairn-job",
            token: "t.o.k",
            path: SITE_PATH,
            scheme: "https",
            interval: Some(Duration::from_secs(1)),
            ca_file: Some("/etc/ca.crt"),
            targets: vec!["a:9000", "b:9000"],
        };
        assert_eq!(
            c.yaml(),
            "scrape_configs:\n- job_name: \"cairn-job\"\n  bearer_token: \"t.o.k\"\n  metrics_path: \"/cairn/metrics\"\n  scheme: \"https\"\n  scrape_interval: 1000ms\n  tls_config:\n    ca_file: \"/etc/ca.crt\"\n  static_configs:\n  - targets: [\"a:9000\", \"b:9000\"]\n"
        );
    }
}
