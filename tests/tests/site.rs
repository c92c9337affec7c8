//! A site of 3 `cairn` processes x 2 drives, parity 2 (one erasure set of 6 spanning the nodes):
//! any node answers any request, losing one node loses nothing, losing two fails with 503 and
//! never a wrong object, a returning node is healed by itself, and a full restart keeps everything.
//! A node that stops answering without closing its connections (paused, as a hung machine or a
//! partition looks) costs the first request that meets it its deadline, not every request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_tests::cluster::Cluster;
use cairn_tests::*;

const B: &str = "site";

/// How long a test waits for the site to react (elections, connection timeouts, healing).
const REACT: Duration = Duration::from_secs(90);

async fn start_site() -> Cluster {
    Cluster::start(3, 2, Some(2)).await
}

/// Objects inlined in metadata and with shard files on every drive.
async fn put_objects(c: &Client, prefix: &str, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let mut objs = BTreeMap::new();
    for (i, len) in [0usize, 1000, 200 * KIB, 3 * MIB + 7]
        .into_iter()
        .enumerate()
    {
        let key = format!("{prefix}-{len}");
        let data = random_bytes(len, seed + i as u64);
        put(c, B, &key, &data).await;
        objs.insert(key, data);
    }
    objs
}

async fn check_objects(c: &Client, objs: &BTreeMap<String, Vec<u8>>, through: &str) {
    for (k, v) in objs {
        assert_bytes_eq(&get(c, B, k).await, v, &format!("{k} through {through}"));
    }
}

/// Part files per drive of node `i` (one shard per drive for every object with shard files).
fn part_counts(site: &Cluster, i: usize) -> Vec<usize> {
    site.node(i)
        .drives()
        .iter()
        .map(|d| find_part_files(d).len())
        .collect()
}

