//! Policy documents: parsing, validation and the per-statement matching.
//!
//! A [`Policy`] keeps the document it was parsed from: that is what it serializes to (so the Raft
//! state and `GetBucketPolicy` hand back the user's document) and what deserializing parses and
//! validates again. Validation therefore only ever gets more permissive between versions, so a
//! stored policy always loads.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::actions::{check_action, is_s3_action, ActionProblem};
use super::condition::{parse_conditions, Clause, ConditionError};
use super::context::RequestContext;
use super::pattern::Pattern;

/// Largest document accepted (AWS: 20 KiB for bucket policies, 6 KiB per managed policy; MinIO
/// is more generous). Bounds parsing and evaluation cost.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Why a document is not a valid policy; the S3 edge answers `MalformedPolicy` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not valid JSON: {0}")]
    Json(String),
    #[error("policy is larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge,
    #[error("policy must be a JSON object")]
    NotAnObject,
    #[error("unknown policy element {0:?}")]
    UnknownElement(String),
    #[error("invalid Version {0:?} (expected \"2012-10-17\" or \"2008-10-17\")")]
    BadVersion(String),
    #[error("Id must be a string")]
    BadId,
    #[error("missing Statement")]
    MissingStatement,
    #[error("Statement must not be empty")]
    EmptyStatement,
    #[error("Statement must be an object or an array of objects")]
    BadStatement,
    #[error("duplicate Sid {0:?}")]
    DuplicateSid(String),
    #[error("statement {index}: {problem}")]
    Statement {
        index: usize,
        problem: StatementError,
    },
}

/// What is wrong with one statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("statement must be an object")]
    NotAnObject,
    #[error("unknown statement element {0:?}")]
    UnknownElement(String),
    #[error("Sid must be a string")]
    BadSid,
    #[error("missing Effect")]
    MissingEffect,
    #[error("invalid Effect {0:?} (expected \"Allow\" or \"Deny\")")]
    BadEffect(String),
    #[error("missing Action or NotAction")]
    MissingAction,
    #[error("both Action and NotAction")]
    ActionAndNotAction,
    #[error("invalid action {0:?}: expected service:Name")]
    MalformedAction(String),
    #[error("unknown service in action {0:?}")]
    UnknownService(String),
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("missing Resource or NotResource")]
    MissingResource,
    #[error("both Resource and NotResource")]
    ResourceAndNotResource,
    #[error("invalid resource {0:?}: expected \"*\" or an ARN")]
    BadResource(String),
    #[error("Policy has invalid resource: {resource:?} is outside bucket {bucket:?}")]
    ResourceOutsideBucket { resource: String, bucket: String },
    /// An Allow with `NotResource` grants everything but the listed resources, so on any
    /// bucket: a bucket policy may only grant within its bucket.
    #[error(
        "Policy has invalid resource: an Allow with NotResource reaches outside bucket {bucket:?}"
    )]
    NotResourceOutsideBucket { bucket: String },
    #[error("both Principal and NotPrincipal")]
    PrincipalAndNotPrincipal,
    #[error("missing Principal (required in a bucket policy)")]
    MissingPrincipal,
    #[error("Principal is not allowed in an identity policy")]
    PrincipalNotAllowed,
    #[error("invalid Principal: {0}")]
    BadPrincipal(String),
    #[error("{element} must be a string or an array of strings")]
    NotStrings { element: &'static str },
    #[error("{element} must not be empty")]
    Empty { element: &'static str },
    #[error("{0}")]
    Condition(#[from] ConditionError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Which kind of document: identity policies (users, groups, sessions) may not name a Principal;
/// bucket policies must, and may only name resources inside their bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind<'a> {
    Identity,
    Bucket(&'a str),
}

/// `Principal`/`NotPrincipal`: `"*"` or `{"AWS": ...}` (other principal types are accepted and
/// never match, since Cairn has no AWS services or canonical users).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrincipalSpec {
    negated: bool,
    any: bool,
    aws: Vec<String>,
}

impl PrincipalSpec {
    fn matches(&self, ctx: &RequestContext) -> bool {
        let p = &ctx.principal;
        let hit = self.any
            || (!p.is_anonymous()
                && self.aws.iter().any(|a| {
                    *a == p.arn
                        || (!p.account.is_empty()
                            && (*a == p.account
                                || *a == format!("arn:aws:iam::{}:root", p.account)))
                }));
        hit != self.negated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Matcher {
    negated: bool,
    patterns: Vec<Pattern>,
}

/// One statement, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    principal: Option<PrincipalSpec>,
    action: Matcher,
    resource: Option<Matcher>,
    conditions: Vec<Clause>,
}

impl Statement {
    /// Does this statement apply to the request (principal, action, resource and conditions)?
    pub fn applies(&self, ctx: &RequestContext) -> bool {
        let keys = &ctx.keys;
        let action = ctx.action_lc();
        if self.action.patterns.iter().any(|p| p.matches(action, keys)) == self.action.negated {
            return false;
        }
        if let (Some(m), Some(resource)) = (&self.resource, &ctx.resource) {
            if m.patterns.iter().any(|p| p.matches(resource, keys)) == m.negated {
                return false;
            }
        }
        if let Some(p) = &self.principal {
            if !p.matches(ctx) {
                return false;
            }
        }
        self.conditions.iter().all(|c| c.holds(keys))
    }
}

/// A parsed, validated policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    document: Value,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
    /// The bucket of a bucket policy: it never applies to a resource outside it, whatever its
    /// statements say.
    bucket: Option<String>,
}

/// Two policies are equal when their documents are: the bucket a bucket policy is attached to is
/// where it lives, not part of the document (serde round trips lose it).
impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.document == other.document
            && self.id == other.id
            && self.statements == other.statements
    }
}

