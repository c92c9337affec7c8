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

/// What a [`Gate`] does with the connections it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateMode {
    /// Relays them to the site behind it.
    Open,
    /// Closes each once its request line is read: the site behind is unreachable.
    Cut,
    /// Holds each open and never answers: the site behind is up but does not answer.
    Stall,
}

/// A TCP relay in front of one site, given to the other as its URL (`--site-url`), so a test
/// decides whether one direction of a pair gets through, and sees each request line sent over it
/// (one connection per request: the link opens one per call).
pub struct Gate {
    port: u16,
    mode: std::sync::Arc<std::sync::Mutex<GateMode>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(GateMode, String)>>>,
}

impl Gate {
    /// A gate to `127.0.0.1:target`, open.
    pub async fn start(target: u16) -> Gate {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("gate listener");
        let port = listener.local_addr().expect("gate address").port();
        let mode = std::sync::Arc::new(std::sync::Mutex::new(GateMode::Open));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (m, s) = (mode.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (m, s) = (m.clone(), s.clone());
                tokio::spawn(async move {
                    // The request line (the link writes it at once).
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 64 * 1024 {
                        match inbound.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let now = *m.lock().expect("gate mode");
                    s.lock().expect("gate log").push((now, line));
                    match now {
                        GateMode::Cut => {}
                        GateMode::Stall => {
                            while let Ok(n) = inbound.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                        GateMode::Open => {
                            use tokio::io::AsyncWriteExt;
                            let Ok(mut outbound) =
                                tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                            else {
                                return;
                            };
                            if outbound.write_all(&head).await.is_ok() {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Gate { port, mode, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: GateMode) {
        *self.mode.lock().expect("gate mode") = mode;
    }

    /// Request lines seen so far (`GET /bucket/key?... HTTP/1.1`), with the mode each met.
    pub fn seen(&self) -> Vec<(GateMode, String)> {
        self.seen.lock().expect("gate log").clone()
    }

    /// How many request lines seen so far start with `prefix` (e.g. `"GET /b/k"`).
    pub fn count(&self, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|(_, l)| l.starts_with(prefix))
            .count()
    }
}

/// HEAD of `bucket/key` (or of its version `version`) as the site `c` talks to holds it itself:
/// the proxy mark keeps a version only its peer holds from being read from there.
pub async fn head_here(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Option<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
    c.head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .customize()
        .mutate_request(|r| {
            r.headers_mut().insert("x-cairn-proxied-by", "test");
        })
        .send()
        .await
        .ok()
}
