//! The package cipher: a plaintext stream sealed as a sequence of AES-256-GCM packages.
//!
//! # Wire format (version 1)
//!
//! A *stream* is either a whole single-part object (part number 0) or one multipart part
//! (part numbers 1..=10000). Each stream has its own key and nonce prefix, derived from the random
//! per-object key:
//!
//! ```text
//! okm          = HKDF-SHA256(ikm = object_key, salt = "cairn-sse-stream-v1",
//!                            info = "stream" || u32be(part_number), L = 40)
//! stream_key   = okm[0..32]     (AES-256 key)
//! nonce_prefix = okm[32..40]
//! ```
//!
//! The plaintext is cut into packages of [`PACKAGE_SIZE`] (64 KiB) bytes; only the last one may be
//! shorter, and it is empty only when the whole stream is empty (so every stream has at least one
//! package, and an empty object still authenticates). Package `seq` (0-based, at most 2^32 - 1) is
//!
//! ```text
//! nonce    = nonce_prefix (8) || u32be(seq)                                   (12 bytes)
//! aad      = version (1) = 0x01 || u32be(part_number) || u32be(seq) || final (1)  (10 bytes)
//!            final = 0x01 on the last package of the stream, else 0x00
//! package  = AES-256-GCM(stream_key, nonce, aad, plaintext) = ciphertext || tag (16)
//! ```
//!
//! The sealed stream is the packages back to back, with no header: package `i` starts at
//! `i * (PACKAGE_SIZE + 16)`, so a plaintext range maps to whole packages by arithmetic alone
//! ([`package_range`]). What each binding defeats:
//! - `seq` in nonce and AAD: reordering or duplicating packages;
//! - `final` in AAD, plus the plaintext size kept in the object's metadata: truncation — dropping
//!   the last package leaves a stream whose new last package was sealed as non-final, and a stream
//!   shorter than the size calls for is reported as [`SseError::Truncated`];
//! - the per-stream key (from a random per-object key) and the part number in AAD: splicing packages
//!   from another object or another part.
//!
//! Two backends produce this same format: RustCrypto's `aes-gcm` and `aws-lc-rs`. The latter is
//! 2-4x faster on x86-64 (see `benches/sse.rs`) and is the default.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{ObjectKey, SseError, SseResult, FORMAT_VERSION, KEY_LEN};

/// Plaintext bytes per package.
pub const PACKAGE_SIZE: usize = 64 * 1024;
/// AES-GCM authentication tag length, appended to each package.
pub const TAG_LEN: usize = 16;
/// Length of a full sealed package.
pub const SEALED_PACKAGE_SIZE: usize = PACKAGE_SIZE + TAG_LEN;
/// Part number of a single-part object's only stream; multipart parts use their S3 part number.
pub const SINGLE_PART: u32 = 0;

const NONCE_LEN: usize = 12;
const PREFIX_LEN: usize = 8;
const AAD_LEN: usize = 10;
const STREAM_SALT: &[u8] = b"cairn-sse-stream-v1";

/// The key and nonce prefix of one stream (a whole object or one multipart part).
pub struct StreamKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    prefix: [u8; PREFIX_LEN],
    part: u32,
}

impl StreamKey {
    /// Derives the stream key of `part` ([`SINGLE_PART`] for a non-multipart object). Each part's
    /// key differs, so parts are sealed and opened independently (parallel uploads, `partNumber`
    /// GETs) and a package cannot move between parts.
    pub fn derive(object_key: &ObjectKey, part: u32) -> Self {
        Self::derive_salted(object_key, part, &[])
    }

