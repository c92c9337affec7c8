//! Generated message types shared by Cairn's crates: on-disk metadata now, node-to-node RPC later.

/// Object version metadata as stored on every drive of an erasure set.
pub mod meta {
    tonic::include_proto!("cairn.meta.v1");
}
