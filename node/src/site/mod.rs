//! Multi-site (DESIGN.md §7): sites reach each other over their S3 endpoints (`link`); the
//! control plane's outbox carries buckets, their configs and IAM to every peer (`outbox`), and
//! every version written here follows (`objects`).

pub mod link;
pub mod objects;
pub mod outbox;
