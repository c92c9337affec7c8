//! `cairn admin heal [ALIAS]`: rebuilds missing or damaged shards of every object, then prints
//! what it did (`--json`: as JSON). While the call runs, a spinner shows what full heals on the
//! node did so far, polled from `heal/status` (it counts every full heal of that node, a
//! background one too). A full heal counts no total before it starts: none is shown.

use std::time::Duration;

use anyhow::Context;

use super::alias::Target;
use super::cli::call;
use crate::object::heal::{HealProgressSnapshot, HealSummary};

/// How often the spinner asks the node how far its heal got.
const POLL: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct HealArgs {
    /// The site to heal (default: `--endpoint` with `--access-key`/`--secret-key`).
    pub alias: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

async fn status(target: &Target) -> anyhow::Result<HealProgressSnapshot> {
    let text = call(target, "GET", "heal/status", &[], Vec::new()).await?;
    Ok(serde_json::from_str(&text)?)
}

fn progress_line(p: &HealProgressSnapshot) -> String {
    format!(
        "healing: {} objects scanned, {} healed, {} shards written, {} errors",
        p.objects_scanned, p.objects_healed, p.shards_written, p.errors
    )
}

/// Heals `target`'s site, showing progress on stderr while it runs.
pub async fn heal(target: &Target) -> anyhow::Result<HealSummary> {
    // A server that cannot say (an older one) heals all the same, without progress.
    let before = status(target).await.ok();
    let spinner = super::progress::spinner();
    spinner.set_message("healing");
    let healing = call(target, "POST", "heal", &[], Vec::new());
    tokio::pin!(healing);
    let mut poll = tokio::time::interval(POLL);
    let text = loop {
        tokio::select! {
            r = &mut healing => break r,
            _ = poll.tick() => {
                if let (Some(b), Ok(now)) = (&before, status(target).await) {
                    spinner.set_message(progress_line(&now.since(b)));
                }
            }
        }
    };
    spinner.finish_and_clear();
    serde_json::from_str(&text?).context("the heal summary")
}

/// The summary for people.
pub fn describe(s: &HealSummary) -> String {
    format!(
        "heal done: {} objects scanned, {} healed, {} shards written\n\
         records removed (failed writes, versions lost beyond parity): {}\n\
         shards rebuilt but not written (drive down; heal again): {}\n\
         errors: {}",
        s.objects_scanned,
        s.objects_healed,
        s.shards_written,
        s.dangling_removed,
        s.shards_unwritten,
        s.errors
    )
}

pub fn run(target: &Target, args: &HealArgs) -> anyhow::Result<()> {
    let summary = super::cli::runtime()?.block_on(heal(target))?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", describe(&summary));
    }
    Ok(())
}
