//! A lean S3 client for load generation: hyper's pooled HTTP/1.1 client (keep-alive, `TCP_NODELAY`), SigV4
//! header signing with an unsigned payload, path-style addressing. Only the handful of calls the benchmark needs.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::{GenBody, ReqBody};
use crate::sign::{amz_date, uri_encode, SignRequest, Signer, UNSIGNED_PAYLOAD};

/// The most of an error response body read to find its S3 error code.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Why a request failed.
#[derive(Debug, Clone)]
pub enum OpError {
    /// No HTTP response: connection refused or reset, protocol error, ...
    Transport(String),
    /// A non-2xx response with its S3 error code and message when the body had them.
    Status {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// A GET returned a body of the wrong length.
    ShortBody { expected: u64, got: u64 },
}

impl OpError {
    /// The S3 error code for a status error (`NoSuchKey`, `SignatureDoesNotMatch`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::Status {
                status,
                code,
                message,
            } => {
                write!(f, "HTTP {}", status.as_u16())?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Self::ShortBody { expected, got } => {
                write!(f, "body of {got} bytes, expected {expected}")
            }
        }
    }
}

impl std::error::Error for OpError {}

/// A cloneable client; clones share the connection pool but each has its own signer cache.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: Client<HttpConnector, ReqBody>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    /// The `Host` header value (the endpoint's authority).
    host: HeaderValue,
    signer: Signer,
    /// Sent (and signed) with every object PUT: `--sse s3` asks for SSE-S3 this way.
    put_headers: Vec<(&'static str, &'static str)>,
}

impl S3Client {
    /// A client for `endpoint` (`http://host:port`) keeping up to `max_idle` idle connections.
    pub fn new(endpoint: &str, signer: Signer, max_idle: usize) -> anyhow::Result<Self> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid endpoint {endpoint:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => anyhow::bail!(
                "endpoint {endpoint:?}: https is not supported by cairn bench, use http"
            ),
            _ => anyhow::bail!("endpoint {endpoint:?} must look like http://host:port"),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("endpoint {endpoint:?} has no host"))?
            .as_str()
            .to_owned();
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            anyhow::bail!("endpoint {endpoint:?} must not have a path or query (buckets are addressed path-style)");
        }
        let host = HeaderValue::from_str(&authority)?;

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            http,
            base: format!("http://{authority}"),
            host,
            signer,
            put_headers: Vec::new(),
        })
    }

    /// Makes sure `bucket` exists: `HEAD` it, and otherwise create it (`BucketAlreadyOwnedByYou` is fine). A
    /// `HEAD` failure other than a transport error also goes on to the `PUT`, whose response has a body naming
    /// the S3 error code (`SignatureDoesNotMatch`, `InvalidAccessKeyId`, ...) where `HEAD`'s cannot.
    pub async fn ensure_bucket(&mut self, bucket: &str, region: &str) -> Result<(), OpError> {
        match self.send(Method::HEAD, bucket, None, ReqBody::Empty).await {
            Ok(resp) => return drain(resp).await.map(|_| ()),
            Err(OpError::Status { .. }) => {}
            Err(e) => return Err(e),
        }
        let body = if region == "us-east-1" {
            ReqBody::Empty
        } else {
            ReqBody::Full(Some(Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            ))))
        };
        match self.send(Method::PUT, bucket, None, body).await {
            Ok(resp) => drain(resp).await.map(|_| ()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Asks for SSE-S3 on every object this client writes.
    pub fn with_sse_s3(mut self) -> Self {
        self.put_headers
            .push(("x-amz-server-side-encryption", "AES256"));
        self
    }

    /// Uploads `body` as `bucket/key`; returns the bytes sent.
    pub async fn put_object(
        &mut self,
        bucket: &str,
        key: &str,
        body: GenBody,
    ) -> Result<u64, OpError> {
        let body = ReqBody::Generated(body);
        let len = body.content_length();
        let resp = self.send(Method::PUT, bucket, Some(key), body).await?;
        drain(resp).await?;
        Ok(len)
    }

    /// Downloads `bucket/key`, discarding the data; returns the bytes received. With `expected_len`, a body of
    /// another length is an error.
    pub async fn get_object(
        &mut self,
        bucket: &str,
        key: &str,
        expected_len: Option<u64>,
    ) -> Result<u64, OpError> {
        let resp = self
            .send(Method::GET, bucket, Some(key), ReqBody::Empty)
            .await?;
        let got = drain(resp).await?;
        match expected_len {
            Some(expected) if expected != got => Err(OpError::ShortBody { expected, got }),
            _ => Ok(got),
        }
    }

    /// `HEAD bucket/key`; returns the object's `Content-Length`.
    pub async fn head_object(&mut self, bucket: &str, key: &str) -> Result<u64, OpError> {
        let resp = self
            .send(Method::HEAD, bucket, Some(key), ReqBody::Empty)
            .await?;
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        drain(resp).await?;
        Ok(len)
    }

    /// Deletes `bucket/key` (deleting a missing key succeeds, as in S3).
    pub async fn delete_object(&mut self, bucket: &str, key: &str) -> Result<(), OpError> {
        let resp = self
            .send(Method::DELETE, bucket, Some(key), ReqBody::Empty)
            .await?;
        drain(resp).await.map(|_| ())
    }

    /// Signs and sends one request; a non-2xx response becomes [`OpError::Status`].
    async fn send(
        &mut self,
        method: Method,
        bucket: &str,
        key: Option<&str>,
        body: ReqBody,
    ) -> Result<Response<Incoming>, OpError> {
        let mut path = String::with_capacity(2 + bucket.len() + key.map_or(0, str::len));
        path.push('/');
        path.push_str(&uri_encode(bucket, true));
        if let Some(key) = key {
            path.push('/');
            path.push_str(&uri_encode(key, false));
        }
        let date = amz_date(time::OffsetDateTime::now_utc());
        let host = self.host.to_str().unwrap_or_default();
        let extra: &[(&str, &str)] = if method == Method::PUT && key.is_some() {
            &self.put_headers
        } else {
            &[]
        };
        // Sorted by name, as SigV4 wants: every extra header is an x-amz-* after x-amz-date.
        let mut headers = vec![
            ("host", host),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            ("x-amz-date", &date),
        ];
        headers.extend_from_slice(extra);
        let authorization = self.signer.authorization(&SignRequest {
            method: method.as_str(),
            path: &path,
            query: &[],
            headers: &headers,
            payload_hash: UNSIGNED_PAYLOAD,
            amz_date: &date,
        });

        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::HOST, self.host.clone())
            .header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
            .header("x-amz-date", &date)
            .header(header::AUTHORIZATION, authorization);
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        if method == Method::PUT || method == Method::POST {
            builder = builder.header(header::CONTENT_LENGTH, body.content_length());
        }
        let req = builder
            .body(body)
            .map_err(|e| OpError::Transport(format!("building request: {e}")))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| OpError::Transport(error_chain(&e)))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(resp).await)
        }
    }
}

