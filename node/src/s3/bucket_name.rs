//! Why a bucket name is invalid, in AWS's words: s3s refuses the same names (its
//! `check_bucket_name`) but says only `InvalidBucketName`, so a user cannot tell which rule the
//! name broke. The rules are s3s's, so both always agree (a unit test holds them together).

use std::net::IpAddr;

/// What is wrong with `name` as a bucket name; `None` when it is valid.
pub fn problem(name: &str) -> Option<&'static str> {
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..64).contains(&name.len()) {
        Some("Bucket names must be between 3 (min) and 63 (max) characters long.")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        Some("Bucket names can consist only of lowercase letters, numbers, dots (.), and hyphens (-).")
    } else if !alnum(name.as_bytes().first()) || !alnum(name.as_bytes().last()) {
        Some("Bucket names must begin and end with a letter or number.")
    } else if name.contains("..") {
        Some("Bucket names must not contain two adjacent periods.")
    } else if name.parse::<IpAddr>().is_ok() {
        Some("Bucket names must not be formatted as an IP address (for example, 192.168.5.4).")
    } else if name.starts_with("xn--") {
        Some("Bucket names must not start with the prefix xn--.")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_s3s_refuses_has_a_reason_and_no_other() {
        let long = "a".repeat(64);
        let names = [
            "ok-bucket",
            "a.b.c",
            "abc",
            "ab",
            &long,
            &long[1..],
            "Bad_Name",
            "UPPER",
            "-lead",
            "trail-",
            ".dot",
            "dot.",
            "two..dots",
            "192.168.5.4",
            "xn--punycode",
            "a b c",
            "ünï",
            "",
            "9starts-with-digit",
            "1.2.3",
        ];
        for n in names {
            assert_eq!(
                problem(n).is_none(),
                s3s::path::check_bucket_name(n),
                "{n:?}: {:?}",
                problem(n)
            );
        }
        assert_eq!(
            problem("Bad_Name"),
            Some("Bucket names can consist only of lowercase letters, numbers, dots (.), and hyphens (-).")
        );
        assert!(problem("ab")
            .unwrap()
            .contains("between 3 (min) and 63 (max)"));
    }
}
