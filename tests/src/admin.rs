//! `cairn admin` run as a subprocess, as an operator runs it: aliases in a config directory of
//! its own, so no developer's `~/.cairn` leaks in.

use std::path::PathBuf;
use std::time::Duration;

use crate::{run_cairn, Server};

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

    /// Runs `cairn admin ARGS`: (success, stdout + stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String) {
        let mut all: Vec<String> = vec!["admin".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        let dir = self.dir.path().to_string_lossy().to_string();
        let (status, out, err) = run_cairn(&all, &[("CAIRN_CONFIG_DIR", &dir)], CLI_TIMEOUT).await;
        (status.success(), format!("{out}{err}"))
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
}

impl Default for AdminCli {
    fn default() -> Self {
        Self::new()
    }
}
