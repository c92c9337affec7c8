//! `deploy/` end to end: the scratch images are built from this test's own `cairn` binary and the
//! host's HAProxy, `deploy/compose/site.yml` (3 nodes x 2 drives behind HAProxy) is started under a
//! unique compose project, and `aws-sdk-s3` talks to the site only through the load balancer,
//! including while a node container is killed. `two-sites.yml` is checked the same way: with all
//! of site A stopped the load balancer fails over to site B.
//!
//! Skipped (with a printed notice) when Docker, Compose or HAProxy is not available.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use cairn_tests::*;

/// Site start-up in containers: image already built, but three processes on a 2-core box.
const SITE_TIMEOUT: Duration = Duration::from_secs(120);
/// HAProxy checks every 2 s and needs two results to change a server's state.
const LB_TIMEOUT: Duration = Duration::from_secs(60);

/// The compose site tests share two cores: run them one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// How to call Compose here (`docker compose` or Debian's `docker-compose`), and the HAProxy
/// binary; `None` (after printing why) when the test cannot run on this machine.
fn prerequisites() -> Option<(Vec<String>, String)> {
    if !succeeds("docker", &["info"]) {
        eprintln!("SKIPPED deploy tests: `docker info` fails (no Docker engine)");
        return None;
    }
    let compose = if succeeds("docker", &["compose", "version"]) {
        vec!["docker".to_string(), "compose".to_string()]
    } else if succeeds("docker-compose", &["version"]) {
        vec!["docker-compose".to_string()]
    } else {
        eprintln!("SKIPPED deploy tests: neither `docker compose` nor `docker-compose` works");
        return None;
    };
    let haproxy = ["haproxy", "/usr/sbin/haproxy"]
        .into_iter()
        .find(|h| succeeds(h, &["-v"]));
    let Some(haproxy) = haproxy else {
        eprintln!("SKIPPED deploy tests: haproxy is not installed (apt-get install -y haproxy)");
        return None;
    };
    Some((compose, haproxy.to_string()))
}

