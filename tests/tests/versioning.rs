//! Bucket versioning as AWS does it: version ids, delete markers, reads by version id, the null
//! version of suspended buckets, multi-delete with version ids, multipart versions and
//! ListObjectVersions paging, on a 4-drive erasure set.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
    VersioningConfiguration,
};
use cairn_tests::*;

const B: &str = "versions";

async fn set_versioning(c: &Client, bucket: &str, status: BucketVersioningStatus) {
    ok(
        c.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await,
        "PutBucketVersioning",
    );
}

async fn put_v(c: &Client, key: &str, data: &[u8]) -> Option<String> {
    ok(
        c.put_object()
            .bucket(B)
            .key(key)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await,
        "PutObject",
    )
    .version_id()
    .map(str::to_string)
}

async fn get_v(c: &Client, key: &str, version: &str) -> Vec<u8> {
    let out = ok(
        c.get_object()
            .bucket(B)
            .key(key)
            .version_id(version)
            .send()
            .await,
        "GetObject by version",
    );
    assert_eq!(out.version_id(), Some(version), "x-amz-version-id of GET");
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// (key, version id, is delete marker, is latest) in AWS listing order: keys ascending, each
/// key's versions newest first (markers and versions interleaved by age).
type Listed = Vec<(String, String, bool, bool)>;

fn listed(out: &aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput) -> Listed {
    let mut all: Vec<(String, String, bool, bool, i64)> = Vec::new();
    for v in out.versions() {
        all.push((
            v.key().unwrap().into(),
            v.version_id().unwrap().into(),
            false,
            v.is_latest().unwrap(),
            v.last_modified().unwrap().as_nanos() as i64,
        ));
    }
    for m in out.delete_markers() {
        all.push((
            m.key().unwrap().into(),
            m.version_id().unwrap().into(),
            true,
            m.is_latest().unwrap(),
            m.last_modified().unwrap().as_nanos() as i64,
        ));
    }
    // S3 serialises <Version> and <DeleteMarker> in one ordered sequence; the SDK splits them,
    // so restore the order: key ascending, latest first, then newer first.
    all.sort_by(|a, b| a.0.cmp(&b.0).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    all.into_iter()
        .map(|(k, v, m, l, _)| (k, v, m, l))
        .collect()
}

async fn list_versions_paged(c: &Client, max: i32) -> (Listed, usize) {
    let mut all = Vec::new();
    let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
    let mut pages = 0;
    loop {
        let out = ok(
            c.list_object_versions()
                .bucket(B)
                .max_keys(max)
                .set_key_marker(km.clone())
                .set_version_id_marker(vm.clone())
                .send()
                .await,
            "ListObjectVersions page",
        );
        pages += 1;
        let page = listed(&out);
        assert!(page.len() <= max as usize, "page larger than max-keys");
        all.extend(page);
        if !out.is_truncated().unwrap_or(false) {
            return (all, pages);
        }
        km = out.next_key_marker().map(str::to_string);
        vm = out.next_version_id_marker().map(str::to_string);
        assert!(km.is_some(), "truncated page without NextKeyMarker");
        assert!(pages < 50, "paging does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_markers_and_listing() {
    let srv = Server::start(4).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let status = ok(
        c.get_bucket_versioning().bucket(B).send().await,
        "GetBucketVersioning",
    );
    assert_eq!(status.status(), None, "a new bucket was never versioned");

    // Written before versioning: the null version, and no version id header.
    assert_eq!(put_v(&c, "a", b"a-null").await, None);
    set_versioning(&c, B, BucketVersioningStatus::Enabled).await;
    let status = ok(c.get_bucket_versioning().bucket(B).send().await, "Get");
    assert_eq!(status.status(), Some(&BucketVersioningStatus::Enabled));

    let a1 = put_v(&c, "a", b"a-one").await.expect("version id");
    let a2 = put_v(&c, "a", b"a-two").await.expect("version id");
    let b1 = put_v(&c, "b", b"b-one").await.expect("version id");
    assert_ne!(a1, a2);
    assert_eq!(get(&c, B, "a").await, b"a-two");
    assert_eq!(get_v(&c, "a", &a1).await, b"a-one");
    assert_eq!(get_v(&c, "a", "null").await, b"a-null");

    // DELETE without a version id: a marker; the key reads as absent, the data stays.
    let del = ok(c.delete_object().bucket(B).key("a").send().await, "Delete");
    assert_eq!(del.delete_marker(), Some(true));
    let marker = del.version_id().expect("marker version id").to_string();
    match c.get_object().bucket(B).key("a").send().await {
        Ok(_) => panic!("GET of a deleted key succeeded"),
        Err(e) => {
            assert_eq!(err_status(&e), Some(404));
            assert_eq!(err_code(&e).as_deref(), Some("NoSuchKey"));
            let h = e.raw_response().unwrap().headers();
            assert_eq!(h.get("x-amz-delete-marker"), Some("true"));
            assert_eq!(h.get("x-amz-version-id"), Some(marker.as_str()));
        }
    }
    assert_s3_err(
        c.get_object()
            .bucket(B)
            .key("a")
            .version_id(&marker)
            .send()
            .await,
        405,
        Some("MethodNotAllowed"),
        "GET of a delete marker by id",
    );
    assert_s3_err(
        c.get_object()
            .bucket(B)
            .key("a")
            .version_id("not-a-version")
            .send()
            .await,
        400,
        Some("InvalidArgument"),
        "GET with a malformed version id",
    );
    assert_eq!(get_v(&c, "a", &a2).await, b"a-two");
    let head = ok(
        c.head_object()
            .bucket(B)
            .key("a")
            .version_id(&a1)
            .send()
            .await,
        "HEAD by version",
    );
    assert_eq!(head.content_length(), Some(5));

    // ListObjectsV2 hides a key whose latest version is a marker.
    assert_eq!(list_all_keys(&c, B).await, vec!["b"]);

    let want: Listed = vec![
        ("a".into(), marker.clone(), true, true),
        ("a".into(), a2.clone(), false, false),
        ("a".into(), a1.clone(), false, false),
        ("a".into(), "null".into(), false, false),
        ("b".into(), b1.clone(), false, true),
    ];
    let full = ok(
        c.list_object_versions().bucket(B).send().await,
        "ListObjectVersions",
    );
    assert_eq!(full.is_truncated(), Some(false));
    assert_eq!(listed(&full), want);
    // Every page size gives the same sequence, paged by key-marker / version-id-marker.
    for max in [1, 2, 3] {
        let (all, pages) = list_versions_paged(&c, max).await;
        assert_eq!(all, want, "paged by {max}");
        assert_eq!(pages, want.len().div_ceil(max as usize), "pages of {max}");
    }
    let after_a = ok(
        c.list_object_versions()
            .bucket(B)
            .key_marker("a")
            .send()
            .await,
        "key-marker a",
    );
    assert_eq!(listed(&after_a), want[4..].to_vec(), "key-marker skips a");

    // Removing the marker by id brings the key back.
    let del = ok(
        c.delete_object()
            .bucket(B)
            .key("a")
            .version_id(&marker)
            .send()
            .await,
        "Delete marker by id",
    );
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some(marker.as_str()));
    assert_eq!(get(&c, B, "a").await, b"a-two");
    // Removing the latest version by id makes the previous one latest.
    ok(
        c.delete_object()
            .bucket(B)
            .key("a")
            .version_id(&a2)
            .send()
            .await,
        "Delete version",
    );
    assert_eq!(get(&c, B, "a").await, b"a-one");

    // CopyObject from a version.
    let copy = ok(
        c.copy_object()
            .bucket(B)
            .key("c")
            .copy_source(format!("{B}/a?versionId=null"))
            .send()
            .await,
        "CopyObject from version",
    );
    assert_eq!(copy.copy_source_version_id(), Some("null"));
    assert!(copy.version_id().is_some());
    assert_eq!(get(&c, B, "c").await, b"a-null");

    // Suspended: writes replace the null version only; DELETE writes a null marker.
    set_versioning(&c, B, BucketVersioningStatus::Suspended).await;
    assert_eq!(put_v(&c, "a", b"a-null-2").await.as_deref(), Some("null"));
    assert_eq!(get_v(&c, "a", "null").await, b"a-null-2");
    assert_eq!(get_v(&c, "a", &a1).await, b"a-one");
    let versions_of_a: Vec<_> = listed(&ok(
        c.list_object_versions().bucket(B).prefix("a").send().await,
        "list a",
    ))
    .into_iter()
    .map(|(_, v, _, _)| v)
    .collect();
    assert_eq!(versions_of_a, vec!["null".to_string(), a1.clone()]);

    // DeleteObjects with and without version ids.
    let out = ok(
        c.delete_objects()
            .bucket(B)
            .delete(
                Delete::builder()
                    .objects(
                        ObjectIdentifier::builder()
                            .key("a")
                            .version_id(&a1)
                            .build()
                            .unwrap(),
                    )
                    .objects(ObjectIdentifier::builder().key("b").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "DeleteObjects",
    );
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    let mut deleted: Vec<_> = out
        .deleted()
        .iter()
        .map(|d| {
            (
                d.key().unwrap().to_string(),
                d.version_id().map(str::to_string),
                d.delete_marker(),
                d.delete_marker_version_id().map(str::to_string),
            )
        })
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            ("a".into(), Some(a1.clone()), None, None),
            ("b".into(), None, Some(true), Some("null".into())),
        ]
    );
    assert_eq!(get_v(&c, "b", &b1).await, b"b-one");

    // A bucket that still holds versions (or markers) is not empty.
    assert_s3_err(
        c.delete_bucket().bucket(B).send().await,
        409,
        Some("BucketNotEmpty"),
        "DeleteBucket with versions",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_versions_prefix_and_delimiter() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    set_versioning(&c, B, BucketVersioningStatus::Enabled).await;
    let mut ids = Vec::new();
    for body in [&b"first upload"[..], b"second upload"] {
        let up = ok(
            c.create_multipart_upload()
                .bucket(B)
                .key("d/mp")
                .send()
                .await,
            "CreateMultipartUpload",
        );
        let id = up.upload_id().unwrap();
        let part = ok(
            c.upload_part()
                .bucket(B)
                .key("d/mp")
                .upload_id(id)
                .part_number(1)
                .body(ByteStream::from(body.to_vec()))
                .send()
                .await,
            "UploadPart",
        );
        let done = ok(
            c.complete_multipart_upload()
                .bucket(B)
                .key("d/mp")
                .upload_id(id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .parts(
                            CompletedPart::builder()
                                .part_number(1)
                                .e_tag(part.e_tag().unwrap())
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await,
            "CompleteMultipartUpload",
        );
        ids.push(done.version_id().expect("version id").to_string());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(get_v(&c, "d/mp", &ids[0]).await, b"first upload");
    put_v(&c, "d/x", b"x").await;
    put_v(&c, "e", b"e").await;

    let out = ok(
        c.list_object_versions()
            .bucket(B)
            .delimiter("/")
            .send()
            .await,
        "ListObjectVersions delimiter",
    );
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, vec!["d/"]);
    let keys: Vec<_> = listed(&out).into_iter().map(|(k, _, _, _)| k).collect();
    assert_eq!(keys, vec!["e"]);

    let out = ok(
        c.list_object_versions().bucket(B).prefix("d/").send().await,
        "ListObjectVersions prefix",
    );
    let got: Vec<_> = listed(&out)
        .into_iter()
        .map(|(k, v, _, l)| (k, v, l))
        .collect();
    let x = got[2].1.clone();
    assert_eq!(
        got,
        vec![
            ("d/mp".into(), ids[1].clone(), true),
            ("d/mp".into(), ids[0].clone(), false),
            ("d/x".into(), x, true),
        ]
    );
}
