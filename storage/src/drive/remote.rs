//! A drive on another node of the site, reached through that node's data service (`service`).
//!
//! To the object layer a [`RemoteDrive`] is just another [`Drive`]: the same results, the same
//! errors. Anything that keeps the peer from answering — refused or timed-out connection, broken
//! stream, a call that outlives its deadline — is [`DriveError::Offline`], so a dead or hung peer
//! costs the caller bounded time and is counted against quorum like a failed local disk.
//!
//! A peer that stopped answering (hung, partitioned, its machine gone: a connection attempt then
//! waits out its timeout) would cost every request that long again. So after a failure that made
//! the caller wait (a refused connection costs nothing, and is not one) the drive's calls fail at once ([`Breaker`]) until a health probe gets an answer: a call that finds
//! the drive paused starts one in the background (at most one per [`PROBE_INTERVAL`]), and every
//! health check (the server's rejoin monitor, load balancers' probes) counts as one too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Response, Status, Streaming};
use tracing::Instrument;

use cairn_control_plane::transport::Transport;
use cairn_proto::drive as pb;
use cairn_proto::drive::drive_service_client::DriveServiceClient;

use super::service::{CHUNK_SIZE, ERROR_KIND_HEADER, MAX_MESSAGE_SIZE};
use super::{Drive, DriveError, MetaOp, ShardWriter};
use crate::clock::SharedClock;

/// Deadline of a unary call: metadata batches and renames are fsynced, so allow for a slow disk,
/// but a hung peer must not stall a request for longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Health probes decide whether a drive is usable at all: answer quickly or count as offline.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the next message of a stream (a chunk sent or received): transfers of any
/// size are fine as long as they keep moving.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait for the peer to flush and fsync an uploaded file.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Upload chunks queued ahead of the network: with [`CHUNK_SIZE`] chunks, a writer holds at most
/// a few MiB whatever the file size, and a slow peer slows the writer down.
const UPLOAD_QUEUE: usize = 2;
/// How often calls to a paused drive start a probe of its peer.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A call that failed after this long made its caller wait: the drive is paused.
const SLOW_FAILURE: Duration = Duration::from_secs(1);

pub struct RemoteDrive {
    transport: Transport,
    addr: String,
    index: u32,
    label: String,
    breaker: Arc<Breaker>,
    /// This node's clock, and how far the peer's clock was ahead of it at the last `get` reply:
    /// a `MetaOp::NotAfter` deadline goes out in the peer's time, so clock skew between the
    /// nodes neither refuses a timely write nor lets a late one through.
    clock: SharedClock,
    peer_offset_ns: std::sync::atomic::AtomicI64,
}

/// Whether calls may go to the peer: the circuit breaker of the module doc.
#[derive(Default)]
struct Breaker(std::sync::Mutex<Paused>);

#[derive(Default)]
struct Paused {
    /// A call went unanswered, and no answer came since.
    paused: bool,
    /// A probe is on its way.
    probing: bool,
    /// No probe starts before then.
    next_probe: Option<Instant>,
}

/// What a call may do.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Go,
    /// Fail at once, and start a probe.
    Probe,
    /// Fail at once.
    Refuse,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, Paused> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self, now: Instant) -> Admit {
        let mut p = self.state();
        if !p.paused {
            return Admit::Go;
        }
        if p.probing || p.next_probe.is_some_and(|t| now < t) {
            return Admit::Refuse;
        }
        p.probing = true;
        p.next_probe = Some(now + PROBE_INTERVAL);
        Admit::Probe
    }

    /// Ends a pause; whether there was one.
    fn answered(&self) -> bool {
        std::mem::take(&mut *self.state()).paused
    }

    /// Starts a pause (or keeps it, after a failed probe); whether it is a new one.
    fn unanswered(&self, now: Instant) -> bool {
        let mut p = self.state();
        p.probing = false;
        if p.paused {
            return false;
        }
        p.paused = true;
        p.next_probe = Some(now + PROBE_INTERVAL);
        true
    }

    /// Records how a call that took `took` (or a probe) ended: an offline drive that made the
    /// caller wait pauses, any answer ends the pause.
    fn record<T>(&self, res: &Result<T, DriveError>, took: Duration, label: &str) {
        match res {
            Err(DriveError::Offline) if took < SLOW_FAILURE => {}
            Err(DriveError::Offline) => {
                if self.unanswered(Instant::now()) {
                    tracing::warn!(drive = %label, "peer does not answer: the drive's calls fail at once until a probe gets an answer");
                }
            }
            _ => {
                if self.answered() {
                    tracing::info!(drive = %label, "peer answers again");
                }
            }
        }
    }
}

