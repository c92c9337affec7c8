//! The network as handed-in parts (DESIGN.md §9): servers take their connections from a
//! [`Listen`], clients open theirs through a [`Dial`]. Production hands in the operating system's
//! TCP; the simulator its own network, so it runs the same accept loops and clients.

use std::future::Future;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why the server stopped reading a request body (S3: `RequestTimeout`): its sender went
/// silent, or sends slower than the listener's minimum rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyStalled {
    #[error("no request body data for {0:?}")]
    Idle(std::time::Duration),
    #[error("the request body arrived slower than {0} bytes per second")]
    TooSlow(u64),
}

impl BodyStalled {
    /// The stall behind `e`, however deep the layers that read the body wrapped it.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyStalled> {
        std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref())
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Opens byte streams to `HOST:PORT` (TCP in production).
#[async_trait]
pub trait Dial: Send + Sync + 'static {
    async fn dial(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Stream>>;
}

/// The operating system's TCP.
#[derive(Debug, Default)]
pub struct TcpDial;

#[async_trait]
impl Dial for TcpDial {
    async fn dial(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Stream>> {
        let s = tokio::net::TcpStream::connect((host, port)).await?;
        let _ = s.set_nodelay(true);
        Ok(Box::new(s))
    }
}

/// Where a server takes its connections from.
pub trait Listen: Send + 'static {
    type Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// The next connection and its peer's address.
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Self::Conn, SocketAddr)>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Conn, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}
