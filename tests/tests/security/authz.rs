//! Authorization holes of issue 16 (items 1, 6, 9, 10 and 14a): each test makes a non-root user
//! with the `cairn admin` CLI and attacks a running `cairn` with a real client.

use std::time::Duration;

use cairn_tests::*;

/// How long a CLI call may take.
const CLI: Duration = Duration::from_secs(60);
/// The account id in the ARNs of a site's users.
const ACCOUNT: &str = "000000000000";

/// A server, root's client and a `cairn admin` config with alias `n0` for root.
struct Site {
    srv: Server,
    root: Client,
    dir: tempfile::TempDir,
}

impl Site {
    async fn start() -> Site {
        let srv = Server::start(1).await;
        let root = srv.client();
        let site = Site {
            root,
            dir: tempfile::tempdir().expect("config dir"),
            srv,
        };
        site.admin(&[
            "alias",
            "set",
            "n0",
            &site.srv.endpoint(),
            site.srv.access_key(),
            site.srv.secret_key(),
        ])
        .await;
        site
    }

    /// Runs `cairn admin ARGS`, asserting success.
    async fn admin(&self, args: &[&str]) -> String {
        let mut all: Vec<String> = vec!["admin".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        let dir = self.dir.path().to_string_lossy().to_string();
        let (status, out, err) = run_cairn(&all, &[("CAIRN_CONFIG_DIR", &dir)], CLI).await;
        assert!(status.success(), "cairn admin {args:?} failed: {out}{err}");
        out
    }

    /// A user `name` (secret `name-secret-1`) with one policy `doc`; returns its client.
    async fn user(&self, name: &str, doc: serde_json::Value) -> Client {
        let file = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, doc.to_string()).expect("write policy");
        let policy = format!("{name}-policy");
        let secret = format!("{name}-secret-1");
        self.admin(&["policy", "create", "n0", &policy, &file.to_string_lossy()])
            .await;
        self.admin(&["user", "add", "n0", name, &secret]).await;
        self.admin(&["policy", "attach", "n0", &policy, "--user", name])
            .await;
        self.srv.client_with(name, &secret)
    }

    /// boto3 `body` with `EP` (the endpoint) in its environment.
    async fn boto3(&self, body: &str) -> serde_json::Value {
        boto3(body, &[("EP", &self.srv.endpoint())]).await
    }

    async fn exists(&self, bucket: &str, key: &str) -> bool {
        self.root
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }
}

fn statement(effect: &str, actions: &[&str], resources: &[&str]) -> serde_json::Value {
    serde_json::json!({"Effect": effect, "Action": actions, "Resource": resources})
}

fn doc(statements: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": statements})
}

fn user_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{name}")
}

