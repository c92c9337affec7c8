//! The front router's side of the live trace and the audit log (`crate::observe`): what a
//! request looked like when it came in, and once it is answered, its trace record (published
//! when the answer's body ends, so the duration and bytes sent are the whole answer's) and its
//! audit line (admin calls and denied requests). Nothing is taken when nobody traces and no
//! audit sink is set.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::{Request, Response};
use s3s::Body;

use crate::observe::audit::{Audit, AuditRecord};
use crate::observe::trace::{masked_headers, TraceRecord};
use crate::observe::{rfc3339, RequestFacts};
use crate::telemetry::{RequestNotes, SharedNotes};

use super::Node;

/// A request being watched for the trace and/or the audit log.
pub struct Watch {
    node: Arc<Node>,
    audit: Option<Arc<Audit>>,
    trace: bool,
    started_ns: i64,
    method: String,
    path: String,
    remote: String,
    request_id: String,
    bytes_in: u64,
    headers: Vec<(String, String)>,
    pub notes: SharedNotes,
}

/// The declared length of a request body (`x-amz-decoded-content-length` for a chunk-signed one).
fn declared_length(headers: &hyper::HeaderMap) -> u64 {
    ["x-amz-decoded-content-length", "content-length"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok()?.trim().parse().ok())
        .unwrap_or(0)
}

impl Watch {
    /// Starts watching `req`, or `None` (and the notes without details) when nobody would read
    /// what it finds.
    pub fn begin<B>(
        node: &Arc<Node>,
        req: &Request<B>,
        request_id: &str,
    ) -> (Option<Watch>, SharedNotes) {
        let audit = node.audit.get().cloned();
        let trace = node.trace.active();
        let notes = SharedNotes::default();
        if audit.is_none() && !trace {
            return (None, notes);
        }
        notes.lock().unwrap_or_else(|e| e.into_inner()).detailed = true;
        let remote = req
            .extensions()
            .get::<crate::auth::ConnInfo>()
            .map(|c| c.peer.to_string())
            .unwrap_or_default();
        let watch = Watch {
            node: node.clone(),
            audit,
            trace,
            started_ns: node.objects.clock.now_ns(),
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            remote,
            request_id: request_id.to_owned(),
            bytes_in: declared_length(req.headers()),
            headers: if trace {
                masked_headers(req.headers())
            } else {
                Vec::new()
            },
            notes: notes.clone(),
        };
        (Some(watch), notes)
    }

    fn here(&self) -> String {
        let t = &self.node.topology;
        t.nodes
            .get(t.local)
            .map(|n| n.s3.clone())
            .unwrap_or_default()
    }

    /// The request got `resp`: writes its audit line if it is one to audit, and hands back the
    /// answer, its body counted for the trace when someone traces.
    pub fn finish(self, resp: Response<Body>) -> Response<Body> {
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let status = resp.status().as_u16();
        let api = api_of(&notes);
        let admin = self.path.starts_with(crate::admin::PREFIX);
        if let Some(audit) = &self.audit {
            if admin || notes.denied || status == 403 {
                audit.log(&self.audit_record(&notes, &api, status, admin));
            }
        }
        if !self.trace {
            return resp;
        }
        let record = TraceRecord {
            request: self.facts(&notes, api, status),
            duration_ms: 0.0,
            bytes_in: self.bytes_in,
            bytes_out: 0,
            headers: self.headers,
            response_headers: masked_headers(resp.headers()),
        };
        let (parts, body) = resp.into_parts();
        let counted = Counted {
            inner: body,
            record: Some(record),
            node: self.node,
            started_ns: self.started_ns,
        };
        Response::from_parts(parts, Body::http_body_unsync(counted))
    }

    fn audit_record(
        &self,
        notes: &RequestNotes,
        api: &str,
        status: u16,
        admin: bool,
    ) -> AuditRecord {
        AuditRecord {
            version: 1,
            request: self.facts(notes, api.to_owned(), status),
            kind: if admin { "admin" } else { "denied" }.to_owned(),
            credentials: notes.credentials.map(str::to_owned),
            user: notes.user.clone(),
            decision: notes.decision.clone().or_else(|| {
                (status == 403)
                    .then(|| "refused before authorization (signature or credentials)".to_owned())
            }),
        }
    }

    /// What the trace and the audit log both say of this request.
    fn facts(&self, notes: &RequestNotes, api: String, status: u16) -> RequestFacts {
        RequestFacts {
            time: rfc3339(self.started_ns),
            node: self.here(),
            api,
            method: self.method.clone(),
            path: self.path.clone(),
            bucket: notes.bucket.clone(),
            key: notes.key.clone(),
            status,
            access_key: notes.access_key.clone(),
            remote: self.remote.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// The API a request is shown under: the router's name for it, else the S3 operation.
fn api_of(notes: &RequestNotes) -> String {
    notes
        .api
        .clone()
        .or_else(|| notes.operation.clone())
        .unwrap_or_else(|| "Unknown".to_owned())
}

/// An answer body that counts what it sends and publishes the request's trace record when it
/// ends (or is dropped: a client that went away).
struct Counted {
    inner: Body,
    record: Option<TraceRecord>,
    node: Arc<Node>,
    started_ns: i64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            let ns = self
                .node
                .objects
                .clock
                .now_ns()
                .saturating_sub(self.started_ns)
                .max(0);
            r.duration_ms = ns as f64 / 1e6;
            self.node.trace.publish(r);
        }
    }
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(data), Some(r)) = (frame.data_ref(), self.record.as_mut()) {
                r.bytes_out += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}
