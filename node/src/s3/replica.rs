//! What a write is for site replication: a replica a peer site's replicator sends (its headers
//! fix the version id, time and ETag; only root may send them), or a local write to replicate
//! while the site has peers.

use s3s::{s3_error, S3Request, S3Result};

use super::CairnS3;
use crate::object::replica::{ReplicaOf, Replication};
use crate::object::versions::check_version_id;
use crate::site::objects::{ETAG_HEADER, MTIME_HEADER, VERSION_ID_HEADER};

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

/// A PUT or DELETE: a replica when it carries the replica headers, else [`local`].
pub fn of_request<T>(s3: &CairnS3, req: &S3Request<T>) -> S3Result<Replication> {
    let h = &req.headers;
    if !h.contains_key(VERSION_ID_HEADER) {
        return Ok(local(s3));
    }
    if !s3.signed_by_root(req) {
        return Err(s3_error!(
            AccessDenied,
            "only a peer site's replicator may write replicas"
        ));
    }
    let text = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let version_id = text(VERSION_ID_HEADER)
        .ok_or_else(|| s3_error!(InvalidArgument, "invalid {VERSION_ID_HEADER}"))?;
    check_version_id(&version_id)?;
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
