//! The decision: AWS's evaluation logic for requests within one account.
//!
//! 1. Root credentials are allowed everything (only a session policy on root's own service
//!    accounts or sessions narrows them).
//! 2. An explicit `Deny` in any policy that applies (identity, bucket, session) denies.
//! 3. Otherwise an `Allow` is needed: from an identity policy (the user's and its enabled groups',
//!    or the parent's for service accounts and sessions) or from the bucket policy (whose
//!    `Principal` matches). Anonymous requests only have the bucket policy.
//! 4. A session policy (service account inline policy, STS session policy) only narrows: the
//!    request must also be allowed by it. AWS lets a resource policy naming the session itself
//!    bypass this; Cairn's bucket policies name users, so the session policy always applies.
//! 5. Anything else is denied by default.

use std::fmt;

use super::context::RequestContext;
use super::policy::{Match, Policy, Statement};

/// Where a policy came from, for the decision's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A policy attached to the user (or to the parent of a service account / session).
    User {
        policy: &'a str,
    },
    /// A policy attached to one of the user's (enabled) groups.
    Group {
        group: &'a str,
        policy: &'a str,
    },
    Bucket,
    Session,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User { policy } => write!(f, "user policy {policy:?}"),
            Self::Group { group, policy } => write!(f, "policy {policy:?} of group {group:?}"),
            Self::Bucket => f.write_str("bucket policy"),
            Self::Session => f.write_str("session policy"),
        }
    }
}

/// An identity policy with its origin.
#[derive(Debug, Clone, Copy)]
pub struct Attached<'a> {
    pub source: Source<'a>,
    pub policy: &'a Policy,
}

/// Everything that applies to one request. The caller resolves which groups are enabled and
/// which policies are attached; disabled groups' policies are simply not passed.
#[derive(Debug, Clone, Default)]
pub struct PolicySet<'a> {
    pub identity: Vec<Attached<'a>>,
    pub bucket: Option<&'a Policy>,
    pub session: Option<&'a Policy>,
}

impl<'a> PolicySet<'a> {
    pub fn user(mut self, name: &'a str, policy: &'a Policy) -> Self {
        self.identity.push(Attached {
            source: Source::User { policy: name },
            policy,
        });
        self
    }

    pub fn group(mut self, group: &'a str, name: &'a str, policy: &'a Policy) -> Self {
        self.identity.push(Attached {
            source: Source::Group {
                group,
                policy: name,
            },
            policy,
        });
        self
    }

    pub fn bucket(mut self, policy: &'a Policy) -> Self {
        self.bucket = Some(policy);
        self
    }

    pub fn session(mut self, policy: &'a Policy) -> Self {
        self.session = Some(policy);
        self
    }
}

/// The statement that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decider<'a> {
    pub source: Source<'a>,
    pub sid: Option<&'a str>,
    /// Index of the statement in its policy.
    pub statement: usize,
}

impl fmt::Display for Decider<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "statement {}", self.statement)?;
        if let Some(sid) = self.sid {
            write!(f, " ({sid:?})")?;
        }
        write!(f, " of {}", self.source)
    }
}

/// Why the request was allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'a> {
    Root,
    ExplicitDeny(Decider<'a>),
    Allowed(Decider<'a>),
    /// No statement allowed the request.
    ImplicitDeny,
    /// The identity or bucket policy allowed it, the session policy did not.
    NotInSession,
}

/// The decision and why, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub allowed: bool,
    pub reason: Reason<'a>,
}

impl fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Reason::Root => f.write_str("allowed: root"),
            Reason::ExplicitDeny(d) => write!(f, "denied by {d}"),
            Reason::Allowed(d) => write!(f, "allowed by {d}"),
            Reason::ImplicitDeny => f.write_str("denied: no statement allows it"),
            Reason::NotInSession => f.write_str("denied: outside the session policy"),
        }
    }
}

fn decider<'a>(source: Source<'a>, st: &'a Statement, statement: usize) -> Decider<'a> {
    Decider {
        source,
        sid: st.sid.as_deref(),
        statement,
    }
}

/// Decides one request.
pub fn evaluate<'a>(ctx: &RequestContext, set: &PolicySet<'a>) -> Verdict<'a> {
    let deny = |d| Verdict {
        allowed: false,
        reason: Reason::ExplicitDeny(d),
    };
    let mut session_allow = None;
    if let Some(session) = set.session {
        match session.evaluate(ctx) {
            Match::Deny(st, i) => return deny(decider(Source::Session, st, i)),
            Match::Allow(st, i) => session_allow = Some(decider(Source::Session, st, i)),
            Match::None => {}
        }
    }
    if ctx.principal.is_root() {
        return match (set.session, session_allow) {
            (Some(_), None) => Verdict {
                allowed: false,
                reason: Reason::NotInSession,
            },
            _ => Verdict {
                allowed: true,
                reason: Reason::Root,
            },
        };
    }
    let mut allow = None;
    if !ctx.principal.is_anonymous() {
        for attached in &set.identity {
            match attached.policy.evaluate(ctx) {
                Match::Deny(st, i) => return deny(decider(attached.source, st, i)),
                Match::Allow(st, i) if allow.is_none() => {
                    allow = Some(decider(attached.source, st, i));
                }
                _ => {}
            }
        }
    }
    if let Some(bucket) = set.bucket {
        match bucket.evaluate(ctx) {
            Match::Deny(st, i) => return deny(decider(Source::Bucket, st, i)),
            Match::Allow(st, i) if allow.is_none() => {
                allow = Some(decider(Source::Bucket, st, i));
            }
            _ => {}
        }
    }
    match (allow, set.session.is_some(), session_allow) {
        (None, _, _) => Verdict {
            allowed: false,
            reason: Reason::ImplicitDeny,
        },
        (Some(_), true, None) => Verdict {
            allowed: false,
            reason: Reason::NotInSession,
        },
        (Some(d), _, _) => Verdict {
            allowed: true,
            reason: Reason::Allowed(d),
        },
    }
}
