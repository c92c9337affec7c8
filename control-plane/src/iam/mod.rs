//! IAM policies: the AWS policy language and its evaluation, as pure functions of a policy set
//! and a request context (no I/O, no clock), so the node, the simulator and fuzzers share them.
//!
//! * [`policy`]: parsing and validation of documents ([`Policy`], [`PolicyError`] →
//!   `MalformedPolicy`);
//! * [`condition`]: condition operators, qualifiers and missing-key rules;
//! * [`context`]: the request context ([`RequestContext`], [`Principal`], condition keys);
//! * [`eval`]: the decision ([`evaluate`], [`PolicySet`], [`Verdict`]);
//! * [`canned`]: MinIO's built-in policies; [`actions`]: the action names;
//! * [`identity`]: users, groups, named policies and service accounts in the site state.

pub mod actions;
pub mod canned;
pub mod condition;
pub mod context;
pub mod eval;
pub mod identity;
mod pattern;
pub mod policy;

pub use context::{
    bucket_arn, object_arn, ConditionKeys, Principal, PrincipalType, RequestContext,
};
pub use eval::{evaluate, Attached, Decider, PolicySet, Reason, Source, Verdict};
pub use policy::{Effect, Policy, PolicyError, PolicyKind, StatementError};
