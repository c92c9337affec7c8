//! Bucket CORS rules (PutBucketCors), as the control plane keeps them, and how a browser's
//! request is matched against them.
//!
//! A rule set is checked against AWS's limits where it is applied ([`check_rules`]), so one a
//! peer site sends is held to them too. Matching is bounded by those limits and one of Cairn's
//! own: at most [`MAX_RULES`] rules of at most [`MAX_CONFIG_BYTES`], each pattern with one
//! wildcard at most, and at most [`MAX_PATTERNS`] origins and as many allowed headers in all (AWS
//! bounds only the size; a preflight compares every requested header with every allowed one, so
//! thousands of them would make each anonymous preflight cost milliseconds).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// AWS's limits.
pub const MAX_RULES: usize = 100;
pub const MAX_RULE_ID: usize = 255;
/// AWS's bound on a CORS configuration (64 KB), counted here over the strings it holds.
pub const MAX_CONFIG_BYTES: usize = 64 << 10;
/// Cairn's bound on `AllowedOrigin`s, and on `AllowedHeader`s, over all rules.
pub const MAX_PATTERNS: usize = 1000;
/// The methods a rule may allow.
pub const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// One rule, as it was put (GET returns it unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins, each with at most one `*` (`*` alone: any origin).
    pub allowed_origins: Vec<String>,
    /// Of [`METHODS`].
    pub allowed_methods: Vec<String>,
    /// Headers a preflight may ask for, case-insensitive, each with at most one `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Response headers a browser may show the page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

/// Why a rule set is refused, each with the S3 error AWS gives.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum CorsError {
    /// 400 MalformedXML.
    #[error("{0}")]
    Malformed(String),
    /// 400 InvalidRequest.
    #[error("{0}")]
    InvalidRequest(String),
}

/// HTTP's token characters: what a header name may hold (RFC 9110 5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn wildcards(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'*').count()
}

/// AWS's limits on a rule set (an empty one deletes the configuration).
pub fn check_rules(rules: &[CorsRule]) -> Result<(), CorsError> {
    use CorsError::{InvalidRequest as Req, Malformed};
    if rules.len() > MAX_RULES {
        return Err(Req(format!(
            "The number of CORS rules should not exceed allowed limit of {MAX_RULES} rules."
        )));
    }
    let mut bytes = 0;
    for r in rules {
        if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
            return Err(Malformed(
                "Each CORSRule must identify at least one origin and one method.".into(),
            ));
        }
        if let Some(m) = r
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(Req(format!(
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            )));
        }
        for (what, list) in [
            ("AllowedOrigin", &r.allowed_origins),
            ("AllowedHeader", &r.allowed_headers),
        ] {
            for v in list {
                if v.is_empty() {
                    return Err(Malformed(format!("{what} must not be empty")));
                }
                if wildcards(v) > 1 {
                    return Err(Req(format!(
                        "{what} \"{v}\" can not have more than one wildcard."
                    )));
                }
            }
        }
        for h in &r.expose_headers {
            if h.contains('*') {
                return Err(Req(format!(
                    "ExposeHeader \"{h}\" contains wildcard. We currently do not support wildcard for ExposeHeader."
                )));
            }
            if !is_token(h) {
                return Err(Req(format!(
                    "ExposeHeader \"{h}\" contains invalid character."
                )));
            }
        }
        if r.id
            .as_ref()
            .is_some_and(|id| id.chars().count() > MAX_RULE_ID)
        {
            return Err(Req(format!(
                "ID length should not exceed allowed limit of {MAX_RULE_ID}"
            )));
        }
        if let Some(s) = r.max_age_seconds.filter(|s| *s < 0) {
            return Err(Malformed(format!(
                "MaxAgeSeconds \"{s}\" is not a valid value."
            )));
        }
        bytes += r.id.as_ref().map_or(0, String::len)
            + [
                &r.allowed_origins,
                &r.allowed_methods,
                &r.allowed_headers,
                &r.expose_headers,
            ]
            .into_iter()
            .flatten()
            .map(String::len)
            .sum::<usize>();
    }
    for (what, count) in [
        (
            "AllowedOrigin",
            rules.iter().map(|r| r.allowed_origins.len()).sum::<usize>(),
        ),
        (
            "AllowedHeader",
            rules.iter().map(|r| r.allowed_headers.len()).sum(),
        ),
    ] {
        if count > MAX_PATTERNS {
            return Err(Req(format!(
                "A CORS configuration can have at most {MAX_PATTERNS} {what} elements"
            )));
        }
    }
    if bytes > MAX_CONFIG_BYTES {
        return Err(Req(format!(
            "The CORS configuration must not exceed {} KB",
            MAX_CONFIG_BYTES >> 10
        )));
    }
    Ok(())
}

/// Whether `value` fits `pattern`, which holds at most one `*` standing for any run of
/// characters; ASCII case is ignored when `fold` is set.
fn fits(pattern: &str, value: &str, fold: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match pattern.split_once('*') {
        None => eq(pattern, value),
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.is_char_boundary(head.len())
                && value.is_char_boundary(value.len() - tail.len())
                && eq(head, &value[..head.len()])
                && eq(tail, &value[value.len() - tail.len()..])
        }
    }
}

/// The rule a request is allowed by, and how it names the origin back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    pub rule: &'a CorsRule,
    /// The rule allows any origin (`*`): the answer says `*` and allows no credentials.
    pub any_origin: bool,
}

