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
    pub detail: Option<(&'static str, &'static str)>,
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
            if auth.starts_with("AWS4-") {
                check_v4_header(auth)?;
            }
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
        check_v4_presigned(&query)?;
    }
    Ok(())
}

fn headers_not_signed() -> Rejection {
    Rejection {
        detail: Some(("HeadersNotSigned", "host")),
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

fn check_v4_header(auth: &str) -> Result<(), Rejection> {
    let signed = auth
        .split(',')
        .filter_map(|part| part.trim().split_once("SignedHeaders="))
        .map(|(_, list)| list.trim());
    for list in signed {
        if !signs_host(list) {
            return Err(headers_not_signed());
        }
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

/// The fields of a browser-form upload that s3s reads with the same digit parser as the
/// headers: `x-amz-date` and the scope date of `x-amz-credential`. s3s names a field by the
/// exact text `form-data; name="NAME"` of its part (the name compared case-insensitively), so
/// every such text in the body is looked at, wherever it is: a value must be one well-formed
/// line ended by a boundary (`\r\n--`). A value s3s reads as longer than that line then starts
/// with the checked one, so its length, not its digits, fails s3s's parse. Only a file that
/// itself holds a malformed form of this shape is refused by mistake.
pub fn check_post_form(body: &[u8]) -> Result<(), Rejection> {
    const PREFIX: &[u8] = b"form-data; name=\"";
    for at in memchr::memmem::find_iter(body, PREFIX) {
        let rest = &body[at + PREFIX.len()..];
        let Some(name_end) = memchr::memchr(b'"', rest) else {
            continue;
        };
        let name = &rest[..name_end];
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
        let Some(headers_end) = memchr::memmem::find(rest, b"\r\n\r\n") else {
            continue;
        };
        let value = &rest[headers_end + 4..];
        let line_end = memchr::memmem::find(value, b"\r\n").unwrap_or(value.len());
        let line = std::str::from_utf8(&value[..line_end]).unwrap_or_default();
        if !(valid(line) && value[line_end..].starts_with(b"\r\n--")) {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                message,
            ));
        }
    }
    Ok(())
}

fn check_v4_presigned(query: &Query) -> Result<(), Rejection> {
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
        if !signs_host(list) {
            return Err(headers_not_signed());
        }
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
            assert!(check_v4_presigned(&q(&format!("X-Amz-Date={bad}"))).is_err());
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
            assert!(check_v4_presigned(&query).is_err());
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
                "AWS4-HMAC-SHA256 Credential=root/20(61208/us\u{4de}east-1/s3/aws4_request, SignedHeaders=host, Signature=00".as_bytes(),
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
        assert_eq!(check_post_form(&form(&good)), Ok(()));
        // The fuzzer's third input: a byte below '0' among a form date's digits.
        for bad in [
            [("x-amz-date", "2026120'T020000Z")],
            [("X-AMZ-DATE", "20261207T02000\"Z")],
            [("x-amz-credential", "AK/2026120 /us-east-1/s3/aws4_request")],
            // A value split across lines, so no line of it is the whole value.
            [("x-amz-date", "20261207T020000Z\r\nx")],
        ] {
            let err = check_post_form(&form(&bad)).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (StatusCode::BAD_REQUEST, "InvalidArgument")
            );
        }
        // Other fields, and other spellings s3s does not take as a field name, are left to s3s.
        assert_eq!(check_post_form(&form(&[("x-amz-date-2", "(")])), Ok(()));
        assert_eq!(
            check_post_form(
                b"--B\r\nContent-Disposition: Form-Data; name=\"x-amz-date\"\r\n\r\n(\r\n--B--"
            ),
            Ok(())
        );
    }

    #[test]
    fn v4_header_must_sign_host() {
        let with = "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
        let without = "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-content-sha256;x-amz-date, Signature=00";
        let sneaky = "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date;hostx, Signature=00";
        assert_eq!(check_v4_header(with), Ok(()));
        assert_eq!(check_v4_header(without), Err(headers_not_signed()));
        assert_eq!(check_v4_header(sneaky), Err(headers_not_signed()));
    }

    #[test]
    fn presigned_v4_expiry_is_capped_at_a_week() {
        let url = |e: &str| q(&format!("X-Amz-Expires={e}&X-Amz-SignedHeaders=host"));
        assert_eq!(check_v4_presigned(&url("604800")), Ok(()));
        assert_eq!(check_v4_presigned(&url("1")), Ok(()));
        let err = check_v4_presigned(&url("604801")).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "AuthorizationQueryParametersError")
        );
        assert!(check_v4_presigned(&url("-1")).is_err());
        assert_eq!(
            check_v4_presigned(&q("X-Amz-Expires=60&X-Amz-SignedHeaders=x-amz-date")),
            Err(headers_not_signed())
        );
    }

    #[test]
    fn error_document_names_code_and_detail() {
        let xml = headers_not_signed().to_xml();
        assert!(xml.contains("<Code>AccessDenied</Code>"), "{xml}");
        assert!(
            xml.contains("<HeadersNotSigned>host</HeadersNotSigned>"),
            "{xml}"
        );
    }
}