    /// Like [`StreamKey::derive`], with the part's random `salt` in the derivation: a multipart
    /// part can be uploaded again under the same number (same object key), and each upload must
    /// get its own key and nonces. An empty salt is the unsalted key of parts written before salts.
    pub fn derive_salted(object_key: &ObjectKey, part: u32, salt: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(STREAM_SALT), object_key.as_bytes());
        let mut info = Vec::with_capacity(10 + salt.len());
        info.extend_from_slice(b"stream");
        info.extend_from_slice(&part.to_be_bytes());
        info.extend_from_slice(salt);
        let mut okm = Zeroizing::new([0u8; KEY_LEN + PREFIX_LEN]);
        // 40 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand(&info, &mut okm[..]);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&okm[..KEY_LEN]);
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&okm[KEY_LEN..]);
        Self { key, prefix, part }
    }

    pub fn part(&self) -> u32 {
        self.part
    }

    fn nonce(&self, seq: u32) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..PREFIX_LEN].copy_from_slice(&self.prefix);
        n[PREFIX_LEN..].copy_from_slice(&seq.to_be_bytes());
        n
    }

    fn aad(&self, seq: u32, last: bool) -> [u8; AAD_LEN] {
        let mut a = [0u8; AAD_LEN];
        a[0] = FORMAT_VERSION;
        a[1..5].copy_from_slice(&self.part.to_be_bytes());
        a[5..9].copy_from_slice(&seq.to_be_bytes());
        a[9] = u8::from(last);
        a
    }
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamKey(part {})", self.part)
    }
}

/// One AES-256-GCM implementation. Both implementations write the identical format.
pub trait PackageCipher: Send + Sync {
    /// Encrypts `buf` in place and returns the tag.
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8])
        -> SseResult<[u8; TAG_LEN]>;
    /// Decrypts `buf` in place; fails (leaving `buf` unspecified) when the tag does not verify.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> SseResult<()>;
}

/// Which AES-GCM implementation seals and opens packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// RustCrypto `aes-gcm` (pure Rust, the reference implementation).
    RustCrypto,
    /// `aws-lc-rs` (assembly AES-GCM; 2-4x faster than `aes-gcm` here, so the default).
    #[default]
    AwsLc,
}

impl Backend {
    pub fn cipher(self, key: &[u8; KEY_LEN]) -> SseResult<Box<dyn PackageCipher>> {
        Ok(match self {
            Backend::RustCrypto => Box::new(RustCryptoCipher::new(key)),
            Backend::AwsLc => Box::new(AwsLcCipher::new(key)?),
        })
    }
}

struct RustCryptoCipher(aes_gcm::Aes256Gcm);

impl RustCryptoCipher {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        use aes_gcm::KeyInit;
        Self(aes_gcm::Aes256Gcm::new(&(*key).into()))
    }
}

impl PackageCipher for RustCryptoCipher {
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> SseResult<[u8; TAG_LEN]> {
        use aes_gcm::AeadInOut;
        let tag = self
            .0
            .encrypt_inout_detached(&(*nonce).into(), aad, buf.into())
            .map_err(|_| SseError::Cipher)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> SseResult<()> {
        use aes_gcm::AeadInOut;
        self.0
            .decrypt_inout_detached(&(*nonce).into(), aad, buf.into(), &(*tag).into())
            .map_err(|_| SseError::Cipher)
    }
}

struct AwsLcCipher(aws_lc_rs::aead::LessSafeKey);

impl AwsLcCipher {
    fn new(key: &[u8; KEY_LEN]) -> SseResult<Self> {
        use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| SseError::Cipher)?;
        Ok(Self(LessSafeKey::new(unbound)))
    }
}

impl PackageCipher for AwsLcCipher {
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> SseResult<[u8; TAG_LEN]> {
        use aws_lc_rs::aead::{Aad, Nonce};
        // `LessSafeKey` because nonces are derived (prefix || seq), not drawn by aws-lc itself;
        // uniqueness holds since every stream key seals each seq exactly once.
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| SseError::Cipher)?;
        let mut out = [0u8; TAG_LEN];
        let t = tag.as_ref();
        if t.len() != TAG_LEN {
            return Err(SseError::Cipher);
        }
        out.copy_from_slice(t);
        Ok(out)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> SseResult<()> {
        use aws_lc_rs::aead::{Aad, Nonce};
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                tag,
                buf,
            )
            .map(|_| ())
            .map_err(|_| SseError::Cipher)
    }
}

/// Number of packages of a stream of `plain_size` bytes (at least one: an empty stream has one
/// empty final package).
pub fn package_count(plain_size: u64) -> u64 {
    plain_size.div_ceil(PACKAGE_SIZE as u64).max(1)
}

