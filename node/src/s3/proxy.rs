//! GET and HEAD of a version this site does not hold yet, answered by the peer site that does (as
//! MinIO proxies reads of versions whose replication is still PENDING at their source).
//!
//! Only what the local authorization already allowed is proxied: s3s runs the access check before
//! the handler, so a caller the local policies deny gets the local 403 and no peer is asked. The
//! peers are asked by [`ReadProxy`] (`replication::proxy`, which sits above this module) as the
//! pair's replication identity, with [`PROXIED_HEADER`]: the peer answers from what it holds and
//! never proxies again. Not proxied: a request that is itself proxied (or carries the mark), one
//! with an SSE-C key (the customer's key is never sent on to another site), and one whose
//! authorization tested the object's tags (this site does not know the peer's tags). The peer's
//! bytes stream through (a small channel, never the whole object), with its headers; its
//! refusals become the same S3 errors (`error::peer_error`); a peer that lacks the version too, is
//! unreachable, or does not answer within the deadline leaves the local 404.
//!
//! The site asked answers a proxied read only with a version it has not finished sending: one
//! still PENDING ([`serve_to_peer`]). A version the asking site already took, and has removed
//! since (a removal on its way back, or a pair that keeps the versions its peer removes), is not
//! handed back to it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3s::dto::{GetObjectOutput, HeadObjectOutput, StreamingBlob};
use s3s::{S3Request, S3Response, S3Result};

use super::error::{object_error, peer_error};
use super::CairnS3;
use crate::auth::authorize::condition_keys::query_pairs;
use crate::auth::authorize::s3_access::DecidedOnTags;
use crate::link::PROXIED_HEADER;
use crate::object::ObjectError;

/// Whether this read may return `v`: a read a peer site proxied here (its replication identity,
/// with the mark) gets only a version whose replication is still PENDING, anything else is absent
/// to it; every other read gets what it asked for.
pub fn serve_to_peer<T>(
    s3: &CairnS3,
    req: &S3Request<T>,
    v: &cairn_proto::meta::ObjectVersion,
    by_id: bool,
) -> S3Result<()> {
    let from_peer = req.headers.contains_key(PROXIED_HEADER)
        && req.credentials.as_ref().is_some_and(|c| {
            s3.catalog
                .state()
                .sites
                .peer_by_key(&c.access_key)
                .is_some()
        });
    if !from_peer || v.replication == crate::object::replica::PENDING {
        return Ok(());
    }
    Err(object_error(if by_id {
        ObjectError::NoSuchVersion
    } else {
        ObjectError::NoSuchKey
    }))
}

/// Longest wait between two pieces of a proxied body: a peer that stalls mid-object ends the
/// client's body with an error instead of holding it open for ever.
const BODY_IDLE: Duration = Duration::from_secs(30);
/// Most of a peer's error answer read (its XML code and message).
const ERROR_BODY: usize = 4096;

/// Request headers a proxied read carries on: those that choose the bytes or make it conditional.
const FORWARDED: [&str; 6] = [
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-checksum-mode",
];
const SSE_C_HEADERS: [&str; 3] = [
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];
/// Answer headers passed back besides `x-amz-*` (the object's own, as a local read sets them).
const PASSED: [&str; 11] = [
    "content-type",
    "content-length",
    "content-range",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "etag",
    "last-modified",
    "accept-ranges",
];
/// `x-amz-*` answer headers that describe the peer's handling of the request, not the object.
const NOT_PASSED: [&str; 2] = ["x-amz-request-id", "x-amz-id-2"];

/// A read to ask the peers, as the pair's replication identity signs it.
#[derive(Debug, Clone)]
pub struct ProxiedRead {
    pub method: &'static str,
    /// URI-encoded, as the client sent it.
    pub path: String,
    /// Decoded: `versionId`, `partNumber`, `response-*`.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(&'static str, String)>,
}

