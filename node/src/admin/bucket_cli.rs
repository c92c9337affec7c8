//! `cairn admin bucket versioning|lock ...`: a bucket's versioning and object-lock configuration,
//! addressed as `ALIAS/BUCKET` like `mc`.

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
    };
    let bucket = alias::bucket_of(target)?;
    query.push(("bucket", bucket.to_string()));
    let t = Aliases::load()?.resolve(target)?;
    let body = runtime()?.block_on(call(&t, method, op, &query, Vec::new()))?;
    println!("{body}");
    Ok(())
}
