//! What the object layer can fail with; mapped to S3 error codes once, in `s3::error`.

use thiserror::Error;

use crate::drive::DriveError;
use crate::erasure::ErasureError;

#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("the specified bucket does not exist")]
    NoSuchBucket,
    #[error("the specified key does not exist")]
    NoSuchKey,
    #[error("the specified version does not exist")]
    NoSuchVersion,
    /// The version read is a delete marker (`requested`: named by id, else the latest).
    #[error("the specified key does not exist (delete marker)")]
    DeleteMarker { version_id: String, requested: bool },
    #[error("{0}")]
    Locked(#[from] super::retention::LockDenied),
    #[error("the specified multipart upload does not exist")]
    NoSuchUpload,
    #[error("not enough drives answered to read safely ({have} of {need})")]
    ReadQuorum { have: usize, need: usize },
    #[error("not enough drives took the write ({have} of {need})")]
    WriteQuorum { have: usize, need: usize },
    #[error("object data is damaged beyond what parity can repair")]
    Unrecoverable,
    #[error("{0}")]
    BadDigest(String),
    #[error("your proposed upload exceeds the maximum allowed size")]
    EntityTooLarge,
    #[error("your proposed upload is smaller than the minimum allowed object size")]
    EntityTooSmall,
    #[error(
        "one or more of the specified parts could not be found or its entity tag did not match"
    )]
    InvalidPart,
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    #[error("the request signature we calculated does not match the signature you provided (chunk signature)")]
    ChunkSignature,
    #[error("the request body terminated unexpectedly: {0}")]
    IncompleteBody(String),
    #[error("your socket connection to the server was not read from or written to within the timeout period: {0}")]
    RequestTimeout(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A replica names a version id this site holds with other content: an id names one content
    /// for good.
    #[error("version {0} exists here with other content; a replica cannot change it")]
    ReplicaConflict(String),
    #[error("drive: {0}")]
    Drive(#[from] DriveError),
    #[error("erasure: {0}")]
    Erasure(#[from] ErasureError),
    #[error("corrupt metadata: {0}")]
    CorruptMeta(String),
    /// A stage above the object layer failed on bytes it read (encryption: a package that does
    /// not open); `s3::error` maps it by its type.
    #[error("{0}")]
    Stage(Box<dyn std::error::Error + Send + Sync>),
}

impl From<super::stage::BodyError> for ObjectError {
    fn from(e: super::stage::BodyError) -> Self {
        match e {
            super::stage::BodyError::ChunkSignature => ObjectError::ChunkSignature,
            super::stage::BodyError::Incomplete(m) => ObjectError::IncompleteBody(m),
            super::stage::BodyError::Stalled(m) => ObjectError::RequestTimeout(m),
        }
    }
}

/// A stored object read as another's body (a copy): its read errors end that body.
impl From<ObjectError> for super::stage::BodyError {
    fn from(e: ObjectError) -> Self {
        super::stage::BodyError::Incomplete(e.to_string())
    }
}

pub type ObjectResult<T> = Result<T, ObjectError>;
