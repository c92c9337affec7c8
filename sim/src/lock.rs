//! The object-lock workload and its invariant: locked versions are never removed (DESIGN.md §9).
//!
//! The lock client owns a bucket created with object lock and writes every object with COMPLIANCE
//! retention until [`RETAIN_UNTIL`], decades after the simulated clock's epoch (2026). It records
//! each version a PUT acknowledged with an `x-amz-version-id`, then keeps trying to get rid of
//! them: DELETE by version id (must never be acknowledged), weakening the retention (must fail),
//! and plain DELETEs (allowed: they only stack delete markers on top). After the faults stop, the
//! checker reads every recorded version by id, its retention, and the bucket's version listing.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use md5::Digest as _;
use rand::Rng;
use rand_chacha::ChaCha20Rng;

use cairn_control_plane::Versioning;
use cairn_node::object::retention::Bypass;
use cairn_node::object::versions::DeleteRequest;

use crate::client::{listed_versions, truncated, Reply, S3};
use crate::cluster::{host_name, Site, NODES};
use crate::workload::{acked, digest, short, summary, Digest32, Model};
use crate::SharedTrace;

pub const LOCK_BUCKET: &str = "lockbucket";
const LOCK_KEYS: usize = 4;
/// Far beyond any simulated run (the sim clock starts at 2026-01-01 and runs minutes).
pub const RETAIN_UNTIL: &str = "2100-01-01T00:00:00.000Z";
/// Still in the future, but earlier than [`RETAIN_UNTIL`]: a shortening.
const EARLIER: &str = "2099-01-01T00:00:00.000Z";

/// A version a PUT with COMPLIANCE retention acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub key: String,
    pub version_id: String,
    pub digest: Digest32,
}

fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// The S3 error code of an error reply, for the trace.
fn error_code(r: &Reply) -> String {
    match r {
        Reply::Status(s, b) if *s >= 300 => String::from_utf8_lossy(b)
            .split("<Code>")
            .nth(1)
            .and_then(|c| c.split("</Code>").next())
            .map(|c| format!(" {c}"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn version_header(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-amz-version-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Creates the lock bucket, retrying through faults; true once it exists.
async fn create_lock_bucket(s3: &mut S3, rng: &mut ChaCha20Rng, trace: &SharedTrace) -> bool {
    for _ in 0..120 {
        let host = host_name(rng.gen_range(0..NODES));
        let (r, _) = s3
            .request_with(
                &host,
                "PUT",
                &format!("/{LOCK_BUCKET}"),
                &[],
                &[("x-amz-bucket-object-lock-enabled", "true")],
                Bytes::new(),
            )
            .await;
        trace.borrow_mut().log(format!(
            "L {host} CREATE {LOCK_BUCKET} +lock -> {}",
            summary(&r)
        ));
        if acked(&r) || matches!(r, Reply::Status(409, _)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// The lock client: a seeded random sequence of lock-bucket requests against random nodes, one at
/// a time. With `planted_bug`, its version DELETEs go straight to a node's object layer with the
/// retention stripped first (retention enforcement skipped), which the checker must notice.
pub async fn run_lock_client(
    seed: u64,
    until: Duration,
    planted_bug: bool,
    model: Rc<RefCell<Model>>,
    site: Site,
    trace: SharedTrace,
) -> turmoil::Result {
    let mut rng = crate::stream(seed, "locker");
    let mut s3 = S3::new();
    if !create_lock_bucket(&mut s3, &mut rng, &trace).await {
        trace
            .borrow_mut()
            .violation(format!("bucket {LOCK_BUCKET} could not be created"));
        return Ok(());
    }
    model.borrow_mut().lock_bucket = Some(LOCK_BUCKET.to_owned());
    let mut n = 0u64;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        n += 1;
        let host = host_name(rng.gen_range(0..NODES));
        let op = rng.gen_range(0..100);
        let recorded = model.borrow().locked.clone();
        let target =
            (!recorded.is_empty()).then(|| recorded[rng.gen_range(0..recorded.len())].clone());
        match (op, target) {
            (0..40, _) | (_, None) => {
                let key = format!("lk{}", rng.gen_range(0..LOCK_KEYS));
                let len = rng.gen_range(0..4 * 1024);
                let mut body = format!("seed={seed} lock op={n};").into_bytes();
                body.extend((0..len).map(|_| rng.gen::<u8>()));
                let d = digest(&body);
                let md5 = content_md5(&body);
                let (r, headers) = s3
                    .request_with(
                        &host,
                        "PUT",
                        &format!("/{LOCK_BUCKET}/{key}"),
                        &[],
                        &[
                            ("content-md5", &md5),
                            ("x-amz-object-lock-mode", "COMPLIANCE"),
                            ("x-amz-object-lock-retain-until-date", RETAIN_UNTIL),
                        ],
                        Bytes::from(body),
                    )
                    .await;
                let vid = version_header(&headers);
                trace.borrow_mut().log(format!(
                    "L {host} PUT {LOCK_BUCKET}/{key} {} +compliance -> {}{} v={}",
                    short(&Some(d)),
                    summary(&r),
                    error_code(&r),
                    vid.as_deref().unwrap_or("-")
                ));
                if acked(&r) {
                    match vid {
                        Some(version_id) => model.borrow_mut().locked.push(Locked {
                            key,
                            version_id,
                            digest: d,
                        }),
                        None => trace.borrow_mut().violation(format!(
                            "PUT {LOCK_BUCKET}/{key} acknowledged without a version id"
                        )),
                    }
                } else if matches!(r, Reply::Status(400, _)) {
                    trace.borrow_mut().violation(format!(
                        "workload: locked PUT {LOCK_BUCKET}/{key} refused as malformed:{}",
                        error_code(&r)
                    ));
                }
            }
            (40..55, Some(l)) => {
                let r = get_version(&mut s3, &host, &l).await;
                trace.borrow_mut().log(format!(
                    "L {host} GET {LOCK_BUCKET}/{}?versionId={} -> {}{}",
                    l.key,
                    l.version_id,
                    summary(&r),
                    error_code(&r)
                ));
                if let Some(v) = check_version(&l, &r) {
                    trace.borrow_mut().violation(v);
                }
            }
            (55..70, Some(l)) if planted_bug => rogue_remove(&site, &mut rng, &l, &trace).await,
            (55..70, Some(l)) => {
                let r = s3
                    .request(
                        &host,
                        "DELETE",
                        &format!("/{LOCK_BUCKET}/{}", l.key),
                        &[("versionId", &l.version_id)],
                        Bytes::new(),
                    )
                    .await;
                trace.borrow_mut().log(format!(
                    "L {host} DELETE {LOCK_BUCKET}/{}?versionId={} -> {}{}",
                    l.key,
                    l.version_id,
                    summary(&r),
                    error_code(&r)
                ));
                if acked(&r) {
                    trace.borrow_mut().violation(format!(
                        "DELETE {LOCK_BUCKET}/{}?versionId={} of a locked version acknowledged ({})",
                        l.key,
                        l.version_id,
                        summary(&r)
                    ));
                }
            }
            (70..80, Some(l)) => {
                // Three ways to weaken a COMPLIANCE retention; all must be refused.
                let (what, xml) = match rng.gen_range(0..3) {
                    0 => ("shorten", format!("<Mode>COMPLIANCE</Mode><RetainUntilDate>{EARLIER}</RetainUntilDate>")),
                    1 => ("governance", format!("<Mode>GOVERNANCE</Mode><RetainUntilDate>{RETAIN_UNTIL}</RetainUntilDate>")),
                    _ => ("remove", String::new()),
                };
                let body = format!(
                    "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{xml}</Retention>"
                );
                let md5 = content_md5(body.as_bytes());
                let (r, _) = s3
                    .request_with(
                        &host,
                        "PUT",
                        &format!("/{LOCK_BUCKET}/{}", l.key),
                        &[("retention", ""), ("versionId", &l.version_id)],
                        &[("content-md5", &md5)],
                        Bytes::from(body),
                    )
                    .await;
                trace.borrow_mut().log(format!(
                    "L {host} PUT {LOCK_BUCKET}/{}?retention&versionId={} {what} -> {}{}",
                    l.key,
                    l.version_id,
                    summary(&r),
                    error_code(&r)
                ));
                if acked(&r) {
                    trace.borrow_mut().violation(format!(
                        "retention of locked version {LOCK_BUCKET}/{} {} weakened ({what}) with {}",
                        l.key,
                        l.version_id,
                        summary(&r)
                    ));
                }
            }
            (80..90, Some(l)) => {
                let (r, headers) = s3
                    .request_with(
                        &host,
                        "DELETE",
                        &format!("/{LOCK_BUCKET}/{}", l.key),
                        &[],
                        &[],
                        Bytes::new(),
                    )
                    .await;
                trace.borrow_mut().log(format!(
                    "L {host} DELETE {LOCK_BUCKET}/{} -> {}{} marker={}",
                    l.key,
                    summary(&r),
                    error_code(&r),
                    version_header(&headers).as_deref().unwrap_or("-")
                ));
            }
            (_, Some(_)) => {
                let r = s3
                    .request(
                        &host,
                        "GET",
                        &format!("/{LOCK_BUCKET}"),
                        &[("versions", "")],
                        Bytes::new(),
                    )
                    .await;
                let listed = match &r {
                    Reply::Status(200, b) => listed_versions(b).len(),
                    _ => 0,
                };
                trace.borrow_mut().log(format!(
                    "L {host} LIST VERSIONS {LOCK_BUCKET} -> {}{} {listed} versions",
                    summary(&r),
                    error_code(&r)
                ));
            }
        }
        trace.borrow_mut().ops += 1;
    }
    Ok(())
}

/// The planted bug: removes a locked version through a running node's object layer, stripping
/// its retention first, so nothing in Cairn gets to refuse.
async fn rogue_remove(site: &Site, rng: &mut ChaCha20Rng, l: &Locked, trace: &SharedTrace) {
    let running: Vec<_> = site
        .iter()
        .filter_map(|n| n.node.borrow().clone().map(|node| (n.index, node)))
        .collect();
    if running.is_empty() {
        return;
    }
    let (i, node) = running[rng.gen_range(0..running.len())].clone();
    let stripped = node
        .objects
        .update_version(LOCK_BUCKET, &l.key, Some(&l.version_id), |v| {
            v.lock_mode.clear();
            v.retain_until_ns = 0;
        })
        .await;
    let removed = match stripped {
        Ok(_) => node
            .objects
            .delete_object(
                LOCK_BUCKET,
                &l.key,
                DeleteRequest {
                    versioning: Versioning::Enabled,
                    version_id: Some(&l.version_id),
                    bypass: Bypass::default(),
                    replication: &cairn_node::object::replica::Replication::None,
                },
            )
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    trace.borrow_mut().log(format!(
        "L PLANTED {} remove {LOCK_BUCKET}/{}?versionId={} -> {:?}",
        host_name(i),
        l.key,
        l.version_id,
        removed.map_err(|e| e.to_string())
    ));
}

async fn get_version(s3: &mut S3, host: &str, l: &Locked) -> Reply {
    s3.request(
        host,
        "GET",
        &format!("/{LOCK_BUCKET}/{}", l.key),
        &[("versionId", &l.version_id)],
        Bytes::new(),
    )
    .await
}

/// Checks a GET by version id of a locked version: its exact bytes, or an error that is not
/// "no such version".
fn check_version(l: &Locked, r: &Reply) -> Option<String> {
    match r {
        Reply::Status(200, body) if digest(body) != l.digest => Some(format!(
            "GET {LOCK_BUCKET}/{}?versionId={} returned {} instead of {}",
            l.key,
            l.version_id,
            short(&Some(digest(body))),
            short(&Some(l.digest))
        )),
        Reply::Status(404, _) => Some(format!(
            "locked version removed: GET {LOCK_BUCKET}/{}?versionId={} -> 404{}",
            l.key,
            l.version_id,
            error_code(r)
        )),
        _ => None,
    }
}

/// GETs `path?query` until a definite answer (anything but a 5xx or a lost reply), rotating nodes.
async fn definite(
    s3: &mut S3,
    start: usize,
    path: &str,
    query: &[(&str, &str)],
    trace: &SharedTrace,
    what: &str,
) -> Option<Reply> {
    for attempt in 0..30 {
        let host = host_name((start + attempt) % NODES);
        let r = s3.request(&host, "GET", path, query, Bytes::new()).await;
        trace.borrow_mut().log(format!(
            "CHECK {host} {what} -> {}{}",
            summary(&r),
            error_code(&r)
        ));
        if matches!(r, Reply::Status(s, _) if s < 500) {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// The liveness-phase check: every recorded locked version is still there, with its bytes and its
/// retention, and the version listing names it.
pub async fn check(s3: &mut S3, model: &Rc<RefCell<Model>>, trace: &SharedTrace) {
    let Some(bucket) = model.borrow().lock_bucket.clone() else {
        return;
    };
    let locked = model.borrow().locked.clone();
    for (i, l) in locked.iter().enumerate() {
        let path = format!("/{bucket}/{}", l.key);
        let what = format!("GET {bucket}/{}?versionId={}", l.key, l.version_id);
        match definite(s3, i, &path, &[("versionId", &l.version_id)], trace, &what).await {
            Some(r) => {
                if let Some(v) = check_version(l, &r) {
                    trace.borrow_mut().violation(v);
                    continue;
                }
                if !matches!(r, Reply::Status(200, _)) {
                    trace.borrow_mut().violation(format!(
                        "liveness: {what} -> {}{}",
                        summary(&r),
                        error_code(&r)
                    ));
                    continue;
                }
            }
            None => {
                trace.borrow_mut().violation(format!(
                    "liveness: locked {bucket}/{} {} never readable after faults stopped",
                    l.key, l.version_id
                ));
                continue;
            }
        }
        let what = format!(
            "GET {bucket}/{}?retention&versionId={}",
            l.key, l.version_id
        );
        let r = definite(
            s3,
            i,
            &path,
            &[("retention", ""), ("versionId", &l.version_id)],
            trace,
            &what,
        )
        .await;
        let kept = match &r {
            Some(Reply::Status(200, b)) => {
                let s = String::from_utf8_lossy(b);
                s.contains("<Mode>COMPLIANCE</Mode>")
                    && s.contains(&RETAIN_UNTIL[..RETAIN_UNTIL.len() - 5])
            }
            _ => false,
        };
        if !kept {
            trace.borrow_mut().violation(format!(
                "retention of locked version {bucket}/{} {} no longer COMPLIANCE until {RETAIN_UNTIL}: {}",
                l.key,
                l.version_id,
                r.as_ref().map(summary).unwrap_or_else(|| "no answer".into())
            ));
        }
    }
    // ListObjectVersions must name every recorded version.
    let mut listed = std::collections::BTreeSet::new();
    let (mut key_marker, mut vid_marker) = (String::new(), String::new());
    for page in 0..50 {
        let mut query = vec![("versions", "")];
        if page > 0 {
            query.push(("key-marker", key_marker.as_str()));
            query.push(("version-id-marker", vid_marker.as_str()));
        }
        let what = format!("LIST VERSIONS {bucket} page {page}");
        let r = definite(s3, page, &format!("/{bucket}"), &query, trace, &what).await;
        let Some(Reply::Status(200, body)) = r else {
            trace.borrow_mut().violation(format!(
                "liveness: LIST VERSIONS {bucket} failed: {}",
                r.as_ref()
                    .map(summary)
                    .unwrap_or_else(|| "no answer".into())
            ));
            return;
        };
        let versions = listed_versions(&body);
        listed.extend(versions.iter().cloned());
        if !truncated(&body) {
            break;
        }
        let text = String::from_utf8_lossy(&body);
        let field = |name: &str| {
            text.split(&format!("<{name}>"))
                .nth(1)
                .and_then(|p| p.split(&format!("</{name}>")).next())
                .map(str::to_owned)
        };
        match (field("NextKeyMarker"), field("NextVersionIdMarker")) {
            (Some(k), Some(v)) => (key_marker, vid_marker) = (k, v),
            _ => {
                trace.borrow_mut().violation(format!(
                    "LIST VERSIONS {bucket} is truncated without a next marker"
                ));
                return;
            }
        }
    }
    trace.borrow_mut().log(format!(
        "CHECK LIST VERSIONS {bucket}: {} versions listed, {} locked recorded",
        listed.len(),
        locked.len()
    ));
    for l in &locked {
        if !listed.contains(&(l.key.clone(), l.version_id.clone())) {
            trace.borrow_mut().violation(format!(
                "locked version removed: LIST VERSIONS {bucket} misses {} {}",
                l.key, l.version_id
            ));
        }
    }
}
