//! Who may scrape, as MinIO decides it: anyone with `CAIRN_PROMETHEUS_AUTH_TYPE=public`;
//! otherwise a bearer token from `cairn admin prometheus generate` (see
//! [`crate::admin::prometheus`]) or a SigV4-signed request (s3s checks the signature, then this
//! route), either way of an identity whose policies allow `admin:Prometheus` (root always).
//! Everyone else gets 403 AccessDenied and no figure.

use std::sync::Arc;

use hyper::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};

use super::{Metrics, Scope};
use crate::admin::prometheus::{self, ACTION};
use crate::auth::authorize::condition_keys::request_keys;
use crate::auth::authorize::Signer;
use crate::auth::ConnInfo;
use crate::node::Node;

/// How scrapes are authorized (`CAIRN_PROMETHEUS_AUTH_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthType {
    /// A bearer token or a SigV4 signature (MinIO's `jwt`, the default).
    #[default]
    Token,
    /// No authentication: for a scraper on a trusted network.
    Public,
}

impl AuthType {
    pub fn parse(value: Option<&str>) -> anyhow::Result<Self> {
        match value.map(str::trim).unwrap_or_default() {
            "" | "jwt" => Ok(AuthType::Token),
            "public" => Ok(AuthType::Public),
            other => anyhow::bail!(
                "{}: expected `jwt` or `public`, not {other:?}",
                prometheus::AUTH_TYPE_ENV
            ),
        }
    }
}

/// The scope a metrics path asks for (`None`: not a metrics path).
pub fn scope(path: &str) -> Option<Scope> {
    match path {
        prometheus::SITE_PATH => Some(Scope::Site),
        prometheus::NODE_PATH => Some(Scope::Node),
        _ => None,
    }
}

/// The token of an `Authorization: Bearer ...` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `signer` may scrape.
fn allowed(node: &Node, signer: Signer<'_>, keys: &[(String, Vec<String>)]) -> bool {
    let ok = match &node.iam {
        Some(auth) => auth
            .authorize(Some(signer), &[(ACTION, None)], keys)
            .is_ok(),
        None => node.credentials.is_root_key(signer.access_key),
    };
    if !ok {
        tracing::info!(access_key = %signer.access_key, "metrics scrape denied");
    }
    ok
}

fn condition_keys(
    node: &Node,
    headers: &HeaderMap,
    uri: &Uri,
    conn: Option<ConnInfo>,
) -> Vec<(String, Vec<String>)> {
    request_keys(headers, uri, conn, "metrics", node.objects.clock.now())
}

/// Whether a bearer `token` lets its holder scrape now.
pub fn token_allowed(
    node: &Node,
    token: &str,
    headers: &HeaderMap,
    uri: &Uri,
    conn: Option<ConnInfo>,
) -> bool {
    let now = node.objects.clock.now_ns() / 1_000_000_000;
    let secret_of = |k: &str| node.credentials.lookup(k).map(|(_, secret)| secret);
    let Some(access_key) = prometheus::verify(token, secret_of, now) else {
        tracing::info!("metrics scrape with an invalid bearer token denied");
        return false;
    };
    let keys = condition_keys(node, headers, uri, conn);
    allowed(node, Signer::from(access_key.as_str()), &keys)
}

/// The metrics paths on the s3s side: SigV4-signed scrapes (s3s has verified the signature).
pub struct MetricsRoute {
    pub node: Arc<Node>,
    pub metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl S3Route for MetricsRoute {
    fn is_match(
        &self,
        _m: &Method,
        uri: &Uri,
        _h: &HeaderMap,
        _e: &mut hyper::http::Extensions,
    ) -> bool {
        scope(uri.path()).is_some()
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let denied = || s3_error!(AccessDenied, "Access Denied.");
        let Some(c) = &req.credentials else {
            return Err(denied());
        };
        let token = crate::admin::signer_token(req);
        let signer = Signer {
            access_key: &c.access_key,
            session_token: token.as_deref(),
        };
        let keys = condition_keys(
            &self.node,
            &req.headers,
            &req.uri,
            req.extensions.get().copied(),
        );
        if allowed(&self.node, signer, &keys) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        if req.method != Method::GET {
            return Err(s3_error!(MethodNotAllowed, "metrics are read with GET"));
        }
        let scope = scope(req.uri.path()).unwrap_or(Scope::Node);
        let text = self.metrics.scrape(&self.node, scope).await;
        let mut r = S3Response::new(Body::from(text));
        r.headers
            .insert(hyper::header::CONTENT_TYPE, super::content_type());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_type_and_bearer_header() {
        assert_eq!(AuthType::parse(None).unwrap(), AuthType::Token);
        assert_eq!(AuthType::parse(Some("jwt")).unwrap(), AuthType::Token);
        assert_eq!(AuthType::parse(Some(" public ")).unwrap(), AuthType::Public);
        assert!(AuthType::parse(Some("open")).is_err());
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            hyper::header::AUTHORIZATION,
            "Bearer a.b.c".parse().unwrap(),
        );
        assert_eq!(bearer(&h), Some("a.b.c"));
        h.insert(
            hyper::header::AUTHORIZATION,
            "bearer  a.b.c ".parse().unwrap(),
        );
        assert_eq!(bearer(&h), Some("a.b.c"));
        h.insert(
            hyper::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=x".parse().unwrap(),
        );
        assert_eq!(bearer(&h), None, "a SigV4 request goes on to s3s");
        assert_eq!(scope("/cairn/metrics"), Some(Scope::Site));
        assert_eq!(scope("/cairn/metrics/node"), Some(Scope::Node));
        assert_eq!(scope("/cairn/metrics/other"), None);
    }
}
