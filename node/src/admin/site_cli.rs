//! `cairn admin site add ALIAS ALIAS...` and `cairn admin site status ALIAS`, as `mc admin
//! replicate add` does it: the CLI knows every site through its aliases, so one command tells each
//! site about all the others (the alias URLs must be reachable from the sites themselves).
//!
//! Sites never learn each other's root credentials: for each pair the CLI makes a replication
//! identity (a random access key and secret, as MinIO's site-replicator account) and gives it to
//! both sites of the pair, and to no one else; it prints neither.

use anyhow::Context;
use rand::distributions::{Alphanumeric, DistString};

use super::alias::Aliases;
use super::cli::{call, runtime};
use super::site::{Configure, PeerSpec};

#[derive(clap::Subcommand, Debug)]
pub enum SiteCommand {
    /// Replicate buckets, their configs, IAM and objects among these sites (each named by its
    /// alias; the alias's credentials must be the site's root credentials, which stay with it:
    /// each pair of sites gets a replication identity of its own).
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
            let links = pair_identities(names.len());
            for (i, (name, target)) in names.iter().zip(&targets).enumerate() {
                let peers = names
                    .iter()
                    .zip(&targets)
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, (n, t))| {
                        let (access_key, secret_key) = links[i.min(j)][i.max(j)].clone();
                        PeerSpec {
                            name: n.clone(),
                            endpoint: t.url.clone(),
                            access_key,
                            secret_key,
                        }
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

/// A fresh replication identity for every pair `i < j` of `n` sites, at `[i][j]`.
fn pair_identities(n: usize) -> Vec<Vec<(String, String)>> {
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|_| {
            (0..n)
                .map(|_| {
                    let key = Alphanumeric
                        .sample_string(&mut rng, 16)
                        .to_ascii_lowercase();
                    (
                        format!("site-replicator-{key}"),
                        Alphanumeric.sample_string(&mut rng, 40),
                    )
                })
                .collect()
        })
        .collect()
}
