//! Checks on a request's credentials that s3s 0.14 does not make, run in front of it: SigV2's
//! freshness, unsigned sub-resources and constant-time comparison ([`super::sigv2`]), the
//! presigned SigV4 expiry cap, and `host` among the SigV4 signed headers. s3s then verifies the
//! signature as before; a request rejected here never reaches it.
//!
//! Every credential form a request carries is checked, even one s3s would ignore because another
//! comes first in its order: checking more than s3s uses can only refuse a request no client sends.

use http::{HeaderMap, Method, StatusCode, Uri};

use super::CredentialStore;

/// The longest validity of a presigned SigV4 URL AWS allows: one week.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

/// A refused request, with the S3 error AWS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
    /// An extra element of the error document (`HeadersNotSigned`), as AWS adds.
    pub detail: Option<(&'static str, String)>,
}

impl Rejection {
    pub const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Rejection {
            status,
            code,
            message,
            detail: None,
        }
    }

    /// The S3 XML error document.
    pub fn to_xml(&self) -> String {
        let detail = self
            .detail
            .as_ref()
            .map(|(tag, value)| format!("<{tag}>{value}</{tag}>"))
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>{detail}</Error>",
            self.code, self.message
        )
    }
}

/// A query string decoded as s3s decodes it (`application/x-www-form-urlencoded`: `+` is a
/// space, `%XX` a byte, invalid UTF-8 replaced), pairs in the order sent.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(uri: &Uri) -> Query {
        let pairs = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (form_decode(k), form_decode(v))
            })
            .collect();
        Query(pairs)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get_all(name).next().is_some()
    }

    /// The value of a parameter given exactly once (s3s ignores repeated ones).
    pub fn get_unique(&self, name: &str) -> Option<&str> {
        let mut all = self.0.iter().filter(|(k, _)| k == name);
        let (_, first) = all.next()?;
        all.next().is_none().then_some(first.as_str())
    }
}

fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// The checks s3s does not make on the credentials of a request (see the module comment).
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    credentials: &dyn CredentialStore,
    now: time::OffsetDateTime,
) -> Result<(), Rejection> {
    let query = Query::parse(uri);
    for auth in super::sigv2::values(headers, http::header::AUTHORIZATION.as_str()) {
        if let Some(v2) = super::sigv2::HeaderAuth::parse(auth) {
            super::sigv2::check_header(&v2, method, headers, uri, &query, credentials, now)?;
        } else {
            // s3s parses every header that is not SigV2 as SigV4, whatever its algorithm says.
            check_v4_header(auth, headers)?;
            check_v4_header_date(headers)?;
            let credentials = auth
                .split(',')
                .filter_map(|part| part.trim().split_once("Credential="))
                .map(|(_, c)| c.trim());
            for credential in credentials {
                if !scope_date_is_digits(credential) {
                    return Err(Rejection::new(
                        StatusCode::BAD_REQUEST,
                        "AuthorizationHeaderMalformed",
                        "The authorization header is malformed; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
                    ));
                }
            }
        }
    }
    if query.has("Signature") {
        super::sigv2::check_presigned(method, headers, uri, &query, credentials)?;
    }
    if query.has("X-Amz-Signature") || query.has("X-Amz-Credential") {
        check_v4_presigned(&query, headers)?;
    }
    Ok(())
}

fn headers_not_signed(names: String) -> Rejection {
    Rejection {
        detail: Some(("HeadersNotSigned", names)),
        ..Rejection::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "There were headers present in the request which were not signed",
        )
    }
}

/// Without `host` signed, a captured request verifies against any endpoint that shares the
/// credentials (another site, or a name a proxy rewrites).
fn signs_host(signed_headers: &str) -> bool {
    signed_headers.split(';').any(|h| h == "host")
}

