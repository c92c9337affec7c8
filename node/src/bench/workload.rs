//! What the workers do: the key space, the operation mix, the measured loop, and the prepare/cleanup phases.
//!
//! Keys live under a random per-run prefix. Prepared objects (`<prefix>/obj-N`) are partitioned between workers
//! by `N % concurrency`, so each worker knows exactly which of its keys exist without any coordination; `put`
//! runs write fresh keys (`<prefix>/put-W-N`), each worker counting its own so they can be deleted afterwards.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::{BufPool, GenBody, Xorshift4};
use super::client::{OpError, S3Client};
use super::stats::{OpKind, Stats};

/// The workload selected with `--op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Upload new objects.
    Put,
    /// Download the prepared objects.
    Get,
    /// 45% GET, 30% STAT (HEAD), 15% PUT, 10% DELETE over the prepared objects.
    Mixed,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::Mixed => "mixed",
        }
    }

    /// Whether objects are uploaded before the measured phase.
    pub fn needs_objects(self) -> bool {
        !matches!(self, Self::Put)
    }
}

/// The mixed workload's operation for a uniform random number: 45% GET, 30% STAT, 15% PUT, 10% DELETE.
pub fn mixed_op(r: u64) -> OpKind {
    match r % 100 {
        0..=44 => OpKind::Get,
        45..=74 => OpKind::Stat,
        75..=89 => OpKind::Put,
        _ => OpKind::Delete,
    }
}

/// Everything the workers share about a run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    pub bucket: String,
    pub prefix: String,
    pub size: u64,
    /// Prepared objects (get and mixed); at least `concurrency` so each worker owns one.
    pub objects: usize,
    pub concurrency: usize,
    /// Per-run nonce mixed into every body seed.
    pub seed: u64,
}

impl Plan {
    pub fn object_key(&self, i: usize) -> String {
        format!("{}/obj-{i:08}", self.prefix)
    }

    pub fn put_key(&self, worker: usize, n: u64) -> String {
        format!("{}/put-{worker:04}-{n:010}", self.prefix)
    }

    /// A distinct seed per `(stream, n)`: stream 0 is preparation, stream `w + 1` is worker `w`.
    fn body_seed(&self, stream: usize, n: u64) -> u64 {
        self.seed ^ ((stream as u64) << 40) ^ n
    }

    fn body(&self, stream: usize, n: u64, pool: &BufPool) -> GenBody {
        GenBody::new(self.size, self.body_seed(stream, n), pool.clone())
    }
}

/// Errors printed in full; later ones are only counted.
const PRINTED_ERRORS: usize = 5;
/// With this many failures and not a single success, every request is failing: stop early.
const GIVE_UP_AFTER: u64 = 1000;

