//! `cairn admin top api ALIAS`: the site's S3 operations over a window, most frequent (or
//! slowest) first, from the live trace of every node (`admin::trace`) folded as it comes
//! (`admin::top`). It needs what tracing needs (`admin:ServerTrace`). The window starts once
//! every node's records flow (or after [`READY_TIMEOUT`], without the nodes that are missing).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::alias::{Aliases, Target};
use super::top::{ApiStats, Order, Top};
use super::trace_cli::Stream;
use crate::observe::trace::{TraceFilter, TraceLine};
use crate::units::format_size;

/// How long `top` waits for every node to trace before it starts its window without the rest.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Subcommand, Debug)]
pub enum TopCommand {
    /// The S3 operations of every node of the site over a window: count, errors, p50/p99/max
    /// latency and bytes per API, most frequent first (`--sort latency`: slowest first).
    Api(TopApiArgs),
}

#[derive(clap::Args, Debug)]
pub struct TopApiArgs {
    pub alias: String,
    /// How long to watch (`30`, `30s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration)]
    pub window: Duration,
    /// Rows shown (0: every API).
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    #[arg(long, value_enum, default_value_t = Order::Count)]
    pub sort: Order,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `top api` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    pub window_seconds: f64,
    /// Nodes of the site, and those whose records came during the window.
    pub nodes: usize,
    pub nodes_tracing: usize,
    /// Records the server dropped for this reader (it read too slowly): missing from the rows.
    pub dropped: u64,
    pub apis: Vec<ApiStats>,
}

pub fn run(cmd: &TopCommand) -> anyhow::Result<()> {
    let TopCommand::Api(args) = cmd;
    let target = Aliases::load()?.resolve(&args.alias)?;
    let (top, nodes, nodes_tracing) =
        super::cli::runtime()?.block_on(watch(&target, args.window))?;
    let mut apis = top.rows(args.sort);
    if args.count > 0 {
        apis.truncate(args.count);
    }
    let report = Report {
        window_seconds: args.window.as_secs_f64(),
        nodes,
        nodes_tracing,
        dropped: top.dropped,
        apis,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// Reads the trace of `target`'s site for `window` once every node traces; returns the rows,
/// the nodes there are and how many traced.
async fn watch(target: &Target, window: Duration) -> anyhow::Result<(Top, usize, usize)> {
    let mut stream = Stream::open(target, &TraceFilter::default(), "top").await?;
    let ended = || anyhow::anyhow!("the trace stream of {} ended", target.url);
    let mut traced = BTreeSet::new();
    let ready_by = Instant::now() + READY_TIMEOUT;
    while traced.len() < stream.nodes {
        let Ok(line) = tokio::time::timeout_at(ready_by, stream.next_line()).await else {
            break;
        };
        let line = line?.ok_or_else(ended)?;
        if let Ok(TraceLine::Tracing { node, .. }) = serde_json::from_slice(&line) {
            traced.insert(node);
        }
    }
    if traced.len() < stream.nodes {
        eprintln!(
            "warning: {} of {} nodes do not trace (down or unreachable from the node answering); their requests are missing",
            stream.nodes - traced.len(),
            stream.nodes
        );
    }
    eprintln!(
        "Watching {} node(s) of {} for {:?}",
        traced.len(),
        target.url,
        window
    );
    let bar = super::progress::bar(window.as_secs().max(1), "s");
    let start = Instant::now();
    let end = start + window;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut top = Top::default();
    let mut seen = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = tick.tick() => {
                bar.set_position(start.elapsed().as_secs());
                bar.set_message(format!("{seen} requests"));
            }
            line = stream.next_line() => {
                match serde_json::from_slice::<TraceLine>(&line?.ok_or_else(ended)?) {
                    Ok(TraceLine::Record(r)) => {
                        top.add(&r);
                        seen += 1;
                    }
                    Ok(TraceLine::Dropped { dropped, .. }) => top.dropped += dropped,
                    // A node that traces again after its stream failed, or a heartbeat.
                    _ => {}
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok((top, stream.nodes, traced.len()))
}

fn ms(v: f64) -> String {
    format!("{v:.1}ms")
}

/// The report for people.
fn table(r: &Report) -> String {
    let mut out = format!(
        "{:<28} {:>8} {:>7} {:>10} {:>10} {:>10} {:>11} {:>11}\n",
        "API", "COUNT", "ERRORS", "P50", "P99", "MAX", "IN", "OUT"
    );
    for a in &r.apis {
        out += &format!(
            "{:<28} {:>8} {:>7} {:>10} {:>10} {:>10} {:>11} {:>11}\n",
            a.api,
            a.count,
            a.errors,
            ms(a.p50_ms),
            ms(a.p99_ms),
            ms(a.max_ms),
            format_size(a.bytes_in),
            format_size(a.bytes_out)
        );
    }
    let total: u64 = r.apis.iter().map(|a| a.count).sum();
    out += &format!(
        "{total} requests shown, over {}s on {} of {} node(s)\n",
        r.window_seconds, r.nodes_tracing, r.nodes
    );
    if r.dropped > 0 {
        out += &format!(
            "{} requests were dropped for this reader (it read too slowly) and are not counted\n",
            r.dropped
        );
    }
    out
}
