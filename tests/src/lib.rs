//! Shared harness for Cairn's black-box tests (`tests/tests/*.rs`).
//!
//! Every test starts its own `cairn server` process on a free port with its drives in
//! a fresh temporary directory, then talks to it with real S3 clients. The pieces:
//!
//! * [`Server`]: start / readiness polling / `kill -9` / SIGTERM / restart / drive wipes,
//!   server stdout+stderr captured to files and printed when the test panics.
//! * S3 client factory ([`Server::client`] and friends, `aws-sdk-s3`, path style).
//! * [`sigv4`]: a small independent SigV4 signer for requests the SDK will not make
//!   (skewed clocks, signed `aws-chunked` streaming uploads, raw invalid bucket names).
//! * data helpers: deterministic random bytes, md5/etag, drive walking, bit flipping.
//! * [`cluster`]: a site of several `cairn` processes on loopback.

pub mod admin;
pub mod certs;
pub mod cluster;
pub mod ldap;
pub mod sites;

use std::fmt::Debug;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use aws_sdk_s3;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, StalledStreamProtectionConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
pub use aws_sdk_s3::Client;
use md5::{Digest, Md5};
use rand::{RngCore, SeedableRng};

pub const REGION: &str = "us-east-1";
pub const ROOT_USER: &str = "cairntestroot";
pub const ROOT_PASSWORD: &str = "cairn-test-secret-0123456789";
/// `CAIRN_KMS_MASTER_KEY` of every test server unless a test drops or replaces it.
pub const TEST_MASTER_KEY: &str = "cairn-test-master:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Locating the binary
// ---------------------------------------------------------------------------------------

/// Path of the `cairn` binary: `$CAIRN_BIN`, else `target/<profile>/cairn` found from the
/// test executable (`target/<profile>/deps/<test>`).
pub fn cairn_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CAIRN_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test exe has a parent dir");
    let mut candidates = Vec::new();
    if let Some(profile) = deps.parent() {
        candidates.push(profile.join("cairn"));
    }
    candidates.push(deps.join("cairn"));
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "cairn binary not found (looked at {:?}); run `cargo build --bin cairn` first \
         (or set CAIRN_BIN)",
        candidates
    );
}

/// A port that was free a moment ago (bind to port 0, read it, drop the socket).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub drives: usize,
    pub parity: Option<usize>,
    /// Root credentials passed via `CAIRN_ROOT_USER` / `CAIRN_ROOT_PASSWORD`; `None` lets
    /// the server generate (or reload) its own.
    pub env_credentials: Option<(String, String)>,
    /// Pass the drives as one ellipsis argument `.../d{1...N}` instead of N arguments.
    pub ellipsis: bool,
    /// A node of a networked site (see [`cluster`]): fixed port, the site's endpoint list.
    pub site: Option<SiteSpec>,
    /// `--certs-dir` with a certificate (see [`certs`]): HTTPS and internode mutual TLS. Without
    /// it the server gets an empty certs directory, so a developer's `~/.cairn/certs` never
    /// leaks into tests.
    pub certs_dir: Option<PathBuf>,
    /// Extra environment of the server process (e.g. `CAIRN_KMS_SECRET_KEY`).
    pub env: Vec<(String, String)>,
}

/// How one node of a [`cluster::Cluster`] is started.
#[derive(Clone, Debug)]
pub struct SiteSpec {
    pub port: u16,
    /// `http://HOST:PORT/PATH` for every drive of the site, the same on every node.
    pub endpoints: Vec<String>,
}

impl ServerOptions {
    pub fn new(drives: usize) -> Self {
        ServerOptions {
            drives,
            parity: None,
            env_credentials: Some((ROOT_USER.to_string(), ROOT_PASSWORD.to_string())),
            ellipsis: false,
            site: None,
            certs_dir: None,
            // Every test server has a KMS master key (the key registry needs one).
            env: vec![(
                "CAIRN_KMS_MASTER_KEY".to_string(),
                TEST_MASTER_KEY.to_string(),
            )],
        }
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// Drops `key` from the server's environment (e.g. the default `CAIRN_KMS_MASTER_KEY`).
    pub fn without_env(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }
    pub fn parity(mut self, parity: usize) -> Self {
        self.parity = Some(parity);
        self
    }
    pub fn generated_credentials(mut self) -> Self {
        self.env_credentials = None;
        self
    }
    pub fn ellipsis(mut self) -> Self {
        self.ellipsis = true;
        self
    }
    pub fn certs_dir(mut self, dir: PathBuf) -> Self {
        self.certs_dir = Some(dir);
        self
    }
}

/// A running (or stopped) `cairn server` with its drives in a temporary directory.
/// Killed on drop; its logs are printed if the test is panicking.
pub struct Server {
    opts: ServerOptions,
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    drives: Vec<PathBuf>,
    port: u16,
    /// Restarts reuse the port (a peer site knows the server by it).
    fixed_port: Option<u16>,
    child: Option<Child>,
    starts: usize,
    access_key: String,
    secret_key: String,
}

/// Why a start attempt failed.
enum StartError {
    /// Port collision: retry on another port.
    AddrInUse,
    Failed(String),
}

impl Server {
    /// Start a server with `drives` drives and default parity, root credentials from env.
    pub async fn start(drives: usize) -> Server {
        Server::start_with(ServerOptions::new(drives)).await
    }

