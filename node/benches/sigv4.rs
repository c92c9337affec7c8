//! Request authentication cost: one signed HeadBucket through s3s with Cairn's authenticator
//! (a SigV4 header signature, and an anonymous request, refused, as the floor), so the difference
//! is what checking a signature adds per request.
//!
//! `cargo bench -p cairn-node --bench sigv4`

use std::sync::Arc;
use std::time::Duration;

use cairn_node::auth::{Authenticator, RootCredentials};
use cairn_node::sign::{amz_date, SignRequest, Signer, EMPTY_SHA256};
use criterion::{criterion_group, criterion_main, Criterion};
use s3s::dto::{HeadBucketInput, HeadBucketOutput};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, S3Request, S3Response, S3Result, S3};

const HOST: &str = "127.0.0.1:9000";
const AK: &str = "benchadmin";
const SK: &str = "benchadmin-secret";

/// Answers HeadBucket so that only the request path and the authentication are measured.
struct Nop;

#[async_trait::async_trait]
impl S3 for Nop {
    async fn head_bucket(
        &self,
        _req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        Ok(S3Response::new(HeadBucketOutput::default()))
    }
}

fn service() -> S3Service {
    let mut b = S3ServiceBuilder::new(Nop);
    b.set_auth(Authenticator(Arc::new(RootCredentials {
        access_key: AK.into(),
        secret_key: SK.into(),
    })));
    b.build()
}

fn request(headers: &[(String, String)], path_and_query: &str) -> http::Request<Body> {
    let mut r = http::Request::builder()
        .method("HEAD")
        .uri(format!("http://{HOST}{path_and_query}"));
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.body(Body::empty()).expect("request")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let svc = service();
    let date = amz_date(time::OffsetDateTime::now_utc());
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), HOST.into()),
        ("x-amz-date".into(), date.clone()),
        ("x-amz-content-sha256".into(), EMPTY_SHA256.into()),
    ];
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let authorization = Signer::new(AK, SK, "us-east-1", "s3").authorization(&SignRequest {
        method: "HEAD",
        path: "/bucket",
        query: &[],
        headers: &pairs,
        payload_hash: EMPTY_SHA256,
        amz_date: &date,
    });
    headers.push(("authorization".into(), authorization));
    let status = |req| rt.block_on(svc.call(req)).map(|r| r.status().as_u16());
    assert_eq!(status(request(&headers, "/bucket")).ok(), Some(200));
    assert_eq!(
        status(request(&[("host".into(), HOST.into())], "/bucket")).ok(),
        Some(403)
    );
    let mut g = c.benchmark_group("auth");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("sigv4_header", |b| {
        b.iter(|| status(request(&headers, "/bucket")))
    });
    g.bench_function("anonymous", |b| {
        b.iter(|| status(request(&[("host".into(), HOST.into())], "/bucket")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
