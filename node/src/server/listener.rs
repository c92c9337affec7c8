//! The S3 listener: accepts connections within the connection caps, serves HTTP/1 and HTTP/2
//! on them, and drops clients that go silent, so a few slow or idle clients cannot hold every
//! socket, connection or request slot.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};

use super::health::Router;
use crate::auth::{ClientCertificate, ConnInfo};
use crate::net::{BodyStalled, Listen};

/// TLS handshakes that take longer are dropped, so a silent client cannot pin a connection.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// After an accept error other than a refused or aborted connection (out of file descriptors,
/// out of memory) the loop pauses, instead of spinning on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// An HTTP/2 peer that does not answer a keep-alive ping within this time is dropped.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 128;

/// Caps and timeouts of the S3 listener (`cairn server` flags).
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// Connections open at once; 0: no cap.
    pub max_connections: usize,
    /// Connections open at once from one client (an IPv6 client: its /64); 0: no cap.
    pub max_connections_per_address: usize,
    /// A request head not complete, a request body with no new data, or a connection with no
    /// request in flight and no traffic for this long is dropped.
    pub idle_timeout: Duration,
    /// A request body must arrive at this many bytes per second over the time spent waiting
    /// for it, once that is longer than `idle_timeout`; 0: no minimum.
    pub min_body_rate: u64,
}

/// Serves S3 on `listener` until `shutdown` resolves, then waits (a bounded time) for the
/// requests in flight.
pub async fn serve<L: Listen>(
    mut listener: L,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    // Pings find a dead peer while a request is being handled; an idle connection is closed
    // (`silent_for`) before the first ping would go out.
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout * 2)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(H2_MAX_STREAMS);
    let connections = Connections::new(limits);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        if !is_per_connection_error(&e) {
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        }
                        continue;
                    }
                };
                let Some(guard) = connections.admit(peer.ip()) else {
                    tracing::debug!(%peer, "connection over the connection caps: closed");
                    drop(stream);
                    continue;
                };
                let info = ConnInfo { peer, secure: acceptor.is_some() };
                let (acceptor, http, router, stopping) =
                    (acceptor.clone(), http.clone(), router.clone(), stopping.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    match acceptor {
                        None => serve_connection(&http, stream, info, None, router, limits, stopping).await,
                        Some(acceptor) => {
                            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            // Verified by the acceptor against CAs/ when it asks for one.
                            let cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| ClientCertificate::from_der(c))
                                .map(Arc::new);
                            serve_connection(&http, stream, info, cert, router, limits, stopping).await;
                        }
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    let _ = stop.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.drained())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway");
    }
}

/// Errors of one incoming connection (the next accept may well succeed at once).
fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

/// Serves one connection until the client closes it, goes silent with nothing in flight, or
/// the server shuts down.
async fn serve_connection<S>(
    http: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    stream: S,
    info: ConnInfo,
    cert: Option<Arc<ClientCertificate>>,
    router: Router,
    limits: ListenerLimits,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let metrics = router.metrics.clone();
    let (idle, min_rate) = (limits.idle_timeout, limits.min_body_rate);
    let svc = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = router.clone();
            let busy = activity.begin();
            let mut req = req.map(|body| IdleBody::new(body, idle, min_rate));
            req.extensions_mut().insert(info);
            if let Some(cert) = &cert {
                req.extensions_mut().insert(cert.clone());
            }
            async move {
                let _busy = busy;
                router.handle(req).await
            }
        })
    };
    let io = TokioIo::new(ActivityIo {
        inner: stream,
        activity: activity.clone(),
        metrics,
    });
    let conn = http.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let why = tokio::select! {
        r = conn.as_mut() => {
            log_end(info.peer, r);
            return;
        }
        _ = activity.silent_for(idle, true) => "idle",
        _ = stopping.wait_for(|s| *s) => "shutdown",
    };
    // Finish what is in flight, then close; a client that stays silent meanwhile is dropped.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        r = conn.as_mut() => log_end(info.peer, r),
        _ = activity.silent_for(idle, false) => {
            tracing::debug!(peer = %info.peer, why, "dropping a connection silent after close was asked");
        }
    }
}