/// Retries an operation that may meet an election in progress (bounded by `REACT`).
async fn eventually<F, Fut, T, E>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let deadline = Instant::now() + REACT;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what} kept failing: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_what_another_wrote() {
    let site = start_site().await;
    let c0 = site.node(0).client();
    let c2 = site.node(2).client_no_retry();
    create_bucket(&c0, B).await;
    // Visible through node 3 as soon as the create returned on node 1.
    ok(
        c2.head_bucket().bucket(B).send().await,
        "HeadBucket on node 3",
    );
    let names: Vec<String> = ok(
        site.node(1).client().list_buckets().send().await,
        "ListBuckets",
    )
    .buckets()
    .iter()
    .filter_map(|b| b.name().map(str::to_string))
    .collect();
    assert_eq!(names, vec![B.to_string()]);

    let objs = put_objects(&site.node(1).client(), "a", 10).await;
    check_objects(&c2, &objs, "node 3").await;
    let listed = list_all_keys(&c0, B).await;
    assert_eq!(listed, objs.keys().cloned().collect::<Vec<_>>());
    // Every drive of every node holds one shard of each of the 2 objects above 128 KiB.
    for i in 0..3 {
        assert_eq!(part_counts(&site, i), vec![2, 2], "node {i}");
    }
    let info = site.node(0).admin_info().await.expect("admin info");
    assert_eq!(info["drives"].as_array().map(Vec::len), Some(6));
    assert!(site.leader().await.is_some(), "one node leads: {info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_node_loses_nothing_and_it_heals_on_return() {
    let mut site = start_site().await;
    create_bucket(&site.node(0).client(), B).await;
    let before = put_objects(&site.node(0).client(), "before", 20).await;

    // Kill the leader: the others must elect a new one and carry on.
    let down = site.leader().await.expect("a leader");
    site.node_mut(down).kill9();
    let up: Vec<usize> = (0..3).filter(|&i| i != down).collect();
    // A survivor's probe says 200 only once the others elected a leader: a load balancer's
    // request then succeeds at the first try.
    assert!(site.wait_health(up[1], "cluster", 200, REACT).await);
    ok(
        site.node(up[1])
            .client_no_retry()
            .create_bucket()
            .bucket("second")
            .send()
            .await,
        "CreateBucket once the probe says 200 after losing the leader",
    );
    let c = site.node(up[0]).client();
    check_objects(&c, &before, "a survivor").await;
    let during = put_objects(&c, "during", 30).await;
    check_objects(&site.node(up[1]).client(), &during, "the other survivor").await;
    assert!(
        site.wait_health(up[0], "cluster", 200, REACT).await,
        "a site with 4 of 6 drives keeps write quorum"
    );

    // Back: it catches up with Raft and is healed without an operator.
    site.restart(down).await;
    ok(
        site.node(down)
            .client()
            .head_bucket()
            .bucket("second")
            .send()
            .await,
        "HeadBucket created while the node was down",
    );
    let full = part_counts(&site, up[0]);
    assert!(
        poll_until(REACT, || async {
            part_counts(&site, down) == full && site.quiet().await
        })
        .await,
        "the returning node was not healed: {:?} vs {full:?}",
        part_counts(&site, down)
    );
    // Prove it: with another node gone, reads need the healed node's shards and metadata.
    site.node_mut(up[1]).kill9();
    let c = site.node(down).client();
    check_objects(&c, &before, "the healed node").await;
    check_objects(&c, &during, "the healed node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_two_nodes_fails_with_503_and_recovers() {
    let mut site = start_site().await;
    create_bucket(&site.node(0).client(), B).await;
    let objs = put_objects(&site.node(0).client(), "x", 40).await;
    site.node_mut(1).kill9();
    site.node_mut(2).kill9();
    let c = site.node(0).client_no_retry();

    let started = Instant::now();
    for k in objs.keys() {
        let r = c.get_object().bucket(B).key(k).send().await;
        let e = r.expect_err("GET without read quorum must fail, never return bytes");
        assert_eq!(err_status(&e), Some(503), "GET {k}: {e:?}");
    }
    let r = c
        .put_object()
        .bucket(B)
        .key("nope")
        .body(random_bytes(MIB, 1).into())
        .send()
        .await;
    assert_eq!(err_status(&r.expect_err("PUT without quorum")), Some(503));
    let r = c.create_bucket().bucket("nope").send().await;
    assert_eq!(
        err_status(&r.expect_err("CreateBucket without quorum")),
        Some(503)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failing requests must not hang: {:?}",
        started.elapsed()
    );
    assert!(site.wait_health(0, "cluster", 503, REACT).await);

    // One node back: service resumes by itself.
    // Once the probe says 200, requests through either live node succeed at the first try.
    site.restart(1).await;
    assert!(site.wait_health(0, "cluster", 200, REACT).await);
    let c = site.node(0).client_no_retry();
    check_objects(&c, &objs, "node 0 after recovery").await;
    assert!(site.wait_health(1, "cluster", 200, REACT).await);
    let c = site.node(1).client_no_retry();
    check_objects(&c, &objs, "node 1 after recovery").await;
    put(&c, B, "after", &random_bytes(1000, 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_buckets_and_objects() {
    let mut site = start_site().await;
    create_bucket(&site.node(2).client(), B).await;
    let objs = put_objects(&site.node(1).client(), "r", 50).await;
    for i in 0..3 {
        assert!(site.node_mut(i).terminate().await.success());
    }
    futures::future::join_all(site.nodes.iter_mut().map(|n| n.boot())).await;
    // A load balancer sends requests to a node once its cluster probe says 200: from then on
    // they succeed at the first try, without a client's retries.
    for i in 0..3 {
        assert!(site.wait_health(i, "cluster", 200, REACT).await, "node {i}");
        let c = site.node(i).client_no_retry();
        check_objects(&c, &objs, &format!("node {i} after restart")).await;
        put(&c, B, &format!("after-restart-{i}"), b"written at once").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_heal_restores_a_node_on_demand() {
    let mut site = start_site().await;
    create_bucket(&site.node(0).client(), B).await;
    site.node_mut(2).kill9();
    let objs = put_objects(&site.node(0).client(), "h", 60).await;
    // Wipe its drives too: nothing but healing can bring the shards back.
    site.node_mut(2).wipe_drive(0);
    site.node_mut(2).wipe_drive(1);
    site.restart(2).await;
    let summary = site.node(0).heal().await;
    assert_eq!(part_counts(&site, 2), part_counts(&site, 0), "{summary}");
    site.node_mut(1).kill9();
    check_objects(&site.node(2).client(), &objs, "node 3 healed on demand").await;
}

/// `cairn admin raft ...` against node `i`; returns the JSON it printed.
async fn raft_cli(site: &Cluster, i: usize, args: &[&str]) -> serde_json::Value {
    let n = site.node(i);
    let mut all: Vec<String> = vec!["admin".into(), "raft".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend([
        "--endpoint".into(),
        n.endpoint(),
        "--access-key".into(),
        n.access_key().into(),
        "--secret-key".into(),
        n.secret_key().into(),
    ]);
    let (status, out, err) = run_cairn(&all, &[], REACT).await;
    assert!(status.success(), "cairn {all:?}: {err}");
    parse_json_summary(&out).unwrap_or_else(|| panic!("no JSON from cairn {all:?}: {out}"))
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_change_without_downtime() {
    let site = start_site().await;
    let status = raft_cli(&site, 1, &["status"]).await;
    assert_eq!(ids(&status["voters"]), vec![1, 2, 3], "{status}");
    let addr3 = status["members"]["3"]
        .as_str()
        .expect("node 3's address")
        .to_string();

    // Demote node 3 (asked through node 2: forwarded to the leader), then promote it back.
    let after = raft_cli(&site, 1, &["remove-voter", "--id", "3"]).await;
    assert_eq!(ids(&after["voters"]), vec![1, 2], "{after}");
    create_bucket(&site.node(0).client(), B).await;
    let back = raft_cli(&site, 2, &["add-voter", "--id", "3", "--addr", &addr3]).await;
    assert_eq!(ids(&back["voters"]), vec![1, 2, 3], "{back}");
    ok(
        site.node(2).client().head_bucket().bucket(B).send().await,
        "HeadBucket on the re-promoted node",
    );

    // Bad input is refused with a clear error, not a crash.
    let n = site.node(0);
    let (status, _, err) = run_cairn(
        &[
            "admin".into(),
            "raft".into(),
            "add-voter".into(),
            "--id".into(),
            "9".into(),
            "--addr".into(),
            "no-port".into(),
            "--endpoint".into(),
            n.endpoint(),
            "--access-key".into(),
            n.access_key().into(),
            "--secret-key".into(),
            n.secret_key().into(),
        ],
        &[],
        REACT,
    )
    .await;
    assert!(!status.success());
    assert!(err.contains("addr"), "{err}");
}

/// Sends `sig` (`STOP`, `CONT`) to node `i`'s process.
fn signal(site: &Cluster, i: usize, sig: &str) {
    let pid = site.node(i).pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_does_not_slow_the_others() {
    let site = start_site().await;
    let leader = site.leader().await.expect("a leader");
    let silent = (leader + 1) % 3;
    let via = (leader + 2) % 3;
    let c = site.node(via).client_no_retry();
    create_bucket(&c, B).await;
    let objs = put_objects(&c, "before", 50).await;

    // Paused, the node keeps its connections open and answers nothing: each call to its drives
    // would wait out its 10 s deadline.
    signal(&site, silent, "STOP");
    let first = Instant::now();
    check_objects(&c, &objs, "a live node, the first time").await;
    eprintln!("first reads with a silent node: {:?}", first.elapsed());
    let mut took = Vec::new();
    let mut during = BTreeMap::new();
    let quick = |t: Instant, what: &str| {
        let d = t.elapsed();
        assert!(
            d < Duration::from_secs(3),
            "{what} waited on the silent node: {d:?}"
        );
        d
    };
    for round in 0..10u64 {
        for (k, v) in &objs {
            let t = Instant::now();
            assert_bytes_eq(&get(&c, B, k).await, v, k);
            took.push(quick(t, k));
        }
        let key = format!("during-{round}");
        let data = random_bytes(200 * KIB, 60 + round);
        let t = Instant::now();
        put(&c, B, &key, &data).await;
        took.push(quick(t, &key));
        during.insert(key, data);
    }
    took.sort();
    let p = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    eprintln!(
        "with one node of three silent: {} requests, p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        p(0.5),
        p(0.99),
        took[took.len() - 1]
    );

    // Back: it answers again, and serves what was written while it was silent.
    signal(&site, silent, "CONT");
    let back = site.node(silent).client();
    for (k, v) in &during {
        let got = eventually("a GET through the node that was silent", || {
            back.get_object().bucket(B).key(k).send()
        })
        .await;
        let got = got.body.collect().await.expect("body").into_bytes();
        assert_bytes_eq(&got, v, k);
    }
}
