//! Bucket lifecycle and bucket-level errors.

use aws_sdk_s3::primitives::ByteStream;
use cairn_tests::*;

async fn bucket_names(c: &Client) -> Vec<String> {
    ok(c.list_buckets().send().await, "ListBuckets")
        .buckets()
        .iter()
        .map(|b| b.name().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_head_delete() {
    let srv = Server::start(1).await;
    let c = srv.client();
    assert_eq!(
        bucket_names(&c).await,
        Vec::<String>::new(),
        "fresh server has no buckets"
    );

    for b in ["zeta-bucket", "alpha.bucket", "mid-1"] {
        create_bucket(&c, b).await;
    }
    // ListBuckets is sorted by name.
    assert_eq!(
        bucket_names(&c).await,
        vec!["alpha.bucket", "mid-1", "zeta-bucket"]
    );
    let lb = ok(c.list_buckets().send().await, "ListBuckets");
    for b in lb.buckets() {
        assert!(
            b.creation_date().is_some(),
            "CreationDate of {:?}",
            b.name()
        );
    }
    assert!(
        lb.owner()
            .and_then(|o| o.id())
            .is_some_and(|id| !id.is_empty()),
        "ListBuckets Owner ID"
    );

    ok(c.head_bucket().bucket("mid-1").send().await, "HeadBucket");
    assert_s3_err(
        c.head_bucket().bucket("not-there").send().await,
        404,
        None,
        "HeadBucket missing",
    );

    let loc = ok(
        c.get_bucket_location().bucket("mid-1").send().await,
        "GetBucketLocation",
    );
    let loc = loc.location_constraint().map(|l| l.as_str().to_string());
    assert!(
        matches!(loc.as_deref(), None | Some("") | Some("us-east-1")),
        "GetBucketLocation for us-east-1 returned {loc:?}"
    );
    assert_s3_err(
        c.get_bucket_location().bucket("not-there").send().await,
        404,
        Some("NoSuchBucket"),
        "GetBucketLocation missing",
    );

    ok(
        c.delete_bucket().bucket("mid-1").send().await,
        "DeleteBucket",
    );
    assert_eq!(bucket_names(&c).await, vec!["alpha.bucket", "zeta-bucket"]);
    assert_s3_err(
        c.head_bucket().bucket("mid-1").send().await,
        404,
        None,
        "HeadBucket deleted",
    );

    // Recreating a deleted bucket gives an empty bucket.
    put(&c, "zeta-bucket", "k", b"v").await;
    ok(
        c.delete_object()
            .bucket("zeta-bucket")
            .key("k")
            .send()
            .await,
        "DeleteObject",
    );
    ok(
        c.delete_bucket().bucket("zeta-bucket").send().await,
        "DeleteBucket",
    );
    create_bucket(&c, "zeta-bucket").await;
    assert!(
        list_all_keys(&c, "zeta-bucket").await.is_empty(),
        "recreated bucket is empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_errors() {
    let srv = Server::start(4).await;
    let c = srv.client();
    create_bucket(&c, "mine").await;

    assert_s3_err(
        c.create_bucket().bucket("mine").send().await,
        409,
        Some("BucketAlreadyOwnedByYou"),
        "CreateBucket twice",
    );

    // BucketNotEmpty, for inlined and for large objects.
    put(&c, "mine", "small", b"tiny").await;
    put(&c, "mine", "dir/large", &random_bytes(300 * KIB, 1)).await;
    assert_s3_err(
        c.delete_bucket().bucket("mine").send().await,
        409,
        Some("BucketNotEmpty"),
        "DeleteBucket non-empty",
    );
    ok(
        c.delete_object().bucket("mine").key("small").send().await,
        "DeleteObject",
    );
    assert_s3_err(
        c.delete_bucket().bucket("mine").send().await,
        409,
        Some("BucketNotEmpty"),
        "DeleteBucket with one object left",
    );
    ok(
        c.delete_object()
            .bucket("mine")
            .key("dir/large")
            .send()
            .await,
        "DeleteObject",
    );
    ok(
        c.delete_bucket().bucket("mine").send().await,
        "DeleteBucket emptied",
    );

    // NoSuchBucket on every kind of request.
    let nb = "no-such-bucket";
    assert_s3_err(
        c.delete_bucket().bucket(nb).send().await,
        404,
        Some("NoSuchBucket"),
        "DeleteBucket",
    );
    assert_s3_err(
        c.get_object().bucket(nb).key("k").send().await,
        404,
        Some("NoSuchBucket"),
        "GetObject",
    );
    assert_s3_err(
        c.put_object()
            .bucket(nb)
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        404,
        Some("NoSuchBucket"),
        "PutObject",
    );
    assert_s3_err(
        c.list_objects_v2().bucket(nb).send().await,
        404,
        Some("NoSuchBucket"),
        "ListObjectsV2",
    );
    assert_s3_err(
        c.list_objects().bucket(nb).send().await,
        404,
        Some("NoSuchBucket"),
        "ListObjects",
    );
    assert_s3_err(
        c.create_multipart_upload().bucket(nb).key("k").send().await,
        404,
        Some("NoSuchBucket"),
        "CreateMultipartUpload",
    );
    assert_s3_err(
        c.list_multipart_uploads().bucket(nb).send().await,
        404,
        Some("NoSuchBucket"),
        "ListMultipartUploads",
    );
    // The deleted bucket is gone too.
    assert_s3_err(
        c.list_objects_v2().bucket("mine").send().await,
        404,
        Some("NoSuchBucket"),
        "deleted bucket",
    );
}

/// Invalid names are sent raw (signed with the harness signer) so that no client-side
/// validation gets in the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bucket_names() {
    let srv = Server::start(1).await;
    let too_long = "a".repeat(64);
    // Each with the rule it breaks, which the error message names.
    let invalid = [
        ("ab", "between 3 (min) and 63 (max)"),
        (too_long.as_str(), "between 3 (min) and 63 (max)"),
        ("UpperCase", "only of lowercase letters"),
        ("under_score", "only of lowercase letters"),
        ("-leading-dash", "begin and end with a letter or number"),
        ("trailing-dash-", "begin and end with a letter or number"),
        ("double..dot", "two adjacent periods"),
        ("192.168.1.1", "IP address"),
        ("xn--punycode", "xn--"),
    ];
    let root = (ROOT_USER, ROOT_PASSWORD, None);
    for (name, why) in invalid {
        let path = format!("/{}", sigv4::uri_encode(name, false));
        let (status, body) = srv.signed("PUT", &path, root, b"").await;
        assert_eq!(
            (status, xml_error_code(&body).as_deref()),
            (400, Some("InvalidBucketName")),
            "CreateBucket {name:?}: body {body}"
        );
        assert!(body.contains(why), "CreateBucket {name:?} says why: {body}");
        // Any other request to such a bucket says the same.
        let (status, body) = srv
            .signed("GET", &format!("{path}/some-key"), root, b"")
            .await;
        assert_eq!(status, 400, "GET in {name:?}: {body}");
        assert!(body.contains(why), "GET in {name:?} says why: {body}");
    }
    // Boundary lengths are valid (3 and 63 characters).
    let c = srv.client();
    create_bucket(&c, "abc").await;
    create_bucket(&c, &"b".repeat(63)).await;
    let mut names = bucket_names(&c).await;
    names.sort();
    assert_eq!(
        names,
        vec!["abc".to_string(), "b".repeat(63)],
        "only the valid buckets exist"
    );
}

/// Put/Get/DeleteBucketTagging with AWS's answers: `NoSuchTagSet` (404) without tags,
/// `InvalidTag` (400) beyond AWS's limits (nothing changes then), and each call needs its action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_tagging() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, "tagged").await;
    let got = c.get_bucket_tagging().bucket("tagged").send().await;
    assert_s3_err(got, 404, Some("NoSuchTagSet"), "no tags yet");

    let set = [("team", "blue"), ("cost-centre", "4 2/ü")];
    ok(
        c.put_bucket_tagging()
            .bucket("tagged")
            .tagging(tags(&set))
            .send()
            .await,
        "PutBucketTagging",
    );
    let read = |c: Client| async move {
        ok(
            c.get_bucket_tagging().bucket("tagged").send().await,
            "GetBucketTagging",
        )
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect::<Vec<_>>()
    };
    let want: Vec<_> = set
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(read(c.clone()).await, want);

    for (case, bad) in [
        (
            "reserved",
            vec![("aws:owner".to_string(), "me".to_string())],
        ),
        (
            "duplicate",
            vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        ),
        ("long key", vec![("k".repeat(129), "v".into())]),
        (
            "51 tags",
            (0..51).map(|i| (format!("k{i}"), "v".into())).collect(),
        ),
    ] {
        let refs: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let got = c
            .put_bucket_tagging()
            .bucket("tagged")
            .tagging(tags(&refs))
            .send()
            .await;
        assert_s3_err(got, 400, Some("InvalidTag"), case);
    }
    assert_eq!(
        read(c.clone()).await,
        want,
        "refused tag sets changed nothing"
    );
    let got = c
        .put_bucket_tagging()
        .bucket("no-such-bucket")
        .tagging(tags(&set))
        .send()
        .await;
    assert_s3_err(got, 404, Some("NoSuchBucket"), "missing bucket");

    // A user allowed to read tags only.
    let admin = cairn_tests::admin::AdminCli::for_server("n0", &srv).await;
    admin
        .user_with_policy(
            "n0",
            "tina",
            "tina-secret-1",
            "read-tags",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetBucketTagging"],"Resource":["arn:aws:s3:::tagged"]}]}"#,
        )
        .await;
    let tina = srv.client_with("tina", "tina-secret-1");
    assert_eq!(read(tina.clone()).await, want);
    let got = tina
        .put_bucket_tagging()
        .bucket("tagged")
        .tagging(tags(&[("team", "red")]))
        .send()
        .await;
    assert_s3_err(got, 403, Some("AccessDenied"), "tina puts tags");
    let got = tina.delete_bucket_tagging().bucket("tagged").send().await;
    assert_s3_err(got, 403, Some("AccessDenied"), "tina deletes tags");
    assert_eq!(read(c.clone()).await, want);

    ok(
        c.delete_bucket_tagging().bucket("tagged").send().await,
        "DeleteBucketTagging",
    );
    let got = c.get_bucket_tagging().bucket("tagged").send().await;
    assert_s3_err(got, 404, Some("NoSuchTagSet"), "after delete");
}
