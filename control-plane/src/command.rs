//! Typed changes to the site state. Commands carry every input (names, timestamps), so applying
//! the same sequence anywhere gives the same state.

use serde::{Deserialize, Serialize};
use thiserror::Error;

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
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("bucket {0} already exists")]
    BucketExists(String),
    #[error("bucket {0} does not exist")]
    NoSuchBucket(String),
}