    pub async fn start_with(opts: ServerOptions) -> Server {
        let mut srv = Server::prepare(opts);
        srv.boot().await;
        srv
    }

    /// Creates the temporary directory and drives without starting the process.
    pub fn prepare(opts: ServerOptions) -> Server {
        let tmp = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .expect("create temp dir");
        let root = tmp.path().to_path_buf();
        fs::create_dir_all(root.join("logs")).unwrap();
        let drives: Vec<PathBuf> = (1..=opts.drives)
            .map(|i| root.join(format!("d{i}")))
            .collect();
        if !opts.ellipsis {
            for d in &drives {
                fs::create_dir_all(d).unwrap();
            }
        }
        let (access_key, secret_key) = opts.env_credentials.clone().unwrap_or_default();
        Server {
            opts,
            tmp: Some(tmp),
            root,
            drives,
            port: 0,
            fixed_port: None,
            child: None,
            starts: 0,
            access_key,
            secret_key,
        }
    }

    /// Replaces the site this (stopped) node belongs to.
    pub fn set_site(&mut self, site: SiteSpec) {
        self.opts.site = Some(site);
    }

    /// Spawn the process and wait for readiness; retries on port collisions (a site node
    /// keeps its port: the endpoint list names it).
    pub async fn boot(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut last = String::new();
        for _attempt in 0..8 {
            self.port = match (&self.opts.site, self.fixed_port) {
                (Some(site), _) => site.port,
                (None, Some(p)) => p,
                (None, None) => free_port(),
            };
            self.spawn();
            match self.wait_ready().await {
                Ok(()) => return,
                Err(StartError::AddrInUse)
                    if self.opts.site.is_none() && self.fixed_port.is_none() =>
                {
                    last = "address in use".into();
                    continue;
                }
                Err(StartError::AddrInUse) => {
                    self.dump_logs();
                    panic!("cairn site node: port {} in use", self.port);
                }
                Err(StartError::Failed(msg)) => {
                    self.dump_logs();
                    panic!("cairn server failed to start: {msg}");
                }
            }
        }
        self.dump_logs();
        panic!("cairn server failed to start after retries: {last}");
    }

    fn server_args(&self) -> Vec<String> {
        let mut args = vec![
            "server".to_string(),
            "--address".to_string(),
            format!("127.0.0.1:{}", self.port),
        ];
        if let Some(p) = self.opts.parity {
            args.push("--parity".into());
            args.push(p.to_string());
        }
        args.push("--certs-dir".into());
        args.push(self.certs_dir().display().to_string());
        if let Some(site) = &self.opts.site {
            args.extend(site.endpoints.iter().cloned());
        } else if self.opts.ellipsis {
            args.push(format!(
                "{}/d{{1...{}}}",
                self.root.display(),
                self.opts.drives
            ));
        } else {
            args.extend(self.drives.iter().map(|d| d.display().to_string()));
        }
        args
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let (out, err) = self.log_paths(self.starts);
        let mut cmd = Command::new(cairn_bin());
        cmd.args(self.server_args())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .env_remove("CAIRN_ROOT_USER")
            .env_remove("CAIRN_ROOT_PASSWORD");
        if let Some((u, p)) = &self.opts.env_credentials {
            cmd.env("CAIRN_ROOT_USER", u).env("CAIRN_ROOT_PASSWORD", p);
        }
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", cairn_bin().display()));
        self.child = Some(child);
    }

    /// The directory passed as `--certs-dir`.
    pub fn certs_dir(&self) -> PathBuf {
        self.opts
            .certs_dir
            .clone()
            .unwrap_or_else(|| self.root.join("no-certs"))
    }

