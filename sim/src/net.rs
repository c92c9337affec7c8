//! Glue between turmoil's simulated TCP and the transports Cairn's servers and clients expect.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cairn_control_plane::transport::{Connect, TransportError};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::Endpoint;

/// A turmoil TCP stream tonic can serve: tonic wants `Connected` on the IO it is handed.
pub struct SimStream(pub turmoil::net::TcpStream);

impl tonic::transport::server::Connected for SimStream {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepted connections of a turmoil listener as the stream `serve_with_incoming` consumes.
pub fn incoming(
    listener: turmoil::net::TcpListener,
) -> impl futures::Stream<Item = io::Result<SimStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| SimStream(s));
        Some((r, l))
    })
}

/// A turmoil listener as the S3 listener takes its connections, so the simulator runs the
/// production accept loop (`cairn_node::server::listener::serve`).
pub struct SimListener(pub turmoil::net::TcpListener);

impl cairn_node::net::Listen for SimListener {
    type Conn = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Conn, std::net::SocketAddr)> {
        self.0.accept().await
    }
}

/// Internode channels that dial over the simulated network.
pub fn connect() -> Connect {
    Arc::new(|addr: &str| {
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| TransportError::Address(addr.to_owned()))?
            // The same settings as `Transport::tcp`: dead peers are detected, not waited on.
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let target = addr.to_owned();
        Ok(
            ep.connect_with_connector_lazy(tower::service_fn(move |_uri| {
                let target = target.clone();
                async move {
                    let s = turmoil::net::TcpStream::connect(target).await?;
                    Ok::<_, io::Error>(TokioIo::new(s))
                }
            })),
        )
    })
}

/// The host that stands in for a peer site under the planted replication bug.
pub const LYING_PEER: &str = "lying-peer";

/// Peer-site requests over turmoil's TCP. With `lying_peer` (a planted bug), every other
/// connection reaches [`LYING_PEER`] instead of the peer: replica writes are acknowledged and
/// never stored, which the two-site checker must notice.
pub struct SimDial {
    lying_peer: bool,
    dials: AtomicU64,
}

impl SimDial {
    pub fn new(lying_peer: bool) -> Self {
        Self {
            lying_peer,
            dials: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl cairn_node::net::Dial for SimDial {
    async fn dial(&self, host: &str, port: u16) -> io::Result<Box<dyn cairn_node::net::Stream>> {
        let lie = self.lying_peer && self.dials.fetch_add(1, Ordering::Relaxed) % 2 == 1;
        let host = if lie { LYING_PEER } else { host };
        let s = turmoil::net::TcpStream::connect((host, port)).await?;
        Ok(Box::new(s))
    }
}

/// The body of [`LYING_PEER`]: reads each request whole and answers `200 OK` with nothing in it.
pub async fn run_lying_peer(port: u16) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
