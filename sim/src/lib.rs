//! Deterministic simulation of a Cairn site (DESIGN.md §9).
//!
//! One seed drives everything: turmoil's network and scheduler, openraft's election timeouts
//! (through `set_seed`), the nodes' RNGs, the workload and the fault schedule, each from its own
//! named stream (`stream`, `cairn_node::rng`). Running the same
//! seed twice therefore yields the same trace, whose hash [`run_seed`] reports, so any failure is
//! replayed with `cargo run -p cairn-sim -- --seed N`.

pub mod access;
pub mod at_rest;
pub mod client;
pub mod cluster;
pub mod control;
pub mod linearizability;
pub mod lock;
pub mod monotonic;
pub mod multipart;
pub mod net;
pub mod two_sites;
mod workload;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_node::rng::RngStreams;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use cluster::{host_name, Site, NODES};

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Inject faults (crashes, partitions, delays, corruption, clock jumps) during the workload.
    pub faults: bool,
    /// Planted bug: drives acknowledge writes without making them durable and the Raft log skips
    /// its sync, so a crash loses acknowledged data. The checker must notice.
    pub planted_bug: bool,
    /// Planted bug: the lock client removes locked versions through a node's object layer with
    /// their retention stripped first (retention enforcement skipped). The checker must notice.
    /// Implies the lock client.
    pub planted_lock_bug: bool,
    /// Planted bug: root grants the access client's reader `readwrite`, so requests the checker
    /// expects to be denied succeed. Implies the full workload.
    pub planted_access_bug: bool,
    /// Planted bug: the encryption client leaves out its SSE headers, so its objects reach the
    /// drives in plaintext. Implies the full workload.
    pub planted_plaintext_bug: bool,
    /// Planted bug (two sites): half the connections between the sites reach a peer that
    /// acknowledges replica writes without storing them. The convergence check must notice.
    pub planted_replication_bug: bool,
    /// Which clients run besides the S3 workload and the lock client.
    pub workload_set: WorkloadSet,
    /// Workload clients, each with its own bucket and keys.
    pub clients: usize,
    /// When the object-lock client (`lock`) runs besides them.
    pub lock_client: LockClient,
    /// Simulated time the workload (and the fault schedule) runs.
    pub workload: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            faults: true,
            planted_bug: false,
            planted_lock_bug: false,
            planted_access_bug: false,
            planted_plaintext_bug: false,
            planted_replication_bug: false,
            workload_set: WorkloadSet::Full,
            clients: 2,
            lock_client: LockClient::OddSeeds,
            workload: Duration::from_secs(30),
        }
    }
}

/// When the object-lock client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LockClient {
    /// On odd seeds only: even seeds replay exactly the runs they gave before it existed.
    OddSeeds,
    Always,
    Never,
}

impl LockClient {
    pub fn runs(self, seed: u64) -> bool {
        match self {
            Self::OddSeeds => seed % 2 == 1,
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// The clients a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadSet {
    /// The S3 workload and the lock client only: the runs the regression seeds were found in.
    Classic,
    /// Also the control-plane clients (linearizability), the access client (denied requests
    /// never succeed), the encryption client (no plaintext at rest) and the multipart client.
    Full,
}

/// The models of the clients only the full workload runs, for the checker.
#[derive(Clone)]
pub struct Extra {
    pub history: control::History,
    pub access: Rc<RefCell<access::AccessModel>>,
    pub at_rest: Rc<RefCell<at_rest::AtRestModel>>,
}

/// Control-plane clients racing on the shared names.
const CONTROL_CLIENTS: usize = 2;

/// What one seed did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// Hash of everything observable: each operation with its reply and each fault.
    pub trace_hash: String,
    pub ops: u64,
    pub faults: u64,
    pub violations: Vec<String>,
    pub simulated: Duration,
    /// Turmoil itself failed (a host returned an error or the time limit was hit).
    pub sim_error: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.sim_error.is_none()
    }
}