    /// Whether the server speaks HTTPS.
    pub fn tls(&self) -> bool {
        self.opts
            .certs_dir
            .as_ref()
            .is_some_and(|d| d.join("public.crt").exists())
    }

    /// A reqwest client trusting the server's CA when it speaks HTTPS.
    fn reqwest_builder(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder();
        if self.tls() {
            let pem = certs::trusted_pem(&self.certs_dir());
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        b
    }

    async fn wait_ready(&mut self) -> Result<(), StartError> {
        let http = self
            .reqwest_builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let url = format!("{}/cairn/health/ready", self.endpoint());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let stderr = self.stderr();
                if stderr.to_lowercase().contains("in use") {
                    return Err(StartError::AddrInUse);
                }
                return Err(StartError::Failed(format!(
                    "server exited with {status} before ready"
                )));
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "{url} did not return 200 within {READY_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_paths(&self, start: usize) -> (PathBuf, PathBuf) {
        let logs = self.root.join("logs");
        (
            logs.join(format!("server-{start}.stdout.log")),
            logs.join(format!("server-{start}.stderr.log")),
        )
    }

    /// stdout of the current (or last) server process.
    pub fn stdout(&self) -> String {
        self.stdout_of(self.starts)
    }
    /// stdout of the `n`-th start (1-based).
    pub fn stdout_of(&self, n: usize) -> String {
        fs::read_to_string(self.log_paths(n).0).unwrap_or_default()
    }
    /// stderr of the current (or last) server process.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.log_paths(self.starts).1).unwrap_or_default()
    }
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// Print every captured server log (tail) to stderr.
    pub fn dump_logs(&self) {
        for n in 1..=self.starts {
            let (out, err) = self.log_paths(n);
            for (what, p) in [("stdout", out), ("stderr", err)] {
                let text = fs::read(&p).unwrap_or_default();
                let tail = &text[text.len().saturating_sub(64 * 1024)..];
                eprintln!(
                    "===== cairn server start #{n} {what} ({}) =====\n{}\n===== end =====",
                    p.display(),
                    String::from_utf8_lossy(tail)
                );
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn drives(&self) -> &[PathBuf] {
        &self.drives
    }
    pub fn drive(&self, i: usize) -> &Path {
        &self.drives[i]
    }
    pub fn access_key(&self) -> &str {
        &self.access_key
    }
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }
    /// Sets (or with `None` removes) `key` in the environment of the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.opts.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.opts.env.push((key.to_string(), v.to_string()));
        }
    }
    /// Use these credentials for [`Server::client`] (e.g. after reading generated ones).
    pub fn set_credentials(&mut self, access_key: &str, secret_key: &str) {
        self.access_key = access_key.to_string();
        self.secret_key = secret_key.to_string();
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => c.try_wait().unwrap().is_none(),
        }
    }

    /// SIGKILL the server and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the server and wait (bounded, 30 s) for it to exit; returns its status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("server not running");
        let pid = c.id();
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill -TERM");
        assert!(st.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                self.dump_logs();
                panic!("server did not exit within 30 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Start the (stopped) server again on the same drives (on a new free port: make new
    /// clients afterwards).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        self.boot().await;
    }

    /// Like [`Server::restart`], on the port the server had.
    pub async fn restart_on_same_port(&mut self) {
        self.restart_on_port(self.port).await;
    }

    /// Like [`Server::restart`], on `port`.
    pub async fn restart_on_port(&mut self, port: u16) {
        self.fixed_port = Some(port);
        self.restart().await;
    }

    /// Remove everything inside drive `i` (including `.cairn`), keeping the empty dir.
    /// The server must be stopped.
    pub fn wipe_drive(&mut self, i: usize) {
        assert!(!self.is_running(), "wipe_drive while the server runs");
        let d = &self.drives[i];
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
        }
        assert_eq!(fs::read_dir(d).unwrap().count(), 0);
    }

    // ----- clients ---------------------------------------------------------------------