/// The result of evaluating one policy: the first matching Deny, else the first matching Allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match<'a> {
    Deny(&'a Statement, usize),
    Allow(&'a Statement, usize),
    None,
}

impl Policy {
    /// Parses and validates a document of the given kind.
    pub fn parse(text: &str, kind: PolicyKind<'_>) -> Result<Self, PolicyError> {
        Self::parse_checked(text, kind, true)
    }

    fn parse_checked(
        text: &str,
        kind: PolicyKind<'_>,
        new_document: bool,
    ) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        let mut policy = Self::from_value(value)?;
        policy.check_kind(kind, new_document)?;
        if let PolicyKind::Bucket(b) = kind {
            policy.bucket = Some(b.to_owned());
        }
        Ok(policy)
    }

    /// An identity policy (user, group, service-account or session policy).
    pub fn parse_identity(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, PolicyKind::Identity)
    }

    /// A bucket policy for `bucket`.
    pub fn parse_bucket(text: &str, bucket: &str) -> Result<Self, PolicyError> {
        Self::parse(text, PolicyKind::Bucket(bucket))
    }

    /// A bucket policy `PutBucketPolicy` stored earlier: an Allow with `NotResource`, accepted
    /// before, still loads (its Deny statements keep applying); confined to `bucket` like any
    /// bucket policy, it grants nothing outside it.
    pub fn load_bucket(text: &str, bucket: &str) -> Result<Self, PolicyError> {
        Self::parse_checked(text, PolicyKind::Bucket(bucket), false)
    }

    /// Whether `resource` (an ARN) may be governed by this policy: a bucket policy only governs
    /// its bucket and the objects in it.
    fn governs(&self, resource: Option<&str>) -> bool {
        let Some(bucket) = &self.bucket else {
            return true;
        };
        resource
            .and_then(|r| r.strip_prefix("arn:aws:s3:::"))
            .and_then(|r| r.strip_prefix(bucket.as_str()))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Whether AWS would call this bucket policy public (`GetBucketPolicyStatus`): some Allow
    /// grants to everyone (`"Principal": "*"` or a `NotPrincipal`) without a condition that pins
    /// the caller to a fixed network or account, the only conditions AWS counts as narrowing.
    pub fn is_public(&self) -> bool {
        const NARROWING: [&str; 6] = [
            "aws:sourceip",
            "aws:sourcevpc",
            "aws:sourcevpce",
            "aws:principalaccount",
            "aws:principalorgid",
            "aws:sourceaccount",
        ];
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && s.principal.as_ref().is_some_and(|p| p.any || p.negated)
                && !s
                    .conditions
                    .iter()
                    .any(|c| NARROWING.contains(&c.key.as_str()))
        })
    }

    /// Whether some condition of this policy reads a key starting with `prefix` (normalized,
    /// e.g. `s3:existingobjecttag/`): lets the authorizer skip looking up what no policy asks.
    pub fn mentions_key(&self, prefix: &str) -> bool {
        self.statements
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.key.starts_with(prefix))
    }

    /// The document as given (what `GetBucketPolicy` returns).
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Validates the structure shared by all kinds.
    pub fn from_value(document: Value) -> Result<Self, PolicyError> {
        let obj = document.as_object().ok_or(PolicyError::NotAnObject)?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
        {
            return Err(PolicyError::UnknownElement(k.clone()));
        }
        let variables = match obj.get("Version") {
            None => false,
            Some(Value::String(v)) if v == "2012-10-17" => true,
            Some(Value::String(v)) if v == "2008-10-17" => false,
            Some(v) => return Err(PolicyError::BadVersion(display(v))),
        };
        let id = match obj.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(PolicyError::BadId),
        };
        let raw: Vec<&Value> = match obj.get("Statement") {
            None => return Err(PolicyError::MissingStatement),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            Some(_) => return Err(PolicyError::BadStatement),
        };
        if raw.is_empty() {
            return Err(PolicyError::EmptyStatement);
        }
        let mut statements: Vec<Statement> = Vec::with_capacity(raw.len());
        for (index, v) in raw.into_iter().enumerate() {
            let st = parse_statement(v, variables)
                .map_err(|problem| PolicyError::Statement { index, problem })?;
            if let Some(sid) = &st.sid {
                if !sid.is_empty() && statements.iter().any(|s| s.sid.as_ref() == Some(sid)) {
                    return Err(PolicyError::DuplicateSid(sid.clone()));
                }
            }
            statements.push(st);
        }
        let id = id.filter(|s| !s.is_empty());
        Ok(Self {
            document,
            id,
            statements,
            bucket: None,
        })
    }

    /// `new_document`: also the checks added after documents could already be stored.
    fn check_kind(&self, kind: PolicyKind<'_>, new_document: bool) -> Result<(), PolicyError> {
        for (index, st) in self.statements.iter().enumerate() {
            let fail = |problem| Err(PolicyError::Statement { index, problem });
            match kind {
                PolicyKind::Identity => {
                    if st.principal.is_some() {
                        return fail(StatementError::PrincipalNotAllowed);
                    }
                }
                PolicyKind::Bucket(bucket) => {
                    if st.principal.is_none() {
                        return fail(StatementError::MissingPrincipal);
                    }
                    let Some(res) = &st.resource else {
                        return fail(StatementError::MissingResource);
                    };
                    if new_document && res.negated && st.effect == Effect::Allow {
                        return fail(StatementError::NotResourceOutsideBucket {
                            bucket: bucket.to_owned(),
                        });
                    }
                    let base = format!("arn:aws:s3:::{bucket}");
                    for p in &res.patterns {
                        let text = p.source();
                        let inside = text
                            .strip_prefix(&base)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
                        if !inside {
                            return fail(StatementError::ResourceOutsideBucket {
                                resource: text,
                                bucket: bucket.to_owned(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Evaluates every statement: a matching Deny wins at once, else the first matching Allow.
    pub fn evaluate(&self, ctx: &RequestContext) -> Match<'_> {
        if !self.governs(ctx.resource.as_deref()) {
            return Match::None;
        }
        let mut allow = None;
        for (i, st) in self.statements.iter().enumerate() {
            // An Allow is already found: only a Deny can change the answer.
            if allow.is_some() && st.effect == Effect::Allow {
                continue;
            }
            if st.applies(ctx) {
                match st.effect {
                    Effect::Deny => return Match::Deny(st, i),
                    Effect::Allow => allow = Some((st, i)),
                }
            }
        }
        match allow {
            Some((st, i)) => Match::Allow(st, i),
            None => Match::None,
        }
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document.serialize(serializer)
    }
}

/// Deserializing knows no bucket: a bucket policy is loaded with [`Policy::load_bucket`], which
/// confines it.
impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strings<'v>(v: &'v Value, element: &'static str) -> Result<Vec<&'v str>, StatementError> {
    let list: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().ok_or(StatementError::NotStrings { element }))
            .collect::<Result<_, _>>()?,
        _ => return Err(StatementError::NotStrings { element }),
    };
    if list.is_empty() || list.iter().any(|s| s.is_empty()) {
        return Err(StatementError::Empty { element });
    }
    Ok(list)
}

fn parse_statement(v: &Value, variables: bool) -> Result<Statement, StatementError> {
    let obj = v.as_object().ok_or(StatementError::NotAnObject)?;
    if let Some(k) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        )
    }) {
        return Err(StatementError::UnknownElement(k.clone()));
    }
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(StatementError::BadSid),
    };
    let effect = match obj.get("Effect") {
        None => return Err(StatementError::MissingEffect),
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => return Err(StatementError::BadEffect(display(other))),
    };
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(StatementError::PrincipalAndNotPrincipal),
        (Some(p), None) => Some(parse_principal(p, false)?),
        (None, Some(p)) => Some(parse_principal(p, true)?),
        (None, None) => None,
    };
    let (actions, negated) = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(_), Some(_)) => return Err(StatementError::ActionAndNotAction),
        (Some(a), None) => (strings(a, "Action")?, false),
        (None, Some(a)) => (strings(a, "NotAction")?, true),
        (None, None) => return Err(StatementError::MissingAction),
    };
    for a in &actions {
        check_action(a).map_err(|p| match p {
            ActionProblem::Malformed => StatementError::MalformedAction((*a).to_owned()),
            ActionProblem::UnknownService => StatementError::UnknownService((*a).to_owned()),
            ActionProblem::UnknownAction => StatementError::UnknownAction((*a).to_owned()),
        })?;
    }
    let resource = match (obj.get("Resource"), obj.get("NotResource")) {
        (Some(_), Some(_)) => return Err(StatementError::ResourceAndNotResource),
        (Some(r), None) => Some(parse_resources(strings(r, "Resource")?, false, variables)?),
        (None, Some(r)) => Some(parse_resources(
            strings(r, "NotResource")?,
            true,
            variables,
        )?),
        (None, None) => None,
    };
    // Admin, KMS and STS actions have no resource (MinIO's admin policies omit it); a statement
    // that can grant S3 actions must say on what.
    let s3_capable = negated || actions.iter().any(|a| *a == "*" || is_s3_action(a));
    if resource.is_none() && s3_capable {
        return Err(StatementError::MissingResource);
    }
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c, variables)?,
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        action: Matcher {
            negated,
            patterns: actions
                .iter()
                .map(|a| Pattern::parse(a, false, true))
                .collect(),
        },
        resource,
        conditions,
    })
}

