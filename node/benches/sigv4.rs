//! Request authentication cost: one signed HeadBucket through s3s with Cairn's authenticator
//! (a SigV4 header signature, and an anonymous request, refused, as the floor), so the difference
//! is what checking a signature adds per request.
//!
//! `cargo bench -p cairn-node --bench sigv4`

use std::sync::Arc;
use std::time::Duration;

use cairn_node::auth::{Authenticator, RootCredentials};
use cairn_tests::sigv4::Signer;
use criterion::{criterion_group, criterion_main, Criterion};
use s3s::dto::{HeadBucketInput, HeadBucketOutput};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, S3Request, S3Response, S3Result, S3};

const HOST: &str = "127.0.0.1:9000";
const AK: &str = "benchadmin";
const SK: &str = "benchadmin-secret";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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
    let signed =
        Signer::new(AK, SK).sign("HEAD", &format!("http://{HOST}/bucket"), &[], EMPTY_SHA256);
    let status = |req| rt.block_on(svc.call(req)).map(|r| r.status().as_u16());
    assert_eq!(status(request(&signed.headers, "/bucket")).ok(), Some(200));
    assert_eq!(
        status(request(&[("host".into(), HOST.into())], "/bucket")).ok(),
        Some(403)
    );
    let mut g = c.benchmark_group("auth");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("sigv4_header", |b| {
        b.iter(|| status(request(&signed.headers, "/bucket")))
    });
    g.bench_function("anonymous", |b| {
        b.iter(|| status(request(&[("host".into(), HOST.into())], "/bucket")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
