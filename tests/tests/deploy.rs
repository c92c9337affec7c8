//! `deploy/` end to end: the scratch images are built from this test's own `cairn` binary and the
//! host's HAProxy, `deploy/compose/site.yml` (3 nodes x 2 drives behind HAProxy) is started under a
//! unique compose project, and `aws-sdk-s3` talks to the site only through the load balancer,
//! including while a node container is killed. `two-sites.yml` is paired with its `pair` service
//! and driven through the load balancer at a steady rate while every container of site A is
//! killed and brought back: the client keeps succeeding through site B, and afterwards both
//! sites, each checked directly (one node of each published on loopback by a test-only override
//! file), hold the same versions, delete markers, tags, retentions, users and policies, and every
//! write the client saw acknowledged.
//!
//! Skipped (with a printed notice) when Docker, Compose or HAProxy is not available.

use std::collections::{BTreeMap, BTreeSet};
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
    /// The deployment's file, then the test's override (if any).
    files: Vec<PathBuf>,
    _override: Option<tempfile::TempDir>,
    name: String,
    lb_port: u16,
    stats_port: u16,
}

impl Project {
    /// Starts `file`, merged with `override_yml` (a compose file the test writes) if given.
    fn up(compose: Vec<String>, file: &str, override_yml: Option<String>) -> Project {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let mut files = vec![deploy_dir().join("compose").join(file)];
        let dir = override_yml.map(|yml| {
            let dir = tempfile::tempdir().expect("override dir");
            let path = dir.path().join("override.yml");
            std::fs::write(&path, yml).expect("override file");
            files.push(path);
            dir
        });
        let p = Project {
            compose,
            files,
            _override: dir,
            name: format!("cairntest{}x{nanos}", std::process::id()),
            lb_port: free_port(),
            stats_port: free_port(),
        };
        p.ok(&["up", "-d"]);
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..]);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        c.args(["-p", &self.name])
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
async fn start_site(
    file: &str,
    override_yml: Option<String>,
) -> Option<(tokio::sync::MutexGuard<'static, ()>, Project)> {
    let (compose, haproxy) = prerequisites()?;
    let serial = SERIAL.lock().await;
    let started = Instant::now();
    build_images(&haproxy);
    let project = Project::up(compose, file, override_yml);
    project.wait_health("cluster", 200, SITE_TIMEOUT).await;
    eprintln!("{file} up behind the LB after {:?}", started.elapsed());
    Some((serial, project))
}

