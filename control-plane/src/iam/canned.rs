//! MinIO's built-in ("canned") policies, with the same names and grants, so operators can
//! `policy attach ALIAS readonly --user U` as they do with `mc admin`.

use super::policy::{Policy, PolicyError};

/// `s3:GetBucketLocation` and `s3:GetObject` on every bucket and object.
pub const READONLY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": ["s3:GetBucketLocation", "s3:GetObject"],
    "Resource": ["arn:aws:s3:::*"]
  }]
}"#;

/// Every S3 action on every bucket and object.
pub const READWRITE: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": ["s3:*"],
    "Resource": ["arn:aws:s3:::*"]
  }]
}"#;

/// `s3:PutObject` only.
pub const WRITEONLY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": ["s3:PutObject"],
    "Resource": ["arn:aws:s3:::*"]
  }]
}"#;

/// The read-only diagnostic admin calls (trace, profiling, logs, server info, locks, health,
/// bandwidth, metrics).
pub const DIAGNOSTICS: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": [
      "admin:ServerTrace", "admin:Profiling", "admin:ConsoleLog", "admin:ServerInfo",
      "admin:TopLocksInfo", "admin:OBDInfo", "admin:BandwidthMonitor", "admin:Prometheus"
    ],
    "Resource": ["arn:aws:s3:::*"]
  }]
}"#;

/// Everything: all admin, KMS and S3 actions.
pub const CONSOLE_ADMIN: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["admin:*"]},
    {"Effect": "Allow", "Action": ["kms:*"]},
    {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}
  ]
}"#;

/// The canned policies by name.
pub const CANNED: &[(&str, &str)] = &[
    ("consoleAdmin", CONSOLE_ADMIN),
    ("diagnostics", DIAGNOSTICS),
    ("readonly", READONLY),
    ("readwrite", READWRITE),
    ("writeonly", WRITEONLY),
];

/// Names of the canned policies (they cannot be deleted or replaced).
pub fn names() -> impl Iterator<Item = &'static str> {
    CANNED.iter().map(|(n, _)| *n)
}

/// The canned policy called `name`, parsed; `None` for other names.
pub fn get(name: &str) -> Option<Result<Policy, PolicyError>> {
    CANNED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| Policy::parse_identity(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_parse() {
        for name in names() {
            assert!(matches!(get(name), Some(Ok(_))), "{name}");
        }
        assert!(get("nope").is_none());
    }
}
