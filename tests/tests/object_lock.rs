//! S3 Object Lock: retention modes, legal hold, default retention and the AWS errors around them,
//! against a real `cairn` with real clients (aws-sdk-s3, a raw SigV4 request, the admin CLI).

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, DefaultRetention, Delete, ObjectIdentifier, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};
use cairn_tests::*;

const L: &str = "locked";

fn in_secs(s: u64) -> DateTime {
    DateTime::from(SystemTime::now() + Duration::from_secs(s))
}

async fn locked_bucket(c: &Client) {
    ok(
        c.create_bucket()
            .bucket(L)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
        "CreateBucket with object lock",
    );
}

/// Puts `key` with a retention (and Content-MD5, which AWS requires with one).
async fn put_retained(c: &Client, key: &str, mode: ObjectLockMode, until: DateTime) -> String {
    let body = format!("{key} body").into_bytes();
    ok(
        c.put_object()
            .bucket(L)
            .key(key)
            .content_md5(md5_b64(&body))
            .object_lock_mode(mode)
            .object_lock_retain_until_date(until)
            .body(ByteStream::from(body))
            .send()
            .await,
        "PutObject with retention",
    )
    .version_id()
    .expect("version id")
    .to_string()
}

async fn delete_version(
    c: &Client,
    key: &str,
    id: &str,
    bypass: bool,
) -> Result<
    aws_sdk_s3::operation::delete_object::DeleteObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::delete_object::DeleteObjectError>,
> {
    let mut r = c.delete_object().bucket(L).key(key).version_id(id);
    if bypass {
        r = r.bypass_governance_retention(true);
    }
    r.send().await
}

