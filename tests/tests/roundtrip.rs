//! Object round trips through real S3 clients, on a single drive and on a 6-drive
//! erasure set: exact bytes, ranges, metadata, conditionals, copy, delete, tagging,
//! integrity checksums and multipart uploads (including their error cases).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete,
    MetadataDirective, ObjectIdentifier, Tag,
};
use cairn_tests::*;
use sha1::Sha1;
use sha2::{Digest, Sha256};

const B: &str = "roundtrip";

async fn setup(drives: usize) -> (Server, Client) {
    let srv = Server::start(drives).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    (srv, c)
}

/// Generates one test per check for a 1-drive and a 6-drive server.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod single_drive {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (srv, c) = super::setup(1).await;
                    super::$name(&srv, &c).await;
                }
            )*
        }
        mod six_drives {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (srv, c) = super::setup(6).await;
                    super::$name(&srv, &c).await;
                }
            )*
        }
    };
}

on_both!(
    sizes_roundtrip,
    multipart_100mib,
    range_reads,
    head_object_metadata,
    conditional_requests,
    copy_object,
    delete_objects,
    object_tagging,
    content_md5_mismatch,
    flexible_checksums,
    multipart_errors,
    list_parts_and_uploads,
    abort_multipart_upload,
    upload_part_copy_with_range,
    reads_racing_overwrites,
);

// -----------------------------------------------------------------------------------------

async fn sizes_roundtrip(_srv: &Server, c: &Client) {
    let sizes = [
        0usize,
        1,
        1000,
        128 * KIB,     // largest inlined object
        128 * KIB + 1, // smallest object with shard files
        MIB + 1,
        3 * MIB + 7,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let key = format!("size-{len}");
        let data = random_bytes(len, i as u64 + 1);
        let etag = put(c, B, &key, &data).await;
        assert_eq!(etag, etag_of(&data), "PUT ETag of {key}");
        let got = get(c, B, &key).await;
        assert_bytes_eq(&got, &data, &key);
        let h = ok(
            c.head_object().bucket(B).key(&key).send().await,
            "HeadObject",
        );
        assert_eq!(
            h.content_length(),
            Some(len as i64),
            "HEAD Content-Length of {key}"
        );
        assert_eq!(
            h.e_tag(),
            Some(etag_of(&data).as_str()),
            "HEAD ETag of {key}"
        );
    }

    // Overwrites: large -> small -> large -> empty; only the latest version is visible.
    let key = "overwritten";
    for (i, len) in [2 * MIB + 3, 10, 700 * KIB, 0].into_iter().enumerate() {
        let data = random_bytes(len, 100 + i as u64);
        put(c, B, key, &data).await;
        assert_bytes_eq(
            &get(c, B, key).await,
            &data,
            &format!("overwrite #{i} ({len} bytes)"),
        );
    }

    // Keys with characters that need encoding.
    for key in [
        "dir/sub dir/file with spaces.txt",
        "ünïcödé/日本語.bin",
        "a+b=c&d",
        "x%y#z?q",
    ] {
        let data = random_bytes(333, key.len() as u64);
        put(c, B, key, &data).await;
        assert_bytes_eq(&get(c, B, key).await, &data, key);
    }
    let keys = list_all_keys(c, B).await;
    assert!(
        keys.contains(&"ünïcödé/日本語.bin".to_string()),
        "listing: {keys:?}"
    );
    assert!(keys.contains(&"x%y#z?q".to_string()), "listing: {keys:?}");
}

async fn multipart_100mib(_srv: &Server, c: &Client) {
    let key = "big/100mib.bin";
    let total = 100 * MIB;
    let part_size = 8 * MIB;
    let data = random_bytes(total, 4242);
    let up = ok(
        c.create_multipart_upload()
            .bucket(B)
            .key(key)
            .content_type("application/x-big")
            .metadata("origin", "multipart")
            .send()
            .await,
        "CreateMultipartUpload",
    );
    let id = up.upload_id().expect("UploadId").to_string();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(part_size).enumerate() {
        let n = i as i32 + 1;
        let r = ok(
            c.upload_part()
                .bucket(B)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await,
            &format!("UploadPart {n}"),
        );
        assert_eq!(r.e_tag(), Some(etag_of(chunk).as_str()), "ETag of part {n}");
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    assert_eq!(parts.len(), 13);
    let done = complete_multipart(c, B, key, &id, parts).await;
    let expected_etag = multipart_etag(data.chunks(part_size));
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()), "multipart ETag");

    let h = ok(
        c.head_object().bucket(B).key(key).send().await,
        "HeadObject",
    );
    assert_eq!(h.content_length(), Some(total as i64));
    assert_eq!(h.e_tag(), Some(expected_etag.as_str()));
    assert_eq!(h.content_type(), Some("application/x-big"));
    assert_eq!(
        h.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("multipart")
    );

    let got = get(c, B, key).await;
    assert_eq!(got.len(), total);
    assert_eq!(md5_hex(&got), md5_hex(&data), "md5 of the 100 MiB object");
    drop(got);

    // Ranges across part boundaries.
    for (s, e) in [
        (part_size - 5, part_size + 5),
        (3 * part_size - 1, 3 * part_size),
        (total - 3, total - 1),
    ] {
        let (cr, body) = get_range(c, B, key, &format!("bytes={s}-{e}")).await;
        assert_bytes_eq(
            &body,
            &data[s..=e],
            &format!("range {s}-{e} of multipart object"),
        );
        assert_eq!(
            cr.as_deref(),
            Some(format!("bytes {s}-{e}/{total}").as_str())
        );
    }
}

