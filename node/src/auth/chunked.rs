//! An aws-chunked body (`x-amz-content-sha256: STREAMING-...`) is complete only with its final
//! zero-length chunk, the trailer headers it declares in `x-amz-trailer` (the `-TRAILER`
//! variants), and exactly `x-amz-decoded-content-length` bytes of data. s3s 0.14 takes a body
//! that simply stops at a chunk boundary as complete and never compares the length, so a
//! truncated (or cut-short replayed) upload would be stored as a whole object.
//!
//! [`guard`] follows the framing while the bytes pass on unchanged to s3s (which decodes them)
//! and fails the body where a rule is broken: the data the body already gave is then discarded
//! and the write answers `IncompleteBody`.
//!
//! It also checks every chunk signature and the trailer signature itself, in constant time, before
//! it passes on the byte that completes the chunk (or the end of the body, for the trailer). s3s
//! 0.14 compares them with `==`, whose time tells how many leading characters of a guessed
//! signature were right; here s3s only ever compares signatures that already matched. A wrong one
//! answers `SignatureDoesNotMatch`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cairn_sign::chunk;
use futures::Stream;
use http::HeaderMap;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{Body, StdError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::CredentialStore;

/// Longer chunk-header lines are not aws-chunked (s3s allows 1 KiB).
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// More trailer bytes are not aws-chunked (s3s allows 16 KiB).
const MAX_TRAILER: usize = 32 * 1024;

/// Why a streaming body was refused. The text reaches the client in the `IncompleteBody` error
/// (`Signature`'s, which names s3s's own mismatch, in `SignatureDoesNotMatch`: the body's error
/// reaches the object layer only as text, `s3::convert::request_body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("SignatureMismatch: an aws-chunked chunk or trailer signature does not match")]
    Signature,
    #[error("the aws-chunked body ended before its final zero-length chunk")]
    NoFinalChunk,
    #[error(
        "the aws-chunked body does not carry the x-amz-decoded-content-length bytes it declares"
    )]
    LengthMismatch,
    #[error("the aws-chunked body ended without the trailer its x-amz-trailer header declares")]
    NoTrailer,
    #[error("malformed aws-chunked chunk header")]
    Malformed,
}

#[derive(Debug)]
enum State {
    /// Reading a chunk header line (`SIZE[;chunk-signature=...]\r\n`).
    Header(Vec<u8>),
    /// Inside a chunk's data: bytes left, its closing CRLF included.
    Data(u64),
    /// After the zero-length chunk: the trailer section so far.
    Trailer(Vec<u8>),
}

/// What a SigV4 header-signed request's chunk and trailer signatures are checked with.
pub struct ChunkSigning {
    key: [u8; 32],
    amz_date: String,
    scope: String,
    /// The signature the next one chains from: the request's, then each chunk's.
    previous: String,
}

impl std::fmt::Debug for ChunkSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigning")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ChunkSigning {
    /// From the request's one SigV4 `Authorization` header and its `x-amz-date`, as s3s derives
    /// them (the scope's date is the `x-amz-date`'s; s3s refuses a request where they differ).
    /// `None` when the request is not signed that way or its access key is unknown: s3s then
    /// refuses the request before it reads the body, and a chunk signature fails here.
    pub fn of_request(headers: &HeaderMap, credentials: &dyn CredentialStore) -> Option<Self> {
        let mut auths = headers.get_all(http::header::AUTHORIZATION).iter();
        let auth = auths.next()?.to_str().ok()?;
        if auths.next().is_some() {
            return None;
        }
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256")?;
        let field = |name: &str| {
            rest.split(',')
                .find_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
                .map(str::trim)
        };
        let credential: Vec<&str> = field("Credential")?.split('/').collect();
        let [access_key, _, region, service, "aws4_request"] = credential[..] else {
            return None;
        };
        let previous = field("Signature")?.to_ascii_lowercase();
        let amz_date = headers.get("x-amz-date")?.to_str().ok()?.to_string();
        let date = amz_date.get(..8)?;
        let (_, secret) = credentials.lookup(access_key)?;
        Some(ChunkSigning {
            key: cairn_sign::derive_signing_key(&secret, date, region, service),
            scope: format!("{date}/{region}/{service}/aws4_request"),
            amz_date,
            previous,
        })
    }

    /// Checks `provided` against the signature of `to_sign` in constant time; a match becomes
    /// the signature the next one chains from.
    fn check(&mut self, provided: &[u8], to_sign: impl FnOnce(&Self) -> String) -> bool {
        let expected = chunk::signature(&self.key, &to_sign(self));
        let same = bool::from(expected.as_bytes().ct_eq(provided));
        if same {
            self.previous = expected;
        }
        same
    }
}

