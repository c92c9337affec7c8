//! Asks the peer sites for a version this site does not hold yet (`s3::proxy` decides what may
//! be proxied and turns the answer into the client's). Each peer is asked in turn as the pair's
//! replication identity, the read marked with [`PROXIED_HEADER`] so the peer answers from what it
//! holds and asks nobody else; the first answer that settles the read wins. The whole search has
//! one deadline, so a slow or dead peer costs a client at most [`DEADLINE`] before the local 404.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;

use super::outbox::target;
use crate::link::{empty, PeerRequest, PROXIED_HEADER};
use crate::node::Node;
use crate::s3::proxy::{settles, ProxiedRead, ReadProxy};

/// Longest a read waits for the peers' answer headers (the body then streams on its own idle
/// timeout).
pub const DEADLINE: Duration = Duration::from_secs(5);

pub struct Proxy {
    node: Arc<Node>,
    region: String,
}

impl Proxy {
    pub fn new(node: Arc<Node>, region: String) -> Arc<Self> {
        Arc::new(Self { node, region })
    }
}

#[async_trait::async_trait]
impl ReadProxy for Proxy {
    async fn read(&self, req: &ProxiedRead) -> Option<(String, hyper::Response<Incoming>)> {
        let auth = self.node.iam.as_ref()?;
        let state = self.node.catalog.state();
        let mut headers: Vec<(&str, String)> =
            req.headers.iter().map(|(k, v)| (*k, v.clone())).collect();
        headers.push((PROXIED_HEADER, state.sites.local.clone()));
        let query: Vec<(&str, String)> = req
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let search = async {
            for (name, peer) in &state.sites.peers {
                let Some(t) = target(auth, name, peer, &self.region) else {
                    continue;
                };
                let r = self
                    .node
                    .link
                    .forward(
                        &t,
                        PeerRequest {
                            method: req.method,
                            path: &req.path,
                            query: &query,
                            headers: &headers,
                            body: empty(),
                        },
                    )
                    .await;
                match r {
                    Ok(resp) if settles(resp.status(), resp.headers()) => {
                        return Some((name.clone(), resp))
                    }
                    Ok(resp) => {
                        tracing::debug!(peer = %name, status = resp.status().as_u16(), "proxied read: the peer does not hold the version either");
                    }
                    Err(e) => {
                        tracing::debug!(peer = %name, error = %e, "proxied read: peer not reached");
                    }
                }
            }
            None
        };
        match tokio::time::timeout(DEADLINE, search).await {
            Ok(found) => found,
            Err(_) => {
                tracing::warn!(path = %req.path, "proxied read: no peer answered within {DEADLINE:?}; answering from this site");
                None
            }
        }
    }
}
