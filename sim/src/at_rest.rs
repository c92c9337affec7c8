//! The encryption workload and its invariant: no plaintext object byte reaches a store
//! (DESIGN.md §9, §5).
//!
//! The client writes objects whose bodies repeat [`MARKER`] under SSE-S3, under SSE-C, and
//! without headers into a bucket whose default encryption root set first; it reads them back
//! (SSE-C with its key) and checks the bytes. After the run the checker searches every byte every
//! drive holds, synced or not, file contents and metadata alike, for the marker: one hit is a
//! violation. With the planted bug the client leaves out its SSE headers, which the search must
//! then catch.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use md5::Digest as _;
use rand::Rng;

use crate::client::{until_acked, Reply, Step, S3};
use crate::cluster::{host_name, Site, NODES};
use crate::workload::{acked, create_bucket, digest, summary, Digest32};
use crate::SharedTrace;

/// Repeated through every body this client writes; it must never be found on a drive.
pub const MARKER: &[u8] = b"<cairn plaintext marker>";
const SEALED: &str = "sealedbucket";
const DEFAULT_SEALED: &str = "defaultsealed";
const KEYS: usize = 3;

const DEFAULT_ENCRYPTION: &str = "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>";

/// How one object is written.
#[derive(Debug, Clone, Copy)]
enum Mode {
    SseS3,
    SseC,
    BucketDefault,
}

impl Mode {
    fn bucket(self) -> &'static str {
        match self {
            Mode::SseS3 | Mode::SseC => SEALED,
            Mode::BucketDefault => DEFAULT_SEALED,
        }
    }

    fn key(self, i: usize) -> String {
        match self {
            Mode::SseS3 => format!("s3-{i}"),
            Mode::SseC => format!("c-{i}"),
            Mode::BucketDefault => format!("d-{i}"),
        }
    }
}

/// The SSE-C headers for the client's customer key.
fn sse_c_headers(key: &[u8; 32]) -> Vec<(&'static str, String)> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    vec![
        (
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".into(),
        ),
        ("x-amz-server-side-encryption-customer-key", b64(key)),
        (
            "x-amz-server-side-encryption-customer-key-md5",
            b64(&md5::Md5::digest(key)),
        ),
    ]
}

/// Bodies written per object, for checking reads.
#[derive(Debug, Default)]
pub struct AtRestModel {
    pub written: BTreeMap<String, BTreeSet<Digest32>>,
    pub acked: u64,
}

pub async fn run_client(
    seed: u64,
    until: Duration,
    planted_bug: bool,
    model: Rc<RefCell<AtRestModel>>,
    trace: SharedTrace,
) -> turmoil::Result {
    let mut rng = crate::stream(seed, "sealer");
    let mut s3 = S3::new();
    let mut customer_key = [0u8; 32];
    rng.fill(&mut customer_key);
    for bucket in [SEALED, DEFAULT_SEALED] {
        if !create_bucket(&mut s3, &mut rng, bucket, &trace, 120).await {
            trace
                .borrow_mut()
                .violation(format!("bucket {bucket} could not be created"));
            return Ok(());
        }
    }
    let step = Step {
        what: "default encryption",
        method: "PUT",
        path: format!("/{DEFAULT_SEALED}"),
        query: vec![("encryption", "")],
        body: Bytes::from_static(DEFAULT_ENCRYPTION.as_bytes()),
    };
    if !until_acked(&mut s3, &mut rng, &trace, &step).await {
        trace.borrow_mut().violation(format!(
            "default encryption of {DEFAULT_SEALED} never acknowledged"
        ));
        return Ok(());
    }
    let sse_c = sse_c_headers(&customer_key);
    let mut n = 0u64;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        n += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
        let host = host_name(rng.gen_range(0..NODES));
        let mode = [Mode::SseS3, Mode::SseC, Mode::BucketDefault][rng.gen_range(0..3)];
        let key = mode.key(rng.gen_range(0..KEYS));
        let bucket = mode.bucket();
        let path = format!("/{bucket}/{key}");
        let mut headers: Vec<(&str, String)> = match mode {
            Mode::SseS3 => vec![("x-amz-server-side-encryption", "AES256".into())],
            Mode::SseC => sse_c.clone(),
            Mode::BucketDefault => vec![],
        };
        if rng.gen_bool(0.6) {
            let mut body = format!("seed={seed} sealed op={n};").into_bytes();
            for _ in 0..rng.gen_range(40..400) {
                body.extend_from_slice(MARKER);
            }
            let d = digest(&body);
            model
                .borrow_mut()
                .written
                .entry(path.clone())
                .or_default()
                .insert(d);
            if planted_bug {
                headers.clear();
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (r, _) = s3
                .request_with(&host, "PUT", &path, &[], &h, Bytes::from(body))
                .await;
            trace
                .borrow_mut()
                .log(format!("E {host} PUT {path} {mode:?} -> {}", summary(&r)));
            if acked(&r) {
                model.borrow_mut().acked += 1;
            }
        } else {
            if !matches!(mode, Mode::SseC) {
                headers.clear();
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (r, _) = s3
                .request_with(&host, "GET", &path, &[], &h, Bytes::new())
                .await;
            trace
                .borrow_mut()
                .log(format!("E {host} GET {path} -> {}", summary(&r)));
            if let Reply::Status(200, body) = &r {
                let known = model
                    .borrow()
                    .written
                    .get(&path)
                    .is_some_and(|w| w.contains(&digest(body)));
                if !known {
                    trace.borrow_mut().violation(format!(
                        "GET {path} returned {} bytes never written there",
                        body.len()
                    ));
                }
            }
        }
        trace.borrow_mut().ops += 1;
    }
    Ok(())
}

/// Searches every drive of the site for [`MARKER`].
pub fn check(model: &Rc<RefCell<AtRestModel>>, site: &Site, trace: &SharedTrace) {
    let finder = memchr::memmem::Finder::new(MARKER);
    let mut scanned = 0u64;
    let mut hits = Vec::new();
    for node in site.iter() {
        for (d, disk) in node.disks.iter().enumerate() {
            let mut found = false;
            disk.visit_contents(|b| {
                scanned += b.len() as u64;
                found |= finder.find(b).is_some();
            });
            if found {
                hits.push(format!("{} d{}", host_name(node.index), d + 1));
            }
        }
    }
    let acked = model.borrow().acked;
    trace.borrow_mut().log(format!(
        "CHECK at rest: {acked} sealed PUTs acknowledged, {scanned} bytes scanned, marker on [{}]",
        hits.join(", ")
    ));
    if !hits.is_empty() {
        trace.borrow_mut().violation(format!(
            "plaintext at rest: the marker of encrypted objects is on {}",
            hits.join(", ")
        ));
    }
}
