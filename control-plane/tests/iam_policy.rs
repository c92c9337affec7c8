//! Table-driven tests of the IAM policy engine: policy documents + a request context -> Allow or
//! Deny, and malformed documents -> the error naming the problem.
//!
//! Every case states its expected outcome and is checked against the engine; a case whose policy
//! does not parse fails too, so no case can pass vacuously.

use cairn_control_plane::iam::{
    canned, evaluate, object_arn, Policy, PolicyError, PolicySet, Principal, Reason,
    RequestContext, Source,
};
use time::macros::datetime;

const ACCOUNT: &str = "123456789012";

#[derive(Clone, Copy)]
enum Who {
    Alice,
    Bob,
    Anonymous,
    Root,
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    user: Vec<String>,
    groups: Vec<String>,
    bucket: Option<String>,
    session: Option<String>,
    who: Who,
    action: &'static str,
    resource: Option<String>,
    keys: Vec<(&'static str, &'static str)>,
    allow: bool,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        user: Vec::new(),
        groups: Vec::new(),
        bucket: None,
        session: None,
        who: Who::Alice,
        action: "s3:GetObject",
        resource: Some(object_arn("b", "k")),
        keys: Vec::new(),
        allow: false,
    }
}

impl Case {
    fn user(mut self, p: impl Into<String>) -> Self {
        self.user.push(p.into());
        self
    }
    fn group(mut self, p: impl Into<String>) -> Self {
        self.groups.push(p.into());
        self
    }
    fn bucket(mut self, p: impl Into<String>) -> Self {
        self.bucket = Some(p.into());
        self
    }
    fn session(mut self, p: impl Into<String>) -> Self {
        self.session = Some(p.into());
        self
    }
    fn who(mut self, w: Who) -> Self {
        self.who = w;
        self
    }
    fn act(mut self, a: &'static str) -> Self {
        self.action = a;
        self
    }
    fn res(mut self, r: &str) -> Self {
        self.resource = Some(r.to_owned());
        self
    }
    fn obj(mut self, key: &str) -> Self {
        self.resource = Some(object_arn("b", key));
        self
    }
    fn no_resource(mut self) -> Self {
        self.resource = None;
        self
    }
    /// Adds a value; repeating a key makes it multi-valued.
    fn key(mut self, k: &'static str, v: &'static str) -> Self {
        self.keys.push((k, v));
        self
    }
    fn allow(mut self) -> Self {
        self.allow = true;
        self
    }
    fn deny(mut self) -> Self {
        self.allow = false;
        self
    }
}

/// A policy allowing (or denying) `actions` on `resources`.
fn stmt(effect: &str, actions: &str, resources: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Action":{actions},"Resource":{resources}}}]}}"#
    )
}

fn allow(actions: &str, resources: &str) -> String {
    stmt("Allow", actions, resources)
}

fn deny(actions: &str, resources: &str) -> String {
    stmt("Deny", actions, resources)
}

/// Allow s3:GetObject on bucket `b` under `condition`.
fn cond(condition: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"c","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{condition}}}]}}"#
    )
}

/// A bucket policy on `b` with one statement.
fn bpol(effect: &str, principal: &str, actions: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Principal":{principal},"Action":{actions},"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}}]}}"#
    )
}

fn canned_text(name: &str) -> String {
    canned::CANNED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| (*t).to_owned())
        .unwrap_or_default()
}

const GET_B: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;

