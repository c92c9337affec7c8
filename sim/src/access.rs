//! The access workload and its invariant: a denied request never succeeds (DESIGN.md §9).
//!
//! Root sets up a bucket with two objects, a policy allowing `s3:GetObject` in it, a policy
//! explicitly denying one of its keys, a user holding both (the reader) and a user holding none
//! (the stranger). The access client then sends, through random nodes and whatever faults are
//! running, requests that no policy the users ever held allows: writes, deletes, reads of the
//! denied key and of other buckets, bucket creation, admin calls, the stranger's reads and
//! requests signed with a wrong secret. Any 2xx reply to one of them is a violation. After the
//! faults stop, the checker confirms that none of them left a trace and that the allowed read
//! works on every node.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha20Rng;

use crate::client::{until_acked, Reply, Step, S3};
use crate::cluster::{control_states, host_name, Site, NODES};
use crate::workload::{acked, create_bucket, summary};
use crate::SharedTrace;

const BUCKET: &str = "accessbucket";
const READER: &str = "simreader";
const READER_SECRET: &str = "simreader-secret-key";
const STRANGER: &str = "simstranger";
const STRANGER_SECRET: &str = "simstranger-secret-key";
/// A user and a bucket the reader tries to create.
const ROGUE_USER: &str = "simrogue";
const ROGUE_BUCKET: &str = "roguebucket";

/// What the access client set up and saw, for the final check.
#[derive(Debug, Default)]
pub struct AccessModel {
    /// The readable object's body, once root wrote it.
    pub readable: Option<Bytes>,
    /// Denied requests sent, and allowed reads that succeeded.
    pub denied_sent: u64,
    pub allowed_ok: u64,
}