impl RemoteDrive {
    /// `addr` is the peer's internode `HOST:PORT`, `index` the drive's position in the site's
    /// endpoint list, `label` the name used in logs and errors (usually the endpoint URL).
    pub fn new(
        transport: Transport,
        addr: String,
        index: u32,
        label: String,
        clock: SharedClock,
    ) -> Self {
        Self {
            transport,
            addr,
            index,
            label,
            breaker: Arc::default(),
            clock,
            peer_offset_ns: Default::default(),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// A client for one call, unless the peer's calls are paused ([`Breaker`]).
    fn client(&self) -> Result<DriveServiceClient<Channel>, DriveError> {
        match self.breaker.admit(Instant::now()) {
            Admit::Go => self.any_client(),
            Admit::Refuse => Err(DriveError::Offline),
            Admit::Probe => {
                self.probe();
                Err(DriveError::Offline)
            }
        }
    }

    /// Asks the peer for the drive's health in the background; its answer ends the pause.
    fn probe(&self) {
        let c = self.any_client();
        let req = self.request(
            pb::HealthRequest { drive: self.index },
            Some(HEALTH_TIMEOUT),
        );
        let (breaker, label) = (self.breaker.clone(), self.label.clone());
        let span = self.span("probe");
        tokio::spawn(
            async move {
                let res = match c {
                    Ok(mut c) => match tokio::time::timeout(HEALTH_TIMEOUT, c.health(req)).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(status)) => Err(from_status(&status, &label)),
                        Err(_) => Err(DriveError::Offline),
                    },
                    Err(e) => Err(e),
                };
                // A failed probe keeps the pause however quickly it failed.
                breaker.record(&res, SLOW_FAILURE, &label);
            }
            .instrument(span),
        );
    }

    /// A client whatever the breaker says: health probes tell whether the peer is back.
    fn any_client(&self) -> Result<DriveServiceClient<Channel>, DriveError> {
        let channel = self.transport.channel(&self.addr).map_err(|e| {
            tracing::warn!(drive = %self.label, error = %e, "cannot reach peer");
            DriveError::Offline
        })?;
        Ok(DriveServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    fn span(&self, op: &'static str) -> tracing::Span {
        tracing::debug_span!("remote_drive", op, drive = %self.label, peer = %self.addr)
    }

    /// A request carrying the site token and, for unary calls, the deadline (so the peer can give
    /// up on work nobody waits for anymore).
    fn request<T>(&self, msg: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut req = self.transport.request(msg);
        if let Some(t) = timeout {
            req.set_timeout(t);
        }
        req
    }

    /// Runs one call under `timeout` and maps its failure.
    async fn call<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, DriveError> {
        let started = Instant::now();
        let res = match tokio::time::timeout(timeout, fut)
            .instrument(self.span(op))
            .await
        {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(from_status(&status, &self.label)),
            Err(_) => {
                tracing::debug!(drive = %self.label, op, "call timed out");
                Err(DriveError::Offline)
            }
        };
        self.breaker.record(&res, started.elapsed(), &self.label);
        res
    }

    /// A unary call, or the opening of a stream, under the usual deadline.
    async fn unary<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, DriveError> {
        self.call(op, CALL_TIMEOUT, fut).await
    }
}

/// The next message of a response stream, or why there is none.
async fn next<T>(stream: &mut Streaming<T>, label: &str) -> Result<Option<T>, DriveError> {
    match tokio::time::timeout(STREAM_IDLE_TIMEOUT, stream.message()).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(status)) => Err(from_status(&status, label)),
        Err(_) => {
            tracing::debug!(drive = label, "stream stalled");
            Err(DriveError::Offline)
        }
    }
}

