//! `cairn admin ...`: a SigV4-signing client of the admin API.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use super::alias::{self, Aliases, Target};

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// The deployment's S3 endpoint.
    #[arg(
        long,
        env = "CAIRN_ENDPOINT",
        default_value = "http://127.0.0.1:9000",
        global = true
    )]
    pub endpoint: String,
    /// Access key for commands without an alias (default: `CAIRN_ACCESS_KEY`); `svcacct add`
    /// and `svcacct edit` take it as the service account's own key, so it is read from the
    /// environment only in [`AdminArgs::target`], never silently for a new account.
    #[arg(long, global = true)]
    pub access_key: Option<String>,
    /// Secret key for commands without an alias (default: `CAIRN_SECRET_KEY`).
    #[arg(long, global = true)]
    pub secret_key: Option<String>,
    #[arg(long, env = "CAIRN_REGION", default_value = "us-east-1", global = true)]
    pub region: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Rebuild missing or damaged shards of every object (`heal [ALIAS]`; progress on a
    /// terminal, then a summary; `--json` for scripts).
    Heal(super::heal_cli::HealArgs),
    /// The site: nodes and drives (state, free space), erasure sets and their quorums, the
    /// control plane, replication peers (`info [ALIAS]`, tables; `--json` for scripts).
    Info(super::info_cli::InfoArgs),
    /// The busiest and slowest S3 operations of the whole site over a window:
    /// `top api ALIAS [--window 10s] [--count 10] [--sort count|latency] [--json]`.
    #[command(subcommand)]
    Top(super::top_cli::TopCommand),
    /// The site's control plane (Raft): status and membership changes without downtime.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Named endpoints (URL + credentials) kept in `~/.cairn/config.json`, as `mc alias` keeps them.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Per-bucket settings: `versioning`, `lock` and `encryption` of `ALIAS/BUCKET`.
    #[command(subcommand)]
    Bucket(super::bucket_cli::BucketCommand),
    /// The site's KMS key registry (`kms key create|list|status|disable|enable|delete ALIAS [KEY]`).
    #[command(subcommand)]
    Kms(super::kms_cli::KmsCommand),
    /// Site replication among several sites: `site add ALIAS ALIAS...`, `site status ALIAS`,
    /// `site remove ALIAS PEER`, `site resync start|status|cancel ALIAS PEER`.
    #[command(subcommand)]
    Site(super::site_cli::SiteCommand),
    /// Prometheus: `prometheus generate ALIAS` prints a scrape configuration with a bearer token.
    #[command(subcommand)]
    Prometheus(super::prometheus::PrometheusCommand),
    /// A live stream of the requests every node of the site serves (`trace ALIAS`, filters:
    /// `--api`, `--errors`, `--bucket`, `--node`; `--verbose` shows headers, secrets masked).
    Trace(super::trace_cli::TraceArgs),
    #[command(flatten)]
    Iam(super::iam_cli::IamCli),
}

#[derive(clap::Subcommand, Debug)]
pub enum AliasCommand {
    /// Add or replace an alias: `cairn admin alias set ALIAS URL ACCESS SECRET`.
    Set {
        alias: String,
        url: String,
        access_key: String,
        secret_key: String,
    },
    /// Forget an alias.
    Remove { alias: String },
    /// Aliases and their URLs (secrets are not printed).
    List,
}

#[derive(clap::Subcommand, Debug)]
pub enum RaftCommand {
    /// Leader, term, voters and learners as this node sees them (JSON).
    Status,
    /// Add a node as a learner, let it catch up, then make it a voter.
    AddVoter {
        /// Raft node id (position in the endpoint list, from 1).
        #[arg(long)]
        id: u64,
        /// Its internode gRPC address `HOST:PORT` (S3 port + internode offset).
        #[arg(long)]
        addr: String,
    },
    /// Add a node as a learner (it replicates but does not vote).
    AddLearner {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        addr: String,
    },
    /// Demote a voter to learner (the site keeps running on the remaining voters).
    RemoveVoter {
        #[arg(long)]
        id: u64,
    },
}

/// A single-threaded runtime for one CLI call.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn alias_command(cmd: &AliasCommand) -> anyhow::Result<()> {
    let mut aliases = Aliases::load()?;
    match cmd {
        AliasCommand::Set {
            alias,
            url,
            access_key,
            secret_key,
        } => {
            alias::validate(alias, url)?;
            aliases.aliases.insert(
                alias.clone(),
                Target {
                    url: url.trim_end_matches('/').to_string(),
                    access_key: access_key.clone(),
                    secret_key: secret_key.clone(),
                    region: "us-east-1".into(),
                },
            );
            aliases.save()?;
            println!("Added `{alias}` successfully.");
        }
        AliasCommand::Remove { alias } => {
            if aliases.aliases.remove(alias).is_none() {
                anyhow::bail!("no alias {alias:?}");
            }
            aliases.save()?;
            println!("Removed `{alias}` successfully.");
        }
        AliasCommand::List => {
            for (name, t) in &aliases.aliases {
                println!("{name}\t{}\t{}", t.url, t.access_key);
            }
        }
    }
    Ok(())
}

impl AdminArgs {
    /// The site `alias` names, or without one the `--endpoint` target.
    fn target_or(&self, alias: Option<&str>) -> anyhow::Result<Target> {
        match alias {
            Some(a) => Aliases::load()?.resolve(a),
            None => self.target(),
        }
    }

