//! `GET /cairn/admin/v1/trace`: a live stream of JSON lines, one per finished request
//! ([`TraceRecord`]), from this node and, fanned in, from every other node of the site (unless
//! `local=true`, which is how the fan-in asks each of them). The other nodes are called over
//! their S3 port like any admin client, signed with the site's root credentials; the caller was
//! authorized here (`admin:ServerTrace`). Each node sends a `tracing` line once its records
//! flow, and the answer's [`NODES_HEADER`] says how many to expect, so a reader that counts
//! (`cairn admin top`) knows when every node is in. A newline goes out every few seconds while nothing
//! happens, so neither the listener's idle timeout nor a proxy closes a quiet trace; the stream
//! ends when its reader goes away.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{broadcast, mpsc};

use crate::node::Node;
use crate::observe::trace::{dropped_line, tracing_line, TraceFilter};

/// A quiet stream sends a newline this often.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A peer's stream silent this long (three heartbeats) is called again.
const PEER_SILENCE: Duration = Duration::from_secs(15);
/// The pause before calling a peer again after its stream failed.
const PEER_RETRY: Duration = Duration::from_secs(1);
/// Lines queued towards the reader; the forwarders wait when it is full (a slow reader makes
/// this node's broadcast drop for it, never a request wait).
const QUEUE: usize = 256;
/// A longer line from a peer is no trace record: dropped.
const MAX_LINE: usize = 1 << 20;

/// The answer's header naming how many nodes' records the stream carries: each of them sends
/// a `tracing` line once its records flow (`cairn admin top` waits for all of them).
pub const NODES_HEADER: &str = "x-cairn-trace-nodes";

/// The trace call's path.
const PATH: &str = "/cairn/admin/v1/trace";

/// A trace call asking for what `query` names (a [`TraceFilter`]'s, `local=true`).
pub fn request<'a>(query: &'a [(&'a str, String)]) -> crate::link::PeerRequest<'a> {
    crate::link::PeerRequest {
        method: "GET",
        path: PATH,
        query,
        headers: &[],
        body: crate::link::empty(),
    }
}

/// Moves the complete lines of `partial` (newline included) out of it; a line grown past
/// [`MAX_LINE`] without its end is thrown away.
pub fn complete_lines(partial: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    while let Some(end) = partial.iter().position(|b| *b == b'\n') {
        lines.push(partial.drain(..=end).collect());
    }
    if partial.len() > MAX_LINE {
        partial.clear();
    }
    lines
}

/// The stream a trace call answers with.
pub fn handle(node: &Arc<Node>, req: &s3s::S3Request<s3s::Body>) -> s3s::S3Response<s3s::Body> {
    let query = crate::auth::authorize::condition_keys::query_pairs(&req.uri);
    let filter = TraceFilter::from_query(&query);
    let local_only = query.iter().any(|(k, v)| k == "local" && v == "true");
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let here = node.topology.nodes[node.topology.local].s3.clone();
    let mut traced = 0usize;
    if filter.wants_node(&here) {
        let records = node.trace.subscribe();
        // The channel is new and empty: the line goes in, and the reader knows from it that
        // this node's requests reach the stream from now on.
        let _ = tx.try_send(Bytes::from(tracing_line(&here)));
        traced += 1;
        tokio::spawn(forward_local(
            node.clone(),
            records,
            here,
            filter.clone(),
            tx.clone(),
        ));
    }
    if !local_only {
        for (host, target) in super::peer_nodes(node, super::secure(req)) {
            if filter.wants_node(&host) {
                traced += 1;
                tokio::spawn(forward_peer(
                    target,
                    node.clone(),
                    filter.clone(),
                    tx.clone(),
                ));
            }
        }
    }
    tokio::spawn(heartbeat(tx));
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(line)),
            rx,
        ))
    });
    let mut r = s3s::S3Response::new(s3s::Body::http_body_unsync(
        http_body_util::StreamBody::new(lines),
    ));
    r.headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    r.headers.insert(NODES_HEADER, traced.into());
    r
}

/// This node's records that pass `filter`, until the reader goes away.
async fn forward_local(
    node: Arc<Node>,
    mut records: broadcast::Receiver<Arc<crate::observe::trace::TraceRecord>>,
    here: String,
    filter: TraceFilter,
    tx: mpsc::Sender<Bytes>,
) {
    loop {
        let line = tokio::select! {
            r = records.recv() => match r {
                Ok(r) if filter.matches(&r) => filter.line(&r),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    node.trace.lost(n);
                    dropped_line(&here, n)
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tx.closed() => return,
        };
        if tx.send(Bytes::from(line)).await.is_err() {
            return;
        }
    }
}

/// A newline every [`HEARTBEAT`], until the reader goes away.
async fn heartbeat(tx: mpsc::Sender<Bytes>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = tx.closed() => return,
        }
        if tx.send(Bytes::from_static(b"\n")).await.is_err() {
            return;
        }
    }
}

/// The records of the node `target` (its own only), called again whenever its stream fails,
/// until the reader goes away.
async fn forward_peer(
    target: crate::link::PeerTarget,
    node: Arc<Node>,
    filter: TraceFilter,
    tx: mpsc::Sender<Bytes>,
) {
    let url = &target.name;
    let mut query = filter.to_query();
    query.push(("local", "true".into()));
    loop {
        let outcome = tokio::select! {
            r = node.nodes_link.send(&target, request(&query)) => r,
            _ = tx.closed() => return,
        };
        match outcome {
            Ok(resp) => {
                if relay(resp.into_body(), &tx).await.is_err() {
                    return;
                }
                tracing::debug!(peer = %url, "trace stream of a node ended; calling it again");
            }
            Err(e) => {
                tracing::debug!(peer = %url, error = %e, "trace stream of a node failed; calling it again")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PEER_RETRY) => {}
            _ = tx.closed() => return,
        }
    }
}

/// The reader went away.
struct Gone;

/// Hands on the complete, non-empty lines of a peer's stream until it ends, fails or falls
/// silent.
async fn relay(mut body: hyper::body::Incoming, tx: &mpsc::Sender<Bytes>) -> Result<(), Gone> {
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(PEER_SILENCE, body.frame()) => f,
            _ = tx.closed() => return Err(Gone),
        };
        let data = match frame {
            Ok(Some(Ok(f))) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            _ => return Ok(()),
        };
        partial.extend_from_slice(&data);
        for line in complete_lines(&mut partial) {
            if line.len() > 1 && tx.send(Bytes::from(line)).await.is_err() {
                return Err(Gone);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_frames_come_out_whole() {
        let mut partial = b"{\"a\":1}\n{\"b\"".to_vec();
        assert_eq!(complete_lines(&mut partial), vec![b"{\"a\":1}\n".to_vec()]);
        partial.extend_from_slice(b":2}\n\n");
        assert_eq!(
            complete_lines(&mut partial),
            vec![b"{\"b\":2}\n".to_vec(), b"\n".to_vec()]
        );
        assert!(partial.is_empty());
        partial.resize(MAX_LINE + 1, b'x');
        assert!(complete_lines(&mut partial).is_empty() && partial.is_empty());
    }
}
