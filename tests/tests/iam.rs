//! IAM on a 3-node site, driven by the `cairn admin` CLI (mc syntax, aliases) and `aws-sdk-s3`:
//! per-bucket read-only users, group Deny over user Allow, disabling and detaching taking effect
//! on every node within a second, service accounts narrowed by an inline policy, `${aws:username}`
//! home prefixes, `aws:SourceIp` conditions, `MalformedPolicy`, root's immunity, STS
//! `AssumeRole` sessions, bucket policies with anonymous access, and SigV2 clients (boto3).

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_tests::admin::AdminCli;
use cairn_tests::cluster::Cluster;
use cairn_tests::*;

/// How long a change may take to reach a node (the issue's bound).
const PROPAGATION: Duration = Duration::from_secs(1);

/// The CLI with aliases n0, n1, n2 for root on each node of a site.
struct Admin(AdminCli);

impl std::ops::Deref for Admin {
    type Target = AdminCli;
    fn deref(&self) -> &AdminCli {
        &self.0
    }
}

impl Admin {
    async fn new(site: &Cluster) -> Admin {
        let a = AdminCli::new();
        for i in 0..3 {
            a.alias(&format!("n{i}"), site.node(i)).await;
        }
        Admin(a)
    }

    async fn policy(&self, name: &str, body: &str) {
        self.0.policy("n0", name, body).await;
    }
}

/// A one-statement policy document.
fn policy_doc(effect: &str, actions: &[&str], resources: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": effect, "Action": actions, "Resource": resources}]
    })
    .to_string()
}

fn allow(actions: &[&str], resources: &[&str]) -> String {
    policy_doc("Allow", actions, resources)
}

fn deny(actions: &[&str], resources: &[&str]) -> String {
    policy_doc("Deny", actions, resources)
}