/// Asks peer sites for a version this site does not hold; implemented above this module
/// (`replication::proxy`), which knows the peers and signs for the pair.
#[async_trait::async_trait]
pub trait ReadProxy: Send + Sync {
    /// The first peer answer that [`settles`] the read (with the peer's name), or none: no peer
    /// holds the version, or none answered within the deadline.
    async fn read(&self, req: &ProxiedRead) -> Option<(String, hyper::Response<Incoming>)>;
}

/// Whether a peer's answer is the read's answer: it holds the version (2xx), or refused the read
/// for a reason of the version's or the request's (304, 400, 405, 412, 416), or its latest is a
/// delete marker (404 saying so). A plain 404 (it lacks the version too), a 403 (the pair's
/// identity refused: a pairing to repair) and a 5xx leave the next peer, then the local answer.
pub fn settles(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    status.is_success()
        || matches!(status.as_u16(), 304 | 400 | 405 | 412 | 416)
        || (status == http::StatusCode::NOT_FOUND && headers.contains_key("x-amz-delete-marker"))
}

/// What to ask the peers for this GET or HEAD of `bucket/key`, if it may be proxied at all (see
/// the module docs).
pub fn plan<T>(
    s3: &CairnS3,
    req: &S3Request<T>,
    method: &'static str,
    bucket: &str,
    key: &str,
) -> Option<ProxiedRead> {
    s3.proxy.as_ref()?;
    let h = &req.headers;
    if !s3.catalog.state().sites.enabled()
        || h.contains_key(PROXIED_HEADER)
        || SSE_C_HEADERS.iter().any(|n| h.contains_key(*n))
        || req.extensions.get::<DecidedOnTags>().is_some()
    {
        return None;
    }
    let query = query_pairs(&req.uri)
        .into_iter()
        .filter(|(k, _)| k == "versionId" || k == "partNumber" || k.starts_with("response-"))
        .collect();
    let headers = FORWARDED
        .iter()
        .filter_map(|n| Some((*n, h.get(*n)?.to_str().ok()?.to_owned())))
        .collect();
    Some(ProxiedRead {
        method,
        path: format!(
            "/{}/{}",
            crate::sign::uri_encode(bucket, true),
            crate::sign::uri_encode(key, false)
        ),
        query,
        headers,
    })
}

/// The peer's answer headers a client gets (the object's, none of the peer's connection's).
fn passed(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if PASSED.contains(&n) || (n.starts_with("x-amz-") && !NOT_PASSED.contains(&n)) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The peer's answer to `plan`, or `local` (the error this site found) when no peer settles it.
async fn ask(
    s3: &CairnS3,
    plan: Option<ProxiedRead>,
    local: ObjectError,
) -> S3Result<(http::response::Parts, Incoming)> {
    let (Some(proxy), Some(plan)) = (s3.proxy.as_ref(), plan) else {
        return Err(object_error(local));
    };
    let Some((peer, resp)) = proxy.read(&plan).await else {
        return Err(object_error(local));
    };
    let (parts, body) = resp.into_parts();
    tracing::debug!(peer = %peer, status = parts.status.as_u16(), "read proxied to a peer site");
    if parts.status.is_success() {
        return Ok((parts, body));
    }
    let text = tokio::time::timeout(
        BODY_IDLE,
        http_body_util::Limited::new(body, ERROR_BODY).collect(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|b| b.to_bytes())
    .unwrap_or_default();
    Err(peer_error(parts.status, &text, passed(&parts.headers)))
}

/// The peer's body as the client's: each piece within [`BODY_IDLE`] of the last.
fn stream_body(body: Incoming) -> StreamingBlob {
    let frames = futures::stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        loop {
            return match tokio::time::timeout(BODY_IDLE, body.frame()).await {
                Err(_) => Some((Err(std::io::Error::other("peer stalled")), None)),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Some((Ok::<Bytes, std::io::Error>(data), Some(body))),
                    // Trailers: nothing a GET passes on.
                    Err(_) => continue,
                },
            };
        }
    });
    super::object::body_of(frames)
}

