//! Distinguished names as mapping keys. A directory answers the same DN in whatever case and
//! spacing its entries were written with (`CN=Alice, OU=People` and `cn=alice,ou=people` are one
//! entry), so a policy attached to one spelling must match the other: every DN is stored and
//! compared in one normal form, as MinIO does.

/// The normal form of `dn`: RDNs split on unescaped commas, spaces around them and around `=`
/// dropped, all lower case (attribute types are case-insensitive everywhere, and the naming
/// attributes of user and group entries are in AD and OpenLDAP's default schemas). `None`
/// when it is no DN: empty, an RDN without `=`, or a dangling escape.
pub fn normalize(dn: &str) -> Option<String> {
    let mut out = String::with_capacity(dn.len());
    for rdn in split_unescaped(dn.trim(), ',')? {
        let mut parts = Vec::new();
        for ava in split_unescaped(rdn, '+')? {
            let (attr, value) = split_once_unescaped(ava, '=')?;
            let (attr, value) = (attr.trim(), trim_unescaped(value));
            if attr.is_empty() || value.is_empty() {
                return None;
            }
            parts.push(format!("{}={}", attr.to_lowercase(), value.to_lowercase()));
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&parts.join("+"));
    }
    (!out.is_empty()).then_some(out)
}

/// `s` split on `sep` where it is not escaped by a backslash; `None` on a dangling backslash.
fn split_unescaped(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next()?;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    Some(parts)
}

fn split_once_unescaped(s: &str, sep: char) -> Option<(&str, &str)> {
    let parts = split_unescaped(s, sep)?;
    let first = parts.first()?;
    (parts.len() >= 2).then(|| (*first, &s[first.len() + 1..]))
}

/// `value` without leading spaces and without trailing spaces that are not escaped (`\ `).
fn trim_unescaped(value: &str) -> &str {
    let value = value.trim_start();
    let mut end = value.len();
    while value[..end].ends_with(' ') && !value[..end - 1].ends_with('\\') {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn spellings_of_one_dn_normalize_alike() {
        let table = [
            (
                "cn=alice,ou=people,dc=example,dc=org",
                Some("cn=alice,ou=people,dc=example,dc=org"),
            ),
            (
                "CN=Alice, OU=People ,DC=Example,DC=org",
                Some("cn=alice,ou=people,dc=example,dc=org"),
            ),
            ("  uid = bob , dc=x ", Some("uid=bob,dc=x")),
            (r"cn=Smith\, John,dc=x", Some(r"cn=smith\, john,dc=x")),
            (r"cn=trailing\ ,dc=x", Some(r"cn=trailing\ ,dc=x")),
            ("cn=a+sn=B,dc=x", Some("cn=a+sn=b,dc=x")),
            ("cn=a=b,dc=x", Some("cn=a=b,dc=x")),
            ("", None),
            ("alice", None),
            ("cn=,dc=x", None),
            ("=alice,dc=x", None),
            ("cn=a,,dc=x", None),
            (r"cn=a\", None),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for s in [
            "\\",
            "\\\\",
            ",",
            "=",
            "+",
            "é=ü,ß=ẞ",
            "a=\\é",
            "a= \\ ",
            "a=b\\,",
        ] {
            let _ = normalize(s);
        }
    }
}
