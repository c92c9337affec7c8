//! CORS on the S3 port, as AWS answers it: the preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`, unauthenticated as a browser sends it) and the headers an
//! actual request from an allowed origin gets on its response, error responses included.
//!
//! Rules come from the bucket's configuration in the applied control-plane state, without a
//! round trip, since anyone may send a preflight. A missing bucket answers as a bucket without
//! rules, so a preflight tells nobody whether a bucket exists. The match is one pass over rules
//! the control plane bounds (`cairn_control_plane::cors`), times the requested headers, capped
//! here.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use s3s::Body;

use cairn_control_plane::cors::{self, Grant};
use cairn_control_plane::SiteState;

/// Headers a preflight may ask for; more are refused without matching them.
const MAX_REQUESTED_HEADERS: usize = 64;

const NOT_ENABLED: &str = "CORSResponse: CORS is not enabled for this bucket.";
/// AWS's wording, its spelling included.
const NOT_ALLOWED: &str = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.";

/// The bucket a request addresses (path style) and whether it names a key; `None` for requests
/// to no bucket and for Cairn's own APIs on the port.
fn target(uri: &Uri) -> Option<(String, bool)> {
    let path = uri.path();
    if path.starts_with("/cairn/health/")
        || path.starts_with(crate::admin::PREFIX)
        || super::metrics::guard::scope(path).is_some()
    {
        return None;
    }
    let rest = path.strip_prefix('/')?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let bucket = percent_encoding::percent_decode_str(bucket)
        .decode_utf8()
        .ok()?;
    Some((bucket.into_owned(), !key.is_empty()))
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn error(status: StatusCode, code: &str, message: &str, extra: &str) -> Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message>{extra}</Error>",
        crate::sts::escape(message)
    );
    let mut r = Response::new(Body::from(xml));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

/// A preflight no rule allows: 403 `AccessForbidden`, naming the method and what was asked for.
fn forbidden(message: &str, method: &str, object: bool) -> Response<Body> {
    let resource = if object { "OBJECT" } else { "BUCKET" };
    let extra = format!("<Method>{method}</Method><ResourceType>{resource}</ResourceType>");
    error(StatusCode::FORBIDDEN, "AccessForbidden", message, &extra)
}

/// The headers that grant `origin` what `grant`'s rule allows.
fn allow(h: &mut HeaderMap, grant: &Grant<'_>, origin: &HeaderValue) {
    let rule = grant.rule;
    if grant.any_origin {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let mut list = |name: header::HeaderName, values: &[String]| {
        if let Ok(v) = HeaderValue::from_str(&values.join(", ")) {
            h.insert(name, v);
        }
    };
    list(header::ACCESS_CONTROL_ALLOW_METHODS, &rule.allowed_methods);
    if !rule.expose_headers.is_empty() {
        list(header::ACCESS_CONTROL_EXPOSE_HEADERS, &rule.expose_headers);
    }
    if let Some(s) = rule.max_age_seconds {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, s.into());
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
        ),
    );
}

/// The answer to a preflight `OPTIONS` request; `None` when the request is not one for a bucket
/// (it goes on as before).
pub fn preflight(state: &SiteState, uri: &Uri, headers: &HeaderMap) -> Option<Response<Body>> {
    let (bucket, object) = target(uri)?;
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "BadRequest", m, "");
    let (Some(origin), Some(origin_text)) = (headers.get(header::ORIGIN), text(headers, "origin"))
    else {
        return Some(bad(
            "Insufficient information. Origin request header needed.",
        ));
    };
    let method = match text(headers, "access-control-request-method") {
        Some(m) if cors::METHODS.contains(&m) => m,
        m => {
            return Some(bad(&format!(
                "Invalid Access-Control-Request-Method: {}",
                m.unwrap_or("null")
            )))
        }
    };
    let rules = state.bucket(&bucket).map_or(&[][..], |b| &b.cors[..]);
    if rules.is_empty() {
        return Some(forbidden(NOT_ENABLED, method, object));
    }
    let asked = text(headers, "access-control-request-headers");
    let requested: Vec<String> = asked
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .take(MAX_REQUESTED_HEADERS + 1)
        .collect();
    let names: Vec<&str> = requested.iter().map(String::as_str).collect();
    let grant = (names.len() <= MAX_REQUESTED_HEADERS)
        .then(|| cors::find(rules, origin_text, method, &names))
        .flatten();
    let Some(grant) = grant else {
        return Some(forbidden(NOT_ALLOWED, method, object));
    };
    let mut r = Response::new(Body::empty());
    allow(r.headers_mut(), &grant, origin);
    if asked.is_some() {
        if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
            r.headers_mut()
                .insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
    }
    Some(r)
}

/// What an actual request from a browser needs for its answer's CORS headers, taken before the
/// request is served.
pub struct Actual {
    bucket: String,
    origin: HeaderValue,
    method: Method,
}

impl Actual {
    /// `None` for a request without `Origin` (no browser asked), a preflight, or no bucket.
    pub fn of<B>(req: &Request<B>) -> Option<Actual> {
        let origin = req.headers().get(header::ORIGIN)?;
        if req.method() == Method::OPTIONS {
            return None;
        }
        let (bucket, _) = target(req.uri())?;
        Some(Actual {
            bucket,
            origin: origin.clone(),
            method: req.method().clone(),
        })
    }

    /// `resp` with the headers of the first rule allowing the origin and method, if one does.
    pub fn answer(self, state: &SiteState, mut resp: Response<Body>) -> Response<Body> {
        let Some(bucket) = state.bucket(&self.bucket) else {
            return resp;
        };
        let Ok(origin) = self.origin.to_str() else {
            return resp;
        };
        if let Some(grant) = cors::find(&bucket.cors, origin, self.method.as_str(), &[]) {
            allow(resp.headers_mut(), &grant, &self.origin);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bucket_paths_are_cors_targets() {
        let t = |p: &str| target(&p.parse().unwrap());
        assert_eq!(t("/photos/a/b.jpg"), Some(("photos".into(), true)));
        assert_eq!(t("/photos"), Some(("photos".into(), false)));
        assert_eq!(t("/photos/"), Some(("photos".into(), false)));
        assert_eq!(t("/"), None);
        assert_eq!(t("/cairn/health/live"), None);
        assert_eq!(t(&format!("{}info", crate::admin::PREFIX)), None);
        assert_eq!(t("/cairn/data.bin"), Some(("cairn".into(), true)));
    }
}