/// The chunk signatures of one body: the one the current chunk's header gave, and its data's hash.
#[derive(Debug)]
struct Signatures {
    signing: Option<ChunkSigning>,
    /// The current chunk's `chunk-signature`, if its header had one.
    provided: Option<Vec<u8>>,
    data: Sha256,
}

impl Signatures {
    /// Checks the current chunk, whose data all went through [`Signatures::data`].
    fn check_chunk(&mut self) -> Result<(), FramingError> {
        let Some(provided) = self.provided.take() else {
            return Ok(());
        };
        let hash: [u8; 32] = std::mem::take(&mut self.data).finalize().into();
        let signing = self.signing.as_mut().ok_or(FramingError::Signature)?;
        let ok = signing.check(&provided, |s| {
            chunk::chunk_string_to_sign(&s.amz_date, &s.scope, &s.previous, &hash)
        });
        ok.then_some(()).ok_or(FramingError::Signature)
    }

    /// Checks the trailer's `x-amz-trailer-signature`, if it has one, over its other headers in
    /// the canonical form s3s signs (names lower case, values trimmed, sorted by name).
    fn check_trailer(&mut self, trailer: &[u8]) -> Result<(), FramingError> {
        let mut provided = None;
        let mut entries = Vec::new();
        for line in trailer.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                // Not a header: s3s refuses the trailer.
                return Ok(());
            };
            let name = line[..colon].to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii().to_vec();
            if name == b"x-amz-trailer-signature" {
                provided = Some(value);
            } else {
                entries.push((name, value));
            }
        }
        let Some(provided) = provided else {
            return Ok(());
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut canonical = Sha256::new();
        for (name, value) in &entries {
            canonical.update(name);
            canonical.update(b":");
            canonical.update(value);
            canonical.update(b"\n");
        }
        let hash: [u8; 32] = canonical.finalize().into();
        let signing = self.signing.as_mut().ok_or(FramingError::Signature)?;
        let ok = signing.check(&provided, |s| {
            chunk::trailer_string_to_sign(&s.amz_date, &s.scope, &s.previous, &hash)
        });
        ok.then_some(()).ok_or(FramingError::Signature)
    }
}

/// The `chunk-signature` of a chunk header line, if it has one.
fn chunk_signature(line: &[u8]) -> Option<Vec<u8>> {
    const NAME: &[u8] = b";chunk-signature=";
    let at = line.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let value = &line[at..];
    let end = value
        .iter()
        .position(|&b| b == b'\r' || b == b'\n' || b == b';')
        .unwrap_or(value.len());
    Some(value[..end].to_vec())
}

/// The framing state of one body.
#[derive(Debug)]
struct Framing {
    state: State,
    decoded: u64,
    declared: u64,
    /// Trailer header names the body must end with (lower case).
    trailers: Vec<String>,
    signatures: Signatures,
}

impl Framing {
    fn new(declared: u64, trailers: Vec<String>, signing: Option<ChunkSigning>) -> Self {
        Framing {
            state: State::Header(Vec::new()),
            decoded: 0,
            declared,
            trailers,
            signatures: Signatures {
                signing,
                provided: None,
                data: Sha256::new(),
            },
        }
    }

