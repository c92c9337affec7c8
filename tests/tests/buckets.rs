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
    let http = srv.http();
    let too_long = "a".repeat(64);
    let invalid = [
        "ab",              // too short
        too_long.as_str(), // too long
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        "double..dot",
        "192.168.1.1", // IP address form
    ];
    for name in invalid {
        let url = format!("{}/{}", srv.endpoint(), sigv4::uri_encode(name, false));
        let signed = srv.signer().sign("PUT", &url, &[], sigv4::EMPTY_SHA256);
        let mut req = http.put(&url);
        for (k, v) in &signed.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("PUT bucket");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_eq!(
            (status, xml_error_code(&body).as_deref()),
            (400, Some("InvalidBucketName")),
            "CreateBucket {name:?}: body {body}"
        );
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
