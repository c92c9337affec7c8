//! A site of several `cairn` processes on 127.0.0.1, each with its own drives, all started with
//! the same endpoint list (`http://127.0.0.1:PORT/<node dir>/dN`).

use std::time::Duration;

use futures::future::join_all;

use crate::{poll_until, Server, ServerOptions, SiteSpec};

/// Distance between a node's S3 port and its internode port (`cairn server` default).
pub const INTERNODE_OFFSET: u16 = 10000;

/// A port `p` with `p` and `p + INTERNODE_OFFSET` both free a moment ago.
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let p = l.local_addr().unwrap().port();
        let Some(q) = p.checked_add(INTERNODE_OFFSET) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", q)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair found");
}

pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// Starts `nodes` processes with `drives` drives each and waits until all are ready (the
    /// site's control plane has a leader).
    pub async fn start(nodes: usize, drives: usize, parity: Option<usize>) -> Cluster {
        Self::start_with(nodes, drives, parity, |_| None).await
    }

    /// Like `start`, with `certs(i)` giving node `i` a certificates directory (HTTPS on the S3
    /// port, mutual TLS between the nodes, `https://` endpoints).
    pub async fn start_with(
        nodes: usize,
        drives: usize,
        parity: Option<usize>,
        certs: impl Fn(usize) -> Option<std::path::PathBuf>,
    ) -> Cluster {
        Self::start_opts(nodes, |i| {
            let mut o = ServerOptions::new(drives);
            o.parity = parity;
            o.certs_dir = certs(i);
            o
        })
        .await
    }

    /// Starts `nodes` processes, node `i` with `options(i)`, as one site.
    pub async fn start_opts(nodes: usize, options: impl Fn(usize) -> ServerOptions) -> Cluster {
        let mut servers: Vec<Server> = (0..nodes).map(|i| Server::prepare(options(i))).collect();
        let ports: Vec<u16> = (0..nodes).map(|_| free_port_pair()).collect();
        let mut endpoints = Vec::new();
        for (s, p) in servers.iter().zip(&ports) {
            let scheme = if s.tls() { "https" } else { "http" };
            for d in s.drives() {
                endpoints.push(format!("{scheme}://127.0.0.1:{p}{}", d.display()));
            }
        }
        for (s, p) in servers.iter_mut().zip(&ports) {
            s.set_site(SiteSpec {
                port: *p,
                endpoints: endpoints.clone(),
            });
        }
        join_all(servers.iter_mut().map(|s| s.boot())).await;
        Cluster { nodes: servers }
    }

    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Server {
        &mut self.nodes[i]
    }

    /// Starts a stopped node again on its port and drives.
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i].boot().await;
    }

    /// Index of the node whose admin info names it the control-plane leader.
    pub async fn leader(&self) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.pid().is_none() {
                continue;
            }
            if let Some(info) = n.admin_info().await {
                let cp = &info["control_plane"];
                if cp["leader"].is_u64() && cp["leader"] == cp["node_id"] {
                    return Some(i);
                }
            }
        }
        None
    }

    /// True once no running node reports a background heal in progress.
    pub async fn quiet(&self) -> bool {
        for n in &self.nodes {
            if n.pid().is_none() {
                continue;
            }
            match n.admin_info().await {
                Some(info) if info["healing"] == false => {}
                _ => return false,
            }
        }
        true
    }

    /// Waits (bounded) until `/cairn/health/<what>` of node `i` answers `status`.
    pub async fn wait_health(&self, i: usize, what: &str, status: u16, timeout: Duration) -> bool {
        let n = &self.nodes[i];
        poll_until(timeout, || async {
            n.health_opt(what).await == Some(status)
        })
        .await
    }
}