#[tokio::test]
async fn compose_site_behind_haproxy_survives_a_killed_node() {
    let Some((_serial, site)) = start_site("site.yml", None).await else {
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

/// The two-site test's override: one node of each site on loopback, so the test can check each
/// site directly rather than through the load balancer (the deployment itself publishes none).
fn probe_override(a: u16, b: u16) -> String {
    format!(
        "version: \"3.8\"\nservices:\n  a1:\n    networks: [probe]\n    ports: [\"127.0.0.1:{a}:9000\"]\n  b1:\n    networks: [probe]\n    ports: [\"127.0.0.1:{b}:9000\"]\nnetworks:\n  probe: {{}}\n"
    )
}

/// A version of an object: (bucket, key, version id).
type Version = (String, String, String);

/// What a PUT the client saw acknowledged wrote besides the data.
#[derive(Debug, Clone, PartialEq)]
struct Written {
    tags: BTreeMap<String, String>,
    /// (mode, retain-until in seconds since the epoch).
    retention: Option<(String, i64)>,
}

/// The client's view through the load balancer.
#[derive(Default)]
struct Acked {
    versions: BTreeMap<Version, Written>,
    markers: BTreeSet<Version>,
    /// Versions whose tags a PutObjectTagging replaced after their PUT, or may have (it failed):
    /// their tags are only compared between the sites, not with what the PUT wrote.
    retagged: BTreeSet<Version>,
    users: BTreeSet<String>,
    policies: BTreeSet<String>,
    attached: BTreeSet<(String, String)>,
    /// Every operation: (start, end, succeeded, IAM change).
    ops: Vec<(Instant, Instant, bool, bool)>,
}

impl Acked {
    fn successes_after(&self, t: Instant) -> usize {
        self.ops.iter().filter(|o| o.0 >= t && o.2).count()
    }
}

/// One site as read directly: every version (true: a delete marker), the tags of each version
/// (those never retagged), each retention, the users (with their policies) and policies.
#[derive(Debug, PartialEq)]
struct SiteView {
    versions: BTreeMap<Version, bool>,
    tags: BTreeMap<Version, BTreeMap<String, String>>,
    retentions: BTreeMap<Version, Option<(String, i64)>>,
    users: serde_json::Value,
    policies: BTreeMap<String, serde_json::Value>,
}

const BUCKETS: [&str; 2] = ["data", "locked"];
/// Keys the client overwrites and deletes.
const DATA_KEYS: u64 = 23;
const LOCKED_KEYS: u64 = 7;
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::data/*"]}]}"#;

async fn all_versions(c: &Client, bucket: &str) -> Option<BTreeMap<Version, bool>> {
    let mut out = BTreeMap::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let r = c
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .ok()?;
        for v in r.versions() {
            let id = (bucket.into(), v.key()?.into(), v.version_id()?.into());
            out.insert(id, false);
        }
        for m in r.delete_markers() {
            let id = (bucket.into(), m.key()?.into(), m.version_id()?.into());
            out.insert(id, true);
        }
        if !r.is_truncated().unwrap_or(false) {
            return Some(out);
        }
        key_marker = Some(r.next_key_marker()?.to_string());
        version_marker = r.next_version_id_marker().map(str::to_string);
    }
}

/// `cairn admin ARGS` as JSON, `None` if it fails.
async fn admin_json(
    cli: &cairn_tests::admin::AdminCli,
    args: &[&str],
) -> Option<serde_json::Value> {
    let (ok, out) = cli.run(args).await;
    if !ok {
        return None;
    }
    serde_json::from_str(&out).ok()
}

/// Site `alias` read directly through `c` (`None` while it does not answer everything).
async fn site_view(
    c: &Client,
    cli: &cairn_tests::admin::AdminCli,
    alias: &str,
    retagged: &BTreeSet<Version>,
) -> Option<SiteView> {
    let mut versions = BTreeMap::new();
    for b in BUCKETS {
        versions.extend(all_versions(c, b).await?);
    }
    let mut tags = BTreeMap::new();
    let mut retentions = BTreeMap::new();
    for ((b, k, v), marker) in &versions {
        if *marker {
            continue;
        }
        let id = (b.clone(), k.clone(), v.clone());
        if !retagged.contains(&id) {
            let t = c
                .get_object_tagging()
                .bucket(b)
                .key(k)
                .version_id(v)
                .send()
                .await
                .ok()?;
            let set = t
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            tags.insert(id.clone(), set);
        }
        if b == "locked" {
            let r = c
                .get_object_retention()
                .bucket(b)
                .key(k)
                .version_id(v)
                .send()
                .await
                .ok()?;
            let r = r.retention().and_then(|r| {
                Some((
                    r.mode()?.as_str().to_string(),
                    r.retain_until_date()?.secs(),
                ))
            });
            retentions.insert(id, r);
        }
    }
    let users = admin_json(cli, &["user", "list", alias]).await?;
    let mut policies = BTreeMap::new();
    let names = admin_json(cli, &["policy", "list", alias]).await?;
    for n in names.as_array()?.iter().filter_map(|n| n.as_str()) {
        if n.starts_with("fo-") {
            policies.insert(
                n.to_string(),
                admin_json(cli, &["policy", "info", alias, n]).await?,
            );
        }
    }
    Some(SiteView {
        versions,
        tags,
        retentions,
        users,
        policies,
    })
}

/// Everything `seen` acknowledged that `view` lacks (empty: all there).
fn missing(seen: &Acked, view: &SiteView) -> Vec<String> {
    let mut out = Vec::new();
    for (id, w) in &seen.versions {
        if view.versions.get(id) != Some(&false) {
            out.push(format!("version {id:?}"));
            continue;
        }
        if !seen.retagged.contains(id) && view.tags.get(id) != Some(&w.tags) {
            out.push(format!("tags of {id:?}: {:?}", view.tags.get(id)));
        }
        if w.retention.is_some() && view.retentions.get(id) != Some(&w.retention) {
            out.push(format!(
                "retention of {id:?}: {:?}",
                view.retentions.get(id)
            ));
        }
    }
    for id in &seen.markers {
        if view.versions.get(id) != Some(&true) {
            out.push(format!("delete marker {id:?}"));
        }
    }
    let users = view.users.as_array().cloned().unwrap_or_default();
    let policies_of = |u: &str| -> Option<Vec<String>> {
        let info = users.iter().find(|i| i["access_key"] == u)?;
        Some(
            info["policies"]
                .as_array()?
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect(),
        )
    };
    for u in &seen.users {
        if policies_of(u).is_none() {
            out.push(format!("user {u}"));
        }
    }
    for p in &seen.policies {
        if !view.policies.contains_key(p) {
            out.push(format!("policy {p}"));
        }
    }
    for (u, p) in &seen.attached {
        if !policies_of(u).is_some_and(|ps| ps.contains(p)) {
            out.push(format!("policy {p} attached to {u}"));
        }
    }
    out
}

/// One write through the load balancer (operation `n`), noted in `seen` if acknowledged: PUTs
/// with tags (new keys and overwrites), PUTs with a retention in the locked bucket, deletes
/// (delete markers), tag replacements, and every tenth an IAM change (user, policy, attachment).
async fn one_op(
    c: &Client,
    cli: &cairn_tests::admin::AdminCli,
    policy_file: &Path,
    seen: &std::sync::Mutex<Acked>,
    n: u64,
) -> (bool, bool) {
    use aws_sdk_s3::primitives::{ByteStream, DateTime};
    let note = |f: &dyn Fn(&mut Acked)| f(&mut seen.lock().unwrap());
    let body = random_bytes(1024 + (n as usize % 4) * 1024, n);
    let tagging = |what: &str| -> (String, BTreeMap<String, String>) {
        let tags: BTreeMap<String, String> = [
            ("op".to_string(), n.to_string()),
            ("what".to_string(), what.to_string()),
        ]
        .into();
        let header = tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        (header, tags)
    };
    match n % 10 {
        0 => {
            let k = n / 10;
            let last = {
                let s = seen.lock().unwrap();
                (s.users.last().cloned(), s.policies.last().cloned())
            };
            let path = policy_file.to_string_lossy().to_string();
            let (user, policy) = match (k % 3, last) {
                (0, _) => (format!("fo-u{k}"), String::new()),
                (1, _) => (String::new(), format!("fo-p{k}")),
                (_, (Some(u), Some(p))) => (u, p),
                _ => return (true, true),
            };
            let secret = format!("fo-secret-{k}-0123456789");
            let args = match k % 3 {
                0 => vec!["user", "add", "lb", &user, &secret],
                1 => vec!["policy", "create", "lb", &policy, &path],
                _ => vec!["policy", "attach", "lb", &policy, "--user", &user],
            };
            let ok = tokio::time::timeout(Duration::from_secs(10), cli.run(&args))
                .await
                .is_ok_and(|(ok, _)| ok);
            if ok {
                note(&|s: &mut Acked| match k % 3 {
                    0 => {
                        s.users.insert(user.clone());
                    }
                    1 => {
                        s.policies.insert(policy.clone());
                    }
                    _ => {
                        s.attached.insert((user.clone(), policy.clone()));
                    }
                });
            }
            (ok, true)
        }
        1..=3 | 7 | 8 => {
            let key = if n % 10 >= 7 {
                format!("new-{n}")
            } else {
                format!("k{}", n % DATA_KEYS)
            };
            let (header, tags) = tagging("put");
            let r = c
                .put_object()
                .bucket("data")
                .key(&key)
                .tagging(header)
                .body(ByteStream::from(body))
                .send()
                .await;
            let Some(v) = r.ok().and_then(|r| r.version_id().map(str::to_string)) else {
                return (false, false);
            };
            note(&|s: &mut Acked| {
                s.versions.insert(
                    ("data".into(), key.clone(), v.clone()),
                    Written {
                        tags: tags.clone(),
                        retention: None,
                    },
                );
            });
            (true, false)
        }
        4 => {
            let key = format!("l{}", n % LOCKED_KEYS);
            let until = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default()
                + 7200;
            let (header, tags) = tagging("locked");
            let r = c
                .put_object()
                .bucket("locked")
                .key(&key)
                .tagging(header)
                .content_md5(md5_b64(&body))
                .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Governance)
                .object_lock_retain_until_date(DateTime::from_secs(until))
                .body(ByteStream::from(body))
                .send()
                .await;
            let Some(v) = r.ok().and_then(|r| r.version_id().map(str::to_string)) else {
                return (false, false);
            };
            note(&|s: &mut Acked| {
                s.versions.insert(
                    ("locked".into(), key.clone(), v.clone()),
                    Written {
                        tags: tags.clone(),
                        retention: Some(("GOVERNANCE".into(), until)),
                    },
                );
            });
            (true, false)
        }
        5 | 9 => {
            let (bucket, key) = if n % 10 == 5 {
                ("data", format!("k{}", (n / 10) % DATA_KEYS))
            } else {
                ("locked", format!("l{}", (n / 10) % LOCKED_KEYS))
            };
            let r = c.delete_object().bucket(bucket).key(&key).send().await;
            let Some(v) = r
                .ok()
                .filter(|r| r.delete_marker() == Some(true))
                .and_then(|r| r.version_id().map(str::to_string))
            else {
                return (false, false);
            };
            note(&|s: &mut Acked| {
                s.markers.insert((bucket.into(), key.clone(), v.clone()));
            });
            (true, false)
        }
        _ => {
            // Replace the tags of the latest version the client wrote to `data`.
            let last = {
                let s = seen.lock().unwrap();
                s.versions
                    .keys()
                    .filter(|(b, k, _)| b == "data" && k.starts_with("new-"))
                    .max_by_key(|(_, k, _)| k[4..].parse::<u64>().unwrap_or(0))
                    .cloned()
            };
            let Some((b, k, v)) = last else {
                return (true, false);
            };
            let r = c
                .put_object_tagging()
                .bucket(&b)
                .key(&k)
                .version_id(&v)
                .tagging(tags(&[("retag", &n.to_string())]))
                .send()
                .await;
            // A retag that failed may still have taken effect (a 503 or a connection lost with
            // site A is no refusal): its version's tags are checked for agreement only, as for
            // an acknowledged one.
            note(&|s: &mut Acked| {
                s.retagged.insert((b.clone(), k.clone(), v.clone()));
            });
            (r.is_ok(), false)
        }
    }
}

/// How long the sites may take to agree once site A is back: a version or change that could not
/// be sent is retried by a rescan every 30 s (the outbox backs off to 30 s).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
/// The failover the deployment promises: from `docker kill` of all of site A to the client's
/// first success through site B.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);

// Two workers: the client's task goes on while the test blocks on `docker` commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_haproxy_fails_over_to_site_b() {
    let (probe_a, probe_b) = (free_port(), free_port());
    let Some((_serial, sites)) =
        start_site("two-sites.yml", Some(probe_override(probe_a, probe_b))).await
    else {
        return;
    };
    for n in ["a1", "a2", "a3"] {
        sites.wait_lb_server(n, true).await;
    }
    let direct = |port: u16| format!("http://127.0.0.1:{port}");
    let health = |port: u16| async move {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?
            .get(format!("{}/cairn/health/cluster", direct(port)))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };
    assert!(
        poll_until(SITE_TIMEOUT, || async {
            health(probe_b).await == Some(200)
        })
        .await,
        "site B has no write quorum"
    );

    // The one-time pairing, as deploy/README.md documents it (it fails while a site is not
    // ready: run again).
    let paired = poll_until(SITE_TIMEOUT, || async {
        sites
            .command(&["run", "--rm", "pair"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .await;
    assert!(paired, "`run --rm pair` did not succeed");
    let status = sites.ok(&["run", "--rm", "status"]);
    assert!(
        status.contains("http://b1:9000") && status.contains("http://b3:9000"),
        "site A's peer B with its three nodes: {status}"
    );

    let cli = std::sync::Arc::new(cairn_tests::admin::AdminCli::new());
    for (alias, url) in [
        ("lb", sites.endpoint()),
        ("a", direct(probe_a)),
        ("b", direct(probe_b)),
    ] {
        cli.ok(&["alias", "set", alias, &url, ROOT_USER, ROOT_PASSWORD])
            .await;
    }
    let policy_file = cli.file("fo-policy.json", POLICY);
    let direct_client = |port: u16| {
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
                .endpoint_url(direct(port))
                .force_path_style(true)
                .build(),
        )
    };
    let (ca, cb) = (direct_client(probe_a), direct_client(probe_b));

    let c = sites.client();
    create_bucket(&c, "data").await;
    ok(
        c.create_bucket()
            .bucket("locked")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "CreateBucket with object lock",
    );
    let both = poll_until(LB_TIMEOUT, || async {
        let mut all = true;
        for b in BUCKETS {
            all &= cb.head_bucket().bucket(b).send().await.is_ok();
        }
        all
    })
    .await;
    assert!(both, "the buckets made through the LB did not reach site B");
    let sent_to_b = |servers: &[(String, String, u64)]| -> u64 {
        servers
            .iter()
            .filter(|(s, _, _)| s.starts_with('b'))
            .map(|(_, _, sent)| sent)
            .sum()
    };
    let before = sent_to_b(&sites.lb_servers().await);

    // The client: one write every 100 ms through the load balancer, each attempt bounded (a
    // request in flight to a killed node gets no answer), no SDK retries (each attempt counts).
    let lb = Client::from_conf(
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
            .endpoint_url(sites.endpoint())
            .force_path_style(true)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .build(),
            )
            .build(),
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Acked::default()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (seen, stop, cli, policy_file) =
            (seen.clone(), stop.clone(), cli.clone(), policy_file.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let start = Instant::now();
                let (done, iam) = one_op(&lb, &cli, &policy_file, &seen, n).await;
                seen.lock()
                    .unwrap()
                    .ops
                    .push((start, Instant::now(), done, iam));
            }
        })
    };
    let wait_seen = |what: &'static str, timeout: Duration, f: Box<dyn Fn(&Acked) -> bool>| {
        let seen = seen.clone();
        async move {
            let ok = poll_until(timeout, || async { f(&seen.lock().unwrap()) }).await;
            assert!(ok, "{what}: not within {timeout:?}");
        }
    };
    let t0 = Instant::now();
    wait_seen(
        "40 writes through site A",
        LB_TIMEOUT,
        Box::new(move |s| s.successes_after(t0) >= 40 && !s.users.is_empty()),
    )
    .await;
    let served = sites.lb_servers().await;
    assert_eq!(
        sent_to_b(&served),
        before,
        "site B got requests while site A was healthy: {served:?}"
    );

    // One `docker kill` of the three containers (Compose's own `kill` takes them one by one).
    let ids: Vec<String> = ["a1", "a2", "a3"]
        .iter()
        .map(|n| sites.ok(&["ps", "-q", n]).trim().to_string())
        .collect();
    let t_kill = Instant::now();
    let out = run(Command::new("docker").arg("kill").args(&ids));
    let kill_took = t_kill.elapsed();
    assert!(out.status.success(), "docker kill: {out:?}");
    for n in ["a1", "a2", "a3"] {
        assert!(!sites.running(n), "{n} still running after kill");
    }
    wait_seen(
        "a write through site B",
        LB_TIMEOUT,
        Box::new(move |s| s.successes_after(t_kill + kill_took) > 0),
    )
    .await;
    // Operations that started once `docker kill` returned can only have been served by site B:
    // from the start of the kill to the end of the first of them that succeeded.
    let t_dead = t_kill + kill_took;
    let failover = {
        let s = seen.lock().unwrap();
        s.ops
            .iter()
            .filter(|o| o.0 >= t_dead && o.2)
            .map(|o| o.1 - t_kill)
            .min()
            .unwrap_or_default()
    };
    eprintln!("FIGURE failover (docker kill of site A to the first success through B): {failover:?} (the kill command took {kill_took:?})");
    for (start, end, done, iam) in seen.lock().unwrap().ops.iter().filter(|o| o.1 >= t_kill) {
        if start.saturating_duration_since(t_kill) > failover + Duration::from_secs(1) {
            break;
        }
        eprintln!(
            "  op at {:?} after the kill: {:?}, {}{}",
            start.saturating_duration_since(t_kill),
            *end - *start,
            if *done { "ok" } else { "failed" },
            if *iam { " (IAM)" } else { "" }
        );
    }
    assert!(
        failover <= FAILOVER_BOUND,
        "first success {failover:?} after the kill (bound {FAILOVER_BOUND:?})"
    );
    let t_failed_over = t_kill + failover;
    wait_seen(
        "40 writes and an IAM change through site B",
        LB_TIMEOUT,
        Box::new(move |s| {
            s.successes_after(t_failed_over) >= 40
                && s.ops.iter().any(|o| o.0 >= t_failed_over && o.2 && o.3)
        }),
    )
    .await;
    {
        let s = seen.lock().unwrap();
        let after: Vec<_> = s.ops.iter().filter(|o| o.0 >= t_failed_over).collect();
        let failed = after.iter().filter(|o| !o.2).count();
        eprintln!(
            "during the outage: {} operations after the failover, {failed} failed",
            after.len()
        );
        assert!(
            failed * 10 <= after.len(),
            "the client kept failing through site B: {failed} of {}",
            after.len()
        );
    }
    let served = sites.lb_servers().await;
    assert!(
        sent_to_b(&served) > before,
        "no request reached site B: {served:?}"
    );

    let t_back = Instant::now();
    sites.ok(&["start", "a1", "a2", "a3"]);
    for n in ["a1", "a2", "a3"] {
        sites.wait_lb_server(n, true).await;
    }
    let t_a_up = Instant::now();
    wait_seen(
        "20 writes after site A's return",
        LB_TIMEOUT,
        Box::new(move |s| s.successes_after(t_a_up) >= 20),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    client.await.expect("client task");
    let t_stopped = Instant::now();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "acknowledged: {} versions, {} delete markers, {} retagged, {} users, {} policies, {} attachments; {} operations",
        seen.versions.len(),
        seen.markers.len(),
        seen.retagged.len(),
        seen.users.len(),
        seen.policies.len(),
        seen.attached.len(),
        seen.ops.len()
    );
    let last = std::sync::Mutex::new((None, None));
    let converged = poll_until(CONVERGE_TIMEOUT, || async {
        let a = site_view(&ca, &cli, "a", &seen.retagged).await;
        let b = site_view(&cb, &cli, "b", &seen.retagged).await;
        let done = match (&a, &b) {
            (Some(a), Some(b)) => a == b && missing(&seen, a).is_empty(),
            _ => false,
        };
        *last.lock().unwrap() = (a, b);
        done
    })
    .await;
    let (a, b) = last.into_inner().unwrap();
    let (a, b) = (a.expect("site A readable"), b.expect("site B readable"));
    if !converged {
        let only = |x: &SiteView, y: &SiteView| -> Vec<String> {
            x.versions
                .iter()
                .filter(|(k, v)| y.versions.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k:?} marker={v}"))
                .take(20)
                .collect()
        };
        panic!(
            "the sites did not converge within {CONVERGE_TIMEOUT:?}:\nonly on A: {:?}\nonly on B: {:?}\ntags equal: {}, retentions equal: {}, users equal: {}, policies equal: {}\nmissing on A: {:?}\nmissing on B: {:?}",
            only(&a, &b),
            only(&b, &a),
            a.tags == b.tags,
            a.retentions == b.retentions,
            a.users == b.users,
            a.policies == b.policies,
            missing(&seen, &a).into_iter().take(20).collect::<Vec<_>>(),
            missing(&seen, &b).into_iter().take(20).collect::<Vec<_>>(),
        );
    }
    eprintln!(
        "FIGURE convergence: sites equal {:?} after site A's start ({:?} after the client stopped); {} versions and markers, {} users",
        t_back.elapsed(),
        t_stopped.elapsed(),
        a.versions.len(),
        a.users.as_array().map_or(0, Vec::len)
    );
    assert!(!seen.markers.is_empty() && !seen.retagged.is_empty());
    assert!(seen.versions.keys().any(|(b, _, _)| b == "locked"));
}
