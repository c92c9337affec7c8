//! Bucket lifecycle: the configuration API with AWS's answers, the `x-amz-expiration` header, and
//! the worker applying rules on a server whose "day" is shortened to seconds
//! (`CAIRN_LIFECYCLE_DAY`), observed through ordinary S3 listings.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter,
    NoncurrentVersionExpiration, ObjectLockLegalHold, ObjectLockLegalHoldStatus, Tag, Transition,
    TransitionStorageClass,
};
use cairn_tests::*;

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().expect("tag")
}

fn prefix(p: &str) -> LifecycleRuleFilter {
    LifecycleRuleFilter::builder().prefix(p).build()
}

fn days(n: i32) -> LifecycleExpiration {
    LifecycleExpiration::builder().days(n).build()
}

/// A rule with an id, a filter and nothing else yet.
fn rule(
    id: &str,
    filter: LifecycleRuleFilter,
) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(filter)
}

fn config(rules: Vec<LifecycleRule>) -> BucketLifecycleConfiguration {
    BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .expect("configuration")
}

async fn put_rules(c: &Client, bucket: &str, rules: Vec<LifecycleRule>) {
    ok(
        c.put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(config(rules))
            .send()
            .await,
        "PutBucketLifecycleConfiguration",
    );
}

/// Every version of `key` as `(version id, is a delete marker)`, newest first.
async fn versions(c: &Client, bucket: &str, key: &str) -> Vec<(String, bool)> {
    let out = ok(
        c.list_object_versions()
            .bucket(bucket)
            .prefix(key)
            .send()
            .await,
        "ListObjectVersions",
    );
    let mut all: Vec<(String, bool, (i64, u32), bool)> = Vec::new();
    for v in out.versions() {
        if v.key() == Some(key) {
            all.push((
                v.version_id().unwrap_or_default().to_string(),
                false,
                at(v.last_modified().unwrap()),
                v.is_latest().unwrap_or(false),
            ));
        }
    }
    for m in out.delete_markers() {
        if m.key() == Some(key) {
            all.push((
                m.version_id().unwrap_or_default().to_string(),
                true,
                at(m.last_modified().unwrap()),
                m.is_latest().unwrap_or(false),
            ));
        }
    }
    // The latest first, then by time.
    all.sort_by(|a, b| b.3.cmp(&a.3).then(b.2.cmp(&a.2)));
    all.into_iter().map(|(id, m, _, _)| (id, m)).collect()
}

fn at(t: &DateTime) -> (i64, u32) {
    (t.secs(), t.subsec_nanos())
}

async fn exists(c: &Client, bucket: &str, key: &str) -> bool {
    c.head_object().bucket(bucket).key(key).send().await.is_ok()
}

/// `expiry-date="<HTTP date>", rule-id="<id>"` for an object written at `written` that a
/// `Days=days` rule expires: the time plus the days, rounded up to the next midnight UTC.
fn expected_expiration(written: &DateTime, days: i64, rule_id: &str) -> String {
    let t = written.secs() + days * 86_400;
    let midnight = (t + 86_399) / 86_400 * 86_400;
    let date = time::OffsetDateTime::from_unix_timestamp(midnight).unwrap();
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    format!(
        "expiry-date=\"{}\", rule-id=\"{rule_id}\"",
        date.format(fmt).unwrap()
    )
}

