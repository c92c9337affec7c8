//! End-to-end tests of `cairn bench` against a tiny in-memory S3 server (test-only).
//!
//! The server checks what a real one would notice: that every request is signed over the headers and path
//! actually sent, with an unsigned payload; that bodies have their declared length; and that objects exist.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::workload::Workload;
use super::BenchArgs;
use crate::sign::{SignRequest, Signer, UNSIGNED_PAYLOAD};

const ACCESS_KEY: &str = "mockkey";
const SECRET_KEY: &str = "mocksecret";

#[derive(Debug, Default)]
struct State {
    /// When set, every object request fails with 500 InternalError.
    fail_objects: bool,
    buckets: Mutex<Vec<String>>,
    /// `bucket/key` -> object length (contents are not kept).
    objects: Mutex<HashMap<String, u64>>,
    puts: AtomicU64,
    /// PUTs asking for SSE-S3 with the header signed.
    sse_puts: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    deletes: AtomicU64,
    bad_signatures: AtomicU64,
}

fn s3_error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>mock</Message></Error>");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Recomputes the request's signature from what was received.
fn signature_ok(req: &Request<Incoming>) -> bool {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let auth = header("authorization");
    let Some(signed) = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
    else {
        return false;
    };
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"host")
        || !names.contains(&"x-amz-date")
        || header("x-amz-content-sha256") != UNSIGNED_PAYLOAD
    {
        return false;
    }
    let headers: Vec<(&str, &str)> = names.iter().map(|&n| (n, header(n))).collect();
    let expected =
        Signer::new(ACCESS_KEY, SECRET_KEY, "us-east-1", "s3").authorization(&SignRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: &[],
            headers: &headers,
            payload_hash: UNSIGNED_PAYLOAD,
            amz_date: header("x-amz-date"),
        });
    expected == auth
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !signature_ok(&req) {
        state.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return Ok(s3_error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch"));
    }
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b.to_owned(), Some(k.to_owned())),
        None => (path.clone(), None),
    };
    let method = req.method().clone();
    let Some(key) = key else {
        let mut buckets = state.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let exists = buckets.contains(&bucket);
        return Ok(match (method, exists) {
            (Method::HEAD, true) => empty(StatusCode::OK),
            (Method::HEAD, false) => empty(StatusCode::NOT_FOUND),
            (Method::PUT, true) => s3_error(StatusCode::CONFLICT, "BucketAlreadyOwnedByYou"),
            (Method::PUT, false) => {
                buckets.push(bucket);
                empty(StatusCode::OK)
            }
            _ => s3_error(StatusCode::NOT_IMPLEMENTED, "NotImplemented"),
        });
    };
    if state.fail_objects {
        return Ok(s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"));
    }
    let full_key = format!("{bucket}/{key}");
    let objects = || state.objects.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(match method {
        Method::PUT => {
            state.puts.fetch_add(1, Ordering::Relaxed);
            let sse = req
                .headers()
                .get("x-amz-server-side-encryption")
                .is_some_and(|v| v == "AES256");
            let signed = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains(";x-amz-server-side-encryption"));
            if sse && signed {
                state.sse_puts.fetch_add(1, Ordering::Relaxed);
            }
            let declared: Option<u64> = req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let mut body = req.into_body();
            let mut len = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                len += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            if declared != Some(len) {
                return Ok(s3_error(StatusCode::BAD_REQUEST, "IncompleteBody"));
            }
            objects().insert(full_key, len);
            empty(StatusCode::OK)
        }
        Method::GET | Method::HEAD => {
            let counter = if method == Method::GET {
                &state.gets
            } else {
                &state.heads
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let len = objects().get(&full_key).copied();
            match len {
                None if method == Method::HEAD => empty(StatusCode::NOT_FOUND),
                None => s3_error(StatusCode::NOT_FOUND, "NoSuchKey"),
                Some(len) => {
                    let body = if method == Method::GET {
                        vec![0u8; len as usize]
                    } else {
                        Vec::new()
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    resp.headers_mut().insert("content-length", len.into());
                    resp
                }
            }
        }
        Method::DELETE => {
            state.deletes.fetch_add(1, Ordering::Relaxed);
            objects().remove(&full_key);
            empty(StatusCode::NO_CONTENT)
        }
        _ => s3_error(StatusCode::NOT_IMPLEMENTED, "NotImplemented"),
    })
}

/// Starts the server on its own thread and runtime (the benchmark builds its own), returning its address.
fn start(state: Arc<State>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("server address")
}

fn args(addr: SocketAddr, op: Workload, size: u64) -> BenchArgs {
    BenchArgs {
        endpoint: format!("http://{addr}"),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        bucket: "cairn-bench".into(),
        op,
        size,
        concurrency: 3,
        duration: Duration::from_millis(400),
        objects: 5,
        region: "us-east-1".into(),
        json: true,
        sse: None,
        no_cleanup: false,
    }
}

#[test]
fn sse_s3_puts_carry_the_signed_header() {
    let state = Arc::new(State::default());
    let addr = start(state.clone());
    super::run(args(addr, Workload::Put, 1024)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(state.sse_puts.load(Ordering::Relaxed), 0);
    let mut a = args(addr, Workload::Put, 1024);
    a.sse = Some(super::Sse::S3);
    super::run(a).unwrap_or_else(|e| panic!("{e:#}"));
    let (puts, sse) = (
        state.puts.load(Ordering::Relaxed),
        state.sse_puts.load(Ordering::Relaxed),
    );
    assert!(
        sse > 0 && sse < puts,
        "{sse} of {puts} PUTs asked for SSE-S3"
    );
    assert_eq!(state.bad_signatures.load(Ordering::Relaxed), 0);
}

#[test]
fn every_workload_runs_signed_and_cleans_up() {
    let state = Arc::new(State::default());
    let addr = start(state.clone());
    // 300 KiB spans two body chunks.
    for (op, size) in [
        (Workload::Put, 300 << 10),
        (Workload::Get, 1000),
        (Workload::Mixed, 4096),
    ] {
        super::run(args(addr, op, size)).unwrap_or_else(|e| panic!("{op:?}: {e:#}"));
        assert!(
            state
                .objects
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty(),
            "{op:?} left objects"
        );
    }
    assert_eq!(state.bad_signatures.load(Ordering::Relaxed), 0);
    assert!(state.puts.load(Ordering::Relaxed) > 0);
    assert!(state.gets.load(Ordering::Relaxed) > 0);
    assert!(state.heads.load(Ordering::Relaxed) > 0);
    assert!(state.deletes.load(Ordering::Relaxed) > 0);
    assert_eq!(
        *state.buckets.lock().unwrap_or_else(PoisonError::into_inner),
        ["cairn-bench"]
    );
}

#[test]
fn all_requests_failing_is_an_error() {
    let state = Arc::new(State {
        fail_objects: true,
        ..State::default()
    });
    let addr = start(state);
    let err = super::run(args(addr, Workload::Put, 1024))
        .map_or_else(|e| format!("{e:#}"), |()| String::new());
    assert!(
        err.contains("requests failed") && err.contains("InternalError"),
        "{err}"
    );
}

#[test]
fn wrong_credentials_are_reported_with_the_s3_code() {
    let state = Arc::new(State::default());
    let addr = start(state);
    let mut a = args(addr, Workload::Put, 1024);
    a.secret_key = "wrong".into();
    let err = super::run(a).map_or_else(|e| format!("{e:#}"), |()| String::new());
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
}

#[test]
fn unreachable_endpoint_is_an_error() {
    // Bind then drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let a = args(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Workload::Put,
        1024,
    );
    let err = super::run(a).map_or_else(|e| format!("{e:#}"), |()| String::new());
    assert!(err.contains("Connect") || err.contains("refused"), "{err}");
}
