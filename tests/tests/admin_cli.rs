//! `cairn admin info`, `heal` and `top api` against a real 3-node site, as an operator runs
//! them: `info` prints a table of every node's drives (free space fetched from each node) and
//! `--json` keeps the admin API's JSON; `heal` repairs shards deleted under the running site and
//! prints its summary (its progress spinner runs too, hidden: stderr is no terminal); `top api`
//! counts a known mix of requests spread over the nodes; a user without admin rights is
//! refused clearly by `info` and `top`.

use cairn_tests::admin::{AdminCli, CLI_TIMEOUT};
use cairn_tests::aws_sdk_s3::primitives::ByteStream;
use cairn_tests::cluster::Cluster;
use cairn_tests::*;
use serde_json::Value;

fn host(s: &Server) -> String {
    format!("127.0.0.1:{}", s.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_info_tables_every_drive_and_heal_repairs_with_a_summary() {
    let mut site = Cluster::start(3, 2, None).await;
    let cli = AdminCli::for_server("site", site.node(0)).await;

    // --json: the admin API's answer, every drive with its node, path and room.
    let info = cli.json(&["info", "site", "--json"]).await;
    let drives = info["drives"].as_array().expect("drives");
    assert_eq!(drives.len(), 6, "{info}");
    for n in &site.nodes {
        for d in n.drives() {
            let path = d.display().to_string();
            let row = drives
                .iter()
                .find(|r| r["node"] == host(n) && r["path"] == path.as_str())
                .unwrap_or_else(|| panic!("no drive {} {path} in {info}", host(n)));
            assert_eq!(row["state"], "ok", "{row}");
            // Each node measured its own drives, the answering node asked the others.
            let (free, total) = (row["free_bytes"].as_u64(), row["total_bytes"].as_u64());
            assert!(
                free.is_some() && total.is_some() && free <= total,
                "room of {path} on {}: {row}",
                host(n)
            );
        }
    }
    assert_eq!(info["nodes"].as_array().map(Vec::len), Some(3), "{info}");
    let sets = info["erasure_sets"].as_array().expect("erasure_sets");
    assert!(
        sets.iter()
            .all(|s| s["online"] == s["drives"] && s["write_quorum"].as_u64() > Some(0)),
        "{info}"
    );

    // The table: a row per drive naming its node and path, the sets against their quorums,
    // the control plane's leader.
    let table = cli.ok(&["info", "site"]).await;
    assert!(
        serde_json::from_str::<Value>(&table).is_err(),
        "a table, not JSON: {table}"
    );
    assert!(
        table.contains("NODE") && table.contains("DRIVE") && table.contains("FREE"),
        "{table}"
    );
    for n in &site.nodes {
        for d in n.drives() {
            let path = d.display().to_string();
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(&host(n)) && l.contains(&path) && l.contains(" ok ")),
                "no row for {} {path}:\n{table}",
                host(n)
            );
        }
    }
    let per_set = sets[0]["drives"].as_u64().unwrap();
    assert!(
        table.contains("READ QUORUM") && table.contains(&format!("{per_set}/{per_set}")),
        "{table}"
    );
    assert!(
        table.contains("Control plane: leader node") && table.contains("Site: 3 node(s)"),
        "{table}"
    );

    // Shards deleted under the running site: `heal` rebuilds them and says so in plain text.
    let c = site.node(0).client();
    c.create_bucket().bucket("healme").send().await.unwrap();
    let objects: u64 = 4;
    for i in 0..objects {
        c.put_object()
            .bucket("healme")
            .key(format!("k{i}"))
            .body(ByteStream::from(random_bytes(256 * KIB, i)))
            .send()
            .await
            .unwrap();
    }
    for n in &site.nodes {
        n.wait_background_heal().await;
    }
    let victim = site.node(1).drive(0);
    let removed = find_part_files(victim);
    assert_eq!(
        removed.len(),
        objects as usize,
        "one shard per object on a drive"
    );
    for f in &removed {
        std::fs::remove_file(f).unwrap();
    }
    let (ok, out, err) = cli.output(&["heal", "site"]).await;
    assert!(ok, "heal failed: {out}{err}");
    assert!(
        out.contains(&format!(
            "heal done: {objects} objects scanned, {objects} healed, {objects} shards written"
        )) && out.contains("errors: 0"),
        "{out}{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no progress drawn when stderr is no terminal: {err:?}"
    );
    assert_eq!(
        find_part_files(victim).len(),
        objects as usize,
        "shards back"
    );

    // On a terminal (`script` gives it one) the spinner is drawn; the summary still follows.
    let cmd = format!("{} admin heal site", cairn_bin().display());
    let tty = tokio::time::timeout(
        CLI_TIMEOUT,
        tokio::process::Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .env("CAIRN_CONFIG_DIR", cli.dir())
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("heal on a terminal exits")
    .expect("script (util-linux)");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(
        tty.status.success()
            && shown.contains("healing")
            && shown.contains(&format!("heal done: {objects} objects scanned, 0 healed")),
        "{shown}"
    );

    // A user with S3 rights only is refused the site's layout, with the reason.
    cli.plain_user("site", site.node(0)).await;
    let out = cli.fails(&["info", "plain"]).await;
    assert!(
        out.contains("info failed: HTTP 403") && out.contains("AccessDenied"),
        "{out}"
    );
    let out = cli.fails(&["heal", "plain"]).await;
    assert!(out.contains("403") && out.contains("AccessDenied"), "{out}");

    // A node down: its drives show offline, their room unknown, and the set short of two.
    site.node_mut(2).kill9();
    let down = host(site.node(2));
    let table = cli.ok(&["info", "site"]).await;
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with(&down)).collect();
    assert_eq!(rows.len(), 2, "{table}");
    for r in rows {
        let cols: Vec<&str> = r.split_whitespace().collect();
        assert_eq!(cols[3..], ["offline", "-", "-"], "{table}");
    }
    let short = format!("{}/{per_set}", per_set - 2);
    assert!(table.contains(&short), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_top_api_counts_a_known_mix_of_requests_across_nodes() {
    let site = Cluster::start(3, 1, None).await;
    let cli = AdminCli::for_server("site", site.node(0)).await;
    site.node(0)
        .client()
        .create_bucket()
        .bucket("topped")
        .send()
        .await
        .unwrap();

    // Two readers of the same window: JSON and the table. The window opens once every node
    // traces, which each says on stderr.
    let window = "8s";
    let json = cli.spawn(&["top", "api", "site", "--window", window, "--json"]);
    let table = cli.spawn(&["top", "api", "site", "--window", window, "--count", "2"]);
    json.until_stderr("Watching 3 node(s)").await;
    table.until_stderr("Watching 3 node(s)").await;

    // 5 PUTs and 3 GETs (one of a missing key), spread over the three nodes.
    let body = b"0123456789";
    for i in 0..5 {
        site.node(i % 3)
            .client()
            .put_object()
            .bucket("topped")
            .key(format!("k{i}"))
            .body(ByteStream::from_static(body))
            .send()
            .await
            .unwrap();
    }
    for (i, key) in ["k0", "k1", "missing"].iter().enumerate() {
        let got = site
            .node((i + 1) % 3)
            .client()
            .get_object()
            .bucket("topped")
            .key(*key)
            .send()
            .await;
        assert_eq!(got.is_ok(), *key != "missing", "GET {key}");
    }

    let report: Value = serde_json::from_str(&json.finish().await).expect("top --json");
    let api = |name: &str| {
        report["apis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["api"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    };
    let (put, get) = (api("PutObject"), api("GetObject"));
    assert_eq!(
        (put["count"].clone(), put["errors"].clone()),
        (5.into(), 0.into()),
        "{report}"
    );
    assert_eq!(put["bytes_in"], 5 * body.len(), "{report}");
    assert_eq!(
        (get["count"].clone(), get["errors"].clone()),
        (3.into(), 1.into()),
        "{report}"
    );
    assert_eq!(
        get["bytes_out"].as_u64().map(|b| b >= 2 * 10),
        Some(true),
        "{report}"
    );
    for a in [&put, &get] {
        let (p50, p99, max) = (
            a["p50_ms"].as_f64().unwrap(),
            a["p99_ms"].as_f64().unwrap(),
            a["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{a}");
    }
    assert_eq!(
        (report["nodes"].clone(), report["nodes_tracing"].clone()),
        (3.into(), 3.into())
    );
    // Most frequent first.
    assert_eq!(report["apis"][0]["api"], "PutObject", "{report}");

    let text = table.finish().await;
    let rows: Vec<&str> = text.lines().collect();
    assert!(
        rows[0].starts_with("API") && rows[0].contains("P99"),
        "{text}"
    );
    let cols = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(cols(rows[1])[..3], ["PutObject", "5", "0"], "{text}");
    assert_eq!(cols(rows[2])[..3], ["GetObject", "3", "1"], "{text}");
    assert!(
        rows[3].contains("on 3 of 3 node(s)"),
        "--count 2 shows two rows: {text}"
    );

    // Without admin:ServerTrace, top is refused with the reason.
    cli.plain_user("site", site.node(0)).await;
    let out = cli.fails(&["top", "api", "plain", "--window", "1"]).await;
    assert!(
        out.contains("top failed: HTTP 403") && out.contains("AccessDenied"),
        "{out}"
    );
}
