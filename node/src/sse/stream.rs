//! Adapters that put the package cipher into a `Stream<Item = Result<Bytes, E>>` pipeline, the
//! shape the object layer reads bodies and shard ranges in. Each holds at most one package plus the
//! packages one input chunk completed, so memory stays bounded whatever the object size.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::package::{Decryptor, Encryptor};
use super::SseError;
use crate::object::stage::BodyError;

/// A failure of the wrapped stream or of the cipher.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error("{0}")]
    Body(E),
    #[error(transparent)]
    Sse(#[from] SseError),
}

/// A sealed body as the object layer reads it: the wrapped body's own errors as they were, the
/// cipher's (a body too long to seal) as a body that cannot be stored.
impl<E: Into<BodyError>> From<StreamError<E>> for BodyError {
    fn from(e: StreamError<E>) -> Self {
        match e {
            StreamError::Body(b) => b.into(),
            StreamError::Sse(s) => BodyError::Incomplete(s.to_string()),
        }
    }
}

enum Cipher {
    Seal(Encryptor),
    Open(Decryptor),
}

struct State<S> {
    inner: S,
    cipher: Option<Cipher>,
    ready: VecDeque<Bytes>,
}

/// Seals a plaintext body into packages; the last item is the final package.
pub fn encrypt<S, E>(body: S, enc: Encryptor) -> impl Stream<Item = Result<Bytes, StreamError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    run(body, Cipher::Seal(enc))
}

/// Opens the ciphertext of a [`super::PackageRange`] (read from `range.cipher`) into exactly the
/// requested plaintext; ends with [`SseError::Truncated`] if the ciphertext stops early.
pub fn decrypt<S, E>(cipher: S, dec: Decryptor) -> impl Stream<Item = Result<Bytes, StreamError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    run(cipher, Cipher::Open(dec))
}

fn run<S, E>(inner: S, cipher: Cipher) -> impl Stream<Item = Result<Bytes, StreamError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let state = State {
        inner,
        cipher: Some(cipher),
        ready: VecDeque::new(),
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.ready.pop_front() {
                return Some((Ok(b), st));
            }
            let cipher = st.cipher.as_mut()?;
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    let out = match cipher {
                        Cipher::Seal(e) => e.update(&chunk),
                        Cipher::Open(d) => d.update(BytesMut::from(chunk)),
                    };
                    match out {
                        Ok(v) => st.ready.extend(v),
                        Err(e) => {
                            st.cipher = None;
                            return Some((Err(StreamError::Sse(e)), st));
                        }
                    }
                }
                Some(Err(e)) => {
                    st.cipher = None;
                    return Some((Err(StreamError::Body(e)), st));
                }
                None => {
                    let end = match st.cipher.take()? {
                        Cipher::Seal(e) => e.finish().map(Some),
                        Cipher::Open(d) => d.finish().map(|()| None),
                    };
                    match end {
                        Ok(Some(last)) => return Some((Ok(last), st)),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(StreamError::Sse(e)), st)),
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::super::package::{package_range, Backend, StreamKey, SINGLE_PART};
    use super::super::ObjectKey;
    use super::*;

    fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let v: Vec<Result<Bytes, String>> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(v)
    }

    fn collect<E: std::fmt::Display>(
        s: impl Stream<Item = Result<Bytes, StreamError<E>>>,
    ) -> Result<Vec<u8>, String> {
        block_on(async {
            let mut s = Box::pin(s);
            let mut out = Vec::new();
            while let Some(b) = s.next().await {
                out.extend_from_slice(&b.map_err(|e| e.to_string())?);
            }
            Ok(out)
        })
    }

    #[test]
    fn stream_round_trip_and_range() {
        let key = ObjectKey::from_bytes([9; 32]);
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let enc =
            Encryptor::new(StreamKey::derive(&key, SINGLE_PART), Backend::default()).expect("enc");
        let sealed = collect(encrypt(chunks(&plain, 10_000), enc)).expect("seal");
        let n = plain.len() as u64;
        let r = package_range(n, 70_000, 100_000).expect("range");
        let dec = Decryptor::new(StreamKey::derive(&key, SINGLE_PART), Backend::default(), &r)
            .expect("dec");
        let part = &sealed[r.cipher.start as usize..r.cipher.end as usize];
        let got = collect(decrypt(chunks(part, 3_333), dec)).expect("open");
        assert_eq!(got, &plain[70_000..170_000]);

        let dec = Decryptor::new(StreamKey::derive(&key, SINGLE_PART), Backend::default(), &r)
            .expect("dec");
        let err = collect(decrypt(chunks(&part[..part.len() - 1], 4096), dec)).expect_err("short");
        assert_eq!(err, SseError::Truncated.to_string());
    }
}