/// The configuration round trip, AWS's errors for a bad one (nothing changes then), the
/// permissions each call needs, and the `x-amz-expiration` header on PUT, copy, multipart
/// completion, GET and HEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_permissions_and_expiration_header() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, "rules").await;
    let got = c
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await;
    assert_s3_err(
        got,
        404,
        Some("NoSuchLifecycleConfiguration"),
        "no rules yet",
    );

    let midnight = DateTime::from_secs(1_924_992_000); // 2031-01-01T00:00:00Z
    let rules = vec![
        rule("logs", prefix("logs/"))
            .expiration(days(30))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(7)
                    .newer_noncurrent_versions(2)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(3)
                    .build(),
            )
            .build()
            .unwrap(),
        rule(
            "tagged-big",
            LifecycleRuleFilter::builder()
                .and(
                    LifecycleRuleAndOperator::builder()
                        .prefix("data/")
                        .tags(tag("class", "scratch"))
                        .object_size_greater_than(1024)
                        .build(),
                )
                .build(),
        )
        .expiration(LifecycleExpiration::builder().date(midnight).build())
        .build()
        .unwrap(),
        rule("markers", LifecycleRuleFilter::builder().build())
            .status(ExpirationStatus::Disabled)
            .expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            )
            .build()
            .unwrap(),
        rule(
            "tag-only",
            LifecycleRuleFilter::builder().tag(tag("t", "1")).build(),
        )
        .expiration(days(1))
        .build()
        .unwrap(),
    ];
    put_rules(&c, "rules", rules.clone()).await;
    let got = ok(
        c.get_bucket_lifecycle_configuration()
            .bucket("rules")
            .send()
            .await,
        "GetBucketLifecycleConfiguration",
    );
    assert_eq!(got.rules(), rules.as_slice(), "rules round trip");

    let bad = |r: aws_sdk_s3::types::builders::LifecycleRuleBuilder| r.build().unwrap();
    for (case, rules, status, code) in [
        (
            "duplicate ids",
            vec![
                bad(rule("a", prefix("x")).expiration(days(1))),
                bad(rule("a", prefix("y")).expiration(days(1))),
            ],
            400,
            "InvalidArgument",
        ),
        (
            "id too long",
            vec![bad(rule(&"i".repeat(256), prefix("")).expiration(days(1)))],
            400,
            "InvalidArgument",
        ),
        (
            "zero days",
            vec![bad(rule("a", prefix("")).expiration(days(0)))],
            400,
            "InvalidArgument",
        ),
        (
            "date not at midnight",
            vec![bad(rule("a", prefix("")).expiration(
                LifecycleExpiration::builder()
                    .date(DateTime::from_secs(1_924_992_000 + 3600))
                    .build(),
            ))],
            400,
            "InvalidArgument",
        ),
        (
            "no action",
            vec![bad(rule("a", prefix("")))],
            400,
            "InvalidRequest",
        ),
        (
            "days and date",
            vec![bad(rule("a", prefix("")).expiration(
                LifecycleExpiration::builder()
                    .days(1)
                    .date(midnight)
                    .build(),
            ))],
            400,
            "MalformedXML",
        ),
        (
            "two conditions without And",
            vec![bad(rule(
                "a",
                LifecycleRuleFilter::builder()
                    .prefix("p")
                    .tag(tag("k", "v"))
                    .build(),
            )
            .expiration(days(1)))],
            400,
            "MalformedXML",
        ),
        (
            "abort with a tag filter",
            vec![bad(rule(
                "a",
                LifecycleRuleFilter::builder().tag(tag("k", "v")).build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            ))],
            400,
            "InvalidRequest",
        ),
        (
            "1001 rules",
            (0..1001)
                .map(|i| bad(rule(&i.to_string(), prefix("")).expiration(days(1))))
                .collect(),
            400,
            "MalformedXML",
        ),
        (
            "transition",
            vec![bad(rule("a", prefix("")).transitions(
                Transition::builder()
                    .days(1)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build(),
            ))],
            501,
            "NotImplemented",
        ),
    ] {
        let got = c
            .put_bucket_lifecycle_configuration()
            .bucket("rules")
            .lifecycle_configuration(config(rules))
            .send()
            .await;
        assert_s3_err(got, status, Some(code), case);
    }
    let got = ok(
        c.get_bucket_lifecycle_configuration()
            .bucket("rules")
            .send()
            .await,
        "GetBucketLifecycleConfiguration",
    );
    assert_eq!(
        got.rules(),
        rules.as_slice(),
        "refused configurations changed nothing"
    );
    let got = c
        .put_bucket_lifecycle_configuration()
        .bucket("no-such-bucket")
        .lifecycle_configuration(config(rules.clone()))
        .send()
        .await;
    assert_s3_err(got, 404, Some("NoSuchBucket"), "missing bucket");

    // x-amz-expiration: a matching object carries the earliest expiry of its rules, others none.
    let put = ok(
        c.put_object()
            .bucket("rules")
            .key("logs/app.log")
            .body(b"log line".to_vec().into())
            .send()
            .await,
        "PUT logs/app.log",
    );
    let head = ok(
        c.head_object()
            .bucket("rules")
            .key("logs/app.log")
            .send()
            .await,
        "HEAD",
    );
    let want = expected_expiration(head.last_modified().unwrap(), 30, "logs");
    assert_eq!(put.expiration(), Some(want.as_str()), "PUT");
    assert_eq!(head.expiration(), Some(want.as_str()), "HEAD");
    let get = ok(
        c.get_object()
            .bucket("rules")
            .key("logs/app.log")
            .send()
            .await,
        "GET",
    );
    assert_eq!(get.expiration(), Some(want.as_str()), "GET");
    // A copy and a completed multipart upload are new versions the rule covers too.
    let copy = ok(
        c.copy_object()
            .bucket("rules")
            .key("logs/copy.log")
            .copy_source("rules/logs/app.log")
            .send()
            .await,
        "CopyObject",
    );
    let copied = copy.copy_object_result().and_then(|r| r.last_modified());
    let want = expected_expiration(copied.expect("LastModified"), 30, "logs");
    assert_eq!(copy.expiration(), Some(want.as_str()), "CopyObject");
    let up = ok(
        c.create_multipart_upload()
            .bucket("rules")
            .key("logs/parts.log")
            .send()
            .await,
        "CreateMultipartUpload",
    );
    let id = up.upload_id().expect("upload id");
    let part = ok(
        c.upload_part()
            .bucket("rules")
            .key("logs/parts.log")
            .upload_id(id)
            .part_number(1)
            .body(b"one part".to_vec().into())
            .send()
            .await,
        "UploadPart",
    );
    let done = complete_multipart(
        &c,
        "rules",
        "logs/parts.log",
        id,
        vec![aws_sdk_s3::types::CompletedPart::builder()
            .part_number(1)
            .set_e_tag(part.e_tag().map(str::to_string))
            .build()],
    )
    .await;
    let head = ok(
        c.head_object()
            .bucket("rules")
            .key("logs/parts.log")
            .send()
            .await,
        "HEAD of the completed upload",
    );
    let want = expected_expiration(head.last_modified().unwrap(), 30, "logs");
    assert_eq!(
        done.expiration(),
        Some(want.as_str()),
        "CompleteMultipartUpload"
    );
    let put = ok(
        c.put_object()
            .bucket("rules")
            .key("data/small")
            .tagging("class=scratch")
            .body(b"small".to_vec().into())
            .send()
            .await,
        "PUT data/small",
    );
    assert_eq!(put.expiration(), None, "too small for the size filter");
    let put = ok(
        c.put_object()
            .bucket("rules")
            .key("data/big")
            .tagging("class=scratch")
            .body(vec![7u8; 2048].into())
            .send()
            .await,
        "PUT data/big",
    );
    assert_eq!(
        put.expiration(),
        Some("expiry-date=\"Wed, 01 Jan 2031 00:00:00 GMT\", rule-id=\"tagged-big\""),
        "Date rule"
    );

    // A user allowed to read the configuration only; PutLifecycleConfiguration covers DELETE.
    let admin = cairn_tests::admin::AdminCli::for_server("n0", &srv).await;
    admin
        .user_with_policy(
            "n0",
            "lena",
            "lena-secret-1",
            "read-lifecycle",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetLifecycleConfiguration"],"Resource":["arn:aws:s3:::rules"]}]}"#,
        )
        .await;
    let lena = srv.client_with("lena", "lena-secret-1");
    let got = ok(
        lena.get_bucket_lifecycle_configuration()
            .bucket("rules")
            .send()
            .await,
        "lena reads",
    );
    assert_eq!(got.rules().len(), rules.len());
    let got = lena
        .put_bucket_lifecycle_configuration()
        .bucket("rules")
        .lifecycle_configuration(config(vec![bad(rule("x", prefix("")).expiration(days(1)))]))
        .send()
        .await;
    assert_s3_err(got, 403, Some("AccessDenied"), "lena puts rules");
    let got = lena.delete_bucket_lifecycle().bucket("rules").send().await;
    assert_s3_err(got, 403, Some("AccessDenied"), "lena deletes rules");

    ok(
        c.delete_bucket_lifecycle().bucket("rules").send().await,
        "DeleteBucketLifecycle",
    );
    let got = c
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await;
    assert_s3_err(
        got,
        404,
        Some("NoSuchLifecycleConfiguration"),
        "after delete",
    );
    let head = ok(
        c.head_object()
            .bucket("rules")
            .key("logs/app.log")
            .send()
            .await,
        "HEAD without rules",
    );
    assert_eq!(head.expiration(), None, "no rules, no header");

    // boto3 puts and reads a configuration as AWS's own client does.
    let got = boto3(
        r#"
s3 = client("s3", os.environ["EP"], os.environ["AK"], os.environ["SK"])
s3.put_bucket_lifecycle_configuration(Bucket="rules", LifecycleConfiguration={"Rules": [
    {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 2}},
    {"ID": "old", "Status": "Enabled", "Filter": {}, "NoncurrentVersionExpiration": {"NoncurrentDays": 5}},
]})
rules = s3.get_bucket_lifecycle_configuration(Bucket="rules")["Rules"]
print(json.dumps(rules))
"#,
        &[
            ("EP", srv.endpoint().as_str()),
            ("AK", srv.access_key()),
            ("SK", srv.secret_key()),
        ],
    )
    .await;
    assert_eq!(got[0]["ID"], "tmp");
    assert_eq!(got[0]["Expiration"]["Days"], 2);
    assert_eq!(got[0]["Filter"]["Prefix"], "tmp/");
    assert_eq!(got[1]["NoncurrentVersionExpiration"]["NoncurrentDays"], 5);
}

