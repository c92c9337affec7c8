//! STS, served on the S3 port as AWS and MinIO serve it: the query API, a `POST /` with a form
//! body. It is an S3-port API, not an admin one, so it has its own route here, and each identity
//! flow its own module: `AssumeRole` ([`assume_role`], signed by a user), and the external
//! identities, whose calls are unsigned because the call carries the proof: AD/LDAP ([`ldap`]:
//! a user name and password), OpenID Connect ([`web_identity`]: a provider's token) and client
//! certificates ([`certificate`]: the mutual-TLS connection's).

pub mod assume_role;
pub mod certificate;
pub mod ldap;
pub mod web_identity;

use hyper::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};
use time::format_description::well_known::Rfc3339;

use cairn_control_plane::iam::Policy;

use crate::auth::authorize::condition_keys::{form_pairs, query_pairs};
use crate::auth::authorize::ACCOUNT;
use crate::auth::session::{Claims, DEFAULT_DURATION_SECS, MAX_DURATION_SECS, MIN_DURATION_SECS};
use crate::node::Node;

/// Largest form body read (a session policy is at most 64 KiB, URL-encoded up to 3x).
const MAX_BODY: usize = 256 * 1024;
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// STS calls are `POST /` with a form body, or with the `Action` in the query (as MinIO's
/// `AssumeRoleWithCertificate` examples send it); no S3 operation has either shape.
pub fn is_sts_request(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    let form = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let action_in_query = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("Action=")));
    method == Method::POST && uri.path() == "/" && (form || action_in_query)
}

/// An STS error: AWS's query-API error document (not S3's), which STS clients parse.
#[derive(Debug)]
pub(crate) struct StsError {
    pub(crate) status: http::StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl StsError {
    pub(crate) fn new(
        status: http::StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn denied(message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::FORBIDDEN, "AccessDenied", message)
    }
}

/// The decoded form of an STS call.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &str) -> Self {
        Self(form_pairs(body))
    }

    /// The body's pairs, then the query's (a body value wins).
    fn with_query(mut self, uri: &Uri) -> Self {
        self.0.extend(query_pairs(uri));
        self
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What an identity flow established: the session's claims, the user its response names, and
/// result elements particular to the flow (after `<Credentials>`).
pub(crate) struct Login {
    pub(crate) claims: Claims,
    pub(crate) user: String,
    pub(crate) extra: Vec<(&'static str, String)>,
}

/// `DurationSeconds`: 900 s to `max_secs` (at most 12 hours), 1 hour by default.
pub(crate) fn duration_secs(form: &Form, max_secs: u64) -> Result<u64, StsError> {
    let max_secs = max_secs.min(MAX_DURATION_SECS);
    match form.get("DurationSeconds") {
        None => Ok(DEFAULT_DURATION_SECS.min(max_secs)),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|d| (MIN_DURATION_SECS..=max_secs).contains(d))
            .ok_or_else(|| {
                StsError::bad(
                    "ValidationError",
                    format!(
                        "DurationSeconds {v:?} must be an integer from {MIN_DURATION_SECS} to {max_secs}"
                    ),
                )
            }),
    }
}

/// The optional inline session policy (`Policy`), which can only narrow the session.
pub(crate) fn session_policy(form: &Form) -> Result<Option<String>, StsError> {
    match form.get("Policy").filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => {
            Policy::parse_identity(p).map_err(|e| {
                StsError::bad("MalformedPolicyDocument", format!("session policy: {e}"))
            })?;
            Ok(Some(p.to_owned()))
        }
    }
}

/// Nanoseconds since the epoch `secs` seconds after `now_ns`.
pub(crate) fn expiry_after(now_ns: i64, secs: u64) -> i64 {
    now_ns.saturating_add((secs as i64).saturating_mul(1_000_000_000))
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml(status: http::StatusCode, body: String) -> S3Response<Body> {
    let mut r = S3Response::with_status(Body::from(body), status);
    r.headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    r
}

/// The STS API on the S3 port: `POST /` with a form body (see [`is_sts_request`]).
pub struct StsRoute {
    pub node: std::sync::Arc<Node>,
}

#[async_trait::async_trait]
impl S3Route for StsRoute {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        _e: &mut hyper::http::Extensions,
    ) -> bool {
        is_sts_request(method, uri, headers)
    }

    async fn check_access(&self, _req: &mut S3Request<Body>) -> S3Result<()> {
        // Anyone may ask: `AssumeRole` needs a signature, the external identities' calls carry
        // their proof in the form. The handler decides who gets credentials.
        Ok(())
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        handle(&self.node, &mut req).await
    }
}

/// The flows, by `Action`.
const ACTIONS: [&str; 5] = [
    "AssumeRole",
    "AssumeRoleWithLDAPIdentity",
    "AssumeRoleWithWebIdentity",
    "AssumeRoleWithClientGrants",
    "AssumeRoleWithCertificate",
];

