//! The multipart workload: uploads of two parts (5 MiB, the smallest a part before the last may
//! be, then a small one), each request through a random node, into a bucket of its own whose keys
//! join the S3 workload's model. A completed upload is a PUT to the model: acknowledged, it
//! settles the key; without a reply it may still land. An upload that fails before completion
//! must leave no trace.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, RngCore};

use crate::client::{Reply, S3};
use crate::cluster::{host_name, NODES};
use crate::workload::{
    acked, check_get, digest, maybe_applied, open_bucket, short, summary, Model,
};
use crate::SharedTrace;

pub const BUCKET: &str = "mpubucket";
const KEYS: usize = 3;
const FIRST_PART: usize = 5 * 1024 * 1024;

fn between<'a>(xml: &'a str, open: &str, close: &str) -> Option<&'a str> {
    xml.split_once(open)?.1.split_once(close).map(|(v, _)| v)
}

pub async fn run_client(
    seed: u64,
    until: Duration,
    model: Rc<RefCell<Model>>,
    trace: SharedTrace,
) -> turmoil::Result {
    let mut rng = crate::stream(seed, "mpu");
    let mut s3 = S3::new();
    let keys = (0..KEYS).map(|k| format!("mp{k}"));
    if !open_bucket(&mut s3, &mut rng, BUCKET, keys, &model, &trace).await {
        return Ok(());
    }
    let mut n = 0u64;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        n += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
        let key = format!("mp{}", rng.gen_range(0..KEYS));
        let path = format!("/{BUCKET}/{key}");
        if rng.gen_bool(0.4) {
            let h = host_name(rng.gen_range(0..NODES));
            let r = s3.request(&h, "GET", &path, &[], Bytes::new()).await;
            trace
                .borrow_mut()
                .log(format!("M {h} GET {path} -> {}", summary(&r)));
            if let Some(v) = check_get(&model.borrow(), BUCKET, &key, &r) {
                trace.borrow_mut().violation(v);
            }
            trace.borrow_mut().ops += 1;
            continue;
        }
        let mut first = vec![0u8; FIRST_PART];
        let tag = format!("seed={seed} multipart op={n};");
        first[..tag.len()].copy_from_slice(tag.as_bytes());
        rng.fill_bytes(&mut first[tag.len()..]);
        let mut second = tag.clone().into_bytes();
        second.extend((0..rng.gen_range(1..4096)).map(|_| rng.gen::<u8>()));
        let d = digest(&[first.as_slice(), second.as_slice()].concat());
        model.borrow_mut().written.insert(d);

        let [h1, h2, h3, h4] = [(); 4].map(|()| host_name(rng.gen_range(0..NODES)));
        let r = s3
            .request(&h1, "POST", &path, &[("uploads", "")], Bytes::new())
            .await;
        let upload = match &r {
            Reply::Status(200, b) => {
                between(&String::from_utf8_lossy(b), "<UploadId>", "</UploadId>").map(str::to_owned)
            }
            _ => None,
        };
        trace
            .borrow_mut()
            .log(format!("M {h1} CREATE-MPU {path} -> {}", summary(&r)));
        trace.borrow_mut().ops += 1;
        let Some(upload) = upload else { continue };
        let mut etags = Vec::new();
        for (num, (h, body)) in [(&h2, first), (&h3, second)].into_iter().enumerate() {
            let num = (num + 1).to_string();
            let (r, headers) = s3
                .request_with(
                    h,
                    "PUT",
                    &path,
                    &[("partNumber", &num), ("uploadId", &upload)],
                    &[],
                    Bytes::from(body),
                )
                .await;
            trace
                .borrow_mut()
                .log(format!("M {h} PART {num} {path} -> {}", summary(&r)));
            trace.borrow_mut().ops += 1;
            match headers.get("etag").and_then(|v| v.to_str().ok()) {
                Some(e) if acked(&r) => etags.push(e.to_owned()),
                _ => break,
            }
        }
        if etags.len() < 2 {
            let r = s3
                .request(&h4, "DELETE", &path, &[("uploadId", &upload)], Bytes::new())
                .await;
            trace
                .borrow_mut()
                .log(format!("M {h4} ABORT {path} -> {}", summary(&r)));
            continue;
        }
        let parts: String = etags
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                    i + 1
                )
            })
            .collect();
        let body = format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>");
        let r = s3
            .request(
                &h4,
                "POST",
                &path,
                &[("uploadId", &upload)],
                Bytes::from(body),
            )
            .await;
        trace.borrow_mut().log(format!(
            "M {h4} COMPLETE {path} {} -> {}",
            short(&Some(d)),
            summary(&r)
        ));
        trace.borrow_mut().ops += 1;
        let mut m = model.borrow_mut();
        if let Some(km) = m.keys.get_mut(&(BUCKET.to_owned(), key)) {
            // CompleteMultipartUpload may answer 200 with an error document, as AWS does.
            let error_doc = matches!(&r, Reply::Status(200, b) if String::from_utf8_lossy(b).contains("<Error>"));
            if acked(&r) && !error_doc {
                km.settled = [Some(d)].into();
            } else if maybe_applied(&r) || error_doc {
                km.pending.insert(Some(d));
            }
        }
    }
    Ok(())
}
