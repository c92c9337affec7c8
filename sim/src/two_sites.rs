//! Two sites of three nodes, paired by site replication (DESIGN.md §7), under faults that cut
//! the link between them and crash nodes on either side.
//!
//! The sites' clocks are apart (tens of seconds to minutes) and jump during the run. A writer on
//! each site puts and deletes objects in its own bucket and in the other site's, adds IAM users
//! and replaces a policy both change, through its own site only. After the faults stop, the
//! sites must converge: every acknowledged version (object or delete marker) is readable on
//! both sites under its version id with its exact bytes, both sites list the same versions of
//! every key with the same one as its latest, and every node of both sites holds the same
//! buckets, users and policies.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cairn_node::rng::RngStreams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::client::{until_acked_at, Reply, Step, S3};
use crate::cluster::{self, host_name, Site, NODES, S3_PORT};
use crate::workload::{acked, digest, summary, Digest32};
use crate::{Options, Outcome, SharedTrace, Trace};

/// Host-name prefixes (and site names, without the dash).
const SITES: [&str; 2] = ["a-", "b-"];
const KEYS: usize = 4;
/// How long after the faults stop the sites have to converge.
const CONVERGE: Duration = Duration::from_secs(300);

fn bucket_of(site: usize) -> String {
    format!("data-{}", site_name(site))
}

fn site_name(site: usize) -> &'static str {
    SITES[site].trim_end_matches('-')
}

fn host(site: usize, n: usize) -> String {
    format!("{}{}", SITES[site], host_name(n))
}

/// A version some site acknowledged: its bytes' digest, or `None` for a delete marker.
#[derive(Debug, Clone)]
struct Acked {
    bucket: String,
    key: String,
    version_id: String,
    digest: Option<Digest32>,
}

#[derive(Default)]
struct Model {
    paired: bool,
    acked: Vec<Acked>,
    buckets: BTreeSet<String>,
}

type SharedModel = Rc<RefCell<Model>>;

/// The pair's replication identity, as `cairn admin site add` would generate it (the sites'
/// root credentials are not it: neither site holds the other's).
const LINK_KEY: &str = "site-replicator-ab";
const LINK_SECRET: &str = "sim-site-link-secret-0123456789";

fn configure_body(site: usize) -> Bytes {
    let peer = 1 - site;
    let body = serde_json::json!({
        "local": site_name(site),
        "peers": [{
            "name": site_name(peer),
            "endpoint": format!("http://{}:{S3_PORT}", host(peer, 0)),
            "access_key": LINK_KEY,
            "secret_key": LINK_SECRET,
        }],
    });
    Bytes::from(body.to_string())
}

/// Pairs the sites once both have a control plane, then creates one bucket per site.
async fn run_pairing(seed: u64, model: SharedModel, trace: SharedTrace) -> turmoil::Result {
    let mut rng = crate::stream(seed, "pair");
    let mut s3 = S3::new();
    for (site, prefix) in SITES.iter().enumerate() {
        let step = Step {
            what: "site configure",
            method: "POST",
            path: "/cairn/admin/v1/site/configure".into(),
            query: vec![],
            body: configure_body(site),
        };
        if !until_acked_at(&mut s3, &mut rng, &trace, prefix, &step).await {
            trace
                .borrow_mut()
                .violation(format!("site {} could not be paired", site_name(site)));
            return Ok(());
        }
    }
    for (site, prefix) in SITES.iter().enumerate() {
        let bucket = bucket_of(site);
        let step = Step {
            what: "create bucket",
            method: "PUT",
            path: format!("/{bucket}"),
            query: vec![],
            body: Bytes::new(),
        };
        if !until_acked_at(&mut s3, &mut rng, &trace, prefix, &step).await {
            trace
                .borrow_mut()
                .violation(format!("bucket {bucket} could not be created"));
            return Ok(());
        }
        model.borrow_mut().buckets.insert(bucket);
    }
    model.borrow_mut().paired = true;
    Ok(())
}

