//! `cairn admin bucket ...`: per-bucket settings, addressed as `ALIAS/BUCKET` like `mc`.

use super::alias::{bucket_of, Aliases};
use super::cli::{call, runtime};

#[derive(clap::Subcommand, Debug)]
pub enum BucketCommand {
    /// A bucket's default encryption for objects written without SSE headers.
    #[command(subcommand)]
    Encryption(EncryptionCommand),
}

#[derive(clap::Subcommand, Debug)]
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

pub fn run(cmd: &BucketCommand) -> anyhow::Result<()> {
    let BucketCommand::Encryption(cmd) = cmd;
    let (method, target, mut query) = match cmd {
        EncryptionCommand::Info { target } => ("GET", target, vec![]),
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
            ("PUT", target, q)
        }
        EncryptionCommand::Clear { target } => ("DELETE", target, vec![]),
    };
    query.push(("bucket", bucket_of(target)?.to_string()));
    let endpoint = Aliases::load()?.resolve(target)?;
    let body = runtime()?.block_on(call(
        &endpoint,
        method,
        "bucket/encryption",
        &query,
        Vec::new(),
    ))?;
    println!("{body}");
    Ok(())
}