/// Polls `f` until it returns true; panics after `within`. Returns the time it took.
async fn until<F, Fut>(what: &str, within: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn can_get(c: &Client, bucket: &str, key: &str) -> bool {
    c.get_object().bucket(bucket).key(key).send().await.is_ok()
}

async fn can_put(c: &Client, bucket: &str, key: &str) -> bool {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(b"x".to_vec().into())
        .send()
        .await
        .is_ok()
}

async fn can_list(c: &Client, bucket: &str) -> bool {
    c.list_objects_v2().bucket(bucket).send().await.is_ok()
}

/// Clients of one identity on every node.
fn clients(site: &Cluster, ak: &str, sk: &str) -> Vec<Client> {
    (0..3).map(|i| site.node(i).client_with(ak, sk)).collect()
}

/// Waits until the identity can GET on every node (a new user reaches every node).
async fn wait_known(cs: &[Client], bucket: &str, key: &str) {
    for (i, c) in cs.iter().enumerate() {
        until(
            &format!("GET {bucket}/{key} on node {i}"),
            Duration::from_secs(10),
            || can_get(c, bucket, key),
        )
        .await;
    }
}

/// After a change returned, the time until every node refuses the GET (each polled from the
/// moment the change returned); asserts each within [`PROPAGATION`].
async fn refused_everywhere(cs: &[Client], bucket: &str, key: &str, what: &str) -> Duration {
    let start = Instant::now();
    let mut farthest = Duration::ZERO;
    let polls = cs.iter().enumerate().map(|(i, c)| async move {
        until(
            &format!("{what}: refused on node {i}"),
            PROPAGATION,
            || async { !can_get(c, bucket, key).await },
        )
        .await;
        start.elapsed()
    });
    for d in futures::future::join_all(polls).await {
        farthest = farthest.max(d);
    }
    farthest
}

async fn setup_buckets(site: &Cluster) {
    let root = site.node(0).client();
    for b in ["data", "other", "homes"] {
        create_bucket(&root, b).await;
    }
    put(&root, "data", "a.txt", b"data-a").await;
    put(&root, "other", "a.txt", b"other-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn iam_on_a_three_node_site() {
    let site = Cluster::start(3, 2, Some(2)).await;
    let admin = Admin::new(&site).await;
    setup_buckets(&site).await;
    readonly_user_on_one_bucket(&site, &admin).await;
    group_deny_beats_user_allow(&site, &admin).await;
    disable_and_detach_take_effect_everywhere(&site, &admin).await;
    service_account_is_narrower_than_its_parent(&site, &admin).await;
    home_prefix_and_source_ip(&site, &admin).await;
    malformed_policies_and_root_are_refused(&site, &admin).await;
    sts_sessions(&site).await;
    bucket_policies_and_anonymous_access(&site).await;
    signature_v2_clients(&site).await;
    per_key_deletes_and_governance_bypass(&site, &admin).await;
    existing_object_tags(&site, &admin).await;
}

async fn readonly_user_on_one_bucket(site: &Cluster, admin: &Admin) {
    admin
        .policy(
            "data-ro",
            &allow(
                &["s3:GetObject", "s3:ListBucket"],
                &["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
            ),
        )
        .await;
    let out = admin
        .ok(&["user", "add", "n0", "alice", "alice-secret-1"])
        .await;
    assert!(out.contains("Added user `alice`"), "{out}");
    admin
        .ok(&["policy", "attach", "n0", "data-ro", "--user", "alice"])
        .await;
    let cs = clients(site, "alice", "alice-secret-1");
    wait_known(&cs, "data", "a.txt").await;
    for c in &cs {
        assert_eq!(get(c, "data", "a.txt").await, b"data-a");
        assert!(can_list(c, "data").await);
        assert_s3_err(
            c.put_object()
                .bucket("data")
                .key("new")
                .body(b"x".to_vec().into())
                .send()
                .await,
            403,
            Some("AccessDenied"),
            "alice PUT data/new",
        );
        assert_s3_err(
            c.get_object().bucket("other").key("a.txt").send().await,
            403,
            Some("AccessDenied"),
            "alice GET other/a.txt",
        );
        assert!(!can_list(c, "other").await);
        assert!(!can_put(c, "other", "x").await);
    }
    let info = admin.ok(&["user", "info", "n1", "alice"]).await;
    assert!(
        info.contains("data-ro") && info.contains("enabled"),
        "{info}"
    );
    let who = admin_as(
        admin,
        site,
        "alice",
        "alice-secret-1",
        &["whoami", "alice-alias"],
    )
    .await;
    assert!(who.contains("\"user\"") && who.contains("data-ro"), "{who}");
    // A user without admin rights cannot use the admin API.
    let (ok, out) = admin_as_result(
        admin,
        site,
        "alice",
        "alice-secret-1",
        &["user", "list", "alice-alias"],
    )
    .await;
    assert!(!ok && out.contains("AccessDenied"), "{out}");
}

/// Runs an admin command through an alias `alice-alias` with the given credentials.
async fn admin_as_result(
    admin: &Admin,
    site: &Cluster,
    ak: &str,
    sk: &str,
    args: &[&str],
) -> (bool, String) {
    admin
        .ok(&[
            "alias",
            "set",
            "alice-alias",
            &site.node(2).endpoint(),
            ak,
            sk,
        ])
        .await;
    admin.run(args).await
}

async fn admin_as(admin: &Admin, site: &Cluster, ak: &str, sk: &str, args: &[&str]) -> String {
    let (ok, out) = admin_as_result(admin, site, ak, sk, args).await;
    assert!(ok, "{args:?} as {ak}: {out}");
    out
}

async fn group_deny_beats_user_allow(site: &Cluster, admin: &Admin) {
    admin
        .ok(&["user", "add", "n0", "bob", "bob-secret-1"])
        .await;
    admin
        .ok(&["policy", "attach", "n0", "readwrite", "--user", "bob"])
        .await;
    let cs = clients(site, "bob", "bob-secret-1");
    wait_known(&cs, "data", "a.txt").await;
    admin
        .policy("deny-data", &deny(&["s3:*"], &["arn:aws:s3:::data/*"]))
        .await;
    admin.ok(&["group", "add", "n0", "denied", "bob"]).await;
    admin
        .ok(&["policy", "attach", "n0", "deny-data", "--group", "denied"])
        .await;
    refused_everywhere(&cs, "data", "a.txt", "group deny").await;
    for c in &cs {
        assert!(
            can_get(c, "other", "a.txt").await,
            "bob keeps other buckets"
        );
    }
    // Disabling the group lifts its Deny.
    admin.ok(&["group", "disable", "n0", "denied"]).await;
    wait_known(&cs, "data", "a.txt").await;
    let info = admin.ok(&["group", "info", "n2", "denied"]).await;
    assert!(info.contains("bob") && info.contains("disabled"), "{info}");
}

async fn disable_and_detach_take_effect_everywhere(site: &Cluster, admin: &Admin) {
    admin
        .ok(&["user", "add", "n0", "carol", "carol-secret-1"])
        .await;
    admin
        .ok(&["policy", "attach", "n0", "readwrite", "--user", "carol"])
        .await;
    let cs = clients(site, "carol", "carol-secret-1");
    wait_known(&cs, "data", "a.txt").await;
    admin.ok(&["user", "disable", "n0", "carol"]).await;
    let disabled = refused_everywhere(&cs, "data", "a.txt", "disabled user").await;
    assert_s3_err(
        cs[2].get_object().bucket("data").key("a.txt").send().await,
        403,
        None,
        "disabled carol",
    );
    admin.ok(&["user", "enable", "n0", "carol"]).await;
    wait_known(&cs, "data", "a.txt").await;
    admin
        .ok(&["policy", "detach", "n0", "readwrite", "--user", "carol"])
        .await;
    let detached = refused_everywhere(&cs, "data", "a.txt", "policy detach").await;
    println!(
        "FIGURE disable->refused on the farthest node: {disabled:?}; policy detach->refused: {detached:?}"
    );
}

async fn service_account_is_narrower_than_its_parent(site: &Cluster, admin: &Admin) {
    let inline = admin.file(
        "svc.json",
        &allow(&["s3:GetObject"], &["arn:aws:s3:::data/a.txt"]),
    );
    let out = admin
        .ok(&[
            "svcacct",
            "add",
            "n0",
            "alice",
            "--access-key",
            "alice-svc",
            "--secret-key",
            "alice-svc-secret",
            "--policy",
            &inline.to_string_lossy(),
        ])
        .await;
    assert!(
        out.contains("Access Key: alice-svc") && out.contains("Secret Key: alice-svc-secret"),
        "{out}"
    );
    let cs = clients(site, "alice-svc", "alice-svc-secret");
    wait_known(&cs, "data", "a.txt").await;
    let parent = site.node(0).client_with("alice", "alice-secret-1");
    assert!(can_list(&parent, "data").await, "the parent may list");
    for c in &cs {
        assert!(
            !can_list(c, "data").await,
            "the service account may not list"
        );
        assert!(!can_put(c, "data", "svc").await);
        assert!(!can_get(c, "other", "a.txt").await);
    }
    // Generated keys work too, and the parent's removal takes its accounts along.
    let out = admin.ok(&["svcacct", "add", "n0", "alice"]).await;
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("Access Key: "))
        .expect("printed access key")
        .to_owned();
    let list = admin.ok(&["svcacct", "list", "n1", "alice"]).await;
    assert!(list.contains(&key) && list.contains("alice-svc"), "{list}");
    admin.ok(&["svcacct", "disable", "n0", "alice-svc"]).await;
    refused_everywhere(&cs, "data", "a.txt", "disabled service account").await;
    admin.ok(&["svcacct", "remove", "n0", "alice-svc"]).await;
    let out = admin.fails(&["svcacct", "info", "n0", "alice-svc"]).await;
    assert!(out.contains("NoSuchServiceAccount"), "{out}");
}

async fn home_prefix_and_source_ip(site: &Cluster, admin: &Admin) {
    admin
        .policy(
            "home",
            &allow(
                &["s3:PutObject", "s3:GetObject"],
                &["arn:aws:s3:::homes/${aws:username}/*"],
            ),
        )
        .await;
    admin
        .ok(&["user", "add", "n0", "erin", "erin-secret-1"])
        .await;
    admin
        .ok(&["policy", "attach", "n0", "home", "--user", "erin"])
        .await;
    let erin = site.node(1).client_with("erin", "erin-secret-1");
    until("erin writes her home", Duration::from_secs(10), || {
        can_put(&erin, "homes", "erin/notes")
    })
    .await;
    assert!(can_get(&erin, "homes", "erin/notes").await);
    assert!(!can_put(&erin, "homes", "frank/notes").await);

    let from = |net: &str| {
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*",
                "Condition": {"IpAddress": {"aws:SourceIp": net}}
            }]
        })
        .to_string()
    };
    admin.policy("from-loopback", &from("127.0.0.0/8")).await;
    admin.policy("from-lan", &from("10.0.0.0/8")).await;
    for (user, policy) in [("gina", "from-loopback"), ("hank", "from-lan")] {
        admin
            .ok(&["user", "add", "n0", user, "user-secret-1"])
            .await;
        admin
            .ok(&["policy", "attach", "n0", policy, "--user", user])
            .await;
    }
    let gina = clients(site, "gina", "user-secret-1");
    wait_known(&gina, "data", "a.txt").await;
    let hank = site.node(0).client_with("hank", "user-secret-1");
    assert!(
        !can_get(&hank, "data", "a.txt").await,
        "10/8 does not match 127.0.0.1"
    );
}

