//! Copy-source and Range parsing: `x-amz-copy-source` as the authorizer reads it
//! (`auth::operation::copy_source`) and as s3s parses it for the handler (`CopySource::parse`);
//! `x-amz-copy-source-range` (`s3::multipart::copy_range`, Cairn's own parser) and `Range`
//! (s3s's `Range::parse` + `check`, which GetObject / HeadObject use).
//!
//! Input lines: copy source, range, object size (decimal; default 1000).
//!
//! Checked besides "no panic": whenever s3s parses a bucket copy source, the authorizer
//! authorizes exactly that bucket, key and version-ness (issue 16 item 10: a copy source the two
//! read differently skips the source check), and every accepted range lies inside the object.
//! Set `CAIRN_FUZZ_SKIP_COPY_DIFF=1` to fuzz the parsers without the differential check.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use s3s::dto::{CopySource, Range};

use cairn_node::auth::operation::copy_source;
use cairn_node::s3::multipart::copy_range;

fn differential() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("CAIRN_FUZZ_SKIP_COPY_DIFF").is_none())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let source = lines.next().unwrap_or_default();
    let range = lines.next().unwrap_or_default();
    let size: u64 = lines.next().and_then(|s| s.parse().ok()).unwrap_or(1000);

    if let Ok(value) = HeaderValue::from_str(source) {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-copy-source", value);
        let authorized = copy_source(&headers);
        let parsed = CopySource::parse(source);
        if let (true, Ok(CopySource::Bucket { bucket, key, version_id })) = (differential(), &parsed) {
            let handler = (bucket.to_string(), key.to_string(), version_id.is_some());
            assert_eq!(
                authorized.as_ref(),
                Some(&handler),
                "copy source {source:?}: the authorizer checks {authorized:?}, the handler reads {parsed:?}"
            );
        }
    }

    match copy_range(Some(range), size) {
        Ok((start, end)) => assert!(start < end && end <= size, "{range:?} of {size}: {start}..{end}"),
        Err(_) => {}
    }
    if let Ok(r) = Range::parse(range) {
        if let Ok(span) = r.check(size) {
            assert!(
                span.start < span.end && span.end <= size,
                "{range:?} of {size}: {span:?}"
            );
        }
        assert_eq!(Range::parse(&r.to_header_string()).ok(), Some(r));
    }
});
