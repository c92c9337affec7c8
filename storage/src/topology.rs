//! The shape of a site, read from the endpoint list every node is started with (the MinIO way).
//!
//! Either every argument is a local path (one node: `cairn server /data{1...6}`), or every argument
//! is `http://HOST:PORT/PATH` (a site of several nodes:
//! `cairn server --address 127.0.0.1:9001 http://127.0.0.1:900{1...3}/d{1...2}`). The list fixes the
//! drive order (and so the erasure sets), the nodes (in order of first appearance; Raft node id =
//! position + 1) and the Raft voters (the first 3 nodes, the first 5 from 7 nodes on). A node serves
//! the drives whose `HOST:PORT` equals its `--address`; its internode gRPC listens on the same host at
//! the S3 port plus the internode offset (10000 by default: 9001 -> 19001), the same on every node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use thiserror::Error;

use crate::endpoints::{self, EllipsisError};

/// Default distance between a node's S3 port and its internode (gRPC) port.
pub const DEFAULT_INTERNODE_OFFSET: u16 = 10000;

#[derive(Debug, Error)]
pub enum TopologyError {
    #[error(transparent)]
    Ellipsis(#[from] EllipsisError),
    #[error("endpoint {0:?}: expected http://HOST:PORT/PATH")]
    BadUrl(String),
    #[error("endpoints mix local paths and URLs ({0:?}); use one form for all")]
    Mixed(String),
    #[error("endpoint {0} is given twice")]
    Duplicate(String),
    #[error("none of the endpoints is served by --address {0}: give --address HOST:PORT exactly as the endpoints spell this node")]
    NotInList(String),
    #[error("--address {0} matches several nodes of the endpoint list; give HOST:PORT")]
    Ambiguous(String),
    #[error("node {0}: S3 port + internode offset {1} is not a valid port")]
    InternodePort(String, u16),
}

/// One drive of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveEndpoint {
    /// Index into [`Topology::nodes`].
    pub node: usize,
    pub path: PathBuf,
}

/// One node of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    /// `HOST:PORT` of its S3 API, as the endpoint list spells it.
    pub s3: String,
    /// `HOST:PORT` of its internode gRPC (Raft and data service).
    pub internode: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub drives: Vec<DriveEndpoint>,
    pub nodes: Vec<NodeEndpoint>,
    /// Index of this node in `nodes`.
    pub local: usize,
    /// True when the endpoints were URLs (a site of one or more networked nodes).
    pub networked: bool,
}

fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let slash = rest.find('/')?;
    let (host_port, path) = rest.split_at(slash);
    let (host, port) = host_port.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() || path.len() < 2 {
        return None;
    }
    Some((host_port.to_string(), path.to_string()))
}

fn internode_of(s3: &str, offset: u16) -> Result<String, TopologyError> {
    let bad = || TopologyError::InternodePort(s3.to_string(), offset);
    let (host, port) = s3.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let p = port.checked_add(offset).ok_or_else(bad)?;
    Ok(format!("{host}:{p}"))
}

impl Topology {
    /// Expands `args` and places this node (`address`, as given to `--address`) in the site.
    pub fn parse(args: &[String], address: &str, offset: u16) -> Result<Self, TopologyError> {
        let expanded = endpoints::expand_all(args)?;
        let urls = expanded.iter().filter(|a| a.contains("://")).count();
        if urls == 0 {
            return Self::local_only(expanded, address, offset);
        }
        if urls != expanded.len() {
            let local = expanded.iter().find(|a| !a.contains("://"));
            return Err(TopologyError::Mixed(local.cloned().unwrap_or_default()));
        }
        let mut nodes: Vec<NodeEndpoint> = Vec::new();
        let mut drives = Vec::with_capacity(expanded.len());
        for url in &expanded {
            let (s3, path) = split_url(url).ok_or_else(|| TopologyError::BadUrl(url.clone()))?;
            let node = match nodes.iter().position(|n| n.s3 == s3) {
                Some(i) => i,
                None => {
                    let internode = internode_of(&s3, offset)?;
                    nodes.push(NodeEndpoint { s3, internode });
                    nodes.len() - 1
                }
            };
            let d = DriveEndpoint {
                node,
                path: PathBuf::from(path),
            };
            if drives.contains(&d) {
                return Err(TopologyError::Duplicate(url.clone()));
            }
            drives.push(d);
        }
        let local = Self::find_local(&nodes, address)?;
        Ok(Self {
            drives,
            nodes,
            local,
            networked: true,
        })
    }

    fn local_only(paths: Vec<String>, address: &str, offset: u16) -> Result<Self, TopologyError> {
        let s3 = address.to_string();
        let internode = internode_of(&s3, offset).unwrap_or_default();
        Ok(Self {
            drives: paths
                .into_iter()
                .map(|p| DriveEndpoint {
                    node: 0,
                    path: PathBuf::from(p),
                })
                .collect(),
            nodes: vec![NodeEndpoint { s3, internode }],
            local: 0,
            networked: false,
        })
    }

