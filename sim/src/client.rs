//! A minimal SigV4 S3 client over simulated TCP: one connection per request, so a crashed or
//! partitioned node never leaves a stale pooled connection behind.

use std::time::Duration;

use bytes::Bytes;
use cairn_node::bench::sign::{amz_date, uri_encode, SignRequest, Signer, UNSIGNED_PAYLOAD};
use cairn_node::clock::Clock;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::cluster::{SimClock, ACCESS_KEY, REGION, S3_PORT, SECRET_KEY};

/// How long one request may take before the client gives up (the outcome is then unknown).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one request came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(u16, Bytes),
    /// No response: refused, reset, or timed out. The request may or may not have taken effect.
    Lost(String),
}

pub struct S3 {
    signer: Signer,
    clock: SimClock,
}

impl S3 {
    pub fn new() -> Self {
        Self {
            signer: Signer::new(ACCESS_KEY, SECRET_KEY, REGION, "s3"),
            clock: SimClock {
                skew_ns: Default::default(),
            },
        }
    }

    pub async fn request(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.request_inner(host, method, path, query, body),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Reply::Lost(e.to_string()),
            Err(_) => Reply::Lost("timeout".into()),
        }
    }

    async fn request_inner(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let path = path
            .split('/')
            .map(|s| uri_encode(s, true))
            .collect::<Vec<_>>()
            .join("/");
        // s3s checks request skew against the real wall clock (it reads it itself), so the
        // signature date must be real time; it reaches nothing the trace hash covers.
        let _ = self.clock.now();
        let date = amz_date(time::OffsetDateTime::now_utc());
        let authority = format!("{host}:{S3_PORT}");
        let authorization = self.signer.authorization(&SignRequest {
            method,
            path: &path,
            query,
            headers: &[
                ("host", &authority),
                ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
                ("x-amz-date", &date),
            ],
            payload_hash: UNSIGNED_PAYLOAD,
            amz_date: &date,
        });
        let mut uri = path.clone();
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true)))
                .collect();
            uri = format!("{uri}?{}", q.join("&"));
        }
        let len = body.len();
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &authority)
            .header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
            .header("x-amz-date", &date)
            .header("authorization", authorization)
            .header("content-length", len)
            .body(Full::new(body))?;
        let stream = turmoil::net::TcpStream::connect(&authority).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply::Status(status, body))
    }
}

impl Default for S3 {
    fn default() -> Self {
        Self::new()
    }
}

/// The keys of a ListObjectsV2 reply (the simulator's keys need no XML unescaping).
pub fn listed_keys(xml: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(xml);
    s.split("<Key>")
        .skip(1)
        .filter_map(|p| p.split("</Key>").next().map(str::to_owned))
        .collect()
}