fn retention(mode: ObjectLockRetentionMode, until: DateTime) -> ObjectLockRetention {
    ObjectLockRetention::builder()
        .mode(mode)
        .retain_until_date(until)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_and_governance_retention() {
    let srv = Server::start(1).await;
    let c = srv.client();
    locked_bucket(&c).await;
    let v = ok(
        c.get_bucket_versioning().bucket(L).send().await,
        "versioning",
    );
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));
    assert_s3_err(
        c.put_bucket_versioning()
            .bucket(L)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await,
        409,
        Some("InvalidBucketState"),
        "suspending versioning on a locked bucket",
    );

    // COMPLIANCE: nobody removes it or shortens it, root with the bypass header included.
    let until = in_secs(86_400);
    let comp = put_retained(&c, "comp", ObjectLockMode::Compliance, until).await;
    let head = ok(
        c.head_object().bucket(L).key("comp").send().await,
        "HEAD locked",
    );
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    assert_eq!(
        head.object_lock_retain_until_date().map(|d| d.secs()),
        Some(until.secs())
    );
    for bypass in [false, true] {
        assert_s3_err(
            delete_version(&c, "comp", &comp, bypass).await,
            403,
            Some("AccessDenied"),
            "DELETE of a COMPLIANCE version",
        );
    }
    let multi = ok(
        c.delete_objects()
            .bucket(L)
            .bypass_governance_retention(true)
            .delete(
                Delete::builder()
                    .objects(
                        ObjectIdentifier::builder()
                            .key("comp")
                            .version_id(&comp)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "DeleteObjects",
    );
    assert_eq!(multi.errors().len(), 1, "{multi:?}");
    assert_eq!(multi.errors()[0].code(), Some("AccessDenied"));
    assert_s3_err(
        c.put_object_retention()
            .bucket(L)
            .key("comp")
            .version_id(&comp)
            .bypass_governance_retention(true)
            .retention(retention(
                ObjectLockRetentionMode::Compliance,
                in_secs(3600),
            ))
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "shortening COMPLIANCE",
    );
    assert_s3_err(
        c.put_object_retention()
            .bucket(L)
            .key("comp")
            .version_id(&comp)
            .retention(retention(ObjectLockRetentionMode::Governance, until))
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "COMPLIANCE -> GOVERNANCE",
    );
    let longer = in_secs(2 * 86_400);
    ok(
        c.put_object_retention()
            .bucket(L)
            .key("comp")
            .version_id(&comp)
            .retention(retention(ObjectLockRetentionMode::Compliance, longer))
            .send()
            .await,
        "extending COMPLIANCE",
    );
    let r = ok(
        c.get_object_retention().bucket(L).key("comp").send().await,
        "GetObjectRetention",
    );
    let r = r.retention().unwrap();
    assert_eq!(r.mode(), Some(&ObjectLockRetentionMode::Compliance));
    assert_eq!(r.retain_until_date().map(|d| d.secs()), Some(longer.secs()));
    // A DELETE without a version id only adds a marker; the version and its bytes stay.
    let del = ok(
        c.delete_object().bucket(L).key("comp").send().await,
        "marker",
    );
    assert_eq!(del.delete_marker(), Some(true));
    let body = ok(
        c.get_object()
            .bucket(L)
            .key("comp")
            .version_id(&comp)
            .send()
            .await,
        "GET locked version",
    );
    assert_eq!(
        body.body.collect().await.unwrap().into_bytes().as_ref(),
        b"comp body"
    );
    assert_s3_err(
        c.delete_bucket().bucket(L).send().await,
        409,
        Some("BucketNotEmpty"),
        "DeleteBucket with a locked version",
    );

    // GOVERNANCE: removable only with the bypass header (and permission: root has it).
    let gov = put_retained(&c, "gov", ObjectLockMode::Governance, in_secs(86_400)).await;
    assert_s3_err(
        delete_version(&c, "gov", &gov, false).await,
        403,
        Some("AccessDenied"),
        "DELETE of a GOVERNANCE version without bypass",
    );
    assert_s3_err(
        c.put_object_retention()
            .bucket(L)
            .key("gov")
            .version_id(&gov)
            .retention(ObjectLockRetention::builder().build())
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "removing GOVERNANCE retention without bypass",
    );
    ok(
        delete_version(&c, "gov", &gov, true).await,
        "bypassed delete",
    );
    assert_s3_err(
        c.head_object()
            .bucket(L)
            .key("gov")
            .version_id(&gov)
            .send()
            .await,
        404,
        None,
        "GOVERNANCE version removed",
    );

    // A retain-until a few seconds ahead expires, then the version can go.
    let short = put_retained(&c, "short", ObjectLockMode::Compliance, in_secs(3)).await;
    assert_s3_err(
        delete_version(&c, "short", &short, false).await,
        403,
        Some("AccessDenied"),
        "DELETE before expiry",
    );
    let gone = poll_until(Duration::from_secs(30), || async {
        delete_version(&c, "short", &short, false).await.is_ok()
    })
    .await;
    assert!(
        gone,
        "the version stayed locked after its retain-until date"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legal_hold_default_retention_and_errors() {
    let srv = Server::start(1).await;
    let c = srv.client();
    locked_bucket(&c).await;
    create_bucket(&c, "plain").await;

    // Errors on a bucket without object lock.
    assert_s3_err(
        c.get_object_lock_configuration()
            .bucket("plain")
            .send()
            .await,
        404,
        Some("ObjectLockConfigurationNotFoundError"),
        "GetObjectLockConfiguration without lock",
    );
    let config = |mode: ObjectLockRetentionMode, days: i32| {
        ObjectLockConfiguration::builder()
            .object_lock_enabled(ObjectLockEnabled::Enabled)
            .rule(
                ObjectLockRule::builder()
                    .default_retention(DefaultRetention::builder().mode(mode).days(days).build())
                    .build(),
            )
            .build()
    };
    assert_s3_err(
        c.put_object_lock_configuration()
            .bucket("plain")
            .object_lock_configuration(config(ObjectLockRetentionMode::Governance, 1))
            .send()
            .await,
        409,
        Some("InvalidBucketState"),
        "PutObjectLockConfiguration on an unversioned bucket",
    );
    let body = b"data".to_vec();
    assert_s3_err(
        c.put_object()
            .bucket("plain")
            .key("k")
            .content_md5(md5_b64(&body))
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(in_secs(60))
            .body(ByteStream::from(body.clone()))
            .send()
            .await,
        400,
        Some("InvalidRequest"),
        "lock headers on a bucket without lock",
    );
    assert_s3_err(
        c.put_object()
            .bucket(L)
            .key("past")
            .content_md5(md5_b64(&body))
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(DateTime::from_secs(1_000_000))
            .body(ByteStream::from(body.clone()))
            .send()
            .await,
        400,
        Some("InvalidArgument"),
        "retain-until in the past",
    );
    // Lock headers without Content-MD5 or a checksum (a raw request; the SDK adds a checksum).
    let url = format!("{}/{L}/raw", srv.endpoint());
    let s = srv.signer().sign(
        "PUT",
        &url,
        &[
            ("x-amz-object-lock-mode", "GOVERNANCE"),
            (
                "x-amz-object-lock-retain-until-date",
                "2099-01-01T00:00:00Z",
            ),
        ],
        &sigv4::sha256_hex(&body),
    );
    let mut req = srv.http().put(&url).body(body.clone());
    for (k, v) in &s.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(
        (status, xml_error_code(&text).as_deref()),
        (400, Some("InvalidRequest")),
        "retention without Content-MD5: {text}"
    );

    // Legal hold: blocks deletion whatever the retention; toggles off.
    let held = ok(
        c.put_object()
            .bucket(L)
            .key("held")
            .body(ByteStream::from_static(b"held"))
            .send()
            .await,
        "PutObject",
    )
    .version_id()
    .unwrap()
    .to_string();
    let hold = |s: ObjectLockLegalHoldStatus| ObjectLockLegalHold::builder().status(s).build();
    ok(
        c.put_object_legal_hold()
            .bucket(L)
            .key("held")
            .legal_hold(hold(ObjectLockLegalHoldStatus::On))
            .send()
            .await,
        "legal hold on",
    );
    let got = ok(
        c.get_object_legal_hold().bucket(L).key("held").send().await,
        "GetObjectLegalHold",
    );
    assert_eq!(
        got.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    assert_s3_err(
        c.delete_object()
            .bucket(L)
            .key("held")
            .version_id(&held)
            .bypass_governance_retention(true)
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "DELETE under legal hold",
    );
    ok(
        c.put_object_legal_hold()
            .bucket(L)
            .key("held")
            .legal_hold(hold(ObjectLockLegalHoldStatus::Off))
            .send()
            .await,
        "legal hold off",
    );
    ok(
        c.delete_object()
            .bucket(L)
            .key("held")
            .version_id(&held)
            .send()
            .await,
        "DELETE after legal hold off",
    );

    // Default retention applies to versions written after it is set, not before.
    put(&c, L, "before", b"old").await;
    ok(
        c.put_object_lock_configuration()
            .bucket(L)
            .object_lock_configuration(config(ObjectLockRetentionMode::Governance, 1))
            .send()
            .await,
        "PutObjectLockConfiguration",
    );
    let cfg = ok(
        c.get_object_lock_configuration().bucket(L).send().await,
        "GetObjectLockConfiguration",
    );
    let rule = cfg
        .object_lock_configuration()
        .and_then(|c| c.rule())
        .and_then(|r| r.default_retention())
        .expect("default retention");
    assert_eq!(rule.mode(), Some(&ObjectLockRetentionMode::Governance));
    assert_eq!(rule.days(), Some(1));
    put(&c, L, "after", b"new").await;
    assert_s3_err(
        c.get_object_retention()
            .bucket(L)
            .key("before")
            .send()
            .await,
        404,
        Some("NoSuchObjectLockConfiguration"),
        "older version has no retention",
    );
    let r = ok(
        c.get_object_retention().bucket(L).key("after").send().await,
        "new version retention",
    );
    let r = r.retention().unwrap();
    assert_eq!(r.mode(), Some(&ObjectLockRetentionMode::Governance));
    let left = r.retain_until_date().unwrap().secs() - DateTime::from(SystemTime::now()).secs();
    assert!(
        (86_000..=86_400).contains(&left),
        "one day of retention, got {left}s"
    );

    // The admin CLI reads and changes the same configuration.
    let cfg_dir = tempfile::tempdir().unwrap();
    let env = [("CAIRN_CONFIG_DIR", cfg_dir.path().to_str().unwrap())];
    let t = Duration::from_secs(30);
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (st, _, err) = run_cairn(
        &args(&[
            "admin",
            "alias",
            "set",
            "site",
            &srv.endpoint(),
            srv.access_key(),
            srv.secret_key(),
        ]),
        &env,
        t,
    )
    .await;
    assert!(st.success(), "alias set: {err}");
    let (st, out, err) = run_cairn(
        &args(&[
            "admin",
            "bucket",
            "lock",
            "set",
            "site/locked",
            "--mode",
            "COMPLIANCE",
            "--years",
            "2",
        ]),
        &env,
        t,
    )
    .await;
    assert!(st.success(), "lock set: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mode"], "COMPLIANCE");
    assert_eq!(v["years"], 2);
    let cfg = ok(
        c.get_object_lock_configuration().bucket(L).send().await,
        "GetObjectLockConfiguration after CLI",
    );
    let rule = cfg.object_lock_configuration().unwrap().rule().unwrap();
    assert_eq!(rule.default_retention().unwrap().years(), Some(2));
    let (st, out, _) = run_cairn(
        &args(&["admin", "bucket", "versioning", "info", "site/plain"]),
        &env,
        t,
    )
    .await;
    assert!(st.success());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["versioning"],
        "Unversioned"
    );
    let (st, _, err) = run_cairn(
        &args(&["admin", "bucket", "versioning", "enable", "site/plain"]),
        &env,
        t,
    )
    .await;
    assert!(st.success(), "versioning enable: {err}");
    let v = ok(
        c.get_bucket_versioning().bucket("plain").send().await,
        "Get",
    );
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));
    let (st, _, err) = run_cairn(
        &args(&["admin", "bucket", "versioning", "suspend", "site/locked"]),
        &env,
        t,
    )
    .await;
    assert!(!st.success(), "suspending a locked bucket must fail");
    assert!(err.contains("InvalidBucketState"), "{err}");
}
