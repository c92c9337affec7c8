//! Two single-node sites with different root credentials and a CLI with aliases `a` and `b` for
//! them, as the site replication tests pair them (`cairn admin site add a b`).

use crate::admin::AdminCli;
use crate::{Server, ServerOptions};

/// Site b's root credentials (site a has the tests' usual root).
pub const B_ROOT: (&str, &str) = ("siteb-root", "siteb-secret-abcdefghijklmnop");

pub struct TwoSites {
    pub a: Server,
    pub b: Server,
    pub cli: AdminCli,
}

impl TwoSites {
    pub async fn start() -> TwoSites {
        TwoSites::start_with(ServerOptions::new(4)).await
    }

    /// Site a started with `opts`, site b with 4 drives and [`B_ROOT`].
    pub async fn start_with(opts: ServerOptions) -> TwoSites {
        TwoSites::start_both(opts, ServerOptions::new(4)).await
    }

    /// Site a started with `a`, site b with `b` and [`B_ROOT`].
    pub async fn start_both(a: ServerOptions, mut b: ServerOptions) -> TwoSites {
        let a = Server::start_with(a).await;
        b.env_credentials = Some((B_ROOT.0.into(), B_ROOT.1.into()));
        let b = Server::start_with(b).await;
        let s = TwoSites {
            a,
            b,
            cli: AdminCli::new(),
        };
        s.cli.alias("a", &s.a).await;
        s.cli.alias("b", &s.b).await;
        s
    }

    /// Runs `cairn admin ARGS`, asserting success.
    pub async fn admin(&self, args: &[&str]) -> String {
        self.cli.ok(args).await
    }

    /// `site status ALIAS` as JSON.
    pub async fn site_status(&self, alias: &str) -> serde_json::Value {
        let out = self.admin(&["site", "status", alias]).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("site status {out}: {e}"))
    }
}