/// Turns a status back into the drive error the server started from. Only statuses the server
/// marked as drive errors count as such; everything else is the transport failing: offline.
fn from_status(status: &Status, label: &str) -> DriveError {
    let kind = status
        .metadata()
        .get(ERROR_KIND_HEADER)
        .and_then(|v| v.to_str().ok());
    let msg = status.message();
    match (status.code(), kind) {
        (Code::NotFound, _) => DriveError::NotFound,
        (Code::Aborted, Some("conflict")) => DriveError::Conflict,
        (Code::Aborted, Some("expired")) => DriveError::Expired,
        (Code::InvalidArgument, Some("invalid-path")) => DriveError::InvalidPath(msg.to_string()),
        (Code::Internal, Some("meta")) => DriveError::Meta(msg.to_string()),
        (Code::Internal, Some("io")) => DriveError::Io(std::io::Error::other(msg.to_string())),
        (Code::Unauthenticated | Code::PermissionDenied, _) => DriveError::Io(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{label}: refused by peer: {msg}"),
        )),
        (
            Code::FailedPrecondition
            | Code::InvalidArgument
            | Code::Unimplemented
            | Code::ResourceExhausted
            | Code::OutOfRange,
            _,
        ) => DriveError::Io(std::io::Error::other(format!("{label}: {msg}"))),
        (code, _) => {
            tracing::debug!(drive = label, ?code, message = msg, "peer unreachable");
            DriveError::Offline
        }
    }
}

/// The local drive's path rule, checked before a stream is opened: an upload reports errors only
/// once it ends, but a bad path must fail `create_file` itself, as it does locally. The server
/// checks again.
fn check_path(path: &str) -> Result<(), DriveError> {
    let ok = !path.is_empty()
        && std::path::Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(DriveError::InvalidPath(path.to_string()))
    }
}

type UploadCall = JoinHandle<Result<Response<pb::Ack>, Status>>;

/// An upload to the peer: chunks go through a small queue into one client-streaming call that
/// runs as its own task. Dropping the writer before `finish` aborts the call; the peer then
/// removes the partial file.
struct RemoteShardWriter {
    tx: Option<mpsc::Sender<pb::CreateFileRequest>>,
    call: Option<UploadCall>,
    label: String,
}

impl RemoteShardWriter {
    async fn send(&mut self, msg: pb::CreateFileRequest) -> Result<(), DriveError> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(DriveError::Offline);
        };
        match tokio::time::timeout(STREAM_IDLE_TIMEOUT, tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            // The call ended (the receiver is gone): its result says why.
            Ok(Err(_)) => Err(self.failure().await),
            Err(_) => {
                tracing::debug!(drive = %self.label, "upload stalled");
                self.abort();
                Err(DriveError::Offline)
            }
        }
    }

    async fn failure(&mut self) -> DriveError {
        self.tx = None;
        let Some(call) = self.call.take() else {
            return DriveError::Offline;
        };
        match tokio::time::timeout(STREAM_IDLE_TIMEOUT, call).await {
            Ok(Ok(Err(status))) => from_status(&status, &self.label),
            Ok(Ok(Ok(_))) => DriveError::Io(std::io::Error::other(format!(
                "{}: upload acknowledged before it finished",
                self.label
            ))),
            Ok(Err(e)) => DriveError::Io(std::io::Error::other(e)),
            Err(_) => DriveError::Offline,
        }
    }

    fn abort(&mut self) {
        self.tx = None;
        if let Some(call) = self.call.take() {
            call.abort();
        }
    }
}

impl Drop for RemoteShardWriter {
    fn drop(&mut self) {
        self.abort();
    }
}

#[async_trait]
impl ShardWriter for RemoteShardWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), DriveError> {
        let mut at = 0;
        while at < data.len() {
            let end = data.len().min(at + CHUNK_SIZE);
            self.send(pb::CreateFileRequest {
                data: data.slice(at..end),
                ..Default::default()
            })
            .await?;
            at = end;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), DriveError> {
        self.send(pb::CreateFileRequest {
            finish: true,
            ..Default::default()
        })
        .await?;
        self.tx = None;
        let Some(call) = self.call.take() else {
            return Err(DriveError::Offline);
        };
        let abort = call.abort_handle();
        match tokio::time::timeout(FINISH_TIMEOUT, call).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(status))) => Err(from_status(&status, &self.label)),
            Ok(Err(e)) => Err(DriveError::Io(std::io::Error::other(e))),
            Err(_) => {
                abort.abort();
                tracing::debug!(drive = %self.label, "fsync reply timed out");
                Err(DriveError::Offline)
            }
        }
    }
}