async fn malformed_policies_and_root_are_refused(site: &Cluster, admin: &Admin) {
    let bad = admin.file(
        "bad.json",
        &allow(&["s3:GetObjects"], &["arn:aws:s3:::data/*"]),
    );
    let out = admin
        .fails(&["policy", "create", "n0", "bad", &bad.to_string_lossy()])
        .await;
    assert!(
        out.contains("MalformedPolicy") && out.contains("s3:GetObjects"),
        "{out}"
    );
    let root = site.node(0).access_key().to_owned();
    for args in [
        vec!["user", "disable", "n0", root.as_str()],
        vec!["user", "remove", "n0", root.as_str()],
        vec!["user", "add", "n0", root.as_str(), "another-secret"],
    ] {
        admin.fails(&args).await;
    }
    let out = admin.fails(&["policy", "delete", "n0", "readonly"]).await;
    assert!(out.contains("built-in"), "{out}");
    assert!(can_put(&site.node(1).client(), "data", "root-still-works").await);
    let who = admin.ok(&["whoami", "n0"]).await;
    assert!(who.contains("\"root\""), "{who}");
    let path: &Path = admin.dir();
    assert!(path.join("config.json").exists());
}

/// Endpoints and alice's keys for the boto3 scripts.
fn script_env(site: &Cluster) -> Vec<(&'static str, String)> {
    vec![
        ("EP0", site.node(0).endpoint()),
        ("EP1", site.node(1).endpoint()),
        ("EP2", site.node(2).endpoint()),
        ("ROOT_AK", site.node(0).access_key().to_owned()),
        ("ROOT_SK", site.node(0).secret_key().to_owned()),
    ]
}