fn header(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The policy both sites' writers replace at once.
const SHARED_POLICY: &str = "shared";

/// An identity policy whose document names `tag`.
fn policy_naming(tag: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [format!("arn:aws:s3:::{tag}/*")],
        }],
    })
    .to_string()
}

/// One site's writer: requests through its own site's nodes only.
async fn run_writer(
    seed: u64,
    site: usize,
    until: Duration,
    model: SharedModel,
    trace: SharedTrace,
) -> turmoil::Result {
    let mut rng = crate::stream(seed, &format!("writer-{}", site_name(site)));
    let mut s3 = S3::new();
    while !model.borrow().paired {
        if turmoil::sim_elapsed().unwrap_or_default() >= until {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let me = site_name(site);
    let mut n = 0u64;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        n += 1;
        let bucket = bucket_of(if rng.gen_bool(0.7) { site } else { 1 - site });
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let node = host(site, rng.gen_range(0..NODES));
        let path = format!("/{bucket}/{key}");
        let op = rng.gen_range(0..10);
        let line = match op {
            0..=5 => {
                let body = Bytes::from(format!("{me}-{seed}-{n}-").repeat(rng.gen_range(1..400)));
                let d = digest(&body);
                let (r, h) = s3.request_with(&node, "PUT", &path, &[], &[], body).await;
                if acked(&r) {
                    if let Some(id) = header(&h, "x-amz-version-id") {
                        model.borrow_mut().acked.push(Acked {
                            bucket: bucket.clone(),
                            key: key.clone(),
                            version_id: id,
                            digest: Some(d),
                        });
                    }
                }
                let id = header(&h, "x-amz-version-id").unwrap_or_default();
                format!(
                    "PUT {path} {} -> {} {id}",
                    hex::encode(&d[..4]),
                    summary(&r)
                )
            }
            6..=7 => {
                let (r, h) = s3
                    .request_with(&node, "DELETE", &path, &[], &[], Bytes::new())
                    .await;
                if acked(&r) && header(&h, "x-amz-delete-marker").as_deref() == Some("true") {
                    if let Some(id) = header(&h, "x-amz-version-id") {
                        model.borrow_mut().acked.push(Acked {
                            bucket: bucket.clone(),
                            key: key.clone(),
                            version_id: id,
                            digest: None,
                        });
                    }
                }
                let id = header(&h, "x-amz-version-id").unwrap_or_default();
                format!("DELETE {path} -> {} {id}", summary(&r))
            }
            8 if rng.gen_bool(0.5) => {
                // Both sites change one policy: the change with the later stamp must win on
                // both, however far apart their clocks are (`cairn_control_plane::stamp`).
                let document = policy_naming(&format!("{me}-{n}"));
                let r = s3
                    .request(
                        &node,
                        "POST",
                        "/cairn/admin/v1/iam/policy/create",
                        &[("name", SHARED_POLICY)],
                        Bytes::from(document),
                    )
                    .await;
                format!("PUT POLICY {SHARED_POLICY} {me}-{n} -> {}", summary(&r))
            }
            8 => {
                let user = format!("user-{me}-{n}");
                let body = serde_json::json!({
                    "access_key": user,
                    "secret_key": format!("secret-of-{user}-0123456789"),
                });
                let r = s3
                    .request(
                        &node,
                        "POST",
                        "/cairn/admin/v1/iam/user/add",
                        &[],
                        Bytes::from(body.to_string()),
                    )
                    .await;
                format!("ADD USER {user} -> {}", summary(&r))
            }
            _ => {
                let r = s3.request(&node, "GET", &path, &[], Bytes::new()).await;
                format!("GET {path} -> {}", summary(&r))
            }
        };
        {
            let mut tr = trace.borrow_mut();
            tr.ops += 1;
            tr.log(format!("{node} {line}"));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(20..300))).await;
    }
    Ok(())
}

