//! A peer site is a set of endpoints (`cairn admin site add ... --site-url ALIAS=URL`), tried in
//! turn: a first endpoint nobody listens on is passed over, and a site of three nodes whose node
//! the replicator was using is killed keeps taking objects and IAM through another node.

use std::time::Duration;

use cairn_tests::admin::AdminCli;
use cairn_tests::cluster::Cluster;
use cairn_tests::sites::TwoSites;
use cairn_tests::*;

/// How long replication may take: a failed send is retried by a rescan every 30 s.
const REACT: Duration = Duration::from_secs(120);

async fn wait<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(poll_until(REACT, f).await, "{what}: not within {REACT:?}");
}

async fn status(cli: &AdminCli, alias: &str) -> serde_json::Value {
    let out = cli.ok(&["site", "status", alias]).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("site status {out}: {e}"))
}

async fn body_of(c: &Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let r = c.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(r.body.collect().await.ok()?.into_bytes().to_vec())
}

/// Whether `srv` knows user `key` (with no policy, a known user is refused with AccessDenied
/// rather than InvalidAccessKeyId).
async fn knows_user(srv: &Server, key: &str, secret: &str) -> bool {
    match srv.client_with(key, secret).list_buckets().send().await {
        Ok(_) => true,
        Err(e) => err_code(&e).as_deref() == Some("AccessDenied"),
    }
}

