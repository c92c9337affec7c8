//! Authentication: presigned URLs, bad credentials, anonymous requests, clock skew, and
//! streaming (aws-chunked) uploads, signed and unsigned.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedPart};
use cairn_tests::*;

const B: &str = "auth";

async fn setup() -> (Server, Client) {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, B).await;
    (srv, c)
}

/// Send a presigned request with reqwest; returns (status, body).
async fn send_presigned(
    http: &reqwest::Client,
    p: &aws_sdk_s3::presigning::PresignedRequest,
    body: Option<Vec<u8>>,
) -> (u16, Vec<u8>) {
    let method = reqwest::Method::from_bytes(p.method().as_bytes()).unwrap();
    send_raw(
        http,
        method,
        p.uri(),
        p.headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body,
    )
    .await
}

#[track_caller]
fn assert_xml_error(status: u16, body: &[u8], want_status: u16, want_code: &str, what: &str) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(
        (status, xml_error_code(&text).as_deref()),
        (want_status, Some(want_code)),
        "{what}: body {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_get_and_put() {
    let (srv, c) = setup().await;
    let http = srv.http();
    let data = random_bytes(300 * KIB + 1, 1);
    put(&c, B, "shared/object.bin", &data).await;

    let cfg = PresigningConfig::expires_in(Duration::from_secs(600)).unwrap();
    let p = c
        .get_object()
        .bucket(B)
        .key("shared/object.bin")
        .presigned(cfg.clone())
        .await
        .unwrap();
    assert!(
        p.uri().contains("X-Amz-Signature="),
        "presigned URL: {}",
        p.uri()
    );
    let (status, body) = send_presigned(&http, &p, None).await;
    assert_eq!(
        status,
        200,
        "presigned GET: {}",
        String::from_utf8_lossy(&body)
    );
    assert_bytes_eq(&body, &data, "presigned GET body");

    let upload = random_bytes(200 * KIB, 2);
    let p = c
        .put_object()
        .bucket(B)
        .key("via presigned put")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let (status, body) = send_presigned(&http, &p, Some(upload.clone())).await;
    assert_eq!(
        status,
        200,
        "presigned PUT: {}",
        String::from_utf8_lossy(&body)
    );
    assert_bytes_eq(
        &get(&c, B, "via presigned put").await,
        &upload,
        "object uploaded by presigned PUT",
    );

    // The signature covers the key and the signature itself is checked.
    let p = c
        .get_object()
        .bucket(B)
        .key("shared/object.bin")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let other_key = p
        .uri()
        .replace("shared/object.bin", "via%20presigned%20put");
    let (status, body) = send_raw(&http, reqwest::Method::GET, &other_key, vec![], None).await;
    assert_xml_error(
        status,
        &body,
        403,
        "SignatureDoesNotMatch",
        "presigned URL used for another key",
    );
    let sig_at = p.uri().find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = p.uri().to_string();
    let flipped = if &tampered[sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(sig_at..sig_at + 1, flipped);
    let (status, body) = send_raw(&http, reqwest::Method::GET, &tampered, vec![], None).await;
    assert_xml_error(
        status,
        &body,
        403,
        "SignatureDoesNotMatch",
        "presigned URL with a modified signature",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_expires() {
    let (srv, c) = setup().await;
    let http = srv.http();
    put(&c, B, "k", b"short-lived").await;
    let p = c
        .get_object()
        .bucket(B)
        .key("k")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).unwrap())
        .await
        .unwrap();
    // Poll until the server rejects it (bounded); it may succeed while still valid.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = send_presigned(&http, &p, None).await;
        match status {
            200 => assert_eq!(body, b"short-lived"),
            _ => {
                assert_xml_error(status, &body, 403, "AccessDenied", "expired presigned URL");
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "presigned URL with 1 s expiry still works after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A presigned URL with an expiry in the past is rejected at once.
    let p = c
        .get_object()
        .bucket(B)
        .key("k")
        .presigned(
            PresigningConfig::builder()
                .start_time(SystemTime::now() - Duration::from_secs(3600))
                .expires_in(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, body) = send_presigned(&http, &p, None).await;
    assert_xml_error(
        status,
        &body,
        403,
        "AccessDenied",
        "presigned URL that expired an hour ago",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials() {
    let (srv, c) = setup().await;
    put(&c, B, "k", b"secret data").await;

    let wrong_secret = srv.client_with(srv.access_key(), "not-the-right-secret");
    assert_s3_err(
        wrong_secret.list_buckets().send().await,
        403,
        Some("SignatureDoesNotMatch"),
        "ListBuckets wrong secret",
    );
    assert_s3_err(
        wrong_secret.get_object().bucket(B).key("k").send().await,
        403,
        Some("SignatureDoesNotMatch"),
        "GetObject wrong secret",
    );
    assert_s3_err(
        wrong_secret
            .put_object()
            .bucket(B)
            .key("k2")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        403,
        Some("SignatureDoesNotMatch"),
        "PutObject wrong secret",
    );

    let unknown = srv.client_with("NOSUCHACCESSKEY0000", srv.secret_key());
    assert_s3_err(
        unknown.list_buckets().send().await,
        403,
        Some("InvalidAccessKeyId"),
        "ListBuckets unknown key",
    );
    assert_s3_err(
        unknown.get_object().bucket(B).key("k").send().await,
        403,
        Some("InvalidAccessKeyId"),
        "GetObject unknown key",
    );
    // Nothing was written by the rejected requests.
    assert_eq!(list_all_keys(&c, B).await, vec!["k".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_denied() {
    let (srv, c) = setup().await;
    put(&c, B, "k", b"private").await;
    let http = srv.http();
    let ep = srv.endpoint();
    let cases = [
        (reqwest::Method::GET, format!("{ep}/{B}/k"), None),
        (reqwest::Method::HEAD, format!("{ep}/{B}/k"), None),
        (reqwest::Method::GET, format!("{ep}/{B}"), None),
        (reqwest::Method::GET, format!("{ep}/"), None),
        (
            reqwest::Method::PUT,
            format!("{ep}/{B}/anon"),
            Some(b"x".to_vec()),
        ),
        (reqwest::Method::DELETE, format!("{ep}/{B}/k"), None),
    ];
    for (m, url, body) in cases {
        let is_head = m == reqwest::Method::HEAD;
        let what = format!("anonymous {m} {url}");
        let (status, body) = send_raw(&http, m, &url, vec![], body).await;
        if is_head {
            assert_eq!(status, 403, "{what}");
        } else {
            assert_xml_error(status, &body, 403, "AccessDenied", &what);
        }
    }
    // AWS answers any caller NoSuchBucket for a bucket that does not exist; creating one stays
    // refused.
    let missing = format!("{ep}/no-such-bucket");
    for (m, url) in [
        (reqwest::Method::GET, format!("{missing}/k")),
        (reqwest::Method::GET, missing.clone()),
        (reqwest::Method::DELETE, format!("{missing}/k")),
    ] {
        let what = format!("anonymous {m} {url}");
        let (status, body) = send_raw(&http, m, &url, vec![], None).await;
        assert_xml_error(status, &body, 404, "NoSuchBucket", &what);
    }
    let (status, _) = send_raw(&http, reqwest::Method::HEAD, &missing, vec![], None).await;
    assert_eq!(status, 404, "anonymous HEAD of a missing bucket");
    let (status, body) = send_raw(&http, reqwest::Method::PUT, &missing, vec![], None).await;
    assert_xml_error(status, &body, 403, "AccessDenied", "anonymous CreateBucket");
    assert_s3_err(
        c.head_bucket().bucket("no-such-bucket").send().await,
        404,
        None,
        "the refused CreateBucket made no bucket",
    );
    assert_eq!(
        list_all_keys(&c, B).await,
        vec!["k".to_string()],
        "anonymous requests changed nothing"
    );
    assert_eq!(get(&c, B, "k").await, b"private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_rejected() {
    let (srv, c) = setup().await;
    put(&c, B, "k", b"timely").await;
    let http = srv.http();
    let url = format!("{}/{B}/k", srv.endpoint());

    // Control: the harness signer at the current time is accepted.
    let s = srv.signer().sign("GET", &url, &[], sigv4::EMPTY_SHA256);
    let (status, body) = send_raw(&http, reqwest::Method::GET, &url, s.headers, None).await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"timely"[..]),
        "request signed now"
    );

    for (what, t) in [
        (
            "20 minutes in the past",
            SystemTime::now() - Duration::from_secs(20 * 60),
        ),
        (
            "20 minutes in the future",
            SystemTime::now() + Duration::from_secs(20 * 60),
        ),
    ] {
        let s = srv
            .signer()
            .at(t)
            .sign("GET", &url, &[], sigv4::EMPTY_SHA256);
        let (status, body) = send_raw(&http, reqwest::Method::GET, &url, s.headers, None).await;
        assert_xml_error(
            status,
            &body,
            403,
            "RequestTimeTooSkewed",
            &format!("request signed {what}"),
        );
    }
    // A PUT signed in the past stores nothing.
    let put_url = format!("{}/{B}/skewed", srv.endpoint());
    let body = b"should not be stored".to_vec();
    let s = srv
        .signer()
        .at(SystemTime::now() - Duration::from_secs(20 * 60))
        .sign("PUT", &put_url, &[], &sigv4::sha256_hex(&body));
    let (status, resp) =
        send_raw(&http, reqwest::Method::PUT, &put_url, s.headers, Some(body)).await;
    assert_xml_error(
        status,
        &resp,
        403,
        "RequestTimeTooSkewed",
        "PUT signed 20 minutes ago",
    );
    assert_eq!(list_all_keys(&c, B).await, vec!["k".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_payload_variants() {
    let (srv, c) = setup().await;
    let http = srv.http();
    let ep = srv.endpoint();

    // Signed payload hash.
    let data = random_bytes(150 * KIB, 3);
    let url = format!("{ep}/{B}/signed-payload");
    let s = srv
        .signer()
        .sign("PUT", &url, &[], &sigv4::sha256_hex(&data));
    let (status, body) = send_raw(
        &http,
        reqwest::Method::PUT,
        &url,
        s.headers,
        Some(data.clone()),
    )
    .await;
    assert_eq!(
        status,
        200,
        "PUT with signed payload: {}",
        String::from_utf8_lossy(&body)
    );
    assert_bytes_eq(
        &get(&c, B, "signed-payload").await,
        &data,
        "signed payload object",
    );

    // UNSIGNED-PAYLOAD.
    let url = format!("{ep}/{B}/unsigned-payload");
    let s = srv.signer().sign("PUT", &url, &[], sigv4::UNSIGNED_PAYLOAD);
    let (status, body) = send_raw(
        &http,
        reqwest::Method::PUT,
        &url,
        s.headers,
        Some(data.clone()),
    )
    .await;
    assert_eq!(
        status,
        200,
        "PUT with UNSIGNED-PAYLOAD: {}",
        String::from_utf8_lossy(&body)
    );
    assert_bytes_eq(
        &get(&c, B, "unsigned-payload").await,
        &data,
        "unsigned payload object",
    );

    // A body that does not match the signed payload hash is rejected and not stored.
    let url = format!("{ep}/{B}/hash-mismatch");
    let s = srv
        .signer()
        .sign("PUT", &url, &[], &sigv4::sha256_hex(b"another body"));
    let (status, body) = send_raw(
        &http,
        reqwest::Method::PUT,
        &url,
        s.headers,
        Some(data.clone()),
    )
    .await;
    assert!(
        (400..500).contains(&status),
        "PUT whose body does not match x-amz-content-sha256 returned {status}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_s3_err(
        c.get_object().bucket(B).key("hash-mismatch").send().await,
        404,
        Some("NoSuchKey"),
        "after hash mismatch",
    );
}

/// STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk signed (what many SDKs send over HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_chunked_upload() {
    let (srv, c) = setup().await;
    let http = srv.http();
    for (i, (len, chunk)) in [
        (200 * KIB + 3, 64 * KIB),
        (1, 8 * KIB),
        (0, 8 * KIB),
        (MIB + 5, 128 * KIB),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("chunked-{i}");
        let data = random_bytes(len, 10 + i as u64);
        let url = format!("{}/{B}/{key}", srv.endpoint());
        let enc_len = sigv4::chunked_len(len, chunk);
        let decoded = len.to_string();
        let enc = enc_len.to_string();
        let headers = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", decoded.as_str()),
            ("content-length", enc.as_str()),
        ];
        let signer = srv.signer();
        let s = signer.sign("PUT", &url, &headers, sigv4::STREAMING_PAYLOAD);
        let body = signer.chunked_body(&s, &data, chunk);
        assert_eq!(body.len(), enc_len);
        let (status, resp) =
            send_raw(&http, reqwest::Method::PUT, &url, s.headers, Some(body)).await;
        assert_eq!(
            status,
            200,
            "signed chunked PUT {key}: {}",
            String::from_utf8_lossy(&resp)
        );
        assert_bytes_eq(
            &get(&c, B, &key).await,
            &data,
            &format!("signed chunked object {key}"),
        );
        let h = ok(c.head_object().bucket(B).key(&key).send().await, "HEAD");
        assert_eq!(h.content_length(), Some(len as i64));
        assert_eq!(h.e_tag(), Some(etag_of(&data).as_str()));
    }

    // A modified chunk (its signature no longer matches) is rejected and nothing is stored.
    let data = random_bytes(100 * KIB, 20);
    let url = format!("{}/{B}/tampered", srv.endpoint());
    let chunk = 64 * KIB;
    let enc_len = sigv4::chunked_len(data.len(), chunk).to_string();
    let decoded = data.len().to_string();
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded.as_str()),
        ("content-length", enc_len.as_str()),
    ];
    let signer = srv.signer();
    let s = signer.sign("PUT", &url, &headers, sigv4::STREAMING_PAYLOAD);
    let mut body = signer.chunked_body(&s, &data, chunk);
    let second_chunk_data = body.len() - 200; // inside the second (last data) chunk
    body[second_chunk_data] ^= 0x01;
    let (status, resp) = send_raw(&http, reqwest::Method::PUT, &url, s.headers, Some(body)).await;
    assert_s3_err(
        c.get_object().bucket(B).key("tampered").send().await,
        404,
        Some("NoSuchKey"),
        "tampered object",
    );
    assert_xml_error(
        status,
        &resp,
        403,
        "SignatureDoesNotMatch",
        "chunked upload with a modified chunk",
    );
}

/// Records the payload mode of every request the SDK sends.
/// Per request seen: (method and path, x-amz-content-sha256, x-amz-trailer).
type SeenRequests = Vec<(String, Option<String>, Option<String>)>;

#[derive(Debug, Clone, Default)]
struct PayloadModes(Arc<Mutex<SeenRequests>>);

impl Intercept for PayloadModes {
    fn name(&self) -> &'static str {
        "PayloadModes"
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let h = ctx.request().headers();
        self.0.lock().unwrap().push((
            h.get("x-amz-content-sha256")
                .unwrap_or_default()
                .to_string(),
            h.get("content-encoding").map(str::to_string),
            h.get("x-amz-trailer").map(str::to_string),
        ));
        Ok(())
    }
}

/// The SDK streams file bodies as aws-chunked with a trailing checksum
/// (STREAMING-UNSIGNED-PAYLOAD-TRAILER) when a checksum is requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_streaming_upload_with_trailer() {
    let (srv, c) = setup().await;
    let modes = PayloadModes::default();
    let sc = Client::from_conf(
        srv.s3_config(srv.access_key(), srv.secret_key())
            .interceptor(modes.clone())
            .build(),
    );
    let data = random_bytes(MIB + 123, 30);
    let file = srv.root().join("upload.bin");
    std::fs::write(&file, &data).unwrap();

    let r = ok(
        sc.put_object()
            .bucket(B)
            .key("streamed")
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from_path(&file).await.unwrap())
            .send()
            .await,
        "streaming PutObject",
    );
    {
        let m = modes.0.lock().unwrap();
        let (sha, enc, trailer) = m.last().unwrap().clone();
        assert!(
            sha.starts_with("STREAMING-"),
            "SDK did not stream: x-amz-content-sha256 {sha}"
        );
        assert!(
            enc.as_deref().unwrap_or_default().contains("aws-chunked"),
            "content-encoding {enc:?}"
        );
        assert_eq!(trailer.as_deref(), Some("x-amz-checksum-crc32c"));
    }
    let want = b64(&crc32c::crc32c(&data).to_be_bytes());
    assert_eq!(
        r.checksum_crc32_c(),
        Some(want.as_str()),
        "PutObject CRC32C"
    );
    let g = ok(
        c.get_object()
            .bucket(B)
            .key("streamed")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await,
        "GetObject",
    );
    assert_eq!(g.checksum_crc32_c(), Some(want.as_str()), "stored CRC32C");
    assert_eq!(g.content_length(), Some(data.len() as i64));
    assert_bytes_eq(
        &g.body.collect().await.unwrap().into_bytes(),
        &data,
        "streamed object",
    );

    // Streaming multipart: parts read from the file, each with the SDK's default checksum.
    let data = random_bytes(5 * MIB + 77, 31);
    std::fs::write(&file, &data).unwrap();
    let id = ok(
        sc.create_multipart_upload()
            .bucket(B)
            .key("streamed-mp")
            .send()
            .await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .unwrap()
    .to_string();
    let mut parts = Vec::new();
    for (n, (off, len)) in [(0u64, 5 * MIB as u64), (5 * MIB as u64, 77u64)]
        .into_iter()
        .enumerate()
    {
        let body = ByteStream::read_from()
            .path(&file)
            .offset(off)
            .length(Length::Exact(len))
            .build()
            .await
            .unwrap();
        let r = ok(
            sc.upload_part()
                .bucket(B)
                .key("streamed-mp")
                .upload_id(&id)
                .part_number(n as i32 + 1)
                .body(body)
                .send()
                .await,
            "streaming UploadPart",
        );
        let slice = &data[off as usize..(off + len) as usize];
        assert_eq!(
            r.e_tag(),
            Some(etag_of(slice).as_str()),
            "part {} ETag",
            n + 1
        );
        parts.push(
            CompletedPart::builder()
                .part_number(n as i32 + 1)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    complete_multipart(&sc, B, "streamed-mp", &id, parts).await;
    assert_bytes_eq(
        &get(&c, B, "streamed-mp").await,
        &data,
        "streamed multipart object",
    );
}
