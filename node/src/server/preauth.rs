//! Request bodies that s3s reads before it can authenticate the request: a browser-form upload
//! (POST Object), whose signature and policy are fields of the body, and an STS call, whose
//! body is hashed for its signature. Anyone can send those, so Cairn reads them itself first:
//! capped in size, bounded in time, within a memory budget shared by all such requests, and
//! without a request slot, so slow anonymous senders cannot hold the slots of everyone else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use s3s::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::health::s3_error;

/// The form fields before the file (policy, signature, key, metadata): s3s's cap on them
/// (AWS allows 20 KB).
pub const FORM_FIELDS_MAX: usize = 1 << 20;
/// Part headers and boundaries around the file.
const FORM_FRAMING_MAX: u64 = 64 << 10;
/// An STS request body (s3s hashes up to 8 KiB of it).
const STS_BODY_MAX: u64 = 64 << 10;
/// Forms of the largest size that may be read at once; more wait for `503 SlowDown`.
const MAX_LARGEST_FORMS_AT_ONCE: u64 = 4;
/// The size of the frames a body read first is handed on in.
const FRAME: usize = 64 << 10;
/// The whole body must be in within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// The memory budget is counted in KiB (a semaphore takes at most `u32::MAX` permits at once).
const UNIT: u64 = 1024;

/// The budget and caps for bodies read before authentication.
pub struct PreAuthBodies {
    budget: Arc<Semaphore>,
    max_form: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PostObject,
    Sts,
}

impl PreAuthBodies {
    /// `max_post_object_size`: the largest file of a browser-form upload.
    pub fn new(max_post_object_size: u64) -> Self {
        let max_form = max_post_object_size + FORM_FIELDS_MAX as u64 + FORM_FRAMING_MAX;
        let budget = (MAX_LARGEST_FORMS_AT_ONCE * max_form).div_ceil(UNIT);
        PreAuthBodies {
            budget: Arc::new(Semaphore::new(
                usize::try_from(budget)
                    .unwrap_or(Semaphore::MAX_PERMITS)
                    .min(Semaphore::MAX_PERMITS),
            )),
            max_form,
        }
    }

    fn kind(req: &Request<Body>, sts: bool) -> Option<Kind> {
        if sts {
            return Some(Kind::Sts);
        }
        let form = crate::auth::request::is_form_upload(req.method(), req.headers());
        form.then_some(Kind::PostObject)
    }

    fn cap(&self, kind: Kind) -> u64 {
        match kind {
            Kind::PostObject => self.max_form,
            Kind::Sts => STS_BODY_MAX,
        }
    }

    /// Reads the body of a request s3s would read before authenticating it, and returns the
    /// request with the body in memory and the budget it holds (to keep until the request is
    /// answered); other requests come back untouched. `Err` is the answer for a body too
    /// large, too slow, cut short, or over the budget.
    pub async fn read(
        &self,
        req: Request<Body>,
        sts: bool,
        credentials: &dyn crate::auth::CredentialStore,
    ) -> Result<(Request<Body>, Option<OwnedSemaphorePermit>), Response<Body>> {
        let Some(kind) = Self::kind(&req, sts) else {
            return Ok((req, None));
        };
        let cap = self.cap(kind);
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap) {
            return Err(too_large(kind, cap));
        }
        let (parts, body) = req.into_parts();
        let read = self.read_body(body, kind, cap, declared);
        let (body, permit) = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(r) => r?,
            Err(_) => return Err(request_timeout()),
        };
        if kind == Kind::PostObject {
            crate::auth::request::check_post_form(&body, credentials)
                .map_err(|r| super::health::rejected(&r))?;
        }
        // Handed on in slices of the one buffer: s3s gathers the form fields a frame at a time
        // under its fields cap, so the fields must not come in one frame with the whole file.
        let frames = (0..body.len()).step_by(FRAME).map(move |at| {
            Ok::<_, Infallible>(Frame::data(body.slice(at..(at + FRAME).min(body.len()))))
        });
        let body = Body::http_body(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )));
        Ok((Request::from_parts(parts, body), Some(permit)))
    }

    async fn read_body(
        &self,
        mut body: Body,
        kind: Kind,
        cap: u64,
        declared: Option<u64>,
    ) -> Result<(Bytes, OwnedSemaphorePermit), Response<Body>> {
        let mut permit = self
            .reserve(declared.unwrap_or(0).div_ceil(UNIT).max(1))
            .ok_or_else(super::health::slow_down)?;
        let mut held = u64::try_from(permit.num_permits()).unwrap_or(u64::MAX) * UNIT;
        // One buffer, not the frames as they came: s3s's form parser refuses a first boundary
        // split across frames. Allocated once at its largest (pages are only taken as written),
        // so growing it never holds two copies.
        let mut all =
            BytesMut::with_capacity(usize::try_from(declared.unwrap_or(cap)).unwrap_or(0));
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if crate::net::BodyStalled::find(&*e).is_some() {
                    request_timeout()
                } else {
                    s3_error(
                        StatusCode::BAD_REQUEST,
                        "IncompleteBody",
                        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
                    )
                }
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len() as u64;
            if total > cap {
                return Err(too_large(kind, cap));
            }
            if total > held {
                let more = (total - held).div_ceil(UNIT);
                permit.merge(self.reserve(more).ok_or_else(super::health::slow_down)?);
                held += more * UNIT;
            }
            all.extend_from_slice(&data);
        }
        Ok((all.freeze(), permit))
    }

    /// `units` of the shared budget, or `None` when it is spent (the caller answers SlowDown).
    fn reserve(&self, units: u64) -> Option<OwnedSemaphorePermit> {
        u32::try_from(units)
            .ok()
            .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok())
    }
}

