//! `cairn admin` run as a subprocess, as an operator runs it: aliases in a config directory of
//! its own, so no developer's `~/.cairn` leaks in.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{cairn_bin, run_cairn, Server};

/// How long one CLI call may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

pub struct AdminCli {
    dir: tempfile::TempDir,
}

impl AdminCli {
    pub fn new() -> AdminCli {
        AdminCli {
            dir: tempfile::tempdir().expect("config dir"),
        }
    }

    /// A CLI with alias `name` for `srv`'s root credentials.
    pub async fn for_server(name: &str, srv: &Server) -> AdminCli {
        let a = AdminCli::new();
        a.alias(name, srv).await;
        a
    }

    /// Sets alias `name` to `srv` with its root credentials.
    pub async fn alias(&self, name: &str, srv: &Server) {
        let ep = srv.endpoint();
        self.ok(&[
            "alias",
            "set",
            name,
            &ep,
            srv.access_key(),
            srv.secret_key(),
        ])
        .await;
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Runs `cairn admin ARGS`: (success, stdout, stderr).
    pub async fn output(&self, args: &[&str]) -> (bool, String, String) {
        let mut all: Vec<String> = vec!["admin".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        let dir = self.dir.path().to_string_lossy().to_string();
        let (status, out, err) = run_cairn(&all, &[("CAIRN_CONFIG_DIR", &dir)], CLI_TIMEOUT).await;
        (status.success(), out, err)
    }

    /// Runs `cairn admin ARGS`: (success, stdout + stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String) {
        let (ok, out, err) = self.output(args).await;
        (ok, format!("{out}{err}"))
    }

    /// Runs `cairn admin ARGS`, asserting success; returns stdout parsed as JSON.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let (ok, out, err) = self.output(args).await;
        assert!(ok, "cairn admin {args:?} failed: {out}{err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("cairn admin {args:?} printed no JSON ({e}): {out}{err}"))
    }

    /// Runs `cairn admin ARGS`, asserting success; returns stdout + stderr.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.run(args).await;
        assert!(ok, "cairn admin {args:?} failed: {out}");
        out
    }

    /// Runs `cairn admin ARGS`, asserting failure; returns the output.
    pub async fn fails(&self, args: &[&str]) -> String {
        let (ok, out) = self.run(args).await;
        assert!(!ok, "cairn admin {args:?} should fail: {out}");
        out
    }

    /// Writes a file (a policy document) into the config directory.
    pub fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).expect("write file");
        p
    }

    /// Creates policy `name` through `alias`.
    pub async fn policy(&self, alias: &str, name: &str, body: &str) {
        let p = self.file(&format!("{name}.json"), body);
        self.ok(&["policy", "create", alias, name, &p.to_string_lossy()])
            .await;
    }

    /// Adds user `user` (with `secret`) through `alias`, allowed what policy `name` (created
    /// from `body`) allows.
    pub async fn user_with_policy(
        &self,
        alias: &str,
        user: &str,
        secret: &str,
        name: &str,
        body: &str,
    ) {
        self.policy(alias, name, body).await;
        self.ok(&["user", "add", alias, user, secret]).await;
        self.ok(&["policy", "attach", alias, name, "--user", user])
            .await;
    }

    /// Adds user `plainuser` through `alias`, allowed all of S3 and nothing of the admin API,
    /// and alias `plain` for it at `srv`.
    pub async fn plain_user(&self, alias: &str, srv: &Server) {
        self.user_with_policy(
            alias,
            "plainuser",
            "plainsecret123",
            "rw",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}"#,
        )
        .await;
        self.ok(&[
            "alias",
            "set",
            "plain",
            &srv.endpoint(),
            "plainuser",
            "plainsecret123",
        ])
        .await;
    }
}

/// A `cairn admin ARGS` process left running ([`AdminCli::spawn`]), and what it printed so far.
pub struct Background {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl AdminCli {
    /// Starts `cairn admin ARGS` and leaves it running (killed when dropped).
    pub fn spawn(&self, args: &[&str]) -> Background {
        let mut child = tokio::process::Command::new(cairn_bin())
            .arg("admin")
            .args(args)
            .env("CAIRN_CONFIG_DIR", self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cairn admin");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let o: Arc<Mutex<Vec<String>>> = Arc::clone(&stdout);
        let e: Arc<Mutex<String>> = Arc::clone(&stderr);
        let readers = vec![
            tokio::spawn(async move {
                let mut out = BufReader::new(out).lines();
                while let Ok(Some(line)) = out.next_line().await {
                    o.lock().unwrap().push(line);
                }
            }),
            tokio::spawn(async move {
                let mut err = BufReader::new(err).lines();
                while let Ok(Some(line)) = err.next_line().await {
                    let mut e = e.lock().unwrap();
                    e.push_str(&line);
                    e.push('\n');
                }
            }),
        ];
        Background {
            child,
            stdout,
            stderr,
            readers,
        }
    }
}

impl Background {
    /// The lines it printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (a minute at most) until its stderr says `what`.
    pub async fn until_stderr(&self, what: &str) {
        let deadline = Instant::now() + CLI_TIMEOUT;
        while !self.stderr().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} on stderr within {CLI_TIMEOUT:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (two minutes at most) for it to exit, asserting success; returns its stdout.
    pub async fn finish(mut self) -> String {
        let status = tokio::time::timeout(2 * CLI_TIMEOUT, self.child.wait())
            .await
            .expect("cairn admin exits")
            .expect("wait for cairn admin");
        for r in self.readers.drain(..) {
            r.await.expect("output reader");
        }
        let out = self.lines().join("\n");
        assert!(
            status.success(),
            "exited {status}: {out}\n{}",
            self.stderr()
        );
        out
    }
}

impl Default for AdminCli {
    fn default() -> Self {
        Self::new()
    }
}
