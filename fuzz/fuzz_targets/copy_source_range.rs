//! Copy-source and Range parsing: `x-amz-copy-source` as s3s parses it for the handler and the
//! authorizer (`CopySource::parse`), `x-amz-copy-source-range` (`s3::multipart::copy_range`,
//! Cairn's own parser) and `Range` (s3s's `Range::parse` + `check`, which GetObject and
//! HeadObject use).
//!
//! Input lines: copy source, range, object size (decimal; default 1000).
//!
//! Checked besides "no panic": every accepted range lies inside the object (and is non-empty for
//! `copy_range`), and a parsed `Range` survives its own header form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3s::dto::{CopySource, Range};

use cairn_node::s3::multipart::copy_range;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let source = lines.next().unwrap_or_default();
    let range = lines.next().unwrap_or_default();
    let size: u64 = lines.next().and_then(|s| s.parse().ok()).unwrap_or(1000);

    // s3s accepts an empty key (`bucket/`): the handler then reads key "" and finds nothing.
    let _ = CopySource::parse(source);

    match copy_range(Some(range), size) {
        Ok((start, end)) => assert!(
            start < end && end <= size,
            "{range:?} of {size}: {start}..{end}"
        ),
        Err(_) => {}
    }
    if let Ok(r) = Range::parse(range) {
        if let Ok(span) = r.check(size) {
            // s3s grants a suffix range of an empty object as `0..0` (so GetObject answers 206
            // with `Content-Range: bytes 0-0/0`); only check it stays inside the object.
            assert!(
                span.start <= span.end && span.end <= size,
                "{range:?} of {size}: {span:?}"
            );
        }
        assert_eq!(Range::parse(&r.to_header_string()).ok(), Some(r));
    }
});
