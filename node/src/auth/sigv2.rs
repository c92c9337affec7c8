//! The SigV2 checks s3s 0.14 leaves out (it verifies the signature, compared in variable time,
//! and nothing else):
//! - a header-signed request is accepted only within AWS's 15 minutes of its `x-amz-date` or
//!   `Date`, so a captured request cannot be replayed for ever;
//! - SigV2 signs only a fixed list of sub-resources; a request naming any other parameter that
//!   could pick the operation (`legal-hold`, `retention`, ...) or repeating one is refused, so a
//!   signed upload cannot be turned into another operation by appending to its query;
//! - the signature is recomputed here and compared in constant time; s3s's own comparison then
//!   only ever sees correct signatures.
//!
//! The string to sign is s3s's exactly (`s3s::sig_v2` is private), path-style only: Cairn
//! configures no virtual-host domain.

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, StatusCode, Uri};
use subtle::ConstantTimeEq;

use super::request::{Query, Rejection};
use super::CredentialStore;

/// AWS's window around the server's time for a header-signed request.
pub const MAX_SKEW: time::Duration = time::Duration::minutes(15);

/// The sub-resources SigV2 signs, in the order they enter the string to sign (s3s's list, which
/// is botocore's).
const SIGNED: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Parameters SigV2 leaves unsigned that only narrow the listing the signed part names, and the
/// presigned URL's own fields. Any other parameter could select another operation.
const UNSIGNED: &[&str] = &[
    "AWSAccessKeyId",
    "Expires",
    "Signature",
    "continuation-token",
    "delimiter",
    "encoding-type",
    "fetch-owner",
    "key-marker",
    "list-type",
    "marker",
    "max-keys",
    "max-parts",
    "max-uploads",
    "part-number-marker",
    "prefix",
    "start-after",
    "upload-id-marker",
    "version-id-marker",
];

/// `Authorization: AWS ACCESS_KEY:SIGNATURE`, parsed as s3s parses it.
pub struct HeaderAuth<'a> {
    pub access_key: &'a str,
    pub signature: &'a str,
}

impl<'a> HeaderAuth<'a> {
    pub fn parse(value: &'a str) -> Option<HeaderAuth<'a>> {
        let (access_key, signature) = value.strip_prefix("AWS ")?.split_once(':')?;
        Some(HeaderAuth {
            access_key,
            signature,
        })
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Header,
    Presigned,
}

fn unsupported() -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    )
}

fn mismatch() -> Rejection {
    Rejection::new(
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
}

/// Every parameter is signed or harmless unsigned, and none is repeated (s3s leaves a repeated
/// sub-resource out of the string to sign).
fn check_parameters(query: &Query) -> Result<(), Rejection> {
    let mut seen: Vec<&str> = Vec::new();
    for name in query.names() {
        if seen.contains(&name) || !(SIGNED.contains(&name) || UNSIGNED.contains(&name)) {
            return Err(unsupported());
        }
        seen.push(name);
    }
    Ok(())
}

/// The request's UTF-8 values of a header, read as s3s reads them (`from_utf8`, not
/// `HeaderValue::to_str`, which drops any non-ASCII value s3s would still parse); s3s ignores
/// the others.
pub(super) fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .collect()
}

fn unique<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    match values(headers, name)[..] {
        [v] => Some(v),
        _ => None,
    }
}

/// The time a header-signed request claims: `x-amz-date` if given, else `Date`, in the HTTP
/// date format (RFC 1123, `GMT` or a numeric zone) or ISO 8601 basic (`20260101T000000Z`).
fn request_time(headers: &HeaderMap) -> Option<time::OffsetDateTime> {
    let raw = ["x-amz-date", "date"]
        .into_iter()
        .map(|name| values(headers, name))
        .find(|v| !v.is_empty())?;
    let [raw] = raw[..] else { return None };
    let raw = raw.trim();
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc2822)
        .ok()
        .or_else(|| {
            let iso =
                time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
            time::PrimitiveDateTime::parse(raw, iso)
                .ok()
                .map(time::PrimitiveDateTime::assume_utc)
        })
}