/// The worker on a server whose day is 2 s: expiration of current versions (removal on an
/// unversioned bucket, a delete marker on a versioned one), noncurrent versions with
/// `NewerNoncurrentVersions`, a lone delete marker, an incomplete multipart upload; prefix, tag
/// and size filters; a version under legal hold outliving its expiration; and the rate bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_applies_rules() {
    const RATE: u32 = 20;
    let srv = Server::start_with(
        ServerOptions::new(1)
            .env("CAIRN_LIFECYCLE_DAY", "2s")
            .env("CAIRN_LIFECYCLE_SCAN", "500ms")
            .env("CAIRN_LIFECYCLE_RATE", &RATE.to_string()),
    )
    .await;
    let c = srv.client();

    // Unversioned: filters decide what goes.
    create_bucket(&c, "plain").await;
    for key in [
        "tmp/a",
        "keep/a",
        "tagged",
        "untagged",
        "big/large",
        "big/small",
    ] {
        let body = if key == "big/large" {
            vec![1u8; 4096]
        } else {
            vec![2u8; 16]
        };
        let mut req = c.put_object().bucket("plain").key(key).body(body.into());
        if key == "tagged" {
            req = req.tagging("expire=yes");
        }
        ok(req.send().await, key);
    }
    const PACED: usize = 60;
    for i in 0..PACED {
        put(&c, "plain", &format!("paced/{i:03}"), b"x").await;
    }
    put_rules(
        &c,
        "plain",
        vec![
            rule("tmp", prefix("tmp/"))
                .expiration(days(1))
                .build()
                .unwrap(),
            rule("paced", prefix("paced/"))
                .expiration(days(1))
                .build()
                .unwrap(),
            rule(
                "tag",
                LifecycleRuleFilter::builder()
                    .tag(tag("expire", "yes"))
                    .build(),
            )
            .expiration(days(1))
            .build()
            .unwrap(),
            rule(
                "big",
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("big/")
                            .object_size_greater_than(1000)
                            .build(),
                    )
                    .build(),
            )
            .expiration(days(1))
            .build()
            .unwrap(),
            rule("off", prefix("keep/"))
                .status(ExpirationStatus::Disabled)
                .expiration(days(1))
                .build()
                .unwrap(),
        ],
    )
    .await;

    // Versioned: a marker over current versions, noncurrent versions beyond the newest one,
    // a delete marker left alone, an upload never completed.
    create_bucket(&c, "vers").await;
    enable_versioning(&c, "vers").await;
    put(&c, "vers", "cur/a", b"current").await;
    for i in 0..4 {
        put(&c, "vers", "nc/a", format!("v{i}").as_bytes()).await;
    }
    put(&c, "vers", "dm/a", b"gone soon").await;
    ok(
        c.delete_object().bucket("vers").key("dm/a").send().await,
        "DELETE dm/a",
    );
    let upload = ok(
        c.create_multipart_upload()
            .bucket("vers")
            .key("mp/a")
            .send()
            .await,
        "CreateMultipartUpload",
    );
    let upload_id = upload.upload_id().unwrap().to_string();
    put_rules(
        &c,
        "vers",
        vec![
            rule("cur", prefix("cur/"))
                .expiration(days(1))
                .build()
                .unwrap(),
            rule("nc", prefix("nc/"))
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(1)
                        .newer_noncurrent_versions(1)
                        .build(),
                )
                .build()
                .unwrap(),
            rule("dm", prefix("dm/"))
                .expiration(
                    LifecycleExpiration::builder()
                        .expired_object_delete_marker(true)
                        .build(),
                )
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(1)
                        .build(),
                )
                .build()
                .unwrap(),
            rule("mp", prefix("mp/"))
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(1)
                        .build(),
                )
                .build()
                .unwrap(),
        ],
    )
    .await;

    // Object lock: a version under legal hold outlives its expiration.
    ok(
        c.create_bucket()
            .bucket("locked")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "CreateBucket locked",
    );
    let held = ok(
        c.put_object()
            .bucket("locked")
            .key("doc")
            .body(b"held".to_vec().into())
            .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .send()
            .await,
        "PUT held",
    )
    .version_id()
    .unwrap()
    .to_string();
    let free = put_version(&c, "locked", "doc", b"free").await;
    put_rules(
        &c,
        "locked",
        vec![rule("all", prefix(""))
            .expiration(days(1))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap()],
    )
    .await;

    let wait = Duration::from_secs(60);
    // The paced keys: at most RATE removals a second.
    let first_gone = std::sync::Mutex::new(None);
    let done = poll_until(wait, || {
        let c = c.clone();
        let first_gone = &first_gone;
        async move {
            let left = list_all_keys(&c, "plain")
                .await
                .iter()
                .filter(|k| k.starts_with("paced/"))
                .count();
            let mut first = first_gone.lock().unwrap();
            if left < PACED && first.is_none() {
                *first = Some(Instant::now());
            }
            left == 0
        }
    })
    .await;
    assert!(done, "paced keys expired");
    let took = first_gone.lock().unwrap().unwrap().elapsed();
    let least =
        Duration::from_secs_f64((PACED - 1) as f64 / f64::from(RATE)) - Duration::from_millis(300);
    assert!(
        took >= least,
        "{PACED} removals in {took:?}: faster than {RATE}/s"
    );

    let done = poll_until(wait, || {
        let c = c.clone();
        async move {
            !exists(&c, "plain", "tmp/a").await
                && !exists(&c, "plain", "tagged").await
                && !exists(&c, "plain", "big/large").await
        }
    })
    .await;
    assert!(done, "prefix, tag and size rules expired their objects");
    for key in ["keep/a", "untagged", "big/small"] {
        assert!(
            exists(&c, "plain", key).await,
            "{key} matches no enabled rule"
        );
    }

    // The current version of cur/a is covered by a marker; the version itself stays.
    let done = poll_until(wait, || {
        let c = c.clone();
        async move {
            versions(&c, "vers", "cur/a")
                .await
                .first()
                .is_some_and(|v| v.1)
        }
    })
    .await;
    assert!(done, "cur/a expired");
    let v = versions(&c, "vers", "cur/a").await;
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(!v[1].1, "the expired version is kept as noncurrent: {v:?}");

    // nc/a keeps its current version and the newest noncurrent one.
    let done = poll_until(wait, || {
        let c = c.clone();
        async move { versions(&c, "vers", "nc/a").await.len() == 2 }
    })
    .await;
    assert!(
        done,
        "nc/a trimmed: {:?}",
        versions(&c, "vers", "nc/a").await
    );
    assert_eq!(get(&c, "vers", "nc/a").await, b"v3");

    // dm/a: its version expires as noncurrent, then the marker left alone goes.
    let done = poll_until(wait, || {
        let c = c.clone();
        async move { versions(&c, "vers", "dm/a").await.is_empty() }
    })
    .await;
    assert!(
        done,
        "dm/a cleaned up: {:?}",
        versions(&c, "vers", "dm/a").await
    );

    let done = poll_until(wait, || {
        let c = c.clone();
        async move {
            ok(
                c.list_multipart_uploads().bucket("vers").send().await,
                "ListMultipartUploads",
            )
            .uploads()
            .is_empty()
        }
    })
    .await;
    assert!(done, "upload {upload_id} aborted");

    // locked/doc: the free version goes (noncurrent once its marker is written), the held one
    // stays, though it was due first; once released it goes too.
    let done = poll_until(wait, || {
        let c = c.clone();
        let free = free.clone();
        async move {
            let v = versions(&c, "locked", "doc").await;
            v.first().is_some_and(|v| v.1) && !v.iter().any(|(id, _)| *id == free)
        }
    })
    .await;
    assert!(
        done,
        "locked/doc: {:?}",
        versions(&c, "locked", "doc").await
    );
    let v = versions(&c, "locked", "doc").await;
    assert!(
        v.iter().any(|(id, _)| *id == held),
        "held version kept: {v:?}"
    );
    ok(
        c.put_object_legal_hold()
            .bucket("locked")
            .key("doc")
            .version_id(&held)
            .legal_hold(
                ObjectLockLegalHold::builder()
                    .status(ObjectLockLegalHoldStatus::Off)
                    .build(),
            )
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .send()
            .await,
        "release",
    );
    let done = poll_until(wait, || {
        let c = c.clone();
        let held = held.clone();
        async move {
            !versions(&c, "locked", "doc")
                .await
                .iter()
                .any(|(id, _)| *id == held)
        }
    })
    .await;
    assert!(done, "released version expired");
}

