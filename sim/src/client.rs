//! A minimal SigV4 S3 client over simulated TCP: one connection per request, so a crashed or
//! partitioned node never leaves a stale pooled connection behind.

use std::time::Duration;

use bytes::Bytes;
use cairn_node::clock::Clock;
use cairn_node::sign::{amz_date, uri_encode, SignRequest, Signer, UNSIGNED_PAYLOAD};
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use rand::Rng;
use rand_chacha::ChaCha20Rng;

use crate::cluster::{host_name, SimClock, ACCESS_KEY, NODES, REGION, S3_PORT, SECRET_KEY};
use crate::workload::{acked, summary};
use crate::SharedTrace;

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
    /// A client signing as the site's root user.
    pub fn new() -> Self {
        Self::with_credentials(ACCESS_KEY, SECRET_KEY)
    }

    /// A client signing with other credentials (an IAM user, or a wrong secret).
    pub fn with_credentials(access_key: &str, secret_key: &str) -> Self {
        Self {
            signer: Signer::new(access_key, secret_key, REGION, "s3"),
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
        self.request_with(host, method, path, query, &[], body)
            .await
            .0
    }

    /// Like [`S3::request`], with extra request headers (signed, names in lower case) and the
    /// response headers (empty when the reply was lost).
    pub async fn request_with(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (Reply, HeaderMap) {
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.request_inner(host, method, path, query, headers, body),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => (Reply::Lost(e.to_string()), HeaderMap::new()),
            Err(_) => (Reply::Lost("timeout".into()), HeaderMap::new()),
        }
    }

    async fn request_inner(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<(Reply, HeaderMap)> {
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
        let mut signed = vec![
            ("host", authority.as_str()),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            ("x-amz-date", date.as_str()),
        ];
        signed.extend_from_slice(extra);
        let authorization = self.signer.authorization(&SignRequest {
            method,
            path: &path,
            query,
            headers: &signed,
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
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &authority)
            .header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
            .header("x-amz-date", &date)
            .header("authorization", authorization)
            .header("content-length", len);
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(body))?;
        let stream = turmoil::net::TcpStream::connect(&authority).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((Reply::Status(status, body), parts.headers))
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

/// The (key, version id) of every `<Version>` of a ListObjectVersions reply (delete markers are
/// not versions with data and are left out).
pub fn listed_versions(xml: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(xml);
    let field = xml_field;
    s.split("<Version>")
        .skip(1)
        .filter_map(|p| p.split("</Version>").next())
        .filter_map(|e| Some((field(e, "Key")?, field(e, "VersionId")?)))
        .collect()
}

/// The text of the first `<name>` element in `entry`.
pub(crate) fn xml_field(entry: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = entry.find(&open)? + open.len();
    let len = entry[start..].find(&close)?;
    Some(entry[start..start + len].to_owned())
}

/// Whether a list reply says more entries follow.
pub fn truncated(xml: &[u8]) -> bool {
    String::from_utf8_lossy(xml).contains("<IsTruncated>true</IsTruncated>")
}

/// One setup request a client repeats until the site acknowledges it.
pub(crate) struct Step {
    pub what: &'static str,
    pub method: &'static str,
    pub path: String,
    pub query: Vec<(&'static str, &'static str)>,
    pub body: Bytes,
}

/// Sends one setup request until it is acknowledged; false if it never was.
pub(crate) async fn until_acked(
    s3: &mut S3,
    rng: &mut ChaCha20Rng,
    trace: &SharedTrace,
    step: &Step,
) -> bool {
    until_acked_at(s3, rng, trace, "", step).await
}

/// Like [`until_acked`], on the nodes of the site whose host names start with `site`.
pub(crate) async fn until_acked_at(
    s3: &mut S3,
    rng: &mut ChaCha20Rng,
    trace: &SharedTrace,
    site: &str,
    step: &Step,
) -> bool {
    let what = step.what;
    for _ in 0..120 {
        let host = format!("{site}{}", host_name(rng.gen_range(0..NODES)));
        let r = s3
            .request(
                &host,
                step.method,
                &step.path,
                &step.query,
                step.body.clone(),
            )
            .await;
        trace
            .borrow_mut()
            .log(format!("{host} setup {what} -> {}", summary(&r)));
        if acked(&r) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}
