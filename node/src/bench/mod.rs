//! `cairn bench`: a warp-like S3 load generator.
//!
//! It creates the bucket if needed, uploads `--objects` objects for the `get` and `mixed` workloads, runs
//! `--concurrency` workers back to back for `--duration`, deletes what it wrote, and reports per operation
//! type the successful operations, errors, MiB/s, objects/s and latency percentiles (time to the last byte).
//!
//! ```text
//! cairn bench --access-key KEY --secret-key SECRET --op put --size 1MiB --concurrency 16 --duration 30s
//! ```
//!
//! Modules: [`units`] (option parsing), [`body`] (generated bodies), [`client`] (HTTP/S3),
//! [`stats`] (histograms and the report), [`workload`] (workers, prepare and cleanup); `mock_s3` holds the
//! end-to-end tests against an in-memory S3 server.

pub mod body;
pub mod client;
pub mod stats;
pub use crate::units;
pub mod workload;

#[cfg(test)]
mod mock_s3;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::client::S3Client;
use self::stats::{ReportHeader, Stats};
use self::workload::{Plan, Shared, Worker, Workload};
use crate::sign::Signer;

/// Generate S3 load against a deployment and report throughput and latency (warp-like).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// S3 endpoint (http only; path-style addressing).
    #[arg(long, env = "CAIRN_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    pub endpoint: String,
    /// Access key id.
    #[arg(long, env = "CAIRN_ACCESS_KEY")]
    pub access_key: String,
    /// Secret access key.
    #[arg(long, env = "CAIRN_SECRET_KEY", hide_env_values = true)]
    pub secret_key: String,
    /// Bucket to use; created if it does not exist.
    #[arg(long, default_value = "cairn-bench")]
    pub bucket: String,
    /// Workload: `put` uploads new objects, `get` downloads prepared ones, `mixed` is 45% GET, 30% STAT (HEAD),
    /// 15% PUT, 10% DELETE over prepared objects.
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    pub op: Workload,
    /// Object size: a byte count or 4KiB, 1MiB, 64MiB, 1GiB (KiB/MiB/GiB, K/M/G = 1024; KB/MB/GB = 1000).
    #[arg(long, default_value = "1MiB", value_parser = units::parse_size)]
    pub size: u64,
    /// Parallel requests (one worker and one connection each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub concurrency: u32,
    /// How long to measure: 20s, 1m, 1m30s, 500ms.
    #[arg(long, default_value = "20s", value_parser = units::parse_duration)]
    pub duration: Duration,
    /// Objects uploaded before a get or mixed run (raised to --concurrency if lower).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub objects: u32,
    /// Region used in signatures (and for the bucket's location when it is not us-east-1).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Print the report as JSON on stdout (progress and errors still go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Server-side encryption for the objects written: `s3` sends
    /// `x-amz-server-side-encryption: AES256` (the server needs a KMS).
    #[arg(long, value_enum)]
    pub sse: Option<Sse>,
    /// Leave the objects the run wrote instead of deleting them.
    #[arg(long)]
    pub no_cleanup: bool,
}

/// `--sse` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sse {
    /// SSE-S3: the server encrypts under its KMS's default key.
    S3,
}