/// The first rule allowing `origin` to use `method` sending `headers` (a preflight's
/// `Access-Control-Request-Headers`, lower case; none for an actual request), as AWS picks it.
pub fn find<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[&str],
) -> Option<Grant<'a>> {
    rules.iter().find_map(|rule| {
        if !rule.allowed_methods.iter().any(|m| m == method)
            || !rule.allowed_origins.iter().any(|o| fits(o, origin, false))
            || !headers
                .iter()
                .all(|h| rule.allowed_headers.iter().any(|a| fits(a, h, true)))
        {
            return None;
        }
        Some(Grant {
            rule,
            any_origin: rule.allowed_origins.iter().any(|o| o == "*"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        CorsRule {
            id: None,
            allowed_origins: v(origins),
            allowed_methods: v(methods),
            allowed_headers: v(headers),
            expose_headers: Vec::new(),
            max_age_seconds: None,
        }
    }

    #[test]
    fn limits_and_their_errors() {
        let ok = rule(&["http://*.example.com"], &["GET", "PUT"], &["x-amz-*"]);
        assert_eq!(check_rules(std::slice::from_ref(&ok)), Ok(()));
        let req = |r: &CorsRule| {
            matches!(
                check_rules(std::slice::from_ref(r)),
                Err(CorsError::InvalidRequest(_))
            )
        };
        let malformed = |r: &CorsRule| {
            matches!(
                check_rules(std::slice::from_ref(r)),
                Err(CorsError::Malformed(_))
            )
        };
        assert!(req(&rule(&["*"], &["PATCH"], &[])));
        assert!(req(&rule(&["*"], &["get"], &[])), "methods are upper case");
        assert!(req(&rule(&["http://*.*.com"], &["GET"], &[])));
        assert!(req(&rule(&["*"], &["GET"], &["x-*-*"])));
        assert!(malformed(&rule(&[], &["GET"], &[])));
        assert!(malformed(&rule(&["*"], &[], &[])));
        assert!(malformed(&rule(&[""], &["GET"], &[])));
        let mut r = ok.clone();
        r.expose_headers = vec!["x-amz-*".into()];
        assert!(req(&r));
        r.expose_headers = vec!["etag\r\nx: y".into()];
        assert!(req(&r), "an exposed header must be a header name");
        let mut r = ok.clone();
        r.max_age_seconds = Some(-1);
        assert!(malformed(&r));
        r.max_age_seconds = Some(0);
        r.id = Some("i".repeat(MAX_RULE_ID + 1));
        assert!(req(&r));
        assert!(matches!(
            check_rules(&vec![ok.clone(); MAX_RULES + 1]),
            Err(CorsError::InvalidRequest(_))
        ));
        assert_eq!(check_rules(&vec![ok; MAX_RULES]), Ok(()));
        let big = rule(&["*"], &["GET"], &[&"h".repeat(MAX_CONFIG_BYTES)]);
        assert!(req(&big), "the configuration's size is bounded");
        let names: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("x-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(
            req(&rule(&["*"], &["GET"], &names)),
            "allowed headers are bounded"
        );
        assert!(req(&rule(&names, &["GET"], &[])), "origins are bounded");
        assert_eq!(
            check_rules(&[rule(&names[1..], &["GET"], &names[1..])]),
            Ok(())
        );
    }

    #[test]
    fn wildcards_fit_one_run() {
        assert!(fits("*", "", false));
        assert!(fits(
            "http://*.example.com",
            "http://a.b.example.com",
            false
        ));
        assert!(!fits("http://*.example.com", "http://example.com", false));
        assert!(!fits(
            "http://*.example.com",
            "https://a.example.com",
            false
        ));
        assert!(
            !fits("ab*ba", "aba", false),
            "head and tail must not overlap"
        );
        assert!(fits("X-Amz-*", "x-amz-date", true));
        assert!(!fits("X-Amz-*", "x-amz-date", false));
        assert!(!fits("é*", "e\u{301}", false));
        assert!(
            !fits("a*", "\u{e9}", false),
            "a split inside a character fits nothing"
        );
    }

    #[test]
    fn the_first_rule_that_allows_everything_wins() {
        let rules = [
            rule(&["http://www.example.com"], &["PUT", "POST"], &["*"]),
            rule(
                &["http://*.example.com"],
                &["GET"],
                &["Content-Type", "x-amz-*"],
            ),
            rule(&["*"], &["GET"], &["*"]),
        ];
        let g = find(&rules, "http://www.example.com", "PUT", &["x-anything"]).unwrap();
        assert_eq!((g.rule, g.any_origin), (&rules[0], false));
        let g = find(
            &rules,
            "http://a.example.com",
            "GET",
            &["content-type", "x-amz-date"],
        )
        .unwrap();
        assert_eq!(g.rule, &rules[1]);
        let g = find(&rules, "http://a.example.com", "GET", &["x-other"]).unwrap();
        assert_eq!(
            (g.rule, g.any_origin),
            (&rules[2], true),
            "no header allowed by rule 1"
        );
        assert!(find(
            &rules,
            "http://a.example.com",
            "GET",
            &["x-other", "x-more"]
        )
        .is_some());
        assert!(find(&rules[..2], "http://a.example.com", "GET", &["x-other"]).is_none());
        assert!(find(&rules, "http://a.example.com", "DELETE", &[]).is_none());
        assert!(find(&rules[..2], "http://evil.com", "GET", &[]).is_none());
    }
}