/// (key, version id, is a delete marker, is the key's latest) of every entry of a
/// ListObjectVersions reply.
fn listed(xml: &[u8]) -> Vec<(String, String, bool, bool)> {
    let s = String::from_utf8_lossy(xml);
    let field = crate::client::xml_field;
    let mut out = Vec::new();
    for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        for part in s.split(open.as_str()).skip(1) {
            if let Some(e) = part.split(close.as_str()).next() {
                if let (Some(k), Some(v)) = (field(e, "Key"), field(e, "VersionId")) {
                    let latest = field(e, "IsLatest").as_deref() == Some("true");
                    out.push((k, v, marker, latest));
                }
            }
        }
    }
    out.sort();
    out
}

/// What differs between the sites now; empty once they have converged.
async fn differences(
    s3: &mut S3,
    rng: &mut ChaCha20Rng,
    model: &SharedModel,
    sites: &[Site; 2],
) -> Vec<String> {
    let mut diffs = Vec::new();
    // Control plane: every running node of both sites holds the same buckets, users and
    // policies (the shared one replaced on both sites at once).
    let mut views = BTreeMap::new();
    for site in sites {
        for (i, state) in cluster::control_states(site) {
            let Some(state) = state else {
                diffs.push(format!("{} has no control plane", site[i].host()));
                continue;
            };
            let buckets: Vec<String> = state.buckets.keys().cloned().collect();
            let users: Vec<String> = state.iam.users.keys().cloned().collect();
            let policies = state.iam.policies.clone();
            views.insert(site[i].host(), (buckets, users, policies));
        }
    }
    let distinct: BTreeSet<_> = views.values().collect();
    if distinct.len() > 1 {
        diffs.push(format!("control planes differ: {views:?}"));
    }
    // Objects: both sites list the same versions of every bucket, and the same one of each key
    // as its latest (versions are ordered by hybrid logical clock stamps, not skewed clocks).
    let buckets: Vec<String> = model.borrow().buckets.iter().cloned().collect();
    let mut listings = Vec::new();
    for site in 0..2 {
        let node = host(site, rng.gen_range(0..NODES));
        let mut all = Vec::new();
        for b in &buckets {
            match s3
                .request(
                    &node,
                    "GET",
                    &format!("/{b}"),
                    &[("versions", "")],
                    Bytes::new(),
                )
                .await
            {
                Reply::Status(200, body) => all.extend(
                    listed(&body)
                        .into_iter()
                        .map(|(k, v, m, l)| (b.clone(), k, v, m, l)),
                ),
                r => diffs.push(format!("{node} list {b}: {}", summary(&r))),
            }
        }
        listings.push(all);
    }
    if diffs.is_empty() && listings[0] != listings[1] {
        let only_a: Vec<_> = listings[0]
            .iter()
            .filter(|e| !listings[1].contains(e))
            .collect();
        let only_b: Vec<_> = listings[1]
            .iter()
            .filter(|e| !listings[0].contains(e))
            .collect();
        diffs.push(format!(
            "listings differ: only on a {only_a:?}, only on b {only_b:?}"
        ));
    }
    // Every acknowledged version is on both sites, with its exact bytes.
    let acked = model.borrow().acked.clone();
    for a in &acked {
        for site in 0..2 {
            let node = host(site, rng.gen_range(0..NODES));
            let path = format!("/{}/{}", a.bucket, a.key);
            let r = s3
                .request(
                    &node,
                    "GET",
                    &path,
                    &[("versionId", &a.version_id)],
                    Bytes::new(),
                )
                .await;
            let ok = match (&a.digest, &r) {
                (Some(d), Reply::Status(200, body)) => digest(body) == *d,
                // GET of a delete marker by its version id: 405, as AWS answers.
                (None, Reply::Status(405, _)) => true,
                _ => false,
            };
            if !ok {
                diffs.push(format!(
                    "{node} {path}?versionId={} ({}): {}",
                    a.version_id,
                    if a.digest.is_some() {
                        "object"
                    } else {
                        "marker"
                    },
                    summary(&r)
                ));
            }
        }
    }
    diffs
}