async fn script(site: &Cluster, body: &str) -> serde_json::Value {
    let env = script_env(site);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    boto3(body, &env).await
}

/// alice (read-only on `data`) assumes a role through node 0 with a session policy that only
/// allows GET on `data/a.txt`; the credentials work on node 2 for exactly that, without their
/// token or with a tampered one they are refused, and bad parameters get STS's error codes.
async fn sts_sessions(site: &Cluster) {
    let v = script(
        site,
        r#"
EP0, EP2 = os.environ["EP0"], os.environ["EP2"]
sts = client("sts", EP0, "alice", "alice-secret-1")
policy = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::data/a.txt"]}]})
r = sts.assume_role(RoleArn="arn:aws:iam::000000000000:role/reader", RoleSessionName="nightly",
                    DurationSeconds=900, Policy=policy)
c = r["Credentials"]
ak, sk, tok = c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]
t = client("s3", EP2, ak, sk, tok)
full = client("sts", EP0, "alice", "alice-secret-1").assume_role(
    RoleArn="arn:aws:iam::000000000000:role/reader", RoleSessionName="full")["Credentials"]
f = client("s3", EP2, full["AccessKeyId"], full["SecretAccessKey"], full["SessionToken"])
tampered = tok[:-8] + ("A" if tok[-8] != "A" else "B") + tok[-7:]
left = c["Expiration"].timestamp() - time.time()
svc = client("sts", EP0, ak, sk, tok)
print(json.dumps({
    "ak": ak,
    "user_arn": r["AssumedRoleUser"]["Arn"],
    "left": left,
    "get": t.get_object(Bucket="data", Key="a.txt")["Body"].read().decode(),
    "put": code(lambda: t.put_object(Bucket="data", Key="sts", Body=b"x")),
    "other_key": code(lambda: t.get_object(Bucket="data", Key="b.txt")),
    "other_bucket": code(lambda: t.get_object(Bucket="other", Key="a.txt")),
    "full_get": f.get_object(Bucket="data", Key="a.txt")["Body"].read().decode(),
    "full_put": code(lambda: f.put_object(Bucket="data", Key="sts", Body=b"x")),
    "no_token": code(lambda: client("s3", EP2, ak, sk).get_object(Bucket="data", Key="a.txt")),
    "tampered": code(lambda: client("s3", EP2, ak, sk, tampered).get_object(Bucket="data", Key="a.txt")),
    "wrong_secret": code(lambda: client("s3", EP2, ak, "x" * 40, tok).get_object(Bucket="data", Key="a.txt")),
    # SigV4 presigning: s3s leaves the token out of SigV2 query signatures (see the issue note).
    "presigned": http_get(client("s3", EP2, ak, sk, tok, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "data", "Key": "a.txt"})),
    "short": code(lambda: sts.assume_role(RoleArn="r", RoleSessionName="s", DurationSeconds=60)),
    "long": code(lambda: sts.assume_role(RoleArn="r", RoleSessionName="s", DurationSeconds=43201)),
    "bad_policy": code(lambda: sts.assume_role(RoleArn="r", RoleSessionName="s", Policy="{nope")),
    "from_session": code(lambda: svc.assume_role(RoleArn="r", RoleSessionName="s")),
    "stranger": code(lambda: client("sts", EP0, "nobody", "nobody-secret").assume_role(RoleArn="r", RoleSessionName="s")),
}))
"#,
    )
    .await;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    assert!(s("ak").starts_with("ASIA") && s("ak").len() == 20, "{v}");
    assert!(s("user_arn").ends_with("assumed-role/alice/nightly"), "{v}");
    let left = v["left"].as_f64().unwrap_or_default();
    assert!((800.0..=901.0).contains(&left), "expires in 900 s: {v}");
    assert_eq!(s("get"), "data-a", "{v}");
    // The session policy narrows; the parent's own policy still bounds the full session.
    assert_eq!(s("put"), "AccessDenied", "{v}");
    assert_eq!(s("other_key"), "AccessDenied", "{v}");
    assert_eq!(s("other_bucket"), "AccessDenied", "{v}");
    assert_eq!(s("full_get"), "data-a", "{v}");
    assert_eq!(s("full_put"), "AccessDenied", "{v}");
    assert_eq!(s("no_token"), "InvalidToken", "{v}");
    assert_eq!(s("tampered"), "InvalidToken", "{v}");
    assert_eq!(s("wrong_secret"), "SignatureDoesNotMatch", "{v}");
    assert_eq!(v["presigned"][0], 200, "{v}");
    assert_eq!(v["presigned"][1], "data-a", "{v}");
    assert_eq!(s("short"), "ValidationError", "{v}");
    assert_eq!(s("long"), "ValidationError", "{v}");
    assert_eq!(s("bad_policy"), "MalformedPolicyDocument", "{v}");
    assert_eq!(s("from_session"), "AccessDenied", "{v}");
    assert_eq!(s("stranger"), "InvalidAccessKeyId", "{v}");
}

