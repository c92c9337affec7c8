//! The seeded S3 workload and the checker of its invariants.
//!
//! Each client owns a bucket and a handful of keys and runs one request at a time, so the model
//! of a key is simple: the set of states a read may observe. An acknowledged PUT or DELETE
//! narrows it to its own outcome, plus the outcomes of earlier requests whose reply was lost
//! (they may still land). Every PUT body is unique, so a read of bytes no PUT ever sent is
//! caught too.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::client::{listed_keys, Reply, S3};
use crate::cluster::{control_states, host_name, Site, NODES};
use crate::SharedTrace;

pub(crate) type Digest32 = [u8; 32];

const KEYS_PER_CLIENT: usize = 6;

#[derive(Debug, Default, Clone)]
pub struct KeyModel {
    /// States an acknowledged request left (None: absent).
    pub settled: BTreeSet<Option<Digest32>>,
    /// States requests without a reply may still leave.
    pub pending: BTreeSet<Option<Digest32>>,
}

impl KeyModel {
    fn allows(&self, v: &Option<Digest32>) -> bool {
        self.settled.contains(v) || self.pending.contains(v)
    }
}

#[derive(Debug, Default)]
pub struct Model {
    /// (bucket, key) -> possible states.
    pub keys: BTreeMap<(String, String), KeyModel>,
    /// Digest of every body any PUT sent.
    pub written: BTreeSet<Digest32>,
    pub buckets: BTreeSet<String>,
    /// The lock client's bucket, once created (`crate::lock`).
    pub lock_bucket: Option<String>,
    /// Every version a PUT with COMPLIANCE retention acknowledged: it must never go away.
    pub locked: Vec<crate::lock::Locked>,
}

pub(crate) fn digest(b: &[u8]) -> Digest32 {
    Sha256::digest(b).into()
}

pub(crate) fn short(d: &Option<Digest32>) -> String {
    match d {
        Some(d) => hex::encode(&d[..4]),
        None => "absent".into(),
    }
}

/// Checks a GET reply against the model; returns a violation if it breaks an invariant.
pub(crate) fn check_get(model: &Model, bucket: &str, key: &str, reply: &Reply) -> Option<String> {
    let km = model.keys.get(&(bucket.to_owned(), key.to_owned()))?;
    match reply {
        Reply::Status(200, body) => {
            let d = digest(body);
            if !model.written.contains(&d) {
                Some(format!(
                    "GET {bucket}/{key} returned {} bytes never written",
                    body.len()
                ))
            } else if !km.allows(&Some(d)) {
                Some(format!(
                    "GET {bucket}/{key} returned stale {} (allowed {:?})",
                    short(&Some(d)),
                    km.settled
                        .iter()
                        .chain(&km.pending)
                        .map(short)
                        .collect::<Vec<_>>()
                ))
            } else {
                None
            }
        }
        Reply::Status(404, _) if !km.allows(&None) => Some(format!(
            "GET {bucket}/{key}: 404 but an acknowledged PUT wrote {:?}",
            km.settled.iter().map(short).collect::<Vec<_>>()
        )),
        _ => None,
    }
}

pub(crate) fn summary(r: &Reply) -> String {
    match r {
        Reply::Status(s, b) if *s == 200 && !b.is_empty() => {
            format!("{s} {}", hex::encode(&digest(b)[..4]))
        }
        Reply::Status(s, _) => s.to_string(),
        Reply::Lost(_) => "lost".into(),
    }
}

pub(crate) fn acked(r: &Reply) -> bool {
    matches!(r, Reply::Status(s, _) if (200..300).contains(s))
}

pub(crate) fn maybe_applied(r: &Reply) -> bool {
    matches!(r, Reply::Lost(_)) || matches!(r, Reply::Status(s, _) if *s >= 500)
}

