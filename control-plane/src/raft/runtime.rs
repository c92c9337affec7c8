//! The openraft [`AsyncRuntime`] of the control plane: tokio for tasks and time (so the simulator's
//! paused, simulated tokio clock drives elections and heartbeats), and a **seeded** RNG for the
//! randomised election timeouts.
//!
//! openraft draws every election timeout from [`AsyncRuntime::thread_rng`]; the stock
//! [`TokioRuntime`](openraft::TokioRuntime) answers with `rand::thread_rng()`, which is seeded from
//! the OS and would make a simulated run unrepeatable. Here each thread owns a ChaCha RNG seeded
//! from one process-wide seed: [`set_seed`] fixes it (the simulator does, before starting nodes),
//! otherwise it is drawn once from OS entropy. This module is the only place the control plane
//! reads entropy (DESIGN.md §9).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use rand::rngs::OsRng;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// The process-wide seed and a generation counter: [`set_seed`] bumps the generation so that every
/// thread re-seeds its RNG on its next draw.
struct SeedState {
    seed: AtomicU64,
    generation: AtomicU64,
    /// Hands out one stream per thread, so threads draw different but reproducible sequences.
    next_stream: AtomicU64,
}

fn seed_state() -> &'static SeedState {
    static STATE: OnceLock<SeedState> = OnceLock::new();
    STATE.get_or_init(|| SeedState {
        seed: AtomicU64::new(OsRng.next_u64()),
        generation: AtomicU64::new(0),
        next_stream: AtomicU64::new(0),
    })
}

/// Fixes the seed of every Raft RNG in this process (all threads re-seed on their next draw).
/// The simulator calls this with its run seed before it starts any node; production never does.
pub fn set_seed(seed: u64) {
    let state = seed_state();
    state.seed.store(seed, Ordering::SeqCst);
    state.next_stream.store(0, Ordering::SeqCst);
    state.generation.fetch_add(1, Ordering::SeqCst);
}

/// The process-wide seed in effect.
pub fn seed() -> u64 {
    seed_state().seed.load(Ordering::SeqCst)
}

struct ThreadRngState {
    generation: u64,
    rng: ChaCha12Rng,
}

thread_local! {
    static THREAD_RNG: Rc<RefCell<Option<ThreadRngState>>> = Rc::new(RefCell::new(None));
}

/// This thread's seeded RNG. Like `rand::rngs::ThreadRng` it is a cheap handle on per-thread state
/// and cannot leave its thread.
#[derive(Clone, Debug)]
pub struct SeededThreadRng {
    inner: Rc<RefCell<Option<ThreadRngState>>>,
}

impl std::fmt::Debug for ThreadRngState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadRngState")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl SeededThreadRng {
    pub fn current() -> Self {
        Self {
            inner: THREAD_RNG.with(Rc::clone),
        }
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut ChaCha12Rng) -> R) -> R {
        let state = seed_state();
        let generation = state.generation.load(Ordering::SeqCst);
        let mut slot = self.inner.borrow_mut();
        if slot.as_ref().is_some_and(|s| s.generation != generation) {
            *slot = None;
        }
        let current = slot.get_or_insert_with(|| {
            let mut rng = ChaCha12Rng::seed_from_u64(state.seed.load(Ordering::SeqCst));
            rng.set_stream(state.next_stream.fetch_add(1, Ordering::SeqCst));
            ThreadRngState { generation, rng }
        });
        f(&mut current.rng)
    }
}

impl RngCore for SeededThreadRng {
    fn next_u32(&mut self) -> u32 {
        self.with(|r| r.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        self.with(|r| r.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.with(|r| r.fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.with(|r| r.try_fill_bytes(dest))
    }
}

/// tokio for everything but the RNG (see the module docs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CairnRuntime;

impl AsyncRuntime for CairnRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = SeededThreadRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SeededThreadRng::current()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    fn draws() -> Vec<u64> {
        let mut rng = CairnRuntime::thread_rng();
        (0..8).map(|_| rng.gen_range(150..300)).collect()
    }

    /// One test (not several) because the seed is process-wide and tests run in parallel.
    #[test]
    fn same_seed_same_timeouts() {
        set_seed(7);
        assert_eq!(seed(), 7);
        let first = std::thread::spawn(draws).join().unwrap();
        set_seed(7);
        let again = std::thread::spawn(draws).join().unwrap();
        assert_eq!(first, again);
        set_seed(8);
        let other = std::thread::spawn(draws).join().unwrap();
        assert_ne!(first, other);
        assert!(first.iter().all(|t| (150..300).contains(t)));
    }
}
