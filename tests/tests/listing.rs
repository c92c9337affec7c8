//! ListObjects v1 and v2: exact key sets and order, prefixes, delimiters, pagination,
//! start-after, URL encoding and owners.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_s3::types::EncodingType;
use cairn_tests::*;
use futures::StreamExt;

const B: &str = "listing";

/// 1,500 keys: a 3-level tree, flat keys, and keys needing encoding.
fn many_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for a in 0..5 {
        for b in 0..10 {
            for c in 0..25 {
                keys.push(format!("dir{a}/sub{b}/file{c:02}"));
            }
        }
    }
    for i in 0..200 {
        keys.push(format!("top-{i:03}"));
    }
    for i in 0..10 {
        keys.push(format!("space dir/file {i}.txt"));
        keys.push(format!("ünï/çødé-{i}"));
        keys.push(format!("日本語/ファイル{i}"));
        keys.push(format!("plus+and&amp-{i}"));
        keys.push(format!("top level ü {i}"));
    }
    assert_eq!(keys.len(), 1500);
    keys
}

/// Object content for a key (so sizes and ETags in listings can be checked).
fn content_of(key: &str) -> Vec<u8> {
    key.repeat(1 + key.len() % 3).into_bytes()
}

async fn put_keys(c: &Client, keys: &[String]) {
    let results: Vec<()> = futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let c = c.clone();
            async move {
                put(&c, B, &k, &content_of(&k)).await;
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(results.len(), keys.len());
}

/// What S3 returns for a listing: (contents, common prefixes).
fn expected(
    keys: &[String],
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let mut contents = Vec::new();
    let mut prefixes = BTreeSet::new();
    let sorted: BTreeSet<&String> = keys.iter().collect();
    for k in sorted {
        if !k.starts_with(prefix) || after.is_some_and(|a| k.as_str() <= a) {
            continue;
        }
        match delimiter.and_then(|d| k[prefix.len()..].find(d).map(|i| (i, d))) {
            Some((i, d)) => {
                let cp = k[..prefix.len() + i + d.len()].to_string();
                if after.is_none_or(|a| cp.as_str() > a) {
                    prefixes.insert(cp);
                }
            }
            None => contents.push(k.clone()),
        }
    }
    (contents, prefixes.into_iter().collect())
}

/// Contents and prefixes merged in key order (the order S3 pages through them).
fn merged(contents: &[String], prefixes: &[String]) -> Vec<String> {
    let mut all: Vec<String> = contents.iter().chain(prefixes).cloned().collect();
    all.sort();
    all
}

#[derive(Default, Debug)]
struct Listed {
    contents: Vec<String>,
    prefixes: Vec<String>,
    /// Entries (contents + prefixes, merged) of each page.
    pages: Vec<Vec<String>>,
}

impl Listed {
    fn merged(&self) -> Vec<String> {
        self.pages.concat()
    }
}

#[derive(Clone, Default)]
struct Query<'a> {
    prefix: Option<&'a str>,
    delimiter: Option<&'a str>,
    max_keys: Option<i32>,
    start_after: Option<&'a str>,
}

async fn list_v2(c: &Client, q: Query<'_>) -> Listed {
    let mut out = Listed::default();
    let mut token: Option<String> = None;
    loop {
        let r = ok(
            c.list_objects_v2()
                .bucket(B)
                .set_prefix(q.prefix.map(str::to_string))
                .set_delimiter(q.delimiter.map(str::to_string))
                .set_max_keys(q.max_keys)
                .set_start_after(q.start_after.map(str::to_string))
                .set_continuation_token(token.clone())
                .send()
                .await,
            "ListObjectsV2",
        );
        let contents: Vec<String> = r
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_string())
            .collect();
        let prefixes: Vec<String> = r
            .common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap().to_string())
            .collect();
        let n = contents.len() + prefixes.len();
        let max = q.max_keys.unwrap_or(1000) as usize;
        assert!(n <= max, "page of {n} entries exceeds max-keys {max}");
        assert_eq!(r.key_count(), Some(n as i32), "KeyCount");
        assert_eq!(r.max_keys(), Some(max as i32), "MaxKeys echoed");
        if let Some(p) = q.prefix {
            assert_eq!(r.prefix(), Some(p), "Prefix echoed");
        }
        assert_eq!(
            r.continuation_token(),
            token.as_deref(),
            "ContinuationToken echoed"
        );
        out.pages.push(merged(&contents, &prefixes));
        out.contents.extend(contents);
        out.prefixes.extend(prefixes);
        if r.is_truncated() == Some(true) {
            assert!(n > 0, "truncated empty page");
            token = Some(
                r.next_continuation_token()
                    .expect("NextContinuationToken on a truncated page")
                    .to_string(),
            );
        } else {
            assert!(
                r.next_continuation_token().is_none(),
                "NextContinuationToken on the last page"
            );
            assert!(out.pages.len() < 10_000);
            return out;
        }
    }
}

