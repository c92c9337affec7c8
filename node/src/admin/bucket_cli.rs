//! `cairn admin bucket versioning|lock|encryption ...`: a bucket's versioning, object-lock and
//! default-encryption configuration, addressed as `ALIAS/BUCKET` like `mc`.

use clap::{Args, Subcommand};

use super::alias::{self, Aliases};
use super::cli::{call, runtime};

#[derive(Subcommand, Debug)]
pub enum BucketCommand {
    /// Versioning state: `info`, `enable`, `suspend` (a bucket with object lock cannot suspend).
    #[command(subcommand)]
    Versioning(VersioningCommand),
    /// Object lock: `info`, or `set` the default retention (`--mode` with `--days` or `--years`;
    /// without `--mode` the default is cleared).
    #[command(subcommand)]
    Lock(LockCommand),
    /// A bucket's default encryption for objects written without SSE headers.
    #[command(subcommand)]
    Encryption(EncryptionCommand),
}

#[derive(Subcommand, Debug)]
pub enum EncryptionCommand {
    /// Show the default encryption: `info ALIAS/BUCKET`.
    Info { target: String },
    /// Set it: `set ALIAS/BUCKET sse-s3` or `set ALIAS/BUCKET sse-kms [KEY]`.
    Set {
        target: String,
        #[arg(value_parser = ["sse-s3", "sse-kms"])]
        algorithm: String,
        /// KMS key (sse-kms only; the KMS's default key when omitted).
        key: Option<String>,
    },
    /// Remove it: `clear ALIAS/BUCKET`.
    Clear { target: String },
}

#[derive(Subcommand, Debug)]
pub enum VersioningCommand {
    Info { target: String },
    Enable { target: String },
    Suspend { target: String },
}

#[derive(Args, Debug)]
pub struct LockSet {
    /// `ALIAS/BUCKET`.
    pub target: String,
    /// GOVERNANCE or COMPLIANCE.
    #[arg(long)]
    pub mode: Option<String>,
    #[arg(long, conflicts_with = "years")]
    pub days: Option<u32>,
    #[arg(long)]
    pub years: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum LockCommand {
    Info { target: String },
    Set(LockSet),
}

pub fn run(cmd: &BucketCommand) -> anyhow::Result<()> {
    let (method, op, target, mut query) = match cmd {
        BucketCommand::Versioning(v) => match v {
            VersioningCommand::Info { target } => ("GET", "bucket/versioning", target, vec![]),
            VersioningCommand::Enable { target } => (
                "PUT",
                "bucket/versioning",
                target,
                vec![("status", "Enabled".to_string())],
            ),
            VersioningCommand::Suspend { target } => (
                "PUT",
                "bucket/versioning",
                target,
                vec![("status", "Suspended".to_string())],
            ),
        },
        BucketCommand::Lock(LockCommand::Info { target }) => ("GET", "bucket/lock", target, vec![]),
        BucketCommand::Lock(LockCommand::Set(s)) => {
            let mut q = Vec::new();
            if let Some(m) = &s.mode {
                q.push(("mode", m.clone()));
            }
            if let Some(d) = s.days {
                q.push(("days", d.to_string()));
            }
            if let Some(y) = s.years {
                q.push(("years", y.to_string()));
            }
            ("PUT", "bucket/lock", &s.target, q)
        }
        BucketCommand::Encryption(e) => match e {
            EncryptionCommand::Info { target } => ("GET", "bucket/encryption", target, vec![]),
            EncryptionCommand::Set {
                target,
                algorithm,
                key,
            } => {
                if algorithm == "sse-s3" && key.is_some() {
                    anyhow::bail!("a KMS key is only valid with sse-kms");
                }
                let mut q = vec![("sse", algorithm.clone())];
                q.extend(key.iter().map(|k| ("key", k.clone())));
                ("PUT", "bucket/encryption", target, q)
            }
            EncryptionCommand::Clear { target } => ("DELETE", "bucket/encryption", target, vec![]),
        },
    };
    let bucket = alias::bucket_of(target)?;
    query.push(("bucket", bucket.to_string()));
    let t = Aliases::load()?.resolve(target)?;
    let body = runtime()?.block_on(call(&t, method, op, &query, Vec::new()))?;
    println!("{body}");
    Ok(())
}