    /// SDK config for this server: path style, us-east-1, static credentials, up to 3
    /// attempts, no stalled-stream protection (2-core CI boxes are slow).
    pub fn s3_config(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::config::Builder {
        self.s3_config_with_token(access_key, secret_key, None)
    }

    /// [`Server::s3_config`] for STS session credentials (`x-amz-security-token`).
    pub fn s3_config_with_token(
        &self,
        access_key: &str,
        secret_key: &str,
        session_token: Option<&str>,
    ) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                access_key,
                secret_key,
                session_token.map(str::to_owned),
                None,
                "cairn-tests",
            ))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            )
    }

    /// Client with the root credentials.
    pub fn client(&self) -> Client {
        Client::from_conf(self.s3_config(&self.access_key, &self.secret_key).build())
    }

    /// Client that never retries (for asserting exact error statuses such as 503).
    pub fn client_no_retry(&self) -> Client {
        Client::from_conf(
            self.s3_config(&self.access_key, &self.secret_key)
                .retry_config(RetryConfig::disabled())
                .build(),
        )
    }

    pub fn client_with(&self, access_key: &str, secret_key: &str) -> Client {
        Client::from_conf(
            self.s3_config(access_key, secret_key)
                .retry_config(RetryConfig::disabled())
                .build(),
        )
    }

    /// Plain HTTP client.
    pub fn http(&self) -> reqwest::Client {
        self.reqwest_builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    /// A SigV4-signed request to `path` (already encoded, with its query) with `access_key`,
    /// `secret_key` and, for STS credentials, `session_token`: (status, body).
    pub async fn signed(
        &self,
        method: &str,
        path: &str,
        (access_key, secret_key, session_token): (&str, &str, Option<&str>),
        body: &[u8],
    ) -> (u16, String) {
        let token: Vec<(&str, &str)> = session_token
            .map(|t| ("x-amz-security-token", t))
            .into_iter()
            .collect();
        self.signed_with(method, path, (access_key, secret_key), &token, body)
            .await
    }

    /// [`Server::signed`] with `headers` signed and sent too (e.g. replica headers, which no
    /// SDK sends).
    pub async fn signed_with(
        &self,
        method: &str,
        path: &str,
        (access_key, secret_key): (&str, &str),
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let url = format!("{}{path}", self.endpoint());
        let signed = sigv4::Signer::new(access_key, secret_key).sign(
            method,
            &url,
            headers,
            &sigv4::sha256_hex(body),
        );
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http().request(method, &url).body(body.to_vec());
        for (k, v) in signed.headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k, v);
        }
        let r = req.send().await.expect("signed request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Status code of `GET /cairn/health/<what>`.
    pub async fn health(&self, what: &str) -> u16 {
        self.http()
            .get(format!("{}/cairn/health/{what}", self.endpoint()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /cairn/health/{what}: {e}"))
            .status()
            .as_u16()
    }

    /// Status of `GET /cairn/health/<what>`, `None` when nothing answers.
    pub async fn health_opt(&self, what: &str) -> Option<u16> {
        self.reqwest_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .get(format!("{}/cairn/health/{what}", self.endpoint()))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The KES port this server printed on its last start.
    pub fn kes_port(&self) -> u16 {
        let out = self.stdout();
        let line = out
            .lines()
            .rfind(|l| l.contains("serving KES on https://"))
            .unwrap_or_else(|| panic!("no KES listener announced:\n{out}"));
        let addr = line
            .split("https://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("address");
        addr.rsplit(':').next().unwrap().parse().expect("port")
    }

    /// `GET /cairn/admin/v1/info` as root; `None` when the server does not answer 200.
    pub async fn admin_info(&self) -> Option<serde_json::Value> {
        let url = format!("{}/cairn/admin/v1/info", self.endpoint());
        let signed = self.signer().sign("GET", &url, &[], sigv4::EMPTY_SHA256);
        let mut req = self
            .reqwest_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(&url);
        for (k, v) in &signed.headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let r = req.send().await.ok()?;
        if r.status().as_u16() != 200 {
            return None;
        }
        serde_json::from_slice(&r.bytes().await.ok()?).ok()
    }

    /// Waits until no background full heal (start-up or rejoin) runs, as `admin info` reports:
    /// a test that counts what its own heal repaired must not race one.
    pub async fn wait_background_heal(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let info = self.admin_info().await;
            if info.as_ref().and_then(|i| i.get("healing")?.as_bool()) == Some(false) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "background heal still running after 120 s: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A SigV4 signer for this server's root credentials at the current time.
    pub fn signer(&self) -> sigv4::Signer {
        sigv4::Signer::new(&self.access_key, &self.secret_key)
    }

    /// Run `cairn admin heal --json` against this server; asserts exit 0 and returns the JSON
    /// summary printed on stdout.
    pub async fn heal(&self) -> serde_json::Value {
        let out = tokio::time::timeout(
            Duration::from_secs(600),
            tokio::process::Command::new(cairn_bin())
                .args(["admin", "heal", "--json", "--endpoint", &self.endpoint()])
                .args([
                    "--access-key",
                    &self.access_key,
                    "--secret-key",
                    &self.secret_key,
                ])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("cairn admin heal did not finish within 600 s")
        .expect("run cairn admin heal");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            self.dump_logs();
            panic!(
                "cairn admin heal exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status
            );
        }
        parse_json_summary(&stdout).unwrap_or_else(|| {
            panic!("cairn admin heal printed no JSON object on stdout\nstdout:\n{stdout}\nstderr:\n{stderr}")
        })
    }
}

/// The last line of `stdout` that parses as a JSON object (or the whole text).
pub fn parse_json_summary(stdout: &str) -> Option<serde_json::Value> {
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(stdout.trim()) {
        return Some(v);
    }
    stdout
        .lines()
        .rev()
        .find_map(|l| match serde_json::from_str(l.trim()) {
            Ok(v @ serde_json::Value::Object(_)) => Some(v),
            _ => None,
        })
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
            if std::env::var_os("CAIRN_TEST_KEEP").is_some() {
                if let Some(t) = self.tmp.take() {
                    eprintln!("keeping test dir {}", t.keep().display());
                }
            }
        }
        self.kill9();
    }
}

/// Run `cairn` with `args` (and env), bounded to `timeout`; returns (status, stdout, stderr).
/// Panics if it does not exit in time.
pub async fn run_cairn(
    args: &[String],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut cmd = tokio::process::Command::new(cairn_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("CAIRN_ROOT_USER")
        .env_remove("CAIRN_ROOT_PASSWORD")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn cairn");
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("cairn {args:?} still running after {timeout:?}"))
        .expect("wait for cairn");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `aws` against `srv` (HTTPS) with a private config, trusting `ca`; returns (success, stdout,
/// stderr). Bounded to 600 s (a 100 MiB transfer included).
pub async fn aws_tls(srv: &Server, ca: &Path, args: &[&str]) -> (bool, String, String) {
    let dir = srv.root().join("aws");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new("aws")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
            .env("AWS_ACCESS_KEY_ID", srv.access_key())
            .env("AWS_SECRET_ACCESS_KEY", srv.secret_key())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "1")
            .arg("--endpoint-url")
            .arg(srv.endpoint())
            .arg("--ca-bundle")
            .arg(ca)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("aws finished within 600 s")
    .expect("run aws");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn aws_tls_ok(srv: &Server, ca: &Path, args: &[&str]) -> String {
    let (ok, out, err) = aws_tls(srv, ca, args).await;
    assert!(ok, "aws {args:?} failed:\n{out}\n{err}");
    out
}

/// Prelude of every [`boto3`] script: `client(service, endpoint, ak, sk, token=None, **config)`
/// (path style, no retries, no parameter validation so that bad input reaches the server) and
/// `code(f)`, the error code `f()` fails with, or "ok".
const BOTO3_PRELUDE: &str = r#"
import json, os, sys, time, urllib.request, urllib.error
import boto3, botocore
from botocore.config import Config

def client(service, endpoint, ak, sk, token=None, **config):
    return boto3.client(
        service, endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
        aws_session_token=token, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      parameter_validation=False, **config))

def code(f):
    try:
        f()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]

def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return [r.status, r.read().decode(errors="replace")]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode(errors="replace")]
"#;

/// Runs a Python script using boto3 (after [`BOTO3_PRELUDE`]) with `env`, bounded to 120 s;
/// the script prints one JSON document as its last line, which is returned. No AWS settings of
/// the machine leak in.
pub async fn boto3(script: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new("python3");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("-c")
        .arg(format!("{BOTO3_PRELUDE}\n{script}"))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("boto3 script still running after 120 s")
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3 script failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("boto3 script printed no JSON ({e}): {stdout}"))
}

// ---------------------------------------------------------------------------------------
// S3 helpers
// ---------------------------------------------------------------------------------------

/// HTTP status of an SDK error, if a response was received.
pub fn err_status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Error code of an SDK error (from the S3 XML error body), if any.
pub fn err_code<E: ProvideErrorMetadata>(e: &SdkError<E>) -> Option<String> {
    e.code().map(str::to_string)
}

/// Assert that `r` failed with HTTP `status` and (if given) S3 error `code`.
#[track_caller]
pub fn assert_s3_err<T: Debug, E>(
    r: Result<T, SdkError<E>>,
    status: u16,
    code: Option<&str>,
    what: &str,
) where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(v) => panic!("{what}: expected HTTP {status} {code:?}, got success: {v:?}"),
        Err(e) => {
            let got_status = err_status(&e);
            let got_code = err_code(&e);
            let ctx = DisplayErrorContext(&e).to_string();
            assert_eq!(
                got_status,
                Some(status),
                "{what}: expected HTTP {status} {code:?}, got status {got_status:?} code {got_code:?}: {ctx}"
            );
            if let Some(code) = code {
                assert_eq!(
                    got_code.as_deref(),
                    Some(code),
                    "{what}: expected error code {code}, got {got_code:?} (HTTP {got_status:?}): {ctx}"
                );
            }
        }
    }
}