#[tracing::instrument(skip_all, fields(action))]
async fn handle(node: &Node, req: &mut S3Request<Body>) -> S3Result<S3Response<Body>> {
    let Some(auth) = &node.iam else {
        return Err(s3_error!(NotImplemented, "STS needs IAM"));
    };
    let body = req
        .input
        .store_all_limited(MAX_BODY)
        .await
        .map_err(|_| s3_error!(InvalidRequest, "STS request body is too large"))?;
    let form = Form::parse(&String::from_utf8_lossy(&body)).with_query(&req.uri);
    let request_id = match req.extensions.get::<crate::auth::RequestId>() {
        Some(id) => id.0.clone(),
        None => auth.with_rng(|r| format!("{:016X}", r.next_u64())),
    };
    let now_ns = auth.clock.now_ns();
    let action = match form.get("Action") {
        Some(a) => ACTIONS.iter().copied().find(|x| *x == a).ok_or_else(|| {
            StsError::bad(
                "InvalidAction",
                format!("Could not find operation {a} for version 2011-06-15"),
            )
        }),
        None => Err(StsError::bad("MissingAction", "Action is required")),
    };
    let login = match action {
        Err(e) => Err(e),
        Ok(action) => {
            tracing::Span::current().record("action", action);
            match action {
                "AssumeRole" => assume_role::validate(auth, req, &form, now_ns),
                "AssumeRoleWithLDAPIdentity" => ldap::validate(node, &form, now_ns).await,
                "AssumeRoleWithCertificate" => certificate::validate(node, req, &form, now_ns),
                _ => web_identity::validate(node, action, &form, now_ns).await,
            }
            .map(|login| (action, login))
        }
    };
    match login {
        Ok((action, login)) => {
            let issued = auth.with_rng(|r| auth.iam.sessions.issue(&login.claims, r));
            let user = &login.user;
            let session = form.get("RoleSessionName").unwrap_or(user);
            let expiration = time::OffsetDateTime::from_unix_timestamp(
                login.claims.expires_ns.div_euclid(1_000_000_000),
            )
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
            let extra: String = login
                .extra
                .iter()
                .map(|(tag, value)| format!("<{tag}>{}</{tag}>", escape(value)))
                .collect();
            tracing::info!(parent = %user, access_key = %issued.access_key, "STS issued credentials");
            Ok(xml(
                http::StatusCode::OK,
                format!(
                    "<{action}Response xmlns=\"{XMLNS}\"><{action}Result>\
                     <AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{user}/{session}</Arn>\
                     <AssumedRoleId>{ak}:{session}</AssumedRoleId></AssumedRoleUser>\
                     <Credentials><AccessKeyId>{ak}</AccessKeyId>\
                     <SecretAccessKey>{secret}</SecretAccessKey>\
                     <SessionToken>{token}</SessionToken>\
                     <Expiration>{expiration}</Expiration></Credentials>{extra}\
                     </{action}Result><ResponseMetadata><RequestId>{request_id}</RequestId>\
                     </ResponseMetadata></{action}Response>",
                    user = escape(user),
                    session = escape(session),
                    ak = issued.access_key,
                    secret = escape(&issued.secret_key),
                    token = escape(&issued.session_token),
                ),
            ))
        }
        Err(e) => {
            let who = req.credentials.as_ref().map(|c| c.access_key.as_str());
            tracing::info!(access_key = ?who, code = e.code, "STS refused");
            Ok(xml(
                e.status,
                error_document(e.code, &e.message, &request_id),
            ))
        }
    }
}

/// AWS's query-API error document, which STS clients parse (S3's `<Error>` root they do not).
fn error_document(code: &str, message: &str, request_id: &str) -> String {
    document(&escape(code), &escape(message), &escape(request_id))
}

/// [`error_document`] from text that is already escaped XML.
fn document(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>{request_id}</RequestId></ErrorResponse>"
    )
}

/// The text of the first `<tag>` element of an XML document (S3 error documents are flat).
fn element<'a>(doc: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = doc.find(&open)? + open.len();
    let len = doc[start..].find(&format!("</{tag}>"))?;
    Some(&doc[start..start + len])
}

/// Rewrites an S3 error response to an STS request (s3s refuses a bad signature or an unknown
/// key before the STS handler runs) as STS's error document, keeping the code and status.
pub async fn as_sts_error(resp: http::Response<Body>) -> http::Response<Body> {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return http::Response::from_parts(parts, Body::empty()),
    };
    let doc = String::from_utf8_lossy(&bytes);
    let rewritten = match (doc.contains("<ErrorResponse"), element(&doc, "Code")) {
        // The S3 document's text is escaped already: it is moved over as it is.
        (false, Some(code)) => document(
            code,
            element(&doc, "Message").unwrap_or_default(),
            element(&doc, "RequestId").unwrap_or_default(),
        ),
        _ => return http::Response::from_parts(parts, Body::from(bytes)),
    };
    let mut parts = parts;
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    parts.headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    http::Response::from_parts(parts, Body::from(rewritten))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn s3_errors_become_sts_error_documents() {
        let s3 =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidAccessKeyId</Code>\
                  <Message>no such key &amp; more</Message><RequestId>R1</RequestId></Error>";
        let resp = http::Response::builder()
            .status(403)
            .header(hyper::header::CONTENT_LENGTH, s3.len())
            .body(Body::from(s3.to_owned()))
            .unwrap();
        let out = as_sts_error(resp).await;
        assert_eq!(out.status(), 403);
        assert!(out.headers().get(hyper::header::CONTENT_LENGTH).is_none());
        let body = http_body_util::BodyExt::collect(out.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            document("InvalidAccessKeyId", "no such key &amp; more", "R1")
        );
        // A document in STS's format already is left alone.
        let sts = error_document("ValidationError", "x < y", "R2");
        let resp = http::Response::builder()
            .status(400)
            .body(Body::from(sts.clone()))
            .unwrap();
        let body = http_body_util::BodyExt::collect(as_sts_error(resp).await.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(String::from_utf8_lossy(&body), sts);
        assert!(sts.contains("x &lt; y"));
    }
}