fn log_end(peer: SocketAddr, r: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Open connections, in all and per client, against [`ListenerLimits`].
struct Connections {
    limits: ListenerLimits,
    open: Mutex<Open>,
    closed: Notify,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// A place among the open connections, given back on drop.
struct ConnectionGuard {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Connections {
    fn new(limits: ListenerLimits) -> Arc<Self> {
        Arc::new(Connections {
            limits,
            open: Mutex::new(Open::default()),
            closed: Notify::new(),
        })
    }

    /// A place for a new connection from `ip`, or `None` when a cap is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let client = client_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let l = &self.limits;
        if l.max_connections > 0 && open.total >= l.max_connections {
            return None;
        }
        let mine = open.per_client.entry(client).or_insert(0);
        if l.max_connections_per_address > 0 && *mine >= l.max_connections_per_address {
            return None;
        }
        *mine += 1;
        open.total += 1;
        Some(ConnectionGuard {
            connections: self.clone(),
            client,
        })
    }

    /// Resolves once no connection is open.
    async fn drained(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.lock().unwrap_or_else(|e| e.into_inner()).total == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
        if open.total == 0 {
            self.connections.closed.notify_waiters();
        }
    }
}

/// The client a connection counts against: its IPv4 address, or the /64 of an IPv6 address
/// (one host commonly holds a whole /64).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// When a connection last moved bytes, and how many of its requests are being handled.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

/// A request being handled; counted in [`Activity::in_flight`] until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Busy(self.clone())
    }

    /// Resolves once no byte has moved for `quiet` (and, with `unless_busy`, no request is
    /// being handled: a handler may compute for a while before it writes).
    async fn silent_for(&self, quiet: Duration, unless_busy: bool) {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep_until(self.start + Duration::from_millis(last) + quiet).await;
            let now = self.last.load(Ordering::Relaxed);
            if now != last {
                last = now;
            } else if unless_busy && self.in_flight.load(Ordering::SeqCst) > 0 {
                last = self.now_ms();
            } else {
                return;
            }
        }
    }
}

