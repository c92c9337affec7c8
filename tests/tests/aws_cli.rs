//! Interoperability with the `aws` CLI and boto3 (botocore's signing, multipart transfer
//! manager, default checksums and encoding-type=url listings). Skipped, with a notice, when
//! the tool is not installed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cairn_tests::*;

/// Whether `cmd args` runs successfully.
fn available(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Isolated AWS client configuration: no user config/credentials/profile, path style.
struct AwsEnv {
    dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl AwsEnv {
    fn new(srv: &Server, dir: &Path) -> AwsEnv {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("aws-config");
        std::fs::write(
            &config,
            "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
        )
        .unwrap();
        let creds = dir.join("aws-credentials");
        std::fs::write(&creds, "").unwrap();
        let vars = vec![
            ("AWS_CONFIG_FILE".into(), config.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                creds.display().to_string(),
            ),
            ("AWS_ACCESS_KEY_ID".into(), srv.access_key().to_string()),
            ("AWS_SECRET_ACCESS_KEY".into(), srv.secret_key().to_string()),
            ("AWS_DEFAULT_REGION".into(), REGION.to_string()),
            ("AWS_REGION".into(), REGION.to_string()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_MAX_ATTEMPTS".into(), "1".into()),
            ("AWS_PAGER".into(), String::new()),
        ];
        AwsEnv {
            dir: dir.to_path_buf(),
            vars,
        }
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        for v in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_CA_BUNDLE",
            "AWS_USE_PATH_STYLE_ENDPOINT",
        ] {
            cmd.env_remove(v);
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Run a command to completion (bounded); returns (success, stdout, stderr).
async fn run(mut cmd: tokio::process::Command, what: &str) -> (bool, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: still running after 300 s"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn aws(env: &AwsEnv, srv: &Server, args: &[&str]) -> String {
    let mut cmd = env.command("aws");
    cmd.arg("--endpoint-url").arg(srv.endpoint()).args(args);
    let what = format!("aws {}", args.join(" "));
    let (ok, stdout, stderr) = run(cmd, &what).await;
    assert!(ok, "{what} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

async fn aws_fails(env: &AwsEnv, srv: &Server, args: &[&str]) -> String {
    let mut cmd = env.command("aws");
    cmd.arg("--endpoint-url").arg(srv.endpoint()).args(args);
    let what = format!("aws {}", args.join(" "));
    let (ok, stdout, stderr) = run(cmd, &what).await;
    assert!(!ok, "{what} unexpectedly succeeded\nstdout:\n{stdout}");
    stderr
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_roundtrip() {
    if !available("aws", &["--version"]) {
        eprintln!("NOTICE: `aws` CLI not installed; skipping aws_cli_roundtrip");
        return;
    }
    let srv = Server::start(4).await;
    let env = AwsEnv::new(&srv, &srv.root().join("aws"));
    let work = &env.dir;

    aws(&env, &srv, &["s3", "mb", "s3://cli-bucket"]).await;

    // 20 MiB: the CLI uploads it as a multipart upload (8 MiB chunks).
    let big = random_bytes(20 * MIB, 1);
    let big_path = work.join("big.bin");
    std::fs::write(&big_path, &big).unwrap();
    aws(
        &env,
        &srv,
        &[
            "s3",
            "cp",
            big_path.to_str().unwrap(),
            "s3://cli-bucket/dir/big.bin",
        ],
    )
    .await;
    let small_path = work.join("small file.txt");
    std::fs::write(&small_path, b"small text").unwrap();
    aws(
        &env,
        &srv,
        &[
            "s3",
            "cp",
            small_path.to_str().unwrap(),
            "s3://cli-bucket/dir/small file.txt",
            "--metadata",
            "origin=cli",
        ],
    )
    .await;

    let ls = aws(&env, &srv, &["s3", "ls", "s3://cli-bucket/dir/"]).await;
    let entries: Vec<(u64, String)> = ls
        .lines()
        .filter(|l| !l.trim_start().starts_with("PRE"))
        .map(|l| {
            // "2024-01-01 00:00:00   20971520 big.bin"
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 4, "unexpected ls line {l:?}");
            (
                f[2].parse().unwrap_or_else(|_| panic!("size in {l:?}")),
                f[3..].join(" "),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            (20 * MIB as u64, "big.bin".to_string()),
            (10, "small file.txt".to_string())
        ],
        "aws s3 ls:\n{ls}"
    );

    let head = json(
        &aws(
            &env,
            &srv,
            &[
                "s3api",
                "head-object",
                "--bucket",
                "cli-bucket",
                "--key",
                "dir/big.bin",
            ],
        )
        .await,
    );
    assert_eq!(
        head["ContentLength"].as_u64(),
        Some(20 * MIB as u64),
        "{head}"
    );
    let etag = head["ETag"].as_str().unwrap_or_default().to_string();
    assert!(
        etag.ends_with("-3\""),
        "CLI multipart upload of 20 MiB should have 3 parts: ETag {etag}"
    );
    let head = json(
        &aws(
            &env,
            &srv,
            &[
                "s3api",
                "head-object",
                "--bucket",
                "cli-bucket",
                "--key",
                "dir/small file.txt",
            ],
        )
        .await,
    );
    assert_eq!(head["Metadata"]["origin"].as_str(), Some("cli"), "{head}");

    // Download and compare; the SDK agrees.
    let out_path = work.join("big.out");
    aws(
        &env,
        &srv,
        &[
            "s3",
            "cp",
            "s3://cli-bucket/dir/big.bin",
            out_path.to_str().unwrap(),
        ],
    )
    .await;
    assert_bytes_eq(
        &std::fs::read(&out_path).unwrap(),
        &big,
        "aws s3 cp download",
    );
    assert_bytes_eq(
        &get(&srv.client(), "cli-bucket", "dir/big.bin").await,
        &big,
        "SDK read of CLI upload",
    );

    // sync both ways.
    let src = work.join("sync-src");
    std::fs::create_dir_all(src.join("nested")).unwrap();
    let mut files = Vec::new();
    for i in 0..5 {
        let rel = if i % 2 == 0 {
            format!("f{i}.dat")
        } else {
            format!("nested/f{i}.dat")
        };
        let data = random_bytes(1000 * (i + 1) + 150 * KIB * (i % 2), 10 + i as u64);
        std::fs::write(src.join(&rel), &data).unwrap();
        files.push((rel, data));
    }
    aws(
        &env,
        &srv,
        &["s3", "sync", src.to_str().unwrap(), "s3://cli-bucket/sync/"],
    )
    .await;
    let listed = json(
        &aws(
            &env,
            &srv,
            &[
                "s3api",
                "list-objects-v2",
                "--bucket",
                "cli-bucket",
                "--prefix",
                "sync/",
            ],
        )
        .await,
    );
    let mut keys: Vec<String> = listed["Contents"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| o["Key"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    let mut want: Vec<String> = files.iter().map(|(r, _)| format!("sync/{r}")).collect();
    want.sort();
    assert_eq!(keys, want, "list-objects-v2 after sync");
    let dst = work.join("sync-dst");
    aws(
        &env,
        &srv,
        &["s3", "sync", "s3://cli-bucket/sync/", dst.to_str().unwrap()],
    )
    .await;
    for (rel, data) in &files {
        assert_bytes_eq(
            &std::fs::read(dst.join(rel)).unwrap(),
            data,
            &format!("synced back {rel}"),
        );
    }

    // Errors surface with their S3 codes.
    let err = aws_fails(
        &env,
        &srv,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "cli-bucket",
            "--key",
            "missing",
            work.join("x").to_str().unwrap(),
        ],
    )
    .await;
    assert!(err.contains("NoSuchKey"), "stderr: {err}");
    let err = aws_fails(&env, &srv, &["s3", "rb", "s3://cli-bucket"]).await;
    assert!(err.contains("BucketNotEmpty"), "stderr: {err}");

    // Remove everything.
    aws(&env, &srv, &["s3", "rm", "s3://cli-bucket/dir/big.bin"]).await;
    let ls = aws(&env, &srv, &["s3", "ls", "--recursive", "s3://cli-bucket/"]).await;
    assert!(!ls.contains("big.bin"), "big.bin still listed:\n{ls}");
    aws(&env, &srv, &["s3", "rm", "--recursive", "s3://cli-bucket/"]).await;
    assert!(list_all_keys(&srv.client(), "cli-bucket").await.is_empty());
    aws(&env, &srv, &["s3", "rb", "s3://cli-bucket"]).await;
    let buckets = json(&aws(&env, &srv, &["s3api", "list-buckets"]).await);
    assert_eq!(
        buckets["Buckets"].as_array().map(Vec::len),
        Some(0),
        "{buckets}"
    );
}

const BOTO3_SCRIPT: &str = r#"
import hashlib, json, os, sys
import boto3, botocore
from botocore.config import Config
from boto3.s3.transfer import TransferConfig

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["CAIRN_EP"],
    aws_access_key_id=os.environ["CAIRN_AK"],
    aws_secret_access_key=os.environ["CAIRN_SK"],
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
b = "boto-bucket"
s3.create_bucket(Bucket=b)
s3.put_object(Bucket=b, Key="hello.txt", Body=b"hello boto", Metadata={"k": "v"})
tc = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=4)
s3.upload_file(os.environ["CAIRN_SRC"], b, "big/file name.bin", Config=tc)
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b, PaginationConfig={"PageSize": 1}):
    keys += [o["Key"] for o in page.get("Contents", [])]
head = s3.head_object(Bucket=b, Key="big/file name.bin")
s3.download_file(b, "big/file name.bin", os.environ["CAIRN_DST"], Config=tc)
r = s3.get_object(Bucket=b, Key="hello.txt")
body = r["Body"].read().decode()
rng = s3.get_object(Bucket=b, Key="big/file name.bin", Range="bytes=5242870-5242889")["Body"].read()
try:
    s3.get_object(Bucket=b, Key="nope")
    err = None
except botocore.exceptions.ClientError as e:
    err = e.response["Error"]["Code"]
print(json.dumps({
    "keys": keys,
    "size": head["ContentLength"],
    "etag": head["ETag"],
    "body": body,
    "meta": r["Metadata"],
    "range_md5": hashlib.md5(rng).hexdigest(),
    "err": err,
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_roundtrip() {
    if !available("python3", &["-c", "import boto3"]) {
        eprintln!("NOTICE: python3 with boto3 not installed; skipping boto3_roundtrip");
        return;
    }
    let srv = Server::start(6).await;
    let env = AwsEnv::new(&srv, &srv.root().join("boto"));
    let big = random_bytes(20 * MIB + 5, 2);
    let src = env.dir.join("src.bin");
    let dst = env.dir.join("dst.bin");
    std::fs::write(&src, &big).unwrap();

    let mut cmd = env.command("python3");
    cmd.arg("-c")
        .arg(BOTO3_SCRIPT)
        .env("CAIRN_EP", srv.endpoint())
        .env("CAIRN_AK", srv.access_key())
        .env("CAIRN_SK", srv.secret_key())
        .env("CAIRN_SRC", &src)
        .env("CAIRN_DST", &dst);
    let (ok, stdout, stderr) = run(cmd, "boto3 script").await;
    assert!(
        ok,
        "boto3 script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let v = json(stdout.lines().last().unwrap_or_default());
    assert_eq!(
        v["keys"],
        serde_json::json!(["big/file name.bin", "hello.txt"]),
        "{v}"
    );
    assert_eq!(v["size"].as_u64(), Some(big.len() as u64), "{v}");
    let parts: Vec<&[u8]> = big.chunks(5 * MIB).collect();
    assert_eq!(
        v["etag"].as_str(),
        Some(multipart_etag(parts).as_str()),
        "{v}"
    );
    assert_eq!(v["body"].as_str(), Some("hello boto"));
    assert_eq!(v["meta"], serde_json::json!({"k": "v"}));
    assert_eq!(
        v["range_md5"].as_str(),
        Some(md5_hex(&big[5242870..=5242889]).as_str())
    );
    assert_eq!(v["err"].as_str(), Some("NoSuchKey"));
    assert_bytes_eq(&std::fs::read(&dst).unwrap(), &big, "boto3 download_file");
    assert_bytes_eq(
        &get(&srv.client(), "boto-bucket", "big/file name.bin").await,
        &big,
        "SDK read of boto3 upload",
    );
}
