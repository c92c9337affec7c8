//! The data service: this node's local drives served over gRPC to the other nodes of the site.
//!
//! The server is a thin adapter: every RPC names a drive by its global index, runs the matching
//! [`Drive`] method on it and maps the result (see `proto/cairn/drive.proto` for the wire
//! contract). Paths are validated by the drive itself, exactly as for local callers. Only nodes
//! that share the site's internode token get in ([`Transport::check`], constant time).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use cairn_control_plane::transport::Transport;
use cairn_proto::drive as pb;
use cairn_proto::drive::drive_service_server::{DriveService, DriveServiceServer};

use super::{Drive, DriveError, MetaOp, ShardWriter};
use crate::clock::SharedClock;

/// Largest payload chunk in either direction: keeps every message far below gRPC's size limits
/// and the memory per in-flight transfer small, whatever the size of a read or write.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Largest gRPC message accepted on either side. Payload travels in [`CHUNK_SIZE`] chunks; only
/// metadata values (object records with inlined data, many versions) can approach this.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Metadata key telling a client which drive error a status carries, so a drive's own failure is
/// never confused with a transport failure (which means the drive is offline).
pub const ERROR_KIND_HEADER: &str = "x-cairn-drive-error";

/// How long the server waits for the next chunk of an upload before abandoning it: a client that
/// vanished without closing its stream must not keep a file open forever.
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Scan replies are cut into batches of about this many bytes.
const SCAN_BATCH_BYTES: usize = 1 << 20;

/// Maps a drive error to the status the client turns back into the same error.
pub fn to_status(e: DriveError) -> Status {
    let (mut status, kind) = match e {
        DriveError::NotFound => (Status::not_found("not found"), "not-found"),
        DriveError::InvalidPath(p) => (Status::invalid_argument(p), "invalid-path"),
        DriveError::Io(e) => (Status::internal(e.to_string()), "io"),
        DriveError::Meta(m) => (Status::internal(m), "meta"),
        DriveError::Offline => (Status::unavailable("drive is offline"), "offline"),
        DriveError::Conflict => (
            Status::aborted("the record changed since it was read"),
            "conflict",
        ),
        DriveError::Expired => (
            Status::aborted("the write's deadline has passed"),
            "expired",
        ),
    };
    status
        .metadata_mut()
        .insert(ERROR_KIND_HEADER, MetadataValue::from_static(kind));
    status
}

fn unknown_drive(index: u32) -> Status {
    let mut status = Status::failed_precondition(format!(
        "drive {index} is not served by this node (do the nodes share one endpoint list?)"
    ));
    status.metadata_mut().insert(
        ERROR_KIND_HEADER,
        MetadataValue::from_static("unknown-drive"),
    );
    status
}

/// Serves this node's local drives, keyed by their global index.
#[derive(Clone)]
pub struct DataService {
    drives: Arc<BTreeMap<u32, Arc<dyn Drive>>>,
    transport: Transport,
    /// This node's clock: told to callers with every `get`, and what `NotAfter` deadlines are
    /// checked against.
    clock: SharedClock,
}

impl DataService {
    /// `transport` is only used to authenticate callers: its token is the site's.
    pub fn new(
        transport: Transport,
        drives: BTreeMap<u32, Arc<dyn Drive>>,
        clock: SharedClock,
    ) -> Self {
        Self {
            drives: Arc::new(drives),
            transport,
            clock,
        }
    }

    /// The span of one call, in the caller's trace.
    fn span(
        &self,
        rpc: &'static str,
        drive: u32,
        metadata: &tonic::metadata::MetadataMap,
    ) -> tracing::Span {
        let span = tracing::info_span!("drive_rpc", rpc, drive);
        self.transport.follow(&span, metadata);
        span
    }

    fn drive(&self, index: u32) -> Result<Arc<dyn Drive>, Status> {
        self.drives.get(&index).cloned().ok_or_else(|| {
            tracing::warn!(
                drive = index,
                "request for a drive this node does not serve"
            );
            unknown_drive(index)
        })
    }
}

/// Refuses requests without the site's internode token; nameable, unlike a closure, so the
/// server type below is too.
#[derive(Clone)]
pub struct TokenCheck(Transport);

impl Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        self.0.check(req)
    }
}

type Inner = InterceptedService<DriveServiceServer<DataService>, TokenCheck>;

