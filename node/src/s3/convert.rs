//! Translating between S3 request/response fields and stored metadata.

use base64::Engine;
use s3s::dto::{self, ChecksumAlgorithm, ETag, Timestamp};
use s3s::{s3_error, S3Result};

use cairn_proto::meta::{KeyValue, ObjectVersion};

use crate::clock::to_datetime;
use crate::object::stage::{BodyError, Checksummer};
use crate::object::write::WriteOutcome;
use crate::object::{ObjectError, ObjectResult};

pub fn kv(k: &str, v: impl Into<String>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

pub fn get<'a>(list: &'a [KeyValue], k: &str) -> Option<&'a str> {
    list.iter().find(|x| x.key == k).map(|x| x.value.as_str())
}

pub fn timestamp(ns: i64) -> Timestamp {
    Timestamp::from(to_datetime(ns))
}

pub fn etag(v: &ObjectVersion) -> ETag {
    ETag::Strong(v.etag.clone())
}

/// User metadata, sorted so every drive stores identical records.
pub fn user_metadata(m: Option<dto::Metadata>) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| kv(&k.to_ascii_lowercase(), v))
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

pub fn metadata_map(list: &[KeyValue]) -> Option<dto::Metadata> {
    (!list.is_empty()).then(|| {
        list.iter()
            .map(|x| (x.key.clone(), x.value.clone()))
            .collect()
    })
}

/// AWS's limit on user metadata.
pub fn check_metadata_size(list: &[KeyValue]) -> S3Result<()> {
    let n: usize = list.iter().map(|x| x.key.len() + x.value.len()).sum();
    if n > 2048 {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size (2 KiB)"
        ));
    }
    Ok(())
}

/// The content headers of any S3 input that carries them (PutObject, CopyObject, CreateMultipartUpload).
macro_rules! content_headers {
    ($input:expr) => {
        $crate::s3::convert::ContentHeaders {
            content_type: $input.content_type,
            content_encoding: $input.content_encoding,
            content_disposition: $input.content_disposition,
            content_language: $input.content_language,
            cache_control: $input.cache_control,
            expires: $input.expires,
        }
    };
}
pub(crate) use content_headers;

/// The declared checksums of any S3 input with a body (PutObject, UploadPart).
macro_rules! checksum_request {
    ($input:expr) => {
        $crate::s3::convert::ChecksumRequest {
            declared: s3s::dto::Checksum {
                checksum_crc32: $input.checksum_crc32,
                checksum_crc32c: $input.checksum_crc32c,
                checksum_sha1: $input.checksum_sha1,
                checksum_sha256: $input.checksum_sha256,
                checksum_crc64nvme: $input.checksum_crc64nvme,
                ..Default::default()
            },
            algorithm: $input.checksum_algorithm,
            content_md5: $input.content_md5,
        }
    };
}
pub(crate) use checksum_request;

/// Content headers stored with an object.
#[derive(Default)]
pub struct ContentHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<Timestamp>,
}

impl ContentHeaders {
    pub fn to_kv(&self) -> Vec<KeyValue> {
        let mut out = Vec::new();
        let pairs = [
            ("cache-control", &self.cache_control),
            ("content-disposition", &self.content_disposition),
            ("content-encoding", &self.content_encoding),
            ("content-language", &self.content_language),
            ("content-type", &self.content_type),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                out.push(kv(k, v.clone()));
            }
        }
        if let Some(t) = &self.expires {
            let mut buf = Vec::new();
            if t.format(dto::TimestampFormat::HttpDate, &mut buf).is_ok() {
                out.push(kv("expires", String::from_utf8_lossy(&buf)));
            }
        }
        out
    }

    pub fn from_kv(list: &[KeyValue]) -> Self {
        let s = |k: &str| get(list, k).map(str::to_string);
        Self {
            content_type: s("content-type"),
            content_encoding: s("content-encoding"),
            content_disposition: s("content-disposition"),
            content_language: s("content-language"),
            cache_control: s("cache-control"),
            expires: get(list, "expires")
                .and_then(|v| Timestamp::parse(dto::TimestampFormat::HttpDate, v).ok()),
        }
    }
}

