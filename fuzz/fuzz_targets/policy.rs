//! The IAM policy JSON parser and evaluator (`control-plane/src/iam/policy.rs`, `eval.rs`).
//!
//! Input: the policy document, then a NUL byte, then the request context one item per line:
//! bucket (the bucket policy's own), action, resource (`-` for none), principal (`a`nonymous,
//! `r`oot, else a user), then `key=value` condition keys (a repeated key is multi-valued). The
//! document is parsed as an identity and as a bucket policy, and each that parses is evaluated
//! alone and in a policy set. Checked besides "no panic": a parsed policy serializes to a document
//! that parses again (the control plane stores and re-parses it), and evaluation is deterministic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

use cairn_control_plane::iam::{evaluate, Policy, PolicySet, Principal, RequestContext};

fn context(lines: &str) -> (String, RequestContext) {
    let mut it = lines.split('\n');
    let bucket = it.next().unwrap_or("bucket").to_owned();
    let action = it.next().unwrap_or("s3:GetObject");
    let resource = match it.next() {
        None => Some(format!("arn:aws:s3:::{bucket}/key")),
        Some("-") => None,
        Some(r) => Some(r.to_owned()),
    };
    let principal = match it.next().and_then(|p| p.chars().next()) {
        Some('a') => Principal::anonymous(),
        Some('r') => Principal::root("123456789012"),
        _ => Principal::user("123456789012", "alice", "AKIAALICE"),
    };
    let mut ctx = RequestContext::new(action, resource, principal)
        .with_time(time::OffsetDateTime::from_unix_timestamp(1_765_000_000).expect("time"));
    let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in it {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        keys.entry(k).or_default().push(v);
    }
    for (k, v) in keys {
        ctx = ctx.with_values(k, &v);
    }
    (bucket, ctx)
}

/// The document the control plane keeps parses again as the same kind.
fn reparses(
    p: &Policy,
    again: impl Fn(&str) -> Result<Policy, cairn_control_plane::iam::PolicyError>,
) {
    let text = serde_json::to_string(p).expect("a parsed policy serializes");
    if let Err(e) = again(&text) {
        panic!("policy stops parsing after a round trip: {e}\n{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    let (doc, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(doc) = std::str::from_utf8(doc) else {
        return;
    };
    let (bucket, ctx) = context(&String::from_utf8_lossy(rest));

    let identity = Policy::parse_identity(doc).ok();
    let bucket_policy = Policy::parse_bucket(doc, &bucket).ok();
    if let Some(p) = &identity {
        reparses(p, Policy::parse_identity);
        assert_eq!(p.evaluate(&ctx), p.evaluate(&ctx));
        let _ = p.is_public();
        let _ = p.mentions_key("s3:existingobjecttag/");
    }
    if let Some(p) = &bucket_policy {
        reparses(p, |t| Policy::parse_bucket(t, &bucket));
        assert_eq!(p.evaluate(&ctx), p.evaluate(&ctx));
        let _ = p.is_public();
    }
    let mut set = PolicySet::default();
    if let Some(p) = &identity {
        set = set.user("fuzz", p).group("g", "fuzz", p);
    }
    if let Some(p) = &bucket_policy {
        set = set.bucket(p);
    }
    let v = evaluate(&ctx, &set);
    let _ = v.to_string();
    if let Some(p) = &identity {
        let _ = evaluate(&ctx, &set.clone().session(p));
    }
});
