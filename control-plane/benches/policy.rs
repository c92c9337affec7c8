//! Policy evaluation cost: ns per decision for a user with 20 attached policies of 10 statements.
//!
//! The statements mix exact and wildcard actions, per-bucket resources, a `${aws:username}`
//! variable and conditions, so most of them must be looked at before the decision: the allowed
//! request matches only a statement of the last policy, and the denied one matches none.

use std::hint::black_box;

use cairn_control_plane::iam::{
    evaluate, object_arn, Policy, PolicySet, Principal, RequestContext,
};
use criterion::{criterion_group, criterion_main, Criterion};
use time::macros::datetime;

fn policy(p: usize) -> Policy {
    let statements: Vec<String> = (0..10)
        .map(|s| {
            let bucket = format!("bucket-{p}-{s}");
            match s % 5 {
                0 => format!(
                    r#"{{"Sid":"S{s}","Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::{bucket}/*"}}"#
                ),
                1 => format!(
                    r#"{{"Sid":"S{s}","Effect":"Allow","Action":"s3:List*","Resource":"arn:aws:s3:::{bucket}","Condition":{{"StringLike":{{"s3:prefix":["home/${{aws:username}}/*",""]}}}}}}"#
                ),
                2 => format!(
                    r#"{{"Sid":"S{s}","Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::{bucket}/locked/*"}}"#
                ),
                3 => format!(
                    r#"{{"Sid":"S{s}","Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::{bucket}/home/${{aws:username}}/*","Condition":{{"IpAddress":{{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}},"Bool":{{"aws:SecureTransport":"true"}}}}}}"#
                ),
                _ => format!(
                    r#"{{"Sid":"S{s}","Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::{bucket}/*","Condition":{{"DateGreaterThan":{{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}}}}"#
                ),
            }
        })
        .collect();
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    );
    match Policy::parse_identity(&text) {
        Ok(p) => p,
        Err(e) => panic!("benchmark policy is invalid: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let policies: Vec<Policy> = (0..20).map(policy).collect();
    let names: Vec<String> = (0..20).map(|i| format!("policy-{i}")).collect();
    let mut set = PolicySet::default();
    for (name, p) in names.iter().zip(&policies) {
        set = set.user(name, p);
    }
    let principal = Principal::user("123456789012", "alice", "AKIAALICE");
    let ctx = |key: &str| {
        RequestContext::new(
            "s3:GetObject",
            Some(object_arn("bucket-19-3", key)),
            principal.clone(),
        )
        .with_time(datetime!(2026-06-15 12:00:00 UTC))
        .with_key("aws:SourceIp", "10.1.2.3")
        .with_key("aws:SecureTransport", "true")
    };
    let allowed = ctx("home/alice/report.pdf");
    let denied = ctx("home/bob/report.pdf");
    assert!(evaluate(&allowed, &set).allowed);
    assert!(!evaluate(&denied, &set).allowed);

    let mut group = c.benchmark_group("policy evaluation (20 policies x 10 statements)");
    group.bench_function("allowed by the last policy", |b| {
        b.iter(|| evaluate(black_box(&allowed), black_box(&set)).allowed)
    });
    group.bench_function("implicitly denied", |b| {
        b.iter(|| evaluate(black_box(&denied), black_box(&set)).allowed)
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
