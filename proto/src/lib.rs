//! Generated message types shared by Cairn's crates: on-disk metadata and node-to-node RPC.

/// Object version metadata as stored on every drive of an erasure set.
pub mod meta {
    tonic::include_proto!("cairn.meta.v1");
}

/// The control plane's Raft transport (vote, append entries, snapshots, forwarded writes).
pub mod raft {
    tonic::include_proto!("cairn.raft.v1");
}

/// The data service: a node's drives (metadata batches, shard files) served to its site.
pub mod drive {
    tonic::include_proto!("cairn.drive.v1");
}