async fn range_reads(_srv: &Server, c: &Client) {
    let len = 3 * MIB + 5;
    let data = random_bytes(len, 7);
    put(c, B, "ranged", &data).await;
    let small = random_bytes(1000, 8);
    put(c, B, "small", &small).await;

    let l = len;
    // (range header, expected start, expected inclusive end)
    let cases: Vec<(String, usize, usize)> = vec![
        ("bytes=0-0".into(), 0, 0),
        (format!("bytes={}-{}", l - 1, l - 1), l - 1, l - 1),
        ("bytes=-1".into(), l - 1, l - 1),
        ("bytes=-1000".into(), l - 1000, l - 1),
        (format!("bytes=-{}", l + 100), 0, l - 1),
        (
            format!("bytes={}-{}", MIB - 100, MIB + 100),
            MIB - 100,
            MIB + 100,
        ),
        (format!("bytes={}-{}", MIB - 1, 3 * MIB), MIB - 1, 3 * MIB),
        (format!("bytes={}-{}", MIB, 2 * MIB - 1), MIB, 2 * MIB - 1),
        (format!("bytes={}-", 2 * MIB + 17), 2 * MIB + 17, l - 1),
        (format!("bytes={}-{}", l - 10, l + 1000), l - 10, l - 1),
        ("bytes=0-".into(), 0, l - 1),
    ];
    for (range, s, e) in cases {
        let (cr, body) = get_range(c, B, "ranged", &range).await;
        assert_bytes_eq(&body, &data[s..=e], &format!("Range {range}"));
        assert_eq!(
            cr.as_deref(),
            Some(format!("bytes {s}-{e}/{l}").as_str()),
            "Content-Range for {range}"
        );
    }

    let (cr, body) = get_range(c, B, "small", "bytes=10-19").await;
    assert_bytes_eq(&body, &small[10..20], "small object range");
    assert_eq!(cr.as_deref(), Some("bytes 10-19/1000"));
    let (_, body) = get_range(c, B, "small", "bytes=-5").await;
    assert_bytes_eq(&body, &small[995..], "small object suffix range");

    for (key, range) in [
        ("ranged", format!("bytes={l}-")),
        ("ranged", format!("bytes={}-{}", l + 10, l + 20)),
        ("small", "bytes=1000-1001".to_string()),
    ] {
        assert_s3_err(
            c.get_object().bucket(B).key(key).range(&range).send().await,
            416,
            Some("InvalidRange"),
            &format!("GET {key} Range: {range}"),
        );
    }
    // A part number beyond the parts (an object written whole has one) is a bad request.
    let whole = ok(
        c.get_object()
            .bucket(B)
            .key("small")
            .part_number(1)
            .send()
            .await,
        "GET partNumber=1 of a whole object",
    );
    assert_eq!(whole.content_length(), Some(1000));
    for n in [2, 10_000] {
        assert_s3_err(
            c.get_object()
                .bucket(B)
                .key("small")
                .part_number(n)
                .send()
                .await,
            400,
            Some("InvalidPartNumber"),
            &format!("GET partNumber={n} of a whole object"),
        );
    }
}

/// User metadata outside ASCII (UTF-8 on the wire, as the SDKs send it).
const CITY: &str = "Zürich 東京";