/// Builds `cairn:local` and `cairn-haproxy:local` once per test process with deploy's own scripts.
fn build_images(haproxy: &str) {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = deploy_dir();
        let bin = cairn_bin();
        for (script, arg) in [
            (dir.join("build-image.sh"), bin.as_os_str()),
            (dir.join("haproxy/build-image.sh"), haproxy.as_ref()),
        ] {
            let out = run(Command::new(&script).arg(arg));
            if !out.status.success() {
                return Err(format!(
                    "{} failed: {}\n{}",
                    script.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = built {
        panic!("{e}");
    }
}

/// One compose project; `down -v` on drop (also when the test panics, after printing its logs).
struct Project {
    compose: Vec<String>,
    file: PathBuf,
    name: String,
    lb_port: u16,
    stats_port: u16,
}

impl Project {
    fn up(compose: Vec<String>, file: &str) -> Project {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let p = Project {
            compose,
            file: deploy_dir().join("compose").join(file),
            name: format!("cairntest{}x{nanos}", std::process::id()),
            lb_port: free_port(),
            stats_port: free_port(),
        };
        p.ok(&["up", "-d"]);
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..])
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.name])
            .args(args)
            .env("CAIRN_ROOT_USER", ROOT_USER)
            .env("CAIRN_ROOT_PASSWORD", ROOT_PASSWORD)
            .env("CAIRN_LB_PORT", self.lb_port.to_string())
            .env("CAIRN_LB_STATS_PORT", self.stats_port.to_string())
            .env_remove("CAIRN_IMAGE")
            .env_remove("CAIRN_HAPROXY_IMAGE");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = run(&mut self.command(args));
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the service's container is running, per Docker.
    fn running(&self, service: &str) -> bool {
        let id = self.ok(&["ps", "-q", service]);
        let id = id.trim();
        !id.is_empty()
            && String::from_utf8_lossy(
                &run(Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", id]))
                    .stdout,
            )
            .trim()
                == "true"
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.lb_port)
    }

    /// Root client through the load balancer.
    fn client(&self) -> Client {
        Client::from_conf(
            aws_sdk_s3::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .credentials_provider(Credentials::new(
                    ROOT_USER,
                    ROOT_PASSWORD,
                    None,
                    None,
                    "cairn-tests",
                ))
                .endpoint_url(self.endpoint())
                .force_path_style(true)
                .retry_config(RetryConfig::standard().with_max_attempts(3))
                .build(),
        )
    }

    /// Status of `GET /cairn/health/<what>` through the load balancer; `None` if nothing answers.
    async fn health(&self, what: &str) -> Option<u16> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?
            .get(format!("{}/cairn/health/{what}", self.endpoint()))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    async fn wait_health(&self, what: &str, status: u16, timeout: Duration) {
        let ok = poll_until(timeout, || async {
            self.health(what).await == Some(status)
        })
        .await;
        assert!(
            ok,
            "LB /cairn/health/{what} did not become {status} within {timeout:?}"
        );
    }

    /// HAProxy's view of backend `cairn`: (server, status, requests sent). The status is "UP" only
    /// once a health check passed (HAProxy starts servers as up before checking them).
    async fn lb_servers(&self) -> Vec<(String, String, u64)> {
        let url = format!("http://127.0.0.1:{}/stats;csv", self.stats_port);
        let Ok(resp) = reqwest::get(url).await else {
            return Vec::new();
        };
        let csv = resp.text().await.unwrap_or_default();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st), Some(check), Some(tot)) = (
            col("pxname"),
            col("svname"),
            col("status"),
            col("check_status"),
            col("stot"),
        ) else {
            return Vec::new();
        };
        let last = px.max(sv).max(st).max(check).max(tot);
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > last && f[px] == "cairn" && f[sv] != "BACKEND")
            .map(|f| {
                let status = match (f[st], f[check]) {
                    ("UP", "L7OK") => "UP",
                    ("UP", _) => "UNCHECKED",
                    (other, _) => other,
                };
                (
                    f[sv].to_string(),
                    status.to_string(),
                    f[tot].parse().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Waits until HAProxy has `server` in rotation (`up`: a check passed) or out of it (`!up`:
    /// "DOWN", or "MAINT (resolution)" once Docker's DNS no longer knows a stopped container).
    async fn wait_lb_server(&self, server: &str, up: bool) {
        let ok = poll_until(LB_TIMEOUT, || async {
            self.lb_servers().await.iter().any(|(s, st, _)| {
                s == server
                    && if up {
                        st == "UP"
                    } else {
                        st.starts_with("DOWN") || st.starts_with("MAINT")
                    }
            })
        })
        .await;
        assert!(
            ok,
            "HAProxy did not take {server} {} within {LB_TIMEOUT:?}: {:?}",
            if up { "up" } else { "down" },
            self.lb_servers().await
        );
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(out) = self
                .command(&["logs", "--no-color", "--tail", "80"])
                .output()
            {
                eprintln!(
                    "===== compose logs of {} =====\n{}{}\n===== end =====",
                    self.name,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let _ = self
            .command(&["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
    }
}

async fn put_and_check(c: &Client, bucket: &str, objects: &[(String, Vec<u8>)]) {
    for (key, data) in objects {
        let etag = put(c, bucket, key, data).await;
        assert_eq!(etag, etag_of(data), "ETag of {bucket}/{key}");
    }
    read_back(c, bucket, objects).await;
}

async fn read_back(c: &Client, bucket: &str, objects: &[(String, Vec<u8>)]) {
    for (key, data) in objects {
        assert_bytes_eq(&get(c, bucket, key).await, data, &format!("{bucket}/{key}"));
    }
}

async fn bucket_names(c: &Client) -> Vec<String> {
    ok(c.list_buckets().send().await, "ListBuckets")
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect()
}

/// Builds the images and starts `file` (holding the lock that keeps these tests one at a time),
/// waiting until the load balancer reports a site with write quorum; `None` when skipped. The
/// project comes second so that it is torn down before the lock is released.
async fn start_site(file: &str) -> Option<(tokio::sync::MutexGuard<'static, ()>, Project)> {
    let (compose, haproxy) = prerequisites()?;
    let serial = SERIAL.lock().await;
    let started = Instant::now();
    build_images(&haproxy);
    let project = Project::up(compose, file);
    project.wait_health("cluster", 200, SITE_TIMEOUT).await;
    eprintln!("{file} up behind the LB after {:?}", started.elapsed());
    Some((serial, project))
}

#[tokio::test]
async fn compose_site_behind_haproxy_survives_a_killed_node() {
    let Some((_serial, site)) = start_site("site.yml").await else {
        return;
    };
    for n in ["node1", "node2", "node3"] {
        site.wait_lb_server(n, true).await;
    }

    let c = site.client();
    create_bucket(&c, "deployed").await;
    let objects: Vec<(String, Vec<u8>)> = [(1, KIB), (2, 300 * KIB), (3, 3 * MIB)]
        .into_iter()
        .map(|(i, len)| (format!("obj-{i}"), random_bytes(len, i)))
        .collect();
    put_and_check(&c, "deployed", &objects).await;
    let spread = site.lb_servers().await;
    assert!(
        spread.len() == 3 && spread.iter().all(|(_, _, sent)| *sent > 0),
        "round robin should have sent requests to all 3 nodes: {spread:?}"
    );

    site.ok(&["kill", "node1"]);
    assert!(!site.running("node1"), "node1 still running after kill");
    // Until HAProxy's checks mark node1 down, a probe it sends there fails: poll, bounded.
    site.wait_health("cluster", 200, Duration::from_secs(30))
        .await;
    read_back(&c, "deployed", &objects).await;
    let more: Vec<(String, Vec<u8>)> = [(4, 200 * KIB), (5, 2 * MIB)]
        .into_iter()
        .map(|(i, len)| (format!("obj-{i}"), random_bytes(len, i)))
        .collect();
    put_and_check(&c, "deployed", &more).await;
    create_bucket(&c, "while-degraded").await;
    site.wait_lb_server("node1", false).await;
    assert_eq!(
        site.health("cluster").await,
        Some(200),
        "quorum with node1 down"
    );
    read_back(&c, "deployed", &objects).await;

    site.ok(&["start", "node1"]);
    site.wait_lb_server("node1", true).await;
    assert_eq!(site.health("cluster").await, Some(200));
    read_back(&c, "deployed", &objects).await;
    read_back(&c, "deployed", &more).await;
    assert!(bucket_names(&c)
        .await
        .contains(&"while-degraded".to_string()));
}

#[tokio::test]
async fn two_sites_haproxy_fails_over_to_site_b() {
    let Some((_serial, sites)) = start_site("two-sites.yml").await else {
        return;
    };
    for n in ["a1", "a2", "a3"] {
        sites.wait_lb_server(n, true).await;
    }

    sites.wait_health("cluster", 200, SITE_TIMEOUT).await;
    let sent_to_b = |servers: &[(String, String, u64)]| -> u64 {
        servers
            .iter()
            .filter(|(s, _, _)| s.starts_with('b'))
            .map(|(_, _, sent)| sent)
            .sum()
    };
    let before = sent_to_b(&sites.lb_servers().await);

    let c = sites.client();
    create_bucket(&c, "on-site-a").await;
    let a_objects = vec![("a".to_string(), random_bytes(100 * KIB, 10))];
    put_and_check(&c, "on-site-a", &a_objects).await;
    let served = sites.lb_servers().await;
    assert_eq!(
        sent_to_b(&served),
        before,
        "site B got requests while site A was healthy: {served:?}"
    );

    sites.ok(&["stop", "-t", "5", "a1", "a2", "a3"]);
    for n in ["a1", "a2", "a3"] {
        sites.wait_lb_server(n, false).await;
    }
    sites.wait_health("cluster", 200, LB_TIMEOUT).await;
    // Site B is an independent cluster until replication lands: site A's bucket is not there.
    assert!(
        !bucket_names(&c).await.contains(&"on-site-a".to_string()),
        "site A's bucket is visible after failover: requests did not reach site B"
    );
    create_bucket(&c, "on-site-b").await;
    let b_objects = vec![("b".to_string(), random_bytes(200 * KIB, 11))];
    put_and_check(&c, "on-site-b", &b_objects).await;
    let served = sites.lb_servers().await;
    assert!(
        sent_to_b(&served) > before,
        "no request reached site B: {served:?}"
    );

    sites.ok(&["start", "a1", "a2", "a3"]);
    let back = poll_until(SITE_TIMEOUT, || async {
        c.list_buckets()
            .send()
            .await
            .is_ok_and(|r| r.buckets().iter().any(|b| b.name() == Some("on-site-a")))
    })
    .await;
    assert!(
        back,
        "clients were not sent back to site A once it recovered"
    );
    read_back(&c, "on-site-a", &a_objects).await;
}