    fn feed(&mut self, mut buf: &[u8]) -> Result<(), FramingError> {
        while !buf.is_empty() {
            match &mut self.state {
                State::Header(line) => {
                    let end = buf.iter().position(|&b| b == b'\n');
                    let take = end.map_or(buf.len(), |i| i + 1);
                    if line.len() + take > MAX_CHUNK_LINE {
                        return Err(FramingError::Malformed);
                    }
                    line.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if end.is_some() {
                        let size = chunk_size(line)?;
                        self.signatures.provided = chunk_signature(line);
                        self.state = self.after_header(size)?;
                        if size == 0 {
                            self.signatures.check_chunk()?;
                        }
                    }
                }
                State::Data(left) => {
                    let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    // The chunk's data, then its closing CRLF (the last two bytes of `left`).
                    let data_left = left.saturating_sub(2);
                    let data = take.min(usize::try_from(data_left).unwrap_or(usize::MAX));
                    self.signatures.data.update(&buf[..data]);
                    *left -= take as u64;
                    buf = &buf[take..];
                    if data_left > 0 && data as u64 == data_left {
                        // Before the byte that completes the chunk goes on to s3s.
                        self.signatures.check_chunk()?;
                    }
                    if *left == 0 {
                        self.state = State::Header(Vec::new());
                    }
                }
                State::Trailer(t) => {
                    if t.len() + buf.len() > MAX_TRAILER {
                        return Err(FramingError::Malformed);
                    }
                    t.extend_from_slice(buf);
                    buf = &[];
                }
            }
        }
        Ok(())
    }

    fn after_header(&mut self, size: u64) -> Result<State, FramingError> {
        self.decoded = self
            .decoded
            .checked_add(size)
            .filter(|&d| d <= self.declared)
            .ok_or(FramingError::LengthMismatch)?;
        if size > 0 {
            return Ok(State::Data(size.saturating_add(2)));
        }
        if self.decoded != self.declared {
            return Err(FramingError::LengthMismatch);
        }
        Ok(State::Trailer(Vec::new()))
    }

    /// The body ended (s3s checks the trailer only once it has read the end).
    fn finish(&mut self) -> Result<(), FramingError> {
        let State::Trailer(t) = &self.state else {
            return Err(FramingError::NoFinalChunk);
        };
        self.signatures.check_trailer(t)?;
        let text = String::from_utf8_lossy(t).to_ascii_lowercase();
        let has = |name: &str| {
            text.lines()
                .any(|l| l.split_once(':').is_some_and(|(n, _)| n.trim() == name))
        };
        if self.trailers.iter().all(|n| has(n)) {
            Ok(())
        } else {
            Err(FramingError::NoTrailer)
        }
    }
}