    /// `HOST:PORT` must match exactly; `:PORT` matches the one node with that port.
    fn find_local(nodes: &[NodeEndpoint], address: &str) -> Result<usize, TopologyError> {
        if let Some(i) = nodes.iter().position(|n| n.s3 == address) {
            return Ok(i);
        }
        let port = address
            .strip_prefix(':')
            .or_else(|| address.strip_prefix("0.0.0.0:"))
            .ok_or_else(|| TopologyError::NotInList(address.to_string()))?;
        let matching: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.s3.rsplit_once(':').map(|x| x.1) == Some(port))
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [i] => Ok(*i),
            [] => Err(TopologyError::NotInList(address.to_string())),
            _ => Err(TopologyError::Ambiguous(address.to_string())),
        }
    }

    /// Raft node id of node `i`.
    pub fn node_id(i: usize) -> u64 {
        i as u64 + 1
    }

    pub fn local_id(&self) -> u64 {
        Self::node_id(self.local)
    }

    /// Every node's Raft id and internode address.
    pub fn members(&self) -> BTreeMap<u64, String> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (Self::node_id(i), n.internode.clone()))
            .collect()
    }

    /// The first 3 nodes vote (5 from 7 nodes on, so two may fail); the rest learn.
    pub fn voters(&self) -> BTreeSet<u64> {
        let n = if self.nodes.len() >= 7 { 5 } else { 3 };
        (0..self.nodes.len().min(n)).map(Self::node_id).collect()
    }

    /// Positions (in the site's drive order) of the drives this node serves.
    pub fn local_drives(&self) -> impl Iterator<Item = (usize, &DriveEndpoint)> {
        self.drives
            .iter()
            .enumerate()
            .filter(move |(_, d)| d.node == self.local)
    }

    /// How a drive is named in logs and the admin API.
    pub fn label(&self, i: usize) -> String {
        let d = &self.drives[i];
        if self.networked {
            format!("http://{}{}", self.nodes[d.node].s3, d.path.display())
        } else {
            d.path.display().to_string()
        }
    }

    /// A deterministic deployment id for a networked site: every node derives the same one from
    /// the endpoint list, so no node has to go first.
    pub fn derived_deployment_id(&self) -> String {
        use highway::{HighwayHash, HighwayHasher, Key};
        let joined = (0..self.drives.len())
            .map(|i| self.label(i))
            .collect::<Vec<_>>()
            .join("\n");
        let mut h = HighwayHasher::new(Key([0x0063_6169_726e, 1, 2, 3]));
        h.append(joined.as_bytes());
        let [a, b] = h.finalize128();
        uuid::Uuid::from_u64_pair(a, b).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn local_paths_are_one_node() {
        let t = Topology::parse(&args("/d{1...4}"), ":9000", 10000).unwrap();
        assert!(!t.networked);
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.drives.len(), 4);
        assert_eq!(t.local_drives().count(), 4);
    }

    #[test]
    fn urls_give_nodes_in_order_and_place_this_node() {
        let t = Topology::parse(
            &args("http://127.0.0.1:900{1...3}/n/d{1...2}"),
            "127.0.0.1:9002",
            10000,
        )
        .unwrap();
        assert!(t.networked);
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.drives.len(), 6);
        assert_eq!(t.local, 1);
        assert_eq!(t.nodes[1].internode, "127.0.0.1:19002");
        let mine: Vec<usize> = t.local_drives().map(|(i, _)| i).collect();
        assert_eq!(mine, vec![2, 3]);
        assert_eq!(t.label(3), "http://127.0.0.1:9002/n/d2");
        assert_eq!(t.voters(), [1, 2, 3].into_iter().collect());
        assert_eq!(t.members()[&3], "127.0.0.1:19003");
    }

    #[test]
    fn port_only_address_matches_a_unique_node() {
        let a = args("http://127.0.0.1:9001/a http://127.0.0.1:9002/b");
        assert_eq!(Topology::parse(&a, ":9002", 10000).unwrap().local, 1);
        assert!(matches!(
            Topology::parse(&a, ":9003", 10000),
            Err(TopologyError::NotInList(_))
        ));
        let same_port = args("http://a:9000/d http://b:9000/d");
        assert!(matches!(
            Topology::parse(&same_port, ":9000", 10000),
            Err(TopologyError::Ambiguous(_))
        ));
        assert_eq!(
            Topology::parse(&same_port, "b:9000", 10000).unwrap().local,
            1
        );
    }

    #[test]
    fn bad_lists_are_named() {
        assert!(matches!(
            Topology::parse(&args("http://a:9000/d /local"), "a:9000", 10000),
            Err(TopologyError::Mixed(_))
        ));
        assert!(matches!(
            Topology::parse(&args("http://a/d"), "a:9000", 10000),
            Err(TopologyError::BadUrl(_))
        ));
        assert!(matches!(
            Topology::parse(&args("http://a:9000/d http://a:9000/d"), "a:9000", 10000),
            Err(TopologyError::Duplicate(_))
        ));
        assert!(matches!(
            Topology::parse(&args("http://a:60000/d"), "a:60000", 10000),
            Err(TopologyError::InternodePort(..))
        ));
    }

    #[test]
    fn seven_nodes_have_five_voters() {
        let t = Topology::parse(&args("http://n{1...7}:9000/d"), "n1:9000", 10000).unwrap();
        assert_eq!(t.voters().len(), 5);
    }

    #[test]
    fn deployment_id_is_derived_from_the_list() {
        let a = args("http://n{1...3}:9000/d{1...2}");
        let x = Topology::parse(&a, "n1:9000", 10000).unwrap();
        let y = Topology::parse(&a, "n3:9000", 10000).unwrap();
        assert_eq!(x.derived_deployment_id(), y.derived_deployment_id());
        let other =
            Topology::parse(&args("http://n{1...3}:9000/e{1...2}"), "n1:9000", 10000).unwrap();
        assert_ne!(x.derived_deployment_id(), other.derived_deployment_id());
        assert_eq!(x.derived_deployment_id().len(), 36);
    }
}
