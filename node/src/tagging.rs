//! Object tags as S3 requests carry them: the `x-amz-tagging` header and AWS's limits. Below
//! both the authorizer (tag condition keys) and the S3 handlers, which read the same header.

use s3s::{s3_error, S3Result};

use cairn_proto::meta::KeyValue;

/// Tags from a `x-amz-tagging` header (URL query form).
pub fn parse_tagging_header(h: Option<&str>) -> S3Result<Vec<KeyValue>> {
    let Some(h) = h.filter(|h| !h.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for pair in h.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| s3_error!(InvalidArgument, "invalid x-amz-tagging header"))
        };
        out.push(KeyValue {
            key: dec(k)?,
            value: dec(v)?,
        });
    }
    check_tags(&out)?;
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// AWS: at most 10 tags per object, keys up to 128 and values up to 256 characters, keys unique.
pub fn check_tags(tags: &[KeyValue]) -> S3Result<()> {
    if tags.len() > 10 {
        return Err(s3_error!(
            InvalidTag,
            "Object tags cannot be greater than 10"
        ));
    }
    for (i, t) in tags.iter().enumerate() {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey or TagValue you have provided is invalid"
            ));
        }
        if tags[..i].iter().any(|o| o.key == t.key) {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(())
}