/// Unwrap an SDK result with a readable panic message.
#[track_caller]
pub fn ok<T, E>(r: Result<T, SdkError<E>>, what: &str) -> T
where
    E: std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(v) => v,
        Err(e) => panic!(
            "{what}: unexpected error (HTTP {:?}): {}",
            err_status(&e),
            DisplayErrorContext(&e)
        ),
    }
}

/// CompleteMultipartUpload of `parts`; panics with the server's error on failure.
pub async fn complete_multipart(
    c: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
) -> aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput {
    ok(
        c.complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await,
        "CompleteMultipartUpload",
    )
}

pub async fn create_bucket(c: &Client, bucket: &str) {
    ok(
        c.create_bucket().bucket(bucket).send().await,
        &format!("CreateBucket {bucket}"),
    );
}

pub async fn enable_versioning(c: &Client, bucket: &str) {
    ok(
        c.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await,
        &format!("enable versioning on {bucket}"),
    );
}

async fn put_output(
    c: &Client,
    bucket: &str,
    key: &str,
    data: &[u8],
) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    ok(
        c.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await,
        &format!("PutObject {bucket}/{key} ({} bytes)", data.len()),
    )
}

/// Puts `data` at `bucket/key` and returns its ETag.
pub async fn put(c: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let r = put_output(c, bucket, key, data).await;
    r.e_tag().unwrap_or_default().to_string()
}