/// s3s's SigV2 string to sign.
fn string_to_sign(
    mode: Mode,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    query: &Query,
) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(method.as_str());
    s.push('\n');
    s.push_str(unique(headers, "content-md5").unwrap_or_default());
    s.push('\n');
    s.push_str(unique(headers, "content-type").unwrap_or_default());
    s.push('\n');
    match mode {
        Mode::Header => {
            if unique(headers, "x-amz-date").is_none() {
                s.push_str(unique(headers, "date").unwrap_or_default());
            }
        }
        Mode::Presigned => s.push_str(query.get_unique("Expires").unwrap_or_default()),
    }
    s.push('\n');
    let mut amz: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| n.starts_with("x-amz-"))
        .collect();
    amz.sort_unstable();
    amz.dedup();
    for name in amz {
        let vs = values(headers, name);
        if vs.is_empty() {
            continue;
        }
        s.push_str(name);
        s.push(':');
        s.push_str(&vs.iter().map(|v| v.trim()).collect::<Vec<_>>().join(","));
        s.push('\n');
    }
    s.push_str(uri.path());
    let mut first = true;
    for name in SIGNED {
        if let Some(v) = query.get_unique(name) {
            s.push(if first { '?' } else { '&' });
            first = false;
            s.push_str(name);
            if !v.is_empty() {
                s.push('=');
                s.push_str(v);
            }
        }
    }
    s
}

pub(super) fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        <Hmac<sha1::Sha1>>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares the signature in constant time. An unknown access key passes: s3s answers it with
/// `InvalidAccessKeyId`.
fn verify(
    credentials: &dyn CredentialStore,
    access_key: &str,
    provided: &str,
    string_to_sign: impl FnOnce() -> String,
) -> Result<(), Rejection> {
    let Some((_, secret)) = credentials.lookup(access_key) else {
        return Ok(());
    };
    let expected = signature(&secret, &string_to_sign());
    if bool::from(expected.as_bytes().ct_eq(provided.as_bytes())) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

/// A header-signed SigV2 request.
pub fn check_header(
    auth: &HeaderAuth<'_>,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    query: &Query,
    credentials: &dyn CredentialStore,
    now: time::OffsetDateTime,
) -> Result<(), Rejection> {
    check_parameters(query)?;
    let Some(at) = request_time(headers) else {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    if (now - at).abs() > MAX_SKEW {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ));
    }
    verify(credentials, auth.access_key, auth.signature, || {
        string_to_sign(Mode::Header, method, headers, uri, query)
    })
}

/// A presigned SigV2 URL (`Expires` itself s3s checks). Missing fields are s3s's to refuse.
pub fn check_presigned(
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    query: &Query,
    credentials: &dyn CredentialStore,
) -> Result<(), Rejection> {
    check_parameters(query)?;
    let (Some(access_key), Some(sig)) = (
        query.get_unique("AWSAccessKeyId"),
        query.get_unique("Signature"),
    ) else {
        return Ok(());
    };
    // s3s decodes the signature once more after the query string.
    let Ok(sig) = percent_encoding::percent_decode_str(sig).decode_utf8() else {
        return Ok(());
    };
    verify(credentials, access_key, &sig, || {
        string_to_sign(Mode::Presigned, method, headers, uri, query)
    })
}