/// A bucket policy makes `data/public/*` readable by anyone (and `other/*` by hank, whose own
/// policy does not reach it); anonymous requests get exactly that, on every node, until the
/// policy is deleted.
async fn bucket_policies_and_anonymous_access(site: &Cluster) {
    let v = script(
        site,
        r#"
from botocore import UNSIGNED
EP0, EP1, EP2 = os.environ["EP0"], os.environ["EP1"], os.environ["EP2"]
root = client("s3", EP0, os.environ["ROOT_AK"], os.environ["ROOT_SK"])
root.put_object(Bucket="data", Key="public/p.txt", Body=b"public-p")
anon = [client("s3", ep, None, None, signature_version=UNSIGNED) for ep in (EP0, EP1, EP2)]
alice = client("s3", EP1, "alice", "alice-secret-1")
hank = client("s3", EP1, "hank", "user-secret-1")
out = {"before": code(lambda: anon[0].get_object(Bucket="data", Key="public/p.txt")),
       "no_policy": code(lambda: root.get_bucket_policy(Bucket="data")),
       "no_status": code(lambda: root.get_bucket_policy_status(Bucket="data"))}
policy = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
     "Resource": "arn:aws:s3:::data/public/*"},
    {"Sid": "hank", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/hank"},
     "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/a.txt"}]})
out["alice_put_policy"] = code(lambda: alice.put_bucket_policy(Bucket="data", Policy=policy))
out["malformed"] = code(lambda: root.put_bucket_policy(Bucket="data", Policy=policy.replace("s3:GetObject", "s3:GetObjects")))
out["outside"] = code(lambda: root.put_bucket_policy(Bucket="data", Policy=policy.replace("data/public", "other/public")))
out["missing_bucket"] = code(lambda: root.put_bucket_policy(Bucket="nosuchbucket", Policy=policy))
root.put_bucket_policy(Bucket="data", Policy=policy)
out["stored"] = json.loads(root.get_bucket_policy(Bucket="data")["Policy"]) == json.loads(policy)
out["public"] = root.get_bucket_policy_status(Bucket="data")["PolicyStatus"]["IsPublic"]

def until(f, want, seconds=10):
    deadline = time.monotonic() + seconds
    while True:
        got = f()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.02)