/// Puts `data` at `bucket/key` (a versioned bucket) and returns the version id it got.
pub async fn put_version(c: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let r = put_output(c, bucket, key, data).await;
    r.version_id().expect("version id").to_string()
}

pub async fn get(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let r = ok(
        c.get_object().bucket(bucket).key(key).send().await,
        &format!("GetObject {bucket}/{key}"),
    );
    r.body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("GetObject {bucket}/{key}: reading body: {e}"))
        .into_bytes()
        .to_vec()
}

/// GET a (possibly `bytes=`) range; returns (content-range header, body).
pub async fn get_range(
    c: &Client,
    bucket: &str,
    key: &str,
    range: &str,
) -> (Option<String>, Vec<u8>) {
    let r = ok(
        c.get_object()
            .bucket(bucket)
            .key(key)
            .range(range)
            .send()
            .await,
        &format!("GetObject {bucket}/{key} Range: {range}"),
    );
    let cr = r.content_range().map(str::to_string);
    let body = r
        .body
        .collect()
        .await
        .expect("read body")
        .into_bytes()
        .to_vec();
    (cr, body)
}

/// Assert that GET returns exactly `expected` (compared by length and md5, with a readable
/// message instead of dumping megabytes).
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], expected: &[u8], what: &str) {
    if got != expected {
        let first_diff = got.iter().zip(expected).position(|(a, b)| a != b);
        panic!(
            "{what}: content differs: got {} bytes md5 {}, expected {} bytes md5 {}; first differing offset {:?}",
            got.len(),
            md5_hex(got),
            expected.len(),
            md5_hex(expected),
            first_diff
        );
    }
}