async fn head_object_metadata(_srv: &Server, c: &Client) {
    let data = random_bytes(200 * KIB, 11);
    ok(
        c.put_object()
            .bucket(B)
            .key("meta")
            .content_type("image/x-test")
            .metadata("color", "blue")
            .metadata("owner-name", "Ada Lovelace")
            .metadata("city", CITY)
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        "PutObject with metadata",
    );
    let h = ok(
        c.head_object().bucket(B).key("meta").send().await,
        "HeadObject",
    );
    assert_eq!(h.content_length(), Some(data.len() as i64));
    assert_eq!(h.e_tag(), Some(etag_of(&data).as_str()));
    assert_eq!(h.content_type(), Some("image/x-test"));
    let meta: BTreeMap<_, _> = h
        .metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    // Non-ASCII values come back RFC 2047-encoded, as AWS returns them (ASCII ones as sent).
    let city = format!(
        "=?UTF-8?B?{}?=",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, CITY)
    );
    let expected: BTreeMap<String, String> = [
        ("color", "blue"),
        ("owner-name", "Ada Lovelace"),
        ("city", city.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(meta, expected, "user metadata");
    assert!(h.last_modified().is_some(), "Last-Modified");

    // GET returns the same metadata.
    let g = ok(
        c.get_object().bucket(B).key("meta").send().await,
        "GetObject",
    );
    let gmeta: BTreeMap<_, _> = g
        .metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    assert_eq!(gmeta, expected);
    assert_eq!(g.content_type(), Some("image/x-test"));

    assert_s3_err(
        c.head_object().bucket(B).key("absent").send().await,
        404,
        None,
        "HEAD missing key",
    );
    assert_s3_err(
        c.get_object().bucket(B).key("absent").send().await,
        404,
        Some("NoSuchKey"),
        "GET missing key",
    );
}

async fn conditional_requests(_srv: &Server, c: &Client) {
    let data = random_bytes(300 * KIB, 12);
    let etag = put(c, B, "cond", &data).await;
    let other = "\"0123456789abcdef0123456789abcdef\"";
    let h = ok(
        c.head_object().bucket(B).key("cond").send().await,
        "HeadObject",
    );
    let lm = h.last_modified().expect("Last-Modified").secs();
    let at = |s: i64| DateTime::from_secs(s);
    let g = || c.get_object().bucket(B).key("cond");

    // If-Match
    let r = ok(g().if_match(&etag).send().await, "If-Match: current etag");
    assert_bytes_eq(
        &r.body.collect().await.unwrap().into_bytes(),
        &data,
        "If-Match body",
    );
    assert_s3_err(
        g().if_match(other).send().await,
        412,
        Some("PreconditionFailed"),
        "If-Match: other",
    );
    // If-None-Match
    assert_s3_err(
        g().if_none_match(&etag).send().await,
        304,
        None,
        "If-None-Match: current etag",
    );
    // The 304 carries the validators, as AWS (and RFC 7232) send them.
    match g().if_none_match(&etag).send().await {
        Err(aws_sdk_s3::error::SdkError::ServiceError(e)) => {
            let headers = e.raw().headers();
            assert_eq!(headers.get("etag"), Some(etag.as_str()), "ETag on 304");
            assert!(
                headers.get("last-modified").is_some(),
                "Last-Modified on 304"
            );
        }
        other => panic!("If-None-Match: current etag: expected 304, got {other:?}"),
    }
    ok(
        g().if_none_match(other).send().await,
        "If-None-Match: other",
    );
    // If-Modified-Since
    assert_s3_err(
        g().if_modified_since(at(lm)).send().await,
        304,
        None,
        "If-Modified-Since = Last-Modified",
    );
    ok(
        g().if_modified_since(at(lm - 3600)).send().await,
        "If-Modified-Since an hour before",
    );
    // If-Unmodified-Since
    assert_s3_err(
        g().if_unmodified_since(at(lm - 3600)).send().await,
        412,
        Some("PreconditionFailed"),
        "If-Unmodified-Since an hour before",
    );
    ok(
        g().if_unmodified_since(at(lm)).send().await,
        "If-Unmodified-Since = Last-Modified",
    );
    // Precedence (RFC 7232 / S3): If-Match true wins over If-Unmodified-Since false;
    // If-None-Match false wins over If-Modified-Since true.
    ok(
        g().if_match(&etag)
            .if_unmodified_since(at(lm - 3600))
            .send()
            .await,
        "If-Match true + If-Unmodified-Since false",
    );
    assert_s3_err(
        g().if_none_match(&etag)
            .if_modified_since(at(lm - 3600))
            .send()
            .await,
        304,
        None,
        "If-None-Match false + If-Modified-Since true",
    );
    // HEAD honours the same conditions.
    let hd = || c.head_object().bucket(B).key("cond");
    assert_s3_err(
        hd().if_match(other).send().await,
        412,
        None,
        "HEAD If-Match: other",
    );
    assert_s3_err(
        hd().if_none_match(&etag).send().await,
        304,
        None,
        "HEAD If-None-Match: current",
    );
    ok(hd().if_match(&etag).send().await, "HEAD If-Match: current");
}

async fn copy_object(_srv: &Server, c: &Client) {
    create_bucket(c, "copy-target").await;
    for (i, len) in [MIB + 1, 100].into_iter().enumerate() {
        let src = format!("src-{len}");
        let data = random_bytes(len, 20 + i as u64);
        ok(
            c.put_object()
                .bucket(B)
                .key(&src)
                .content_type("text/x-source")
                .metadata("color", "blue")
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            "PutObject source",
        );

        // COPY directive (the default): data and metadata carried over.
        let dst = format!("copy-{len}");
        let r = ok(
            c.copy_object()
                .bucket("copy-target")
                .key(&dst)
                .copy_source(format!("{B}/{src}"))
                .send()
                .await,
            "CopyObject COPY",
        );
        assert_eq!(
            r.copy_object_result().and_then(|x| x.e_tag()),
            Some(etag_of(&data).as_str()),
            "CopyObjectResult ETag"
        );
        let h = ok(
            c.head_object().bucket("copy-target").key(&dst).send().await,
            "HEAD copy",
        );
        assert_eq!(h.content_type(), Some("text/x-source"));
        assert_eq!(
            h.metadata()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![("color".to_string(), "blue".to_string())]
        );
        assert_bytes_eq(&get(c, "copy-target", &dst).await, &data, "copied bytes");

        // REPLACE directive: new metadata only.
        let dst2 = format!("replaced-{len}");
        ok(
            c.copy_object()
                .bucket(B)
                .key(&dst2)
                .copy_source(format!("{B}/{src}"))
                .metadata_directive(MetadataDirective::Replace)
                .content_type("application/x-replaced")
                .metadata("shape", "round")
                .send()
                .await,
            "CopyObject REPLACE",
        );
        let h = ok(
            c.head_object().bucket(B).key(&dst2).send().await,
            "HEAD replaced",
        );
        assert_eq!(h.content_type(), Some("application/x-replaced"));
        assert_eq!(
            h.metadata()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![("shape".to_string(), "round".to_string())]
        );
        assert_bytes_eq(&get(c, B, &dst2).await, &data, "bytes after REPLACE copy");

        // Copy onto itself with REPLACE updates metadata in place.
        ok(
            c.copy_object()
                .bucket(B)
                .key(&src)
                .copy_source(format!("{B}/{src}"))
                .metadata_directive(MetadataDirective::Replace)
                .metadata("color", "green")
                .send()
                .await,
            "CopyObject onto itself with REPLACE",
        );
        let h = ok(
            c.head_object().bucket(B).key(&src).send().await,
            "HEAD self-copied",
        );
        assert_eq!(
            h.metadata()
                .and_then(|m| m.get("color"))
                .map(String::as_str),
            Some("green")
        );
        assert_bytes_eq(&get(c, B, &src).await, &data, "bytes after self copy");
    }
    assert_s3_err(
        c.copy_object()
            .bucket(B)
            .key("x")
            .copy_source(format!("{B}/does-not-exist"))
            .send()
            .await,
        404,
        Some("NoSuchKey"),
        "CopyObject from a missing key",
    );
    assert_s3_err(
        c.copy_object()
            .bucket(B)
            .key("x")
            .copy_source("no-such-bucket-here/k")
            .send()
            .await,
        404,
        Some("NoSuchBucket"),
        "CopyObject from a missing bucket",
    );
}

async fn delete_objects(_srv: &Server, c: &Client) {
    let big = random_bytes(400 * KIB, 30);
    put(c, B, "single", &big).await;
    ok(
        c.delete_object().bucket(B).key("single").send().await,
        "DeleteObject",
    );
    assert_s3_err(
        c.get_object().bucket(B).key("single").send().await,
        404,
        Some("NoSuchKey"),
        "GET deleted",
    );
    // Deleting a missing key succeeds (S3 semantics).
    ok(
        c.delete_object()
            .bucket(B)
            .key("never-existed")
            .send()
            .await,
        "DeleteObject missing key",
    );

    for k in ["a", "b/c", "d e", "keep"] {
        put(
            c,
            B,
            k,
            &random_bytes(if k == "b/c" { 200 * KIB } else { 10 }, 31),
        )
        .await;
    }
    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };
    let r = ok(
        c.delete_objects()
            .bucket(B)
            .delete(ids(&["a", "b/c", "d e", "missing"]).build().unwrap())
            .send()
            .await,
        "DeleteObjects",
    );
    let deleted: BTreeSet<String> = r
        .deleted()
        .iter()
        .filter_map(|d| d.key().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = ["a", "b/c", "d e", "missing"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(deleted, expected, "DeleteObjects Deleted entries");
    assert!(
        r.errors().is_empty(),
        "DeleteObjects errors: {:?}",
        r.errors()
    );
    assert_eq!(list_all_keys(c, B).await, vec!["keep".to_string()]);

    // Quiet mode reports nothing on success.
    put(c, B, "q1", b"1").await;
    put(c, B, "q2", &big).await;
    let r = ok(
        c.delete_objects()
            .bucket(B)
            .delete(ids(&["q1", "q2"]).quiet(true).build().unwrap())
            .send()
            .await,
        "DeleteObjects quiet",
    );
    assert!(
        r.deleted().is_empty(),
        "quiet DeleteObjects listed {:?}",
        r.deleted()
    );
    assert!(r.errors().is_empty());
    assert_eq!(list_all_keys(c, B).await, vec!["keep".to_string()]);

    assert_s3_err(
        c.delete_object()
            .bucket("no-such-bucket-here")
            .key("k")
            .send()
            .await,
        404,
        Some("NoSuchBucket"),
        "DeleteObject in a missing bucket",
    );
}

fn tag_set(t: &[Tag]) -> BTreeMap<String, String> {
    t.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

async fn object_tagging(_srv: &Server, c: &Client) {
    put(c, B, "tagged", &random_bytes(150 * KIB, 40)).await;
    let get_tags = |k: &'static str| c.get_object_tagging().bucket(B).key(k).send();
    assert!(ok(get_tags("tagged").await, "GetObjectTagging")
        .tag_set()
        .is_empty());

    ok(
        c.put_object_tagging()
            .bucket(B)
            .key("tagged")
            .tagging(tags(&[("env", "test"), ("team", "storage ops")]))
            .send()
            .await,
        "PutObjectTagging",
    );
    let got = tag_set(ok(get_tags("tagged").await, "GetObjectTagging").tag_set());
    assert_eq!(
        got,
        tag_set(tags(&[("env", "test"), ("team", "storage ops")]).tag_set())
    );

    // Replacing the set drops old tags.
    ok(
        c.put_object_tagging()
            .bucket(B)
            .key("tagged")
            .tagging(tags(&[("only", "one")]))
            .send()
            .await,
        "PutObjectTagging replace",
    );
    let got = tag_set(ok(get_tags("tagged").await, "GetObjectTagging").tag_set());
    assert_eq!(got, tag_set(tags(&[("only", "one")]).tag_set()));

    // Tags given at PUT time (x-amz-tagging, URL-encoded).
    ok(
        c.put_object()
            .bucket(B)
            .key("tagged-at-put")
            .tagging("a=1&b=two%20words")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        "PutObject with x-amz-tagging",
    );
    let got = tag_set(ok(get_tags("tagged-at-put").await, "GetObjectTagging").tag_set());
    assert_eq!(
        got,
        tag_set(tags(&[("a", "1"), ("b", "two words")]).tag_set())
    );

    ok(
        c.delete_object_tagging()
            .bucket(B)
            .key("tagged")
            .send()
            .await,
        "DeleteObjectTagging",
    );
    assert!(
        ok(get_tags("tagged").await, "GetObjectTagging after delete")
            .tag_set()
            .is_empty()
    );

    assert_s3_err(
        get_tags("absent").await,
        404,
        Some("NoSuchKey"),
        "GetObjectTagging on a missing key",
    );
}

async fn content_md5_mismatch(_srv: &Server, c: &Client) {
    for len in [10, 300 * KIB] {
        let data = random_bytes(len, 50);
        let key = format!("md5-{len}");
        assert_s3_err(
            c.put_object()
                .bucket(B)
                .key(&key)
                .content_md5(md5_b64(b"definitely not the body"))
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            400,
            Some("BadDigest"),
            "PutObject with a wrong Content-MD5",
        );
        assert_s3_err(
            c.get_object().bucket(B).key(&key).send().await,
            404,
            Some("NoSuchKey"),
            "object after BadDigest",
        );
        ok(
            c.put_object()
                .bucket(B)
                .key(&key)
                .content_md5(md5_b64(&data))
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            "PutObject with the right Content-MD5",
        );
        assert_bytes_eq(&get(c, B, &key).await, &data, "object with Content-MD5");
    }
}

/// Expected base64 checksum of `data` for `algo`.
fn checksum(algo: &ChecksumAlgorithm, data: &[u8]) -> String {
    match algo {
        ChecksumAlgorithm::Crc32 => b64(&crc32fast::hash(data).to_be_bytes()),
        ChecksumAlgorithm::Crc32C => b64(&crc32c::crc32c(data).to_be_bytes()),
        ChecksumAlgorithm::Sha1 => b64(&Sha1::digest(data)),
        ChecksumAlgorithm::Sha256 => b64(&Sha256::digest(data)),
        other => panic!("unexpected {other:?}"),
    }
}

async fn flexible_checksums(_srv: &Server, c: &Client) {
    let algos = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];
    for (i, algo) in algos.iter().enumerate() {
        for len in [17, 200 * KIB + 3] {
            let key = format!("ck-{}-{len}", algo.as_str());
            let data = random_bytes(len, 60 + i as u64);
            let want = checksum(algo, &data);
            let r = ok(
                c.put_object()
                    .bucket(B)
                    .key(&key)
                    .checksum_algorithm(algo.clone())
                    .body(ByteStream::from(data.clone()))
                    .send()
                    .await,
                &format!("PutObject with {algo:?}"),
            );
            let returned = match algo {
                ChecksumAlgorithm::Crc32 => r.checksum_crc32(),
                ChecksumAlgorithm::Crc32C => r.checksum_crc32_c(),
                ChecksumAlgorithm::Sha1 => r.checksum_sha1(),
                _ => r.checksum_sha256(),
            };
            assert_eq!(
                returned,
                Some(want.as_str()),
                "PutObject response {algo:?} for {key}"
            );

            let g = ok(
                c.get_object()
                    .bucket(B)
                    .key(&key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
                    .await,
                "GetObject checksum mode",
            );
            let returned = match algo {
                ChecksumAlgorithm::Crc32 => g.checksum_crc32(),
                ChecksumAlgorithm::Crc32C => g.checksum_crc32_c(),
                ChecksumAlgorithm::Sha1 => g.checksum_sha1(),
                _ => g.checksum_sha256(),
            }
            .map(str::to_string);
            assert_eq!(
                returned.as_deref(),
                Some(want.as_str()),
                "GetObject {algo:?} for {key}"
            );
            assert_bytes_eq(&g.body.collect().await.unwrap().into_bytes(), &data, &key);

            let h = ok(
                c.head_object()
                    .bucket(B)
                    .key(&key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
                    .await,
                "HeadObject checksum mode",
            );
            let returned = match algo {
                ChecksumAlgorithm::Crc32 => h.checksum_crc32(),
                ChecksumAlgorithm::Crc32C => h.checksum_crc32_c(),
                ChecksumAlgorithm::Sha1 => h.checksum_sha1(),
                _ => h.checksum_sha256(),
            };
            assert_eq!(
                returned,
                Some(want.as_str()),
                "HeadObject {algo:?} for {key}"
            );
        }
    }

    // A checksum value that does not match the body is rejected and nothing is stored.
    let data = random_bytes(1000, 70);
    let wrong_sha = checksum(&ChecksumAlgorithm::Sha256, b"something else");
    assert_s3_err(
        c.put_object()
            .bucket(B)
            .key("ck-wrong")
            .checksum_sha256(wrong_sha)
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        400,
        Some("BadDigest"),
        "PutObject with a wrong x-amz-checksum-sha256",
    );
    let wrong_crc = checksum(&ChecksumAlgorithm::Crc32, b"something else");
    assert_s3_err(
        c.put_object()
            .bucket(B)
            .key("ck-wrong")
            .checksum_crc32(wrong_crc)
            .body(ByteStream::from(random_bytes(200 * KIB, 71)))
            .send()
            .await,
        400,
        Some("BadDigest"),
        "PutObject with a wrong x-amz-checksum-crc32",
    );
    assert_s3_err(
        c.get_object().bucket(B).key("ck-wrong").send().await,
        404,
        Some("NoSuchKey"),
        "after BadDigest",
    );
}

async fn create_upload(c: &Client, key: &str) -> String {
    ok(
        c.create_multipart_upload().bucket(B).key(key).send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .expect("UploadId")
    .to_string()
}

async fn upload_part(c: &Client, key: &str, id: &str, n: i32, data: &[u8]) -> String {
    let r = ok(
        c.upload_part()
            .bucket(B)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await,
        &format!("UploadPart {key} #{n}"),
    );
    let etag = r.e_tag().expect("part ETag").to_string();
    assert_eq!(etag, etag_of(data), "ETag of part {n}");
    etag
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

async fn multipart_errors(_srv: &Server, c: &Client) {
    // EntityTooSmall: a non-last part under 5 MiB.
    let key = "mp-small";
    let id = create_upload(c, key).await;
    let p1 = random_bytes(MIB, 80);
    let p2 = random_bytes(MIB, 81);
    let e1 = upload_part(c, key, &id, 1, &p1).await;
    let e2 = upload_part(c, key, &id, 2, &p2).await;
    assert_s3_err(
        c.complete_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
            .send()
            .await,
        400,
        Some("EntityTooSmall"),
        "CompleteMultipartUpload with a 1 MiB first part",
    );
    assert_s3_err(
        c.get_object().bucket(B).key(key).send().await,
        404,
        Some("NoSuchKey"),
        "after EntityTooSmall",
    );

    // Parts of 5 MiB, 5 MiB and 1 byte; first the error cases, then a valid completion.
    let key = "mp-ok";
    let id = create_upload(c, key).await;
    let p1 = random_bytes(5 * MIB, 82);
    let p2 = random_bytes(5 * MIB, 83);
    let p3 = random_bytes(1, 84);
    let e1 = upload_part(c, key, &id, 1, &p1).await;
    let e2 = upload_part(c, key, &id, 2, &p2).await;
    let e3 = upload_part(c, key, &id, 3, &p3).await;
    let complete = |parts: CompletedMultipartUpload| {
        c.complete_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .multipart_upload(parts)
            .send()
    };
    assert_s3_err(
        complete(completed(&[
            (1, "\"00000000000000000000000000000000\""),
            (2, &e2),
            (3, &e3),
        ]))
        .await,
        400,
        Some("InvalidPart"),
        "complete with a wrong part ETag",
    );
    assert_s3_err(
        complete(completed(&[(1, &e1), (2, &e2), (4, &e3)])).await,
        400,
        Some("InvalidPart"),
        "complete with a part that was never uploaded",
    );
    assert_s3_err(
        complete(completed(&[(2, &e2), (1, &e1), (3, &e3)])).await,
        400,
        Some("InvalidPartOrder"),
        "complete with parts out of order",
    );
    // The upload survives failed completions; part numbers need not be contiguous
    // (part 2 is left out), and a 5 MiB part followed by a 1-byte last part is valid.
    let done = ok(
        complete(completed(&[(1, &e1), (3, &e3)])).await,
        "CompleteMultipartUpload",
    );
    assert_eq!(
        done.e_tag(),
        Some(multipart_etag([&p1[..], &p3[..]]).as_str())
    );
    let mut whole = p1.clone();
    whole.extend_from_slice(&p3);
    assert_bytes_eq(
        &get(c, B, key).await,
        &whole,
        "completed 5 MiB + 1 B upload",
    );
    let h = ok(
        c.head_object().bucket(B).key(key).send().await,
        "HeadObject",
    );
    assert_eq!(h.content_length(), Some(whole.len() as i64));
    // A completed upload id is gone.
    assert_s3_err(
        c.list_parts()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
        "ListParts after completion",
    );

    // NoSuchUpload everywhere for an unknown id.
    let bogus = "this-upload-id-does-not-exist";
    assert_s3_err(
        c.upload_part()
            .bucket(B)
            .key(key)
            .upload_id(bogus)
            .part_number(1)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
        "UploadPart unknown upload",
    );
    assert_s3_err(
        c.complete_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(bogus)
            .multipart_upload(completed(&[(1, &e1)]))
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
        "CompleteMultipartUpload unknown upload",
    );
    assert_s3_err(
        c.abort_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(bogus)
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
        "AbortMultipartUpload unknown upload",
    );
    assert_s3_err(
        c.list_parts()
            .bucket(B)
            .key(key)
            .upload_id(bogus)
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
        "ListParts unknown upload",
    );
}

async fn list_parts_and_uploads(_srv: &Server, c: &Client) {
    let key = "parts/listed";
    let id = create_upload(c, key).await;
    let datas = [
        random_bytes(100, 90),
        random_bytes(200 * KIB, 91),
        random_bytes(7, 92),
    ];
    let mut etags = Vec::new();
    for (i, d) in datas.iter().enumerate() {
        etags.push(upload_part(c, key, &id, i as i32 + 1, d).await);
    }
    let r = ok(
        c.list_parts()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    let got: Vec<(i32, i64, String)> = r
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(i32, i64, String)> = (0..3)
        .map(|i| (i as i32 + 1, datas[i].len() as i64, etags[i].clone()))
        .collect();
    assert_eq!(got, want, "ListParts");
    assert_ne!(r.is_truncated(), Some(true));

    // Pagination.
    let r = ok(
        c.list_parts()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .max_parts(2)
            .send()
            .await,
        "ListParts max 2",
    );
    assert_eq!(
        r.parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(r.is_truncated(), Some(true));
    assert_eq!(r.next_part_number_marker(), Some("2"));
    let r = ok(
        c.list_parts()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .part_number_marker("2")
            .send()
            .await,
        "ListParts after marker 2",
    );
    assert_eq!(
        r.parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect::<Vec<_>>(),
        vec![3]
    );
    assert_ne!(r.is_truncated(), Some(true));

    // Re-uploading a part replaces it.
    let new2 = random_bytes(50, 93);
    let e2 = upload_part(c, key, &id, 2, &new2).await;
    let r = ok(
        c.list_parts()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .send()
            .await,
        "ListParts after re-upload",
    );
    let p2 = r
        .parts()
        .iter()
        .find(|p| p.part_number() == Some(2))
        .expect("part 2");
    assert_eq!((p2.size(), p2.e_tag()), (Some(50), Some(e2.as_str())));
    assert_eq!(r.parts().len(), 3);

    // ListMultipartUploads.
    let id_a1 = create_upload(c, "a/1").await;
    let id_a2 = create_upload(c, "a/1").await;
    let id_b = create_upload(c, "b/2").await;
    assert_ne!(id_a1, id_a2, "two uploads of one key get distinct ids");
    let uploads = |prefix: Option<&str>| {
        c.list_multipart_uploads()
            .bucket(B)
            .set_prefix(prefix.map(str::to_string))
            .send()
    };
    let set = |r: &aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput| {
        r.uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap().to_string(),
                    u.upload_id().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let r = ok(uploads(None).await, "ListMultipartUploads");
    let got = set(&r);
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec!["a/1", "a/1", "b/2", "parts/listed"],
        "uploads sorted by key"
    );
    let got: BTreeSet<_> = got.into_iter().collect();
    let want: BTreeSet<_> = [("a/1", &id_a1), ("a/1", &id_a2), ("b/2", &id_b), (key, &id)]
        .into_iter()
        .map(|(k, i)| (k.to_string(), i.to_string()))
        .collect();
    assert_eq!(got, want, "ListMultipartUploads");
    let r = ok(uploads(Some("a/")).await, "ListMultipartUploads prefix a/");
    let got: BTreeSet<_> = set(&r).into_iter().collect();
    let want: BTreeSet<_> = [&id_a1, &id_a2]
        .into_iter()
        .map(|i| ("a/1".to_string(), i.to_string()))
        .collect();
    assert_eq!(got, want, "ListMultipartUploads prefix a/");

    ok(
        c.abort_multipart_upload()
            .bucket(B)
            .key("a/1")
            .upload_id(&id_a1)
            .send()
            .await,
        "Abort",
    );
    let r = ok(uploads(None).await, "ListMultipartUploads after abort");
    let got: BTreeSet<_> = set(&r).into_iter().map(|(_, i)| i).collect();
    let want: BTreeSet<_> = [&id_a2, &id_b, &id].into_iter().cloned().collect();
    assert_eq!(got, want, "ListMultipartUploads after abort");
}

async fn abort_multipart_upload(_srv: &Server, c: &Client) {
    let key = "aborted";
    let id = create_upload(c, key).await;
    upload_part(c, key, &id, 1, &random_bytes(5 * MIB, 100)).await;
    upload_part(c, key, &id, 2, &random_bytes(10, 101)).await;
    ok(
        c.abort_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .send()
            .await,
        "AbortMultipartUpload",
    );
    assert_s3_err(
        c.list_parts()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
        "ListParts after abort",
    );
    assert_s3_err(
        c.upload_part()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .part_number(3)
            .body(ByteStream::from_static(b"late"))
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
        "UploadPart after abort",
    );
    assert_s3_err(
        c.get_object().bucket(B).key(key).send().await,
        404,
        Some("NoSuchKey"),
        "object after abort",
    );
    let r = ok(
        c.list_multipart_uploads().bucket(B).send().await,
        "ListMultipartUploads",
    );
    assert!(
        r.uploads().is_empty(),
        "uploads after abort: {:?}",
        r.uploads()
    );
    assert!(list_all_keys(c, B).await.is_empty());
}

async fn upload_part_copy_with_range(_srv: &Server, c: &Client) {
    let src = random_bytes(10 * MIB + 100, 110);
    put(c, B, "copy-src", &src).await;
    let key = "assembled";
    let id = create_upload(c, key).await;
    let cut = 5 * MIB;
    let ranges = [(0usize, cut - 1), (cut, src.len() - 1)];
    let mut etags = Vec::new();
    for (i, (s, e)) in ranges.iter().enumerate() {
        let r = ok(
            c.upload_part_copy()
                .bucket(B)
                .key(key)
                .upload_id(&id)
                .part_number(i as i32 + 1)
                .copy_source(format!("{B}/copy-src"))
                .copy_source_range(format!("bytes={s}-{e}"))
                .send()
                .await,
            &format!("UploadPartCopy bytes={s}-{e}"),
        );
        let etag = r
            .copy_part_result()
            .and_then(|p| p.e_tag())
            .expect("CopyPartResult ETag")
            .to_string();
        assert_eq!(
            etag,
            etag_of(&src[*s..=*e]),
            "ETag of copied part {}",
            i + 1
        );
        etags.push(etag);
    }
    let tail = random_bytes(1000, 111);
    let e3 = upload_part(c, key, &id, 3, &tail).await;
    let done = ok(
        c.complete_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &etags[0]), (2, &etags[1]), (3, &e3)]))
            .send()
            .await,
        "CompleteMultipartUpload",
    );
    assert_eq!(
        done.e_tag(),
        Some(multipart_etag([&src[..cut], &src[cut..], &tail[..]]).as_str())
    );
    let mut want = src.clone();
    want.extend_from_slice(&tail);
    assert_bytes_eq(
        &get(c, B, key).await,
        &want,
        "object assembled with UploadPartCopy",
    );
}

/// The rest of a GET's body, failing on an error mid-stream.
async fn drain(mut body: ByteStream, mut read: Vec<u8>, what: &str) -> Vec<u8> {
    while let Some(chunk) = body.next().await {
        read.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("{what}: error mid-stream: {e}")));
    }
    read
}

/// A GET that started before an overwrite or a delete of its key returns the whole old object:
/// the replaced data outlives the reads that began on it.
async fn reads_racing_overwrites(_srv: &Server, c: &Client) {
    let old = random_bytes(24 * MIB, 41);
    put(c, B, "race", &old).await;
    for change in ["overwrite", "delete"] {
        let mut body = ok(c.get_object().bucket(B).key("race").send().await, "GET").body;
        let first = body
            .next()
            .await
            .expect("a first chunk")
            .expect("first chunk");
        match change {
            "overwrite" => {
                put(c, B, "race", &random_bytes(MIB, 42)).await;
            }
            _ => {
                ok(
                    c.delete_object().bucket(B).key("race").send().await,
                    "DELETE",
                );
            }
        }
        let read = drain(body, first.to_vec(), change).await;
        assert_bytes_eq(&read, &old, &format!("GET racing the {change}"));
        if change == "overwrite" {
            put(c, B, "race", &old).await;
        }
    }
}
