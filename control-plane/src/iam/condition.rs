//! The `Condition` element: operators, `...IfExists`, the `ForAnyValue:`/`ForAllValues:` set
//! qualifiers and AWS's rules for keys the request does not carry.
//!
//! Semantics (AWS "Condition operators" and "multivalued context keys"):
//! * several values for one key in the policy: OR; several keys, several operators: AND;
//! * a key absent from the request: the condition is false, except for the negated operators
//!   (`StringNotEquals`, `NotIpAddress`, ...) where it is true, `...IfExists` (true), `Null`
//!   (tests exactly that) and `ForAllValues:` (true: every one of no values matches);
//! * without a qualifier a multi-valued request key matches when any of its values does, and a
//!   negated operator is the negation of its positive form;
//! * `ForAnyValue:` true when at least one request value satisfies the operator, `ForAllValues:`
//!   when every request value does (for a negated operator: matches none of the policy values).

use std::net::IpAddr;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use super::context::{normalize_key, ConditionKeys};
use super::pattern::{match_tokens, Pattern, Tok};

/// The operators, in their positive form plus a negation flag where AWS has a `Not` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
    Null,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
}

const OPERATORS: &[(&str, Operator)] = &[
    ("StringEquals", Operator::StringEquals),
    ("StringNotEquals", Operator::StringNotEquals),
    ("StringEqualsIgnoreCase", Operator::StringEqualsIgnoreCase),
    (
        "StringNotEqualsIgnoreCase",
        Operator::StringNotEqualsIgnoreCase,
    ),
    ("StringLike", Operator::StringLike),
    ("StringNotLike", Operator::StringNotLike),
    ("NumericEquals", Operator::NumericEquals),
    ("NumericNotEquals", Operator::NumericNotEquals),
    ("NumericLessThan", Operator::NumericLessThan),
    ("NumericLessThanEquals", Operator::NumericLessThanEquals),
    ("NumericGreaterThan", Operator::NumericGreaterThan),
    (
        "NumericGreaterThanEquals",
        Operator::NumericGreaterThanEquals,
    ),
    ("DateEquals", Operator::DateEquals),
    ("DateNotEquals", Operator::DateNotEquals),
    ("DateLessThan", Operator::DateLessThan),
    ("DateLessThanEquals", Operator::DateLessThanEquals),
    ("DateGreaterThan", Operator::DateGreaterThan),
    ("DateGreaterThanEquals", Operator::DateGreaterThanEquals),
    ("Bool", Operator::Bool),
    ("IpAddress", Operator::IpAddress),
    ("NotIpAddress", Operator::NotIpAddress),
    ("Null", Operator::Null),
    ("ArnEquals", Operator::ArnEquals),
    ("ArnLike", Operator::ArnLike),
    ("ArnNotEquals", Operator::ArnNotEquals),
    ("ArnNotLike", Operator::ArnNotLike),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    StrIgnoreCase,
    StrLike,
    Num,
    Date,
    Bool,
    Ip,
    Null,
    Arn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Operator {
    fn kind(self) -> Kind {
        use Operator::*;
        match self {
            StringEquals | StringNotEquals => Kind::Str,
            StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => Kind::StrIgnoreCase,
            StringLike | StringNotLike => Kind::StrLike,
            NumericEquals
            | NumericNotEquals
            | NumericLessThan
            | NumericLessThanEquals
            | NumericGreaterThan
            | NumericGreaterThanEquals => Kind::Num,
            DateEquals
            | DateNotEquals
            | DateLessThan
            | DateLessThanEquals
            | DateGreaterThan
            | DateGreaterThanEquals => Kind::Date,
            Bool => Kind::Bool,
            IpAddress | NotIpAddress => Kind::Ip,
            Null => Kind::Null,
            ArnEquals | ArnLike | ArnNotEquals | ArnNotLike => Kind::Arn,
        }
    }

    /// The `Not` operators: true when the request key is absent, and the negation of the positive
    /// operator otherwise.
    pub fn is_negated(self) -> bool {
        use Operator::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
                | ArnNotEquals
                | ArnNotLike
        )
    }

    fn cmp(self) -> Cmp {
        use Operator::*;
        match self {
            NumericLessThan | DateLessThan => Cmp::Lt,
            NumericLessThanEquals | DateLessThanEquals => Cmp::Le,
            NumericGreaterThan | DateGreaterThan => Cmp::Gt,
            NumericGreaterThanEquals | DateGreaterThanEquals => Cmp::Ge,
            _ => Cmp::Eq,
        }
    }
}