/// The data service ready for `tonic::transport::Server::add_service`, next to other services:
///
/// ```text
/// Server::builder()
///     .add_service(DriveServer::new(DataService::new(transport, local_drives, clock)))
///     .add_service(raft_service)
/// ```
#[derive(Clone)]
pub struct DriveServer(Inner);

impl DriveServer {
    pub fn new(svc: DataService) -> Self {
        let check = TokenCheck(svc.transport.clone());
        let server = DriveServiceServer::new(svc)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self(InterceptedService::new(server, check))
    }
}

impl Service<http::Request<Body>> for DriveServer {
    type Response = <Inner as Service<http::Request<Body>>>::Response;
    type Error = Infallible;
    type Future = <Inner as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Inner as Service<http::Request<Body>>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        <Inner as Service<http::Request<Body>>>::call(&mut self.0, req)
    }
}

impl NamedService for DriveServer {
    const NAME: &'static str = <DriveServiceServer<DataService> as NamedService>::NAME;
}

/// Runs one drive call inside the RPC's span and maps its error.
async fn run<T>(
    span: tracing::Span,
    f: impl std::future::Future<Output = Result<T, DriveError>>,
) -> Result<Response<T>, Status> {
    async {
        f.await.map(Response::new).map_err(|e| {
            tracing::debug!(error = %e, "drive call failed");
            to_status(e)
        })
    }
    .instrument(span)
    .await
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Stores one upload; on any failure the partial file is removed before the error is returned.
async fn upload(
    drive: Arc<dyn Drive>,
    first: pb::CreateFileRequest,
    mut stream: Streaming<pb::CreateFileRequest>,
) -> Result<Response<pb::Ack>, Status> {
    let path = first.path.clone();
    let mut w = drive.create_file(&path).await.map_err(to_status)?;
    let res = match receive(&mut w, first, &mut stream).await {
        Ok(()) => w.finish().await.map_err(to_status),
        Err(status) => {
            drop(w);
            Err(status)
        }
    };
    match res {
        Ok(()) => Ok(Response::new(pb::Ack {})),
        Err(status) => {
            tracing::debug!(%status, "upload abandoned");
            if let Err(e) = drive.delete(&path).await {
                tracing::warn!(error = %e, "cannot remove abandoned upload");
            }
            Err(status)
        }
    }
}

/// Feeds the rest of an upload into `w`; `Ok` only once the client sent `finish`.
async fn receive(
    w: &mut Box<dyn ShardWriter>,
    first: pb::CreateFileRequest,
    stream: &mut Streaming<pb::CreateFileRequest>,
) -> Result<(), Status> {
    let mut msg = first;
    loop {
        if !msg.data.is_empty() {
            w.write(msg.data).await.map_err(to_status)?;
        }
        if msg.finish {
            return Ok(());
        }
        msg = match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, stream.message()).await {
            Err(_) => return Err(Status::deadline_exceeded("upload stalled")),
            Ok(Err(status)) => return Err(status),
            Ok(Ok(None)) => return Err(Status::aborted("upload ended without finish")),
            Ok(Ok(Some(m))) => m,
        };
    }
}

/// Cuts scan results into messages of about [`SCAN_BATCH_BYTES`].
fn scan_batches(rows: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<pb::ScanReply> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for (k, v) in rows {
        bytes += k.len() + v.len();
        batch.push(pb::KeyValue {
            key: Bytes::from(k),
            value: Bytes::from(v),
        });
        if bytes >= SCAN_BATCH_BYTES {
            out.push(pb::ScanReply {
                entries: std::mem::take(&mut batch),
            });
            bytes = 0;
        }
    }
    if !batch.is_empty() || out.is_empty() {
        out.push(pb::ScanReply { entries: batch });
    }
    out
}

