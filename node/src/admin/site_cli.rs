//! `cairn admin site add ALIAS ALIAS...`, `site remove ALIAS PEER`, `site status ALIAS` and
//! `site resync start|status|cancel ALIAS PEER`, as `mc admin replicate` does them: the CLI knows
//! every site through its aliases, so one command tells each site about all the others (the alias
//! URLs must be reachable from the sites themselves). `--site-url ALIAS=URL` gives instead the
//! URLs the other sites reach site ALIAS at (its nodes, its load balancers): they try them in turn.
//!
//! Sites that both hold buckets are merged (`cairn_control_plane::pairing`): before anything
//! changes, `add` fetches every site's buckets and refuses, naming each one, any bucket that
//! exists on two sites with configs that cannot be merged.
//!
//! Sites never learn each other's root credentials: for each pair the CLI makes a replication
//! identity (a random access key and secret, as MinIO's site-replicator account) and gives it to
//! both sites of the pair, and to no one else; it prints neither.

use anyhow::Context;
use rand::distributions::{Alphanumeric, DistString};

use cairn_control_plane::resync::ResyncState;
use cairn_control_plane::BucketInfo;

use super::alias::{Aliases, Target};
use super::cli::{call, runtime};
use super::site::{Configure, PeerSpec, ResyncStatus};

#[derive(clap::Subcommand, Debug)]
pub enum SiteCommand {
    /// Replicate buckets, their configs, IAM and objects among these sites (each named by its
    /// alias; the alias's credentials must be the site's root credentials, which stay with it:
    /// each pair of sites gets a replication identity of its own).
    ///
    /// The other sites reach a site at its alias's URL, or, when `--site-url` names it, at each
    /// URL given for it, tried in turn (the one that answered last first; the next one while one
    /// cannot be reached): give a site's nodes, or its load balancers, so that replication never
    /// depends on one of them.
    Add {
        #[arg(required = true, num_args = 2..)]
        aliases: Vec<String>,
        /// Versions removed for good (DELETE with a version id) stay on the other sites; by
        /// default such removals replicate like everything else. Running `add` again changes it.
        #[arg(long)]
        no_replicate_version_deletes: bool,
        /// ALIAS=URL: a URL the other sites reach site ALIAS at (repeatable, in the order they
        /// are tried; replaces the alias's URL for them), e.g. `--site-url b=http://b1:9000
        /// --site-url b=http://b2:9000 --site-url b=http://b3:9000`.
        #[arg(long = "site-url", value_name = "ALIAS=URL")]
        endpoints: Vec<String>,
    },
    /// This site's peers and how far each one got (JSON).
    Status { alias: String },
    /// Unpair peer site PEER (its site name) on this site only: nothing more is sent to it, and
    /// its replication identity is refused here from now on.
    Remove { alias: String, peer: String },
    /// Send every bucket, user and object version to a peer again (one that lost its data):
    /// `start`, `status` (progress and ETA), `cancel`.
    #[command(subcommand)]
    Resync(ResyncCli),
}

#[derive(clap::Subcommand, Debug)]
pub enum ResyncCli {
    /// Start a resync from the site ALIAS to its peer PEER.
    Start {
        alias: String,
        peer: String,
        /// Follow it until it ends (a progress bar on a terminal), then print its status.
        #[arg(long)]
        wait: bool,
    },
    /// Versions and bytes sent out of how many, the rate and the time left.
    Status {
        alias: String,
        peer: String,
        /// The status as JSON.
        #[arg(long)]
        json: bool,
        /// Follow the resync until it ends (a progress bar on a terminal), then print its
        /// status.
        #[arg(long)]
        watch: bool,
    },
    /// Stop a running resync (what was sent stays sent).
    Cancel { alias: String, peer: String },
}

fn peer_query(peer: &str) -> Vec<(&'static str, String)> {
    vec![("peer", peer.to_string())]
}

fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A resync's status for people.
pub fn describe(r: &ResyncStatus) -> String {
    let state = match r.state {
        ResyncState::Running if r.total.is_none() => "counting",
        ResyncState::Running => "running",
        ResyncState::Cancelled => "cancelled",
        ResyncState::Done => "done",
    };
    let (objects, bytes) = match r.total {
        Some(t) => (
            format!("{} / {}", r.done.objects, t.objects.max(r.done.objects)),
            format!(
                "{} / {}",
                size(r.done.bytes as f64),
                size(t.bytes.max(r.done.bytes) as f64)
            ),
        ),
        None => (r.done.objects.to_string(), size(r.done.bytes as f64)),
    };
    let eta = eta(r.eta_seconds);
    let mut out = format!(
        "resync to {}: {state}\nobjects: {objects}\nbytes:   {bytes}\nrate:    {:.1} objects/s, {}/s\neta:     {eta}\nfailed:  {}",
        r.peer,
        r.objects_per_second,
        size(r.bytes_per_second),
        r.failed
    );
    for f in &r.failures {
        out.push_str(&format!("\n  {f}"));
    }
    out
}