async fn list_v1(c: &Client, q: Query<'_>) -> Listed {
    let mut out = Listed::default();
    let mut marker: Option<String> = q.start_after.map(str::to_string);
    loop {
        let r = ok(
            c.list_objects()
                .bucket(B)
                .set_prefix(q.prefix.map(str::to_string))
                .set_delimiter(q.delimiter.map(str::to_string))
                .set_max_keys(q.max_keys)
                .set_marker(marker.clone())
                .send()
                .await,
            "ListObjects",
        );
        let contents: Vec<String> = r
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_string())
            .collect();
        let prefixes: Vec<String> = r
            .common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap().to_string())
            .collect();
        let n = contents.len() + prefixes.len();
        let max = q.max_keys.unwrap_or(1000) as usize;
        assert!(n <= max, "page of {n} entries exceeds max-keys {max}");
        let page = merged(&contents, &prefixes);
        out.contents.extend(contents);
        out.prefixes.extend(prefixes);
        if r.is_truncated() == Some(true) {
            assert!(n > 0, "truncated empty page");
            let next = match (q.delimiter, r.next_marker()) {
                (_, Some(m)) => m.to_string(),
                (Some(_), None) => {
                    panic!("ListObjects with a delimiter truncated without NextMarker")
                }
                (None, None) => page.last().unwrap().clone(),
            };
            assert_eq!(
                Some(&next),
                page.last(),
                "NextMarker is the last entry of the page"
            );
            marker = Some(next);
            out.pages.push(page);
        } else {
            out.pages.push(page);
            return out;
        }
    }
}