out["anon_get"] = [until(lambda: code(lambda: a.get_object(Bucket="data", Key="public/p.txt")), "ok") for a in anon]
out["anon_body"] = anon[2].get_object(Bucket="data", Key="public/p.txt")["Body"].read().decode()
out["anon_private"] = code(lambda: anon[1].get_object(Bucket="data", Key="a.txt"))
out["anon_put"] = code(lambda: anon[1].put_object(Bucket="data", Key="public/new", Body=b"x"))
out["anon_list"] = code(lambda: anon[1].list_objects_v2(Bucket="data"))
out["anon_other"] = code(lambda: anon[1].get_object(Bucket="other", Key="a.txt"))
out["plain_http"] = http_get(EP2 + "/data/public/p.txt")
out["hank_get"] = code(lambda: hank.get_object(Bucket="data", Key="a.txt"))
out["hank_put"] = code(lambda: hank.put_object(Bucket="data", Key="hank", Body=b"x"))
root.delete_bucket_policy(Bucket="data")
out["after_delete"] = [until(lambda: code(lambda: a.get_object(Bucket="data", Key="public/p.txt")), "AccessDenied") for a in anon]
out["deleted"] = code(lambda: root.get_bucket_policy(Bucket="data"))
print(json.dumps(out))
"#,
    )
    .await;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    assert_eq!(s("before"), "AccessDenied", "{v}");
    assert_eq!(s("no_policy"), "NoSuchBucketPolicy", "{v}");
    assert_eq!(s("no_status"), "NoSuchBucketPolicy", "{v}");
    assert_eq!(s("alice_put_policy"), "AccessDenied", "{v}");
    assert_eq!(s("malformed"), "MalformedPolicy", "{v}");
    assert_eq!(s("outside"), "MalformedPolicy", "{v}");
    assert_eq!(s("missing_bucket"), "NoSuchBucket", "{v}");
    assert_eq!(v["stored"], true, "{v}");
    assert_eq!(v["public"], true, "{v}");
    assert_eq!(v["anon_get"], serde_json::json!(["ok", "ok", "ok"]), "{v}");
    assert_eq!(s("anon_body"), "public-p", "{v}");
    for k in [
        "anon_private",
        "anon_put",
        "anon_list",
        "anon_other",
        "hank_put",
    ] {
        assert_eq!(s(k), "AccessDenied", "{k}: {v}");
    }
    assert_eq!(v["plain_http"][0], 200, "{v}");
    assert_eq!(v["plain_http"][1], "public-p", "{v}");
    assert_eq!(
        s("hank_get"),
        "ok",
        "a bucket policy grants a named user: {v}"
    );
    assert_eq!(
        v["after_delete"],
        serde_json::json!(["AccessDenied", "AccessDenied", "AccessDenied"]),
        "{v}"
    );
    assert_eq!(s("deleted"), "NoSuchBucketPolicy", "{v}");
}

/// Deprecated SigV2 clients (boto3's `s3` header signing and `s3-query` presigned URLs) are
/// authenticated and authorized like SigV4 ones.
async fn signature_v2_clients(site: &Cluster) {
    let v = script(
        site,
        r#"
EP1 = os.environ["EP1"]
v2 = client("s3", EP1, "alice", "alice-secret-1", signature_version="s3")
q = client("s3", EP1, "alice", "alice-secret-1", signature_version="s3-query")
bad = client("s3", EP1, "alice", "wrong-secret-1", signature_version="s3")
url = q.generate_presigned_url("get_object", Params={"Bucket": "data", "Key": "a.txt"}, ExpiresIn=300)
print(json.dumps({
    "get": v2.get_object(Bucket="data", Key="a.txt")["Body"].read().decode(),
    "list": [o["Key"] for o in v2.list_objects(Bucket="data").get("Contents", [])],
    "put": code(lambda: v2.put_object(Bucket="data", Key="v2", Body=b"x")),
    "other": code(lambda: v2.get_object(Bucket="other", Key="a.txt")),
    "wrong_secret": code(lambda: bad.get_object(Bucket="data", Key="a.txt")),
    "presigned_v2": "AWSAccessKeyId=" in url and "Signature=" in url,
    "presigned": http_get(url),
    "presigned_tampered": http_get(url.replace("a.txt", "b.txt"))[0],
}))
"#,
    )
    .await;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    assert_eq!(s("get"), "data-a", "{v}");
    assert!(
        v["list"]
            .as_array()
            .is_some_and(|l| l.iter().any(|k| k == "a.txt")),
        "{v}"
    );
    assert_eq!(s("put"), "AccessDenied", "{v}");
    assert_eq!(s("other"), "AccessDenied", "{v}");
    assert_eq!(s("wrong_secret"), "SignatureDoesNotMatch", "{v}");
    assert_eq!(v["presigned_v2"], true, "{v}");
    assert_eq!(v["presigned"], serde_json::json!([200, "data-a"]), "{v}");
    assert_eq!(v["presigned_tampered"], 403, "{v}");
}

