//! Erasure coding on 6 drives with parity 2: drive loss, heal, bit rot, and what happens
//! when more drives are lost than parity allows (errors, never wrong bytes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::CompletedPart;
use cairn_tests::*;

const B: &str = "erasure";

/// Objects of several sizes: inlined (<= 128 KiB) and with shard files, plus a multipart.
async fn put_objects(c: &Client) -> BTreeMap<String, Vec<u8>> {
    create_bucket(c, B).await;
    let mut objs = BTreeMap::new();
    for (i, len) in [
        0usize,
        1,
        1000,
        128 * KIB,
        128 * KIB + 1,
        700 * KIB,
        MIB + 1,
        5 * MIB + 3,
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("obj-{len}");
        let data = random_bytes(len, 1000 + i as u64);
        put(c, B, &key, &data).await;
        objs.insert(key, data);
    }
    // A 2-part multipart object (5 MiB + 1 MiB + 11).
    let key = "multipart".to_string();
    let p1 = random_bytes(5 * MIB, 2000);
    let p2 = random_bytes(MIB + 11, 2001);
    let id = ok(
        c.create_multipart_upload().bucket(B).key(&key).send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .unwrap()
    .to_string();
    let mut parts = Vec::new();
    for (n, p) in [&p1, &p2].into_iter().enumerate() {
        let r = ok(
            c.upload_part()
                .bucket(B)
                .key(&key)
                .upload_id(&id)
                .part_number(n as i32 + 1)
                .body(ByteStream::from(p.clone()))
                .send()
                .await,
            "UploadPart",
        );
        parts.push(
            CompletedPart::builder()
                .part_number(n as i32 + 1)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    complete_multipart(c, B, &key, &id, parts).await;
    objs.insert(key, [p1, p2].concat());
    objs
}

async fn verify_all(c: &Client, objs: &BTreeMap<String, Vec<u8>>, when: &str) {
    for (k, v) in objs {
        assert_bytes_eq(&get(c, B, k).await, v, &format!("{k} {when}"));
        // A range read in the middle of each object too.
        if v.len() > 10 {
            let (s, e) = (v.len() / 3, v.len() / 3 + v.len() / 4);
            let (_, body) = get_range(c, B, k, &format!("bytes={s}-{e}")).await;
            assert_bytes_eq(&body, &v[s..=e], &format!("{k} range {s}-{e} {when}"));
        }
    }
    let keys = list_all_keys(c, B).await;
    assert_eq!(
        keys,
        objs.keys().cloned().collect::<Vec<_>>(),
        "listing {when}"
    );
}

fn heal_count(summary: &serde_json::Value, field: &str) -> u64 {
    summary
        .get(field)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("heal summary has no numeric {field}: {summary}"))
}

/// The summary's optional error count (not part of the contract) must be zero if present.
#[track_caller]
fn assert_no_heal_errors(summary: &serde_json::Value) {
    if let Some(e) = summary.get("errors") {
        assert_eq!(e.as_u64(), Some(0), "heal reported errors: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_two_drives_heal_then_lose_two_others() {
    let mut srv = Server::start_with(ServerOptions::new(6).parity(2)).await;
    let objs = put_objects(&srv.client()).await;
    verify_all(&srv.client(), &objs, "before any failure").await;
    let n_large = objs.values().filter(|v| v.len() > 128 * KIB).count();
    for d in srv.drives() {
        assert!(
            !find_part_files(d).is_empty(),
            "no part.N shard files under {} for {n_large} large objects",
            d.display()
        );
    }

    // Lose drives 1 and 2 (indices 0, 1): everything still reads, and after
    // `cairn admin heal` (which returns once everything is healed; the server may also heal
    // blank drives by itself) every drive holds its shards again.
    let shard_files = |srv: &Server, i: usize| find_part_files(srv.drive(i)).len();
    let per_drive = shard_files(&srv, 5);
    let n = objs.len() as u64;
    srv.kill9();
    srv.wipe_drive(0);
    srv.wipe_drive(1);
    srv.restart().await;
    for i in 0..2 {
        assert!(
            srv.drive(i).join(".cairn/format.json").is_file(),
            "wiped drive {i} was re-formatted"
        );
    }
    verify_all(&srv.client(), &objs, "with drives 0 and 1 wiped").await;
    let summary = srv.heal().await;
    assert_eq!(
        heal_count(&summary, "objects_scanned"),
        n,
        "objects_scanned: {summary}"
    );
    assert_no_heal_errors(&summary);
    for i in 0..6 {
        assert_eq!(
            shard_files(&srv, i),
            per_drive,
            "part files on drive {i} after heal"
        );
    }

    // Shard files deleted under a running server: only `cairn admin heal` restores them. The
    // start-up heal must be over first, or it may repair some of them before the admin heal.
    srv.wait_background_heal().await;
    let mut removed = 0;
    for i in 0..2 {
        for f in find_part_files(srv.drive(i)) {
            std::fs::remove_file(f).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 2 * per_drive);
    let summary = srv.heal().await;
    assert_eq!(
        heal_count(&summary, "objects_scanned"),
        n,
        "objects_scanned: {summary}"
    );
    assert_eq!(
        heal_count(&summary, "objects_healed"),
        n_large as u64,
        "objects_healed: {summary}"
    );
    // One shard per (object, drive), or one per part file (the multipart object has two).
    let written = heal_count(&summary, "shards_written");
    assert!(
        written == removed as u64 || written == 2 * n_large as u64,
        "shards_written {written}: expected {removed} part files or {} object shards: {summary}",
        2 * n_large
    );
    assert_no_heal_errors(&summary);
    for i in 0..6 {
        assert_eq!(
            shard_files(&srv, i),
            per_drive,
            "part files on drive {i} after the second heal"
        );
    }
    // Healing again finds nothing to do.
    let again = srv.heal().await;
    assert_eq!(
        heal_count(&again, "objects_scanned"),
        n,
        "third heal: {again}"
    );
    assert_eq!(
        heal_count(&again, "objects_healed"),
        0,
        "third heal: {again}"
    );
    assert_eq!(
        heal_count(&again, "shards_written"),
        0,
        "third heal: {again}"
    );

    // Lose drives 3 and 4 (indices 2, 3): only the healed drives make reads possible.
    srv.kill9();
    srv.wipe_drive(2);
    srv.wipe_drive(3);
    srv.restart().await;
    verify_all(&srv.client(), &objs, "after heal with drives 2 and 3 wiped").await;

    // And writes still work (all drives online).
    put(&srv.client(), B, "after", b"post-heal").await;
    assert_eq!(get(&srv.client(), B, "after").await, b"post-heal");
}

/// The shard files of the single large object in the deployment, one list per drive.
fn shards_per_drive(srv: &Server) -> Vec<Vec<PathBuf>> {
    srv.drives().iter().map(|d| find_part_files(d)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_rot_is_detected_and_repaired() {
    let srv = Server::start_with(ServerOptions::new(6).parity(2)).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let data = random_bytes(5 * MIB + 3, 77);
    put(&c, B, "rotting", &data).await;
    let shards = shards_per_drive(&srv);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(
            s.len(),
            1,
            "drive {i} should hold exactly one part file for one single-part object: {s:?}"
        );
    }

    // Corrupt two drives at a time (parity 2). Each round is only survivable if the
    // previous round's corruption was repaired (by the GET or by heal).
    for (round, pair) in [[0usize, 1], [2, 3], [4, 5]].into_iter().enumerate() {
        let mut corrupted = Vec::new();
        for &d in &pair {
            let f = find_part_files(srv.drive(d));
            assert_eq!(f.len(), 1, "drive {d}: {f:?}");
            let after = flip_bytes_in_middle(&f[0], 64);
            corrupted.push((d, after));
        }
        let got = get(&c, B, "rotting").await;
        assert_bytes_eq(
            &got,
            &data,
            &format!("GET with drives {pair:?} corrupted (round {round})"),
        );
        let (_, body) = get_range(&c, B, "rotting", "bytes=2621440-2621540").await;
        assert_bytes_eq(
            &body,
            &data[2621440..=2621540],
            "range read over corrupted shards",
        );

        srv.heal().await;
        for (d, bad) in &corrupted {
            let now: Vec<Vec<u8>> = find_part_files(srv.drive(*d))
                .iter()
                .map(|p| std::fs::read(p).unwrap())
                .collect();
            assert_eq!(now.len(), 1, "drive {d} part files after heal");
            assert_ne!(
                &now[0], bad,
                "drive {d}: corrupted shard not repaired after GET + heal (round {round})"
            );
        }
    }
    assert_bytes_eq(&get(&c, B, "rotting").await, &data, "after all rounds");
}

/// Tell whether a GET result is the right bytes or a 503; anything else fails.
async fn get_correct_or_503(c: &Client, key: &str, want: &[u8]) -> Result<(), u16> {
    match c.get_object().bucket(B).key(key).send().await {
        Ok(r) => match r.body.collect().await {
            Ok(b) => {
                assert_bytes_eq(
                    &b.into_bytes(),
                    want,
                    &format!("{key} read with too many drives lost"),
                );
                Ok(())
            }
            // A server that notices the loss mid-stream may abort the body: not wrong bytes,
            // but not the 503 that the contract asks for either.
            Err(e) => {
                eprintln!("{key}: GET answered 200, then the body failed: {e}");
                Err(0)
            }
        },
        Err(e) => {
            let status = err_status(&e);
            assert_eq!(
                status,
                Some(503),
                "{key} with too many drives lost: expected HTTP 503, got {status:?} {:?}",
                err_code(&e)
            );
            Err(503)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wiped_drives_are_unreadable_not_wrong() {
    let mut srv = Server::start_with(ServerOptions::new(6).parity(2)).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let large = random_bytes(3 * MIB + 1, 5);
    let small = random_bytes(1000, 6);
    put(&c, B, "large", &large).await;
    put(&c, B, "small", &small).await;

    srv.kill9();
    for i in [0, 2, 4] {
        srv.wipe_drive(i);
    }
    srv.restart().await;
    let c = srv.client_no_retry();
    // Only 3 of the 4 needed shards exist: a 503, never bytes.
    assert_eq!(
        get_correct_or_503(&c, "large", &large).await,
        Err(503),
        "GET large with 3 of 6 drives wiped"
    );
    assert_s3_err(
        c.get_object()
            .bucket(B)
            .key("large")
            .range("bytes=0-9")
            .send()
            .await,
        503,
        None,
        "ranged GET large with 3 of 6 drives wiped",
    );
    // The small object may or may not be readable (its metadata is on 3 drives) but must not be wrong.
    let _ = get_correct_or_503(&c, "small", &small).await;
}

/// Drive `i` vanishes while the server runs: a plain file takes its place, so it cannot come
/// back by itself.
fn vanish(srv: &Server, i: usize) {
    let d = srv.drive(i).to_path_buf();
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::write(&d, b"not a drive").unwrap();
}

/// Whether the cluster probe reports lost write quorum within 30 s.
async fn lost_write_quorum(srv: &Server) -> bool {
    poll_until(Duration::from_secs(30), || async {
        srv.health("cluster").await == 503
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_vanishing_while_running_lose_write_quorum() {
    let srv = Server::start_with(ServerOptions::new(6).parity(2)).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let large = random_bytes(3 * MIB + 1, 7);
    put(&c, B, "large", &large).await;
    assert_eq!(
        srv.health("cluster").await,
        200,
        "cluster health with all drives"
    );

    // Two drives vanish: still within parity.
    for i in [1, 3] {
        vanish(&srv, i);
    }
    assert_bytes_eq(&get(&c, B, "large").await, &large, "GET with 2 drives gone");
    assert_eq!(srv.health("live").await, 200);

    // A third drive vanishes: write quorum is lost.
    vanish(&srv, 5);
    let lost = lost_write_quorum(&srv).await;
    assert!(
        lost,
        "/cairn/health/cluster still not 503 30 s after 3 of 6 drives vanished"
    );
    let nc = srv.client_no_retry();
    let r = nc
        .put_object()
        .bucket(B)
        .key("new")
        .body(ByteStream::from(random_bytes(300 * KIB, 8)))
        .send()
        .await;
    assert_s3_err(r, 503, None, "PUT without write quorum");
    assert_eq!(
        get_correct_or_503(&nc, "large", &large).await,
        Err(503),
        "GET large with 3 drives gone"
    );
    assert_eq!(srv.health("live").await, 200, "process is still alive");
}

/// The probes load balancers and DNS check: with 4 drives and parity 2 (write quorum 3, read
/// quorum 2), two lost drives stop writes but not reads, and each probe says so; the quorums
/// and the node's state are in headers; a single node may never be taken down for maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_probes_tell_read_from_write_quorum() {
    let srv = Server::start_with(ServerOptions::new(4).parity(2)).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let body = random_bytes(MIB, 11);
    put(&c, B, "kept", &body).await;
    let probe = |path: &'static str| {
        let (http, url) = (srv.http(), format!("{}{path}", srv.endpoint()));
        async move {
            let r = http.get(url).send().await.expect("probe answers");
            let h = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            (
                r.status().as_u16(),
                h("x-cairn-read-quorum"),
                h("x-cairn-write-quorum"),
                h("x-cairn-control-plane"),
            )
        }
    };
    let all = probe("/cairn/health/cluster").await;
    assert_eq!(
        all,
        (200, "2".into(), "3".into(), "available".into()),
        "cluster probe with every drive"
    );
    assert_eq!(probe("/cairn/health/cluster/read").await.0, 200);
    // The only node of the site: taking it down loses every set.
    assert_eq!(
        probe("/cairn/health/cluster?maintenance=true").await.0,
        412,
        "maintenance probe on a single node"
    );

    for i in [1, 3] {
        vanish(&srv, i);
    }
    let lost = lost_write_quorum(&srv).await;
    assert!(
        lost,
        "/cairn/health/cluster still 200 with 2 of 4 drives gone"
    );
    assert_eq!(
        probe("/cairn/health/cluster/read").await.0,
        200,
        "read probe with read quorum left"
    );
    assert_bytes_eq(
        &get(&c, B, "kept").await,
        &body,
        "GET with 2 of 4 drives gone",
    );
}