/// Everything the hosts and the fault schedule record; shared on the one simulation thread.
#[derive(Default)]
pub struct Trace {
    hasher: Sha256,
    pub ops: u64,
    pub faults: u64,
    pub violations: Vec<String>,
    pub verbose: bool,
    /// Simulated time for lines logged outside any host (the fault schedule).
    pub(crate) outside: Duration,
}

impl Trace {
    pub fn log(&mut self, line: String) {
        let t = turmoil::sim_elapsed().unwrap_or(self.outside).as_millis();
        let line = format!("{t:>8} {line}");
        if self.verbose {
            println!("{line}");
        }
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
    }

    pub fn violation(&mut self, what: String) {
        self.log(format!("VIOLATION {what}"));
        let t = turmoil::sim_elapsed().unwrap_or(self.outside).as_millis();
        self.violations.push(format!("t={t}ms {what}"));
    }
}

pub type SharedTrace = Rc<RefCell<Trace>>;

/// One scheduled fault action.
#[derive(Debug, Clone)]
enum Action {
    Crash(usize),
    Restart(usize),
    Partition(usize),
    Repair(usize),
    IsolateLeader,
    RepairAll,
    Latency(u64),
    ClockJump(usize, i64),
    Corrupt(usize, usize),
    /// Every link of the node held (messages queued, not lost), as peers and clients see a
    /// process stopped by a long pause or a frozen VM; `Resume` delivers what queued.
    Pause(usize),
    Resume(usize),
}

