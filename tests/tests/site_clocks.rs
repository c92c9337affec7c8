//! Two sites whose clocks are minutes apart (site b runs under libfaketime), paired through a
//! link the test can cut, change the same things at once and one after the other:
//! - an object written on the site whose clock is behind, after the other site's version of the
//!   same key reached it, is the latest on both sites (versions ordered by hybrid logical clock
//!   stamps: the write is stamped after what the key held, not by the slow clock);
//! - writes of one key on both sites while they are cut apart end with the same latest version
//!   on both once the link is back;
//! - a policy replaced on both sites while they are cut apart ends the same on both, the later
//!   stamp winning, and the stale change is counted in `cairn admin site status`; a policy
//!   replaced on the slow site after it saw the other's change wins everywhere.

use std::path::Path;
use std::time::Duration;

use cairn_tests::sites::TwoSites;
use cairn_tests::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// How long replication may take: a failed send is retried with backoff (at most 30 s apart).
const REACT: Duration = Duration::from_secs(120);

/// A TCP forwarder to one site that the test can cut: while cut, every connection through it
/// is closed and new ones are dropped, as a network partition between the sites would.
struct Gate {
    url: String,
    open: watch::Sender<bool>,
}

impl Gate {
    async fn to(target: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let url = format!("http://{}", listener.local_addr().expect("gate address"));
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let (open, rx) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if !*rx.borrow() {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Gate { url, open }
    }

    fn set(&self, open: bool) {
        self.open.send_replace(open);
    }
}

struct Skewed {
    s: TwoSites,
    gates: [Gate; 2],
}

/// Site b's clock runs `offset` (libfaketime's syntax, e.g. `-4m`) off site a's; the sites are
/// paired through gates.
async fn skewed_pair(offset: &str) -> (Skewed, tempfile::TempDir) {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: install Debian's libfaketime (.ci/run does)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("offset");
    std::fs::write(&file, format!("{offset}\n")).expect("offset file");
    let b = ServerOptions::new(4)
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &file.to_string_lossy())
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let s = TwoSites::start_both(ServerOptions::new(4), b).await;
    let gates = [
        Gate::to(&s.a.endpoint()).await,
        Gate::to(&s.b.endpoint()).await,
    ];
    let (via_a, via_b) = (format!("a={}", gates[0].url), format!("b={}", gates[1].url));
    s.admin(&[
        "site",
        "add",
        "a",
        "b",
        "--site-url",
        &via_a,
        "--site-url",
        &via_b,
    ])
    .await;
    (Skewed { s, gates }, dir)
}

impl Skewed {
    fn cut(&self, cut: bool) {
        for g in &self.gates {
            g.set(!cut);
        }
    }
}

async fn wait<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(poll_until(REACT, f).await, "{what}: not within {REACT:?}");
}

async fn put(c: &Client, key: &str, body: &str) -> String {
    put_version(c, "skew", key, body.as_bytes()).await
}

/// The version id of `key`'s latest version (None: unreadable or absent).
/// The latest version the site `c` talks to holds itself (reads are never proxied here).
async fn latest(c: &Client, key: &str) -> Option<String> {
    let r = cairn_tests::sites::head_here(c, "skew", key, None).await?;
    r.version_id().map(str::to_string)
}

async fn has_version(c: &Client, key: &str, id: &str) -> bool {
    cairn_tests::sites::head_here(c, "skew", key, Some(id))
        .await
        .is_some()
}

/// A policy document that names `tag`.
fn policy(dir: &Path, tag: &str) -> String {
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [format!("arn:aws:s3:::{tag}/*")],
        }],
    });
    let path = dir.join(format!("{tag}.json"));
    std::fs::write(&path, doc.to_string()).expect("policy file");
    path.to_string_lossy().to_string()
}

/// Which tag the shared policy names on `alias` (None: no such policy).
async fn policy_tag(s: &TwoSites, alias: &str) -> Option<String> {
    let (ok, out) = s.cli.run(&["policy", "info", alias, "shared"]).await;
    if !ok {
        return None;
    }
    let resource = out.split("arn:aws:s3:::").nth(1)?;
    Some(resource.split('/').next()?.to_string())
}

async fn stale_on(s: &TwoSites, alias: &str, peer: &str) -> u64 {
    s.site_status(alias).await["stale"][peer]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_changes_under_skewed_clocks_end_the_same_on_both_sites() {
    // Site b's clock runs 4 minutes behind a's (within SigV4's 15-minute window).
    let (k, dir) = skewed_pair("-4m").await;
    let s = &k.s;
    let (ca, cb) = (s.a.client(), s.b.client());
    ok(
        ca.create_bucket().bucket("skew").send().await,
        "CreateBucket",
    );
    wait("the bucket on b", || async {
        cb.head_bucket().bucket("skew").send().await.is_ok()
    })
    .await;

    // One after the other: a's version reaches b, then b (its clock behind) writes the key.
    let first = put(&ca, "seq", "first, on a").await;
    wait("a's version on b", || has_version(&cb, "seq", &first)).await;
    let second = put(&cb, "seq", "then, on b").await;
    wait("b's version on a", || has_version(&ca, "seq", &second)).await;
    assert_eq!(latest(&cb, "seq").await.as_deref(), Some(second.as_str()));
    assert_eq!(
        latest(&ca, "seq").await.as_deref(),
        Some(second.as_str()),
        "the later write is the latest on a too, though b's clock stamped it 4 minutes earlier"
    );

    // At once, cut apart: each site writes the key, then the link comes back.
    k.cut(true);
    let on_a = put(&ca, "both", "on a").await;
    let on_b = put(&cb, "both", "on b").await;
    let file_a = policy(dir.path(), "from-a");
    let file_b = policy(dir.path(), "from-b");
    s.admin(&["policy", "create", "a", "shared", &file_a]).await;
    s.admin(&["policy", "create", "b", "shared", &file_b]).await;
    k.cut(false);
    for (c, id) in [(&ca, &on_b), (&cb, &on_a)] {
        wait("the other site's version", || has_version(c, "both", id)).await;
    }
    let (la, lb) = (latest(&ca, "both").await, latest(&cb, "both").await);
    assert_eq!(la, lb, "the same latest version on both sites");
    assert_eq!(la.as_deref(), Some(on_a.as_str()), "the greater stamp");
    wait("the policy settled on both", || async {
        stale_on(s, "a", "b").await == 1 && policy_tag(s, "b").await.as_deref() == Some("from-a")
    })
    .await;
    assert_eq!(policy_tag(s, "a").await.as_deref(), Some("from-a"));
    assert_eq!(stale_on(s, "b", "a").await, 0);

    // After seeing a's change, b (behind) replaces the policy: its change wins everywhere.
    let file_c = policy(dir.path(), "then-b");
    s.admin(&["policy", "create", "b", "shared", &file_c]).await;
    wait("b's later policy on a", || async {
        policy_tag(s, "a").await.as_deref() == Some("then-b")
    })
    .await;
    assert_eq!(policy_tag(s, "b").await.as_deref(), Some("then-b"));
    assert_eq!(stale_on(s, "a", "b").await, 1, "nothing more was stale");
}