/// Paired sites apply the same (replicated) rules: each expires the current version with the
/// same delete marker (its id derived from the expired version), so both end with the same two
/// versions rather than two markers each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_sites_expire_alike() {
    let short = || {
        ServerOptions::new(4)
            .env("CAIRN_LIFECYCLE_DAY", "2s")
            .env("CAIRN_LIFECYCLE_SCAN", "300ms")
    };
    let s = cairn_tests::sites::TwoSites::start_both(short(), short()).await;
    let (ca, cb) = (s.a.client(), s.b.client());
    s.admin(&["site", "add", "a", "b"]).await;
    create_bucket(&ca, "shared").await;
    let rules = vec![rule("all", prefix("")).expiration(days(1)).build().unwrap()];
    let react = Duration::from_secs(120);
    assert!(
        poll_until(react, || async {
            cb.head_bucket().bucket("shared").send().await.is_ok()
        })
        .await,
        "bucket on b"
    );
    // Written before the rules reach b, so neither site's worker is ahead of the object.
    let id = put_version(&ca, "shared", "doc", b"expires on both sites").await;
    assert!(
        poll_until(react, || async {
            versions(&cb, "shared", "doc").await == [(id.clone(), false)]
        })
        .await,
        "doc on b"
    );
    put_rules(&ca, "shared", rules.clone()).await;
    assert!(
        poll_until(react, || async {
            cb.get_bucket_lifecycle_configuration()
                .bucket("shared")
                .send()
                .await
                .is_ok_and(|o| o.rules() == rules.as_slice())
        })
        .await,
        "rules replicated to b"
    );
    let converged = poll_until(react, || async {
        let (va, vb) = (
            versions(&ca, "shared", "doc").await,
            versions(&cb, "shared", "doc").await,
        );
        va == vb && va.len() == 2 && va[0].1 && va[1] == (id.clone(), false)
    })
    .await;
    assert!(
        converged,
        "a: {:?}\nb: {:?}",
        versions(&ca, "shared", "doc").await,
        versions(&cb, "shared", "doc").await
    );
}