fn parse_resources(
    list: Vec<&str>,
    negated: bool,
    variables: bool,
) -> Result<Matcher, StatementError> {
    let mut patterns = Vec::with_capacity(list.len());
    for r in list {
        if r != "*" && !(r.starts_with("arn:") && r.split(':').count() >= 6) {
            return Err(StatementError::BadResource(r.to_owned()));
        }
        patterns.push(Pattern::parse(r, variables, false));
    }
    Ok(Matcher { negated, patterns })
}

fn parse_principal(v: &Value, negated: bool) -> Result<PrincipalSpec, StatementError> {
    let mut spec = PrincipalSpec {
        negated,
        any: false,
        aws: Vec::new(),
    };
    match v {
        Value::String(s) if s == "*" => spec.any = true,
        Value::Object(map) if !map.is_empty() => {
            for (kind, ids) in map {
                let ids = strings(ids, "Principal")?;
                match kind.as_str() {
                    "AWS" => {
                        for id in ids {
                            if id == "*" {
                                spec.any = true;
                            } else if id.starts_with("arn:")
                                || id.bytes().all(|b| b.is_ascii_digit())
                            {
                                spec.aws.push(id.to_owned());
                            } else {
                                return Err(StatementError::BadPrincipal(format!(
                                    "{id:?} is neither \"*\", an ARN nor an account id"
                                )));
                            }
                        }
                    }
                    "Service" | "Federated" | "CanonicalUser" => {}
                    other => {
                        return Err(StatementError::BadPrincipal(format!(
                            "unknown principal type {other:?}"
                        )))
                    }
                }
            }
        }
        other => {
            return Err(StatementError::BadPrincipal(format!(
                "expected \"*\" or an object, got {other}"
            )))
        }
    }
    Ok(spec)
}
