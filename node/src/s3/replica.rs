//! What a write is for site replication: a replica a peer site's replicator sends (its headers
//! fix the version id, time and ETag), or a local write to replicate while the site has peers.
//!
//! Replica headers name the version a write replaces, so only a paired peer's replication
//! identity may send them: not root (a site without peers takes none at all), and that identity
//! sends nothing but replicas. What a replica may then do to an existing version (never change
//! its bytes, never remove a locked one) is the object layer's (`object::replica`).

use s3s::{s3_error, S3Request, S3Result};

use super::error::object_error;
use super::CairnS3;
use crate::object::replica::{
    ReplicaOf, Replication, ETAG_HEADER, MTIME_HEADER, VERSION_ID_HEADER,
};
use crate::object::versions::check_version_id;

/// Longest ETag a replica may carry (an MD5 in hex plus `-` and a part count).
const MAX_ETAG: usize = 48;

/// A write made here: to replicate while the site has peers.
pub fn local(s3: &CairnS3) -> Replication {
    if s3.catalog.state().sites.enabled() {
        Replication::Pending
    } else {
        Replication::None
    }
}

/// Whether a change made here to an existing version (its tags, retention, legal hold) is marked
/// for the peers.
pub fn changes_replicate(s3: &CairnS3) -> bool {
    local(s3) == Replication::Pending
}

/// A PUT or DELETE: a replica when it carries the replica headers, else [`local`].
pub fn of_request<T>(s3: &CairnS3, req: &S3Request<T>) -> S3Result<Replication> {
    let h = &req.headers;
    let peer = req
        .credentials
        .as_ref()
        .and_then(|c| s3.credentials.site_peer(&c.access_key));
    match (h.contains_key(VERSION_ID_HEADER), peer) {
        (false, None) => return Ok(local(s3)),
        (true, Some(_)) => {}
        (false, Some(_)) => {
            return Err(s3_error!(
                AccessDenied,
                "a peer site's replication identity writes only replicas"
            ))
        }
        (true, None) => {
            return Err(s3_error!(
                AccessDenied,
                "only a paired site's replication identity may write replicas"
            ))
        }
    }
    let text = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let version_id = text(VERSION_ID_HEADER)
        .ok_or_else(|| s3_error!(InvalidArgument, "invalid {VERSION_ID_HEADER}"))?;
    check_version_id(&version_id).map_err(object_error)?;
    let mod_time_ns = text(MTIME_HEADER)
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "invalid or missing {MTIME_HEADER}"))?;
    let etag = match text(ETAG_HEADER) {
        Some(e)
            if e.len() <= MAX_ETAG
                && !e.is_empty()
                && e.chars().all(|c| c.is_ascii_hexdigit() || c == '-') =>
        {
            Some(e)
        }
        Some(_) => return Err(s3_error!(InvalidArgument, "invalid {ETAG_HEADER}")),
        None => None,
    };
    Ok(Replication::Replica(ReplicaOf {
        version_id,
        mod_time_ns,
        etag,
    }))
}