/// Measures how many versions a 6-drive node expires per second (run with `--ignored`;
/// `LIFECYCLE_OBJECTS` sets how many, default 2000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_expiration_throughput() {
    let n: usize = std::env::var("LIFECYCLE_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let srv = Server::start_with(
        ServerOptions::new(6)
            .env("CAIRN_LIFECYCLE_DAY", "5s")
            .env("CAIRN_LIFECYCLE_SCAN", "200ms")
            .env("CAIRN_LIFECYCLE_RATE", "1000000"),
    )
    .await;
    let c = srv.client();
    create_bucket(&c, "bulk").await;
    enable_versioning(&c, "bulk").await;
    let started = Instant::now();
    futures::future::join_all((0..16).map(|w| {
        let c = c.clone();
        async move {
            for i in (w..n).step_by(16) {
                put(&c, "bulk", &format!("k/{i:06}"), b"x").await;
                put(&c, "bulk", &format!("k/{i:06}"), b"y").await;
            }
        }
    }))
    .await;
    eprintln!("wrote {} versions in {:?}", 2 * n, started.elapsed());
    // Every noncurrent version expires one day after it was replaced.
    put_rules(
        &c,
        "bulk",
        vec![rule("nc", prefix(""))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap()],
    )
    .await;
    let count = |c: Client| async move {
        let mut total = 0;
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut req = c.list_object_versions().bucket("bulk");
            if let Some((k, v)) = &marker {
                req = req.key_marker(k).version_id_marker(v);
            }
            let out = ok(req.send().await, "ListObjectVersions");
            total += out.versions().len();
            if !out.is_truncated().unwrap_or(false) {
                return total;
            }
            marker = Some((
                out.next_key_marker().unwrap().to_string(),
                out.next_version_id_marker().unwrap().to_string(),
            ));
        }
    };
    let first = std::sync::Mutex::new(None);
    let done = poll_until(Duration::from_secs(600), || {
        let c = c.clone();
        let first = &first;
        async move {
            let left = count(c).await;
            let mut f = first.lock().unwrap();
            if left < 2 * n && f.is_none() {
                *f = Some((Instant::now(), left));
            }
            left == n
        }
    })
    .await;
    assert!(done, "noncurrent versions expired");
    let (t0, left0) = first.lock().unwrap().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let removed = left0 - n;
    eprintln!(
        "LIFECYCLE: {removed} noncurrent versions expired in {secs:.2} s after the first went: {:.0} versions/s (6 drives, 1 node)",
        removed as f64 / secs
    );
}