/// DeleteObjects authorizes every key on its own (a denied key is reported in the result, the
/// others are deleted), and bypassing GOVERNANCE retention needs `s3:BypassGovernanceRetention`
/// from IAM, where an explicit Deny wins.
async fn per_key_deletes_and_governance_bypass(site: &Cluster, admin: &Admin) {
    let base = [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:ListBucket",
        "s3:ListBucketVersions",
    ];
    let resources = [
        "arn:aws:s3:::vault",
        "arn:aws:s3:::vault/*",
        "arn:aws:s3:::data/tmp/*",
    ];
    admin.policy("deleter", &allow(&base, &resources)).await;
    let mut with_bypass = base.to_vec();
    with_bypass.push("s3:BypassGovernanceRetention");
    admin
        .policy("bypasser", &allow(&with_bypass, &resources))
        .await;
    admin
        .policy(
            "no-bypass",
            &deny(&["s3:BypassGovernanceRetention"], &["*"]),
        )
        .await;
    for (user, policy) in [
        ("ivan", "deleter"),
        ("judy", "bypasser"),
        ("kate", "bypasser"),
    ] {
        admin
            .ok(&["user", "add", "n0", user, "user-secret-1"])
            .await;
        admin
            .ok(&["policy", "attach", "n0", policy, "--user", user])
            .await;
    }
    admin.ok(&["group", "add", "n0", "careful", "kate"]).await;
    admin
        .ok(&["policy", "attach", "n0", "no-bypass", "--group", "careful"])
        .await;
    let v = script(
        site,
        r#"
from datetime import datetime, timedelta, timezone
EP0, EP1 = os.environ["EP0"], os.environ["EP1"]
root = client("s3", EP0, os.environ["ROOT_AK"], os.environ["ROOT_SK"])
root.create_bucket(Bucket="vault", ObjectLockEnabledForBucket=True)
until = datetime.now(timezone.utc) + timedelta(days=1)
def locked(key):
    return root.put_object(Bucket="vault", Key=key, Body=b"locked", ObjectLockMode="GOVERNANCE",
                           ObjectLockRetainUntilDate=until)["VersionId"]
ids = {k: locked(k) for k in ("i", "j", "k", "m")}
for k in ("tmp/one", "tmp/two"):
    root.put_object(Bucket="data", Key=k, Body=b"t")
u = {n: client("s3", EP1, n, "user-secret-1") for n in ("ivan", "judy", "kate")}
def wait_ready(c):
    deadline = time.monotonic() + 10
    while code(lambda: c.list_objects_v2(Bucket="vault")) != "ok" and time.monotonic() < deadline:
        time.sleep(0.02)
for c in u.values():
    wait_ready(c)
def delete_version(c, key, bypass):
    kw = {"BypassGovernanceRetention": True} if bypass else {}
    return code(lambda: c.delete_object(Bucket="vault", Key=key, VersionId=ids[key], **kw))
out = {
    "ivan_plain": delete_version(u["ivan"], "i", False),
    "ivan_bypass": delete_version(u["ivan"], "i", True),
    "judy_plain": delete_version(u["judy"], "j", False),
    "judy_bypass": delete_version(u["judy"], "j", True),
    "kate_bypass": delete_version(u["kate"], "k", True),
}
r = u["ivan"].delete_objects(Bucket="data", Delete={"Objects": [
    {"Key": "tmp/one"}, {"Key": "a.txt"}, {"Key": "tmp/two"}]})
out["multi_deleted"] = sorted(d["Key"] for d in r.get("Deleted", []))
out["multi_errors"] = [[e["Key"], e["Code"]] for e in r.get("Errors", [])]
out["a_still_there"] = root.get_object(Bucket="data", Key="a.txt")["Body"].read().decode()
r = u["judy"].delete_objects(Bucket="vault", BypassGovernanceRetention=True, Delete={"Objects": [
    {"Key": "m", "VersionId": ids["m"]}]})
out["judy_multi"] = [d["Key"] for d in r.get("Deleted", [])]
r = u["kate"].delete_objects(Bucket="vault", BypassGovernanceRetention=True, Delete={"Objects": [
    {"Key": "k", "VersionId": ids["k"]}]})
out["kate_multi"] = [[e["Key"], e["Code"]] for e in r.get("Errors", [])]
out["left"] = sorted(v["Key"] for v in root.list_object_versions(Bucket="vault").get("Versions", []))
print(json.dumps(out))
"#,
    )
    .await;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    assert_eq!(s("ivan_plain"), "AccessDenied", "locked: {v}");
    assert_eq!(
        s("ivan_bypass"),
        "AccessDenied",
        "no bypass permission: {v}"
    );
    assert_eq!(
        s("judy_plain"),
        "AccessDenied",
        "locked without the header: {v}"
    );
    assert_eq!(s("judy_bypass"), "ok", "{v}");
    assert_eq!(s("kate_bypass"), "AccessDenied", "explicit Deny wins: {v}");
    assert_eq!(
        v["multi_deleted"],
        serde_json::json!(["tmp/one", "tmp/two"]),
        "{v}"
    );
    assert_eq!(
        v["multi_errors"],
        serde_json::json!([["a.txt", "AccessDenied"]]),
        "{v}"
    );
    assert_eq!(s("a_still_there"), "data-a", "{v}");
    assert_eq!(v["judy_multi"], serde_json::json!(["m"]), "{v}");
    assert_eq!(
        v["kate_multi"],
        serde_json::json!([["k", "AccessDenied"]]),
        "{v}"
    );
    assert_eq!(v["left"], serde_json::json!(["i", "k"]), "{v}");
}

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// STS credentials work until they expire, then fail with ExpiredToken. The server and the client
/// run under libfaketime sharing one offset file, so both clocks jump 14 and then 16 minutes ahead
/// of a 15-minute session (signatures stay fresh: both sides agree on the time). Raft's timers use
/// the monotonic clock, which is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_credentials_expire() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: install Debian's libfaketime (.ci/run does)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let offset = dir.path().join("offset");
    std::fs::write(&offset, "+0\n").expect("offset file");
    let offset = offset.to_string_lossy().to_string();
    let fake = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", offset.as_str()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut opts = ServerOptions::new(1);
    for (k, v) in fake {
        opts = opts.env(k, v);
    }
    let srv = Server::start_with(opts).await;
    let endpoint = srv.endpoint();
    let mut env: Vec<(&str, &str)> = vec![
        ("EP", endpoint.as_str()),
        ("ROOT_AK", srv.access_key()),
        ("ROOT_SK", srv.secret_key()),
        ("OFFSET", offset.as_str()),
    ];
    env.extend(fake);
    let v = boto3(
        r#"
def jump(o):
    with open(os.environ["OFFSET"], "w") as f:
        f.write(o + "\n")
EP = os.environ["EP"]
root = client("s3", EP, os.environ["ROOT_AK"], os.environ["ROOT_SK"])
root.create_bucket(Bucket="sts-bucket")
root.put_object(Bucket="sts-bucket", Key="k", Body=b"v")
c = client("sts", EP, os.environ["ROOT_AK"], os.environ["ROOT_SK"]).assume_role(
    RoleArn="arn:aws:iam::000000000000:role/r", RoleSessionName="s", DurationSeconds=900)["Credentials"]
t = client("s3", EP, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
get = lambda: code(lambda: t.get_object(Bucket="sts-bucket", Key="k"))
out = {"fresh": get()}
jump("+14m")
out["at_14m"] = get()
jump("+16m")
out["at_16m"] = get()
out["root_at_16m"] = code(lambda: root.get_object(Bucket="sts-bucket", Key="k"))
jump("+0")
print(json.dumps(out))
"#,
        &env,
    )
    .await;
    assert_eq!(
        v,
        serde_json::json!({"fresh": "ok", "at_14m": "ok", "at_16m": "ExpiredToken", "root_at_16m": "ok"}),
        "{v}"
    );
}

