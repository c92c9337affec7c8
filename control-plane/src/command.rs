//! Typed changes to the site state. Commands carry every input (names, timestamps), so applying
//! the same sequence anywhere gives the same state.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::iam::identity::{IamCommand, IamError};
use crate::state::SiteState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateBucket {
        name: String,
        created_ns: i64,
        object_lock: bool,
    },
    DeleteBucket {
        name: String,
    },
    /// PutBucketVersioning (Enabled or Suspended).
    SetVersioning {
        name: String,
        versioning: crate::model::Versioning,
    },
    /// PutObjectLockConfiguration: object lock on, with this default retention (or none).
    SetObjectLock {
        name: String,
        default_retention: Option<crate::bucket_versioning::DefaultRetention>,
    },
    /// Sets (or with `None` removes) a bucket's default encryption.
    SetBucketEncryption {
        name: String,
        encryption: Option<crate::model::BucketEncryption>,
    },
    /// A change to the KMS key registry.
    Kms(crate::kms::KmsCommand),
    /// Puts back the state a node kept on its drives, into a control plane that lost its own Raft
    /// storage (a single node whose first drive was replaced). Refused unless the state is empty,
    /// so a stale copy never overwrites a live site.
    Restore {
        state: Box<SiteState>,
    },
    /// Users, groups, policies and service accounts (`crate::iam::identity`).
    Iam(IamCommand),
    /// Replaces a bucket's tag set (empty: DeleteBucketTagging).
    SetBucketTagging {
        name: String,
        tags: Vec<crate::model::BucketTag>,
    },
    /// Replaces a bucket's lifecycle rules (empty: DeleteBucketLifecycle).
    SetBucketLifecycle {
        name: String,
        rules: Vec<crate::lifecycle::LifecycleRule>,
    },
    /// Replaces a bucket's CORS rules (empty: DeleteBucketCors).
    SetBucketCors {
        name: String,
        rules: Vec<crate::cors::CorsRule>,
    },
    /// Sets (`Some`, already validated by the proposer) or deletes a bucket's policy.
    SetBucketPolicy {
        bucket: String,
        policy: Option<String>,
    },
    /// Site replication: peers, acknowledgements and commands received from peers.
    Site(crate::site::SiteCommand),
    /// `command` as proposed at the proposer's wall time `now_ns`: where the hybrid logical
    /// clock stamp of a replicated change starts from (`crate::stamp`; `crate::stamp::timed`
    /// wraps what needs it). Never nested, never sent to a peer.
    At {
        now_ns: i64,
        command: Box<Command>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("bucket {0} already exists")]
    BucketExists(String),
    #[error("bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("{0}")]
    InvalidBucketState(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidTag(String),
    #[error(transparent)]
    InvalidLifecycle(#[from] crate::lifecycle::LifecycleError),
    #[error(transparent)]
    InvalidCors(#[from] crate::cors::CorsError),
    #[error("the site state is not empty: refusing to restore over it")]
    NotEmpty,
    #[error("KMS key {0} already exists")]
    KmsKeyExists(String),
    #[error("KMS key {0} does not exist")]
    NoSuchKmsKey(String),
    #[error("KMS key {0} has been deleted")]
    KmsKeyDeleted(String),
    #[error(transparent)]
    Iam(#[from] IamError),
}
