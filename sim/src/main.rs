//! `cairn-sim`: run one seed (`--seed N`, prints its trace hash) or a range (`--seeds A..B`).

use std::time::Instant;

use clap::Parser;

use cairn_sim::{run_seed, LockClient, Options, WorkloadSet};

#[derive(Parser)]
#[command(about = "Deterministic simulation of a Cairn site")]
struct Args {
    /// Run this one seed and print its trace hash.
    #[arg(long)]
    seed: Option<u64>,
    /// Run a range of seeds, `A..B` (B excluded), and stop at the first failure.
    #[arg(long)]
    seeds: Option<String>,
    /// Plant a durability bug (unsynced writes acknowledged) to check the checker.
    #[arg(long)]
    planted_bug: bool,
    /// Plant an object-lock bug (locked versions removed with retention skipped) to check the
    /// checker; runs the lock client whatever --lock-client says.
    #[arg(long)]
    planted_lock_bug: bool,
    /// Plant an authorization bug (the reader is granted `readwrite`) to check the checker.
    #[arg(long)]
    planted_access_bug: bool,
    /// Plant an encryption bug (the encryption client's SSE headers are left out) to check the
    /// checker.
    #[arg(long)]
    planted_plaintext_bug: bool,
    /// Which clients run: `classic` (the S3 workload and the lock client, as the regression
    /// seeds were found) or `full` (also the control-plane, access and encryption clients).
    #[arg(long, value_enum, default_value = "full")]
    workload: WorkloadSet,
    /// When the object-lock client runs besides the two plain clients.
    #[arg(long, value_enum, default_value = "odd-seeds")]
    lock_client: LockClient,
    /// No faults: only the workload.
    #[arg(long)]
    no_faults: bool,
    /// With --seeds: run every seed and list the failures instead of stopping at the first.
    #[arg(long)]
    keep_going: bool,
    /// Print every trace line.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.verbose {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let opts = Options {
        faults: !args.no_faults,
        planted_bug: args.planted_bug,
        planted_lock_bug: args.planted_lock_bug,
        planted_access_bug: args.planted_access_bug,
        planted_plaintext_bug: args.planted_plaintext_bug,
        workload_set: args.workload,
        lock_client: args.lock_client,
        ..Options::default()
    };
    let range = match (&args.seed, &args.seeds) {
        (Some(s), _) => *s..*s + 1,
        (None, Some(r)) => {
            let (a, b) = r
                .split_once("..")
                .ok_or_else(|| anyhow::anyhow!("--seeds wants A..B"))?;
            a.parse()?..b.parse()?
        }
        (None, None) => 0..1,
    };
    let started = Instant::now();
    let (mut ops, mut runs) = (0u64, 0u64);
    let mut failed = Vec::new();
    for seed in range {
        let t = Instant::now();
        let o = run_seed(seed, &opts, args.verbose);
        runs += 1;
        ops += o.ops;
        println!(
            "seed {seed}: trace {} ops {} faults {} simulated {:.1}s wall {:.2}s {}",
            o.trace_hash,
            o.ops,
            o.faults,
            o.simulated.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            if o.ok() { "ok" } else { "FAILED" }
        );
        if !o.ok() {
            for v in &o.violations {
                println!("  violation: {v}");
            }
            if let Some(e) = &o.sim_error {
                println!("  simulation error: {e}");
            }
            let mut flags = String::new();
            if args.planted_bug {
                flags.push_str(" --planted-bug");
            }
            if args.planted_lock_bug {
                flags.push_str(" --planted-lock-bug");
            }
            if args.planted_access_bug {
                flags.push_str(" --planted-access-bug");
            }
            if args.planted_plaintext_bug {
                flags.push_str(" --planted-plaintext-bug");
            }
            if args.workload != WorkloadSet::Full {
                flags.push_str(" --workload classic");
            }
            if args.lock_client != LockClient::OddSeeds {
                flags.push_str(&format!(" --lock-client {:?}", args.lock_client).to_lowercase());
            }
            println!("replay: cargo run -p cairn-sim -- --seed {seed}{flags} --verbose");
            failed.push(seed);
            if !args.keep_going {
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{runs} seeds in {secs:.1}s: {:.1} seeds/min, {:.0} ops/s",
        runs as f64 * 60.0 / secs,
        ops as f64 / secs
    );
    if !failed.is_empty() {
        println!("failed seeds: {failed:?}");
        std::process::exit(1);
    }
    Ok(())
}