pub fn tag_set(tags: &[KeyValue]) -> Vec<dto::Tag> {
    tags.iter()
        .map(|t| dto::Tag {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect()
}

/// The client's checksums, computed by s3s's hasher as the object layer reads the body.
#[derive(Default)]
pub struct ClientChecksums(pub s3s::checksum::ChecksumHasher);

impl Checksummer for ClientChecksums {
    type Sums = dto::Checksum;

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> dto::Checksum {
        self.0.finalize()
    }
}

/// A request body as the object layer reads it. s3s reports a tampered aws-chunked body only
/// through its error's text, so that text is read here, at the edge, once.
pub fn request_body(
    body: dto::StreamingBlob,
) -> impl futures::Stream<Item = Result<bytes::Bytes, BodyError>> + Unpin + Send + 'static {
    futures::StreamExt::map(body, |r| {
        r.map_err(|e| {
            let msg = e.to_string();
            if let Some(stalled) = crate::net::BodyStalled::find(&*e) {
                BodyError::Stalled(stalled.to_string())
            } else if msg.contains("SignatureMismatch") {
                BodyError::ChunkSignature
            } else {
                BodyError::Incomplete(msg)
            }
        })
    })
}

/// The checksums a request declares (headers, or the algorithm whose value arrives in a trailer).
#[derive(Default, Clone)]
pub struct ChecksumRequest {
    pub declared: dto::Checksum,
    pub algorithm: Option<ChecksumAlgorithm>,
    pub content_md5: Option<String>,
}

impl ChecksumRequest {
    pub fn hasher(&self) -> S3Result<ClientChecksums> {
        let mut h = s3s::checksum::ChecksumHasher::default();
        let d = &self.declared;
        if d.checksum_crc32.is_some() {
            h.crc32 = Some(Default::default());
        }
        if d.checksum_crc32c.is_some() {
            h.crc32c = Some(Default::default());
        }
        if d.checksum_sha1.is_some() {
            h.sha1 = Some(Default::default());
        }
        if d.checksum_sha256.is_some() {
            h.sha256 = Some(Default::default());
        }
        if d.checksum_crc64nvme.is_some() {
            h.crc64nvme = Some(Default::default());
        }
        if let Some(alg) = &self.algorithm {
            match alg.as_str() {
                ChecksumAlgorithm::CRC32 => h.crc32 = Some(Default::default()),
                ChecksumAlgorithm::CRC32C => h.crc32c = Some(Default::default()),
                ChecksumAlgorithm::SHA1 => h.sha1 = Some(Default::default()),
                ChecksumAlgorithm::SHA256 => h.sha256 = Some(Default::default()),
                ChecksumAlgorithm::CRC64NVME => h.crc64nvme = Some(Default::default()),
                other => {
                    return Err(s3_error!(
                        InvalidRequest,
                        "unsupported checksum algorithm {other}"
                    ))
                }
            }
        }
        Ok(ClientChecksums(h))
    }

    /// Compares what was computed with what the client declared (headers, then trailers) and
    /// returns the checksums to store.
    pub fn verify(
        mut self,
        out: &WriteOutcome<dto::Checksum>,
        trailers: Option<&http::HeaderMap>,
    ) -> ObjectResult<Vec<KeyValue>> {
        if let Some(md5) = &self.content_md5 {
            let want = base64::engine::general_purpose::STANDARD
                .decode(md5.trim())
                .map_err(|_| {
                    ObjectError::InvalidArgument(
                        "The Content-MD5 you specified was not valid".into(),
                    )
                })?;
            if want != out.md5 {
                return Err(ObjectError::BadDigest(
                    "The Content-MD5 you specified did not match what we received".into(),
                ));
            }
        }
        if let Some(t) = trailers {
            let d = &mut self.declared;
            let fields: [(&str, &mut Option<String>); 5] = [
                ("x-amz-checksum-crc32", &mut d.checksum_crc32),
                ("x-amz-checksum-crc32c", &mut d.checksum_crc32c),
                ("x-amz-checksum-sha1", &mut d.checksum_sha1),
                ("x-amz-checksum-sha256", &mut d.checksum_sha256),
                ("x-amz-checksum-crc64nvme", &mut d.checksum_crc64nvme),
            ];
            for (name, slot) in fields {
                if let Some(v) = t.get(name).and_then(|v| v.to_str().ok()) {
                    *slot = Some(v.to_string());
                }
            }
        }
        let got = &out.checksums;
        let d = &self.declared;
        let pairs = [
            ("CRC32", &d.checksum_crc32, &got.checksum_crc32),
            ("CRC32C", &d.checksum_crc32c, &got.checksum_crc32c),
            ("SHA1", &d.checksum_sha1, &got.checksum_sha1),
            ("SHA256", &d.checksum_sha256, &got.checksum_sha256),
            ("CRC64NVME", &d.checksum_crc64nvme, &got.checksum_crc64nvme),
        ];
        let mut stored = Vec::new();
        for (alg, want, have) in pairs {
            if let (Some(w), Some(h)) = (want, have) {
                if w != h {
                    return Err(ObjectError::BadDigest(format!(
                        "The {alg} checksum you specified did not match the calculated checksum"
                    )));
                }
            }
            if let Some(h) = have {
                stored.push(kv(alg, h.clone()));
            }
        }
        Ok(stored)
    }
}

/// Sets the checksum fields of an s3s output (every output that has them names them alike).
macro_rules! set_checksums {
    ($out:expr, $sums:expr) => {{
        let sums: s3s::dto::Checksum = $sums;
        $out.checksum_crc32 = sums.checksum_crc32;
        $out.checksum_crc32c = sums.checksum_crc32c;
        $out.checksum_sha1 = sums.checksum_sha1;
        $out.checksum_sha256 = sums.checksum_sha256;
        $out.checksum_crc64nvme = sums.checksum_crc64nvme;
    }};
}
pub(crate) use set_checksums;

/// The stored checksums in the response shape.
pub fn checksum_fields(list: &[KeyValue]) -> dto::Checksum {
    let g = |k: &str| get(list, k).map(str::to_string);
    dto::Checksum {
        checksum_crc32: g("CRC32"),
        checksum_crc32c: g("CRC32C"),
        checksum_sha1: g("SHA1"),
        checksum_sha256: g("SHA256"),
        checksum_crc64nvme: g("CRC64NVME"),
        ..Default::default()
    }
}

/// S3's `encoding-type=url` for keys in listings.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