/// `s3:ExistingObjectTag/<key>` reads the stored object's tags: a user allowed to read only
/// objects tagged `class=public` gets exactly those, and retagging changes the answer.
async fn existing_object_tags(site: &Cluster, admin: &Admin) {
    admin
        .policy(
            "tagged-read",
            &serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*",
                    "Condition": {"StringEquals": {"s3:ExistingObjectTag/class": "public"}}
                }]
            })
            .to_string(),
        )
        .await;
    admin
        .ok(&["user", "add", "n0", "lena", "user-secret-1"])
        .await;
    admin
        .ok(&["policy", "attach", "n0", "tagged-read", "--user", "lena"])
        .await;
    let root = site.node(0).client();
    for (key, class) in [("tagged/open", "public"), ("tagged/closed", "secret")] {
        ok(
            root.put_object()
                .bucket("data")
                .key(key)
                .tagging(format!("class={class}"))
                .body(class.as_bytes().to_vec().into())
                .send()
                .await,
            "PUT tagged",
        );
    }
    let lena = clients(site, "lena", "user-secret-1");
    wait_known(&lena, "data", "tagged/open").await;
    for c in &lena {
        assert!(!can_get(c, "data", "tagged/closed").await);
        assert!(!can_get(c, "data", "a.txt").await, "untagged");
    }
    let public = aws_sdk_s3::types::Tagging::builder()
        .tag_set(
            aws_sdk_s3::types::Tag::builder()
                .key("class")
                .value("public")
                .build()
                .expect("tag"),
        )
        .build()
        .expect("tagging");
    ok(
        root.put_object_tagging()
            .bucket("data")
            .key("tagged/closed")
            .tagging(public)
            .send()
            .await,
        "retag",
    );
    wait_known(&lena, "data", "tagged/closed").await;
}
