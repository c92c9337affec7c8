//! The condition keys a request carries (`aws:SourceIp`, `s3:prefix`, the signature version, the
//! object headers of a write...), read from its connection, headers and query string, and the
//! query-string and form parsing they share with the admin API and STS. The principal's keys and
//! the time are added per decision by the [`Authorizer`](super::Authorizer).

use hyper::{HeaderMap, Uri};

use crate::auth::ConnInfo;
use crate::tagging::parse_tagging_header;

/// `name=value` pairs of the query string, percent-decoded.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    form_pairs(uri.query().unwrap_or(""))
}

/// `name=value` pairs of a query string or `application/x-www-form-urlencoded` body.
pub fn form_pairs(form: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    form.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The STS session token a request carries, in the header or (presigned) the query string.
pub fn session_token(headers: &HeaderMap, query: &[(String, String)]) -> Option<String> {
    header(headers, "x-amz-security-token")
        .map(str::to_owned)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-security-token"))
                .map(|(_, v)| v.clone())
        })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The signature version and auth type (`s3:signatureversion`, `s3:authType`) of a request.
fn signature_keys(
    headers: &HeaderMap,
    query: &[(String, String)],
    op: &str,
) -> [(&'static str, &'static str); 2] {
    let has = |n: &str| query.iter().any(|(k, _)| k == n);
    let auth = header(headers, "authorization").unwrap_or("");
    let (version, kind) = if op == "PostObject" {
        ("AWS4-HMAC-SHA256", "POST")
    } else if auth.starts_with("AWS4-") {
        ("AWS4-HMAC-SHA256", "REST-HEADER")
    } else if auth.starts_with("AWS ") {
        ("AWS", "REST-HEADER")
    } else if has("X-Amz-Algorithm") {
        ("AWS4-HMAC-SHA256", "REST-QUERY-STRING")
    } else if has("AWSAccessKeyId") {
        ("AWS", "REST-QUERY-STRING")
    } else {
        ("", "")
    };
    [("s3:signatureversion", version), ("s3:authType", kind)]
}

/// The condition keys a request carries (the principal's and the time are added per decision).
/// A POST upload carries its object headers as form fields, read once s3s has parsed them
/// ([`object_keys`] in the `post_object` hook), never from its HTTP headers.
pub fn request_keys(
    headers: &HeaderMap,
    uri: &Uri,
    conn: Option<ConnInfo>,
    op: &str,
    now: time::OffsetDateTime,
) -> Vec<(String, Vec<String>)> {
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if !v.is_empty() {
            keys.push((k.to_owned(), vec![v.to_owned()]));
        }
    };
    if let Some(c) = conn {
        set("aws:SourceIp", &c.peer.ip().to_canonical().to_string());
    }
    let secure = conn.is_some_and(|c| c.secure);
    set("aws:SecureTransport", if secure { "true" } else { "false" });
    for (key, h) in [("aws:Referer", "referer"), ("aws:UserAgent", "user-agent")] {
        if let Some(v) = header(headers, h) {
            set(key, v);
        }
    }
    let query = query_pairs(uri);
    for (key, q) in [
        ("s3:prefix", "prefix"),
        ("s3:delimiter", "delimiter"),
        ("s3:max-keys", "max-keys"),
        ("s3:versionid", "versionId"),
    ] {
        if let Some((_, v)) = query.iter().find(|(k, _)| k == q) {
            // An empty prefix is still a prefix (`s3:prefix` = "").
            keys_push(&mut keys, key, v);
        }
    }
    for (k, v) in signature_keys(headers, &query, op) {
        if !v.is_empty() {
            keys.push((k.to_owned(), vec![v.to_owned()]));
        }
    }
    if op != "PostObject" {
        keys.extend(object_keys(headers, now));
    }
    keys
}

/// The condition keys of the object headers of a write (SSE, lock, ACL, storage class, copy
/// source, tags).
pub(super) fn object_keys(
    headers: &HeaderMap,
    now: time::OffsetDateTime,
) -> Vec<(String, Vec<String>)> {
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if !v.is_empty() {
            keys.push((k.to_owned(), vec![v.to_owned()]));
        }
    };
    for (key, h) in [
        (
            "s3:x-amz-server-side-encryption",
            "x-amz-server-side-encryption",
        ),
        (
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
            "x-amz-server-side-encryption-aws-kms-key-id",
        ),
        (
            "s3:x-amz-server-side-encryption-customer-algorithm",
            "x-amz-server-side-encryption-customer-algorithm",
        ),
        ("s3:object-lock-mode", "x-amz-object-lock-mode"),
        (
            "s3:object-lock-retain-until-date",
            "x-amz-object-lock-retain-until-date",
        ),
        ("s3:object-lock-legal-hold", "x-amz-object-lock-legal-hold"),
        ("s3:x-amz-acl", "x-amz-acl"),
        ("s3:x-amz-copy-source", "x-amz-copy-source"),
        ("s3:x-amz-metadata-directive", "x-amz-metadata-directive"),
        ("s3:x-amz-storage-class", "x-amz-storage-class"),
    ] {
        if let Some(v) = header(headers, h) {
            set(key, v);
        }
    }
    if let Some(until) = header(headers, "x-amz-object-lock-retain-until-date").and_then(|v| {
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
    }) {
        let days = ((until - now).whole_seconds().max(0) + 86_399) / 86_400;
        set("s3:object-lock-remaining-retention-days", &days.to_string());
    }
    // Decoded by the very function that decodes the tags stored (`+` is a space); tags that do
    // not decode give no key, and the handler refuses them (InvalidArgument).
    if let Ok(tags) = parse_tagging_header(header(headers, "x-amz-tagging")) {
        for t in tags {
            keys.push((format!("s3:RequestObjectTag/{}", t.key), vec![t.value]));
        }
    }
    keys
}

pub(super) fn keys_push(keys: &mut Vec<(String, Vec<String>)>, key: &str, value: &str) {
    keys.push((key.to_owned(), vec![value.to_owned()]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keys_come_from_headers_and_query() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "AWS admin:sig".parse().unwrap());
        h.insert("user-agent", "boto".parse().unwrap());
        h.insert(
            "x-amz-tagging",
            "team=red&x=1&class=top+secret&c%20d=e%2Bf".parse().unwrap(),
        );
        let uri: Uri = "/b?list-type=2&prefix=home%2Fa&max-keys=10"
            .parse()
            .unwrap();
        let keys = request_keys(
            &h,
            &uri,
            None,
            "ListObjectsV2",
            time::OffsetDateTime::UNIX_EPOCH,
        );
        let get = |k: &str| {
            keys.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v[0].as_str())
        };
        assert_eq!(get("s3:prefix"), Some("home/a"));
        assert_eq!(get("s3:max-keys"), Some("10"));
        assert_eq!(get("s3:signatureversion"), Some("AWS"));
        assert_eq!(get("s3:authType"), Some("REST-HEADER"));
        assert_eq!(get("aws:UserAgent"), Some("boto"));
        assert_eq!(get("s3:RequestObjectTag/team"), Some("red"));
        // Decoded as the stored tags are: `+` is a space, `%2B` a plus.
        assert_eq!(get("s3:RequestObjectTag/class"), Some("top secret"));
        assert_eq!(get("s3:RequestObjectTag/c d"), Some("e+f"));
        assert_eq!(get("aws:SecureTransport"), Some("false"));
        assert_eq!(get("aws:SourceIp"), None);
    }
}
