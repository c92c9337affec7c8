//! The request context a decision is made on: who asks, for what action on which resource, and
//! the condition keys the S3 edge extracted from the request. Everything (including the time)
//! comes in here, so evaluation is a pure function the simulator and fuzzers can drive.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Condition keys as `aws:*` / `s3:*` names, always stored normalized (see [`normalize_key`]), each
/// with one or more values (multi-valued keys such as `aws:TagKeys` hold several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionKeys {
    map: BTreeMap<String, Vec<String>>,
}

/// Condition key names are case-insensitive in AWS, except the tag key after the `/` of
/// `s3:ExistingObjectTag/<key>` and friends, which keeps its case.
pub fn normalize_key(key: &str) -> String {
    match key.split_once('/') {
        Some((name, rest)) => format!("{}/{}", name.to_ascii_lowercase(), rest),
        None => key.to_ascii_lowercase(),
    }
}

impl ConditionKeys {
    /// Replaces the values of `key` with one value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.map.insert(normalize_key(key), vec![value.into()]);
    }

    /// Replaces the values of `key`; an empty list removes the key (a key with no value is absent).
    pub fn set_all(&mut self, key: &str, values: Vec<String>) {
        let key = normalize_key(key);
        if values.is_empty() {
            self.map.remove(&key);
        } else {
            self.map.insert(key, values);
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.map.remove(&normalize_key(key));
    }

    /// The values of a key given in any case; `None` when the request does not carry it.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        match self.map.get(key) {
            Some(v) => Some(v.as_slice()),
            None => self.map.get(&normalize_key(key)).map(Vec::as_slice),
        }
        .filter(|v| !v.is_empty())
    }

    /// Looks up an already normalized key (the form policies store), without allocating.
    pub(crate) fn get_normalized(&self, key: &str) -> Option<&[String]> {
        self.map
            .get(key)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// `aws:principaltype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    /// No credentials: only a bucket policy with a matching `Principal` can allow.
    Anonymous,
    /// The site's root credentials.
    Account,
    /// An IAM user (or a service account, which acts as its parent user).
    User,
    /// STS `AssumeRole` credentials.
    AssumedRole,
    /// Identities from OIDC or LDAP.
    FederatedUser,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "Anonymous",
            Self::Account => "Account",
            Self::User => "User",
            Self::AssumedRole => "AssumedRole",
            Self::FederatedUser => "FederatedUser",
        }
    }
}

/// Who makes the request, as the authenticator resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalType,
    /// The site's account id (12 digits in AWS style).
    pub account: String,
    /// The user name (`aws:username`); for service accounts and STS sessions, the parent user's.
    pub name: String,
    /// `aws:userid`: the access key of a user, `account:session` for sessions.
    pub user_id: String,
    /// The ARN bucket policies name in `Principal` (the parent user's ARN for service accounts).
    pub arn: String,
    /// Groups the user belongs to (informational: their policies are handed to the evaluator).
    pub groups: Vec<String>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalType::Anonymous,
            account: String::new(),
            name: String::new(),
            user_id: "anonymous".to_owned(),
            arn: "*".to_owned(),
            groups: Vec::new(),
        }
    }

    pub fn root(account: &str) -> Self {
        Self {
            kind: PrincipalType::Account,
            account: account.to_owned(),
            name: "root".to_owned(),
            user_id: account.to_owned(),
            arn: format!("arn:aws:iam::{account}:root"),
            groups: Vec::new(),
        }
    }

    /// An IAM user; `user_id` is its access key.
    pub fn user(account: &str, name: &str, user_id: &str) -> Self {
        Self {
            kind: PrincipalType::User,
            account: account.to_owned(),
            name: name.to_owned(),
            user_id: user_id.to_owned(),
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            groups: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.kind == PrincipalType::Account
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind == PrincipalType::Anonymous
    }
}

/// Everything a decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    action: String,
    /// Lower-cased once, since every statement compares against it.
    action_lc: String,
    /// The bucket or object ARN; `None` for admin/KMS/STS calls, which have no resource.
    pub resource: Option<String>,
    pub principal: Principal,
    pub keys: ConditionKeys,
}

/// The ARN of a bucket (`s3:ListBucket`, bucket configuration actions).
pub fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

/// The ARN of an object (`s3:GetObject`, `s3:PutObject`, ...).
pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

impl RequestContext {
    /// A context with the principal's global keys (`aws:username`, `aws:userid`,
    /// `aws:principaltype`, `aws:PrincipalAccount`, `aws:PrincipalArn`) filled in; the caller adds
    /// the request's own keys and the time ([`RequestContext::with_time`]).
    pub fn new(action: &str, resource: Option<String>, principal: Principal) -> Self {
        let mut keys = ConditionKeys::default();
        keys.set("aws:principaltype", principal.kind.as_str());
        if !principal.is_anonymous() {
            keys.set("aws:userid", principal.user_id.clone());
            keys.set("aws:PrincipalAccount", principal.account.clone());
            keys.set("aws:PrincipalArn", principal.arn.clone());
            if !principal.name.is_empty() {
                keys.set("aws:username", principal.name.clone());
            }
        }
        Self {
            action: action.to_owned(),
            action_lc: action.to_ascii_lowercase(),
            resource,
            principal,
            keys,
        }
    }

    /// Sets `aws:CurrentTime` (ISO 8601) and `aws:EpochTime` (seconds).
    pub fn with_time(mut self, now: OffsetDateTime) -> Self {
        if let Ok(text) = now.format(&Rfc3339) {
            self.keys.set("aws:CurrentTime", text);
        }
        self.keys
            .set("aws:EpochTime", now.unix_timestamp().to_string());
        self
    }

    /// Adds (replaces) a single-valued key.
    pub fn with_key(mut self, key: &str, value: impl Into<String>) -> Self {
        self.keys.set(key, value);
        self
    }

    /// Adds (replaces) a multi-valued key.
    pub fn with_values(mut self, key: &str, values: &[&str]) -> Self {
        self.keys
            .set_all(key, values.iter().map(|v| (*v).to_owned()).collect());
        self
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    pub(crate) fn action_lc(&self) -> &str {
        &self.action_lc
    }
}