/// Stored size of a stream of `plain_size` plaintext bytes.
pub fn sealed_size(plain_size: u64) -> u64 {
    plain_size.saturating_add(package_count(plain_size).saturating_mul(TAG_LEN as u64))
}

/// Plaintext size of a stored stream of `sealed` bytes; `None` when no plaintext size seals to it.
pub fn plain_size(sealed: u64) -> Option<u64> {
    let full = sealed / SEALED_PACKAGE_SIZE as u64;
    let rest = sealed % SEALED_PACKAGE_SIZE as u64;
    let plain = match rest {
        0 if full == 0 => return None,
        0 => full * PACKAGE_SIZE as u64,
        r if r < TAG_LEN as u64 => return None,
        r if r == TAG_LEN as u64 && full > 0 => return None,
        r => full * PACKAGE_SIZE as u64 + r - TAG_LEN as u64,
    };
    (sealed_size(plain) == sealed).then_some(plain)
}

/// What to read and keep for a plaintext range of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRange {
    /// Ciphertext bytes to read, relative to the start of the stream: whole packages only.
    pub cipher: Range<u64>,
    /// Sequence number of the first package in `cipher`.
    pub first_seq: u64,
    /// Number of packages in `cipher`.
    pub packages: u64,
    /// Plaintext bytes to drop from the start of the first package.
    pub skip: u64,
    /// Plaintext bytes to deliver.
    pub len: u64,
    /// Plaintext size of the whole stream (fixes which package is final and its length).
    pub plain_size: u64,
}

/// Maps the plaintext range `offset..offset + len` of a stream of `plain_size` bytes to the whole
/// packages that hold it. A read of an empty stream still covers its one (empty, final) package so
/// that even an empty object is authenticated.
pub fn package_range(plain_size: u64, offset: u64, len: u64) -> SseResult<PackageRange> {
    let end =
        offset
            .checked_add(len)
            .filter(|e| *e <= plain_size)
            .ok_or(SseError::InvalidRange {
                offset,
                len,
                size: plain_size,
            })?;
    let pkg = PACKAGE_SIZE as u64;
    let sealed_pkg = SEALED_PACKAGE_SIZE as u64;
    if plain_size == 0 {
        return Ok(PackageRange {
            cipher: 0..TAG_LEN as u64,
            first_seq: 0,
            packages: 1,
            skip: 0,
            len: 0,
            plain_size,
        });
    }
    if len == 0 {
        let at = (offset / pkg) * sealed_pkg;
        return Ok(PackageRange {
            cipher: at..at,
            first_seq: offset / pkg,
            packages: 0,
            skip: 0,
            len: 0,
            plain_size,
        });
    }
    let first = offset / pkg;
    let last = (end - 1) / pkg;
    let start = first * sealed_pkg;
    let stop = ((last + 1) * sealed_pkg).min(sealed_size(plain_size));
    Ok(PackageRange {
        cipher: start..stop,
        first_seq: first,
        packages: last - first + 1,
        skip: offset - first * pkg,
        len,
        plain_size,
    })
}

/// One part's share of a plaintext range over a multipart object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRange {
    /// Index into the `parts` slice given to [`multipart_ranges`].
    pub index: usize,
    /// The part number (derives the part's [`StreamKey`]).
    pub part: u32,
    /// Where the part's sealed stream starts in the object's ciphertext (parts are stored back to
    /// back); `range.cipher` is relative to it.
    pub stream_offset: u64,
    pub range: PackageRange,
}

/// Maps `offset..offset + len` of a multipart object, whose parts are `(part number, plaintext
/// size)` in order, to the packages of each part it touches. An empty range touches nothing.
pub fn multipart_ranges(parts: &[(u32, u64)], offset: u64, len: u64) -> SseResult<Vec<PartRange>> {
    let total = parts
        .iter()
        .try_fold(0u64, |acc, (_, n)| acc.checked_add(*n))
        .ok_or(SseError::TooLarge)?;
    let end = offset
        .checked_add(len)
        .filter(|e| *e <= total)
        .ok_or(SseError::InvalidRange {
            offset,
            len,
            size: total,
        })?;
    let mut out = Vec::new();
    let (mut plain_at, mut stream_at) = (0u64, 0u64);
    for (index, &(part, size)) in parts.iter().enumerate() {
        let (start, stop) = (offset.max(plain_at), end.min(plain_at + size));
        if start < stop {
            out.push(PartRange {
                index,
                part,
                stream_offset: stream_at,
                range: package_range(size, start - plain_at, stop - start)?,
            });
        }
        plain_at += size;
        stream_at = stream_at.saturating_add(sealed_size(size));
    }
    Ok(out)
}