    /// The target named by `--endpoint`/`--access-key`/`--secret-key` (commands without an alias).
    fn target(&self) -> anyhow::Result<Target> {
        Ok(Target {
            url: self.endpoint.clone(),
            access_key: self
                .access_key
                .clone()
                .or_else(|| std::env::var("CAIRN_ACCESS_KEY").ok())
                .context("no access key: pass --access-key or set CAIRN_ACCESS_KEY")?,
            secret_key: self
                .secret_key
                .clone()
                .or_else(|| std::env::var("CAIRN_SECRET_KEY").ok())
                .context("no secret key: pass --secret-key or set CAIRN_SECRET_KEY")?,
            region: self.region.clone(),
        })
    }
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let (method, op, query) = match &args.command {
        AdminCommand::Alias(cmd) => return alias_command(cmd),
        AdminCommand::Bucket(cmd) => return super::bucket_cli::run(cmd),
        AdminCommand::Kms(cmd) => return super::kms_cli::run(cmd),
        AdminCommand::Site(cmd) => return super::site_cli::run(cmd),
        AdminCommand::Prometheus(cmd) => return super::prometheus::run(cmd),
        AdminCommand::Trace(cmd) => return super::trace_cli::run(cmd),
        AdminCommand::Top(cmd) => return super::top_cli::run(cmd),
        AdminCommand::Heal(heal) => {
            return super::heal_cli::run(&args.target_or(heal.alias.as_deref())?, heal)
        }
        AdminCommand::Info(info) => {
            return super::info_cli::run(&args.target_or(info.alias.as_deref())?, info)
        }
        AdminCommand::Iam(cmd) => {
            return super::iam_cli::run(cmd, args.access_key.as_deref(), args.secret_key.as_deref())
        }
        AdminCommand::Raft(RaftCommand::Status) => ("GET", "raft/status", vec![]),
        AdminCommand::Raft(RaftCommand::AddVoter { id, addr }) => (
            "POST",
            "raft/add-voter",
            vec![("id", id.to_string()), ("addr", addr.clone())],
        ),
        AdminCommand::Raft(RaftCommand::AddLearner { id, addr }) => (
            "POST",
            "raft/add-learner",
            vec![("id", id.to_string()), ("addr", addr.clone())],
        ),
        AdminCommand::Raft(RaftCommand::RemoveVoter { id }) => {
            ("POST", "raft/remove-voter", vec![("id", id.to_string())])
        }
    };
    let target = args.target()?;
    let body = rt.block_on(call(&target, method, op, &query, Vec::new()))?;
    println!("{body}");
    Ok(())
}

/// Set to a PEM file of authorities to trust for `https://` endpoints instead of
/// `CAs/` beside the alias file (`~/.cairn/certs/CAs/`).
pub const CA_FILE_ENV: &str = "CAIRN_CA_FILE";

/// The authorities the CLI trusts for `https://` endpoints.
fn trusted_cas() -> anyhow::Result<Vec<u8>> {
    if let Some(file) = std::env::var_os(CA_FILE_ENV) {
        let file = std::path::PathBuf::from(file);
        return std::fs::read(&file)
            .with_context(|| format!("{CA_FILE_ENV}: cannot read {}", file.display()));
    }
    let config = alias::config_path()?;
    let certs = config.parent().map(|d| d.join("certs")).unwrap_or_default();
    crate::link::trusted_cas(&certs).with_context(|| format!("cannot read {}", certs.display()))
}

/// The link the CLI sends `target`'s requests through (`https://` endpoints verified against
/// [`trusted_cas`]), and the target as the link names it.
pub(crate) fn client(
    target: &Target,
) -> anyhow::Result<(crate::link::Link, crate::link::PeerTarget)> {
    let https = target.url.starts_with("https://");
    let cas = if https { trusted_cas()? } else { Vec::new() };
    // Healing a large deployment takes a while; only connection problems should fail fast.
    let link = crate::link::Link::new(
        std::sync::Arc::new(crate::net::TcpDial),
        &cas,
        std::sync::Arc::new(crate::clock::SystemClock),
    )
    .with_response_timeout(Duration::from_secs(24 * 3600));
    let peer = crate::link::PeerTarget {
        name: target.url.clone(),
        endpoints: vec![target.url.trim_end_matches('/').to_owned()],
        access_key: target.access_key.clone(),
        secret_key: zeroize::Zeroizing::new(target.secret_key.clone()),
        region: target.region.clone(),
    };
    Ok((link, peer))
}

/// What the CLI reports when admin call `op` to `target` failed with `e`.
pub(crate) fn failure(target: &Target, op: &str, e: crate::link::LinkError) -> anyhow::Error {
    let https = target.url.starts_with("https://");
    match e {
        crate::link::LinkError::Status {
            status, message, ..
        } => anyhow::anyhow!("{op} failed: HTTP {status}: {message}"),
        e if https && e.to_string().contains("TLS") => anyhow::anyhow!(
            "{e}: is the server's certificate issued by an authority in {}? ({CA_FILE_ENV} names another file)",
            alias::config_path()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("certs").join("CAs").display().to_string()))
                .unwrap_or_default()
        ),
        e => anyhow::anyhow!("cannot reach {}: {e}", target.url),
    }
}

/// Sends one signed admin request (`op` relative to `/cairn/admin/v1/`, a JSON `body` or none)
/// and returns the response text; a non-2xx answer is an error carrying the server's message.
pub async fn call(
    target: &Target,
    method: &str,
    op: &str,
    query: &[(&str, String)],
    body: Vec<u8>,
) -> anyhow::Result<String> {
    let (link, peer) = client(target)?;
    let path = format!("{}{op}", super::PREFIX);
    let req = crate::link::PeerRequest {
        method,
        path: &path,
        query,
        headers: &[],
        body: crate::link::full(Bytes::from(body)),
    };
    match link.call(&peer, req).await {
        Ok(body) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Err(e) => Err(failure(target, op, e)),
    }
}