/// The SigV2 signature of a browser-form upload (fields `AWSAccessKeyId`, `policy`,
/// `signature`, each as every spelling of its name in the body gives it: see
/// `request::check_post_form`). s3s compares it in variable time, so it is compared here first,
/// in constant time; a form s3s would take as SigV2 reaches s3s only with the right signature.
/// Each field must have one value wherever it appears, or no reading of the form is checked.
pub fn check_post_form<'a>(
    signature: impl Iterator<Item = Option<&'a str>>,
    access_key: impl Iterator<Item = Option<&'a str>>,
    policy: impl Iterator<Item = Option<&'a str>>,
    credentials: &dyn CredentialStore,
) -> Result<(), Rejection> {
    /// `Ok(None)`: the field is not there; `Err`: it has a malformed or a second, other value.
    fn one<'a>(mut values: impl Iterator<Item = Option<&'a str>>) -> Result<Option<&'a str>, ()> {
        let Some(first) = values.next() else {
            return Ok(None);
        };
        let first = first.ok_or(())?;
        values
            .all(|v| v == Some(first))
            .then_some(Some(first))
            .ok_or(())
    }
    let ambiguous = || {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "The form fields AWSAccessKeyId, policy and signature must each be given once, on one line",
        )
    };
    let Some(sig) = one(signature).map_err(|()| ambiguous())? else {
        return Ok(());
    };
    let (Some(access_key), Some(policy)) = (
        one(access_key).map_err(|()| ambiguous())?,
        one(policy).map_err(|()| ambiguous())?,
    ) else {
        return Err(ambiguous());
    };
    // The string to sign of a SigV2 form is its base64 policy, as sent.
    verify(credentials, access_key, sig, || policy.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::RootCredentials;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn creds() -> RootCredentials {
        RootCredentials {
            access_key: AK.into(),
            secret_key: SK.into(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn at(s: &str) -> time::OffsetDateTime {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822).unwrap()
    }

    #[test]
    fn sorted_like_s3s() {
        for w in SIGNED.windows(2) {
            assert!(w[0] < w[1], "{w:?}");
        }
    }

    /// The examples of AWS's SigV2 documentation (as s3s's own tests carry them, path style).
    #[test]
    fn string_to_sign_matches_the_aws_examples() {
        let h = headers(&[("date", "Tue, 27 Mar 2007 19:44:46 +0000")]);
        let uri: Uri = "/awsexamplebucket1/?acl".parse().unwrap();
        let sts = string_to_sign(Mode::Header, &Method::GET, &h, &uri, &Query::parse(&uri));
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl"
        );
        assert_eq!(signature(SK, &sts), "82ZHiFIjc+WbcwFKGUVEQspPn+0=");

        let h = headers(&[
            ("date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ("x-amz-acl", "public-read"),
            ("content-type", "application/x-download"),
            ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("x-amz-meta-reviewedby", "joe@example.com"),
            ("x-amz-meta-reviewedby", "jane@example.com"),
            ("x-amz-meta-filechecksum", "0x02661779"),
        ]);
        let uri: Uri = "/static.example.com/db-backup.dat.gz".parse().unwrap();
        let sts = string_to_sign(Mode::Header, &Method::PUT, &h, &uri, &Query::parse(&uri));
        assert_eq!(
            sts,
            "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n\
             x-amz-acl:public-read\nx-amz-meta-filechecksum:0x02661779\n\
             x-amz-meta-reviewedby:joe@example.com,jane@example.com\n/static.example.com/db-backup.dat.gz"
        );
    }

    fn signed_get(date: &str, path: &str) -> (HeaderMap, Uri) {
        let uri: Uri = path.parse().unwrap();
        let mut h = headers(&[("date", date)]);
        let sts = string_to_sign(Mode::Header, &Method::GET, &h, &uri, &Query::parse(&uri));
        h.insert(
            http::header::AUTHORIZATION,
            format!("AWS {AK}:{}", signature(SK, &sts)).parse().unwrap(),
        );
        (h, uri)
    }

    fn run(h: &HeaderMap, uri: &Uri, now: time::OffsetDateTime) -> Result<(), Rejection> {
        let auth = h[http::header::AUTHORIZATION].to_str().unwrap();
        let auth = HeaderAuth::parse(auth).unwrap();
        check_header(
            &auth,
            &Method::GET,
            h,
            uri,
            &Query::parse(uri),
            &creds(),
            now,
        )
    }

    #[test]
    fn header_auth_is_fresh_and_verified() {
        let date = "Tue, 27 Mar 2007 19:44:46 GMT";
        let (h, uri) = signed_get(date, "/bkt/key?versionId=v1");
        assert_eq!(run(&h, &uri, at(date)), Ok(()));
        assert_eq!(run(&h, &uri, at("Tue, 27 Mar 2007 19:59:46 GMT")), Ok(()));
        for late in [
            "Tue, 27 Mar 2007 19:59:47 GMT",
            "Tue, 27 Mar 2007 19:29:45 GMT",
        ] {
            assert_eq!(
                run(&h, &uri, at(late)).unwrap_err().code,
                "RequestTimeTooSkewed"
            );
        }
        // Another key under the same signature, or a flipped signature, does not verify.
        let other: Uri = "/bkt/other?versionId=v1".parse().unwrap();
        assert_eq!(run(&h, &other, at(date)), Err(mismatch()));
        let mut bad = h.clone();
        bad.insert(
            http::header::AUTHORIZATION,
            format!("AWS {AK}:AAAA").parse().unwrap(),
        );
        assert_eq!(run(&bad, &uri, at(date)), Err(mismatch()));
        // Unknown keys are left to s3s.
        bad.insert(
            http::header::AUTHORIZATION,
            "AWS NOBODY:AAAA".parse().unwrap(),
        );
        assert_eq!(run(&bad, &uri, at(date)), Ok(()));
    }

    #[test]
    fn x_amz_date_wins_and_iso_dates_parse() {
        let h = headers(&[
            ("date", "Tue, 27 Mar 2007 19:44:46 GMT"),
            ("x-amz-date", "20070327T204446Z"),
        ]);
        assert_eq!(request_time(&h), Some(at("Tue, 27 Mar 2007 20:44:46 GMT")));
        assert_eq!(request_time(&headers(&[("date", "yesterday")])), None);
        assert_eq!(request_time(&HeaderMap::new()), None);
    }

    #[test]
    fn unsigned_or_repeated_parameters_are_refused() {
        let date = "Tue, 27 Mar 2007 19:44:46 GMT";
        for path in [
            "/bkt/key?legal-hold",
            "/bkt/key?retention",
            "/bkt/key?versionId=a&versionId=b",
            "/bkt/key?attributes",
            "/bkt?encryption",
        ] {
            let (h, uri) = signed_get(date, path);
            assert_eq!(run(&h, &uri, at(date)), Err(unsupported()), "{path}");
        }
        for path in [
            "/bkt/?prefix=a&delimiter=/&encoding-type=url&max-keys=3",
            "/bkt/?list-type=2&start-after=x",
            "/bkt/key?uploadId=u&partNumber=2",
            "/bkt/key?tagging",
        ] {
            let (h, uri) = signed_get(date, path);
            assert_eq!(run(&h, &uri, at(date)), Ok(()), "{path}");
        }
    }

    #[test]
    fn presigned_urls_are_verified_and_limited_to_signed_parameters() {
        let expires = "1175139620";
        let path = "/bkt/photos/puppy.jpg";
        let uri: Uri = format!("{path}?AWSAccessKeyId={AK}&Expires={expires}")
            .parse()
            .unwrap();
        let sts = string_to_sign(
            Mode::Presigned,
            &Method::PUT,
            &HeaderMap::new(),
            &uri,
            &Query::parse(&uri),
        );
        assert_eq!(sts, format!("PUT\n\n\n{expires}\n{path}"));
        let sig: String = percent_encoding::utf8_percent_encode(
            &signature(SK, &sts),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let presigned = format!("{uri}&Signature={sig}");
        let check = |u: &str| {
            let u: Uri = u.parse().unwrap();
            check_presigned(
                &Method::PUT,
                &HeaderMap::new(),
                &u,
                &Query::parse(&u),
                &creds(),
            )
        };
        assert_eq!(check(&presigned), Ok(()));
        assert_eq!(
            check(&format!("{presigned}&legal-hold")),
            Err(unsupported())
        );
        assert_eq!(
            check(&format!("{presigned}&retention=")),
            Err(unsupported())
        );
        assert_eq!(
            check(&presigned.replace("puppy", "kitten")),
            Err(mismatch())
        );
    }
}