/// Seals a plaintext stream of any length, fed in chunks of any size, into packages. Holds at most
/// one package of plaintext: a full package is sealed only once the next byte (or [`finish`]) shows
/// whether it is the final one.
///
/// [`finish`]: Encryptor::finish
pub struct Encryptor {
    key: StreamKey,
    cipher: Box<dyn PackageCipher>,
    seq: u64,
    buf: BytesMut,
}

impl Encryptor {
    pub fn new(key: StreamKey, backend: Backend) -> SseResult<Self> {
        let cipher = backend.cipher(&key.key)?;
        Ok(Self {
            key,
            cipher,
            seq: 0,
            buf: BytesMut::new(),
        })
    }

    /// Feeds plaintext; returns the packages it completed (each `PACKAGE_SIZE + TAG_LEN` bytes).
    pub fn update(&mut self, mut chunk: &[u8]) -> SseResult<Vec<Bytes>> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            if self.buf.len() == PACKAGE_SIZE {
                out.push(self.seal_pending(false)?);
            }
            if self.buf.capacity() < SEALED_PACKAGE_SIZE {
                self.buf.reserve(SEALED_PACKAGE_SIZE - self.buf.len());
            }
            let take = chunk.len().min(PACKAGE_SIZE - self.buf.len());
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        Ok(out)
    }

    /// Seals the final package (empty only if the whole stream was empty).
    pub fn finish(mut self) -> SseResult<Bytes> {
        self.seal_pending(true)
    }

    /// Plaintext bytes fed so far.
    pub fn plain_len(&self) -> u64 {
        self.seq * PACKAGE_SIZE as u64 + self.buf.len() as u64
    }

    fn seal_pending(&mut self, last: bool) -> SseResult<Bytes> {
        let seq = u32::try_from(self.seq).map_err(|_| SseError::TooLarge)?;
        let mut pkg = std::mem::take(&mut self.buf);
        let tag = self
            .cipher
            .seal(&self.key.nonce(seq), &self.key.aad(seq, last), &mut pkg)?;
        pkg.extend_from_slice(&tag);
        self.seq += 1;
        Ok(pkg.freeze())
    }
}

/// Opens the packages of a [`PackageRange`], fed as ciphertext chunks of any size, and yields
/// exactly the requested plaintext. Holds at most one sealed package.
pub struct Decryptor {
    key: StreamKey,
    cipher: Box<dyn PackageCipher>,
    next_seq: u64,
    end_seq: u64,
    final_seq: u64,
    plain_size: u64,
    skip: u64,
    remaining: u64,
    buf: BytesMut,
}

impl Decryptor {
    pub fn new(key: StreamKey, backend: Backend, range: &PackageRange) -> SseResult<Self> {
        let cipher = backend.cipher(&key.key)?;
        Ok(Self {
            key,
            cipher,
            next_seq: range.first_seq,
            end_seq: range.first_seq + range.packages,
            final_seq: package_count(range.plain_size) - 1,
            plain_size: range.plain_size,
            skip: range.skip,
            remaining: range.len,
            buf: BytesMut::new(),
        })
    }