/// Creates `bucket`, retrying through faults; true once it exists.
pub(crate) async fn create_bucket(
    s3: &mut S3,
    rng: &mut ChaCha20Rng,
    bucket: &str,
    trace: &SharedTrace,
    tries: usize,
) -> bool {
    for _ in 0..tries {
        let host = host_name(rng.gen_range(0..NODES));
        let r = s3
            .request(&host, "PUT", &format!("/{bucket}"), &[], Bytes::new())
            .await;
        trace
            .borrow_mut()
            .log(format!("{host} CREATE {bucket} -> {}", summary(&r)));
        if acked(&r) || matches!(r, Reply::Status(409, _)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Creates a client's bucket (the control plane needs a leader first, so it keeps trying) and
/// enters its keys in the model, all absent; false, with a violation, if it never could.
pub(crate) async fn open_bucket(
    s3: &mut S3,
    rng: &mut ChaCha20Rng,
    bucket: &str,
    keys: impl Iterator<Item = String>,
    model: &Rc<RefCell<Model>>,
    trace: &SharedTrace,
) -> bool {
    if !create_bucket(s3, rng, bucket, trace, 120).await {
        trace
            .borrow_mut()
            .violation(format!("bucket {bucket} could not be created"));
        return false;
    }
    let mut m = model.borrow_mut();
    m.buckets.insert(bucket.to_owned());
    for key in keys {
        m.keys.insert(
            (bucket.to_owned(), key),
            KeyModel {
                settled: [None].into(),
                pending: BTreeSet::new(),
            },
        );
    }
    true
}

/// One workload client: a seeded random sequence of S3 requests against random nodes.
pub async fn run_client(
    seed: u64,
    client: usize,
    until: Duration,
    model: Rc<RefCell<Model>>,
    trace: SharedTrace,
) -> turmoil::Result {
    let mut rng = crate::stream(seed, &format!("client{}", client + 1));
    let mut s3 = S3::new();
    let bucket = format!("bucket{}", client + 1);
    let keys = (0..KEYS_PER_CLIENT).map(|k| format!("key{k}"));
    if !open_bucket(&mut s3, &mut rng, &bucket, keys, &model, &trace).await {
        return Ok(());
    }
    let mut n = 0u64;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        n += 1;
        let host = host_name(rng.gen_range(0..NODES));
        let key = format!("key{}", rng.gen_range(0..KEYS_PER_CLIENT));
        let path = format!("/{bucket}/{key}");
        let id = (bucket.clone(), key.clone());
        let op = rng.gen_range(0..100);
        if op < 45 {
            let len = rng.gen_range(0..16 * 1024);
            let mut body = format!("seed={seed} client={client} op={n};").into_bytes();
            body.extend((0..len).map(|_| rng.gen::<u8>()));
            let body = Bytes::from(body);
            let d = digest(&body);
            model.borrow_mut().written.insert(d);
            let r = s3.request(&host, "PUT", &path, &[], body).await;
            trace.borrow_mut().log(format!(
                "c{client} {host} PUT {path} {} -> {}",
                short(&Some(d)),
                summary(&r)
            ));
            let mut m = model.borrow_mut();
            if let Some(km) = m.keys.get_mut(&id) {
                if acked(&r) {
                    km.settled = [Some(d)].into();
                } else if maybe_applied(&r) {
                    km.pending.insert(Some(d));
                }
            }
        } else if op < 80 {
            let r = s3.request(&host, "GET", &path, &[], Bytes::new()).await;
            trace
                .borrow_mut()
                .log(format!("c{client} {host} GET {path} -> {}", summary(&r)));
            if let Some(v) = check_get(&model.borrow(), &bucket, &key, &r) {
                trace.borrow_mut().violation(v);
            }
        } else if op < 90 {
            let r = s3.request(&host, "DELETE", &path, &[], Bytes::new()).await;
            trace
                .borrow_mut()
                .log(format!("c{client} {host} DELETE {path} -> {}", summary(&r)));
            let mut m = model.borrow_mut();
            if let Some(km) = m.keys.get_mut(&id) {
                if acked(&r) {
                    km.settled = [None].into();
                } else if maybe_applied(&r) {
                    km.pending.insert(None);
                }
            }
        } else if op < 97 {
            let r = s3
                .request(
                    &host,
                    "GET",
                    &format!("/{bucket}"),
                    &[("list-type", "2")],
                    Bytes::new(),
                )
                .await;
            let keys = match &r {
                Reply::Status(200, b) => listed_keys(b).join(","),
                _ => String::new(),
            };
            trace.borrow_mut().log(format!(
                "c{client} {host} LIST {bucket} -> {} [{keys}]",
                summary(&r)
            ));
        } else {
            let extra = format!("extra{}-{}", client + 1, rng.gen_range(0..3));
            let r = s3
                .request(&host, "PUT", &format!("/{extra}"), &[], Bytes::new())
                .await;
            trace.borrow_mut().log(format!(
                "c{client} {host} CREATE {extra} -> {}",
                summary(&r)
            ));
        }
        trace.borrow_mut().ops += 1;
    }
    Ok(())
}

/// The liveness phase: once faults stopped, every key must become readable with an allowed
/// value, listings must agree with the model and all nodes must hold the same control-plane state.
pub async fn run_checker(
    at: Duration,
    model: Rc<RefCell<Model>>,
    extra: Option<crate::Extra>,
    site: Site,
    trace: SharedTrace,
) -> turmoil::Result {
    let now = turmoil::sim_elapsed().unwrap_or_default();
    tokio::time::sleep(at.saturating_sub(now)).await;
    trace.borrow_mut().log("CHECK start".into());
    let mut s3 = S3::new();
    let keys: Vec<(String, String)> = model.borrow().keys.keys().cloned().collect();
    for (i, (bucket, key)) in keys.iter().enumerate() {
        let mut done = false;
        for attempt in 0..30 {
            let host = host_name((i + attempt) % NODES);
            let r = s3
                .request(&host, "GET", &format!("/{bucket}/{key}"), &[], Bytes::new())
                .await;
            trace.borrow_mut().log(format!(
                "CHECK {host} GET {bucket}/{key} -> {}",
                summary(&r)
            ));
            if let Some(v) = check_get(&model.borrow(), bucket, key, &r) {
                trace.borrow_mut().violation(v);
                done = true;
                break;
            }
            if matches!(r, Reply::Status(200 | 404, _)) {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if !done {
            trace.borrow_mut().violation(format!(
                "liveness: {bucket}/{key} never readable after faults stopped"
            ));
            dump_records(&site, bucket, key, &trace);
        }
    }
    let buckets: Vec<String> = model.borrow().buckets.iter().cloned().collect();
    for (i, bucket) in buckets.iter().enumerate() {
        let host = host_name(i % NODES);
        let r = s3
            .request(
                &host,
                "GET",
                &format!("/{bucket}"),
                &[("list-type", "2")],
                Bytes::new(),
            )
            .await;
        trace
            .borrow_mut()
            .log(format!("CHECK {host} LIST {bucket} -> {}", summary(&r)));
        let Reply::Status(200, body) = &r else {
            trace
                .borrow_mut()
                .violation(format!("liveness: LIST {bucket} failed: {}", summary(&r)));
            continue;
        };
        let listed: BTreeSet<String> = listed_keys(body).into_iter().collect();
        let m = model.borrow();
        for ((b, k), km) in m.keys.range((bucket.clone(), String::new())..) {
            if b != bucket {
                break;
            }
            let present = listed.contains(k);
            if present
                && !km.allows(&Some([0; 32]))
                && km.settled.iter().chain(&km.pending).all(Option::is_none)
            {
                trace
                    .borrow_mut()
                    .violation(format!("LIST {bucket} shows deleted {k}"));
            }
            if !present && !km.allows(&None) {
                trace
                    .borrow_mut()
                    .violation(format!("LIST {bucket} misses acknowledged {k}"));
            }
        }
    }
    crate::lock::check(&mut s3, &model, &trace).await;
    // Control-plane convergence: every node applies the same history.
    let mut agreed = false;
    for _ in 0..60 {
        let states = control_states(&site);
        let first = states.first().and_then(|(_, s)| s.clone());
        if first.is_some() && states.iter().all(|(_, s)| s.as_deref() == first.as_deref()) {
            agreed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let applied: Vec<String> = control_states(&site)
        .iter()
        .map(|(i, s)| format!("{}={:?}", host_name(*i), s.as_ref().map(|s| s.applied)))
        .collect();
    trace
        .borrow_mut()
        .log(format!("CHECK control planes {}", applied.join(" ")));
    if !agreed {
        trace.borrow_mut().violation(format!(
            "liveness: control planes disagree: {}",
            applied.join(" ")
        ));
    }
    if let Some(extra) = &extra {
        if agreed {
            crate::control::check(&extra.history, &site, &trace);
        }
        crate::access::check(&extra.access, &site, &trace).await;
    }
    check_full_redundancy(&site, &trace).await;
    if let Some(extra) = &extra {
        crate::at_rest::check(&extra.at_rest, &site, &trace);
    }
    Ok(())
}

/// With `--verbose`, prints every drive's record of `bucket/key` (newest version first), to see
/// why a key lost its quorum.
fn dump_records(site: &Site, bucket: &str, key: &str, trace: &SharedTrace) {
    use prost::Message as _;
    if !trace.borrow().verbose {
        return;
    }
    let wanted = format!("o/{bucket}/{key}").into_bytes();
    for n in site.iter() {
        for (d, disk) in n.disks.iter().enumerate() {
            let record = disk
                .meta_entries()
                .into_iter()
                .find(|(k, _)| *k == wanted)
                .map(|(_, v)| cairn_proto::meta::ObjectRecord::decode(v.as_slice()));
            let versions: Vec<String> = match record {
                None => vec!["no record".into()],
                Some(Err(e)) => vec![format!("undecodable: {e}")],
                Some(Ok(r)) => r
                    .versions
                    .iter()
                    .map(|v| {
                        format!(
                            "{} marker={} mod={} size={} etag={} dir={}",
                            v.version_id,
                            v.delete_marker,
                            v.mod_time_ns,
                            v.size,
                            v.etag,
                            v.data_dir
                        )
                    })
                    .collect(),
            };
            println!(
                "DUMP {} d{} {bucket}/{key}: {versions:?}",
                host_name(n.index),
                d + 1
            );
        }
    }
}

/// Full heals run until one finishes without errors; the next must find nothing to repair: every
/// shard of every object is back on its drive and verifies, and no dangling record is left.
async fn check_full_redundancy(site: &Site, trace: &SharedTrace) {
    let Some(node) = site.iter().find_map(|n| n.node.borrow().clone()) else {
        trace
            .borrow_mut()
            .violation("liveness: no node running for the redundancy check".into());
        return;
    };
    let mut clean = false;
    for _ in 0..10 {
        let s = cairn_node::admin::heal_everything(&node).await;
        trace.borrow_mut().log(format!("CHECK heal {s:?}"));
        if s.errors == 0 && s.shards_unwritten == 0 {
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if !clean {
        trace
            .borrow_mut()
            .violation("liveness: full heal keeps failing after faults stopped".into());
        return;
    }
    let s = cairn_node::admin::heal_everything(&node).await;
    trace.borrow_mut().log(format!("CHECK re-heal {s:?}"));
    if s.shards_written > 0 || s.shards_unwritten > 0 || s.dangling_removed > 0 || s.errors > 0 {
        trace.borrow_mut().violation(format!(
            "redundancy not restored: a second full heal still repaired {s:?}"
        ));
    }
}
