//! Bucket CORS as AWS answers it: Put/Get/DeleteBucketCors through boto3 and aws-sdk-s3 with
//! AWS's limits and errors, a user without `s3:PutBucketCORS` refused, the unauthenticated
//! preflight (`OPTIONS`) from a raw HTTP client, and the CORS headers on actual (presigned)
//! requests, errors included.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use cairn_tests::*;
use reqwest::header::HeaderMap;

const B: &str = "web";
const APP: &str = "https://app.example.com";

/// The configuration most tests use: a credentialed app origin that may GET and PUT with
/// `Content-Type` and `x-amz-*` headers, any subdomain of example.org reading, anyone sending
/// HEAD.
fn config() -> CorsConfiguration {
    let rules = [
        CorsRule::builder()
            .id("app")
            .allowed_origins(APP)
            .allowed_methods("GET")
            .allowed_methods("PUT")
            .allowed_headers("Content-Type")
            .allowed_headers("x-amz-*")
            .expose_headers("ETag")
            .expose_headers("x-amz-request-id")
            .max_age_seconds(600)
            .build()
            .unwrap(),
        CorsRule::builder()
            .allowed_origins("http://*.example.org")
            .allowed_methods("GET")
            .build()
            .unwrap(),
        CorsRule::builder()
            .allowed_origins("*")
            .allowed_methods("HEAD")
            .allowed_headers("*")
            .build()
            .unwrap(),
    ];
    CorsConfiguration::builder()
        .set_cors_rules(Some(rules.to_vec()))
        .build()
        .unwrap()
}

async fn put_config(c: &Client, bucket: &str) {
    ok(
        c.put_bucket_cors()
            .bucket(bucket)
            .cors_configuration(config())
            .send()
            .await,
        "PutBucketCors",
    );
}