/// State shared by the workers of the measured phase.
#[derive(Debug)]
pub struct Shared {
    /// Cancelled when the duration is over, on Ctrl-C, or when every request fails.
    pub stop: CancellationToken,
    ok: AtomicU64,
    failed: AtomicU64,
    printed: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            stop,
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            printed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn success(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    fn failure(&self, op: OpKind, bucket: &str, key: &str, e: &OpError) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        let line = format!("{} {bucket}/{key}: {e}", op.name());
        {
            let mut first = self
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if first.is_none() {
                *first = Some(line.clone());
            }
        }
        match self.printed.fetch_add(1, Ordering::Relaxed) {
            n if n < PRINTED_ERRORS => eprintln!("cairn bench: error: {line}"),
            PRINTED_ERRORS => eprintln!("cairn bench: further errors are counted but not printed"),
            _ => {}
        }
        if failed >= GIVE_UP_AFTER
            && self.ok.load(Ordering::Relaxed) == 0
            && !self.stop.is_cancelled()
        {
            eprintln!("cairn bench: {failed} requests failed and none succeeded: stopping");
            self.stop.cancel();
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One step of a worker, with the bookkeeping needed once it succeeds.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Read the owned object at `present[pos]`.
    Get(usize),
    Stat(usize),
    /// Write a fresh key (put workload).
    PutNew(u64),
    /// Recreate the deleted object at `absent[pos]`.
    PutAbsent(usize),
    /// Overwrite the object at `present[pos]`.
    PutOverwrite(usize),
    Delete(usize),
}

/// What a worker hands back when the measured phase ends.
#[derive(Debug)]
pub struct WorkerResult {
    pub id: usize,
    pub stats: Stats,
    /// Fresh keys this worker may have created (`put_key(worker, 0..puts_created)`).
    pub puts_created: u64,
}

/// One load-generating task.
#[derive(Debug)]
pub struct Worker {
    id: usize,
    plan: Arc<Plan>,
    client: S3Client,
    pool: BufPool,
    rng: Xorshift4,
    /// Indices of owned prepared objects that exist, and of those deleted by the mixed workload.
    present: Vec<usize>,
    absent: Vec<usize>,
    puts: u64,
    stats: Stats,
}

impl Worker {
    pub fn new(id: usize, plan: Arc<Plan>, client: S3Client) -> Self {
        let present = if plan.workload.needs_objects() {
            (id..plan.objects)
                .step_by(plan.concurrency.max(1))
                .collect()
        } else {
            Vec::new()
        };
        let rng = Xorshift4::new(plan.seed.rotate_left(17) ^ id as u64);
        Self {
            id,
            plan,
            client,
            pool: BufPool::new(),
            rng,
            present,
            absent: Vec::new(),
            puts: 0,
            stats: Stats::default(),
        }
    }

    fn pick(&mut self, len: usize) -> usize {
        // Modulo bias is irrelevant for lists this small.
        (self.rng.next_u64() % len.max(1) as u64) as usize
    }

    fn next_action(&mut self) -> Action {
        let op = match self.plan.workload {
            Workload::Put => return Action::PutNew(self.puts),
            Workload::Get => OpKind::Get,
            Workload::Mixed => mixed_op(self.rng.next_u64()),
        };
        match op {
            // With nothing left to read or delete, write instead.
            OpKind::Get | OpKind::Stat | OpKind::Delete if self.present.is_empty() => {
                Action::PutAbsent(self.pick(self.absent.len()))
            }
            OpKind::Get => Action::Get(self.pick(self.present.len())),
            OpKind::Stat => Action::Stat(self.pick(self.present.len())),
            OpKind::Delete => Action::Delete(self.pick(self.present.len())),
            OpKind::Put if self.absent.is_empty() => {
                Action::PutOverwrite(self.pick(self.present.len()))
            }
            OpKind::Put => Action::PutAbsent(self.pick(self.absent.len())),
        }
    }

    fn describe(&self, action: Action) -> (OpKind, String) {
        let plan = &self.plan;
        match action {
            Action::Get(p) => (OpKind::Get, plan.object_key(self.present[p])),
            Action::Stat(p) => (OpKind::Stat, plan.object_key(self.present[p])),
            Action::PutNew(n) => (OpKind::Put, plan.put_key(self.id, n)),
            Action::PutAbsent(p) => (OpKind::Put, plan.object_key(self.absent[p])),
            Action::PutOverwrite(p) => (OpKind::Put, plan.object_key(self.present[p])),
            Action::Delete(p) => (OpKind::Delete, plan.object_key(self.present[p])),
        }
    }

    async fn execute(&mut self, op: OpKind, key: &str) -> Result<u64, OpError> {
        let plan = Arc::clone(&self.plan);
        let (bucket, size) = (&plan.bucket, plan.size);
        match op {
            OpKind::Get => self.client.get_object(bucket, key, Some(size)).await,
            OpKind::Stat => match self.client.head_object(bucket, key).await? {
                len if len == size => Ok(0),
                got => Err(OpError::ShortBody {
                    expected: size,
                    got,
                }),
            },
            OpKind::Put => {
                let n = self.next_put_seq();
                let body = plan.body(self.id + 1, n, &self.pool);
                self.client.put_object(bucket, key, body).await
            }
            OpKind::Delete => self.client.delete_object(bucket, key).await.map(|()| 0),
        }
    }

    /// A number that is distinct for every PUT this worker issues (body seeds).
    fn next_put_seq(&mut self) -> u64 {
        self.puts += 1;
        self.puts - 1
    }

    fn commit(&mut self, action: Action) {
        match action {
            Action::PutAbsent(p) => {
                let i = self.absent.swap_remove(p);
                self.present.push(i);
            }
            Action::Delete(p) => {
                let i = self.present.swap_remove(p);
                self.absent.push(i);
            }
            Action::Get(_) | Action::Stat(_) | Action::PutNew(_) | Action::PutOverwrite(_) => {}
        }
    }

    /// Issues requests back to back until `shared.stop` is cancelled. The request in flight at the
    /// stop is finished but not counted: cutting it would leave the server storing an object after
    /// the cleanup deleted its key.
    pub async fn run(mut self, shared: Arc<Shared>) -> WorkerResult {
        while !shared.stop.is_cancelled() {
            let action = self.next_action();
            let (op, key) = self.describe(action);
            let start = Instant::now();
            let result = self.execute(op, &key).await;
            if shared.stop.is_cancelled() {
                break;
            }
            match result {
                Ok(bytes) => {
                    self.stats.success(op, start.elapsed(), bytes);
                    self.commit(action);
                    shared.success();
                }
                Err(e) => {
                    self.stats.error(op);
                    shared.failure(op, &self.plan.bucket, &key, &e);
                }
            }
        }
        // In the put workload every PUT used a fresh key, including the uncounted last one.
        let puts_created = if self.plan.workload == Workload::Put {
            self.puts
        } else {
            0
        };
        WorkerResult {
            id: self.id,
            stats: self.stats,
            puts_created,
        }
    }
}

/// Runs `f(i)` for every `i` in `0..count` on `concurrency` tasks, each with its own client clone. Stops at the
/// first error when `fail_fast`; returns the number of failures and the first error.
async fn for_each_key<F, Fut>(
    count: usize,
    concurrency: usize,
    client: &S3Client,
    fail_fast: bool,
    f: F,
) -> (usize, Option<String>)
where
    F: Fn(S3Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (S3Client, Result<(), String>)> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let f = Arc::new(f);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (next, failures, first_error, f) = (
            next.clone(),
            failures.clone(),
            first_error.clone(),
            f.clone(),
        );
        let mut client = client.clone();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || (fail_fast && failures.load(Ordering::Relaxed) > 0) {
                    break;
                }
                let (c, result) = f(client, i).await;
                client = c;
                if let Err(e) = result {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(e);
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            failures.fetch_add(1, Ordering::Relaxed);
            first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(format!("task failed: {e}"));
        }
    }
    let first = first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    (failures.load(Ordering::Relaxed), first)
}

/// Uploads the `plan.objects` prepared objects; fails on the first error.
pub async fn prepare(plan: &Arc<Plan>, client: &S3Client) -> anyhow::Result<()> {
    let plan2 = plan.clone();
    let (failures, first) = for_each_key(
        plan.objects,
        plan.concurrency,
        client,
        true,
        move |mut client, i| {
            let plan = plan2.clone();
            async move {
                // One pool per upload is fine here: preparation is not measured.
                let body = plan.body(0, i as u64, &BufPool::new());
                let key = plan.object_key(i);
                let result = client.put_object(&plan.bucket, &key, body).await;
                (
                    client,
                    result
                        .map(|_| ())
                        .map_err(|e| format!("PUT {}/{key}: {e}", plan.bucket)),
                )
            }
        },
    )
    .await;
    match first {
        Some(e) if failures > 0 => anyhow::bail!("preparing objects failed: {e}"),
        _ => Ok(()),
    }
}

/// Deletes every key the run may have created. Returns how many deletions failed and the first error.
/// `puts_created` lists `(worker, count)` as in [`WorkerResult`].
pub async fn cleanup(
    plan: &Arc<Plan>,
    client: &S3Client,
    puts_created: &[(usize, u64)],
) -> (usize, Option<String>) {
    let mut keys: Vec<String> = Vec::new();
    if plan.workload.needs_objects() {
        keys.extend((0..plan.objects).map(|i| plan.object_key(i)));
    }
    for &(worker, n) in puts_created {
        keys.extend((0..n).map(|n| plan.put_key(worker, n)));
    }
    let keys = Arc::new(keys);
    let bucket = Arc::new(plan.bucket.clone());
    let count = keys.len();
    for_each_key(
        count,
        plan.concurrency,
        client,
        false,
        move |mut client, i| {
            let (keys, bucket) = (keys.clone(), bucket.clone());
            async move {
                let key = &keys[i];
                let result = client.delete_object(&bucket, key).await;
                (
                    client,
                    result.map_err(|e| format!("DELETE {bucket}/{key}: {e}")),
                )
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::Signer;

    fn plan(workload: Workload, objects: usize, concurrency: usize) -> Arc<Plan> {
        Arc::new(Plan {
            workload,
            bucket: "b".into(),
            prefix: "bench-1".into(),
            size: 4096,
            objects,
            concurrency,
            seed: 99,
        })
    }

    fn client() -> S3Client {
        S3Client::new(
            "http://127.0.0.1:9",
            Signer::new("a", "b", "us-east-1", "s3"),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn mixed_ratio() {
        let mut counts = [0u32; 4];
        for r in 0..100 {
            counts[mixed_op(r) as usize] += 1;
        }
        // GET, PUT, DELETE, STAT
        assert_eq!(counts, [45, 15, 10, 30]);
    }

    #[test]
    fn workers_partition_the_prepared_objects() {
        let p = plan(Workload::Get, 10, 3);
        let mut all: Vec<usize> = (0..3)
            .flat_map(|w| Worker::new(w, p.clone(), client()).present)
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert!(Worker::new(0, plan(Workload::Put, 10, 3), client())
            .present
            .is_empty());
    }

    #[test]
    fn mixed_bookkeeping_keeps_keys_consistent() {
        let p = plan(Workload::Mixed, 8, 2);
        let mut w = Worker::new(1, p, client());
        for _ in 0..10_000 {
            let action = w.next_action();
            let (op, key) = w.describe(action);
            assert!(key.starts_with("bench-1/obj-"), "{key}");
            if op == OpKind::Put {
                w.next_put_seq();
            }
            w.commit(action);
            let mut owned: Vec<usize> = w.present.iter().chain(&w.absent).copied().collect();
            owned.sort_unstable();
            assert_eq!(owned, [1, 3, 5, 7]);
        }
    }

    #[test]
    fn put_workload_uses_fresh_keys_and_seeds() {
        let p = plan(Workload::Put, 0, 2);
        let mut w = Worker::new(0, p.clone(), client());
        let a = w.next_action();
        assert!(matches!(a, Action::PutNew(0)));
        assert_eq!(w.describe(a).1, "bench-1/put-0000-0000000000");
        assert_ne!(p.body_seed(1, 0), p.body_seed(2, 0));
        assert_ne!(p.body_seed(1, 0), p.body_seed(1, 1));
        assert_ne!(p.body_seed(0, 5), p.body_seed(1, 5));
    }
}