#[async_trait]
impl Drive for RemoteDrive {
    fn label(&self) -> &str {
        &self.label
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DriveError> {
        let mut c = self.client()?;
        let req = self.request(
            pb::GetRequest {
                drive: self.index,
                key: Bytes::copy_from_slice(key),
            },
            Some(CALL_TIMEOUT),
        );
        let reply = self.unary("get", c.get(req)).await?;
        // The reply left the peer a little before it arrived: the offset errs on the early side,
        // which only makes a deadline stricter.
        self.peer_offset_ns.store(
            reply.now_ns.saturating_sub(self.clock.now_ns()),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(reply.value.map(Vec::from))
    }

    async fn apply(&self, ops: Vec<MetaOp>) -> Result<(), DriveError> {
        let ops = ops
            .into_iter()
            .map(|op| pb::MetaOp {
                op: Some(match op {
                    MetaOp::Put(k, v) => pb::meta_op::Op::Put(pb::KeyValue {
                        key: k.into(),
                        value: v.into(),
                    }),
                    MetaOp::Delete(k) => pb::meta_op::Op::Delete(k.into()),
                    MetaOp::Expect(k, v) => pb::meta_op::Op::Expect(pb::Expect {
                        key: k.into(),
                        present: v.is_some(),
                        value: v.unwrap_or_default().into(),
                    }),
                    MetaOp::NotAfter(t) => pb::meta_op::Op::NotAfterNs(
                        t.saturating_add(
                            self.peer_offset_ns
                                .load(std::sync::atomic::Ordering::Relaxed),
                        ),
                    ),
                }),
            })
            .collect();
        let mut c = self.client()?;
        let req = self.request(
            pb::ApplyRequest {
                drive: self.index,
                ops,
            },
            Some(CALL_TIMEOUT),
        );
        self.unary("apply", c.apply(req)).await.map(|_| ())
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DriveError> {
        let mut c = self.client()?;
        let req = self.request(
            pb::ScanRequest {
                drive: self.index,
                prefix: Bytes::copy_from_slice(prefix),
                after: Bytes::copy_from_slice(after),
                limit: u64::try_from(limit).unwrap_or(u64::MAX),
            },
            None,
        );
        let mut stream = self.unary("scan", c.scan(req)).await?;
        let mut out = Vec::new();
        while let Some(batch) = next(&mut stream, &self.label).await? {
            out.extend(
                batch
                    .entries
                    .into_iter()
                    .map(|kv| (Vec::from(kv.key), Vec::from(kv.value))),
            );
        }
        Ok(out)
    }

    async fn create_file(&self, path: &str) -> Result<Box<dyn ShardWriter>, DriveError> {
        check_path(path)?;
        let mut c = self.client()?;
        let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
        let header = pb::CreateFileRequest {
            drive: self.index,
            path: path.to_string(),
            ..Default::default()
        };
        tx.send(header).await.map_err(|_| DriveError::Offline)?;
        let req = self.request(ReceiverStream::new(rx), None);
        let span = self.span("create_file");
        let call = tokio::spawn(async move { c.create_file(req).await }.instrument(span));
        Ok(Box::new(RemoteShardWriter {
            tx: Some(tx),
            call: Some(call),
            label: self.label.clone(),
        }))
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> Result<Bytes, DriveError> {
        let mut c = self.client()?;
        let req = self.request(
            pb::ReadFileRequest {
                drive: self.index,
                path: path.to_string(),
                offset,
                len: len as u64,
            },
            None,
        );
        let mut stream = self.unary("read_file", c.read_file(req)).await?;
        // A range that fits one chunk is handed on as received, without a copy.
        let mut whole: Option<Bytes> = None;
        let mut parts: Option<BytesMut> = None;
        let mut got = 0usize;
        while let Some(chunk) = next(&mut stream, &self.label).await? {
            let data = chunk.data;
            if data.len() > len - got {
                return Err(DriveError::Io(std::io::Error::other(format!(
                    "{}: peer sent more than the {len} bytes asked for",
                    self.label
                ))));
            }
            got += data.len();
            if data.len() == len {
                whole = Some(data);
            } else {
                parts
                    .get_or_insert_with(|| BytesMut::with_capacity(len))
                    .extend_from_slice(&data);
            }
        }
        if got < len {
            return Err(DriveError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: short read from peer ({got} of {len} bytes)",
                    self.label
                ),
            )));
        }
        Ok(whole
            .or_else(|| parts.map(BytesMut::freeze))
            .unwrap_or_default())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DriveError> {
        let mut c = self.client()?;
        let req = self.request(
            pb::RenameRequest {
                drive: self.index,
                from: from.to_string(),
                to: to.to_string(),
            },
            Some(CALL_TIMEOUT),
        );
        self.unary("rename", c.rename(req)).await.map(|_| ())
    }

    async fn delete(&self, path: &str) -> Result<(), DriveError> {
        let mut c = self.client()?;
        let req = self.request(
            pb::DeleteRequest {
                drive: self.index,
                path: path.to_string(),
            },
            Some(CALL_TIMEOUT),
        );
        self.unary("delete", c.delete(req)).await.map(|_| ())
    }

    async fn health(&self) -> Result<(), DriveError> {
        let mut c = self.any_client()?;
        let req = self.request(
            pb::HealthRequest { drive: self.index },
            Some(HEALTH_TIMEOUT),
        );
        self.call("health", HEALTH_TIMEOUT, c.health(req))
            .await
            .map(|_| ())
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>, DriveError> {
        let mut c = self.client()?;
        let req = self.request(
            pb::ListDirRequest {
                drive: self.index,
                path: path.to_string(),
            },
            Some(CALL_TIMEOUT),
        );
        Ok(self.unary("list_dir", c.list_dir(req)).await?.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::service::to_status;

    #[test]
    fn a_peer_that_stops_answering_is_paused_until_a_probe_gets_an_answer() {
        let b = Breaker::default();
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admit::Go, "calls go while the peer answers");
        assert!(b.unanswered(t0), "a new pause");
        assert!(!b.unanswered(t0), "already paused");
        assert_eq!(b.admit(t0), Admit::Refuse);
        // One probe per interval, and none while one is on its way.
        assert_eq!(b.admit(t0 + PROBE_INTERVAL), Admit::Probe);
        assert_eq!(b.admit(t0 + PROBE_INTERVAL * 5), Admit::Refuse);
        assert!(!b.unanswered(t0 + PROBE_INTERVAL * 2), "the probe failed");
        assert_eq!(b.admit(t0 + PROBE_INTERVAL * 2), Admit::Probe);
        b.record::<()>(&Err(DriveError::Offline), SLOW_FAILURE, "d");
        assert_eq!(b.admit(t0 + PROBE_INTERVAL * 2), Admit::Refuse);
        // Any answer ends the pause, even a drive's error.
        b.record::<()>(&Err(DriveError::NotFound), Duration::ZERO, "d");
        assert_eq!(b.admit(t0), Admit::Go);
        assert_eq!(b.admit(t0), Admit::Go);
        // A refused connection (a quick failure) keeps nobody waiting: no pause.
        b.record::<()>(&Err(DriveError::Offline), Duration::from_millis(2), "d");
        assert_eq!(b.admit(t0), Admit::Go);
        b.record::<()>(&Err(DriveError::Offline), SLOW_FAILURE, "d");
        assert_eq!(b.admit(t0), Admit::Refuse);
    }

    fn roundtrip(e: DriveError) -> DriveError {
        from_status(&to_status(e), "peer")
    }

    #[test]
    fn drive_errors_survive_the_wire() {
        assert!(matches!(
            roundtrip(DriveError::NotFound),
            DriveError::NotFound
        ));
        assert!(matches!(
            roundtrip(DriveError::InvalidPath("../x".into())),
            DriveError::InvalidPath(p) if p == "../x"
        ));
        assert!(matches!(
            roundtrip(DriveError::Meta("corrupt".into())),
            DriveError::Meta(m) if m == "corrupt"
        ));
        assert!(matches!(
            roundtrip(DriveError::Io(std::io::Error::other("disk on fire"))),
            DriveError::Io(e) if e.to_string() == "disk on fire"
        ));
        assert!(matches!(
            roundtrip(DriveError::Offline),
            DriveError::Offline
        ));
    }

    #[test]
    fn transport_failures_are_offline() {
        for s in [
            Status::unavailable("tcp connect error"),
            Status::deadline_exceeded("late"),
            Status::cancelled("gone"),
            Status::unknown("transport error"),
            Status::internal("h2 protocol error"),
        ] {
            assert!(
                matches!(from_status(&s, "peer"), DriveError::Offline),
                "{s:?}"
            );
        }
        assert!(matches!(
            from_status(&Status::unauthenticated("no"), "peer"),
            DriveError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied
        ));
        assert!(matches!(
            from_status(&Status::invalid_argument("empty upload"), "peer"),
            DriveError::Io(_)
        ));
    }

    #[test]
    fn bad_paths_fail_before_any_call() {
        for p in ["", "../x", "/etc/passwd", "a/../../b", "./a"] {
            assert!(
                matches!(check_path(p), Err(DriveError::InvalidPath(q)) if q == p),
                "{p}"
            );
        }
        assert!(check_path("tmp/x/part.1").is_ok());
    }
}
