//! SigV4 / SigV2 header and query parsing through Cairn's authenticator: a fuzzed HTTP request
//! goes through the same steps as on the S3 port (`server::sigv2::canonical_bucket_uri`, the
//! checks of `auth::request` and `auth::chunked`, then s3s's `S3Service::call` with Cairn's `Authenticator` over root credentials). In the signing
//! modes the harness signs the fuzzed request correctly (current time), so the fuzzer also reaches what
//! runs after the signature check: access check, operation parsing, and for PutObject /
//! UploadPart the body (aws-chunked decoding), which the stub handler reads to the end.
#![no_main]

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use s3s::dto::{PutObjectInput, PutObjectOutput, UploadPartInput, UploadPartOutput};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, S3Request, S3Response, S3Result, S3};
use sha2::Digest;

use cairn_node::auth::{Authenticator, RootCredentials};
use cairn_node::sign::{amz_date, uri_encode, SignRequest, Signer};

const ACCESS_KEY: &str = "fuzzroot";
const SECRET_KEY: &str = "fuzzsecret123";
/// Bodies the stub handlers read at most (bounded memory per input).
const MAX_BODY: usize = 1 << 20;

/// Every operation answers NotImplemented, except the two that take a streaming body: those read
/// it, so s3s's aws-chunked decoder and checksum trailers run on fuzzed bytes.
#[derive(Clone)]
struct Stub;

async fn drain(body: Option<s3s::dto::StreamingBlob>) -> S3Result<()> {
    let Some(mut body) = body else { return Ok(()) };
    let mut n = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| s3s::s3_error!(InvalidRequest, "{e}"))?;
        n += chunk.len();
        if n > MAX_BODY {
            break;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for Stub {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        drain(req.input.body).await?;
        Ok(S3Response::new(PutObjectOutput::default()))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        drain(req.input.body).await?;
        Ok(S3Response::new(UploadPartOutput::default()))
    }
}

fn service() -> &'static (tokio::runtime::Runtime, S3Service) {
    static S: OnceLock<(tokio::runtime::Runtime, S3Service)> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut b = S3ServiceBuilder::new(Stub);
        b.set_auth(Authenticator(Arc::new(RootCredentials {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
        })));
        (rt, b.build())
    })
}

/// Input: one mode byte, then the request as on the wire (`METHOD /path?query`, header lines
/// `name: value`, an empty line, the body). Mode 0 sends it as is (a fuzzed `Authorization`,
/// presigned V4 / V2 query parameters); modes 1-4 have the harness sign it with SigV4, the
/// payload hash being `UNSIGNED-PAYLOAD`, the two streaming forms, or the body's SHA-256.
struct Input<'a> {
    mode: u8,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fn split(data: &[u8]) -> Option<Input<'_>> {
    let (&mode, rest) = data.split_first()?;
    let head_end = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(rest.len());
    let head = std::str::from_utf8(&rest[..head_end]).ok()?;
    let body = rest.get(head_end + 2..).unwrap_or_default();
    let mut lines = head.split('\n');
    let (method, target) = lines.next()?.split_once(' ')?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k, v.trim()))
        .collect();
    Some(Input {
        mode,
        method,
        path,
        query,
        headers,
        body,
    })
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn build(input: &Input<'_>) -> Option<http::Request<Body>> {
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let target = match input.mode % 5 {
        0 => match input.query {
            Some(q) => format!("{}?{q}", input.path),
            None => input.path.to_owned(),
        },
        payload => {
            let hash = match payload {
                1 => "UNSIGNED-PAYLOAD".to_owned(),
                2 => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_owned(),
                3 => "STREAMING-UNSIGNED-PAYLOAD-TRAILER".to_owned(),
                _ => hex::encode(sha2::Sha256::digest(input.body)),
            };
            let date = amz_date(time::OffsetDateTime::now_utc());
            headers.retain(|(k, _)| {
                ![
                    "authorization",
                    "x-amz-date",
                    "x-amz-content-sha256",
                    "host",
                ]
                .iter()
                .any(|n| k.eq_ignore_ascii_case(n))
            });
            headers.push(("host".into(), "localhost:9000".into()));
            headers.push(("x-amz-date".into(), date.clone()));
            headers.push(("x-amz-content-sha256".into(), hash.clone()));
            let path = uri_encode(&decode(input.path), false);
            let query: Vec<(String, String)> = input
                .query
                .unwrap_or_default()
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (decode(k), decode(v))
                })
                .collect();
            let q: Vec<(&str, &str)> = query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let auth = Signer::new(ACCESS_KEY, SECRET_KEY, "us-east-1", "s3").authorization(
                &SignRequest {
                    method: input.method,
                    path: &path,
                    query: &q,
                    headers: &h,
                    payload_hash: &hash,
                    amz_date: &date,
                },
            );
            headers.push(("authorization".into(), auth));
            let qs: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true)))
                .collect();
            if qs.is_empty() {
                path
            } else {
                format!("{path}?{}", qs.join("&"))
            }
        }
    };
    let mut b = http::Request::builder()
        .method(input.method)
        .uri(target.as_str());
    for (k, v) in &headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Body::from(bytes::Bytes::copy_from_slice(input.body)))
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = split(data) else { return };
    let Some(mut req) = build(&input) else { return };
    // What `server::health::Router::handle` does before s3s sees the request.
    if let Some(uri) = cairn_node::server::sigv2::canonical_bucket_uri(req.headers(), req.uri()) {
        *req.uri_mut() = uri;
    }
    let root = RootCredentials {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
    };
    let now = time::OffsetDateTime::now_utc();
    if cairn_node::auth::request::check(req.method(), req.headers(), req.uri(), &root, now).is_err()
    {
        return;
    }
    // What `server::preauth` checks in a form upload's body once it has read it.
    if cairn_node::auth::request::is_form_upload(req.method(), req.headers())
        && cairn_node::auth::request::check_post_form(input.body).is_err()
    {
        return;
    }
    let (parts, body) = req.into_parts();
    let body = cairn_node::auth::chunked::guard(&parts.headers, body);
    let req = http::Request::from_parts(parts, body);
    let (rt, svc) = service();
    let _ = rt.block_on(svc.call(req));
});