/// Draws the fault schedule: (time, action) in time order. At most one node is down at a time
/// and at most one shard is corrupted per run, so every acknowledged object stays recoverable
/// (parity 2) and a violation means a bug rather than an impossible demand.
fn schedule(rng: &mut ChaCha20Rng, until: Duration) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    let mut t = Duration::from_secs(3);
    let mut down_until = Duration::ZERO;
    let mut corrupted = false;
    loop {
        t += Duration::from_millis(rng.gen_range(1000..5000));
        if t >= until {
            break;
        }
        let len = Duration::from_millis(rng.gen_range(1000..8000));
        match rng.gen_range(0..6) {
            0 if t >= down_until => {
                let n = rng.gen_range(0..NODES);
                out.push((t, Action::Crash(n)));
                out.push((t + len, Action::Restart(n)));
                down_until = t + len + Duration::from_secs(2);
            }
            1 => {
                let n = rng.gen_range(0..NODES);
                out.push((t, Action::Partition(n)));
                out.push((t + len, Action::Repair(n)));
            }
            2 => {
                out.push((t, Action::IsolateLeader));
                out.push((t + len, Action::RepairAll));
            }
            3 => {
                out.push((t, Action::Latency(rng.gen_range(20..400))));
                out.push((t + len, Action::Latency(50)));
            }
            4 => {
                let n = rng.gen_range(0..NODES);
                out.push((t, Action::ClockJump(n, rng.gen_range(-120..120))));
            }
            5 if !corrupted => {
                corrupted = true;
                out.push((
                    t,
                    Action::Corrupt(
                        rng.gen_range(0..NODES),
                        rng.gen_range(0..cluster::DRIVES_PER_NODE),
                    ),
                ));
            }
            _ => {}
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// Node pauses, from their own random stream (`pauses`) so that the rest of the schedule stays as
/// it was without them: one or two, of 1 to 4 s.
fn pauses(rng: &mut ChaCha20Rng, until: Duration) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    for _ in 0..rng.gen_range(1..=2) {
        let t = Duration::from_millis(rng.gen_range(3000..until.as_millis().max(3001) as u64));
        let len = Duration::from_millis(rng.gen_range(1000..4000));
        let n = rng.gen_range(0..NODES);
        out.push((t, Action::Pause(n)));
        out.push((t + len, Action::Resume(n)));
    }
    out
}

fn others(n: usize) -> Vec<String> {
    (0..NODES).filter(|&m| m != n).map(host_name).collect()
}

fn repair_all(sim: &turmoil::Sim<'_>) {
    for a in 0..NODES {
        for b in a + 1..NODES {
            sim.repair(host_name(a), host_name(b));
        }
    }
}

/// Applies one fault action; returns the new "down" set.
#[allow(clippy::too_many_arguments)]
fn apply(
    sim: &mut turmoil::Sim<'_>,
    site: &Site,
    rng: &mut ChaCha20Rng,
    action: &Action,
    down: &mut BTreeSet<usize>,
    clients: &[String],
    trace: &SharedTrace,
) {
    let mut tr = trace.borrow_mut();
    tr.outside = sim.elapsed();
    tr.faults += 1;
    match *action {
        Action::Crash(n) => {
            site[n].crash(sim);
            down.insert(n);
            tr.log(format!("FAULT crash {}", host_name(n)));
        }
        Action::Restart(n) => {
            if down.remove(&n) {
                sim.bounce(host_name(n));
                tr.log(format!("FAULT restart {}", host_name(n)));
            }
        }
        Action::Partition(n) => {
            for o in others(n) {
                sim.partition(host_name(n), o);
            }
            tr.log(format!("FAULT partition {}", host_name(n)));
        }
        Action::Repair(n) => {
            for o in others(n) {
                sim.repair(host_name(n), o);
            }
            tr.log(format!("FAULT repair {}", host_name(n)));
        }
        Action::IsolateLeader => {
            if let Some(l) = cluster::leader(site) {
                for o in others(l) {
                    sim.partition(host_name(l), o);
                }
                tr.log(format!("FAULT isolate leader {}", host_name(l)));
            } else {
                tr.log("FAULT isolate leader: none".into());
            }
        }
        Action::RepairAll => {
            repair_all(sim);
            tr.log("FAULT repair all".into());
        }
        Action::Latency(ms) => {
            sim.set_max_message_latency(Duration::from_millis(ms));
            tr.log(format!("FAULT latency {ms}ms"));
        }
        Action::ClockJump(n, secs) => {
            site[n]
                .skew_ns
                .fetch_add(secs * 1_000_000_000, Ordering::Relaxed);
            tr.log(format!("FAULT clock {} {secs:+}s", host_name(n)));
        }
        Action::Pause(n) => {
            for o in others(n).iter().chain(clients) {
                sim.hold(host_name(n), o.as_str());
            }
            tr.log(format!("FAULT pause {}", host_name(n)));
        }
        Action::Resume(n) => {
            for o in others(n).iter().chain(clients) {
                sim.release(host_name(n), o.as_str());
            }
            tr.log(format!("FAULT resume {}", host_name(n)));
        }
        Action::Corrupt(n, d) => {
            let disk = &site[n].disks[d];
            let files: Vec<_> = disk
                .durable_files()
                .into_iter()
                .filter(|(p, b)| !b.is_empty() && !p.contains(".sys") && !p.contains("format"))
                .collect();
            if files.is_empty() {
                tr.log(format!("FAULT corrupt {} d{d}: no files", host_name(n)));
            } else {
                let (path, bytes) = &files[rng.gen_range(0..files.len())];
                let off = rng.gen_range(0..bytes.len() as u64);
                let r = disk.corrupt_file(path, off);
                tr.log(format!(
                    "FAULT corrupt {} d{d} {path}@{off}: {}",
                    host_name(n),
                    r.is_ok()
                ));
            }
        }
    }
}

/// The random stream `name` of the run of `seed`: every consumer of a run (each client, the fault
/// schedule, the network, each node) draws from its own stream, so adding one, or a draw to one,
/// leaves every other's numbers as they were (`cairn_node::rng`).
pub(crate) fn stream(seed: u64, name: &str) -> ChaCha20Rng {
    RngStreams::from_u64(seed).stream(name)
}

/// Runs one seed to the end and checks its invariants. A panic anywhere in the site (openraft
/// asserts its storage invariants) is reported as a failure of the seed, not of the process.
pub fn run_seed(seed: u64, opts: &Options, verbose: bool) -> Outcome {
    guarded(seed, || run_inner(seed, opts, verbose))
}

/// Runs `f`, turning a panic into a failed outcome of `seed`.
pub(crate) fn guarded(seed: u64, f: impl FnOnce() -> Outcome) -> Outcome {
    align_task_ids();
    let _clock = monotonic::enter();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(o) => o,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Outcome {
                seed,
                trace_hash: hex::encode(&Sha256::digest(msg.as_bytes())[..8]),
                ops: 0,
                faults: 0,
                violations: vec![format!("panic: {msg}")],
                simulated: Duration::ZERO,
                sim_error: None,
            }
        }
    }
}

