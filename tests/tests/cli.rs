//! The `cairn server` command line: argument errors, drive sets (ellipsis, parity),
//! generated root credentials, and graceful shutdown on SIGTERM.

use std::path::Path;
use std::time::Duration;

use cairn_tests::*;

async fn expect_start_failure(dirs: &[&Path], extra: &[&str], what: &str) -> String {
    let mut args = vec![
        "server".to_string(),
        "--address".into(),
        format!("127.0.0.1:{}", free_port()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    let (status, stdout, stderr) = run_cairn(
        &args,
        &[
            ("CAIRN_ROOT_USER", ROOT_USER),
            ("CAIRN_ROOT_PASSWORD", ROOT_PASSWORD),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        !status.success(),
        "{what}: cairn exited successfully\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !stderr.trim().is_empty(),
        "{what}: exited with {status} but printed nothing on stderr"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // A drive whose parent directory does not exist.
    let missing = t.join("no-such-parent").join("d1");
    let err = expect_start_failure(&[&missing], &[], "missing drive dir").await;
    assert!(
        err.contains("no-such-parent"),
        "stderr does not name the missing path {}:\n{err}",
        missing.display()
    );

    // A drive that is a regular file.
    let file = t.join("file-drive");
    std::fs::write(&file, b"i am a file").unwrap();
    let err = expect_start_failure(&[&file], &[], "drive is a file").await;
    assert!(
        err.contains("file-drive"),
        "stderr does not name {}:\n{err}",
        file.display()
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"i am a file",
        "the file was modified"
    );

    // Parity above drives/2.
    let six: Vec<_> = (1..=6).map(|i| t.join(format!("p{i}"))).collect();
    for d in &six {
        std::fs::create_dir_all(d).unwrap();
    }
    let six_refs: Vec<&Path> = six.iter().map(|p| p.as_path()).collect();
    let err = expect_start_failure(&six_refs, &["--parity", "4"], "parity 4 on 6 drives").await;
    assert!(
        err.to_lowercase().contains("parity"),
        "stderr does not mention parity:\n{err}"
    );
    let two: Vec<&Path> = six_refs[..2].to_vec();
    let err = expect_start_failure(&two, &["--parity", "2"], "parity 2 on 2 drives").await;
    assert!(
        err.to_lowercase().contains("parity"),
        "stderr does not mention parity:\n{err}"
    );

    // More than 16 drives in one set.
    let many: Vec<_> = (1..=17).map(|i| t.join(format!("m{i}"))).collect();
    for d in &many {
        std::fs::create_dir_all(d).unwrap();
    }
    let many_refs: Vec<&Path> = many.iter().map(|p| p.as_path()).collect();
    expect_start_failure(&many_refs, &[], "17 drives").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drive_from_another_deployment_is_rejected() {
    // Two deployments of 4 drives each, formatted by running a server on them.
    let mut a = Server::start(4).await;
    let c = a.client();
    create_bucket(&c, "bucket-a").await;
    put(&c, "bucket-a", "k", b"deployment a").await;
    let st = a.terminate().await;
    assert!(st.success(), "SIGTERM exit status {st}");
    let mut b = Server::start(4).await;
    let st = b.terminate().await;
    assert!(st.success(), "SIGTERM exit status {st}");

    let foreign = b.drive(3);
    let mixed: Vec<&Path> = vec![a.drive(0), a.drive(1), a.drive(2), foreign];
    let err =
        expect_start_failure(&mixed, &[], "a set mixing in a drive of another deployment").await;
    let foreign_name = foreign.display().to_string();
    assert!(
        err.to_lowercase().contains("deployment") || err.contains(&foreign_name),
        "stderr neither mentions the deployment nor names {foreign_name}:\n{err}"
    );
    // The rejected start did not damage deployment A.
    a.restart().await;
    assert_eq!(get(&a.client(), "bucket-a", "k").await, b"deployment a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ellipsis_drives_and_parity_override() {
    let len = 3 * MIB;
    let data = random_bytes(len, 9);
    // (drives, --parity, expected data shards)
    for (drives, parity, data_shards) in [
        (4usize, Some(1usize), 3usize),
        (4, None, 2),
        (6, Some(1), 5),
        (1, None, 1),
    ] {
        let mut opts = ServerOptions::new(drives);
        if drives > 1 {
            opts = opts.ellipsis();
        }
        if let Some(p) = parity {
            opts = opts.parity(p);
        }
        let srv = Server::start_with(opts).await;
        let what = format!("{drives} drives, --parity {parity:?}");
        for d in srv.drives() {
            let f = d.join(".cairn").join("format.json");
            let text = std::fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("{what}: {}: {e}", f.display()));
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(v.is_object(), "{}: {text}", f.display());
        }
        let formats: std::collections::BTreeSet<String> = srv
            .drives()
            .iter()
            .map(|d| std::fs::read_to_string(d.join(".cairn/format.json")).unwrap())
            .collect();
        assert_eq!(
            formats.len(),
            drives,
            "{what}: each drive's format.json records its own position"
        );

        let c = srv.client();
        create_bucket(&c, "ec-bucket").await;
        put(&c, "ec-bucket", "obj", &data).await;
        assert_bytes_eq(&get(&c, "ec-bucket", "obj").await, &data, &what);
        // Storage overhead reveals the data/parity split: drives/data_shards x the size.
        let stored: u64 = srv
            .drives()
            .iter()
            .flat_map(|d| find_part_files(d))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        let expect = (len * drives / data_shards) as f64;
        let ratio = stored as f64 / expect;
        assert!(
            (0.99..1.10).contains(&ratio),
            "{what}: {stored} bytes of part files for a {len}-byte object; expected about {expect} ({data_shards} data shards)"
        );
    }
}

/// Pull (access key, secret) candidates out of a server's stdout and find the pair the
/// server accepts.
async fn find_generated_credentials(srv: &Server) -> (String, String) {
    let stdout = srv.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    let pick = |words: &[&str]| -> Vec<&str> {
        lines
            .iter()
            .copied()
            .filter(|l| words.iter().any(|w| l.to_lowercase().contains(w)))
            .collect()
    };
    // Lines naming the credentials (one line with both, or one line each).
    let mut candidates = pick(&["secret", "password", "access", "credential", "key"]);
    candidates.truncate(10);
    let mut tokens: Vec<String> = Vec::new();
    for line in candidates {
        for raw in line.split_whitespace() {
            let t = raw.trim_matches(|c: char| "\"'`,;()[]{}<>".contains(c));
            let mut cands = vec![t.to_string()];
            for sep in ['=', ':'] {
                if let Some((_, v)) = t.split_once(sep) {
                    cands.push(v.trim_matches(|c: char| "\"'`,;".contains(c)).to_string());
                }
            }
            for c in cands {
                if c.len() >= 3 && !tokens.contains(&c) {
                    tokens.push(c);
                }
            }
        }
    }
    for a in &tokens {
        for s in &tokens {
            if a == s || s.len() < 8 {
                continue;
            }
            if srv.client_with(a, s).list_buckets().send().await.is_ok() {
                return (a.clone(), s.clone());
            }
        }
    }
    panic!("no access key + secret on stdout that the server accepts\nstdout:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_root_credentials_persist() {
    let mut srv = Server::start_with(ServerOptions::new(2).generated_credentials()).await;
    let (ak, sk) = find_generated_credentials(&srv).await;
    assert_ne!((ak.as_str(), sk.as_str()), (ROOT_USER, ROOT_PASSWORD));
    srv.set_credentials(&ak, &sk);
    let c = srv.client();
    create_bucket(&c, "persist").await;
    put(&c, "persist", "k", b"kept across restarts").await;

    let st = srv.terminate().await;
    assert!(st.success(), "SIGTERM exit status {st}");
    srv.restart().await;
    assert!(
        !srv.stdout().contains(&sk),
        "the secret was printed again on the second start:\n{}",
        srv.stdout()
    );
    let c = srv.client();
    assert_eq!(
        get(&c, "persist", "k").await,
        b"kept across restarts",
        "same credentials after restart"
    );
    assert_s3_err(
        srv.client_with(&ak, "some-other-secret")
            .list_buckets()
            .send()
            .await,
        403,
        Some("SignatureDoesNotMatch"),
        "wrong secret after restart",
    );

    // They also survive a crash.
    srv.kill9();
    srv.restart().await;
    assert!(
        srv.client().list_buckets().send().await.is_ok(),
        "generated credentials after kill -9 + restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero() {
    for drives in [1, 4] {
        let mut srv = Server::start(drives).await;
        let c = srv.client();
        create_bucket(&c, "graceful").await;
        let data = random_bytes(300 * KIB, drives as u64);
        put(&c, "graceful", "k", &data).await;
        let st = srv.terminate().await;
        assert_eq!(
            st.code(),
            Some(0),
            "{drives} drives: exit status after SIGTERM: {st}"
        );
        srv.restart().await;
        assert_bytes_eq(
            &get(&srv.client(), "graceful", "k").await,
            &data,
            "data after graceful restart",
        );
        let st = srv.terminate().await;
        assert_eq!(
            st.code(),
            Some(0),
            "{drives} drives: exit status after second SIGTERM: {st}"
        );
    }
}