fn header_str(parts: &http::response::Parts, name: http::HeaderName) -> Option<String> {
    Some(parts.headers.get(name)?.to_str().ok()?.to_owned())
}

/// A GET this site found nothing for (`local`), answered by a peer when one holds it.
pub async fn get(
    s3: &CairnS3,
    plan: Option<ProxiedRead>,
    local: ObjectError,
) -> S3Result<S3Response<GetObjectOutput>> {
    let (parts, body) = ask(s3, plan, local).await?;
    let out = GetObjectOutput {
        content_length: header_str(&parts, http::header::CONTENT_LENGTH)
            .and_then(|l| l.parse().ok()),
        // Set, it makes the answer a 206 as the peer's was.
        content_range: header_str(&parts, http::header::CONTENT_RANGE),
        body: Some(stream_body(body)),
        ..Default::default()
    };
    let mut resp = S3Response::new(out);
    resp.headers = passed(&parts.headers);
    Ok(resp)
}

/// A HEAD this site found nothing for (`local`), answered by a peer when one holds it.
pub async fn head(
    s3: &CairnS3,
    plan: Option<ProxiedRead>,
    local: ObjectError,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let (parts, _) = ask(s3, plan, local).await?;
    let mut resp = S3Response::new(HeadObjectOutput::default());
    resp.headers = passed(&parts.headers);
    Ok(resp)
}

/// Whether `e` is what a read finds for a version this site does not hold (yet).
pub fn absent(e: &ObjectError) -> bool {
    matches!(e, ObjectError::NoSuchKey | ObjectError::NoSuchVersion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: &s3s::S3Error) -> String {
        e.code().as_str().to_owned()
    }

    #[test]
    fn only_answers_about_the_version_settle_a_read() {
        let none = http::HeaderMap::new();
        let mut marker = http::HeaderMap::new();
        marker.insert(
            "x-amz-delete-marker",
            http::HeaderValue::from_static("true"),
        );
        let s = |code: u16, h: &http::HeaderMap| {
            settles(http::StatusCode::from_u16(code).expect("status"), h)
        };
        for code in [200, 206, 304, 400, 405, 412, 416] {
            assert!(s(code, &none), "{code}");
        }
        for code in [403, 404, 500, 503] {
            assert!(!s(code, &none), "{code}");
        }
        assert!(s(404, &marker), "a delete marker on the peer is the answer");
    }

    #[test]
    fn peer_refusals_keep_their_code_status_and_object_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("etag", http::HeaderValue::from_static("\"abc\""));
        h.insert("x-amz-request-id", http::HeaderValue::from_static("peer"));
        h.insert("server", http::HeaderValue::from_static("cairn"));
        let kept = passed(&h);
        assert!(kept.contains_key("etag"));
        assert!(!kept.contains_key("x-amz-request-id") && !kept.contains_key("server"));
        let xml = b"<?xml version=\"1.0\"?><Error><Code>PreconditionFailed</Code><Message>no</Message></Error>";
        let e = peer_error(http::StatusCode::PRECONDITION_FAILED, xml, kept.clone());
        assert_eq!(code_of(&e), "PreconditionFailed");
        assert_eq!(e.status_code(), Some(http::StatusCode::PRECONDITION_FAILED));
        // A HEAD's or a 304's answer has no body: the code comes from the status.
        let e = peer_error(http::StatusCode::NOT_MODIFIED, b"", kept);
        assert_eq!(code_of(&e), "NotModified");
        let e = peer_error(
            http::StatusCode::RANGE_NOT_SATISFIABLE,
            b"",
            http::HeaderMap::new(),
        );
        assert_eq!(code_of(&e), "InvalidRange");
        let xml = b"<Error><Code>InvalidPartNumber</Code></Error>";
        let e = peer_error(
            http::StatusCode::RANGE_NOT_SATISFIABLE,
            xml,
            http::HeaderMap::new(),
        );
        assert_eq!(code_of(&e), "InvalidPartNumber");
    }
}
