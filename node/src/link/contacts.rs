//! What this node saw of each peer endpoint it calls: when it last answered, the last error, the
//! versions it took and how long after their write (lag), and the latest items that failed. The
//! link records the calls, the object replicator the versions; `cairn admin site status` shows
//! them. Each node keeps its own (the leader pushes control-plane changes, the node that took a
//! write replicates it), in memory: a restart starts them afresh.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::clock::SharedClock;

/// Lags kept per peer for the percentiles (the most recent ones).
const LAG_WINDOW: usize = 1024;
/// Failed items kept per peer (the most recent ones).
const FAILED_KEPT: usize = 16;
/// Longest error text kept.
const MAX_REASON: usize = 300;

#[derive(Debug, Default)]
struct Seen {
    last_answer_ns: Option<i64>,
    last_error: Option<(i64, String)>,
    unreachable_in_a_row: u64,
    versions: u64,
    bytes: u64,
    lags_ms: VecDeque<u64>,
    failed: VecDeque<(i64, String)>,
    failures: u64,
}

/// One peer endpoint as [`Contacts::report`] shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Contact {
    pub endpoint: String,
    /// It answered the last call (any HTTP status: it is up, even if it refused).
    pub online: bool,
    /// When it last answered, nanoseconds since the epoch.
    pub last_contact_ns: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ns: Option<i64>,
    /// Object versions it took from this node, and their bytes.
    pub versions_replicated: u64,
    pub bytes_replicated: u64,
    /// From a version's write to the peer's acknowledgement, over the recent versions.
    pub lag_p50_ms: Option<u64>,
    pub lag_p99_ms: Option<u64>,
    /// The latest items that failed: (nanoseconds since the epoch, what and why).
    pub failed: Vec<(i64, String)>,
    /// Items that failed since start-up (the metrics' counter; `failed` keeps the latest only).
    #[serde(default)]
    pub failures: u64,
}

/// Per-endpoint bookkeeping; cheap to call from every request.
pub struct Contacts {
    clock: SharedClock,
    seen: Mutex<BTreeMap<String, Seen>>,
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(last * p / 100).copied()
}

impl Contacts {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    fn with<T>(&self, endpoint: &str, f: impl FnOnce(&mut Seen, i64) -> T) -> T {
        let now = self.clock.now_ns();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(seen.entry(endpoint.to_owned()).or_default(), now)
    }

    /// A call got an HTTP answer; `error` is the refusal when it was not a 2xx.
    pub fn answered(&self, endpoint: &str, error: Option<String>) {
        self.with(endpoint, |s, now| {
            s.last_answer_ns = Some(now);
            s.unreachable_in_a_row = 0;
            if let Some(e) = error {
                s.last_error = Some((now, clip(e)));
            }
        });
    }

    /// A call got no answer.
    pub fn unreachable(&self, endpoint: &str, error: String) {
        self.with(endpoint, |s, now| {
            s.unreachable_in_a_row += 1;
            s.last_error = Some((now, clip(error)));
        });
    }

    /// The peer took a version of `bytes` written at `written_ns`.
    pub fn replicated(&self, endpoint: &str, written_ns: i64, bytes: u64) {
        self.with(endpoint, |s, now| {
            s.versions += 1;
            s.bytes = s.bytes.saturating_add(bytes);
            if s.lags_ms.len() == LAG_WINDOW {
                s.lags_ms.pop_front();
            }
            let lag = u64::try_from(now.saturating_sub(written_ns) / 1_000_000).unwrap_or(0);
            s.lags_ms.push_back(lag);
        });
    }

    /// An item (a version, a batch of changes) the peer did not take, and why.
    pub fn failed(&self, endpoint: &str, what: String) {
        self.with(endpoint, |s, now| {
            if s.failed.len() == FAILED_KEPT {
                s.failed.pop_front();
            }
            s.failed.push_back((now, clip(what)));
            s.failures += 1;
        });
    }

    /// Every endpoint this node has called or replicated to.
    pub fn endpoints(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// What this node saw of `endpoint` (nothing yet: offline, no contact).
    pub fn report(&self, endpoint: &str) -> Contact {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = seen.get(endpoint);
        let mut lags: Vec<u64> = s
            .map(|s| s.lags_ms.iter().copied().collect())
            .unwrap_or_default();
        lags.sort_unstable();
        Contact {
            endpoint: endpoint.to_owned(),
            online: s.is_some_and(|s| s.last_answer_ns.is_some() && s.unreachable_in_a_row == 0),
            last_contact_ns: s.and_then(|s| s.last_answer_ns),
            last_error: s.and_then(|s| s.last_error.as_ref().map(|e| e.1.clone())),
            last_error_ns: s.and_then(|s| s.last_error.as_ref().map(|e| e.0)),
            versions_replicated: s.map_or(0, |s| s.versions),
            bytes_replicated: s.map_or(0, |s| s.bytes),
            lag_p50_ms: percentile(&lags, 50),
            lag_p99_ms: percentile(&lags, 99),
            failed: s
                .map(|s| s.failed.iter().cloned().collect())
                .unwrap_or_default(),
            failures: s.map_or(0, |s| s.failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::clock::Clock;

    struct Manual(AtomicI64);

    impl Clock for Manual {
        fn now_ns(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn contacts_track_answers_errors_lag_and_failures() {
        let clock = Arc::new(Manual(AtomicI64::new(1_000_000_000)));
        let c = Contacts::new(clock.clone());
        let ep = "https://b.example:9000";
        let none = c.report(ep);
        assert!(!none.online && none.last_contact_ns.is_none() && none.lag_p50_ms.is_none());
        c.answered(ep, None);
        assert!(c.report(ep).online);
        c.unreachable(ep, "connect: refused".into());
        let down = c.report(ep);
        assert!(!down.online);
        assert_eq!(down.last_contact_ns, Some(1_000_000_000));
        assert_eq!(down.last_error.as_deref(), Some("connect: refused"));
        // A refusal is an answer: the peer is up.
        c.answered(ep, Some("HTTP 403".into()));
        assert!(c.report(ep).online);
        for lag_ms in 1..=100 {
            clock.0.store(10_000_000_000, Ordering::SeqCst);
            c.replicated(ep, 10_000_000_000 - lag_ms * 1_000_000, 10);
        }
        let r = c.report(ep);
        assert_eq!((r.versions_replicated, r.bytes_replicated), (100, 1_000));
        assert_eq!((r.lag_p50_ms, r.lag_p99_ms), (Some(50), Some(99)));
        for i in 0..(FAILED_KEPT + 3) {
            c.failed(ep, format!("v{i}: {}", "x".repeat(MAX_REASON * 2)));
        }
        let r = c.report(ep);
        assert_eq!(r.failed.len(), FAILED_KEPT);
        assert_eq!(r.failures, FAILED_KEPT as u64 + 3);
        assert_eq!(c.endpoints(), vec![ep.to_owned()]);
        assert!(r.failed[0].1.starts_with("v3: "), "oldest dropped first");
        assert!(r.failed.iter().all(|(_, w)| w.len() <= MAX_REASON));
    }
}