/// A socket that records in [`Activity`] every time bytes move, and counts them in the metrics.
struct ActivityIo<S> {
    inner: S,
    activity: Arc<Activity>,
    metrics: Arc<super::metrics::Metrics>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
            self.metrics.received(buf.filled().len() - before);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n @ 1..)) = r {
            self.activity.touch();
            self.metrics.sent(n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n @ 1..)) = r {
            self.activity.touch();
            self.metrics.sent(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails with [`BodyStalled`] when its reader waits longer than the idle
/// timeout for the next frame, or (after waiting that long in all) when the bytes arrive slower
/// than the minimum rate over the time the reader spent waiting for them. So a client that stops
/// sending, or drips a byte now and then, cannot hold a request (and its slot) for ever; time
/// the server itself takes to read is not counted against the client.
pub struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    /// Bytes per second; 0: no minimum.
    min_rate: u64,
    timer: Pin<Box<Sleep>>,
    /// Since when the reader waits for data (the timer runs), if it does.
    waiting_since: Option<Instant>,
    /// Time spent waiting before `waiting_since`.
    waited: Duration,
    received: u64,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration, min_rate: u64) -> Self {
        IdleBody {
            inner,
            timeout,
            min_rate,
            timer: Box::pin(tokio::time::sleep(timeout)),
            waiting_since: None,
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// The waiting the bytes received so far allow in all: the idle timeout at least, more as
    /// they come at the minimum rate.
    fn allowed_wait(&self) -> Duration {
        match self.received.checked_div(self.min_rate) {
            None => Duration::MAX,
            Some(secs) => self.timeout.max(Duration::from_secs(secs)),
        }
    }
}

impl<B> hyper::body::Body for IdleBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    this.received += data.map_or(0, |d| d.len() as u64);
                }
                if this.waited > this.allowed_wait() {
                    return Poll::Ready(Some(Err(Box::new(BodyStalled::TooSlow(this.min_rate)))));
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let since = match this.waiting_since {
                    Some(since) => since,
                    None => {
                        let now = Instant::now();
                        let left = this.allowed_wait().saturating_sub(this.waited);
                        this.timer.as_mut().reset(now + this.timeout.min(left));
                        this.waiting_since = Some(now);
                        now
                    }
                };
                if this.timer.as_mut().poll(cx).is_ready() {
                    let stalled = if since.elapsed() >= this.timeout {
                        BodyStalled::Idle(this.timeout)
                    } else {
                        BodyStalled::TooSlow(this.min_rate)
                    };
                    return Poll::Ready(Some(Err(Box::new(stalled))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per: usize) -> ListenerLimits {
        ListenerLimits {
            max_connections: total,
            max_connections_per_address: per,
            idle_timeout: Duration::from_secs(30),
            min_body_rate: 0,
        }
    }

    #[test]
    fn caps_count_per_client_and_in_all() {
        let c = Connections::new(limits(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = c.admit(a).unwrap();
        let _a2 = c.admit(a).unwrap();
        assert!(c.admit(a).is_none(), "third from one address");
        let _b1 = c.admit(b).unwrap();
        assert!(c.admit(b).is_none(), "fourth in all");
        drop(a1);
        assert!(c.admit(a).is_some(), "a closed connection frees its place");
    }

    #[test]
    fn ipv6_clients_are_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_of(one), client_of(two));
        assert_ne!(client_of(one), client_of(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_of(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn zero_means_no_cap() {
        let c = Connections::new(limits(0, 0));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..1000).map(|_| c.admit(a).unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_idle_timeout() {
        use futures::SinkExt;
        use http_body_util::BodyExt;
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let idle = Duration::from_millis(200);
        let mut body = IdleBody::new(http_body_util::StreamBody::new(rx), idle, 0);
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"x"));
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.downcast_ref(), Some(&BodyStalled::Idle(idle)), "{err}");
        assert!(started.elapsed() >= idle, "{:?}", started.elapsed());
        drop(tx);
    }

    type Sender = futures::channel::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>;

    /// A body that gets `bytes` bytes every `every`, read by a reader that polls at once.
    fn dripping(
        bytes: usize,
        every: Duration,
        min_rate: u64,
    ) -> IdleBody<impl hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> + Unpin>
    {
        let (mut tx, rx) = futures::channel::mpsc::channel(1);
        tokio::spawn(async move {
            let tx: &mut Sender = &mut tx;
            loop {
                tokio::time::sleep(every).await;
                if futures::SinkExt::send(tx, Ok(Frame::data(Bytes::from(vec![0u8; bytes]))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        IdleBody::new(
            http_body_util::StreamBody::new(rx),
            Duration::from_secs(30),
            min_rate,
        )
    }

    /// Reads `body` until it fails: the error and the (virtual) time it took.
    async fn read_until_error<B: hyper::body::Body<Data = Bytes> + Unpin>(
        mut body: B,
    ) -> (B::Error, Duration)
    where
        B::Error: std::fmt::Debug,
    {
        use http_body_util::BodyExt;
        let started = Instant::now();
        loop {
            match body.frame().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return (e, started.elapsed()),
                None => panic!("the body ended"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dripping_body_fails_at_the_minimum_rate() {
        // One byte every 20 s never trips the 30 s idle timeout, but it is far below 1 KiB/s.
        let (err, took) = read_until_error(dripping(1, Duration::from_secs(20), 1024)).await;
        assert_eq!(
            err.downcast_ref(),
            Some(&BodyStalled::TooSlow(1024)),
            "{err}"
        );
        assert!(
            took >= Duration::from_secs(30) && took <= Duration::from_secs(41),
            "{took:?}"
        );
        // Without a minimum it goes on: stopped here after five minutes of dripping.
        let slow = dripping(1, Duration::from_secs(20), 0);
        let outcome = tokio::time::timeout(Duration::from_secs(300), read_until_error(slow)).await;
        assert!(outcome.is_err(), "no minimum rate: the body kept going");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_is_read_whole() {
        use http_body_util::BodyExt;
        // 2 KiB every second for ten minutes, twice the minimum: never refused.
        let mut body = dripping(2048, Duration::from_secs(1), 1024);
        for _ in 0..600 {
            body.frame().await.unwrap().unwrap();
        }
        // The server's own slowness is not the client's: no polls, no waiting counted.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        body.frame().await.unwrap().unwrap();
    }
}