/// Reads a body to its end without keeping it (so the connection can be reused); returns its length.
async fn drain(resp: Response<Incoming>) -> Result<u64, OpError> {
    let mut body = resp.into_body();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| OpError::Transport(format!("reading body: {}", error_chain(&e))))?;
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
        }
    }
    Ok(len)
}

/// Builds the error for a non-2xx response from the S3 XML error body (`<Code>`, `<Message>`), if any.
async fn status_error(resp: Response<Incoming>) -> OpError {
    let status = resp.status();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            if text.len() < MAX_ERROR_BODY {
                text.extend_from_slice(data);
            }
        }
    }
    let text = String::from_utf8_lossy(&text);
    let code = xml_element(&text, "Code")
        .map(str::to_owned)
        // HEAD responses have no body: name the status instead.
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").replace(' ', ""));
    let message = xml_element(&text, "Message").unwrap_or_default().to_owned();
    OpError::Status {
        status,
        code,
        message,
    }
}

/// The text of the first `<name>...</name>` element.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

/// An error with its sources, which is where hyper puts the useful part ("connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_error_bodies() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
                   <Message>The specified key does not exist.</Message><Key>a</Key></Error>";
        assert_eq!(xml_element(xml, "Code"), Some("NoSuchKey"));
        assert_eq!(
            xml_element(xml, "Message"),
            Some("The specified key does not exist.")
        );
        assert_eq!(xml_element(xml, "Resource"), None);
        assert_eq!(xml_element("<Code>unterminated", "Code"), None);
    }

    #[test]
    fn formats_errors() {
        let e = OpError::Status {
            status: StatusCode::FORBIDDEN,
            code: "SignatureDoesNotMatch".into(),
            message: "nope".into(),
        };
        assert_eq!(e.to_string(), "HTTP 403 SignatureDoesNotMatch: nope");
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
    }

    #[test]
    fn validates_endpoints() {
        let signer = || Signer::new("a", "b", "us-east-1", "s3");
        assert!(S3Client::new("http://127.0.0.1:9000", signer(), 1).is_ok());
        assert!(S3Client::new("http://localhost:9000/", signer(), 1).is_ok());
        assert!(S3Client::new("https://localhost:9000", signer(), 1).is_err());
        assert!(S3Client::new("127.0.0.1:9000", signer(), 1).is_err());
        assert!(S3Client::new("http://localhost:9000/bucket", signer(), 1).is_err());
    }
}