/// The size of a chunk from its header line.
fn chunk_size(line: &[u8]) -> Result<u64, FramingError> {
    let end = line
        .iter()
        .position(|&b| b == b';' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let hex = std::str::from_utf8(&line[..end]).map_err(|_| FramingError::Malformed)?;
    u64::from_str_radix(hex.trim(), 16).map_err(|_| FramingError::Malformed)
}

/// A request body, with the aws-chunked rules enforced when its headers announce the encoding.
/// Bodies whose streaming headers are missing or unreadable are left as they are: s3s refuses them.
pub fn guard(headers: &HeaderMap, body: Body, credentials: &dyn CredentialStore) -> Body {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(mode) = header("x-amz-content-sha256").filter(|m| m.starts_with("STREAMING-")) else {
        return body;
    };
    let Some(declared) = header("x-amz-decoded-content-length").and_then(|v| v.parse().ok()) else {
        return body;
    };
    let trailers = if mode.ends_with("-TRAILER") {
        header("x-amz-trailer")
            .unwrap_or_default()
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let guarded = Guarded {
        inner: Box::pin(body),
        framing: Framing::new(
            declared,
            trailers,
            ChunkSigning::of_request(headers, credentials),
        ),
        done: false,
    };
    Body::from(Box::pin(guarded) as s3s::stream::DynByteStream)
}

struct Guarded {
    inner: Pin<Box<Body>>,
    framing: Framing,
    done: bool,
}

impl Guarded {
    fn fail(&mut self, e: FramingError) -> Poll<Option<Result<Bytes, StdError>>> {
        self.done = true;
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl Stream for Guarded {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => match self.framing.feed(&bytes) {
                Ok(()) => Poll::Ready(Some(Ok(bytes))),
                Err(e) => self.fail(e),
            },
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => match self.framing.finish() {
                Ok(()) => {
                    self.done = true;
                    Poll::Ready(None)
                }
                Err(e) => self.fail(e),
            },
        }
    }
}

impl ByteStream for Guarded {
    fn remaining_length(&self) -> RemainingLength {
        self.inner.remaining_length()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unsigned chunks (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`): the framing alone.
    fn chunked(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn final_chunk() -> Vec<u8> {
        b"0\r\n".to_vec()
    }

    /// Feeds `body` in pieces of `step` bytes.
    fn run(f: &mut Framing, body: &[u8], step: usize) -> Result<(), FramingError> {
        for piece in body.chunks(step.max(1)) {
            f.feed(piece)?;
        }
        f.finish()
    }

    #[test]
    fn complete_bodies_pass_however_they_are_cut() {
        let data = vec![7u8; 1000];
        let mut body = chunked(&data, 300);
        body.extend(final_chunk());
        body.extend_from_slice(b"\r\n");
        for step in [1, 2, 7, 64, 5000] {
            assert_eq!(
                run(&mut Framing::new(1000, vec![], None), &body, step),
                Ok(()),
                "{step}"
            );
        }
        let mut empty = final_chunk();
        empty.extend_from_slice(b"\r\n");
        assert_eq!(run(&mut Framing::new(0, vec![], None), &empty, 3), Ok(()));
    }

    #[test]
    fn a_missing_final_chunk_or_wrong_length_fails() {
        let data = vec![7u8; 1000];
        let body = chunked(&data, 300);
        assert_eq!(
            run(&mut Framing::new(1000, vec![], None), &body, 64),
            Err(FramingError::NoFinalChunk)
        );
        let mut short = chunked(&data[..600], 300);
        short.extend(final_chunk());
        assert_eq!(
            run(&mut Framing::new(1000, vec![], None), &short, 64),
            Err(FramingError::LengthMismatch)
        );
        let mut long = chunked(&data, 300);
        long.extend(final_chunk());
        assert_eq!(
            run(&mut Framing::new(999, vec![], None), &long, 64),
            Err(FramingError::LengthMismatch)
        );
        assert_eq!(
            run(
                &mut Framing::new(1, vec![], None),
                b"zz;chunk-signature=\r\n",
                64
            ),
            Err(FramingError::Malformed)
        );
    }

    #[test]
    fn declared_trailers_must_arrive() {
        let mut body = chunked(b"hello", 300);
        body.extend(final_chunk());
        let names = || vec!["x-amz-checksum-crc32".to_string()];
        assert_eq!(
            run(&mut Framing::new(5, names(), None), &body, 4),
            Err(FramingError::NoTrailer)
        );
        body.extend_from_slice(b"x-amz-checksum-crc32:NhCmhg==\r\n\r\n");
        assert_eq!(run(&mut Framing::new(5, names(), None), &body, 4), Ok(()));
    }

    const SECRET: &str = "chunk-test-secret";
    const DATE: &str = "20261207T120000Z";
    const SCOPE: &str = "20261207/us-east-1/s3/aws4_request";
    const SEED: &str = "5f1f8d7c0e3f4b6a9a0e6c2d4b8f1a3c5e7d9b1f3a5c7e9d0b2f4a6c8e0d2b4f";

    fn signing() -> ChunkSigning {
        ChunkSigning {
            key: cairn_sign::derive_signing_key(SECRET, &DATE[..8], "us-east-1", "s3"),
            amz_date: DATE.into(),
            scope: SCOPE.into(),
            previous: SEED.into(),
        }
    }

    /// A body signed as an SDK signs one (`cairn_sign`, the client side), with the offsets at
    /// which each data chunk's last byte sits; with `trailer`, a signed checksum trailer.
    fn signed(data: &[u8], chunk: usize, trailer: bool) -> (Vec<u8>, Vec<usize>) {
        let mut signer = cairn_sign::Signer::new("ak", SECRET, "us-east-1", "s3");
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let mut previous = SEED.to_string();
        let mut chunks: Vec<&[u8]> = data.chunks(chunk).collect();
        chunks.push(&[]);
        for c in chunks {
            previous = signer.chunk_signature(DATE, SCOPE, &previous, c);
            out.extend_from_slice(
                format!("{:x};chunk-signature={previous}\r\n", c.len()).as_bytes(),
            );
            out.extend_from_slice(c);
            if !c.is_empty() {
                ends.push(out.len() - 1);
                out.extend_from_slice(b"\r\n");
            }
        }
        if trailer {
            let line = "x-amz-checksum-crc32:NhCmhg==";
            let hash: [u8; 32] = Sha256::digest(format!("{line}\n")).into();
            let key = cairn_sign::derive_signing_key(SECRET, &DATE[..8], "us-east-1", "s3");
            let sig = chunk::signature(
                &key,
                &chunk::trailer_string_to_sign(DATE, SCOPE, &previous, &hash),
            );
            out.extend_from_slice(
                format!("{line}\r\nx-amz-trailer-signature:{sig}\r\n").as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n");
        (out, ends)
    }

    fn framing(len: usize, trailer: bool) -> Framing {
        let names = if trailer {
            vec!["x-amz-checksum-crc32".to_string()]
        } else {
            vec![]
        };
        Framing::new(len as u64, names, Some(signing()))
    }

    #[test]
    fn signed_bodies_pass_however_they_are_cut() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        for trailer in [false, true] {
            let (body, _) = signed(&data, 1024, trailer);
            for step in [1, 3, 100, 1 << 20] {
                assert_eq!(
                    run(&mut framing(data.len(), trailer), &body, step),
                    Ok(()),
                    "step {step}, trailer {trailer}"
                );
            }
        }
    }

    /// The point of checking here: s3s compares signatures with `==`. A chunk whose data or
    /// signature is wrong fails before the byte that completes the chunk is passed on, so s3s
    /// never gets to compare it.
    #[test]
    fn a_wrong_chunk_fails_before_its_last_byte_goes_on() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let (good, ends) = signed(&data, 1024, false);
        let tampered_data = {
            let mut b = good.clone();
            b[ends[1] - 10] ^= 1;
            b
        };
        let tampered_signature = {
            let mut b = good.clone();
            // The last character of the second chunk's signature.
            let at = ends[0] + 3 + "400;chunk-signature=".len() + 63;
            b[at] = if b[at] == b'0' { b'1' } else { b'0' };
            b
        };
        for body in [tampered_data, tampered_signature] {
            let mut f = framing(data.len(), false);
            let passed = body.iter().take_while(|b| f.feed(&[**b]).is_ok()).count();
            assert_eq!(passed, ends[1], "the chunk's last byte is held");
        }
        let mut short = good.clone();
        let at = ends[0] + 3 + "400;chunk-signature=".len();
        short.drain(at..at + 2);
        assert_eq!(
            run(&mut framing(data.len(), false), &short, 7),
            Err(FramingError::Signature)
        );
    }

    #[test]
    fn a_wrong_trailer_signature_fails_at_the_end() {
        let data = vec![9u8; 3000];
        let (mut body, _) = signed(&data, 1024, true);
        let at = body.len() - 5;
        body[at] = if body[at] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            run(&mut framing(data.len(), true), &body, 64),
            Err(FramingError::Signature)
        );
    }

    /// A signature is never left to s3s, even when this side cannot check it.
    #[test]
    fn a_signature_without_a_signed_request_fails() {
        let (body, _) = signed(b"hello", 1024, false);
        assert_eq!(
            run(&mut Framing::new(5, vec![], None), &body, 64),
            Err(FramingError::Signature)
        );
    }

    #[test]
    fn the_signing_context_comes_from_one_sigv4_authorization() {
        let store = crate::auth::RootCredentials {
            access_key: "ak".into(),
            secret_key: SECRET.into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-date", DATE.parse().unwrap());
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=ak/20261207/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            SEED.to_uppercase()
        );
        headers.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        let s = ChunkSigning::of_request(&headers, &store).expect("signing");
        assert_eq!((s.scope.as_str(), s.previous.as_str()), (SCOPE, SEED));
        assert_eq!(s.key, signing().key);
        let mut unknown = headers.clone();
        unknown.insert(
            http::header::AUTHORIZATION,
            auth.replace("ak/", "nobody/").parse().unwrap(),
        );
        assert!(ChunkSigning::of_request(&unknown, &store).is_none());
        let mut twice = headers.clone();
        twice.append(http::header::AUTHORIZATION, auth.parse().unwrap());
        assert!(ChunkSigning::of_request(&twice, &store).is_none());
    }
}
