//! The one AWS Signature Version 4 client signer (header-based, path-style, and signed
//! `aws-chunked` bodies): `cairn bench`, the site replicator's requests to peer sites, the
//! simulator's clients, the fuzz harness and the black-box tests sign with it. A crate of its own,
//! so the tests use it without linking the server. The load generator signs with
//! `x-amz-content-sha256: UNSIGNED-PAYLOAD`, so it never hashes bodies.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The payload hash value that tells the server the body is not covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The payload hash of a body sent as signed `aws-chunked` chunks ([`Signer::chunk_signature`]).
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// SHA-256 of the empty string, in hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A SigV4 signer for one set of credentials, region and service. It caches the derived signing key per day.
#[derive(Clone)]
pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    service: String,
    /// `(yyyymmdd, key)`: the signing key only depends on the date, so derive it once a day.
    cached_key: Option<(String, [u8; 32])>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// A signed request: its `Authorization` header, and the signature and credential scope a
/// signed `aws-chunked` body continues from.
#[derive(Debug, Clone)]
pub struct Signature {
    pub authorization: String,
    pub signature: String,
    pub scope: String,
}

/// What is signed: everything but the credentials and the clock.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    pub method: &'a str,
    /// The path, already URI-encoded (see [`uri_encode`]), e.g. `/bucket/key`.
    pub path: &'a str,
    /// Raw (not yet encoded) query parameters; order does not matter.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign (must include `host` and `x-amz-date`); names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a str,
    /// `yyyymmddThhmmssZ`, the same value as the `x-amz-date` header.
    pub amz_date: &'a str,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str, service: &str) -> Self {
        Self {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            cached_key: None,
        }
    }

    /// The value of the `Authorization` header for `req`.
    pub fn authorization(&mut self, req: &SignRequest<'_>) -> String {
        self.sign(req).authorization
    }

    /// The `Authorization` header for `req`, with the signature and scope a signed `aws-chunked`
    /// body continues from.
    pub fn sign(&mut self, req: &SignRequest<'_>) -> Signature {
        let (canonical, signed_headers) = canonical_request(req);
        let date = req.amz_date.get(..8).unwrap_or(req.amz_date);
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = string_to_sign(req.amz_date, &scope, &canonical);
        let key = self.signing_key(date);
        let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
        Signature {
            authorization: format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                self.access_key
            ),
            signature,
            scope,
        }
    }

    /// The signature of one `aws-chunked` chunk: `previous` is the request's signature for the
    /// first chunk, then the chunk before; the last chunk is empty.
    pub fn chunk_signature(
        &mut self,
        amz_date: &str,
        scope: &str,
        previous: &str,
        chunk: &[u8],
    ) -> String {
        let key = self.signing_key(amz_date.get(..8).unwrap_or(amz_date));
        chunk::signature(
            &key,
            &chunk::chunk_string_to_sign(amz_date, scope, previous, &Sha256::digest(chunk).into()),
        )
    }

    fn signing_key(&mut self, date: &str) -> [u8; 32] {
        if let Some((cached_date, key)) = &self.cached_key {
            if cached_date == date {
                return *key;
            }
        }
        let key = derive_signing_key(&self.secret_key, date, &self.region, &self.service);
        self.cached_key = Some((date.to_owned(), key));
        key
    }
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn derive_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Returns the canonical request and the `SignedHeaders` list.
fn canonical_request(req: &SignRequest<'_>) -> (String, String) {
    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), normalize_header_value(v)))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    // Repeated headers are signed once, their values joined by commas, in the order given.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        match merged.last_mut() {
            Some((last, values)) if *last == name => {
                values.push(',');
                values.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let mut canonical_headers = String::new();
    for (name, value) in &merged {
        let _ = writeln!(canonical_headers, "{name}:{value}");
    }
    let signed_headers = merged
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical = format!(
        "{}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method, req.payload_hash
    );
    (canonical, signed_headers)
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// Trims a header value and collapses runs of spaces, as SigV4 requires.
fn normalize_header_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The signatures of a signed `aws-chunked` body, for the client that signs one and the server
/// that checks one: each chunk's, chained from the request's signature, and the trailer's.
pub mod chunk {
    use super::{hmac_sha256, ALGORITHM, EMPTY_SHA256};

    /// What a chunk's signature signs; `data_sha256` is the SHA-256 of the chunk's data.
    pub fn chunk_string_to_sign(
        amz_date: &str,
        scope: &str,
        previous: &str,
        data_sha256: &[u8; 32],
    ) -> String {
        format!(
            "{ALGORITHM}-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{}",
            hex::encode(data_sha256)
        )
    }

    /// What the trailer's signature signs; `trailers_sha256` is the SHA-256 of the trailer
    /// headers in their canonical form (`name:value\n`, sorted by name).
    pub fn trailer_string_to_sign(
        amz_date: &str,
        scope: &str,
        previous: &str,
        trailers_sha256: &[u8; 32],
    ) -> String {
        format!(
            "{ALGORITHM}-TRAILER\n{amz_date}\n{scope}\n{previous}\n{}",
            hex::encode(trailers_sha256)
        )
    }

    /// The hex signature of `to_sign` under a derived signing key ([`super::derive_signing_key`]).
    pub fn signature(key: &[u8; 32], to_sign: &str) -> String {
        hex::encode(hmac_sha256(key, to_sign.as_bytes()))
    }
}

/// SigV4 URI encoding: every byte but `A-Z a-z 0-9 - . _ ~` is `%XX`; `/` too when `encode_slash`.
pub fn uri_encode(input: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b'/' if !encode_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// `yyyymmddThhmmssZ` for a UTC time.
pub fn amz_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite_signer() -> Signer {
        Signer::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "service",
        )
    }

    /// AWS SigV4 test suite, `get-vanilla`.
    #[test]
    fn get_vanilla() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let req = SignRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: "20150830T123600Z",
        };
        let (canonical, signed) = canonical_request(&req);
        assert_eq!(
            canonical,
            format!("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}")
        );
        assert_eq!(signed, "host;x-amz-date");
        assert_eq!(
            string_to_sign(
                req.amz_date,
                "20150830/us-east-1/service/aws4_request",
                &canonical
            ),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            suite_signer().authorization(&req),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// AWS SigV4 test suite, `get-vanilla-query-order-key-case`: query parameters are sorted.
    #[test]
    fn get_vanilla_query_order() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let req = SignRequest {
            method: "GET",
            path: "/",
            query: &[("Param2", "value2"), ("Param1", "value1")],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: "20150830T123600Z",
        };
        assert!(suite_signer().authorization(&req).ends_with(
            "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        ));
    }

    fn s3_doc_signer() -> Signer {
        Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "s3",
        )
    }

    /// Amazon S3 API reference, "Signature Calculations for the Authorization Header", GET Object example.
    #[test]
    fn s3_get_object_example() {
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let req = SignRequest {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
        };
        let (canonical, _) = canonical_request(&req);
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let mut signer = s3_doc_signer();
        let expected =
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        assert_eq!(signer.authorization(&req), expected);
        // A second signature reuses the cached key and must not change.
        assert_eq!(signer.authorization(&req), expected);
    }

    /// Same document, GET Bucket (list objects) example: `?max-keys=2&prefix=J`.
    #[test]
    fn s3_list_objects_example() {
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let req = SignRequest {
            method: "GET",
            path: "/",
            query: &[("prefix", "J"), ("max-keys", "2")],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
        };
        assert!(s3_doc_signer().authorization(&req).ends_with(
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        ));
    }

    #[test]
    fn signing_key_follows_the_date() {
        let mut signer = s3_doc_signer();
        let day1 = signer.signing_key("20130524");
        let day2 = signer.signing_key("20130525");
        assert_ne!(day1, day2);
        assert_eq!(signer.signing_key("20130524"), day1);
    }

    #[test]
    fn encodes_uris() {
        assert_eq!(
            uri_encode("/bucket/a b/é~x_y-z.txt", false),
            "/bucket/a%20b/%C3%A9~x_y-z.txt"
        );
        assert_eq!(uri_encode("a/b+c=d", true), "a%2Fb%2Bc%3Dd");
    }

    #[test]
    fn normalizes_header_values() {
        assert_eq!(normalize_header_value("  a   b  c "), "a b c");
    }

    #[test]
    fn formats_amz_dates() {
        let t = time::macros::datetime!(2015-08-30 12:36:00 UTC);
        assert_eq!(amz_date(t), "20150830T123600Z");
        let t = time::macros::datetime!(2024-02-29 01:02:03 +02:00);
        assert_eq!(amz_date(t), "20240228T230203Z");
    }
}
