//! The control-plane workload and its invariant: the history of bucket and IAM-user operations is
//! linearizable (DESIGN.md §9).
//!
//! Two clients race on a few shared names through random nodes: CreateBucket and DeleteBucket on
//! shared buckets, AddUser and RemoveUser on shared users. Each request is recorded with the
//! simulated times it was sent and answered. Reads during the run are left out on purpose: a node
//! answers bucket lookups from its applied state (as AWS documents bucket configuration to be
//! eventually consistent), so only the mutations, whose replies the Raft leader decides, must be
//! linearizable. Once the control planes agree after the faults, the converged state is the final
//! read of every name.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use crate::client::{Reply, S3};
use crate::cluster::{control_states, host_name, Site, NODES};
use crate::linearizability::{self, Call, Op, Outcome, Verdict};
use crate::workload::summary;
use crate::SharedTrace;

const SHARED_BUCKETS: usize = 2;
const SHARED_USERS: usize = 2;
/// Search states per name before the checker gives up (reported, not a violation).
const SEARCH_BUDGET: usize = 200_000;

/// Every control-plane request of the run, by name (`bucket:<name>`, `user:<name>`).
pub type History = Rc<RefCell<BTreeMap<String, Vec<Op>>>>;

fn shared_bucket(i: usize) -> String {
    format!("shared{i}")
}

fn shared_user(i: usize) -> String {
    format!("simuser{i}")
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// How a reply maps to an outcome; `expected` lists the statuses with a definite meaning.
fn outcome(r: &Reply, expected: &[(u16, Outcome)]) -> Outcome {
    match r {
        Reply::Status(s, _) => expected
            .iter()
            .find(|(e, _)| e == s)
            .map_or(Outcome::Unknown, |(_, o)| *o),
        Reply::Lost(_) => Outcome::Unknown,
    }
}

/// One control-plane client: `client` numbers it, the seed drives its choices.
pub async fn run_client(
    seed: u64,
    client: usize,
    until: Duration,
    history: History,
    trace: SharedTrace,
) -> turmoil::Result {
    let mut rng = crate::stream(seed, &format!("ctl{}", client + 1));
    let mut s3 = S3::new();
    let name = format!("ctl{}", client + 1);
    while now() < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..700))).await;
        let host = host_name(rng.gen_range(0..NODES));
        let start = now();
        let (id, call, r, o) = if rng.gen_bool(0.5) {
            let bucket = shared_bucket(rng.gen_range(0..SHARED_BUCKETS));
            let path = format!("/{bucket}");
            if rng.gen_bool(0.5) {
                let r = s3.request(&host, "PUT", &path, &[], Bytes::new()).await;
                let o = outcome(&r, &[(200, Outcome::Done), (409, Outcome::Exists)]);
                (format!("bucket:{bucket}"), Call::Create, r, o)
            } else {
                let r = s3.request(&host, "DELETE", &path, &[], Bytes::new()).await;
                let o = outcome(&r, &[(204, Outcome::Done), (404, Outcome::Missing)]);
                (format!("bucket:{bucket}"), Call::Delete, r, o)
            }
        } else {
            let user = shared_user(rng.gen_range(0..SHARED_USERS));
            if rng.gen_bool(0.5) {
                let body = format!(
                    r#"{{"access_key":"{user}","secret_key":"{user}-secret-{}"}}"#,
                    rng.gen::<u32>()
                );
                let r = s3
                    .request(
                        &host,
                        "POST",
                        "/cairn/admin/v1/iam/user/add",
                        &[],
                        Bytes::from(body),
                    )
                    .await;
                let o = outcome(&r, &[(200, Outcome::Done)]);
                (format!("user:{user}"), Call::Upsert, r, o)
            } else {
                let r = s3
                    .request(
                        &host,
                        "POST",
                        "/cairn/admin/v1/iam/user/remove",
                        &[("access_key", &user)],
                        Bytes::new(),
                    )
                    .await;
                let o = outcome(&r, &[(200, Outcome::Done), (404, Outcome::Missing)]);
                (format!("user:{user}"), Call::Delete, r, o)
            }
        };
        let end = (o != Outcome::Unknown).then(now);
        trace.borrow_mut().log(format!(
            "{name} {host} {call:?} {id} -> {} ({o:?})",
            summary(&r)
        ));
        trace.borrow_mut().ops += 1;
        history.borrow_mut().entry(id).or_default().push(Op {
            client: name.clone(),
            call,
            outcome: o,
            start,
            end,
        });
    }
    Ok(())
}

/// Adds the converged state as the final read of every name and checks each name's history.
/// Call it once the control planes agree.
pub fn check(history: &History, site: &Site, trace: &SharedTrace) {
    let Some(state) = control_states(site).into_iter().find_map(|(_, s)| s) else {
        return;
    };
    let at = now();
    let mut history = history.borrow_mut();
    for (id, ops) in history.iter_mut() {
        let present = match id.split_once(':') {
            Some(("bucket", b)) => state.bucket(b).is_some(),
            Some(("user", u)) => state.iam.users.contains_key(u),
            _ => continue,
        };
        ops.push(Op {
            client: "checker".into(),
            call: Call::Read,
            outcome: if present {
                Outcome::Present
            } else {
                Outcome::Missing
            },
            start: at,
            end: Some(at),
        });
        let verdict = linearizability::check(ops, SEARCH_BUDGET);
        trace.borrow_mut().log(format!(
            "CHECK linearizable {id} ({} ops): {verdict:?}",
            ops.len()
        ));
        if verdict == Verdict::Violation {
            let lines: Vec<String> = ops
                .iter()
                .map(|o| {
                    format!(
                        "{} {:?}->{:?} [{}..{}]",
                        o.client,
                        o.call,
                        o.outcome,
                        o.start.as_millis(),
                        o.end.map_or("?".into(), |e| e.as_millis().to_string())
                    )
                })
                .collect();
            trace.borrow_mut().violation(format!(
                "control-plane history of {id} is not linearizable: {}",
                lines.join("; ")
            ));
        }
    }
}