fn condition_cases() -> Vec<Case> {
    vec![
        // String operators.
        case("StringEquals match")
            .user(cond(r#"{"StringEquals":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "home/")
            .allow(),
        case("StringEquals mismatch")
            .user(cond(r#"{"StringEquals":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "work/"),
        case("StringEquals missing key")
            .user(cond(r#"{"StringEquals":{"s3:prefix":"home/"}}"#)),
        case("StringEquals values are ORed")
            .user(cond(r#"{"StringEquals":{"s3:prefix":["a/","home/"]}}"#))
            .key("s3:prefix", "home/")
            .allow(),
        case("StringEquals is case-sensitive")
            .user(cond(r#"{"StringEquals":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "Home/"),
        case("StringNotEquals different")
            .user(cond(r#"{"StringNotEquals":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "work/")
            .allow(),
        case("StringNotEquals equal")
            .user(cond(r#"{"StringNotEquals":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "home/"),
        case("StringNotEquals missing key is true")
            .user(cond(r#"{"StringNotEquals":{"s3:prefix":"home/"}}"#))
            .allow(),
        case("StringEqualsIgnoreCase")
            .user(cond(r#"{"StringEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#))
            .key("s3:prefix", "home/")
            .allow(),
        case("StringEqualsIgnoreCase mismatch")
            .user(cond(r#"{"StringEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#))
            .key("s3:prefix", "work/"),
        case("StringNotEqualsIgnoreCase same modulo case")
            .user(cond(r#"{"StringNotEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#))
            .key("s3:prefix", "home/"),
        case("StringNotEqualsIgnoreCase different")
            .user(cond(r#"{"StringNotEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#))
            .key("s3:prefix", "work/")
            .allow(),
        case("StringLike star")
            .user(cond(r#"{"StringLike":{"s3:prefix":"home/*"}}"#))
            .key("s3:prefix", "home/x/y")
            .allow(),
        case("StringLike star mismatch")
            .user(cond(r#"{"StringLike":{"s3:prefix":"home/*"}}"#))
            .key("s3:prefix", "work/x"),
        case("StringLike question mark")
            .user(cond(r#"{"StringLike":{"s3:prefix":"?ome/*"}}"#))
            .key("s3:prefix", "dome/1")
            .allow(),
        case("StringLike is case-sensitive")
            .user(cond(r#"{"StringLike":{"s3:prefix":"home/*"}}"#))
            .key("s3:prefix", "HOME/x"),
        case("StringNotLike different")
            .user(cond(r#"{"StringNotLike":{"s3:prefix":"home/*"}}"#))
            .key("s3:prefix", "work/x")
            .allow(),
        case("StringNotLike matching")
            .user(cond(r#"{"StringNotLike":{"s3:prefix":"home/*"}}"#))
            .key("s3:prefix", "home/x"),
        case("StringNotLike missing key is true")
            .user(cond(r#"{"StringNotLike":{"s3:prefix":"home/*"}}"#))
            .allow(),
        case("StringLike missing key is false")
            .user(cond(r#"{"StringLike":{"s3:prefix":"*"}}"#)),
        case("condition key names are case-insensitive")
            .user(cond(r#"{"StringEquals":{"S3:Prefix":"home/"}}"#))
            .key("s3:PREFIX", "home/")
            .allow(),
        case("operator names are case-insensitive")
            .user(cond(r#"{"stringequals":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "home/")
            .allow(),
        case("StringEqualsIfExists missing key")
            .user(cond(r#"{"StringEqualsIfExists":{"s3:prefix":"home/"}}"#))
            .allow(),
        case("StringEqualsIfExists present mismatch")
            .user(cond(r#"{"StringEqualsIfExists":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "work/"),
        case("StringEqualsIfExists present match")
            .user(cond(r#"{"StringEqualsIfExists":{"s3:prefix":"home/"}}"#))
            .key("s3:prefix", "home/")
            .allow(),
        case("StringNotLikeIfExists present matching")
            .user(cond(r#"{"StringNotLikeIfExists":{"s3:prefix":"home/*"}}"#))
            .key("s3:prefix", "home/a"),
        case("two keys: both hold")
            .user(cond(
                r#"{"StringEquals":{"s3:prefix":"home/","s3:delimiter":"/"}}"#,
            ))
            .key("s3:prefix", "home/")
            .key("s3:delimiter", "/")
            .allow(),
        case("two keys: one fails")
            .user(cond(
                r#"{"StringEquals":{"s3:prefix":"home/","s3:delimiter":"/"}}"#,
            ))
            .key("s3:prefix", "home/")
            .key("s3:delimiter", "-"),
        case("two operators: one fails")
            .user(cond(
                r#"{"StringEquals":{"s3:prefix":"home/"},"NumericLessThan":{"s3:max-keys":"10"}}"#,
            ))
            .key("s3:prefix", "home/")
            .key("s3:max-keys", "100"),
        case("two operators: both hold")
            .user(cond(
                r#"{"StringEquals":{"s3:prefix":"home/"},"NumericLessThan":{"s3:max-keys":"10"}}"#,
            ))
            .key("s3:prefix", "home/")
            .key("s3:max-keys", "5")
            .allow(),
        // Numeric operators.
        case("NumericEquals")
            .user(cond(r#"{"NumericEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "10")
            .allow(),
        case("NumericEquals mismatch")
            .user(cond(r#"{"NumericEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "11"),
        case("NumericNotEquals different")
            .user(cond(r#"{"NumericNotEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "11")
            .allow(),
        case("NumericNotEquals equal")
            .user(cond(r#"{"NumericNotEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "10"),
        case("NumericLessThan")
            .user(cond(r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "5")
            .allow(),
        case("NumericLessThan equal")
            .user(cond(r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "10"),
        case("NumericLessThanEquals equal")
            .user(cond(r#"{"NumericLessThanEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "10")
            .allow(),
        case("NumericLessThanEquals above")
            .user(cond(r#"{"NumericLessThanEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "11"),
        case("NumericGreaterThan")
            .user(cond(r#"{"NumericGreaterThan":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "11")
            .allow(),
        case("NumericGreaterThan equal")
            .user(cond(r#"{"NumericGreaterThan":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "10"),
        case("NumericGreaterThanEquals equal")
            .user(cond(r#"{"NumericGreaterThanEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "10")
            .allow(),
        case("NumericGreaterThanEquals below")
            .user(cond(r#"{"NumericGreaterThanEquals":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "9"),
        case("Numeric request value not a number")
            .user(cond(r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#))
            .key("s3:max-keys", "ten"),
        case("Numeric policy value as JSON number")
            .user(cond(r#"{"NumericEquals":{"s3:max-keys":10}}"#))
            .key("s3:max-keys", "10")
            .allow(),
        case("NumericLessThanIfExists missing key")
            .user(cond(r#"{"NumericLessThanIfExists":{"s3:max-keys":"10"}}"#))
            .allow(),
        case("NumericLessThan missing key")
            .user(cond(r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#)),
        case("Numeric decimals")
            .user(cond(r#"{"NumericLessThan":{"s3:max-keys":"2.5"}}"#))
            .key("s3:max-keys", "2.25")
            .allow(),
        case("Numeric on aws:EpochTime")
            .user(cond(r#"{"NumericGreaterThan":{"aws:EpochTime":"1700000000"}}"#))
            .allow(),
        case("object lock remaining days")
            .user(cond(
                r#"{"NumericGreaterThanEquals":{"s3:object-lock-remaining-retention-days":"30"}}"#,
            ))
            .key("s3:object-lock-remaining-retention-days", "10"),
        // Date operators (the context's time is 2026-06-15T12:00:00Z).
        case("DateLessThan future")
            .user(cond(
                r#"{"DateLessThan":{"aws:CurrentTime":"2027-01-01T00:00:00Z"}}"#,
            ))
            .allow(),
        case("DateLessThan past")
            .user(cond(
                r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            )),
        case("DateGreaterThan past")
            .user(cond(
                r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            ))
            .allow(),
        case("DateGreaterThan future")
            .user(cond(
                r#"{"DateGreaterThan":{"aws:CurrentTime":"2027-01-01T00:00:00Z"}}"#,
            )),
        case("DateEquals exact")
            .user(cond(
                r#"{"DateEquals":{"aws:CurrentTime":"2026-06-15T12:00:00Z"}}"#,
            ))
            .allow(),
        case("DateNotEquals exact")
            .user(cond(
                r#"{"DateNotEquals":{"aws:CurrentTime":"2026-06-15T12:00:00Z"}}"#,
            )),
        case("DateNotEquals other")
            .user(cond(
                r#"{"DateNotEquals":{"aws:CurrentTime":"2026-06-15T12:00:01Z"}}"#,
            ))
            .allow(),
        case("DateLessThanEquals exact")
            .user(cond(
                r#"{"DateLessThanEquals":{"aws:CurrentTime":"2026-06-15T12:00:00Z"}}"#,
            ))
            .allow(),
        case("DateGreaterThanEquals exact")
            .user(cond(
                r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-06-15T12:00:00Z"}}"#,
            ))
            .allow(),
        case("DateGreaterThanEquals one second later")
            .user(cond(
                r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-06-15T12:00:01Z"}}"#,
            )),
        case("Date policy value in epoch seconds")
            .user(cond(r#"{"DateGreaterThan":{"aws:CurrentTime":"1700000000"}}"#))
            .allow(),
        case("Date on aws:EpochTime with an ISO value")
            .user(cond(
                r#"{"DateLessThan":{"aws:EpochTime":"2027-01-01T00:00:00Z"}}"#,
            ))
            .allow(),
        case("Date with an offset")
            .user(cond(
                r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-06-15T13:00:00+02:00"}}"#,
            ))
            .allow(),
        case("Date with fractional seconds")
            .user(cond(
                r#"{"DateLessThan":{"aws:CurrentTime":"2026-06-15T12:00:00.5Z"}}"#,
            ))
            .allow(),
        case("Date as a bare day")
            .user(cond(r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-06-15"}}"#))
            .allow(),
        case("Date missing key")
            .user(cond(
                r#"{"DateLessThan":{"s3:object-lock-retain-until-date":"2027-01-01T00:00:00Z"}}"#,
            )),
        case("DateLessThanIfExists missing key")
            .user(cond(
                r#"{"DateLessThanIfExists":{"s3:object-lock-retain-until-date":"2027-01-01T00:00:00Z"}}"#,
            ))
            .allow(),
        // Bool.
        case("Bool true")
            .user(cond(r#"{"Bool":{"aws:SecureTransport":"true"}}"#))
            .key("aws:SecureTransport", "true")
            .allow(),
        case("Bool mismatch")
            .user(cond(r#"{"Bool":{"aws:SecureTransport":"true"}}"#))
            .key("aws:SecureTransport", "false"),
        case("Bool JSON boolean")
            .user(cond(r#"{"Bool":{"aws:SecureTransport":false}}"#))
            .key("aws:SecureTransport", "false")
            .allow(),
        case("Bool missing key")
            .user(cond(r#"{"Bool":{"aws:SecureTransport":"true"}}"#)),
        case("BoolIfExists missing key")
            .user(cond(r#"{"BoolIfExists":{"aws:SecureTransport":"true"}}"#))
            .allow(),
        case("Bool compares case-insensitively")
            .user(cond(r#"{"Bool":{"aws:SecureTransport":"true"}}"#))
            .key("aws:SecureTransport", "TRUE")
            .allow(),
        case("Bool request value not a boolean")
            .user(cond(r#"{"Bool":{"aws:SecureTransport":"true"}}"#))
            .key("aws:SecureTransport", "yes"),
        // IP addresses.
        case("IpAddress in CIDR")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
            .key("aws:SourceIp", "10.1.2.3")
            .allow(),
        case("IpAddress outside CIDR")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
            .key("aws:SourceIp", "192.168.1.1"),
        case("IpAddress single address")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"192.168.1.5"}}"#))
            .key("aws:SourceIp", "192.168.1.5")
            .allow(),
        case("IpAddress list is ORed")
            .user(cond(
                r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}"#,
            ))
            .key("aws:SourceIp", "192.168.7.7")
            .allow(),
        case("NotIpAddress outside")
            .user(cond(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
            .key("aws:SourceIp", "192.168.1.1")
            .allow(),
        case("NotIpAddress inside")
            .user(cond(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
            .key("aws:SourceIp", "10.0.0.1"),
        case("NotIpAddress missing key is true")
            .user(cond(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
            .allow(),
        case("IpAddress missing key")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#)),
        case("IpAddress IPv6")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#))
            .key("aws:SourceIp", "2001:db8::5")
            .allow(),
        case("IpAddress IPv6 block, IPv4 client")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#))
            .key("aws:SourceIp", "10.0.0.1"),
        case("IpAddress IPv4-mapped client")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#))
            .key("aws:SourceIp", "::ffff:10.9.8.7")
            .allow(),
        case("IpAddress /0")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#))
            .key("aws:SourceIp", "8.8.8.8")
            .allow(),
        case("IpAddress /32 is one address")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.1/32"}}"#))
            .key("aws:SourceIp", "10.0.0.2"),
        case("IpAddress malformed client address")
            .user(cond(r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#))
            .key("aws:SourceIp", "not-an-ip"),
        // Null.
        case("Null true, key absent")
            .user(cond(r#"{"Null":{"s3:versionid":"true"}}"#))
            .allow(),
        case("Null true, key present")
            .user(cond(r#"{"Null":{"s3:versionid":"true"}}"#))
            .key("s3:versionid", "v1"),
        case("Null false, key present")
            .user(cond(r#"{"Null":{"s3:versionid":"false"}}"#))
            .key("s3:versionid", "v1")
            .allow(),
        case("Null false, key absent")
            .user(cond(r#"{"Null":{"s3:versionid":"false"}}"#)),
        case("Null JSON boolean")
            .user(cond(r#"{"Null":{"s3:x-amz-server-side-encryption":true}}"#))
            .allow(),
        // ARN operators.
        case("ArnLike on principal ARN")
            .user(cond(
                r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/*"}}"#,
            ))
            .allow(),
        case("ArnLike other account")
            .user(cond(
                r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::999999999999:user/*"}}"#,
            )),
        case("ArnEquals exact")
            .user(cond(
                r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/alice"}}"#,
            ))
            .allow(),
        case("ArnNotEquals exact")
            .user(cond(
                r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/alice"}}"#,
            )),
        case("ArnNotLike other")
            .user(cond(
                r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/bob"}}"#,
            ))
            .allow(),
        case("ArnLike star does not cross colons")
            .user(cond(r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:*"}}"#)),
        case("ArnLike question mark")
            .user(cond(
                r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/alic?"}}"#,
            ))
            .allow(),
        case("ArnNotLike missing key is true")
            .user(cond(
                r#"{"ArnNotLike":{"aws:SourceArn":"arn:aws:s3:::x"}}"#,
            ))
            .allow(),
        // Set qualifiers and multi-valued keys.
        case("ForAnyValue: one matches")
            .user(cond(
                r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["b","c"]}}"#,
            ))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "b")
            .allow(),
        case("ForAnyValue: none matches")
            .user(cond(
                r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["c","d"]}}"#,
            ))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "b"),
        case("ForAnyValue: missing key is false")
            .user(cond(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":"a"}}"#)),
        case("ForAllValues: all in set")
            .user(cond(
                r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["a","b","c"]}}"#,
            ))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "b")
            .allow(),
        case("ForAllValues: one outside")
            .user(cond(
                r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["a","c"]}}"#,
            ))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "b"),
        case("ForAllValues: missing key is true")
            .user(cond(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":"a"}}"#))
            .allow(),
        case("ForAllValues:StringLike")
            .user(cond(r#"{"ForAllValues:StringLike":{"aws:TagKeys":"team-*"}}"#))
            .key("aws:TagKeys", "team-a")
            .key("aws:TagKeys", "team-b")
            .allow(),
        case("ForAnyValue:StringNotEquals: one outside")
            .user(cond(
                r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["a"]}}"#,
            ))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "z")
            .allow(),
        case("ForAnyValue:StringNotEquals: all inside")
            .user(cond(
                r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["a","z"]}}"#,
            ))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "z"),
        case("ForAllValues:StringNotEquals: none inside")
            .user(cond(
                r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["a"]}}"#,
            ))
            .key("aws:TagKeys", "x")
            .key("aws:TagKeys", "y")
            .allow(),
        case("ForAllValues:StringNotEquals: one inside")
            .user(cond(
                r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["a"]}}"#,
            ))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "y"),
        case("multi-valued key, no qualifier: any value matches")
            .user(cond(r#"{"StringEquals":{"aws:TagKeys":"b"}}"#))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "b")
            .allow(),
        case("multi-valued key, negated operator: any match negates")
            .user(cond(r#"{"StringNotEquals":{"aws:TagKeys":"a"}}"#))
            .key("aws:TagKeys", "a")
            .key("aws:TagKeys", "z"),
        case("ForAnyValue with IfExists, missing key")
            .user(cond(
                r#"{"ForAnyValue:StringLikeIfExists":{"aws:TagKeys":"a*"}}"#,
            ))
            .allow(),
        case("ForAllValues:NumericLessThan")
            .user(cond(
                r#"{"ForAllValues:NumericLessThan":{"s3:max-keys":"100"}}"#,
            ))
            .key("s3:max-keys", "5")
            .key("s3:max-keys", "500"),
        // The S3 condition keys the edge fills in.
        case("ExistingObjectTag")
            .user(cond(
                r#"{"StringEquals":{"s3:ExistingObjectTag/Project":"x"}}"#,
            ))
            .key("s3:ExistingObjectTag/Project", "x")
            .allow(),
        case("ExistingObjectTag: the tag key keeps its case")
            .user(cond(
                r#"{"StringEquals":{"s3:ExistingObjectTag/Project":"x"}}"#,
            ))
            .key("s3:ExistingObjectTag/project", "x"),
        case("RequestObjectTag on PutObject")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"s3:RequestObjectTag/env":"dev"}}}]}"#,
            )
            .act("s3:PutObject")
            .key("s3:RequestObjectTag/env", "dev")
            .allow(),
        case("require SSE-KMS: missing header")
            .user(allow(r#""s3:PutObject""#, r#""arn:aws:s3:::b/*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoPlain","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}]}"#,
            )
            .act("s3:PutObject"),
        case("require SSE-KMS: header present")
            .user(allow(r#""s3:PutObject""#, r#""arn:aws:s3:::b/*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoPlain","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}]}"#,
            )
            .act("s3:PutObject")
            .key("s3:x-amz-server-side-encryption", "aws:kms")
            .allow(),
        case("KMS key id")
            .user(cond(
                r#"{"StringLike":{"s3:x-amz-server-side-encryption-aws-kms-key-id":"team-*"}}"#,
            ))
            .key("s3:x-amz-server-side-encryption-aws-kms-key-id", "team-a")
            .allow(),
        case("object lock mode")
            .user(cond(r#"{"StringEquals":{"s3:object-lock-mode":"COMPLIANCE"}}"#))
            .key("s3:object-lock-mode", "GOVERNANCE"),
        case("signature version")
            .user(cond(
                r#"{"StringEquals":{"s3:signatureversion":"AWS4-HMAC-SHA256"}}"#,
            ))
            .key("s3:signatureversion", "AWS")
            .deny(),
        case("auth type")
            .user(cond(r#"{"StringEquals":{"s3:authType":"REST-HEADER"}}"#))
            .key("s3:authtype", "REST-HEADER")
            .allow(),
        case("Referer")
            .user(cond(r#"{"StringLike":{"aws:Referer":"https://example.com/*"}}"#))
            .key("aws:Referer", "https://example.com/page")
            .allow(),
        case("UserAgent")
            .user(cond(r#"{"StringNotLike":{"aws:UserAgent":"*curl*"}}"#))
            .key("aws:UserAgent", "curl/8.0"),
        case("principal type")
            .user(cond(r#"{"StringEquals":{"aws:principaltype":"User"}}"#))
            .allow(),
    ]
}

fn variable_cases() -> Vec<Case> {
    let home = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/home/${aws:username}/*"}]}"#;
    vec![
        case("${aws:username} in Resource")
            .user(home)
            .obj("home/alice/x")
            .allow(),
        case("${aws:username} in Resource, other home")
            .user(home)
            .obj("home/bob/x"),
        case("${aws:username} in Resource, for bob")
            .user(home)
            .who(Who::Bob)
            .obj("home/bob/x")
            .allow(),
        case("Version 2008-10-17 has no variables")
            .user(
                r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/home/${aws:username}/*"}]}"#,
            )
            .obj("home/alice/x"),
        case("variable in a condition value")
            .user(cond(
                r#"{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}"#,
            ))
            .key("s3:prefix", "home/alice/docs")
            .allow(),
        case("variable in a condition value, mismatch")
            .user(cond(
                r#"{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}"#,
            ))
            .key("s3:prefix", "home/bob/docs"),
        case("${aws:userid}")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${aws:userid}/*"}]}"#,
            )
            .obj("AKIAALICE/x")
            .allow(),
        case("${aws:principaltype}")
            .user(cond(
                r#"{"StringEquals":{"s3:prefix":"${aws:principaltype}"}}"#,
            ))
            .key("s3:prefix", "User")
            .allow(),
        case("${s3:prefix} in Resource")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${s3:prefix}*"}]}"#,
            )
            .key("s3:prefix", "pub/")
            .obj("pub/x")
            .allow(),
        case("escape ${*} is a literal star")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${*}star"}]}"#,
            )
            .obj("*star")
            .allow(),
        case("escape ${*} does not match other text")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${*}star"}]}"#,
            )
            .obj("xstar"),
        case("escape ${?}")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/what${?}"}]}"#,
            )
            .obj("whatx"),
        case("escape ${$}")
            .user(cond(r#"{"StringEquals":{"s3:prefix":"${$}{x}"}}"#))
            .key("s3:prefix", "${x}")
            .allow(),
        case("variable the request lacks matches nothing")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${s3:prefix}*"}]}"#,
            )
            .obj("x"),
        case("variable default value")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${s3:prefix, 'shared'}/*"}]}"#,
            )
            .obj("shared/x")
            .allow(),
        case("substituted value is literal: star")
            .user(home)
            .key("aws:username", "*")
            .obj("home/zzz/x"),
        case("substituted value is literal: exact")
            .user(home)
            .key("aws:username", "*")
            .obj("home/*/x")
            .allow(),
        case("variable in a Deny condition")
            .user(allow(r#""s3:*""#, r#""arn:aws:s3:::b/*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/home/${aws:username}/*"}]}"#,
            )
            .obj("home/bob/x"),
    ]
}

fn action_resource_cases() -> Vec<Case> {
    vec![
        case("action names are case-insensitive")
            .user(allow(r#""S3:GETOBJECT""#, r#""arn:aws:s3:::b/*""#))
            .allow(),
        case("action wildcard")
            .user(allow(r#""s3:Get*""#, r#""arn:aws:s3:::b/*""#))
            .act("s3:GetObjectTagging")
            .allow(),
        case("action wildcard does not cover others")
            .user(allow(r#""s3:Get*""#, r#""arn:aws:s3:::b/*""#))
            .act("s3:PutObject"),
        case("action ? wildcard")
            .user(allow(r#""s3:?etObject""#, r#""arn:aws:s3:::b/*""#))
            .allow(),
        case("action * covers admin")
            .user(allow(r#""*""#, r#""*""#))
            .act("admin:ServerInfo")
            .no_resource()
            .allow(),
        case("action list")
            .user(allow(
                r#"["s3:PutObject","s3:GetObject"]"#,
                r#""arn:aws:s3:::b/*""#,
            ))
            .allow(),
        case("NotAction allows the rest")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"s3:DeleteObject","Resource":"arn:aws:s3:::b/*"}]}"#,
            )
            .allow(),
        case("NotAction excludes its action")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"s3:DeleteObject","Resource":"arn:aws:s3:::b/*"}]}"#,
            )
            .act("s3:DeleteObject"),
        case("Deny NotAction: everything but reads denied")
            .user(allow(r#""s3:*""#, r#""*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotAction":"s3:Get*","Resource":"*"}]}"#,
            )
            .act("s3:PutObject"),
        case("Deny NotAction: reads still allowed")
            .user(allow(r#""s3:*""#, r#""*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotAction":"s3:Get*","Resource":"*"}]}"#,
            )
            .allow(),
        case("NotResource allows outside")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","NotResource":"arn:aws:s3:::b/secret/*"}]}"#,
            )
            .obj("public/x")
            .allow(),
        case("NotResource excludes inside")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","NotResource":"arn:aws:s3:::b/secret/*"}]}"#,
            )
            .obj("secret/x"),
        case("Deny NotResource")
            .user(allow(r#""s3:*""#, r#""*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","NotResource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}]}"#,
            )
            .res("arn:aws:s3:::other/x"),
        case("bucket ARN does not cover objects")
            .user(allow(r#""s3:*""#, r#""arn:aws:s3:::b""#))
            .obj("x"),
        case("bucket ARN for ListBucket")
            .user(allow(r#""s3:ListBucket""#, r#""arn:aws:s3:::b""#))
            .act("s3:ListBucket")
            .res("arn:aws:s3:::b")
            .allow(),
        case("similar bucket name")
            .user(allow(r#""s3:*""#, r#""arn:aws:s3:::b/*""#))
            .res("arn:aws:s3:::bb/x"),
        case("resource list is ORed")
            .user(allow(
                r#""s3:GetObject""#,
                r#"["arn:aws:s3:::a/*","arn:aws:s3:::b/*"]"#,
            ))
            .allow(),
        case("resource *")
            .user(allow(r#""s3:GetObject""#, r#""*""#))
            .allow(),
        case("resources are case-sensitive")
            .user(allow(r#""s3:GetObject""#, r#""arn:aws:s3:::B/*""#)),
        case("admin action without Resource")
            .user(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"admin:*"}]}"#)
            .act("admin:CreateUser")
            .no_resource()
            .allow(),
        case("s3 statement does not grant admin")
            .user(allow(r#""s3:*""#, r#""*""#))
            .act("admin:CreateUser")
            .no_resource(),
        case("admin action ignores the Resource")
            .user(allow(r#""admin:ServerInfo""#, r#""arn:aws:s3:::*""#))
            .act("admin:ServerInfo")
            .no_resource()
            .allow(),
        case("no matching statement: implicit deny")
            .user(allow(r#""s3:PutObject""#, r#""*""#)),
        case("no policy at all"),
        case("single statement object form")
            .user(
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#,
            )
            .allow(),
        case("no Version: 2008 semantics still allow")
            .user(r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
            .allow(),
        case("unicode key with ?")
            .user(allow(r#""s3:GetObject""#, r#""arn:aws:s3:::b/caf?""#))
            .obj("café")
            .allow(),
    ]
}

fn combination_cases() -> Vec<Case> {
    let get_b = GET_B.to_owned();
    vec![
        case("Allow and Deny in one policy")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
            ),
        case("Deny first, Allow after")
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ),
        case("Deny in a second policy")
            .user(allow(r#""s3:*""#, r#""*""#))
            .user(deny(r#""s3:GetObject""#, r#""*""#)),
        case("Deny whose condition fails")
            .user(allow(r#""s3:*""#, r#""*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
            )
            .key("aws:SecureTransport", "true")
            .allow(),
        case("Deny whose condition holds")
            .user(allow(r#""s3:*""#, r#""*""#))
            .user(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
            )
            .key("aws:SecureTransport", "false"),
        case("Allow from the second of two policies")
            .user(allow(r#""s3:PutObject""#, r#""*""#))
            .user(get_b.clone())
            .allow(),
        case("group Deny beats user Allow")
            .user(get_b.clone())
            .group(deny(r#""s3:*""#, r#""*""#)),
        case("user Deny beats group Allow")
            .user(deny(r#""s3:GetObject""#, r#""*""#))
            .group(get_b.clone()),
        case("group Allow alone")
            .group(get_b.clone())
            .allow(),
        case("two groups, one denies")
            .group(get_b.clone())
            .group(deny(r#""s3:Get*""#, r#""arn:aws:s3:::b/*""#)),
        case("group Deny on another bucket")
            .user(get_b.clone())
            .group(deny(r#""s3:*""#, r#""arn:aws:s3:::other/*""#))
            .allow(),
        case("bucket Deny beats user Allow")
            .user(get_b.clone())
            .bucket(bpol("Deny", r#""*""#, r#""s3:GetObject""#)),
        case("user Deny beats bucket Allow")
            .user(deny(r#""s3:GetObject""#, r#""*""#))
            .bucket(bpol("Allow", r#""*""#, r#""s3:GetObject""#)),
        case("bucket Allow for the user, no identity policy")
            .bucket(bpol(
                "Allow",
                r#"{"AWS":"arn:aws:iam::123456789012:user/alice"}"#,
                r#""s3:GetObject""#,
            ))
            .allow(),
        case("bucket Allow for another user")
            .bucket(bpol(
                "Allow",
                r#"{"AWS":["arn:aws:iam::123456789012:user/bob"]}"#,
                r#""s3:GetObject""#,
            )),
        case("bucket Allow for another user, as that user")
            .bucket(bpol(
                "Allow",
                r#"{"AWS":["arn:aws:iam::123456789012:user/bob"]}"#,
                r#""s3:GetObject""#,
            ))
            .who(Who::Bob)
            .allow(),
        case("bucket Allow Principal * for a user")
            .bucket(bpol("Allow", r#""*""#, r#""s3:GetObject""#))
            .allow(),
        case("bucket Allow to the account id")
            .bucket(bpol("Allow", r#"{"AWS":"123456789012"}"#, r#""s3:GetObject""#))
            .allow(),
        case("bucket Allow to the account root ARN")
            .bucket(bpol(
                "Allow",
                r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
                r#""s3:GetObject""#,
            ))
            .allow(),
        case("bucket Allow to another account")
            .bucket(bpol("Allow", r#"{"AWS":"999999999999"}"#, r#""s3:GetObject""#)),
        case("bucket Allow other action")
            .bucket(bpol("Allow", r#""*""#, r#""s3:PutObject""#)),
        case("anonymous with Principal *")
            .who(Who::Anonymous)
            .bucket(bpol("Allow", r#""*""#, r#""s3:GetObject""#))
            .allow(),
        case("anonymous with {AWS:[*]}")
            .who(Who::Anonymous)
            .bucket(bpol("Allow", r#"{"AWS":["*"]}"#, r#""s3:GetObject""#))
            .allow(),
        case("anonymous, bucket allows only alice")
            .who(Who::Anonymous)
            .bucket(bpol(
                "Allow",
                r#"{"AWS":"arn:aws:iam::123456789012:user/alice"}"#,
                r#""s3:GetObject""#,
            )),
        case("anonymous ignores identity policies")
            .who(Who::Anonymous)
            .user(allow(r#""s3:*""#, r#""*""#)),
        case("anonymous without bucket policy").who(Who::Anonymous),
        case("anonymous PutObject where only GetObject is public")
            .who(Who::Anonymous)
            .act("s3:PutObject")
            .bucket(bpol("Allow", r#""*""#, r#""s3:GetObject""#)),
        case("anonymous ListBucket on the bucket ARN")
            .who(Who::Anonymous)
            .act("s3:ListBucket")
            .res("arn:aws:s3:::b")
            .bucket(bpol("Allow", r#""*""#, r#"["s3:ListBucket","s3:GetObject"]"#))
            .allow(),
        case("anonymous, bucket policy with SourceIp: inside")
            .who(Who::Anonymous)
            .bucket(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
            )
            .key("aws:SourceIp", "10.2.3.4")
            .allow(),
        case("anonymous, bucket policy with SourceIp: outside")
            .who(Who::Anonymous)
            .bucket(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
            )
            .key("aws:SourceIp", "11.2.3.4"),
        case("NotPrincipal Deny: the named user passes")
            .bucket(NOT_PRINCIPAL)
            .allow(),
        case("NotPrincipal Deny: other users are denied")
            .bucket(NOT_PRINCIPAL)
            .who(Who::Bob),
        case("NotPrincipal Deny: anonymous is denied")
            .bucket(NOT_PRINCIPAL)
            .who(Who::Anonymous),
        case("bucket Principal of type Service never matches")
            .bucket(bpol(
                "Allow",
                r#"{"Service":"s3.amazonaws.com"}"#,
                r#""s3:GetObject""#,
            )),
        // Root.
        case("root without any policy").who(Who::Root).allow(),
        case("root is not bound by a bucket Deny")
            .who(Who::Root)
            .bucket(bpol("Deny", r#""*""#, r#""s3:*""#))
            .allow(),
        case("root service account narrowed: allowed part")
            .who(Who::Root)
            .session(get_b.clone())
            .allow(),
        case("root service account narrowed: the rest")
            .who(Who::Root)
            .session(get_b.clone())
            .act("s3:PutObject"),
        // Session policies narrow.
        case("session and parent allow")
            .user(allow(r#""s3:*""#, r#""*""#))
            .session(get_b.clone())
            .allow(),
        case("session allows, parent does not")
            .user(allow(r#""s3:PutObject""#, r#""*""#))
            .session(allow(r#""s3:*""#, r#""*""#)),
        case("parent allows, session does not")
            .user(allow(r#""s3:*""#, r#""*""#))
            .session(allow(r#""s3:PutObject""#, r#""*""#)),
        case("session Deny")
            .user(allow(r#""s3:*""#, r#""*""#))
            .session(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Effect":"Deny","Action":"s3:GetObject","Resource":"*"}]}"#,
            ),
        case("session with bucket Allow")
            .session(get_b.clone())
            .bucket(bpol("Allow", r#""*""#, r#""s3:GetObject""#))
            .allow(),
        case("session narrows bucket Allow")
            .session(allow(r#""s3:PutObject""#, r#""*""#))
            .bucket(bpol("Allow", r#""*""#, r#""s3:GetObject""#)),
        case("readwrite parent, readonly session: PutObject")
            .user(canned_text("readwrite"))
            .session(canned_text("readonly"))
            .act("s3:PutObject"),
        case("readwrite parent, readonly session: GetObject")
            .user(canned_text("readwrite"))
            .session(canned_text("readonly"))
            .allow(),
        case("readonly parent, wide session: PutObject")
            .user(canned_text("readonly"))
            .session(allow(r#""s3:*""#, r#""*""#))
            .act("s3:PutObject"),
        case("group policies under a session")
            .group(canned_text("readwrite"))
            .session(get_b)
            .act("s3:DeleteObject"),
        // Canned policies.
        case("readonly GetObject").user(canned_text("readonly")).allow(),
        case("readonly PutObject")
            .user(canned_text("readonly"))
            .act("s3:PutObject"),
        case("readonly GetBucketLocation")
            .user(canned_text("readonly"))
            .act("s3:GetBucketLocation")
            .res("arn:aws:s3:::b")
            .allow(),
        case("readonly ListBucket is not granted")
            .user(canned_text("readonly"))
            .act("s3:ListBucket")
            .res("arn:aws:s3:::b"),
        case("writeonly PutObject")
            .user(canned_text("writeonly"))
            .act("s3:PutObject")
            .allow(),
        case("writeonly GetObject").user(canned_text("writeonly")),
        case("readwrite DeleteObject")
            .user(canned_text("readwrite"))
            .act("s3:DeleteObject")
            .allow(),
        case("readwrite admin")
            .user(canned_text("readwrite"))
            .act("admin:CreateUser")
            .no_resource(),
        case("consoleAdmin admin")
            .user(canned_text("consoleAdmin"))
            .act("admin:CreateUser")
            .no_resource()
            .allow(),
        case("consoleAdmin kms")
            .user(canned_text("consoleAdmin"))
            .act("kms:CreateKey")
            .no_resource()
            .allow(),
        case("consoleAdmin s3")
            .user(canned_text("consoleAdmin"))
            .act("s3:PutObject")
            .allow(),
        case("diagnostics ServerInfo")
            .user(canned_text("diagnostics"))
            .act("admin:ServerInfo")
            .no_resource()
            .allow(),
        case("diagnostics CreateUser")
            .user(canned_text("diagnostics"))
            .act("admin:CreateUser")
            .no_resource(),
        case("diagnostics GetObject").user(canned_text("diagnostics")),
    ]
}

const NOT_PRINCIPAL: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"OnlyAlice","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]},{"Sid":"Everyone","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;

fn principal(who: Who) -> Principal {
    match who {
        Who::Alice => Principal::user(ACCOUNT, "alice", "AKIAALICE"),
        Who::Bob => Principal::user(ACCOUNT, "bob", "AKIABOB"),
        Who::Anonymous => Principal::anonymous(),
        Who::Root => Principal::root(ACCOUNT),
    }
}

/// Runs one case; `Err` says what went wrong.
fn run(c: &Case) -> Result<(), String> {
    let parse_id = |t: &String| Policy::parse_identity(t).map_err(|e| format!("{t}: {e}"));
    let user = c.user.iter().map(parse_id).collect::<Result<Vec<_>, _>>()?;
    let groups = c
        .groups
        .iter()
        .map(parse_id)
        .collect::<Result<Vec<_>, _>>()?;
    let session = c.session.as_ref().map(parse_id).transpose()?;
    let bucket = c
        .bucket
        .as_ref()
        .map(|t| Policy::parse_bucket(t, "b").map_err(|e| format!("{t}: {e}")))
        .transpose()?;
    let mut set = PolicySet::default();
    for p in &user {
        set = set.user("u", p);
    }
    for p in &groups {
        set = set.group("g", "gp", p);
    }
    if let Some(b) = &bucket {
        set = set.bucket(b);
    }
    if let Some(s) = &session {
        set = set.session(s);
    }
    let mut ctx = RequestContext::new(c.action, c.resource.clone(), principal(c.who))
        .with_time(datetime!(2026-06-15 12:00:00 UTC));
    let mut names: Vec<&str> = c.keys.iter().map(|(k, _)| *k).collect();
    names.dedup();
    for name in names {
        let values: Vec<&str> = c
            .keys
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .collect();
        ctx = ctx.with_values(name, &values);
    }
    let verdict = evaluate(&ctx, &set);
    if verdict.allowed == c.allow {
        Ok(())
    } else {
        Err(format!(
            "expected {}, got {verdict}",
            if c.allow { "Allow" } else { "Deny" }
        ))
    }
}

fn all_cases() -> Vec<Case> {
    let mut cases = condition_cases();
    cases.extend(variable_cases());
    cases.extend(action_resource_cases());
    cases.extend(combination_cases());
    cases
}

#[test]
fn evaluation_table() {
    let cases = all_cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run(c).err().map(|e| format!("{}: {e}", c.name)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let allows = cases.iter().filter(|c| c.allow).count();
    // Both outcomes are exercised in quantity: a broken engine answering one way fails many.
    assert!(
        allows > 60 && cases.len() - allows > 60,
        "{allows} of {}",
        cases.len()
    );
}

/// Malformed documents: (name, kind, document, text the error must contain).
const MALFORMED: &[(&str, Kind, &str, &str)] = &[
    ("not JSON", Kind::Id, "{", "not valid JSON"),
    ("not an object", Kind::Id, "[]", "must be a JSON object"),
    (
        "bad Version",
        Kind::Id,
        r#"{"Version":"2012-10-18","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        "invalid Version",
    ),
    (
        "numeric Version",
        Kind::Id,
        r#"{"Version":2012,"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        "invalid Version",
    ),
    (
        "missing Statement",
        Kind::Id,
        r#"{"Version":"2012-10-17"}"#,
        "missing Statement",
    ),
    (
        "empty Statement",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[]}"#,
        "Statement must not be empty",
    ),
    (
        "Statement a string",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":"x"}"#,
        "Statement must be an object",
    ),
    (
        "statement not an object",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[1]}"#,
        "statement 0: statement must be an object",
    ),
    (
        "unknown top-level element",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statment":[]}"#,
        "unknown policy element \"Statment\"",
    ),
    (
        "missing Effect",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Action":"s3:*","Resource":"*"}]}"#,
        "missing Effect",
    ),
    (
        "bad Effect",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"allow","Action":"s3:*","Resource":"*"}]}"#,
        "invalid Effect \"allow\"",
    ),
    (
        "Action and NotAction",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","NotAction":"s3:GetObject","Resource":"*"}]}"#,
        "both Action and NotAction",
    ),
    (
        "missing Action",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
        "missing Action",
    ),
    (
        "empty Action",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]}"#,
        "Action must not be empty",
    ),
    (
        "Action not a string",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[7],"Resource":"*"}]}"#,
        "Action must be a string",
    ),
    (
        "unknown service",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:RunInstances","Resource":"*"}]}"#,
        "unknown service in action \"ec2:RunInstances\"",
    ),
    (
        "unknown action",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObjects","Resource":"*"}]}"#,
        "unknown action \"s3:GetObjects\"",
    ),
    (
        "action without service",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"GetObject","Resource":"*"}]}"#,
        "expected service:Name",
    ),
    (
        "Resource and NotResource",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"arn:aws:s3:::b"}]}"#,
        "both Resource and NotResource",
    ),
    (
        "missing Resource",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject"}]}"#,
        "missing Resource",
    ),
    (
        "bad Resource",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"bucket/*"}]}"#,
        "invalid resource \"bucket/*\"",
    ),
    (
        "unknown statement element",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effects":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        "unknown statement element \"Effects\"",
    ),
    (
        "duplicate Sid",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"a","Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#,
        "duplicate Sid \"a\"",
    ),
    (
        "Sid not a string",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":1,"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        "Sid must be a string",
    ),
    (
        "Principal in an identity policy",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#,
        "Principal is not allowed",
    ),
    (
        "bucket policy without Principal",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#,
        "missing Principal",
    ),
    (
        "bucket policy on another bucket",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other/*"}]}"#,
        "outside bucket",
    ),
    (
        "bucket policy on a prefix-named bucket",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::bb/*"}]}"#,
        "outside bucket",
    ),
    (
        "bucket policy allowing by NotResource",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/none"}]}"#,
        "Policy has invalid resource",
    ),
    (
        "bucket policy denying by NotResource outside",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","NotResource":"arn:aws:s3:::other/*"}]}"#,
        "Policy has invalid resource",
    ),
    (
        "Principal and NotPrincipal",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","NotPrincipal":{"AWS":"123456789012"},"Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#,
        "both Principal and NotPrincipal",
    ),
    (
        "bad Principal value",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#,
        "invalid Principal",
    ),
    (
        "unknown principal type",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Users":"*"},"Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#,
        "unknown principal type",
    ),
    (
        "Principal a bare string",
        Kind::Bucket,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"alice","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#,
        "invalid Principal",
    ),
    (
        "unknown operator",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEqualz":{"s3:prefix":"a"}}}]}"#,
        "unknown condition operator \"StringEqualz\"",
    ),
    (
        "NullIfExists",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"NullIfExists":{"s3:prefix":"true"}}}]}"#,
        "unknown condition operator",
    ),
    (
        "unknown qualifier",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"ForSomeValues:StringEquals":{"s3:prefix":"a"}}}]}"#,
        "unknown condition operator",
    ),
    (
        "bad number",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"NumericLessThan":{"s3:max-keys":"ten"}}}]}"#,
        "invalid value \"ten\"",
    ),
    (
        "bad date",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"tomorrow"}}}]}"#,
        "invalid value \"tomorrow\"",
    ),
    (
        "bad IP",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/40"}}}]}"#,
        "invalid value \"10.0.0.0/40\"",
    ),
    (
        "bad Bool",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"yes"}}}]}"#,
        "invalid value \"yes\"",
    ),
    (
        "bad Null",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"Null":{"s3:prefix":"maybe"}}}]}"#,
        "invalid value \"maybe\"",
    ),
    (
        "condition key without service",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"prefix":"a"}}}]}"#,
        "invalid condition key \"prefix\"",
    ),
    (
        "condition with no values",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"s3:prefix":[]}}}]}"#,
        "has no value",
    ),
    (
        "condition value an object",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"s3:prefix":{"a":1}}}}]}"#,
        "value must be a string, number or boolean",
    ),
    (
        "Condition not an object",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":"x"}]}"#,
        "Condition must be an object",
    ),
    (
        "operator without keys",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{}}}]}"#,
        "has no condition key",
    ),
    (
        "error names the statement",
        Kind::Id,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Action":"s3:*","Resource":"*"}]}"#,
        "statement 1: missing Effect",
    ),
];

#[derive(Clone, Copy)]
enum Kind {
    Id,
    Bucket,
}

#[test]
fn malformed_documents_are_rejected_with_the_problem_named() {
    let mut failures = Vec::new();
    for (name, kind, text, expected) in MALFORMED {
        let result = match kind {
            Kind::Id => Policy::parse_identity(text),
            Kind::Bucket => Policy::parse_bucket(text, "b"),
        };
        match result {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) if !e.to_string().contains(expected) => {
                failures.push(format!("{name}: error {e:?} lacks {expected:?}"));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn oversized_documents_are_rejected() {
    let huge = format!(
        r#"{{"Version":"2012-10-17","Id":"{}","Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*"}}]}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(Policy::parse_identity(&huge), Err(PolicyError::TooLarge));
}

#[test]
fn at_least_150_cases() {
    let total = all_cases().len() + MALFORMED.len();
    assert!(total >= 150, "only {total} cases");
}

#[test]
fn verdict_names_the_deciding_statement() {
    let user = Policy::parse_identity(GET_B).expect("valid");
    let group = Policy::parse_identity(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoGet","Effect":"Deny","Action":"s3:GetObject","Resource":"*"}]}"#,
    )
    .expect("valid");
    let ctx = RequestContext::new(
        "s3:GetObject",
        Some(object_arn("b", "k")),
        principal(Who::Alice),
    );
    let allowed = evaluate(&ctx, &PolicySet::default().user("mine", &user));
    assert!(allowed.allowed);
    assert!(matches!(
        allowed.reason,
        Reason::Allowed(d) if d.source == Source::User { policy: "mine" } && d.statement == 0
    ));
    let denied = evaluate(
        &ctx,
        &PolicySet::default()
            .user("mine", &user)
            .group("devs", "deny-get", &group),
    );
    assert!(!denied.allowed);
    assert!(matches!(
        denied.reason,
        Reason::ExplicitDeny(d) if d.sid == Some("NoGet")
            && d.source == Source::Group { group: "devs", policy: "deny-get" }
    ));
    assert_eq!(
        denied.to_string(),
        "denied by statement 0 (\"NoGet\") of policy \"deny-get\" of group \"devs\""
    );
    let none = evaluate(&ctx, &PolicySet::default());
    assert_eq!(none.reason, Reason::ImplicitDeny);
    let session = Policy::parse_identity(&allow(r#""s3:PutObject""#, r#""*""#)).expect("valid");
    let narrowed = evaluate(
        &ctx,
        &PolicySet::default().user("mine", &user).session(&session),
    );
    assert_eq!(narrowed.reason, Reason::NotInSession);
}

#[test]
fn policies_round_trip_through_serde() {
    for (_, text) in canned::CANNED.iter().chain([("x", NOT_PRINCIPAL)].iter()) {
        let policy = Policy::parse_identity(text)
            .or_else(|_| Policy::parse_bucket(text, "b"))
            .expect("valid");
        let json = serde_json::to_string(&policy).expect("serializes");
        let back: Policy = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, policy);
    }
    let bad: Result<Policy, _> = serde_json::from_str(r#"{"Statement":[]}"#);
    assert!(bad.is_err());
}

/// Every prefix and a set of byte mutations of real documents: parsing and evaluating never panics.
#[test]
fn hostile_documents_do_not_panic() {
    let ctx = RequestContext::new(
        "s3:GetObject",
        Some(object_arn("b", "k")),
        principal(Who::Alice),
    )
    .with_key("s3:prefix", "home/")
    .with_key("aws:SourceIp", "10.0.0.1");
    let docs = [
        NOT_PRINCIPAL,
        canned::CONSOLE_ADMIN,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:username}/*","Condition":{"ForAllValues:StringLike":{"s3:prefix":["${*}*?${","a"]},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"DateLessThan":{"aws:CurrentTime":"2030-01-01"}}}]}"#,
    ];
    let replacements = [b'*', b'?', b'$', b'{', b'}', b'"', b':', b'[', 0xC3];
    let mut parsed = 0usize;
    for doc in docs {
        let bytes = doc.as_bytes();
        for end in 0..=bytes.len() {
            let text = String::from_utf8_lossy(&bytes[..end]);
            if let Ok(p) =
                Policy::parse_bucket(&text, "b").or_else(|_| Policy::parse_identity(&text))
            {
                parsed += 1;
                let _ = evaluate(&ctx, &PolicySet::default().user("p", &p).bucket(&p));
            }
        }
        for i in 0..bytes.len() {
            for r in replacements {
                let mut m = bytes.to_vec();
                m[i] = r;
                let text = String::from_utf8_lossy(&m);
                if let Ok(p) =
                    Policy::parse_identity(&text).or_else(|_| Policy::parse_bucket(&text, "b"))
                {
                    parsed += 1;
                    let _ = evaluate(&ctx, &PolicySet::default().user("p", &p).bucket(&p));
                }
            }
        }
    }
    assert!(parsed > 0);
}

/// `GetBucketPolicyStatus`: public exactly when some Allow reaches everyone without a network or
/// account condition.
#[test]
fn bucket_policy_public_status() {
    let doc = |effect: &str, principal: &str, condition: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}",{principal},
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"{condition}}}]}}"#
        )
    };
    let cases = [
        (doc("Allow", r#""Principal":"*""#, ""), true),
        (doc("Allow", r#""Principal":{"AWS":["*"]}"#, ""), true),
        (
            doc(
                "Allow",
                r#""NotPrincipal":{"AWS":"arn:aws:iam::000000000000:user/x"}"#,
                "",
            ),
            true,
        ),
        (doc("Deny", r#""Principal":"*""#, ""), false),
        (
            doc(
                "Allow",
                r#""Principal":{"AWS":"arn:aws:iam::000000000000:user/x"}"#,
                "",
            ),
            false,
        ),
        (
            doc(
                "Allow",
                r#""Principal":"*""#,
                r#","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            ),
            false,
        ),
        (
            doc(
                "Allow",
                r#""Principal":"*""#,
                r#","Condition":{"StringLike":{"aws:UserAgent":"curl*"}}"#,
            ),
            true,
        ),
    ];
    for (text, public) in cases {
        let p = Policy::parse_bucket(&text, "b").expect(&text);
        assert_eq!(p.is_public(), public, "{text}");
    }
}

/// The authorizer looks up an object's tags only for policies that test them.
#[test]
fn policies_report_the_condition_keys_they_read() {
    let tagged = Policy::parse_identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",
        "Resource":"*","Condition":{"StringEquals":{"s3:ExistingObjectTag/Class":"x"}}}]}"#,
    )
    .unwrap();
    let plain = Policy::parse_identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",
        "Resource":"*","Condition":{"StringEquals":{"s3:prefix":"x"}}}]}"#,
    )
    .unwrap();
    assert!(tagged.mentions_key("s3:existingobjecttag/"));
    assert!(!plain.mentions_key("s3:existingobjecttag/"));
    assert!(plain.mentions_key("s3:prefix"));
}

/// A bucket policy governs its bucket only: a stored `NotResource` Allow (accepted before such
/// documents were refused) still loads, and neither it nor any other statement matches a resource
/// of another bucket.
#[test]
fn bucket_policies_never_reach_outside_their_bucket() {
    let legacy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/none"},{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/*"}]}"#;
    assert!(Policy::parse_bucket(legacy, "b").is_err());
    let p = Policy::load_bucket(legacy, "b").expect("a stored document loads");
    let deny_in_b = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/open/*"}]}"#;
    let d = Policy::parse_bucket(deny_in_b, "b").expect("a Deny by NotResource within b is valid");
    let decide = |policy: &Policy, resource: &str| {
        let ctx = RequestContext::new(
            "s3:GetObject",
            Some(resource.to_owned()),
            principal(Who::Anonymous),
        );
        evaluate(&ctx, &PolicySet::default().bucket(policy)).allowed
    };
    let denied_by = |policy: &Policy, resource: &str| {
        let ctx = RequestContext::new(
            "s3:GetObject",
            Some(resource.to_owned()),
            principal(Who::Alice),
        );
        matches!(
            evaluate(&ctx, &PolicySet::default().bucket(policy)).reason,
            Reason::ExplicitDeny(_)
        )
    };
    assert!(decide(&p, "arn:aws:s3:::b/x"));
    assert!(!decide(&p, "arn:aws:s3:::b/none"));
    assert!(!decide(&p, "arn:aws:s3:::victim/x"));
    assert!(!decide(&p, "arn:aws:s3:::bb/x"));
    assert!(denied_by(&d, "arn:aws:s3:::b/secret"));
    assert!(!denied_by(&d, "arn:aws:s3:::b/open/x"));
    assert!(!denied_by(&d, "arn:aws:s3:::other/x"));
}