/// `ForAnyValue:` / `ForAllValues:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    ForAnyValue,
    ForAllValues,
}

/// Why a condition block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("Condition must be an object of operators")]
    NotAnObject,
    #[error("unknown condition operator {0:?}")]
    UnknownOperator(String),
    #[error("condition operator {0:?} must map condition keys to values")]
    OperatorNotAnObject(String),
    #[error("condition operator {0:?} has no condition key")]
    NoKeys(String),
    #[error("invalid condition key {0:?}")]
    BadKey(String),
    #[error("condition key {0:?} has no value")]
    NoValues(String),
    #[error("condition key {key:?}: value must be a string, number or boolean")]
    BadValueType { key: String },
    #[error("condition {operator} on {key:?}: invalid value {value:?}")]
    BadValue {
        operator: String,
        key: String,
        value: String,
    },
}

/// One operator applied to one key with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub operator: Operator,
    pub qualifier: Option<Qualifier>,
    pub if_exists: bool,
    /// Normalized key name (see [`normalize_key`]).
    pub key: String,
    values: Vec<Pattern>,
}

/// Parses the `Condition` object into clauses (every one must hold).
pub(crate) fn parse_conditions(
    value: &serde_json::Value,
    variables: bool,
) -> Result<Vec<Clause>, ConditionError> {
    let ops = value.as_object().ok_or(ConditionError::NotAnObject)?;
    let mut clauses = Vec::new();
    for (op_name, keys) in ops {
        let (qualifier, operator, if_exists) = parse_operator(op_name)
            .ok_or_else(|| ConditionError::UnknownOperator(op_name.clone()))?;
        let keys = keys
            .as_object()
            .ok_or_else(|| ConditionError::OperatorNotAnObject(op_name.clone()))?;
        if keys.is_empty() {
            return Err(ConditionError::NoKeys(op_name.clone()));
        }
        for (key, vals) in keys {
            if !valid_key(key) {
                return Err(ConditionError::BadKey(key.clone()));
            }
            let raw = match vals {
                serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
                v => vec![v],
            };
            if raw.is_empty() {
                return Err(ConditionError::NoValues(key.clone()));
            }
            let mut values = Vec::with_capacity(raw.len());
            for v in raw {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return Err(ConditionError::BadValueType { key: key.clone() }),
                };
                let pattern = Pattern::parse(&text, variables, false);
                if !pattern.has_variables() && !value_is_valid(operator.kind(), &text) {
                    return Err(ConditionError::BadValue {
                        operator: op_name.clone(),
                        key: key.clone(),
                        value: text,
                    });
                }
                values.push(pattern);
            }
            clauses.push(Clause {
                operator,
                qualifier,
                if_exists,
                key: normalize_key(key),
                values,
            });
        }
    }
    Ok(clauses)
}