#[tonic::async_trait]
impl DriveService for DataService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetReply>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        let clock = self.clock.clone();
        run(self.span("get", req.drive, &metadata), async move {
            let value = drive.get(&req.key).await?;
            Ok(pb::GetReply {
                value: value.map(Bytes::from),
                now_ns: clock.now_ns(),
            })
        })
        .await
    }

    async fn apply(&self, req: Request<pb::ApplyRequest>) -> Result<Response<pb::Ack>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        let mut ops = Vec::with_capacity(req.ops.len());
        for op in req.ops {
            ops.push(match op.op {
                Some(pb::meta_op::Op::Put(kv)) => MetaOp::Put(kv.key.into(), kv.value.into()),
                Some(pb::meta_op::Op::Delete(k)) => MetaOp::Delete(k.into()),
                Some(pb::meta_op::Op::Expect(e)) => {
                    MetaOp::Expect(e.key.into(), e.present.then(|| e.value.into()))
                }
                Some(pb::meta_op::Op::NotAfterNs(ns)) => MetaOp::NotAfter(ns),
                None => return Err(Status::invalid_argument("empty metadata op")),
            });
        }
        let clock = self.clock.clone();
        run(self.span("apply", req.drive, &metadata), async move {
            let now = clock.now_ns();
            if ops
                .iter()
                .any(|op| matches!(op, MetaOp::NotAfter(t) if now > *t))
            {
                return Err(DriveError::Expired);
            }
            drive.apply(ops).await?;
            Ok(pb::Ack {})
        })
        .await
    }

    type ScanStream = BoxStream<pb::ScanReply>;

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<Self::ScanStream>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let rows = run(self.span("scan", req.drive, &metadata), async move {
            drive.scan(&req.prefix, &req.after, limit).await
        })
        .await?
        .into_inner();
        let batches = scan_batches(rows);
        Ok(Response::new(Box::pin(futures::stream::iter(
            batches.into_iter().map(Ok),
        ))))
    }

    async fn create_file(
        &self,
        req: Request<Streaming<pb::CreateFileRequest>>,
    ) -> Result<Response<pb::Ack>, Status> {
        let (metadata, _, mut stream) = req.into_parts();
        let first = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, stream.message())
            .await
            .map_err(|_| Status::deadline_exceeded("upload stalled"))??
            .ok_or_else(|| Status::invalid_argument("empty upload"))?;
        let drive = self.drive(first.drive)?;
        let span = tracing::info_span!(
            "drive_rpc",
            rpc = "create_file",
            drive = first.drive,
            path = %first.path
        );
        self.transport.follow(&span, &metadata);
        // The upload runs as a task of its own: when a client goes away, hyper drops this handler
        // mid-call, but the task still sees the broken stream and removes the partial file, after
        // any write in flight, so no half-written file is left behind.
        tokio::spawn(upload(drive, first, stream).instrument(span))
            .await
            .map_err(|e| to_status(DriveError::Io(std::io::Error::other(e))))?
    }

    type ReadFileStream = BoxStream<pb::ReadFileReply>;

    async fn read_file(
        &self,
        req: Request<pb::ReadFileRequest>,
    ) -> Result<Response<Self::ReadFileStream>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        let span = tracing::info_span!(
            "drive_rpc",
            rpc = "read_file",
            drive = req.drive,
            path = %req.path
        );
        self.transport.follow(&span, &metadata);
        // Chunk by chunk, each read only when the previous one was taken: memory stays at a chunk
        // or two per transfer and a slow reader slows the disk reads instead of piling them up.
        let state = (drive, req.path, req.offset, req.len, true);
        let stream = futures::stream::unfold(state, move |(drive, path, offset, left, first)| {
            let span = span.clone();
            async move {
                if left == 0 && !first {
                    return None;
                }
                let n = left.min(CHUNK_SIZE as u64);
                let res = drive
                    .read_file(&path, offset, n as usize)
                    .instrument(span)
                    .await;
                match res {
                    Ok(data) => Some((
                        Ok(pb::ReadFileReply { data }),
                        (drive, path, offset.saturating_add(n), left - n, false),
                    )),
                    // A zero `left` ends the stream after the error.
                    Err(e) => Some((Err(to_status(e)), (drive, path, offset, 0, false))),
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rename(&self, req: Request<pb::RenameRequest>) -> Result<Response<pb::Ack>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        run(self.span("rename", req.drive, &metadata), async move {
            drive.rename(&req.from, &req.to).await?;
            Ok(pb::Ack {})
        })
        .await
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::Ack>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        run(self.span("delete", req.drive, &metadata), async move {
            drive.delete(&req.path).await?;
            Ok(pb::Ack {})
        })
        .await
    }

    async fn health(&self, req: Request<pb::HealthRequest>) -> Result<Response<pb::Ack>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        run(self.span("health", req.drive, &metadata), async move {
            drive.health().await?;
            Ok(pb::Ack {})
        })
        .await
    }

    async fn list_dir(
        &self,
        req: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirReply>, Status> {
        let (metadata, _, req) = req.into_parts();
        let drive = self.drive(req.drive)?;
        run(self.span("list_dir", req.drive, &metadata), async move {
            let names = drive.list_dir(&req.path).await?;
            Ok(pb::ListDirReply { names })
        })
        .await
    }
}