/// After the faults: polls until the sites agree, or reports what still differs.
async fn run_checker(
    verify_at: Duration,
    model: SharedModel,
    sites: [Site; 2],
    trace: SharedTrace,
) -> turmoil::Result {
    tokio::time::sleep(verify_at).await;
    let mut rng = ChaCha20Rng::seed_from_u64(0xc0de);
    let mut s3 = S3::new();
    if !model.borrow().paired {
        return Ok(());
    }
    let deadline = verify_at + CONVERGE;
    loop {
        let diffs = differences(&mut s3, &mut rng, &model, &sites).await;
        let now = turmoil::sim_elapsed().unwrap_or_default();
        if diffs.is_empty() {
            let n = model.borrow().acked.len();
            trace
                .borrow_mut()
                .log(format!("CONVERGED with {n} acknowledged versions"));
            return Ok(());
        }
        if now >= deadline {
            let mut tr = trace.borrow_mut();
            for d in diffs.iter().take(10) {
                tr.violation(format!("sites did not converge: {d}"));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Every link between the two sites is cut.
    Cut,
    /// A node's clock jumps by this many seconds (and stays there).
    ClockJump(usize, usize, i64),
    Mend,
    Crash(usize, usize),
    Restart(usize, usize),
    Latency(u64),
}

/// At most one node per site is down at a time, so each site keeps its quorum.
fn schedule(rng: &mut ChaCha20Rng, until: Duration) -> Vec<(Duration, Fault)> {
    let mut out = Vec::new();
    let mut t = Duration::from_secs(3);
    let mut down_until = [Duration::ZERO; 2];
    loop {
        t += Duration::from_millis(rng.gen_range(1000..5000));
        if t >= until {
            break;
        }
        let len = Duration::from_millis(rng.gen_range(1000..10000));
        match rng.gen_range(0..3) {
            0 => {
                out.push((t, Fault::Cut));
                out.push((t + len, Fault::Mend));
            }
            1 => {
                let s = rng.gen_range(0..2);
                if t >= down_until[s] {
                    let n = rng.gen_range(0..NODES);
                    out.push((t, Fault::Crash(s, n)));
                    out.push((t + len, Fault::Restart(s, n)));
                    down_until[s] = t + len + Duration::from_secs(2);
                }
            }
            _ => {
                out.push((t, Fault::Latency(rng.gen_range(20..400))));
                out.push((t + len, Fault::Latency(50)));
            }
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// Clocks apart from the start: site b's run `offset` seconds off site a's (behind or ahead),
/// each node a little off its site's; plus two jumps of a node's clock during the workload. The
/// skew stays after the faults end: a skewed clock is how a site is, not a fault that heals.
/// Drawn from a stream of their own, so the other faults' schedule is as without them.
fn skews(rng: &mut ChaCha20Rng, sites: &[Site; 2], until: Duration) -> Vec<(Duration, Fault)> {
    let offset = rng.gen_range(30..180) * if rng.gen_bool(0.5) { -1 } else { 1 };
    for (s, site) in sites.iter().enumerate() {
        for n in site.iter() {
            let own = rng.gen_range(-2_000..2_000) * 1_000_000;
            let base = if s == 1 { offset * 1_000_000_000 } else { 0 };
            n.skew_ns
                .store(base + own, std::sync::atomic::Ordering::Relaxed);
        }
    }
    (0..2)
        .map(|_| {
            let at =
                Duration::from_millis(rng.gen_range(3_000..until.as_millis().max(3_001) as u64));
            let jump = Fault::ClockJump(
                rng.gen_range(0..2),
                rng.gen_range(0..NODES),
                rng.gen_range(-120..120),
            );
            (at, jump)
        })
        .collect()
}

fn cut(sim: &mut turmoil::Sim<'_>, on: bool) {
    for a in 0..NODES {
        for b in 0..NODES {
            if on {
                sim.partition(host(0, a), host(1, b));
            } else {
                sim.repair(host(0, a), host(1, b));
            }
        }
    }
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    sites: &[Site; 2],
    fault: Fault,
    down: &mut BTreeSet<(usize, usize)>,
    trace: &SharedTrace,
) {
    let mut tr = trace.borrow_mut();
    tr.faults += 1;
    match fault {
        Fault::Cut => {
            cut(sim, true);
            tr.log("FAULT sites cut apart".into());
        }
        Fault::Mend => {
            cut(sim, false);
            tr.log("FAULT sites mended".into());
        }
        Fault::Crash(s, n) => {
            let node = &sites[s][n];
            node.crash(sim);
            down.insert((s, n));
            tr.log(format!("FAULT crash {}", node.host()));
        }
        Fault::Restart(s, n) => {
            if down.remove(&(s, n)) {
                sim.bounce(sites[s][n].host());
                tr.log(format!("FAULT restart {}", sites[s][n].host()));
            }
        }
        Fault::Latency(ms) => {
            sim.set_max_message_latency(Duration::from_millis(ms));
            tr.log(format!("FAULT latency {ms}ms"));
        }
        Fault::ClockJump(s, n, secs) => {
            sites[s][n]
                .skew_ns
                .fetch_add(secs * 1_000_000_000, std::sync::atomic::Ordering::Relaxed);
            tr.log(format!("FAULT clock {} {secs:+}s", sites[s][n].host()));
        }
    }
}

/// Runs one two-site seed and checks that the sites converge.
pub fn run(seed: u64, opts: &Options, verbose: bool) -> Outcome {
    crate::guarded(seed, || run_inner(seed, opts, verbose))
}

fn run_inner(seed: u64, opts: &Options, verbose: bool) -> Outcome {
    let streams = RngStreams::from_u64(seed);
    cairn_control_plane::raft::set_seed(streams.u64("raft"));
    let trace: SharedTrace = Rc::new(RefCell::new(Trace {
        verbose,
        ..Trace::default()
    }));
    let sites = [
        cluster::new_named_site(&streams, SITES[0]),
        cluster::new_named_site(&streams, SITES[1]),
    ];
    let mut rng = streams.stream("faults");
    let faults = if opts.faults {
        let mut all = schedule(&mut rng, opts.workload);
        all.extend(skews(&mut streams.stream("skew"), &sites, opts.workload));
        all.sort_by_key(|(t, _)| *t);
        all
    } else {
        Vec::new()
    };
    let verify_at = opts.workload + Duration::from_secs(15);
    let mut sim = turmoil::Builder::new()
        .rng_seed(streams.u64("network"))
        .simulation_duration(verify_at + CONVERGE + Duration::from_secs(120))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(50))
        .build();
    for site in &sites {
        for n in site.iter() {
            n.lying_peer.set(opts.planted_replication_bug);
            let state = n.clone();
            sim.host(n.host(), move || cluster::run_node(state.clone()));
        }
    }
    if opts.planted_replication_bug {
        sim.host(crate::net::LYING_PEER, || {
            crate::net::run_lying_peer(cluster::S3_PORT)
        });
    }
    let model: SharedModel = Rc::default();
    sim.client("pair", run_pairing(seed, model.clone(), trace.clone()));
    for site in 0..2 {
        sim.client(
            format!("writer-{}", site_name(site)),
            run_writer(seed, site, opts.workload, model.clone(), trace.clone()),
        );
    }
    sim.client(
        "checker",
        run_checker(verify_at, model.clone(), sites.clone(), trace.clone()),
    );
    let mut down = BTreeSet::new();
    let mut next = 0;
    let mut healed = false;
    let mut sim_error = None;
    loop {
        let now = sim.elapsed();
        trace.borrow_mut().outside = now;
        while next < faults.len() && faults[next].0 <= now {
            apply(&mut sim, &sites, faults[next].1, &mut down, &trace);
            next += 1;
        }
        if !healed && now >= opts.workload {
            healed = true;
            for (s, n) in std::mem::take(&mut down) {
                sim.bounce(sites[s][n].host());
            }
            cut(&mut sim, false);
            sim.set_max_message_latency(Duration::from_millis(50));
            trace.borrow_mut().log("FAULTS END".into());
        }
        if crate::step(&mut sim, &mut sim_error) {
            break;
        }
    }
    let simulated = sim.elapsed();
    drop(sim);
    crate::outcome(seed, &trace, simulated, sim_error)
}