/// An `OPTIONS` request to `path` with `headers`, as a browser sends it (no credentials):
/// (status, headers, body).
async fn options(srv: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    let mut req = srv.http().request(
        reqwest::Method::OPTIONS,
        format!("{}{path}", srv.endpoint()),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("OPTIONS");
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.text().await.unwrap_or_default())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

/// The error document without its request id, to compare two answers.
fn without_request_id(body: &str) -> String {
    match (body.find("<RequestId>"), body.find("</RequestId>")) {
        (Some(s), Some(e)) => format!("{}{}", &body[..s], &body[e + "</RequestId>".len()..]),
        _ => body.to_string(),
    }
}

#[track_caller]
fn assert_forbidden(got: &(u16, HeaderMap, String), message: &str, what: &str) {
    let (status, h, body) = got;
    assert_eq!(*status, 403, "{what}: {body}");
    assert_eq!(
        xml_error_code(body).as_deref(),
        Some("AccessForbidden"),
        "{what}: {body}"
    );
    assert!(
        xml_tag(body, "Message").is_some_and(|m| m.starts_with(message)),
        "{what}: {body}"
    );
    assert_eq!(header(h, "access-control-allow-origin"), None, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_round_trip_limits_and_permissions() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;

    assert_s3_err(
        c.get_bucket_cors().bucket(B).send().await,
        404,
        Some("NoSuchCORSConfiguration"),
        "GetBucketCors without a configuration",
    );
    assert_s3_err(
        c.put_bucket_cors()
            .bucket("not-there")
            .cors_configuration(config())
            .send()
            .await,
        404,
        Some("NoSuchBucket"),
        "PutBucketCors on a missing bucket",
    );

    // boto3 puts, reads and deletes a configuration as AWS's own client does, and gets AWS's
    // codes for the configurations AWS refuses.
    let got = boto3(
        r#"
s3 = client("s3", os.environ["EP"], os.environ["AK"], os.environ["SK"])
B = "web"
s3.put_bucket_cors(Bucket=B, CORSConfiguration={"CORSRules": [
    {"ID": "app", "AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3000},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]})
rules = s3.get_bucket_cors(Bucket=B)["CORSRules"]
def put(rules):
    return code(lambda: s3.put_bucket_cors(Bucket=B, CORSConfiguration={"CORSRules": rules}))
rule = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}
refused = {
    "no methods": put([{"AllowedOrigins": ["*"]}]),
    "no origins": put([{"AllowedMethods": ["GET"]}]),
    "no rules": put([]),
    "PATCH": put([{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]),
    "two wildcards": put([{"AllowedOrigins": ["http://*.*.example.com"], "AllowedMethods": ["GET"]}]),
    "header wildcards": put([dict(rule, AllowedHeaders=["x-*-*"])]),
    "expose wildcard": put([dict(rule, ExposeHeaders=["x-amz-*"])]),
    "negative max age": put([dict(rule, MaxAgeSeconds=-1)]),
    "101 rules": put([rule] * 101),
    "over 64 KB": put([dict(rule, AllowedHeaders=["x-h%05d-%s" % (i, "h" * 70) for i in range(900)])]),
    "1001 headers": put([dict(rule, AllowedHeaders=["x-%d" % i for i in range(1001)])]),
    "100 rules": put([rule] * 100),
}
after = len(s3.get_bucket_cors(Bucket=B)["CORSRules"])
s3.delete_bucket_cors(Bucket=B)
gone = code(lambda: s3.get_bucket_cors(Bucket=B))
print(json.dumps({"rules": rules, "refused": refused, "after": after, "gone": gone}))
"#,
        &[
            ("EP", srv.endpoint().as_str()),
            ("AK", srv.access_key()),
            ("SK", srv.secret_key()),
        ],
    )
    .await;
    let rules = &got["rules"];
    assert_eq!(rules[0]["ID"], "app");
    assert_eq!(
        rules[0]["AllowedMethods"],
        serde_json::json!(["GET", "PUT"])
    );
    assert_eq!(rules[0]["AllowedHeaders"], serde_json::json!(["*"]));
    assert_eq!(rules[0]["ExposeHeaders"], serde_json::json!(["ETag"]));
    assert_eq!(rules[0]["MaxAgeSeconds"], 3000);
    assert_eq!(rules[1]["AllowedOrigins"], serde_json::json!(["*"]));
    assert!(rules[1].get("AllowedHeaders").is_none(), "{rules}");
    let want = serde_json::json!({
        "no methods": "MalformedXML",
        "no origins": "MalformedXML",
        "no rules": "MalformedXML",
        "PATCH": "InvalidRequest",
        "two wildcards": "InvalidRequest",
        "header wildcards": "InvalidRequest",
        "expose wildcard": "InvalidRequest",
        "negative max age": "MalformedXML",
        "101 rules": "InvalidRequest",
        "over 64 KB": "InvalidRequest",
        "1001 headers": "InvalidRequest",
        "100 rules": "ok",
    });
    assert_eq!(got["refused"], want);
    assert_eq!(
        got["after"], 100,
        "the last accepted configuration holds 100 rules"
    );
    assert_eq!(got["gone"], "NoSuchCORSConfiguration");

    // A user who may read the configuration but not change it.
    put_config(&c, B).await;
    let admin = cairn_tests::admin::AdminCli::for_server("n0", &srv).await;
    admin
        .user_with_policy(
            "n0",
            "reader",
            "reader-secret-1",
            "read-cors",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetBucketCORS"],"Resource":["arn:aws:s3:::web"]}]}"#,
        )
        .await;
    let reader = srv.client_with("reader", "reader-secret-1");
    let read = ok(
        reader.get_bucket_cors().bucket(B).send().await,
        "GetBucketCors with s3:GetBucketCORS",
    );
    assert_eq!(read.cors_rules().len(), 3);
    assert_s3_err(
        reader
            .put_bucket_cors()
            .bucket(B)
            .cors_configuration(config())
            .send()
            .await,
        403,
        Some("AccessDenied"),
        "PutBucketCors without s3:PutBucketCORS",
    );
    assert_s3_err(
        reader.delete_bucket_cors().bucket(B).send().await,
        403,
        Some("AccessDenied"),
        "DeleteBucketCors without s3:PutBucketCORS",
    );
    let still = ok(c.get_bucket_cors().bucket(B).send().await, "GetBucketCors");
    assert_eq!(still.cors_rules(), config().cors_rules(), "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_answers_as_aws_does() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    create_bucket(&c, "plain").await;
    put_config(&c, B).await;

    // Allowed: the origin, the method and every requested header (case aside) fit rule "app".
    let (status, h, body) = options(
        &srv,
        "/web/photos/cat.jpg",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "Content-Type, X-Amz-Date"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&h, "access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("content-type, x-amz-date")
    );
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("ETag, x-amz-request-id")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert!(
        header(&h, "vary").is_some_and(|v| v.starts_with("Origin")),
        "{h:?}"
    );
    assert!(body.is_empty(), "{body}");

    // The bucket itself, and a wildcard origin.
    let (status, h, _) = options(
        &srv,
        "/web",
        &[
            ("Origin", "http://shop.example.org"),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("http://shop.example.org")
    );
    assert_eq!(header(&h, "access-control-allow-headers"), None);
    // A rule for any origin answers `*` and allows no credentials.
    let (status, h, _) = options(
        &srv,
        "/web/k",
        &[
            ("Origin", "https://anyone.test"),
            ("Access-Control-Request-Method", "HEAD"),
            ("Access-Control-Request-Headers", "x-whatever"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);

    // Refused: a wrong origin, a method no rule for the origin allows, a header not allowed.
    let not_allowed = "CORSResponse: This CORS request is not allowed";
    let many = vec!["x-amz-a"; 65].join(",");
    for (what, origin, method, headers) in [
        ("wrong origin", "https://evil.example", "GET", None),
        (
            "wildcard needs a subdomain",
            "http://example.org",
            "GET",
            None,
        ),
        ("wrong scheme", "https://shop.example.org", "GET", None),
        ("wrong method", APP, "DELETE", None),
        (
            "header not allowed",
            APP,
            "PUT",
            Some("content-type, x-custom"),
        ),
        ("too many headers", APP, "PUT", Some(many.as_str())),
    ] {
        let mut hs = vec![
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
        ];
        hs.extend(headers.map(|v| ("Access-Control-Request-Headers", v)));
        let got = options(&srv, "/web/photos/cat.jpg", &hs).await;
        assert_forbidden(&got, not_allowed, what);
        assert_eq!(xml_tag(&got.2, "Method").as_deref(), Some(method), "{what}");
        assert_eq!(xml_tag(&got.2, "ResourceType").as_deref(), Some("OBJECT"));
    }
    // 64 allowed headers are still matched.
    let (status, _, body) = options(
        &srv,
        "/web/k",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "PUT"),
            (
                "Access-Control-Request-Headers",
                &vec!["x-amz-a"; 64].join(","),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A bucket without a configuration and a missing bucket answer alike: a preflight does not
    // tell whether a bucket exists.
    let ask = [("Origin", APP), ("Access-Control-Request-Method", "GET")];
    let plain = options(&srv, "/plain/k", &ask).await;
    assert_forbidden(
        &plain,
        "CORSResponse: CORS is not enabled for this bucket.",
        "no config",
    );
    let missing = options(&srv, "/not-there/k", &ask).await;
    assert_eq!(
        (missing.0, without_request_id(&missing.2)),
        (plain.0, without_request_id(&plain.2)),
        "a missing bucket answers as one without CORS"
    );

    // What a preflight must name.
    let (status, _, body) =
        options(&srv, "/web/k", &[("Access-Control-Request-Method", "GET")]).await;
    assert_eq!(
        (status, xml_error_code(&body).as_deref()),
        (400, Some("BadRequest")),
        "{body}"
    );
    assert!(body.contains("Origin request header needed"), "{body}");
    let (status, _, body) = options(&srv, "/web/k", &[("Origin", APP)]).await;
    assert_eq!(
        (status, xml_error_code(&body).as_deref()),
        (400, Some("BadRequest")),
        "{body}"
    );
    assert!(
        body.contains("Invalid Access-Control-Request-Method: null"),
        "{body}"
    );
    let (status, _, body) = options(
        &srv,
        "/web/k",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "PATCH<x>"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Invalid Access-Control-Request-Method: PATCH&lt;x&gt;"),
        "{body}"
    );

    // Deleting the configuration ends the grants.
    ok(
        c.delete_bucket_cors().bucket(B).send().await,
        "DeleteBucketCors",
    );
    let got = options(&srv, "/web/k", &ask).await;
    assert_forbidden(
        &got,
        "CORSResponse: CORS is not enabled for this bucket.",
        "deleted",
    );
}

/// Sends `p` with an `Origin` (or none): (status, headers).
async fn presigned_from(
    srv: &Server,
    p: &aws_sdk_s3::presigning::PresignedRequest,
    origin: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, HeaderMap) {
    let method = reqwest::Method::from_bytes(p.method().as_bytes()).unwrap();
    let mut req = srv.http().request(method, p.uri());
    for (k, v) in p.headers() {
        if !k.eq_ignore_ascii_case("host") {
            req = req.header(k, v);
        }
    }
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    if let Some(b) = body {
        req = req.body(b.to_vec());
    }
    let r = req.send().await.expect("presigned request");
    (r.status().as_u16(), r.headers().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actual_requests_carry_the_headers_of_their_rule() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    create_bucket(&c, "plain").await;
    put(&c, B, "page.html", b"<p>hi</p>").await;
    put(&c, "plain", "page.html", b"<p>hi</p>").await;
    put_config(&c, B).await;
    let cfg = PresigningConfig::expires_in(Duration::from_secs(600)).unwrap();
    let presign_get = |bucket: &'static str, key: &'static str| {
        let (c, cfg) = (c.clone(), cfg.clone());
        async move {
            c.get_object()
                .bucket(bucket)
                .key(key)
                .presigned(cfg)
                .await
                .unwrap()
        }
    };

    // A presigned GET from the allowed origin.
    let p = presign_get(B, "page.html").await;
    let (status, h) = presigned_from(&srv, &p, Some(APP), None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&h, "access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("ETag, x-amz-request-id")
    );
    assert!(
        header(&h, "vary").is_some_and(|v| v.contains("Origin")),
        "{h:?}"
    );
    // From another origin, or from no browser at all: no CORS headers, same answer.
    for origin in [Some("https://evil.example"), None] {
        let (status, h) = presigned_from(&srv, &p, origin, None).await;
        assert_eq!(status, 200, "{origin:?}");
        for name in [
            "access-control-allow-origin",
            "access-control-expose-headers",
        ] {
            assert_eq!(header(&h, name), None, "{name} for {origin:?}");
        }
    }
    // A wildcard origin's rule.
    let (_, h) = presigned_from(&srv, &p, Some("http://cdn.example.org"), None).await;
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("http://cdn.example.org")
    );
    assert_eq!(header(&h, "access-control-expose-headers"), None);

    // Errors get them too, as AWS sends them: a missing key, a signature that does not match.
    let p = presign_get(B, "missing.html").await;
    let (status, h) = presigned_from(&srv, &p, Some(APP), None).await;
    assert_eq!(status, 404);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    let p = presign_get(B, "page.html").await;
    let expired = p.uri().replace("X-Amz-Expires=600", "X-Amz-Expires=601");
    let r = srv
        .http()
        .get(expired)
        .header("Origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "a changed expiry breaks the signature"
    );
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );

    // A presigned PUT (allowed for the app) and a DELETE (allowed for nobody).
    let p = c
        .put_object()
        .bucket(B)
        .key("upload.txt")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let (status, h) = presigned_from(&srv, &p, Some(APP), Some(b"uploaded")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert_eq!(get(&c, B, "upload.txt").await, b"uploaded");
    let p = c
        .delete_object()
        .bucket(B)
        .key("upload.txt")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let (status, h) = presigned_from(&srv, &p, Some(APP), None).await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), None);

    // A bucket without rules, and rules deleted: nothing.
    let p = presign_get("plain", "page.html").await;
    let (status, h) = presigned_from(&srv, &p, Some(APP), None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    ok(
        c.delete_bucket_cors().bucket(B).send().await,
        "DeleteBucketCors",
    );
    let p = presign_get(B, "page.html").await;
    let (_, h) = presigned_from(&srv, &p, Some(APP), None).await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
}
