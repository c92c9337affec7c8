//! `cairn admin kms key create|list|status|disable|enable|delete ALIAS [KEY]`.

use super::alias::Aliases;
use super::cli::{call, runtime};

#[derive(clap::Subcommand, Debug)]
pub enum KmsCommand {
    /// Keys of the site's KMS key registry.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key: `create ALIAS KEY`.
    Create { alias: String, key: String },
    /// Every key and its state: `list ALIAS`.
    List { alias: String },
    /// One key's state: `status ALIAS KEY`.
    Status { alias: String, key: String },
    /// Make every object under the key unreadable until enabled again.
    Disable { alias: String, key: String },
    /// Make a disabled key usable again.
    Enable { alias: String, key: String },
    /// Wipe the key: every object under it stays unreadable for good.
    Delete { alias: String, key: String },
}

pub fn run(cmd: &KmsCommand) -> anyhow::Result<()> {
    let KmsCommand::Key(cmd) = cmd;
    let (method, op, alias, key) = match cmd {
        KeyCommand::Create { alias, key } => ("POST", "create", alias, Some(key)),
        KeyCommand::List { alias } => ("GET", "list", alias, None),
        KeyCommand::Status { alias, key } => ("GET", "status", alias, Some(key)),
        KeyCommand::Disable { alias, key } => ("POST", "disable", alias, Some(key)),
        KeyCommand::Enable { alias, key } => ("POST", "enable", alias, Some(key)),
        KeyCommand::Delete { alias, key } => ("POST", "delete", alias, Some(key)),
    };
    let query: Vec<(&str, String)> = key.iter().map(|k| ("key", k.to_string())).collect();
    let target = Aliases::load()?.resolve(alias)?;
    let body = runtime()?.block_on(call(
        &target,
        method,
        &format!("kms/key/{op}"),
        &query,
        Vec::new(),
    ))?;
    println!("{body}");
    Ok(())
}