/// `[ForAnyValue:|ForAllValues:]Operator[IfExists]`, compared case-insensitively.
fn parse_operator(name: &str) -> Option<(Option<Qualifier>, Operator, bool)> {
    let (qualifier, rest) = match name.split_once(':') {
        Some((q, rest)) if q.eq_ignore_ascii_case("ForAnyValue") => {
            (Some(Qualifier::ForAnyValue), rest)
        }
        Some((q, rest)) if q.eq_ignore_ascii_case("ForAllValues") => {
            (Some(Qualifier::ForAllValues), rest)
        }
        Some(_) => return None,
        None => (None, name),
    };
    let lookup = |n: &str| {
        OPERATORS
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(n))
            .map(|(_, op)| *op)
    };
    if let Some(op) = lookup(rest) {
        return Some((qualifier, op, false));
    }
    let base = rest.get(..rest.len().checked_sub(8)?)?;
    let suffix = rest.get(base.len()..)?;
    if !suffix.eq_ignore_ascii_case("IfExists") {
        return None;
    }
    // `NullIfExists` would contradict itself: Null is the existence test.
    lookup(base)
        .filter(|op| *op != Operator::Null)
        .map(|op| (qualifier, op, true))
}

/// `service:name`, optionally `/tag-key`.
fn valid_key(key: &str) -> bool {
    let name = key.split_once('/').map_or(key, |(n, _)| n);
    match name.split_once(':') {
        Some((service, rest)) => {
            !service.is_empty()
                && !rest.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
        }
        None => false,
    }
}

fn value_is_valid(kind: Kind, text: &str) -> bool {
    match kind {
        Kind::Num => parse_number(text).is_some(),
        Kind::Date => parse_date(text).is_some(),
        Kind::Bool | Kind::Null => {
            text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false")
        }
        Kind::Ip => parse_cidr(text).is_some(),
        Kind::Str | Kind::StrIgnoreCase | Kind::StrLike | Kind::Arn => true,
    }
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Dates as AWS accepts them: ISO 8601 (`2026-01-02T03:04:05Z`, with fractions or an offset, or a
/// bare `2026-01-02`) or epoch seconds. Compared as nanoseconds since the epoch.
fn parse_date(text: &str) -> Option<i128> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(i128::from(secs) * 1_000_000_000);
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    let no_seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]Z");
    if let Ok(t) = time::PrimitiveDateTime::parse(text, no_seconds) {
        return Some(t.assume_utc().unix_timestamp_nanos());
    }
    let date_only = format_description!("[year]-[month]-[day]");
    Date::parse(text, date_only)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp_nanos())
}

