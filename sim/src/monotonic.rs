//! `std::time::Instant` on simulated time, on the thread that runs a simulation.
//!
//! turmoil moves tokio's clock, but some dependencies read the operating system's monotonic
//! clock themselves. h2 is one: it forgets a stream it reset one second of `Instant::now()` after
//! the reset, and answers a late frame for it with a `RST_STREAM` of its own after that, but not
//! before. A run of a few wall seconds covering a minute of simulated time then depends on how
//! fast the machine runs it (a slower run sends more messages, the network draws more latencies,
//! and the trace changes), so a seed replayed in a fresh process gave one of several traces.
//!
//! While a run is active on a thread ([`enter`]), that thread's monotonic clock reads a fixed
//! origin plus the simulation's elapsed time ([`advance`] after every step). The `cairn-sim`
//! binary routes the C library's `clock_gettime` here ([`clock_gettime`]); other threads, and
//! every other clock (the wall clock s3s checks signatures against), read the real ones. Test
//! binaries that run seeds in-process do not route it and keep the real clock: exact replay is a
//! property of the binary.
//!
//! The origin is the real monotonic time when the run starts (or where the previous run on the
//! thread left the clock, if later), so the clock never goes back on the thread. Only differences
//! of `Instant`s reach behaviour, and those are simulated.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    /// The simulated monotonic time of this thread in nanoseconds while a run is active.
    static SIMULATED: Cell<Option<u64>> = const { Cell::new(None) };
    /// Where the last run on this thread left the clock.
    static LAST: Cell<u64> = const { Cell::new(0) };
    /// The clock at the start of the active run (its elapsed time zero).
    static ORIGIN: Cell<u64> = const { Cell::new(0) };
}

/// Puts this thread's monotonic clock on simulated time until the guard drops.
pub fn enter() -> Simulated {
    let origin = real_ns().max(LAST.with(Cell::get));
    ORIGIN.with(|o| o.set(origin));
    SIMULATED.with(|s| s.set(Some(origin)));
    Simulated(())
}

/// Moves this thread's simulated clock to `elapsed` after the start of the run.
pub fn advance(elapsed: Duration) {
    let origin = ORIGIN.with(Cell::get);
    let now = origin.saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    SIMULATED.with(|s| {
        if s.get().is_some() {
            s.set(Some(now));
        }
    });
}

/// The active run's clock on this thread; the real clock again once dropped.
pub struct Simulated(());

impl Drop for Simulated {
    fn drop(&mut self) {
        if let Some(now) = SIMULATED.with(|s| s.take()) {
            LAST.with(|l| l.set(now));
        }
    }
}

/// This thread's simulated monotonic time, while a run is active on it.
fn simulated_ns() -> Option<u64> {
    SIMULATED.try_with(Cell::get).ok().flatten()
}

/// The kernel's monotonic clock, bypassing any `clock_gettime` the binary defines.
fn real_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// What the binary's `clock_gettime` does: the monotonic clock of a thread running a simulation
/// from [`enter`] and [`advance`], every other clock from the kernel.
///
/// # Safety
/// `tp` must be valid for writing a `timespec` (the C function's contract).
pub unsafe fn clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> libc::c_int {
    if clock == libc::CLOCK_MONOTONIC && !tp.is_null() {
        if let Some(ns) = simulated_ns() {
            // SAFETY: the caller hands a writable timespec.
            unsafe {
                (*tp).tv_sec = (ns / 1_000_000_000) as libc::time_t;
                (*tp).tv_nsec = (ns % 1_000_000_000) as libc::c_long;
            }
            return 0;
        }
    }
    // SAFETY: the same contract as the C function.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clock, tp) as libc::c_int }
}
