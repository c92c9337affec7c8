//! An aws-chunked body (`x-amz-content-sha256: STREAMING-...`) is complete only with its final
//! zero-length chunk, the trailer headers it declares in `x-amz-trailer` (the `-TRAILER`
//! variants), and exactly `x-amz-decoded-content-length` bytes of data. s3s 0.14 takes a body
//! that simply stops at a chunk boundary as complete and never compares the length, so a
//! truncated (or cut-short replayed) upload would be stored as a whole object.
//!
//! [`guard`] follows the framing while the bytes pass on unchanged to s3s (which decodes them and
//! verifies the chunk signatures) and fails the body where a rule is broken: the data the body
//! already gave is then discarded and the write answers `IncompleteBody`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{Body, StdError};

/// Longer chunk-header lines are not aws-chunked (s3s allows 1 KiB).
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// More trailer bytes are not aws-chunked (s3s allows 16 KiB).
const MAX_TRAILER: usize = 32 * 1024;

/// Why a streaming body was refused. The text reaches the client in the `IncompleteBody` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
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

/// The framing state of one body.
#[derive(Debug)]
struct Framing {
    state: State,
    decoded: u64,
    declared: u64,
    /// Trailer header names the body must end with (lower case).
    trailers: Vec<String>,
}

impl Framing {
    fn new(declared: u64, trailers: Vec<String>) -> Self {
        Framing {
            state: State::Header(Vec::new()),
            decoded: 0,
            declared,
            trailers,
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
                        self.state = self.after_header(size)?;
                    }
                }
                State::Data(left) => {
                    let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= take as u64;
                    buf = &buf[take..];
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

    /// The body ended.
    fn finish(&self) -> Result<(), FramingError> {
        let State::Trailer(t) = &self.state else {
            return Err(FramingError::NoFinalChunk);
        };
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
pub fn guard(headers: &HeaderMap, body: Body) -> Body {
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
        framing: Framing::new(declared, trailers),
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

    fn chunked(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            out.extend_from_slice(
                format!("{:x};chunk-signature={}\r\n", c.len(), "0".repeat(64)).as_bytes(),
            );
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn final_chunk() -> Vec<u8> {
        format!("0;chunk-signature={}\r\n", "0".repeat(64)).into_bytes()
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
                run(&mut Framing::new(1000, vec![]), &body, step),
                Ok(()),
                "{step}"
            );
        }
        let mut empty = final_chunk();
        empty.extend_from_slice(b"\r\n");
        assert_eq!(run(&mut Framing::new(0, vec![]), &empty, 3), Ok(()));
    }

    #[test]
    fn a_missing_final_chunk_or_wrong_length_fails() {
        let data = vec![7u8; 1000];
        let body = chunked(&data, 300);
        assert_eq!(
            run(&mut Framing::new(1000, vec![]), &body, 64),
            Err(FramingError::NoFinalChunk)
        );
        let mut short = chunked(&data[..600], 300);
        short.extend(final_chunk());
        assert_eq!(
            run(&mut Framing::new(1000, vec![]), &short, 64),
            Err(FramingError::LengthMismatch)
        );
        let mut long = chunked(&data, 300);
        long.extend(final_chunk());
        assert_eq!(
            run(&mut Framing::new(999, vec![]), &long, 64),
            Err(FramingError::LengthMismatch)
        );
        assert_eq!(
            run(&mut Framing::new(1, vec![]), b"zz;chunk-signature=\r\n", 64),
            Err(FramingError::Malformed)
        );
    }

    #[test]
    fn declared_trailers_must_arrive() {
        let mut body = chunked(b"hello", 300);
        body.extend(final_chunk());
        let names = || vec!["x-amz-checksum-crc32".to_string()];
        assert_eq!(
            run(&mut Framing::new(5, names()), &body, 4),
            Err(FramingError::NoTrailer)
        );
        body.extend_from_slice(
            b"x-amz-checksum-crc32:NhCmhg==\r\nx-amz-trailer-signature:00\r\n\r\n",
        );
        assert_eq!(run(&mut Framing::new(5, names()), &body, 4), Ok(()));
    }
}
