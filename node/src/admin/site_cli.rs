//! `cairn admin site add ALIAS ALIAS...` and `cairn admin site status ALIAS`, as `mc admin
//! replicate add` does it: the CLI knows every site through its aliases, so one command tells each
//! site about all the others (the alias URLs must be reachable from the sites themselves).

use anyhow::Context;

use super::alias::Aliases;
use super::cli::{call, runtime};
use super::site::{Configure, PeerSpec};

#[derive(clap::Subcommand, Debug)]
pub enum SiteCommand {
    /// Replicate buckets, their configs, IAM and objects among these sites (each named by its
    /// alias; the alias's credentials must be the site's root credentials).
    Add {
        #[arg(required = true, num_args = 2..)]
        aliases: Vec<String>,
    },
    /// This site's peers and how far each one got (JSON).
    Status { alias: String },
}

pub fn run(cmd: &SiteCommand) -> anyhow::Result<()> {
    let aliases = Aliases::load()?;
    let rt = runtime()?;
    match cmd {
        SiteCommand::Status { alias } => {
            let target = aliases.resolve(alias)?;
            println!(
                "{}",
                rt.block_on(call(&target, "GET", "site/status", &[], Vec::new()))?
            );
        }
        SiteCommand::Add { aliases: names } => {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                anyhow::bail!("alias {dup} is named twice");
            }
            let targets = names
                .iter()
                .map(|n| aliases.resolve(n))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (name, target) in names.iter().zip(&targets) {
                let peers = names
                    .iter()
                    .zip(&targets)
                    .filter(|(n, _)| *n != name)
                    .map(|(n, t)| PeerSpec {
                        name: n.clone(),
                        endpoint: t.url.clone(),
                        access_key: t.access_key.clone(),
                        secret_key: t.secret_key.clone(),
                    })
                    .collect();
                let body = serde_json::to_vec(&Configure {
                    local: name.clone(),
                    peers,
                })?;
                rt.block_on(call(target, "POST", "site/configure", &[], body))
                    .with_context(|| format!("configuring site {name}"))?;
            }
            println!("site replication configured among {}", names.join(", "));
        }
    }
    Ok(())
}