/// An address or a CIDR block, as (network, prefix length).
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let text = text.trim();
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    let ip = text.trim().parse::<IpAddr>().ok()?;
    // An IPv4 client on a dual-stack listener shows up as ::ffff:a.b.c.d.
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// ARNs compare component by component (`*` never crosses a `:`), over the six components.
fn arn_match(toks: &[Tok], value: &str) -> bool {
    let mut parts = toks.splitn(6, |t| *t == Tok::Byte(b':'));
    let mut vals = value.splitn(6, ':');
    for _ in 0..6 {
        match (parts.next(), vals.next()) {
            (Some(p), Some(v)) => {
                if !match_tokens(p, v.as_bytes()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

fn compare<T: PartialOrd>(cmp: Cmp, request: T, policy: T) -> bool {
    match cmp {
        Cmp::Eq => request == policy,
        Cmp::Lt => request < policy,
        Cmp::Le => request <= policy,
        Cmp::Gt => request > policy,
        Cmp::Ge => request >= policy,
    }
}

impl Clause {
    /// Evaluates the clause against the request's keys.
    pub(crate) fn holds(&self, keys: &ConditionKeys) -> bool {
        let request = keys.get_normalized(&self.key);
        if self.operator == Operator::Null {
            let absent = request.is_none();
            return self.values.iter().any(|p| {
                p.literal(keys)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true") == absent)
            });
        }
        let Some(request) = request else {
            return match (self.if_exists, self.qualifier) {
                (true, _) | (false, Some(Qualifier::ForAllValues)) => true,
                (false, Some(Qualifier::ForAnyValue)) => false,
                (false, None) => self.operator.is_negated(),
            };
        };
        let Some(policy) = self.resolve(keys) else {
            // A value names a variable the request lacks: the condition cannot match.
            return false;
        };
        let negated = self.operator.is_negated();
        let positive = |v: &String| policy.iter().any(|p| self.matches_one(v, p));
        match self.qualifier {
            None => request.iter().any(positive) != negated,
            Some(Qualifier::ForAnyValue) => request.iter().any(|v| positive(v) != negated),
            Some(Qualifier::ForAllValues) => request.iter().all(|v| positive(v) != negated),
        }
    }

    fn resolve<'a>(&'a self, keys: &ConditionKeys) -> Option<Vec<Resolved<'a>>> {
        let like = matches!(self.operator.kind(), Kind::StrLike | Kind::Arn);
        self.values
            .iter()
            .map(|p| {
                if like {
                    p.tokens(keys).map(Resolved::Tokens)
                } else {
                    p.literal(keys).map(Resolved::Text)
                }
            })
            .collect()
    }

    /// The positive form of the operator on one request value and one policy value.
    fn matches_one(&self, request: &str, policy: &Resolved<'_>) -> bool {
        match (self.operator.kind(), policy) {
            (Kind::StrLike, Resolved::Tokens(t)) => match_tokens(t, request.as_bytes()),
            (Kind::Arn, Resolved::Tokens(t)) => arn_match(t, request),
            (Kind::Str, Resolved::Text(p)) => request == p,
            (Kind::StrIgnoreCase, Resolved::Text(p)) => request.to_lowercase() == p.to_lowercase(),
            (Kind::Num, Resolved::Text(p)) => match (parse_number(request), parse_number(p)) {
                (Some(r), Some(p)) => compare(self.operator.cmp(), r, p),
                _ => false,
            },
            (Kind::Date, Resolved::Text(p)) => match (parse_date(request), parse_date(p)) {
                (Some(r), Some(p)) => compare(self.operator.cmp(), r, p),
                _ => false,
            },
            (Kind::Bool, Resolved::Text(p)) => {
                let is_bool =
                    |s: &str| s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false");
                is_bool(request) && request.trim().eq_ignore_ascii_case(p.trim())
            }
            (Kind::Ip, Resolved::Text(p)) => match (parse_ip(request), parse_cidr(p)) {
                (Some(ip), Some(net)) => in_cidr(ip, net),
                _ => false,
            },
            _ => false,
        }
    }
}

enum Resolved<'a> {
    Text(String),
    Tokens(std::borrow::Cow<'a, [Tok]>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        assert_eq!(
            parse_operator("ForAllValues:StringLikeIfExists"),
            Some((Some(Qualifier::ForAllValues), Operator::StringLike, true))
        );
        assert_eq!(parse_operator("NullIfExists"), None);
        assert_eq!(parse_operator("StringEqual"), None);
        assert_eq!(parse_operator("Foo:StringEquals"), None);
        assert_eq!(parse_operator("IfExists"), None);
    }

    #[test]
    fn cidrs_and_dates() {
        let net = parse_cidr("10.0.0.0/8").expect("cidr");
        assert!(parse_ip("10.1.2.3").is_some_and(|ip| in_cidr(ip, net)));
        assert!(parse_ip("::ffff:10.1.2.3").is_some_and(|ip| in_cidr(ip, net)));
        assert!(!parse_ip("11.1.2.3").is_some_and(|ip| in_cidr(ip, net)));
        let all = parse_cidr("0.0.0.0/0").expect("cidr");
        assert!(parse_ip("1.2.3.4").is_some_and(|ip| in_cidr(ip, all)));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        let v6 = parse_cidr("2001:db8::/32").expect("cidr");
        assert!(parse_ip("2001:db8::1").is_some_and(|ip| in_cidr(ip, v6)));
        assert_eq!(parse_date("1970-01-01T00:00:10Z"), Some(10_000_000_000));
        assert_eq!(parse_date("10"), Some(10_000_000_000));
        assert_eq!(parse_date("1970-01-02"), Some(86_400_000_000_000));
        assert!(parse_date("yesterday").is_none());
    }
}