/// All keys of a bucket (ListObjectsV2, following continuation tokens).
pub async fn list_all_keys(c: &Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = ok(
            c.list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token.clone())
                .send()
                .await,
            "ListObjectsV2",
        );
        keys.extend(
            r.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        if r.is_truncated() == Some(true) {
            token = r.next_continuation_token().map(str::to_string);
            assert!(
                token.is_some(),
                "truncated listing without NextContinuationToken"
            );
        } else {
            return keys;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Data helpers
// ---------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The quoted single-part ETag S3 returns: `"<md5 hex>"`.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// The quoted multipart ETag: `"<md5 of concatenated part md5s>-<parts>"`.
pub fn multipart_etag<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut all = Vec::new();
    let mut n = 0;
    for p in parts {
        all.extend_from_slice(&Md5::digest(p));
        n += 1;
    }
    format!("\"{}-{n}\"", md5_hex(&all))
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn md5_b64(data: &[u8]) -> String {
    b64(&Md5::digest(data))
}

/// Every file below `dir` whose name is `part.<N>`, outside `retired/` (data changes freed,
/// kept readable a while for reads that began on it): the shards of live versions.
pub fn find_part_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if e.file_name() != "retired" {
                    stack.push(p);
                }
            } else if ft.is_file() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(n) = name.strip_prefix("part.") {
                    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                        out.push(p);
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Invert `n` bytes in the middle of the file, in place; returns the new file content.
pub fn flip_bytes_in_middle(path: &Path, n: usize) -> Vec<u8> {
    let len = fs::metadata(path).unwrap().len() as usize;
    assert!(len > 0, "{} is empty", path.display());
    let n = n.min(len);
    let start = (len - n) / 2;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(start as u64)).unwrap();
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf).unwrap();
    for b in &mut buf {
        *b = !*b;
    }
    f.seek(SeekFrom::Start(start as u64)).unwrap();
    f.write_all(&buf).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::read(path).unwrap()
}

/// Poll `cond` every 50 ms until it returns true or `timeout` passes.
pub async fn poll_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Extract `<Code>...</Code>` from an S3 XML error body.
/// A tag set (PutObjectTagging, PutBucketTagging) from `key, value` pairs.
pub fn tags(pairs: &[(&str, &str)]) -> aws_sdk_s3::types::Tagging {
    use aws_sdk_s3::types::{Tag, Tagging};
    Tagging::builder()
        .set_tag_set(Some(
            pairs
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build().expect("tag"))
                .collect(),
        ))
        .build()
        .expect("tagging")
}

pub fn xml_error_code(body: &str) -> Option<String> {
    xml_tag(body, "Code")
}

/// Text of the first `<tag>...</tag>` in `xml`.
pub fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let s = xml.find(&open)? + open.len();
    let e = xml[s..].find(&close)? + s;
    Some(xml[s..e].to_string())
}

/// `%XX` decoding; with `plus_as_space`, `+` decodes to a space (form encoding).
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("percent-decoded {s:?} is not UTF-8: {e}"))
}