/// `x-amz-*` headers a SigV4 signature may leave out, as AWS and the SDKs do: the body's hash
/// (which the signature or the body check binds), the aws-chunked framing (which the chunk
/// signatures bind), and what the SDKs leave out of presigned URLs (`x-amz-user-agent`;
/// `x-amz-checksum-mode` only adds checksums to the answer).
const MAY_BE_UNSIGNED: &[&str] = &[
    "x-amz-content-sha256",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-user-agent",
    "x-amz-checksum-mode",
];

/// A signature covers only the headers it names, and `x-amz-*` headers change what a request
/// does (`x-amz-copy-source` turns an upload into a copy, others set tags, metadata or locks):
/// every one that arrives must be signed, and the signature must name `host`.
fn check_signed_headers(list: &str, headers: &HeaderMap) -> Result<(), Rejection> {
    if !signs_host(list) {
        return Err(headers_not_signed("host".to_string()));
    }
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("x-amz-") && !MAY_BE_UNSIGNED.contains(name))
        .filter(|name| !list.split(';').any(|s| s.trim().eq_ignore_ascii_case(name)))
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort_unstable();
    Err(headers_not_signed(unsigned.join(", ")))
}

fn check_v4_header(auth: &str, headers: &HeaderMap) -> Result<(), Rejection> {
    let signed = auth
        .split(',')
        .filter_map(|part| part.trim().split_once("SignedHeaders="))
        .map(|(_, list)| list.trim());
    for list in signed {
        check_signed_headers(list, headers)?;
    }
    Ok(())
}

/// `yyyyMMdd'T'HHmmss'Z'`, checked before s3s parses it: its digit parser subtracts before it
/// checks, so a byte below `'0'` panics the request's task in builds with overflow checks.
fn is_amz_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 16
        && b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The date of a credential scope (`AKID/YYYYMMDD/...`: the second field, as s3s splits it) is
/// eight digits; s3s's parser of it has the same flaw as its `X-Amz-Date` parser.
fn scope_date_is_digits(credential: &str) -> bool {
    credential
        .split('/')
        .nth(1)
        .is_some_and(|d| d.len() == 8 && d.bytes().all(|c| c.is_ascii_digit()))
}

fn check_v4_header_date(headers: &HeaderMap) -> Result<(), Rejection> {
    let valid = headers
        .get_all("x-amz-date")
        .iter()
        .all(|v| v.to_str().is_ok_and(is_amz_date));
    if valid {
        return Ok(());
    }
    Err(Rejection::new(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "AWS authentication requires a valid Date or x-amz-date header",
    ))
}