/// How often a followed resync's status is asked for.
const RESYNC_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Polls the resync to `peer` (whose status is `text` now) until it is no longer running,
/// with a bar of versions sent out of the total (once counted) on stderr; returns its last
/// status as the server sent it.
async fn follow_resync(target: &Target, peer: &str, text: &str) -> anyhow::Result<String> {
    let bar = super::progress::bar(0, "versions");
    let mut text = text.to_owned();
    let mut poll = tokio::time::interval(RESYNC_POLL);
    loop {
        let r: ResyncStatus = serde_json::from_str(&text).context("the resync status")?;
        if r.state != ResyncState::Running {
            bar.finish_and_clear();
            return Ok(text);
        }
        bar.set_length(r.total.map_or(0, |t| t.objects.max(r.done.objects)));
        bar.set_position(r.done.objects);
        let bytes = match r.total {
            Some(t) => format!(
                "{} / {}",
                size(r.done.bytes as f64),
                size(t.bytes.max(r.done.bytes) as f64)
            ),
            None => format!("{} (counting)", size(r.done.bytes as f64)),
        };
        bar.set_message(format!("{bytes}, eta {}", eta(r.eta_seconds)));
        poll.tick().await;
        text = call(
            target,
            "GET",
            "site/resync/status",
            &peer_query(peer),
            Vec::new(),
        )
        .await?;
    }
}

fn eta(seconds: Option<u64>) -> String {
    match seconds {
        Some(s) => format!("{}m{:02}s", s / 60, s % 60),
        None => "unknown".into(),
    }
}

/// Every bucket of two sites that cannot be merged, named with both aliases.
async fn clashes(names: &[String], targets: &[Target]) -> anyhow::Result<Vec<String>> {
    let mut inventories = Vec::new();
    for (name, t) in names.iter().zip(targets) {
        let text = call(t, "GET", "site/buckets", &[], Vec::new())
            .await
            .with_context(|| format!("listing the buckets of site {name}"))?;
        let buckets: Vec<BucketInfo> = serde_json::from_str(&text)
            .with_context(|| format!("the bucket list of site {name}"))?;
        inventories.push(
            buckets
                .into_iter()
                .map(|b| (b.name.clone(), b))
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
    }
    let mut out = Vec::new();
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            for c in cairn_control_plane::pairing::clashes(&inventories[i], &inventories[j]) {
                out.push(format!("{} and {}: {c}", names[i], names[j]));
            }
        }
    }
    Ok(out)
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
        SiteCommand::Add {
            aliases: names,
            no_replicate_version_deletes,
            endpoints: extra,
        } => {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                anyhow::bail!("alias {dup} is named twice");
            }
            let targets = names
                .iter()
                .map(|n| aliases.resolve(n))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let urls = site_urls(names, &targets, extra)?;
            let clashes = rt.block_on(clashes(names, &targets))?;
            if !clashes.is_empty() {
                anyhow::bail!(
                    "cannot pair: buckets on several sites that cannot be merged (nothing was changed; make them agree, or rename one, then pair again):\n  {}",
                    clashes.join("\n  ")
                );
            }
            let links = pair_identities(names.len());
            for (i, (name, target)) in names.iter().zip(&targets).enumerate() {
                let peers = names
                    .iter()
                    .zip(&targets)
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, (n, _))| {
                        let (access_key, secret_key) = links[i.min(j)][i.max(j)].clone();
                        PeerSpec {
                            name: n.clone(),
                            endpoints: urls[j].clone(),
                            access_key,
                            secret_key,
                            skip_version_deletes: *no_replicate_version_deletes,
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
        SiteCommand::Remove { alias, peer } => {
            let target = aliases.resolve(alias)?;
            rt.block_on(call(
                &target,
                "POST",
                "site/remove",
                &peer_query(peer),
                Vec::new(),
            ))?;
            println!("site {peer} removed from {alias}'s peers");
        }
        SiteCommand::Resync(cmd) => {
            let (alias, peer, op, json, follow) = match cmd {
                ResyncCli::Start { alias, peer, wait } => {
                    (alias, peer, "POST site/resync/start", false, *wait)
                }
                ResyncCli::Status {
                    alias,
                    peer,
                    json,
                    watch,
                } => (alias, peer, "GET site/resync/status", *json, *watch),
                ResyncCli::Cancel { alias, peer } => {
                    (alias, peer, "POST site/resync/cancel", false, false)
                }
            };
            let (method, op) = op.split_once(' ').unwrap_or_default();
            let target = aliases.resolve(alias)?;
            let mut text = rt.block_on(call(&target, method, op, &peer_query(peer), Vec::new()))?;
            if follow {
                text = rt.block_on(follow_resync(&target, peer, &text))?;
            }
            if json {
                println!("{text}");
            } else {
                let r: ResyncStatus = serde_json::from_str(&text).context("the resync status")?;
                println!("{}", describe(&r));
            }
        }
    }
    Ok(())
}

/// The URLs each site is reached at: each `ALIAS=URL` of `extra` naming it, in order, or else its
/// alias's.
fn site_urls(
    names: &[String],
    targets: &[Target],
    extra: &[String],
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut urls: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for e in extra {
        let Some((alias, url)) = e.split_once('=') else {
            anyhow::bail!("--site-url {e:?}: expected ALIAS=URL");
        };
        let Some(i) = names.iter().position(|n| n == alias) else {
            anyhow::bail!("--site-url {e:?}: {alias} is not one of the sites being paired");
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--site-url {e:?}: the URL must start with http:// or https://");
        }
        urls[i].push(url.to_string());
    }
    for (u, t) in urls.iter_mut().zip(targets) {
        if u.is_empty() {
            u.push(t.url.clone());
        }
    }
    Ok(urls)
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