fn allow_get_doc() -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{BUCKET}/*"]}}]}}"#
    )
}

fn deny_secret_doc() -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":["s3:*"],"Resource":["arn:aws:s3:::{BUCKET}/secret*"]}}]}}"#
    )
}

/// Root's setup; false (with a violation) when the site never accepted it.
async fn setup(
    s3: &mut S3,
    rng: &mut ChaCha20Rng,
    seed: u64,
    planted_bug: bool,
    model: &Rc<RefCell<AccessModel>>,
    trace: &SharedTrace,
) -> bool {
    if !create_bucket(s3, rng, BUCKET, trace, 120).await {
        trace
            .borrow_mut()
            .violation(format!("bucket {BUCKET} could not be created"));
        return false;
    }
    let readable = Bytes::from(format!("readable by {READER}, seed {seed}"));
    let secret = Bytes::from(format!("secret, seed {seed}"));
    let user =
        |k: &str, s: &str| Bytes::from(format!(r#"{{"access_key":"{k}","secret_key":"{s}"}}"#));
    let mut attach = vec!["simread", "simdeny"];
    if planted_bug {
        // The planted bug: the reader also gets a policy allowing every object operation.
        attach.push("readwrite");
    }
    let attach = Bytes::from(format!(r#"{{"policies":{attach:?},"user":"{READER}"}}"#));
    let step = |what, method, path: String, query, body| Step {
        what,
        method,
        path,
        query,
        body,
    };
    let admin = |op: &str| format!("/cairn/admin/v1/iam/{op}");
    let steps = [
        step(
            "put readable",
            "PUT",
            format!("/{BUCKET}/readable"),
            vec![],
            readable.clone(),
        ),
        step(
            "put secret",
            "PUT",
            format!("/{BUCKET}/secret-doc"),
            vec![],
            secret,
        ),
        step(
            "policy simread",
            "POST",
            admin("policy/create"),
            vec![("name", "simread")],
            Bytes::from(allow_get_doc()),
        ),
        step(
            "policy simdeny",
            "POST",
            admin("policy/create"),
            vec![("name", "simdeny")],
            Bytes::from(deny_secret_doc()),
        ),
        step(
            "user reader",
            "POST",
            admin("user/add"),
            vec![],
            user(READER, READER_SECRET),
        ),
        step(
            "user stranger",
            "POST",
            admin("user/add"),
            vec![],
            user(STRANGER, STRANGER_SECRET),
        ),
        step("attach", "POST", admin("policy/attach"), vec![], attach),
    ];
    for step in &steps {
        if !until_acked(s3, rng, trace, step).await {
            trace.borrow_mut().violation(format!(
                "access setup step {:?} never acknowledged",
                step.what
            ));
            return false;
        }
    }
    model.borrow_mut().readable = Some(readable);
    true
}

/// The access client. With `planted_bug` root grants the reader `readwrite`, so its "denied"
/// requests succeed and the checker must say so.
pub async fn run_access_client(
    seed: u64,
    until: Duration,
    planted_bug: bool,
    model: Rc<RefCell<AccessModel>>,
    trace: SharedTrace,
) -> turmoil::Result {
    let mut rng = crate::stream(seed, "access");
    let mut root = S3::new();
    if !setup(&mut root, &mut rng, seed, planted_bug, &model, &trace).await {
        return Ok(());
    }
    let Some(readable) = model.borrow().readable.clone() else {
        return Ok(());
    };
    let mut reader = S3::with_credentials(READER, READER_SECRET);
    let mut stranger = S3::with_credentials(STRANGER, STRANGER_SECRET);
    let mut forger = S3::with_credentials(READER, "not-the-reader-secret");
    let rogue_user = Bytes::from(format!(
        r#"{{"access_key":"{ROGUE_USER}","secret_key":"{ROGUE_USER}-secret"}}"#
    ));
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
        let host = host_name(rng.gen_range(0..NODES));
        let readable_path = format!("/{BUCKET}/readable");
        let (who, what, r) = match rng.gen_range(0..10) {
            0 => {
                let r = reader
                    .request(&host, "GET", &readable_path, &[], Bytes::new())
                    .await;
                match &r {
                    Reply::Status(200, body) if *body != readable => {
                        trace
                            .borrow_mut()
                            .violation(format!("reader GET {readable_path} returned other bytes"));
                    }
                    Reply::Status(200, _) => model.borrow_mut().allowed_ok += 1,
                    _ => {}
                }
                trace
                    .borrow_mut()
                    .log(format!("A {host} reader GET readable -> {}", summary(&r)));
                trace.borrow_mut().ops += 1;
                continue;
            }
            1 => {
                let p = format!("/{BUCKET}/secret-doc");
                (
                    "reader",
                    "GET explicitly denied key",
                    reader.request(&host, "GET", &p, &[], Bytes::new()).await,
                )
            }
            2 => {
                let p = format!("/{BUCKET}/forbidden");
                let body = Bytes::from_static(b"must never be stored");
                (
                    "reader",
                    "PUT",
                    reader.request(&host, "PUT", &p, &[], body).await,
                )
            }
            3 => (
                "reader",
                "DELETE",
                reader
                    .request(&host, "DELETE", &readable_path, &[], Bytes::new())
                    .await,
            ),
            4 => (
                "reader",
                "GET in another bucket",
                reader
                    .request(&host, "GET", "/bucket1/key0", &[], Bytes::new())
                    .await,
            ),
            5 => (
                "reader",
                "LIST",
                reader
                    .request(
                        &host,
                        "GET",
                        &format!("/{BUCKET}"),
                        &[("list-type", "2")],
                        Bytes::new(),
                    )
                    .await,
            ),
            6 => (
                "reader",
                "CREATE bucket",
                reader
                    .request(&host, "PUT", &format!("/{ROGUE_BUCKET}"), &[], Bytes::new())
                    .await,
            ),
            7 => (
                "reader",
                "admin user add",
                reader
                    .request(
                        &host,
                        "POST",
                        "/cairn/admin/v1/iam/user/add",
                        &[],
                        rogue_user.clone(),
                    )
                    .await,
            ),
            8 => (
                "stranger",
                "GET",
                stranger
                    .request(&host, "GET", &readable_path, &[], Bytes::new())
                    .await,
            ),
            _ => (
                "forger",
                "GET with a wrong secret",
                forger
                    .request(&host, "GET", &readable_path, &[], Bytes::new())
                    .await,
            ),
        };
        trace
            .borrow_mut()
            .log(format!("A {host} {who} {what} -> {}", summary(&r)));
        trace.borrow_mut().ops += 1;
        model.borrow_mut().denied_sent += 1;
        if acked(&r) {
            trace
                .borrow_mut()
                .violation(format!("denied request succeeded: {who} {what} via {host}"));
        }
    }
    Ok(())
}

/// After the faults: no denied request left a trace, and the reader's grant works on every node.
pub async fn check(model: &Rc<RefCell<AccessModel>>, site: &Site, trace: &SharedTrace) {
    let Some(readable) = model.borrow().readable.clone() else {
        return;
    };
    let mut root = S3::new();
    let mut reader = S3::with_credentials(READER, READER_SECRET);
    for n in 0..NODES {
        let host = host_name(n);
        let mut last = None;
        for _ in 0..30 {
            let r = reader
                .request(
                    &host,
                    "GET",
                    &format!("/{BUCKET}/readable"),
                    &[],
                    Bytes::new(),
                )
                .await;
            if matches!(r, Reply::Status(200, _)) {
                last = Some(r);
                break;
            }
            last = Some(r);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let r = last.unwrap_or(Reply::Lost("not sent".into()));
        trace.borrow_mut().log(format!(
            "CHECK {host} reader GET readable -> {}",
            summary(&r)
        ));
        match r {
            Reply::Status(200, body) if body == readable => {}
            other => trace.borrow_mut().violation(format!(
                "liveness: the reader's allowed GET on {host} -> {}",
                summary(&other)
            )),
        }
    }
    let r = root
        .request(
            &host_name(0),
            "GET",
            &format!("/{BUCKET}/forbidden"),
            &[],
            Bytes::new(),
        )
        .await;
    trace
        .borrow_mut()
        .log(format!("CHECK root GET forbidden -> {}", summary(&r)));
    if acked(&r) {
        trace
            .borrow_mut()
            .violation("a denied PUT stored its object".into());
    }
    if let Some(state) = control_states(site).into_iter().find_map(|(_, s)| s) {
        if state.bucket(ROGUE_BUCKET).is_some() {
            trace
                .borrow_mut()
                .violation(format!("a denied CreateBucket created {ROGUE_BUCKET}"));
        }
        if state.iam.users.contains_key(ROGUE_USER) {
            trace
                .borrow_mut()
                .violation(format!("a denied admin call added user {ROGUE_USER}"));
        }
    }
    let m = model.borrow();
    trace.borrow_mut().log(format!(
        "CHECK access: {} denied requests sent, {} allowed reads succeeded",
        m.denied_sent, m.allowed_ok
    ));
}
