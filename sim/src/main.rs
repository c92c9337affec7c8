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
    /// Run a range of seeds, `A..B` (B excluded), each in a child process (`--seed N`), and stop
    /// at the first failure.
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
    /// With --two-sites: plant a replication bug (half the links between the sites reach a
    /// peer that acknowledges replica writes and stores nothing) to check the checker.
    #[arg(long)]
    planted_replication_bug: bool,
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
    /// Two sites paired by site replication instead of one site: faults cut the sites apart
    /// and crash nodes; the sites must converge afterwards.
    #[arg(long)]
    two_sites: bool,
    /// With --seeds: run every seed and list the failures instead of stopping at the first.
    #[arg(long)]
    keep_going: bool,
    /// With --seeds: run the seeds one after another in this process instead of a child each.
    /// The traces are the same (replay is exact in one process too) and so is the speed; a seed
    /// that aborts the process takes the rest of the range down with it.
    #[arg(long)]
    in_process: bool,
    /// Run every seed this many times in this process, one after another, and fail a seed
    /// whose traces differ: a check that nothing of one run leaks into the next.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Print every trace line.
    #[arg(long, short)]
    verbose: bool,
}

/// The C library's `clock_gettime`, replaced in this process (the executable's definition wins
/// over the shared library's): the thread running a simulation reads simulated monotonic time, so
/// dependencies timing things with `std::time::Instant` replay exactly
/// (`cairn_sim::monotonic`).
///
/// # Safety
/// The C function's contract: `tp` is valid for writing a `timespec`.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(
    clock: libc::clockid_t,
    tp: *mut libc::timespec,
) -> libc::c_int {
    // SAFETY: the caller's contract is the C function's.
    unsafe { cairn_sim::monotonic::clock_gettime(clock, tp) }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.verbose {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    anyhow::ensure!(
        args.two_sites || !args.planted_replication_bug,
        "--planted-replication-bug plants its bug between two sites: add --two-sites"
    );
    let opts = Options {
        faults: !args.no_faults,
        planted_bug: args.planted_bug,
        planted_lock_bug: args.planted_lock_bug,
        planted_access_bug: args.planted_access_bug,
        planted_plaintext_bug: args.planted_plaintext_bug,
        planted_replication_bug: args.planted_replication_bug,
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
    let flags = replay_flags(&args);
    let here = range.end - range.start == 1 || args.in_process || args.repeat > 1;
    for seed in range {
        let ok = if here {
            let mut first = None;
            let mut ok = true;
            for _ in 0..args.repeat.max(1) {
                runs += 1;
                let (passed, hash) = run_here(seed, &opts, args.two_sites, args.verbose, &mut ops);
                let first = first.get_or_insert_with(|| hash.clone());
                if *first != hash {
                    println!("  replay differs: trace {first} first, {hash} now");
                }
                ok &= passed && *first == hash;
            }
            ok
        } else {
            runs += 1;
            run_child(seed, &flags, &mut ops)?
        };
        if !ok {
            let shown: String = flags.iter().map(|f| format!(" {f}")).collect();
            println!("replay: cargo run -p cairn-sim -- --seed {seed}{shown} --verbose");
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

/// Runs one seed in this process and prints its line (and violations); whether it passed, and
/// its trace hash.
fn run_here(
    seed: u64,
    opts: &Options,
    two_sites: bool,
    verbose: bool,
    ops: &mut u64,
) -> (bool, String) {
    let t = Instant::now();
    let o = if two_sites {
        cairn_sim::two_sites::run(seed, opts, verbose)
    } else {
        run_seed(seed, opts, verbose)
    };
    *ops += o.ops;
    println!(
        "seed {seed}: trace {} ops {} faults {} simulated {:.1}s wall {:.2}s {}",
        o.trace_hash,
        o.ops,
        o.faults,
        o.simulated.as_secs_f64(),
        t.elapsed().as_secs_f64(),
        if o.ok() { "ok" } else { "FAILED" }
    );
    for v in &o.violations {
        println!("  violation: {v}");
    }
    if let Some(e) = &o.sim_error {
        println!("  simulation error: {e}");
    }
    (o.ok(), o.trace_hash)
}

/// Runs one seed of a range in a child process, which prints what `--seed N` prints; a seed
/// that aborts (a panic while panicking, a stack overflow) fails alone.
fn run_child(seed: u64, flags: &[String], ops: &mut u64) -> anyhow::Result<bool> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--seed")
        .arg(seed.to_string())
        .args(flags)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The child's own summary and replay lines are the parent's to print.
    let own = |l: &&str| {
        !l.contains(" seeds in ") && !l.starts_with("failed seeds") && !l.starts_with("replay:")
    };
    for line in text.lines().filter(own) {
        println!("{line}");
        if let Some(n) = line
            .split_once(" ops ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            *ops += n;
        }
    }
    Ok(out.status.success())
}

/// The flags that select this run's configuration, for a child or a replay line.
fn replay_flags(args: &Args) -> Vec<String> {
    let mut flags = Vec::new();
    for (on, flag) in [
        (args.planted_bug, "--planted-bug"),
        (args.planted_lock_bug, "--planted-lock-bug"),
        (args.planted_access_bug, "--planted-access-bug"),
        (args.planted_plaintext_bug, "--planted-plaintext-bug"),
        (args.planted_replication_bug, "--planted-replication-bug"),
        (args.no_faults, "--no-faults"),
        (args.two_sites, "--two-sites"),
    ] {
        if on {
            flags.push(flag.to_string());
        }
    }
    if args.workload != WorkloadSet::Full {
        flags.extend(["--workload".into(), "classic".into()]);
    }
    if args.lock_client != LockClient::OddSeeds {
        flags.push("--lock-client".into());
        flags.push(
            format!("{:?}", args.lock_client)
                .to_lowercase()
                .replace("oddseeds", "odd-seeds"),
        );
    }
    flags
}