/// Item 1: a copy reads its source under the source bucket's policy. A bucket owner cannot
/// grant itself other buckets' objects with a `NotResource` statement in its own bucket policy
/// (refused as AWS does: MalformedPolicy), and a Deny in the source bucket's policy stops a copy
/// (CopyObject and UploadPartCopy) as it stops a GET.
#[tokio::test]
async fn copy_reads_its_source_under_the_source_bucket_policy() {
    let site = Site::start().await;
    for b in ["mallory", "victim", "carol"] {
        create_bucket(&site.root, b).await;
    }
    put(&site.root, "victim", "secret.txt", b"victim's secret").await;
    put(&site.root, "victim", "private/x", b"private").await;
    put(&site.root, "victim", "public/x", b"public").await;

    // Mallory owns her bucket (including its policy) and nothing else.
    let mallory = site
        .user(
            "mallory",
            doc(vec![statement(
                "Allow",
                &["s3:*"],
                &["arn:aws:s3:::mallory", "arn:aws:s3:::mallory/*"],
            )]),
        )
        .await;
    assert!(
        mallory
            .get_object()
            .bucket("victim")
            .key("secret.txt")
            .send()
            .await
            .is_err(),
        "mallory may not read victim's objects directly"
    );
    let reaching = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": [user_arn("mallory")]},
            "Action": "s3:GetObject",
            "NotResource": "arn:aws:s3:::mallory/nothing"
        }]
    });
    assert_s3_err(
        mallory
            .put_bucket_policy()
            .bucket("mallory")
            .policy(reaching.to_string())
            .send()
            .await,
        400,
        Some("MalformedPolicy"),
        "a bucket policy granting outside its bucket",
    );
    assert_s3_err(
        mallory
            .copy_object()
            .bucket("mallory")
            .key("loot")
            .copy_source("victim/secret.txt")
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "mallory copies victim's object into her bucket",
    );
    assert!(!site.exists("mallory", "loot").await, "nothing was copied");

    // Carol may read and write everywhere; victim's bucket policy denies everyone its private/.
    let carol = site
        .user(
            "carol",
            doc(vec![statement(
                "Allow",
                &["s3:GetObject", "s3:PutObject"],
                &["arn:aws:s3:::*"],
            )]),
        )
        .await;
    let deny_private = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::victim/private/*"
        }]
    });
    ok(
        site.root
            .put_bucket_policy()
            .bucket("victim")
            .policy(deny_private.to_string())
            .send()
            .await,
        "victim's bucket policy",
    );
    assert_s3_err(
        carol
            .get_object()
            .bucket("victim")
            .key("private/x")
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "GET under victim's Deny",
    );
    assert_s3_err(
        carol
            .copy_object()
            .bucket("carol")
            .key("private-copy")
            .copy_source("victim/private/x")
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "CopyObject under the source bucket's Deny",
    );
    let upload = ok(
        carol
            .create_multipart_upload()
            .bucket("carol")
            .key("part-copy")
            .send()
            .await,
        "create upload",
    );
    assert_s3_err(
        carol
            .upload_part_copy()
            .bucket("carol")
            .key("part-copy")
            .upload_id(upload.upload_id().unwrap_or_default())
            .part_number(1)
            .copy_source("victim/private/x")
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "UploadPartCopy under the source bucket's Deny",
    );
    assert!(!site.exists("carol", "private-copy").await);
    // What the source bucket allows still copies.
    ok(
        carol
            .copy_object()
            .bucket("carol")
            .key("public-copy")
            .copy_source("victim/public/x")
            .send()
            .await,
        "copy of an allowed source",
    );
    assert_eq!(get(&site.root, "carol", "public-copy").await, b"public");
}

/// Item 10: `x-amz-copy-source: victim/?secret` names the key `?secret` to s3s (and the
/// handler); the authorizer must check that source, not skip it.
#[tokio::test]
async fn copy_source_with_a_question_mark_is_authorized() {
    let site = Site::start().await;
    for b in ["eve", "victim"] {
        create_bucket(&site.root, b).await;
    }
    put(&site.root, "victim", "?secret", b"victim's secret").await;
    site.user(
        "eve",
        doc(vec![statement(
            "Allow",
            &["s3:GetObject", "s3:PutObject"],
            &["arn:aws:s3:::eve/*"],
        )]),
    )
    .await;
    let url = format!("{}/eve/loot", site.srv.endpoint());
    let signed = sigv4::Signer::new("eve", "eve-secret-1").sign(
        "PUT",
        &url,
        &[("x-amz-copy-source", "victim/?secret")],
        sigv4::EMPTY_SHA256,
    );
    let mut req = site.srv.http().put(&url);
    for (k, v) in &signed.headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.expect("send copy");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 403, "copy from victim/?secret: {body}");
    assert_eq!(xml_error_code(&body).as_deref(), Some("AccessDenied"));
    assert!(!site.exists("eve", "loot").await, "nothing was copied");
}

/// Item 9: `versionId=null` names a version: reading or deleting it needs the `...Version`
/// actions, which a user with only s3:GetObject / s3:DeleteObject lacks.
#[tokio::test]
async fn version_id_null_needs_the_version_actions() {
    let site = Site::start().await;
    create_bucket(&site.root, "data").await;
    put(&site.root, "data", "k", b"the null version").await;
    let dan = site
        .user(
            "dan",
            doc(vec![statement(
                "Allow",
                &["s3:GetObject", "s3:DeleteObject", "s3:GetObjectTagging"],
                &["arn:aws:s3:::data/*"],
            )]),
        )
        .await;
    assert_eq!(get(&dan, "data", "k").await, b"the null version");
    assert_s3_err(
        dan.get_object()
            .bucket("data")
            .key("k")
            .version_id("null")
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "GET versionId=null without s3:GetObjectVersion",
    );
    assert_s3_err(
        dan.get_object_tagging()
            .bucket("data")
            .key("k")
            .version_id("null")
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "GET ?tagging&versionId=null without s3:GetObjectVersionTagging",
    );
    assert_s3_err(
        dan.delete_object()
            .bucket("data")
            .key("k")
            .version_id("null")
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "DELETE versionId=null without s3:DeleteObjectVersion",
    );
    let del = aws_sdk_s3::types::Delete::builder()
        .objects(
            aws_sdk_s3::types::ObjectIdentifier::builder()
                .key("k")
                .version_id("null")
                .build()
                .expect("identifier"),
        )
        .build()
        .expect("delete");
    let out = ok(
        dan.delete_objects().bucket("data").delete(del).send().await,
        "DeleteObjects",
    );
    assert!(out.deleted().is_empty(), "multi-delete of versionId=null");
    assert!(site.exists("data", "k").await, "the null version survives");
}

/// Item 14a: `s3:RequestObjectTag/*` sees the tags as they are stored (`+` is a space), so a
/// Deny on `top secret` is not evaded by sending `top+secret`.
#[tokio::test]
async fn request_tags_decode_as_stored_tags() {
    let site = Site::start().await;
    create_bucket(&site.root, "tags").await;
    let tia = site
        .user(
            "tia",
            doc(vec![
                statement(
                    "Allow",
                    &["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject"],
                    &["arn:aws:s3:::tags/*"],
                ),
                serde_json::json!({
                    "Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::tags/*",
                    "Condition": {"StringEquals": {"s3:RequestObjectTag/class": "top secret"}}
                }),
            ]),
        )
        .await;
    ok(
        tia.put_object()
            .bucket("tags")
            .key("open")
            .tagging("class=open+data")
            .body(b"x".to_vec().into())
            .send()
            .await,
        "PUT with an allowed tag",
    );
    for tagging in ["class=top%20secret", "class=top+secret"] {
        assert_s3_err(
            tia.put_object()
                .bucket("tags")
                .key("secret")
                .tagging(tagging)
                .body(b"x".to_vec().into())
                .send()
                .await,
            403,
            Some("AccessDenied"),
            &format!("PUT tagged {tagging}"),
        );
    }
    assert!(!site.exists("tags", "secret").await, "nothing was stored");
}

/// Item 6: a POST form upload needs what the equivalent PUT needs: s3:PutObject on the form's
/// key (a key-level Deny applies), and s3:PutObjectLegalHold / s3:PutObjectRetention /
/// s3:PutObjectTagging for the lock and tag fields.
#[tokio::test]
async fn post_object_is_authorized_as_the_equivalent_put() {
    let site = Site::start().await;
    ok(
        site.root
            .create_bucket()
            .bucket("posts")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "create lock bucket",
    );
    site.user(
        "pat",
        doc(vec![
            statement(
                "Allow",
                &["s3:PutObject"],
                &["arn:aws:s3:::posts", "arn:aws:s3:::posts/*"],
            ),
            statement("Deny", &["s3:PutObject"], &["arn:aws:s3:::posts/denied/*"]),
        ]),
    )
    .await;
    let v = site
        .boto3(
            r#"
import base64, hashlib, requests
s3 = client("s3", os.environ["EP"], "pat", "pat-secret-1")
data = b"form upload"
md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
def post(key, fields):
    fields = dict(fields, **{"content-md5": md5})
    conds = [{k: v} for k, v in fields.items()]
    p = s3.generate_presigned_post("posts", key, Fields=fields, Conditions=conds, ExpiresIn=600)
    r = requests.post(p["url"], data=p["fields"], files={"file": ("f", data)}, timeout=30)
    return r.status_code
out = {
    "plain": post("ok/plain", {}),
    "denied_key": post("denied/x", {}),
    "legal_hold": post("ok/held", {"x-amz-object-lock-legal-hold": "ON"}),
    "retention": post("ok/retained", {"x-amz-object-lock-mode": "GOVERNANCE",
                                      "x-amz-object-lock-retain-until-date": until}),
    "tagging": post("ok/tagged", {"x-amz-tagging": "a=b"}),
}
print(json.dumps(out))
"#,
        )
        .await;
    assert_eq!(v["plain"], 204, "a plain form upload is allowed: {v}");
    for (case, key) in [
        ("denied_key", "denied/x"),
        ("legal_hold", "ok/held"),
        ("retention", "ok/retained"),
        ("tagging", "ok/tagged"),
    ] {
        assert_eq!(v[case], 403, "{case}: {v}");
        assert!(!site.exists("posts", key).await, "{case}: stored");
    }
}

/// A POST form's policy is held to as AWS holds it: a malformed expiration is 400
/// `InvalidPolicyDocument`; an expired policy, a condition the form does not meet, a field no
/// condition names and a policy for another bucket are 403 `AccessDenied`; a checksum field that
/// does not match the file is 400 `BadDigest`. Nothing refused is stored.
#[tokio::test]
async fn post_policy_violations_get_aws_answers() {
    let site = Site::start().await;
    create_bucket(&site.root, "forms").await;
    let v = boto3(
        r#"
import base64, datetime, hashlib, hmac, re, requests
ep, ak, sk, region = os.environ["EP"], os.environ["AK"], os.environ["SK"], "us-east-1"
now = datetime.datetime.now(datetime.timezone.utc)
day, amz = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
cred = f"{ak}/{day}/{region}/s3/aws4_request"
def signing_key():
    k = ("AWS4" + sk).encode()
    for m in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    return k
def at(hours):
    return (now + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
def post(policy_bucket, key, expiration, conditions=(), extra=None, data=b"form body"):
    conds = [{"bucket": policy_bucket}, ["starts-with", "$key", key],
             {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": cred},
             {"x-amz-date": amz}] + list(conditions)
    p64 = base64.b64encode(json.dumps({"expiration": expiration, "conditions": conds}).encode()).decode()
    fields = {"key": key, "policy": p64, "x-amz-algorithm": "AWS4-HMAC-SHA256",
              "x-amz-credential": cred, "x-amz-date": amz,
              "x-amz-signature": hmac.new(signing_key(), p64.encode(), hashlib.sha256).hexdigest()}
    fields.update(extra or {})
    r = requests.post(f"{ep}/forms", data=fields, files={"file": ("f", data)}, timeout=30)
    code = re.search(r"<Code>([^<]*)</Code>", r.text)
    return [r.status_code, code.group(1) if code else ""]
sha = lambda b: base64.b64encode(hashlib.sha256(b).digest()).decode()
any_sum = [["starts-with", "$x-amz-checksum-sha256", ""], ["starts-with", "$x-amz-checksum-algorithm", ""]]
out = {
    "valid": post("forms", "valid", at(1)),
    "bad_date": post("forms", "bad_date", "tomorrow at noon"),
    "expired": post("forms", "expired", at(-1)),
    "unmet_condition": post("forms", "unmet", at(1), [{"content-type": "text/plain"}]),
    "field_outside": post("forms", "outside", at(1), extra={"x-amz-meta-extra": "1"}),
    "wrong_bucket": post("other", "wrong_bucket", at(1)),
    "good_checksum": post("forms", "good_sum", at(1), any_sum,
                          {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": sha(b"form body")}),
    "bad_checksum": post("forms", "bad_sum", at(1), any_sum,
                         {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": sha(b"other body")}),
}
print(json.dumps(out))
"#,
        &[
            ("EP", &site.srv.endpoint()),
            ("AK", site.srv.access_key()),
            ("SK", site.srv.secret_key()),
        ],
    )
    .await;
    let expect = [
        ("valid", 204, ""),
        ("bad_date", 400, "InvalidPolicyDocument"),
        ("expired", 403, "AccessDenied"),
        ("unmet_condition", 403, "AccessDenied"),
        ("field_outside", 403, "AccessDenied"),
        ("wrong_bucket", 403, "AccessDenied"),
        ("good_checksum", 204, ""),
        ("bad_checksum", 400, "BadDigest"),
    ];
    for (case, status, code) in expect {
        assert_eq!(v[case], serde_json::json!([status, code]), "{case}: {v}");
    }
    for (key, stored) in [
        ("valid", true),
        ("good_sum", true),
        ("bad_date", false),
        ("expired", false),
        ("unmet", false),
        ("outside", false),
        ("wrong_bucket", false),
        ("bad_sum", false),
    ] {
        assert_eq!(site.exists("forms", key).await, stored, "{key}");
    }
}

/// Item 10, condition keys: `s3:x-amz-copy-source` is the source s3s parsed, so percent-encoding
/// the header's slashes does not evade a Deny on a source prefix.
#[tokio::test]
async fn copy_source_condition_sees_the_parsed_source() {
    let site = Site::start().await;
    for b in ["fay", "victim"] {
        create_bucket(&site.root, b).await;
    }
    put(&site.root, "victim", "private/x", b"private").await;
    put(&site.root, "victim", "open/x", b"open").await;
    site.user(
        "fay",
        doc(vec![
            statement(
                "Allow",
                &["s3:GetObject", "s3:PutObject"],
                &["arn:aws:s3:::*"],
            ),
            serde_json::json!({
                "Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::fay/*",
                "Condition": {"StringLike": {"s3:x-amz-copy-source": "victim/private/*"}}
            }),
        ]),
    )
    .await;
    let copy = |source: &'static str, key: &'static str| {
        let url = format!("{}/fay/{key}", site.srv.endpoint());
        let signed = sigv4::Signer::new("fay", "fay-secret-1").sign(
            "PUT",
            &url,
            &[("x-amz-copy-source", source)],
            sigv4::EMPTY_SHA256,
        );
        let mut req = site.srv.http().put(&url);
        for (k, v) in &signed.headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        async move {
            let resp = req.send().await.expect("send copy");
            resp.status().as_u16()
        }
    };
    assert_eq!(copy("victim/open/x", "open").await, 200, "an allowed copy");
    assert_eq!(copy("victim/private/x", "p1").await, 403, "plain source");
    assert_eq!(
        copy("victim%2Fprivate%2Fx", "p2").await,
        403,
        "encoded source"
    );
    assert!(!site.exists("fay", "p2").await, "nothing was copied");
}

/// A copy reads its source as a GET does, so a policy that tests the source's tags
/// (`s3:ExistingObjectTag/<key>`) must see them: a user denied objects tagged
/// `class=secret` must not copy one out, nor be refused objects allowed only when public.
#[tokio::test]
async fn copy_source_tags_decide_the_read() {
    let site = Site::start().await;
    for b in ["vault", "mine"] {
        create_bucket(&site.root, b).await;
    }
    for (key, class) in [("open", "public"), ("closed", "secret")] {
        site.root
            .put_object()
            .bucket("vault")
            .key(key)
            .tagging(format!("class={class}"))
            .body(class.as_bytes().to_vec().into())
            .send()
            .await
            .expect("PUT tagged");
    }
    let tagged = |effect: &str, class: &str| {
        serde_json::json!({
            "Effect": effect, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::vault/*",
            "Condition": {"StringEquals": {"s3:ExistingObjectTag/class": class}}
        })
    };
    let writes = statement("Allow", &["s3:PutObject"], &["arn:aws:s3:::mine/*"]);
    let denied = site
        .user(
            "dora",
            doc(vec![
                statement("Allow", &["s3:GetObject"], &["arn:aws:s3:::vault/*"]),
                tagged("Deny", "secret"),
                writes.clone(),
            ]),
        )
        .await;
    let allowed = site
        .user("pia", doc(vec![tagged("Allow", "public"), writes]))
        .await;
    let copy = |c: &Client, key: &str, to: &str| {
        c.copy_object()
            .bucket("mine")
            .key(to)
            .copy_source(format!("vault/{key}"))
            .send()
    };
    for (who, c) in [("dora", &denied), ("pia", &allowed)] {
        assert!(c
            .get_object()
            .bucket("vault")
            .key("closed")
            .send()
            .await
            .is_err());
        let to = format!("{who}-closed");
        let err = copy(c, "closed", &to)
            .await
            .expect_err("copy of a secret object");
        assert_eq!(
            err_code(&err).as_deref(),
            Some("AccessDenied"),
            "{who}: {err:?}"
        );
        assert!(
            !site.exists("mine", &to).await,
            "{who} copied a secret object"
        );
        let to = format!("{who}-open");
        copy(c, "open", &to).await.expect("copy of a public object");
        assert!(site.exists("mine", &to).await);
    }
}