#[track_caller]
fn check(got: &Listed, keys: &[String], q: &Query<'_>, what: &str) {
    let (contents, prefixes) = expected(keys, q.prefix.unwrap_or(""), q.delimiter, q.start_after);
    assert_eq!(got.contents, contents, "{what}: contents");
    assert_eq!(
        got.prefixes.iter().collect::<BTreeSet<_>>().len(),
        got.prefixes.len(),
        "{what}: repeated prefixes"
    );
    let mut gp = got.prefixes.clone();
    gp.sort();
    assert_eq!(gp, prefixes, "{what}: common prefixes");
    assert_eq!(
        got.merged(),
        merged(&contents, &prefixes),
        "{what}: order across pages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_1500_keys() {
    let srv = Server::start(4).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let keys = many_keys();
    put_keys(&c, &keys).await;

    // Full listing, default page size: 1000 + 500.
    let q = Query::default();
    let v2 = list_v2(&c, q.clone()).await;
    assert_eq!(
        v2.pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1000, 500],
        "v2 default pages"
    );
    check(&v2, &keys, &q, "v2 all");
    let v1 = list_v1(&c, q.clone()).await;
    assert_eq!(
        v1.pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1000, 500],
        "v1 default pages"
    );
    check(&v1, &keys, &q, "v1 all");

    // Sizes and ETags in the listing.
    let r = ok(
        c.list_objects_v2()
            .bucket(B)
            .prefix("dir1/sub2/")
            .send()
            .await,
        "ListObjectsV2",
    );
    assert_eq!(r.contents().len(), 25);
    for o in r.contents() {
        let k = o.key().unwrap();
        let body = content_of(k);
        assert_eq!(o.size(), Some(body.len() as i64), "Size of {k}");
        assert_eq!(o.e_tag(), Some(etag_of(&body).as_str()), "ETag of {k}");
        assert!(o.last_modified().is_some(), "LastModified of {k}");
    }

    let queries = [
        Query {
            max_keys: Some(250),
            ..Default::default()
        },
        Query {
            prefix: Some("dir3/"),
            max_keys: Some(7),
            ..Default::default()
        },
        Query {
            prefix: Some("dir1/sub1"),
            ..Default::default()
        },
        Query {
            delimiter: Some("/"),
            ..Default::default()
        },
        Query {
            delimiter: Some("/"),
            max_keys: Some(3),
            ..Default::default()
        },
        Query {
            prefix: Some("dir2/"),
            delimiter: Some("/"),
            ..Default::default()
        },
        Query {
            prefix: Some("dir2/sub3/"),
            delimiter: Some("/"),
            ..Default::default()
        },
        Query {
            prefix: Some("dir2/sub"),
            delimiter: Some("/"),
            max_keys: Some(4),
            ..Default::default()
        },
        Query {
            start_after: Some("dir2/sub5/file10"),
            ..Default::default()
        },
        Query {
            start_after: Some("dir2/sub5/file10"),
            max_keys: Some(333),
            ..Default::default()
        },
        Query {
            start_after: Some("dir2"),
            delimiter: Some("/"),
            ..Default::default()
        },
        Query {
            prefix: Some("dir4/"),
            start_after: Some("dir4/sub8/file24"),
            ..Default::default()
        },
        Query {
            prefix: Some("nothing-here/"),
            ..Default::default()
        },
        Query {
            prefix: Some("日本語/"),
            delimiter: Some("/"),
            ..Default::default()
        },
        Query {
            start_after: Some("zzzz"),
            ..Default::default()
        },
    ];
    for q in &queries {
        let what = format!(
            "prefix={:?} delimiter={:?} max-keys={:?} start-after={:?}",
            q.prefix, q.delimiter, q.max_keys, q.start_after
        );
        let v2 = list_v2(&c, q.clone()).await;
        check(&v2, &keys, q, &format!("v2 {what}"));
        // v1 has no start-after; its marker has the same meaning.
        let v1 = list_v1(&c, q.clone()).await;
        check(&v1, &keys, q, &format!("v1 {what}"));
    }

    // Spot checks of the expectations themselves (guards against a wrong model).
    let (contents, prefixes) = expected(&keys, "", Some("/"), None);
    assert_eq!(
        prefixes,
        vec![
            "dir0/",
            "dir1/",
            "dir2/",
            "dir3/",
            "dir4/",
            "space dir/",
            "ünï/",
            "日本語/"
        ]
    );
    assert_eq!(contents.len(), 200 + 10 + 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimiter_edge_cases() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let keys: Vec<String> = [
        "a", "a/b", "a/b/c", "a/bc", "ab", "a-b/x", "b", "b/", "b//c", "c.txt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    put_keys(&c, &keys).await;

    let cases: Vec<(Query, Vec<&str>, Vec<&str>)> = vec![
        (
            Query {
                delimiter: Some("/"),
                ..Default::default()
            },
            vec!["a", "ab", "b", "c.txt"],
            vec!["a-b/", "a/", "b/"],
        ),
        (
            Query {
                prefix: Some("a/"),
                delimiter: Some("/"),
                ..Default::default()
            },
            vec!["a/b", "a/bc"],
            vec!["a/b/"],
        ),
        (
            Query {
                prefix: Some("a"),
                delimiter: Some("/"),
                ..Default::default()
            },
            vec!["a", "ab"],
            vec!["a-b/", "a/"],
        ),
        (
            Query {
                prefix: Some("b/"),
                delimiter: Some("/"),
                ..Default::default()
            },
            vec!["b/"],
            vec!["b//"],
        ),
        (
            Query {
                delimiter: Some("b"),
                ..Default::default()
            },
            vec!["a", "c.txt"],
            vec!["a-b", "a/b", "ab", "b"],
        ),
        (
            Query {
                prefix: Some("a"),
                delimiter: Some("/b"),
                ..Default::default()
            },
            vec!["a", "a-b/x", "ab"],
            vec!["a/b"],
        ),
        (
            Query {
                delimiter: Some("/"),
                max_keys: Some(1),
                ..Default::default()
            },
            vec!["a", "ab", "b", "c.txt"],
            vec!["a-b/", "a/", "b/"],
        ),
    ];
    for (q, contents, prefixes) in cases {
        let what = format!(
            "prefix={:?} delimiter={:?} max-keys={:?}",
            q.prefix, q.delimiter, q.max_keys
        );
        let (ec, ep) = expected(&keys, q.prefix.unwrap_or(""), q.delimiter, None);
        assert_eq!(
            (
                ec.iter().map(String::as_str).collect::<Vec<_>>(),
                ep.iter().map(String::as_str).collect::<Vec<_>>()
            ),
            (contents, prefixes),
            "model for {what}"
        );
        check(
            &list_v2(&c, q.clone()).await,
            &keys,
            &q,
            &format!("v2 {what}"),
        );
        check(
            &list_v1(&c, q.clone()).await,
            &keys,
            &q,
            &format!("v1 {what}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoding_type_url() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    let keys: Vec<String> = [
        "a b/c d.txt",
        "ünï/çødé",
        "日本語/ファイル",
        "plus+sign",
        "percent%25lit",
        "amp&er=sand",
        "tilde~x",
        "semi;colon,comma",
        "plain",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    put_keys(&c, &keys).await;
    let mut sorted = keys.clone();
    sorted.sort();

    let check_encoded = |encoded: &str, what: &str| -> String {
        assert!(
            encoded.is_ascii() && !encoded.contains(' '),
            "{what}: {encoded:?} is not URL-encoded"
        );
        percent_decode(encoded, true)
    };

    // v2
    let r = ok(
        c.list_objects_v2()
            .bucket(B)
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjectsV2 url",
    );
    assert_eq!(
        r.encoding_type(),
        Some(&EncodingType::Url),
        "EncodingType echoed"
    );
    let decoded: Vec<String> = r
        .contents()
        .iter()
        .map(|o| check_encoded(o.key().unwrap(), "v2 key"))
        .collect();
    assert_eq!(decoded, sorted, "v2 decoded keys");

    // v1
    let r = ok(
        c.list_objects()
            .bucket(B)
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjects url",
    );
    let decoded: Vec<String> = r
        .contents()
        .iter()
        .map(|o| check_encoded(o.key().unwrap(), "v1 key"))
        .collect();
    assert_eq!(decoded, sorted, "v1 decoded keys");

    // Common prefixes and the echoed prefix are encoded too.
    let r = ok(
        c.list_objects_v2()
            .bucket(B)
            .delimiter("/")
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjectsV2 url delimiter",
    );
    let cps: Vec<String> = r
        .common_prefixes()
        .iter()
        .map(|p| check_encoded(p.prefix().unwrap(), "prefix"))
        .collect();
    assert_eq!(cps, vec!["a b/", "ünï/", "日本語/"]);
    let r = ok(
        c.list_objects_v2()
            .bucket(B)
            .prefix("ünï/")
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjectsV2 url prefix",
    );
    assert_eq!(check_encoded(r.prefix().unwrap(), "echoed prefix"), "ünï/");
    assert_eq!(
        r.contents()
            .iter()
            .map(|o| check_encoded(o.key().unwrap(), "key"))
            .collect::<Vec<_>>(),
        vec!["ünï/çødé"]
    );

    // Without encoding-type the keys come back verbatim.
    assert_eq!(list_all_keys(&c, B).await, sorted, "raw keys");
    // start-after with a non-ASCII key.
    let r = ok(
        c.list_objects_v2()
            .bucket(B)
            .start_after("tilde~x")
            .send()
            .await,
        "start-after",
    );
    assert_eq!(
        r.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["ünï/çødé", "日本語/ファイル"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_owner() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    for k in ["x", "y/z", "w"] {
        put(&c, B, k, b"data").await;
    }
    let owner_id = ok(c.list_buckets().send().await, "ListBuckets")
        .owner()
        .and_then(|o| o.id())
        .expect("ListBuckets Owner ID")
        .to_string();

    let r = ok(
        c.list_objects_v2().bucket(B).fetch_owner(true).send().await,
        "ListObjectsV2 fetch-owner",
    );
    let owners: BTreeMap<String, Option<String>> = r
        .contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap().to_string(),
                o.owner().and_then(|o| o.id()).map(str::to_string),
            )
        })
        .collect();
    assert_eq!(owners.len(), 3);
    for (k, id) in &owners {
        assert_eq!(
            id.as_deref(),
            Some(owner_id.as_str()),
            "owner of {k} with fetch-owner=true"
        );
    }

    let r = ok(c.list_objects_v2().bucket(B).send().await, "ListObjectsV2");
    for o in r.contents() {
        assert!(
            o.owner().is_none(),
            "owner of {:?} returned without fetch-owner",
            o.key()
        );
    }
    let r = ok(
        c.list_objects_v2()
            .bucket(B)
            .fetch_owner(false)
            .send()
            .await,
        "ListObjectsV2 fetch-owner=false",
    );
    assert!(
        r.contents().iter().all(|o| o.owner().is_none()),
        "owner returned with fetch-owner=false"
    );
}

/// AWS's answers at the edges of a listing: `max-keys=0` is an empty page that is not
/// truncated; an empty delimiter is no delimiter and is not echoed; v1 always echoes the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_edges_answer_as_aws() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    for k in ["a", "d/e", "z"] {
        put(&c, B, k, b"x").await;
    }
    let v2 = c
        .list_objects_v2()
        .bucket(B)
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (v2.is_truncated(), v2.key_count(), v2.contents().len()),
        (Some(false), Some(0), 0),
        "v2 with max-keys=0"
    );
    assert!(v2.next_continuation_token().is_none());
    let v1 = c.list_objects().bucket(B).max_keys(0).send().await.unwrap();
    assert_eq!(v1.is_truncated(), Some(false), "v1 with max-keys=0");

    let v1 = c
        .list_objects()
        .bucket(B)
        .delimiter("")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = v1.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["a", "d/e", "z"], "an empty delimiter folds nothing");
    assert!(v1.common_prefixes().is_empty());
    assert_eq!(v1.delimiter(), None, "an empty delimiter is not echoed");
    assert_eq!(v1.marker(), Some(""), "v1 echoes an empty marker");
    let v2 = c
        .list_objects_v2()
        .bucket(B)
        .delimiter("")
        .send()
        .await
        .unwrap();
    assert_eq!(
        v2.key_count(),
        Some(3),
        "v2: an empty delimiter folds nothing"
    );
    assert_eq!(v2.delimiter(), None);
}
