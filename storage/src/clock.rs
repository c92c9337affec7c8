//! Time as a handed-in value (DESIGN.md §9): production code asks a `Clock`, never the OS,
//! so the simulator can run it on virtual time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> i64;

    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.now_ns()))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Converts stored nanoseconds into the timestamp type S3 responses use.
pub fn to_datetime(ns: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// How far ahead of this node's wall clock a timestamp from elsewhere may move its hybrid logical
/// clock. A peer whose clock is set years ahead must not drag every later write of this node
/// into its future; a timestamp beyond this still orders what follows it on its own key
/// ([`Hlc::after`]), only the node-wide clock does not take it.
pub const MAX_AHEAD_NS: i64 = 15 * 60 * 1_000_000_000;

/// A hybrid logical clock over the handed-in wall clock: nanoseconds since the Unix epoch like
/// the wall clock (stored times keep their meaning and encoding), never below the wall clock,
/// strictly increasing, and later than every timestamp it observed. When wall clocks are skewed
/// (between nodes, or between sites) order comes from what was seen, not from which clock runs
/// ahead: a write through a node whose clock is behind still orders after the key's newest
/// version, because the writer observed it ([`Hlc::after`]). The logical part is the low
/// nanoseconds: a tick past an observed time adds one.
pub struct Hlc {
    wall: SharedClock,
    last: std::sync::atomic::AtomicI64,
}

impl Hlc {
    pub fn new(wall: SharedClock) -> Self {
        Self {
            wall,
            last: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// A timestamp later than every one this clock gave or observed, and not below wall time.
    pub fn now_ns(&self) -> i64 {
        use std::sync::atomic::Ordering;
        let wall = self.wall.now_ns();
        let tick = |last: i64| wall.max(last.saturating_add(1));
        match self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| Some(tick(l)))
        {
            Ok(prev) | Err(prev) => tick(prev),
        }
    }

    /// Takes in a timestamp from elsewhere (a replica's time, a peer's change): what this clock
    /// gives later orders after it. Returns false for one too far ahead of the wall clock
    /// ([`MAX_AHEAD_NS`]), which the node-wide clock does not take.
    pub fn observe(&self, remote_ns: i64) -> bool {
        if remote_ns > self.wall.now_ns().saturating_add(MAX_AHEAD_NS) {
            return false;
        }
        self.last
            .fetch_max(remote_ns, std::sync::atomic::Ordering::SeqCst);
        true
    }

    /// A timestamp for a change that follows `seen_ns` (the newest time of what it changes):
    /// later than it, and than everything this clock gave or observed (per-key causal order).
    pub fn after(&self, seen_ns: i64) -> i64 {
        self.observe(seen_ns);
        self.now_ns().max(seen_ns.saturating_add(1))
    }
}

/// A wall clock tests set by hand (feature `testing`): nanoseconds since the epoch in `.0`.
#[cfg(any(test, feature = "testing"))]
pub struct ManualClock(pub std::sync::atomic::AtomicI64);

#[cfg(any(test, feature = "testing"))]
impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    fn hlc(at: i64) -> (Arc<ManualClock>, Hlc) {
        let wall = Arc::new(ManualClock(AtomicI64::new(at)));
        (wall.clone(), Hlc::new(wall))
    }

    #[test]
    fn follows_the_wall_clock_and_never_goes_back() {
        let (wall, c) = hlc(1_000);
        assert_eq!(c.now_ns(), 1_000);
        assert_eq!(
            c.now_ns(),
            1_001,
            "the same wall time ticks the logical part"
        );
        wall.0.store(5_000, Ordering::SeqCst);
        assert_eq!(c.now_ns(), 5_000);
        wall.0.store(2_000, Ordering::SeqCst);
        assert_eq!(c.now_ns(), 5_001, "a clock jumping back does not reorder");
    }

    #[test]
    fn orders_after_what_it_observed_even_on_a_clock_behind() {
        let (_, behind) = hlc(1_000);
        let (_, ahead) = hlc(9_000);
        let theirs = ahead.now_ns();
        assert!(behind.observe(theirs));
        assert!(behind.now_ns() > theirs);
        let (_, fresh) = hlc(1_000);
        assert_eq!(
            fresh.after(theirs),
            theirs + 1,
            "per key, without observing first"
        );
    }

    #[test]
    fn a_far_future_time_orders_its_key_but_does_not_drag_the_clock() {
        let (_, c) = hlc(1_000);
        let future = 1_000 + MAX_AHEAD_NS + 1;
        assert!(!c.observe(future));
        assert!(c.now_ns() < future);
        assert_eq!(c.after(future), future + 1);
        assert!(c.now_ns() < future, "only that key's change went past it");
    }
}