/// Runs the benchmark to completion on its own multi-threaded runtime.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    validate_bucket_name(&args.bucket)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-bench")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: BenchArgs) -> anyhow::Result<()> {
    let concurrency = args.concurrency as usize;
    let workload = args.op;
    let objects = if workload.needs_objects() {
        (args.objects as usize).max(concurrency)
    } else {
        0
    };
    let plan = Arc::new(Plan {
        workload,
        bucket: args.bucket.clone(),
        prefix: format!("bench-{:016x}", rand::random::<u64>()),
        size: args.size,
        objects,
        concurrency,
        seed: rand::random(),
    });
    let signer = Signer::new(&args.access_key, &args.secret_key, &args.region, "s3");
    let mut client = S3Client::new(&args.endpoint, signer, concurrency)?;
    if args.sse == Some(Sse::S3) {
        client = client.with_sse_s3();
    }

    // First Ctrl-C: stop the current phase and clean up. Second: exit at once.
    let interrupt = CancellationToken::new();
    tokio::spawn({
        let interrupt = interrupt.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "cairn bench: interrupted, stopping (Ctrl-C again to exit without cleaning up)"
                );
                interrupt.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        }
    });

    client
        .clone()
        .ensure_bucket(&plan.bucket, &args.region)
        .await
        .with_context(|| {
            format!(
                "checking or creating bucket {:?} at {}",
                plan.bucket, args.endpoint
            )
        })?;

    let header = ReportHeader {
        workload: workload.name().to_owned(),
        endpoint: args.endpoint.clone(),
        bucket: plan.bucket.clone(),
        object_size: plan.size,
        concurrency,
        objects,
    };

    if workload.needs_objects() {
        eprintln!(
            "cairn bench: uploading {objects} objects of {} to {}/{}/",
            units::format_size(plan.size),
            plan.bucket,
            plan.prefix
        );
        let started = Instant::now();
        let prepared = tokio::select! {
            r = workload::prepare(&plan, &client) => r,
            () = interrupt.cancelled() => Err(anyhow::anyhow!("interrupted while uploading objects")),
        };
        if let Err(e) = prepared {
            finish_cleanup(&plan, &client, &[], args.no_cleanup).await;
            return Err(e);
        }
        eprintln!(
            "cairn bench: uploaded in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }

    eprintln!(
        "cairn bench: {} of {} objects, {concurrency} workers, for {:.1}s",
        workload.name(),
        units::format_size(plan.size),
        args.duration.as_secs_f64()
    );
    let stop = interrupt.child_token();
    let shared = Arc::new(Shared::new(stop.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let deadline = started + args.duration;
    for id in 0..concurrency {
        tasks.spawn(Worker::new(id, plan.clone(), client.clone()).run(shared.clone()));
    }
    tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => stop.cancel(),
                () = stop.cancelled() => {}
            }
        }
    });

    let mut stats = Stats::default();
    let mut puts_created = Vec::with_capacity(concurrency);
    let mut worker_failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => {
                stats.merge(&result.stats);
                puts_created.push((result.id, result.puts_created));
            }
            Err(e) => worker_failure = Some(e.to_string()),
        }
    }
    let elapsed = started.elapsed();

    finish_cleanup(&plan, &client, &puts_created, args.no_cleanup).await;

    if let Some(e) = worker_failure {
        anyhow::bail!("a benchmark worker failed: {e}");
    }
    let report = stats.report(elapsed, header);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    if stats.successes() == 0 {
        match shared.first_error() {
            Some(first) => anyhow::bail!(
                "all {} requests failed; first error: {first}",
                stats.errors()
            ),
            None => anyhow::bail!("no request completed within {:.1}s", elapsed.as_secs_f64()),
        }
    }
    Ok(())
}

/// Deletes what the run wrote unless `--no-cleanup`; failures are reported, not fatal.
async fn finish_cleanup(
    plan: &Arc<Plan>,
    client: &S3Client,
    puts_created: &[(usize, u64)],
    keep: bool,
) {
    let written = if plan.workload.needs_objects() {
        plan.objects as u64
    } else {
        0
    };
    let total = written + puts_created.iter().map(|&(_, n)| n).sum::<u64>();
    if total == 0 {
        return;
    }
    if keep {
        eprintln!(
            "cairn bench: leaving {total} objects under {}/{}/",
            plan.bucket, plan.prefix
        );
        return;
    }
    eprintln!(
        "cairn bench: deleting {total} objects under {}/{}/",
        plan.bucket, plan.prefix
    );
    let (failures, first) = workload::cleanup(plan, client, puts_created).await;
    if failures > 0 {
        eprintln!(
            "cairn bench: warning: {failures} objects could not be deleted; first error: {}",
            first.unwrap_or_default()
        );
    }
}

/// Rejects bucket names S3 would refuse, before sending anything.
fn validate_bucket_name(name: &str) -> anyhow::Result<()> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let edges_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && valid_chars && edges_ok {
        Ok(())
    } else {
        anyhow::bail!(
            "invalid bucket name {name:?}: 3 to 63 lowercase letters, digits, '-' or '.', starting and ending \
             with a letter or digit"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn parses_arguments() {
        let cli = Cli::try_parse_from([
            "cairn",
            "--access-key",
            "a",
            "--secret-key",
            "s",
            "--op",
            "get",
            "--size",
            "64MiB",
            "--duration",
            "1m",
            "--concurrency",
            "4",
            "--json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let b = cli.bench;
        assert_eq!(b.op, Workload::Get);
        assert_eq!(b.size, 64 << 20);
        assert_eq!(b.duration, Duration::from_secs(60));
        assert_eq!(b.concurrency, 4);
        assert_eq!(b.objects, 64);
        assert_eq!(b.bucket, "cairn-bench");
        assert_eq!(b.region, "us-east-1");
        assert!(b.json && !b.no_cleanup);
        assert!(Cli::try_parse_from([
            "cairn",
            "--access-key",
            "a",
            "--secret-key",
            "s",
            "--size",
            "4XB"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "cairn",
            "--access-key",
            "a",
            "--secret-key",
            "s",
            "--concurrency",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn bucket_names() {
        assert!(validate_bucket_name("cairn-bench").is_ok());
        assert!(validate_bucket_name("a.b-c1").is_ok());
        assert!(validate_bucket_name("ab").is_err());
        assert!(validate_bucket_name("Upper").is_err());
        assert!(validate_bucket_name("-dash").is_err());
        assert!(validate_bucket_name("under_score").is_err());
    }
}
