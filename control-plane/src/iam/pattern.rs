//! Strings from policies that may hold wildcards (`*`, `?`), policy variables (`${aws:username}`,
//! `${s3:prefix, 'default'}`) and the escapes `${*}`, `${?}`, `${$}`. A value substituted for a
//! variable, or produced by an escape, is literal text: a user called `a*` must not match `ab`.
//!
//! Matching works on bytes with an iterative backtracking matcher (no recursion, O(n·m) worst
//! case), so hostile policies or keys cannot blow the stack or run away.

use super::context::{normalize_key, ConditionKeys};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Policy text: `*` and `?` are wildcards here.
    Text(String),
    /// Text from an escape: matched literally.
    Literal(String),
    /// A policy variable: the request's value of the (normalized) key, matched literally.
    Var {
        key: String,
        default: Option<String>,
    },
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Byte(u8),
    /// `*`: any run of characters, including none.
    Any,
    /// `?`: exactly one character.
    One,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// The text as written in the policy.
    src: String,
    segs: Vec<Seg>,
    /// Precompiled tokens when there is no variable (the common case): no allocation per match.
    fixed: Option<Vec<Tok>>,
    /// The literal text before the first wildcard or variable: a text without it cannot match,
    /// which spares building the tokens of a variable pattern for most statements.
    prefix: Vec<u8>,
}

impl Pattern {
    /// Parses `src`; with `variables` false (Version 2008-10-17) `${...}` is plain text.
    /// `lower` lower-cases the text (action names compare case-insensitively).
    pub(crate) fn parse(src: &str, variables: bool, lower: bool) -> Self {
        let case = |s: &str| {
            if lower {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        let mut segs = Vec::new();
        let mut rest = src;
        while let Some(start) = rest.find("${").filter(|_| variables) {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            let inner = &rest[start + 2..start + 2 + len];
            let seg = match inner {
                "*" | "?" | "$" => Some(Seg::Literal(inner.to_owned())),
                _ => parse_var(inner),
            };
            match seg {
                Some(seg) => {
                    if start > 0 {
                        segs.push(Seg::Text(case(&rest[..start])));
                    }
                    segs.push(seg);
                }
                // Not a variable (e.g. `${` in an object name): keep it as text.
                None => segs.push(Seg::Text(case(&rest[..start + 3 + len]))),
            }
            rest = &rest[start + 3 + len..];
        }
        if !rest.is_empty() {
            segs.push(Seg::Text(case(rest)));
        }
        let fixed = if segs.iter().any(|s| matches!(s, Seg::Var { .. })) {
            None
        } else {
            let mut toks = Vec::new();
            for seg in &segs {
                push_seg(&mut toks, seg, None);
            }
            Some(toks)
        };
        let prefix = match segs.first() {
            Some(Seg::Text(t)) => t.bytes().take_while(|b| *b != b'*' && *b != b'?').collect(),
            Some(Seg::Literal(t)) => t.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        Self {
            src: src.to_owned(),
            segs,
            fixed,
            prefix,
        }
    }

    pub(crate) fn source(&self) -> String {
        self.src.clone()
    }

    /// True when the pattern names a variable (its meaning depends on the request).
    pub(crate) fn has_variables(&self) -> bool {
        self.fixed.is_none()
    }

    /// The compiled tokens with variables substituted; `None` when a variable has no value (the
    /// element then matches nothing, as in AWS).
    pub(crate) fn tokens<'a>(
        &'a self,
        keys: &ConditionKeys,
    ) -> Option<std::borrow::Cow<'a, [Tok]>> {
        if let Some(fixed) = &self.fixed {
            return Some(std::borrow::Cow::Borrowed(fixed));
        }
        let mut toks = Vec::new();
        for seg in &self.segs {
            let value = match seg {
                Seg::Var { key, default } => Some(var_value(keys, key, default.as_deref())?),
                _ => None,
            };
            push_seg(&mut toks, seg, value);
        }
        Some(std::borrow::Cow::Owned(toks))
    }

    /// Matches `text` with wildcards.
    pub(crate) fn matches(&self, text: &str, keys: &ConditionKeys) -> bool {
        if !text.as_bytes().starts_with(&self.prefix) {
            return false;
        }
        self.tokens(keys)
            .is_some_and(|toks| match_tokens(&toks, text.as_bytes()))
    }

    /// The pattern as a plain string (wildcards taken literally), for the equality operators.
    pub(crate) fn literal(&self, keys: &ConditionKeys) -> Option<String> {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Text(s) | Seg::Literal(s) => out.push_str(s),
                Seg::Var { key, default } => {
                    out.push_str(var_value(keys, key, default.as_deref())?);
                }
            }
        }
        Some(out)
    }
}