/// Whether s3s reads the request as a browser-form upload (POST Object): the test s3s makes
/// (`multipart/form-data` on a POST), made on every `Content-Type` value, so no spelling reaches
/// s3s unchecked.
pub fn is_form_upload(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::POST
        && headers.get_all(http::header::CONTENT_TYPE).iter().any(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// Every text `form-data; name="NAME"` in a form body, wherever it is (s3s names a field by
/// that exact text of its part, the name compared case-insensitively), with the value s3s reads
/// if the text begins a field: one line ended by a boundary (`\r\n--`); `None` for any other
/// shape. A value s3s reads as longer than that line starts with it.
fn form_fields(body: &[u8]) -> impl Iterator<Item = (&[u8], Option<&str>)> {
    const PREFIX: &[u8] = b"form-data; name=\"";
    memchr::memmem::find_iter(body, PREFIX).filter_map(move |at| {
        let rest = &body[at + PREFIX.len()..];
        let name = &rest[..memchr::memchr(b'"', rest)?];
        let Some(headers_end) = memchr::memmem::find(rest, b"\r\n\r\n") else {
            return Some((name, None));
        };
        let value = &rest[headers_end + 4..];
        let line_end = memchr::memmem::find(value, b"\r\n").unwrap_or(value.len());
        let line = std::str::from_utf8(&value[..line_end])
            .ok()
            .filter(|_| value[line_end..].starts_with(b"\r\n--"));
        Some((name, line))
    })
}

/// The checks in front of s3s on a browser-form upload (POST Object), made on every
/// `form-data; name="NAME"` text in the body ([`form_fields`]); only a file that itself holds a
/// malformed form of this shape is refused by mistake.
///
/// - `x-amz-date` and the scope date of `x-amz-credential`, which s3s reads with the same digit
///   parser as the headers: a value s3s reads as longer than the checked line fails s3s's parse
///   by its length.
/// - A SigV2 signature ([`super::sigv2::check_post_form`]), which s3s compares in variable time.
pub fn check_post_form(body: &[u8], credentials: &dyn CredentialStore) -> Result<(), Rejection> {
    let (mut signature, mut access_key, mut policy) = (Vec::new(), Vec::new(), Vec::new());
    for (name, value) in form_fields(body) {
        for (wanted, values) in [
            (&b"signature"[..], &mut signature),
            (b"awsaccesskeyid", &mut access_key),
            (b"policy", &mut policy),
        ] {
            if name.eq_ignore_ascii_case(wanted) {
                values.push(value);
            }
        }
        let (valid, message): (fn(&str) -> bool, &'static str) = if name
            .eq_ignore_ascii_case(b"x-amz-date")
        {
            (
                is_amz_date,
                "The form field x-amz-date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            )
        } else if name.eq_ignore_ascii_case(b"x-amz-credential") {
            (
                scope_date_is_digits,
                "The form field x-amz-credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"",
            )
        } else {
            continue;
        };
        if !value.is_some_and(valid) {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                message,
            ));
        }
    }
    super::sigv2::check_post_form(
        signature.into_iter(),
        access_key.into_iter(),
        policy.into_iter(),
        credentials,
    )
}

fn check_v4_presigned(query: &Query, headers: &HeaderMap) -> Result<(), Rejection> {
    if !query.get_all("X-Amz-Credential").all(scope_date_is_digits) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        ));
    }
    if !query.get_all("X-Amz-Date").all(is_amz_date) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ));
    }
    for expires in query.get_all("X-Amz-Expires") {
        match expires.parse::<i64>() {
            Ok(n) if n < 0 => {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "AuthorizationQueryParametersError",
                    "X-Amz-Expires must be non-negative",
                ))
            }
            Ok(n) if n.unsigned_abs() > MAX_PRESIGNED_EXPIRES_SECS => {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "AuthorizationQueryParametersError",
                    "X-Amz-Expires must be less than a week (in seconds) that is, the given X-Amz-Expires must be less than 604800 seconds",
                ))
            }
            // Anything else s3s refuses (or accepts) itself.
            _ => {}
        }
    }
    for list in query.get_all("X-Amz-SignedHeaders") {
        check_signed_headers(list, headers)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(&format!("/b/k?{s}").parse::<Uri>().unwrap())
    }

    #[test]
    fn query_decodes_like_forms() {
        let query = q("a=1+2%2B3&legal-hold&&b=x&b=y&%41=z");
        assert_eq!(query.get_unique("a"), Some("1 2+3"));
        assert!(query.has("legal-hold"));
        assert_eq!(query.get_unique("legal-hold"), Some(""));
        assert_eq!(query.get_unique("b"), None);
        assert_eq!(query.get_all("b").collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(query.get_unique("A"), Some("z"));
    }

    #[test]
    fn amz_dates_are_checked_before_s3s_parses_them() {
        assert!(is_amz_date("20261207T020000Z"));
        // The fuzzer's input: a quote among the digits panicked s3s's parser in debug builds.
        for bad in [
            "20261207T02000'Z",
            "20261207T020000",
            "2026-12-07T02:00:00Z",
            "",
        ] {
            assert!(!is_amz_date(bad), "{bad}");
            assert!(
                check_v4_presigned(&q(&format!("X-Amz-Date={bad}")), &HeaderMap::new()).is_err()
            );
            let mut h = HeaderMap::new();
            h.insert("x-amz-date", bad.parse().unwrap());
            assert!(check_v4_header_date(&h).is_err());
        }
    }

    #[test]
    fn credential_scope_dates_are_checked_before_s3s_parses_them() {
        assert!(scope_date_is_digits(
            "AK/20261207/us-east-1/s3/aws4_request"
        ));
        // The fuzzer's second input: `(` in the scope date panicked s3s's parser in debug builds.
        for bad in ["AK/2026128(7/us-east-1/s3/aws4_request", "AK", "AK/2026/x"] {
            assert!(!scope_date_is_digits(bad), "{bad}");
            let query = q(&format!("X-Amz-Credential={}", bad.replace('/', "%2F")));
            assert!(check_v4_presigned(&query, &HeaderMap::new()).is_err());
        }
    }

    #[test]
    fn non_ascii_authorization_headers_are_checked_as_s3s_reads_them() {
        // The fuzzer's fourth input: a non-ASCII (but UTF-8) byte made `HeaderValue::to_str`
        // skip the value, which s3s still parsed, bad scope date and all.
        let root = crate::auth::RootCredentials {
            access_key: "root".into(),
            secret_key: "secret-secret".into(),
        };
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(
                "AWS4-HMAC-SHA256 Credential=root/20(61208/us\u{4de}east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".as_bytes(),
            )
            .unwrap(),
        );
        h.insert("x-amz-date", "20261208T000000Z".parse().unwrap());
        let uri: Uri = "/b/k".parse().unwrap();
        let err = check(
            &Method::GET,
            &h,
            &uri,
            &root,
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(err.code, "AuthorizationHeaderMalformed");
    }

    fn form(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\ndata\r\n--B--\r\n");
        body
    }

    #[test]
    fn post_form_dates_are_checked_before_s3s_parses_them() {
        let good = [
            ("x-amz-date", "20261207T020000Z"),
            ("X-Amz-Credential", "AK/20261207/us-east-1/s3/aws4_request"),
            ("key", "k"),
        ];
        assert_eq!(check_post_form(&form(&good), &root()), Ok(()));
        // The fuzzer's third input: a byte below '0' among a form date's digits.
        for bad in [
            [("x-amz-date", "2026120'T020000Z")],
            [("X-AMZ-DATE", "20261207T02000\"Z")],
            [("x-amz-credential", "AK/2026120 /us-east-1/s3/aws4_request")],
            // A value split across lines, so no line of it is the whole value.
            [("x-amz-date", "20261207T020000Z\r\nx")],
        ] {
            let err = check_post_form(&form(&bad), &root()).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (StatusCode::BAD_REQUEST, "InvalidArgument")
            );
        }
        // Other fields, and other spellings s3s does not take as a field name, are left to s3s.
        assert_eq!(
            check_post_form(&form(&[("x-amz-date-2", "(")]), &root()),
            Ok(())
        );
        assert_eq!(
            check_post_form(
                b"--B\r\nContent-Disposition: Form-Data; name=\"x-amz-date\"\r\n\r\n(\r\n--B--",
                &root()
            ),
            Ok(())
        );
    }

    fn root() -> crate::auth::RootCredentials {
        crate::auth::RootCredentials {
            access_key: "root".into(),
            secret_key: "root-secret-key".into(),
        }
    }

    #[test]
    fn post_form_sigv2_signatures_are_checked_in_constant_time_first() {
        let policy = "eyJleHBpcmF0aW9uIjoiMjAzMC0wMS0wMVQwMDowMDowMFoifQ==";
        let good = super::super::sigv2::signature("root-secret-key", policy);
        fn fields<'a>(policy: &'a str, sig: &'a str) -> [(&'static str, &'a str); 3] {
            [
                ("AWSAccessKeyId", "root"),
                ("policy", policy),
                ("signature", sig),
            ]
        }
        assert_eq!(
            check_post_form(&form(&fields(policy, &good)), &root()),
            Ok(())
        );
        let err = check_post_form(
            &form(&fields(policy, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
            &root(),
        )
        .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::FORBIDDEN, "SignatureDoesNotMatch")
        );
        // A second, different signature (or policy) under another spelling of the name.
        let mut twice = fields(policy, &good).to_vec();
        twice.push(("Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        let err = check_post_form(&form(&twice), &root()).unwrap_err();
        assert_eq!(err.code, "InvalidArgument");
        let no_policy = [("AWSAccessKeyId", "root"), ("signature", good.as_str())];
        assert_eq!(
            check_post_form(&form(&no_policy), &root())
                .unwrap_err()
                .code,
            "InvalidArgument"
        );
        // SigV4 forms and unknown keys are s3s's to decide.
        assert_eq!(
            check_post_form(&form(&[("x-amz-signature", "00")]), &root()),
            Ok(())
        );
        let stranger = [
            ("AWSAccessKeyId", "nobody"),
            ("policy", policy),
            ("signature", "x"),
        ];
        assert_eq!(check_post_form(&form(&stranger), &root()), Ok(()));
    }

    #[test]
    fn v4_header_must_sign_host() {
        let with = "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
        let without = "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-content-sha256;x-amz-date, Signature=00";
        let sneaky = "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date;hostx, Signature=00";
        let none = HeaderMap::new();
        assert_eq!(check_v4_header(with, &none), Ok(()));
        let host = Err(headers_not_signed("host".to_string()));
        assert_eq!(check_v4_header(without, &none), host);
        assert_eq!(check_v4_header(sneaky, &none), host);
    }

    #[test]
    fn every_amz_header_must_be_signed() {
        let headers = |names: &[&str]| {
            let mut h = HeaderMap::new();
            for n in names {
                h.insert(
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    "v".parse().unwrap(),
                );
            }
            h
        };
        let auth = "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;X-Amz-Date;x-amz-meta-a, Signature=00";
        let signed = headers(&[
            "x-amz-date",
            "x-amz-meta-a",
            "content-type",
            "x-amzn-trace-id",
        ]);
        assert_eq!(check_v4_header(auth, &signed), Ok(()));
        let exempt = headers(&[
            "x-amz-content-sha256",
            "x-amz-decoded-content-length",
            "x-amz-trailer",
        ]);
        assert_eq!(check_v4_header(auth, &exempt), Ok(()));
        let added = headers(&["x-amz-date", "x-amz-tagging", "x-amz-copy-source"]);
        assert_eq!(
            check_v4_header(auth, &added),
            Err(headers_not_signed(
                "x-amz-copy-source, x-amz-tagging".to_string()
            ))
        );
        let url = q("X-Amz-SignedHeaders=host");
        assert_eq!(check_v4_presigned(&url, &exempt), Ok(()));
        assert_eq!(
            check_v4_presigned(&url, &headers(&["x-amz-meta-a"])),
            Err(headers_not_signed("x-amz-meta-a".to_string()))
        );
    }

    #[test]
    fn presigned_v4_expiry_is_capped_at_a_week() {
        let url = |e: &str| q(&format!("X-Amz-Expires={e}&X-Amz-SignedHeaders=host"));
        assert_eq!(
            check_v4_presigned(&url("604800"), &HeaderMap::new()),
            Ok(())
        );
        assert_eq!(check_v4_presigned(&url("1"), &HeaderMap::new()), Ok(()));
        let err = check_v4_presigned(&url("604801"), &HeaderMap::new()).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "AuthorizationQueryParametersError")
        );
        assert!(check_v4_presigned(&url("-1"), &HeaderMap::new()).is_err());
        assert_eq!(
            check_v4_presigned(
                &q("X-Amz-Expires=60&X-Amz-SignedHeaders=x-amz-date"),
                &HeaderMap::new()
            ),
            Err(headers_not_signed("host".to_string()))
        );
    }

    #[test]
    fn error_document_names_code_and_detail() {
        let xml = headers_not_signed("host".to_string()).to_xml();
        assert!(xml.contains("<Code>AccessDenied</Code>"), "{xml}");
        assert!(
            xml.contains("<HeadersNotSigned>host</HeadersNotSigned>"),
            "{xml}"
        );
    }
}