/// Sends a request exactly as given (a signed or presigned request built by hand); returns
/// (status, body). reqwest sets Host and Content-Length itself: those given are skipped (they
/// must be the values signed).
pub async fn send_raw(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
) -> (u16, Vec<u8>) {
    let mut req = http.request(method, url);
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        req = req.header(k, v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("send request");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// A reqwest client for a KES listener: trusting `ca_pem`, presenting the certificate and key
/// in `certs` (`public.crt`, `private.key`) if given.
pub fn kes_http(ca_pem: &str, certs: Option<&std::path::Path>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(20))
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some(dir) = certs {
        let mut pem = std::fs::read(dir.join("public.crt")).unwrap();
        pem.extend(std::fs::read(dir.join("private.key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

// ---------------------------------------------------------------------------------------
// SigV4
// ---------------------------------------------------------------------------------------

/// SigV4 for requests the SDK cannot be made to send (header auth and signed `aws-chunked`
/// payloads), on top of Cairn's one client signer (`cairn-sign`), whose AWS test vectors the
/// tests below check again through this interface.
pub mod sigv4 {
    use sha2::{Digest, Sha256};
    use std::time::SystemTime;

    pub use cairn_sign::{EMPTY_SHA256, STREAMING_PAYLOAD, UNSIGNED_PAYLOAD};

    pub fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// AWS URI encoding (RFC 3986 unreserved characters kept; `/` kept if `keep_slash`).
    pub fn uri_encode(s: &str, keep_slash: bool) -> String {
        cairn_sign::uri_encode(s, !keep_slash)
    }

    pub struct Signer {
        pub access_key: String,
        pub secret_key: String,
        pub region: String,
        pub time: SystemTime,
    }

    /// A signed request ready to send: the headers to set (including Host and
    /// Authorization) and the seed signature (for chunked payloads).
    pub struct Signed {
        pub headers: Vec<(String, String)>,
        pub signature: String,
        pub amz_date: String,
        pub scope: String,
    }

    impl Signer {
        pub fn new(access_key: &str, secret_key: &str) -> Signer {
            Signer {
                access_key: access_key.into(),
                secret_key: secret_key.into(),
                region: super::REGION.into(),
                time: SystemTime::now(),
            }
        }

        pub fn at(mut self, time: SystemTime) -> Signer {
            self.time = time;
            self
        }

        fn signer(&self) -> cairn_sign::Signer {
            cairn_sign::Signer::new(&self.access_key, &self.secret_key, &self.region, "s3")
        }

        /// Sign `method url` with the given extra headers and payload hash (hex sha256,
        /// `UNSIGNED-PAYLOAD` or `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`). The URL path must
        /// already be encoded with [`uri_encode`]`(_, true)`.
        pub fn sign(
            &self,
            method: &str,
            url: &str,
            extra_headers: &[(&str, &str)],
            payload_hash: &str,
        ) -> Signed {
            let u = reqwest::Url::parse(url).expect("parse url");
            let host = match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap()),
                None => u.host_str().unwrap().to_string(),
            };
            let amz_date = cairn_sign::amz_date(time::OffsetDateTime::from(self.time));
            let mut headers: Vec<(String, String)> = vec![
                ("host".into(), host),
                ("x-amz-date".into(), amz_date.clone()),
                ("x-amz-content-sha256".into(), payload_hash.into()),
            ];
            for (k, v) in extra_headers {
                headers.push((k.to_lowercase(), v.trim().to_string()));
            }
            let query: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let query: Vec<(&str, &str)> = query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let signed_headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let sig = self.signer().sign(&cairn_sign::SignRequest {
                method,
                path: u.path(),
                query: &query,
                headers: &signed_headers,
                payload_hash,
                amz_date: &amz_date,
            });
            headers.push(("authorization".into(), sig.authorization));
            Signed {
                headers,
                signature: sig.signature,
                amz_date,
                scope: sig.scope,
            }
        }

        /// Encode `data` as a signed `aws-chunked` body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)
        /// continuing from the seed signature of `signed`.
        pub fn chunked_body(&self, signed: &Signed, data: &[u8], chunk_size: usize) -> Vec<u8> {
            let mut signer = self.signer();
            let mut prev = signed.signature.clone();
            let mut out = Vec::new();
            let mut chunks: Vec<&[u8]> = data.chunks(chunk_size).collect();
            chunks.push(&[]);
            for c in chunks {
                let sig = signer.chunk_signature(&signed.amz_date, &signed.scope, &prev, c);
                out.extend_from_slice(
                    format!("{:x};chunk-signature={sig}\r\n", c.len()).as_bytes(),
                );
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
                prev = sig;
            }
            out
        }
    }

    /// Length of the signed aws-chunked encoding of `len` bytes in `chunk_size` chunks.
    pub fn chunked_len(len: usize, chunk_size: usize) -> usize {
        let sig_part = ";chunk-signature=".len() + 64 + 2 + 2;
        let mut total = 0;
        let mut rem = len;
        while rem > 0 {
            let c = rem.min(chunk_size);
            total += format!("{c:x}").len() + sig_part + c;
            rem -= c;
        }
        total + 1 + sig_part
    }
}

#[cfg(test)]
mod tests {
    use super::sigv4::*;
    use std::time::{Duration, SystemTime};

    fn example_signer() -> Signer {
        Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .at(SystemTime::UNIX_EPOCH + Duration::from_secs(1369353600)) // 2013-05-24T00:00:00Z
    }

    /// "Example: GET Object" from the AWS SigV4 (header authorization) documentation.
    #[test]
    fn signer_matches_aws_get_example() {
        let s = example_signer().sign(
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            &[("Range", "bytes=0-9")],
            EMPTY_SHA256,
        );
        assert_eq!(
            s.signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// "Example: PUT Object" from the AWS SigV4 streaming (aws-chunked) documentation.
    #[test]
    fn signer_matches_aws_chunked_example() {
        let data = vec![b'a'; 66560];
        assert_eq!(chunked_len(data.len(), 65536), 66824);
        let signer = example_signer();
        let s = signer.sign(
            "PUT",
            "https://s3.amazonaws.com/examplebucket/chunkObject.txt",
            &[
                ("content-encoding", "aws-chunked"),
                ("content-length", "66824"),
                ("x-amz-decoded-content-length", "66560"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            STREAMING_PAYLOAD,
        );
        assert_eq!(
            s.signature,
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
        );
        let body = signer.chunked_body(&s, &data, 65536);
        assert_eq!(body.len(), 66824);
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(
            "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
        ));
        assert!(text.contains(
            "400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
        ));
        assert!(text.ends_with(
            "0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("a+b%2Bc%20d%C3%BC", true), "a b+c dü");
        assert_eq!(super::percent_decode("a+b", false), "a+b");
    }
}