fn var_value<'a>(keys: &'a ConditionKeys, key: &str, default: Option<&'a str>) -> Option<&'a str> {
    // A variable stands for one value: a multi-valued key cannot be substituted.
    match keys.get_normalized(key) {
        Some([one]) => Some(one.as_str()),
        Some(_) => None,
        None => default,
    }
}

fn push_seg(toks: &mut Vec<Tok>, seg: &Seg, value: Option<&str>) {
    match seg {
        Seg::Text(s) => toks.extend(s.bytes().map(|b| match b {
            b'*' => Tok::Any,
            b'?' => Tok::One,
            b => Tok::Byte(b),
        })),
        Seg::Literal(s) => toks.extend(s.bytes().map(Tok::Byte)),
        Seg::Var { .. } => toks.extend(value.unwrap_or_default().bytes().map(Tok::Byte)),
    }
}

/// `key` or `key, 'default'`; `None` when it is not a well-formed variable name.
fn parse_var(inner: &str) -> Option<Seg> {
    let (name, default) = match inner.split_once(',') {
        Some((name, default)) => {
            let d = default.trim();
            let d = d.strip_prefix('\'')?.strip_suffix('\'')?;
            (name.trim(), Some(d.to_owned()))
        }
        None => (inner, None),
    };
    let valid = name.contains(':')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:/.".contains(&b));
    valid.then(|| Seg::Var {
        key: normalize_key(name),
        default,
    })
}

/// Length of the UTF-8 character starting with `lead`, so `?` consumes a whole character.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// Wildcard match of `toks` against all of `text`: the classic greedy matcher that remembers the
/// last `*` and retries from one character further on mismatch.
pub(crate) fn match_tokens(toks: &[Tok], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match toks.get(p) {
            Some(Tok::Byte(b)) if *b == c => {
                p += 1;
                t += 1;
                continue;
            }
            Some(Tok::One) => {
                p += 1;
                t += char_len(c);
                continue;
            }
            Some(Tok::Any) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            _ => {}
        }
        let Some((sp, st)) = star else {
            return false;
        };
        let next = st + text.get(st).map_or(1, |&b| char_len(b));
        star = Some((sp, next));
        p = sp + 1;
        t = next;
    }
    toks.get(p..)
        .is_some_and(|rest| rest.iter().all(|tok| *tok == Tok::Any))
        && t <= text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p, true, false).matches(t, &ConditionKeys::default())
    }

    #[test]
    fn wildcards() {
        assert!(m("*", ""));
        assert!(m("a*c", "abbbc"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a*d", "abc"));
        assert!(m("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y"));
        assert!(!m("arn:aws:s3:::b/*", "arn:aws:s3:::bb/x"));
        assert!(m("*a*a*a*", "aaaa"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn variables_and_escapes() {
        let mut keys = ConditionKeys::default();
        keys.set("aws:username", "a*");
        let p = Pattern::parse("home/${aws:username}/*", true, false);
        assert!(p.matches("home/a*/x", &keys));
        assert!(!p.matches("home/ab/x", &keys));
        assert!(!p.matches("home/a*/x", &ConditionKeys::default()));
        let lit = Pattern::parse("x${*}y${?}${$}", true, false);
        assert!(lit.matches("x*y?$", &keys));
        assert!(!lit.matches("xzy?$", &keys));
        let d = Pattern::parse("${s3:prefix, 'none'}", true, false);
        assert_eq!(d.literal(&keys).as_deref(), Some("none"));
        let old = Pattern::parse("${aws:username}", false, false);
        assert!(old.matches("${aws:username}", &keys));
        assert!(Pattern::parse("a${b", true, false).matches("a${b", &keys));
        assert!(Pattern::parse("a${not a var}b", true, false).matches("a${not a var}b", &keys));
    }
}