/// The endpoints `alias` shows for its one peer: (url, online, last error), in the order its
/// next call tries them.
async fn endpoints_seen(cli: &AdminCli, alias: &str) -> Vec<(String, bool, String)> {
    let st = status(cli, alias).await;
    st["peers"][0]["contact"]["endpoints"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    (
                        e["endpoint"].as_str().unwrap_or_default().to_string(),
                        e["online"] == true,
                        e["last_error"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_endpoint_is_passed_over() {
    let s = TwoSites::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let live = s.b.endpoint();

    // Refused before anything changes: a site not being paired, no URL, not http(s).
    for (bad, why) in [
        ("c=http://127.0.0.1:1", "not one of the sites"),
        ("b", "expected ALIAS=URL"),
        ("b=ftp://127.0.0.1:1", "http:// or https://"),
    ] {
        let out = s
            .cli
            .fails(&["site", "add", "a", "b", "--site-url", bad])
            .await;
        assert!(out.contains(why), "--site-url {bad}: {out}");
    }
    // The admin API refuses a peer without endpoints, or with one that is no URL.
    for endpoints in [serde_json::json!([]), serde_json::json!(["nowhere"])] {
        let body = serde_json::json!({
            "local": "a",
            "peers": [{
                "name": "b",
                "endpoints": endpoints,
                "access_key": "site-replicator-handmade",
                "secret_key": "handmade-secret-0123456789",
            }],
        });
        let (code, text) =
            s.a.signed(
                "POST",
                "/cairn/admin/v1/site/configure",
                (ROOT_USER, ROOT_PASSWORD, None),
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(code, 400, "endpoints {endpoints}: {text}");
    }
    assert_eq!(status(&s.cli, "a").await["peers"], serde_json::json!([]));

    s.cli
        .ok(&[
            "site",
            "add",
            "a",
            "b",
            "--site-url",
            &format!("b={dead}"),
            "--site-url",
            &format!("b={live}"),
        ])
        .await;
    let st = status(&s.cli, "a").await;
    assert_eq!(
        st["peers"][0]["endpoints"],
        serde_json::json!([dead, live]),
        "{st}"
    );
    assert_eq!(
        status(&s.cli, "b").await["peers"][0]["endpoints"],
        serde_json::json!([s.a.endpoint()]),
        "a site without --site-url is reached at its alias's URL"
    );

    let (ca, cb) = (s.a.client(), s.b.client());
    create_bucket(&ca, "eps").await;
    let data = random_bytes(100 * KIB, 1);
    put(&ca, "eps", "k", &data).await;
    s.cli
        .ok(&["user", "add", "a", "dave", "dave-secret-0123456789"])
        .await;
    wait("object on b", || async {
        body_of(&cb, "eps", "k").await.as_deref() == Some(&data[..])
    })
    .await;
    wait("user on b", || async {
        knows_user(&s.b, "dave", "dave-secret-0123456789").await
    })
    .await;
    // And back: a has one endpoint.
    let back = random_bytes(10 * KIB, 2);
    put(&cb, "eps", "back", &back).await;
    wait("object on a", || async {
        body_of(&ca, "eps", "back").await.as_deref() == Some(&back[..])
    })
    .await;

    // The dead endpoint was tried (it came first) and is shown down; the live one goes first now.
    let seen = endpoints_seen(&s.cli, "a").await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1),
        (live.as_str(), true),
        "{seen:?}"
    );
    assert_eq!(seen[1].0, dead, "{seen:?}");
    assert!(!seen[1].1 && seen[1].2.contains("unreachable"), "{seen:?}");
    let contact = &status(&s.cli, "a").await["peers"][0]["contact"];
    assert_eq!(contact["online"], true, "{contact}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_goes_on_when_the_peer_node_it_used_is_killed() {
    let a = Server::start(4).await;
    let mut b = Cluster::start(3, 2, Some(2)).await;
    let cli = AdminCli::new();
    cli.alias("a", &a).await;
    cli.alias("b", b.node(0)).await;
    let urls: Vec<String> = (0..3)
        .map(|i| format!("b={}", b.node(i).endpoint()))
        .collect();
    let mut args = vec!["site", "add", "a", "b"];
    for u in &urls {
        args.extend(["--site-url", u.as_str()]);
    }
    cli.ok(&args).await;

    let ca = a.client();
    create_bucket(&ca, "multi").await;
    let before = random_bytes(50 * KIB, 3);
    put(&ca, "multi", "before", &before).await;
    wait("first object on b", || async {
        body_of(&b.node(1).client(), "multi", "before")
            .await
            .as_deref()
            == Some(&before[..])
    })
    .await;
    let seen = endpoints_seen(&cli, "a").await;
    assert!(seen[0].1, "the endpoint in use answered: {seen:?}");
    let used = (0..3)
        .find(|i| b.node(*i).endpoint() == seen[0].0)
        .unwrap_or_else(|| panic!("{seen:?}"));
    eprintln!("site a replicates through b's node {used}; killing it");
    b.node_mut(used).kill9();
    let other = (used + 1) % 3;

    let after = random_bytes(80 * KIB, 4);
    put(&ca, "multi", "after", &after).await;
    cli.ok(&["user", "add", "a", "erin", "erin-secret-0123456789"])
        .await;
    create_bucket(&ca, "made-later").await;
    let bo = b.node(other).client();
    wait("object written after the kill on b", || async {
        body_of(&bo, "multi", "after").await.as_deref() == Some(&after[..])
    })
    .await;
    wait("bucket and user made after the kill on b", || async {
        bo.head_bucket().bucket("made-later").send().await.is_ok()
            && knows_user(b.node(other), "erin", "erin-secret-0123456789").await
    })
    .await;
    let seen = endpoints_seen(&cli, "a").await;
    let killed = b.node(used).endpoint();
    assert!(seen[0].1 && seen[0].0 != killed, "{seen:?}");
    assert!(
        seen.iter().any(|(e, online, _)| *e == killed && !online),
        "the killed node is shown down: {seen:?}"
    );
}

/// `CAIRN_HOST_<ALIAS>` (as `mc`'s `MC_HOST_<alias>`) names a site without an alias file: how the
/// compose deployment's one-shot `pair` container pairs its sites. A wrong or malformed value is
/// refused, and the secret it holds is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_may_come_from_the_environment() {
    let srv = Server::start(1).await;
    let empty = tempfile::tempdir().expect("config dir");
    let dir = empty.path().to_string_lossy().to_string();
    let with = |secret: &str| {
        srv.endpoint()
            .replacen("://", &format!("://{ROOT_USER}:{secret}@"), 1)
    };
    let cli = |value: String| {
        let dir = dir.clone();
        async move {
            let args = ["admin", "site", "status", "env"].map(String::from);
            let env = [
                ("CAIRN_CONFIG_DIR", dir.as_str()),
                ("CAIRN_HOST_env", value.as_str()),
            ];
            let (st, out, err) = run_cairn(&args, &env, admin::CLI_TIMEOUT).await;
            (st.success(), format!("{out}{err}"))
        }
    };
    let (ok, out) = cli(with(ROOT_PASSWORD)).await;
    assert!(ok && out.contains("\"peers\""), "{out}");
    let (ok, out) = cli(with("wrong-secret-0123456789")).await;
    assert!(!ok && out.contains("403"), "{out}");
    assert!(!out.contains("wrong-secret"), "{out}");
    let (ok, out) = cli(format!("{}@nowhere", ROOT_PASSWORD)).await;
    assert!(!ok && out.contains("CAIRN_HOST_env"), "{out}");
    assert!(!out.contains(ROOT_PASSWORD), "{out}");
}