/// tokio numbers every task from one process-wide counter, and a host's runtime files its tasks
/// in shards by task id modulo the shard count (4 for a current-thread runtime in tokio 1.54). A
/// crash drops the host's runtime, which cancels its tasks shard by shard, so the order in which
/// a crashed node's connections close (and the simulated network draws their messages' latency)
/// depends on the counter's value modulo 4 when the run began, that is on how many tasks earlier
/// runs in the process spawned. Every run therefore starts with the counter where a fresh
/// process has it (the next id is 1 modulo [`TASK_ID_PERIOD`]), by spawning empty tasks on a
/// throwaway runtime. The counter is process-wide: runs on other threads at the same time (tests
/// in parallel) still move it, so in-process runs go one at a time.
fn align_task_ids() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        loop {
            let id = tokio::spawn(async {}).id();
            let Ok(id) = id.to_string().parse::<u64>() else {
                return;
            };
            if (id + 1) % TASK_ID_PERIOD == 1 {
                return;
            }
        }
    });
}

/// A multiple of any shard count tokio's current-thread runtime uses (a power of two).
const TASK_ID_PERIOD: u64 = 64;

fn run_inner(seed: u64, opts: &Options, verbose: bool) -> Outcome {
    let streams = RngStreams::from_u64(seed);
    cairn_control_plane::raft::set_seed(streams.u64("raft"));
    let trace: SharedTrace = Rc::new(RefCell::new(Trace {
        verbose,
        ..Trace::default()
    }));
    let site = cluster::new_site(&streams);
    if opts.planted_bug {
        for n in site.iter() {
            for d in &n.disks {
                d.skip_fsync(true);
            }
            n.raft.skip_sync(true);
        }
    }
    let mut rng = streams.stream("faults");
    // Which file a corruption hits and where: its own stream, drawn when the fault applies.
    let mut corrupt_rng = streams.stream("corrupt");
    let full = opts.workload_set == WorkloadSet::Full
        || opts.planted_access_bug
        || opts.planted_plaintext_bug;
    let mut faults = if opts.faults {
        schedule(&mut rng, opts.workload)
    } else {
        Vec::new()
    };
    if opts.faults && full {
        let mut pause_rng = streams.stream("pauses");
        faults.extend(pauses(&mut pause_rng, opts.workload));
        faults.sort_by_key(|(t, _)| *t);
    }
    let mut clients: Vec<String> = (0..opts.clients)
        .map(|c| format!("client{}", c + 1))
        .collect();
    let verify_at = opts.workload + Duration::from_secs(15);
    let mut sim = turmoil::Builder::new()
        .rng_seed(streams.u64("network"))
        .simulation_duration(verify_at + Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(50))
        .build();
    for n in site.iter() {
        let state = n.clone();
        sim.host(host_name(n.index), move || cluster::run_node(state.clone()));
    }
    let model = Rc::new(RefCell::new(workload::Model::default()));
    for c in 0..opts.clients {
        sim.client(
            format!("client{}", c + 1),
            workload::run_client(seed, c, opts.workload, model.clone(), trace.clone()),
        );
    }
    if opts.planted_lock_bug || opts.lock_client.runs(seed) {
        clients.push("locker".into());
        sim.client(
            "locker",
            lock::run_lock_client(
                seed,
                opts.workload,
                opts.planted_lock_bug,
                model.clone(),
                site.clone(),
                trace.clone(),
            ),
        );
    }
    let extra = full.then(|| Extra {
        history: Rc::default(),
        access: Rc::default(),
        at_rest: Rc::default(),
    });
    if extra.is_some() {
        clients.extend(
            (0..CONTROL_CLIENTS)
                .map(|c| format!("ctl{}", c + 1))
                .chain(["access".into(), "sealer".into(), "mpu".into()]),
        );
    }
    clients.push("checker".into());
    if let Some(extra) = &extra {
        for c in 0..CONTROL_CLIENTS {
            sim.client(
                format!("ctl{}", c + 1),
                control::run_client(seed, c, opts.workload, extra.history.clone(), trace.clone()),
            );
        }
        sim.client(
            "access",
            access::run_access_client(
                seed,
                opts.workload,
                opts.planted_access_bug,
                extra.access.clone(),
                trace.clone(),
            ),
        );
        sim.client(
            "mpu",
            multipart::run_client(seed, opts.workload, model.clone(), trace.clone()),
        );
        sim.client(
            "sealer",
            at_rest::run_client(
                seed,
                opts.workload,
                opts.planted_plaintext_bug,
                extra.at_rest.clone(),
                trace.clone(),
            ),
        );
    }
    sim.client(
        "checker",
        workload::run_checker(verify_at, model.clone(), extra, site.clone(), trace.clone()),
    );

    let mut down = BTreeSet::new();
    let mut next = 0;
    let mut healed = false;
    let mut sim_error = None;
    loop {
        let now = sim.elapsed();
        while next < faults.len() && faults[next].0 <= now {
            apply(
                &mut sim,
                &site,
                &mut corrupt_rng,
                &faults[next].1,
                &mut down,
                &clients,
                &trace,
            );
            next += 1;
        }
        if !healed && now >= opts.workload {
            // Liveness phase: every fault stops; the site must converge from here.
            healed = true;
            for n in std::mem::take(&mut down) {
                sim.bounce(host_name(n));
            }
            repair_all(&sim);
            for n in 0..NODES {
                for o in others(n).iter().chain(&clients) {
                    sim.release(host_name(n), o.as_str());
                }
            }
            sim.set_max_message_latency(Duration::from_millis(50));
            for n in site.iter() {
                n.skew_ns.store(0, Ordering::Relaxed);
            }
            let mut tr = trace.borrow_mut();
            tr.outside = now;
            tr.log("FAULTS END".into());
        }
        if crate::step(&mut sim, &mut sim_error) {
            break;
        }
    }
    let simulated = sim.elapsed();
    drop(sim);
    outcome(seed, &trace, simulated, sim_error)
}

/// Advances the simulation one step; true once it is over (finished, or failed into `error`).
pub(crate) fn step(sim: &mut turmoil::Sim<'_>, error: &mut Option<String>) -> bool {
    let step = sim.step();
    monotonic::advance(sim.elapsed());
    match step {
        Ok(done) => done,
        Err(e) => {
            *error = Some(e.to_string());
            true
        }
    }
}

/// What a finished run reports: its trace's hash and counters.
pub(crate) fn outcome(
    seed: u64,
    trace: &SharedTrace,
    simulated: Duration,
    sim_error: Option<String>,
) -> Outcome {
    let mut tr = trace.borrow_mut();
    if let Some(e) = &sim_error {
        tr.log(format!("SIM ERROR {e}"));
    }
    let hash = hex::encode(&tr.hasher.clone().finalize()[..8]);
    Outcome {
        seed,
        trace_hash: hash,
        ops: tr.ops,
        faults: tr.faults,
        violations: tr.violations.clone(),
        simulated,
        sim_error,
    }
}
