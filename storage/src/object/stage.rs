//! What the object layer asks of the stages above it, without knowing them (DESIGN.md §2:
//! `api -> auth -> sse -> erasure -> drive`). A stage that stores other bytes than the client
//! sends (encryption) describes them through [`StoredLayout`] and [`StoredForm`]; the client's
//! checksums come in as a [`Checksummer`]; a body that ends badly says why as a [`BodyError`].

use std::borrow::Cow;

use cairn_proto::meta::{ObjectVersion, PartInfo, SseInfo};

/// How a version's parts lie on the drives. Handed in when the layer is built, so reads and
/// heals of any version (whoever wrote it) find its stored bytes.
pub trait StoredLayout: Send + Sync {
    /// The parts as the drives hold them (sizes of the stored bytes).
    fn stored_parts<'a>(&self, v: &'a ObjectVersion) -> Cow<'a, [PartInfo]>;
}

/// Parts stored as the client sent them.
pub struct AsSent;

impl StoredLayout for AsSent {
    fn stored_parts<'a>(&self, v: &'a ObjectVersion) -> Cow<'a, [PartInfo]> {
        Cow::Borrowed(&v.parts)
    }
}

/// A write whose stored bytes differ from the client's: what the version shows the client.
pub trait StoredForm: Send + Sync + std::fmt::Debug {
    /// Whether the version's ETag is made of the MD5 of the stored bytes (so it must be computed).
    fn needs_stored_md5(&self) -> bool;
    /// Turns a just-written single-part version into the client's view.
    fn apply_version(&self, v: &mut ObjectVersion);
    /// Turns a just-written part into the client's view.
    fn apply_part(&self, p: &mut PartInfo);
    /// What a multipart upload records, for its parts and the completed version.
    fn upload_record(&self) -> SseInfo;
}

/// The client's checksums, computed over the body as it streams by.
pub trait Checksummer: Send {
    type Sums: Send;
    fn update(&mut self, data: &[u8]);
    fn finalize(self) -> Self::Sums;
}

/// No checksums.
impl Checksummer for () {
    type Sums = ();
    fn update(&mut self, _: &[u8]) {}
    fn finalize(self) {}
}

/// A body read from a socket or file that failed.
impl From<std::io::Error> for BodyError {
    fn from(e: std::io::Error) -> Self {
        BodyError::Incomplete(e.to_string())
    }
}

/// Why a request body ended badly: the API edge maps its HTTP layer's errors to this.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// An aws-chunked chunk's signature did not verify: the body was tampered with.
    #[error("a chunk signature does not match")]
    ChunkSignature,
    #[error("{0}")]
    Incomplete(String),
    /// The sender went silent, or sent slower than the server's minimum rate.
    #[error("{0}")]
    Stalled(String),
}