fn too_large(kind: Kind, cap: u64) -> Response<Body> {
    let what = match kind {
        Kind::PostObject => "form upload",
        Kind::Sts => "STS request",
    };
    s3_error(
        StatusCode::BAD_REQUEST,
        "EntityTooLarge",
        &format!("Your proposed upload exceeds the maximum allowed size: a {what} may carry at most {cap} bytes."),
    )
}

fn request_timeout() -> Response<Body> {
    s3_error(
        StatusCode::BAD_REQUEST,
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to within the timeout period.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    fn form(body: &'static [u8], content_length: bool) -> Request<Body> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri("/bucket")
            .header("content-type", "Multipart/Form-Data; boundary=x");
        if content_length {
            b = b.header("content-length", body.len().to_string());
        }
        b.body(Body::http_body(http_body_util::Full::new(
            Bytes::from_static(body),
        )))
        .unwrap()
    }

    /// No credentials: these bodies are not signed forms.
    fn nobody() -> crate::auth::RootCredentials {
        crate::auth::RootCredentials {
            access_key: "root".into(),
            secret_key: "root-secret".into(),
        }
    }

    fn code(r: &Response<Body>) -> String {
        let xml = r.body().bytes().unwrap_or_default();
        String::from_utf8_lossy(&xml).to_string()
    }

    #[tokio::test]
    async fn forms_are_read_within_the_cap() {
        let p = PreAuthBodies::new(16);
        let max = p.max_form as usize;
        let small: &'static [u8] = Box::leak(vec![b'a'; max].into_boxed_slice());
        let (req, permit) = p.read(form(small, false), false, &nobody()).await.unwrap();
        assert!(permit.is_some());
        let got = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), max);

        let big: &'static [u8] = Box::leak(vec![b'a'; max + 1].into_boxed_slice());
        for declared in [true, false] {
            let r = p
                .read(form(big, declared), false, &nobody())
                .await
                .unwrap_err();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
            assert!(
                code(&r).contains("<Code>EntityTooLarge</Code>"),
                "{}",
                code(&r)
            );
        }
    }

    #[tokio::test]
    async fn other_requests_pass_untouched() {
        let p = PreAuthBodies::new(16);
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/bucket/key")
            .header("content-type", "multipart/form-data; boundary=x")
            .body(Body::empty())
            .unwrap();
        let (_, permit) = p.read(req, false, &nobody()).await.unwrap();
        assert!(permit.is_none());
    }

    #[tokio::test]
    async fn the_budget_is_shared() {
        let p = PreAuthBodies::new(1 << 20);
        let held: Vec<_> = (0..MAX_LARGEST_FORMS_AT_ONCE)
            .map(|_| p.reserve(p.max_form.div_ceil(UNIT)).expect("budget left"))
            .collect();
        let r = p
            .read(form(b"abc", true), false, &nobody())
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        assert!(p.read(form(b"abc", true), false, &nobody()).await.is_ok());
    }
}