    /// Feeds ciphertext from `range.cipher`, in order; returns the plaintext it completed.
    ///
    /// Whole packages inside `chunk` are opened where they lie, and each plaintext is moved left
    /// over the tags before it while still in cache, so a chunk the caller owns alone (as the
    /// object reader's are) leaves as one plaintext buffer, without a copy into another one. Only
    /// a package split across chunks is gathered in `buf`.
    pub fn update(&mut self, mut chunk: BytesMut) -> SseResult<Vec<Bytes>> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let want = self.next_sealed_len()?;
            let take = chunk.len().min(want - self.buf.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
            if self.buf.len() < want {
                return Ok(out);
            }
            let mut pkg = std::mem::take(&mut self.buf);
            let kept = self.open_at(&mut pkg, 0)?;
            pkg.truncate(kept);
            if kept > 0 {
                out.push(pkg.freeze());
            }
        }
        let (mut read, mut written) = (0, 0);
        while read < chunk.len() {
            let want = self.next_sealed_len()?;
            if chunk.len() - read < want {
                break;
            }
            written += self.open_at(&mut chunk[written..read + want], read - written)?;
            read += want;
        }
        let mut plain = chunk.split_to(read);
        plain.truncate(written);
        if written > 0 {
            out.push(plain.freeze());
        }
        if !chunk.is_empty() {
            let want = self.next_sealed_len()?;
            self.buf.reserve(want);
            self.buf.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Checks that every package of the range arrived.
    pub fn finish(self) -> SseResult<()> {
        if self.next_seq < self.end_seq {
            return Err(SseError::Truncated);
        }
        Ok(())
    }

    fn sealed_len(&self, seq: u64) -> usize {
        if seq == self.final_seq {
            // The final package holds what the full ones before it leave, so it fits a package.
            (self.plain_size - seq * PACKAGE_SIZE as u64) as usize + TAG_LEN
        } else {
            SEALED_PACKAGE_SIZE
        }
    }

    /// Sealed length of the next package; `TrailingData` once the range is complete.
    fn next_sealed_len(&self) -> SseResult<usize> {
        if self.next_seq >= self.end_seq {
            return Err(SseError::TrailingData);
        }
        Ok(self.sealed_len(self.next_seq))
    }

    /// Opens the next package, whose ciphertext and tag fill `in_out[shift..]`, and moves the
    /// part of its plaintext the range wants to the start of `in_out`; returns that length.
    fn open_at(&mut self, in_out: &mut [u8], shift: usize) -> SseResult<usize> {
        let seq64 = self.next_seq;
        let seq = u32::try_from(seq64).map_err(|_| SseError::TooLarge)?;
        let body_len = in_out
            .len()
            .checked_sub(shift + TAG_LEN)
            .ok_or(SseError::PackageAuth { seq: seq64 })?;
        let (body, tag) = in_out[shift..].split_at_mut(body_len);
        let tag: [u8; TAG_LEN] = (&*tag)
            .try_into()
            .map_err(|_| SseError::PackageAuth { seq: seq64 })?;
        let last = seq64 == self.final_seq;
        self.cipher
            .open(&self.key.nonce(seq), &self.key.aad(seq, last), body, &tag)
            .map_err(|_| SseError::PackageAuth { seq: seq64 })?;
        self.next_seq += 1;
        let skip = (self.skip as usize).min(body_len);
        self.skip = 0;
        let keep = (body_len - skip).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        self.remaining -= keep as u64;
        let from = shift + skip;
        if from > 0 {
            in_out.copy_within(from..from + keep, 0);
        }
        Ok(keep)
    }
}

/// Seals a whole in-memory stream (small objects, tests).
pub fn seal_all(key: StreamKey, backend: Backend, plain: &[u8]) -> SseResult<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(sealed_size(plain.len() as u64)).unwrap_or(0));
    let mut enc = Encryptor::new(key, backend)?;
    for p in enc.update(plain)? {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&enc.finish()?);
    Ok(out)
}

/// Opens `offset..offset + len` of a stream of `plain_size` bytes from the ciphertext `range`
/// returned by [`package_range`] (small objects, tests).
pub fn open_range(
    key: StreamKey,
    backend: Backend,
    plain_size: u64,
    offset: u64,
    len: u64,
    cipher: &[u8],
) -> SseResult<Vec<u8>> {
    let range = package_range(plain_size, offset, len)?;
    let mut dec = Decryptor::new(key, backend, &range)?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    for p in dec.update(BytesMut::from(cipher))? {
        out.extend_from_slice(&p);
    }
    dec.finish()?;
    Ok(out)
}

#[cfg(test)]
#[path = "package_tests.rs"]
mod tests;
