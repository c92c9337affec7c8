//! What this node saw of each peer it calls: per endpoint, when it last answered and the last
//! error (which also orders the endpoints a call tries); per peer, the versions it took and how
//! long after their write (lag), and the latest items that failed. The link records the calls,
//! the replicators the items; `cairn admin site status` shows them. Each node keeps its own (the
//! leader pushes control-plane changes, the node that took a write replicates it), in memory: a
//! restart starts them afresh.

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

/// One endpoint's calls.
#[derive(Debug, Default)]
struct Calls {
    last_answer_ns: Option<i64>,
    last_error: Option<(i64, String)>,
    unreachable_in_a_row: u64,
}

/// One peer's items.
#[derive(Debug, Default)]
struct Items {
    versions: u64,
    bytes: u64,
    lags_ms: VecDeque<u64>,
    failed: VecDeque<(i64, String)>,
    failures: u64,
    /// Calls in a row that found it down, and when the replicator calls it again.
    failing: u32,
    next_retry_ns: Option<i64>,
}

#[derive(Debug, Default)]
struct Seen {
    endpoints: BTreeMap<String, Calls>,
    peers: BTreeMap<String, Items>,
}

/// One endpoint of a peer as [`Contacts::report`] shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EndpointContact {
    pub endpoint: String,
    /// It answered the last call (any HTTP status: it is up, even if it refused).
    pub online: bool,
    /// When it last answered, nanoseconds since the epoch.
    pub last_contact_ns: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ns: Option<i64>,
}

/// One peer as [`Contacts::report`] shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Contact {
    pub peer: String,
    /// One of its endpoints answered its last call.
    pub online: bool,
    /// When one of its endpoints last answered, nanoseconds since the epoch.
    pub last_contact_ns: Option<i64>,
    /// The latest error of one of its endpoints.
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
    /// Each endpoint, in the order the next call tries them.
    #[serde(default)]
    pub endpoints: Vec<EndpointContact>,
    /// Calls in a row that found it down (unreachable or 5xx); 0 once one got through.
    #[serde(default)]
    pub failing_in_a_row: u32,
    /// While it is down: when the replicator calls it next (backoff), nanoseconds since the
    /// epoch; until then no version is sent to it.
    #[serde(default)]
    pub next_retry_ns: Option<i64>,
}

/// Per-endpoint and per-peer bookkeeping; cheap to call from every request.
pub struct Contacts {
    clock: SharedClock,
    seen: Mutex<Seen>,
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
            seen: Mutex::new(Seen::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Seen, i64) -> T) -> T {
        let now = self.clock.now_ns();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut seen, now)
    }

    fn calls<T>(&self, endpoint: &str, f: impl FnOnce(&mut Calls, i64) -> T) -> T {
        self.with(|s, now| f(s.endpoints.entry(endpoint.to_owned()).or_default(), now))
    }

    fn items<T>(&self, peer: &str, f: impl FnOnce(&mut Items, i64) -> T) -> T {
        self.with(|s, now| f(s.peers.entry(peer.to_owned()).or_default(), now))
    }

    /// A call got an HTTP answer; `error` is the refusal when it was not a 2xx.
    pub fn answered(&self, endpoint: &str, error: Option<String>) {
        self.calls(endpoint, |s, now| {
            s.last_answer_ns = Some(now);
            s.unreachable_in_a_row = 0;
            if let Some(e) = error {
                s.last_error = Some((now, clip(e)));
            }
        });
    }

    /// A call got no answer.
    pub fn unreachable(&self, endpoint: &str, error: String) {
        self.calls(endpoint, |s, now| {
            s.unreachable_in_a_row += 1;
            s.last_error = Some((now, clip(error)));
        });
    }

    /// `endpoints` in the order a call tries them: those that answered their last call, the one
    /// that answered last first; then those never called, as given; then those that did not
    /// answer, the one that failed longest ago first (so a call goes round the dead ones).
    pub fn order(&self, endpoints: &[String]) -> Vec<String> {
        // No clock read: the simulator's clock is a handed-in value its traces count on.
        let s = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut ranked: Vec<((u8, i64), usize, &String)> = endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let rank = match s.endpoints.get(e) {
                        Some(c) if c.unreachable_in_a_row == 0 && c.last_answer_ns.is_some() => {
                            (0, -c.last_answer_ns.unwrap_or(0))
                        }
                        None => (1, 0),
                        Some(c) => (2, c.last_error.as_ref().map_or(0, |e| e.0)),
                    };
                    (rank, i, e)
                })
                .collect();
            ranked.sort();
            ranked.into_iter().map(|(_, _, e)| e.clone()).collect()
        }
    }

    /// Peer `peer` took a version of `bytes` written at `written_ns`.
    pub fn replicated(&self, peer: &str, written_ns: i64, bytes: u64) {
        self.items(peer, |s, now| {
            s.versions += 1;
            s.bytes = s.bytes.saturating_add(bytes);
            if s.lags_ms.len() == LAG_WINDOW {
                s.lags_ms.pop_front();
            }
            let lag = u64::try_from(now.saturating_sub(written_ns) / 1_000_000).unwrap_or(0);
            s.lags_ms.push_back(lag);
        });
    }

    /// An item (a version, a batch of changes) peer `peer` did not take, and why.
    pub fn failed(&self, peer: &str, what: String) {
        self.items(peer, |s, now| {
            if s.failed.len() == FAILED_KEPT {
                s.failed.pop_front();
            }
            s.failed.push_back((now, clip(what)));
            s.failures += 1;
        });
    }

    /// Peer `peer` was found down `failures` times in a row and is called again at `at_ns`; no
    /// failures: it got through, and is called at once.
    pub fn backing_off(&self, peer: &str, failures: u32, at_ns: i64) {
        self.items(peer, |s, _| {
            s.failing = failures;
            s.next_retry_ns = (failures > 0).then_some(at_ns);
        });
    }

    /// Calls in a row that found peer `peer` down.
    pub fn failing(&self, peer: &str) -> u32 {
        self.items(peer, |s, _| s.failing)
    }

    /// When peer `peer`, found down, is called again (none: at once).
    pub fn next_retry_ns(&self, peer: &str) -> Option<i64> {
        self.items(peer, |s, _| s.next_retry_ns)
    }

    /// Whether a call to peer `peer` may go now: it is not backing off, or its next try has come
    /// (or lies more than `max_wait_ns` ahead: the clock went back). A found-down peer's next try
    /// is taken by one caller only: it moves to `max_wait_ns` from now until that caller reports
    /// how the call went ([`Contacts::backing_off`]), so a peer down gets one call per round.
    pub fn take_turn(&self, peer: &str, max_wait_ns: i64) -> bool {
        self.items(peer, |s, now| match s.next_retry_ns {
            None => true,
            Some(at) if now >= at || at.saturating_sub(now) > max_wait_ns => {
                s.next_retry_ns = Some(now.saturating_add(max_wait_ns));
                true
            }
            Some(_) => false,
        })
    }

    /// What this node saw of peer `peer`, reached at `endpoints` (nothing yet: offline, no
    /// contact).
    pub fn report(&self, peer: &str, endpoints: &[String]) -> Contact {
        let order = self.order(endpoints);
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let endpoints: Vec<EndpointContact> = order
            .into_iter()
            .map(|e| {
                let c = seen.endpoints.get(&e);
                EndpointContact {
                    online: c
                        .is_some_and(|c| c.last_answer_ns.is_some() && c.unreachable_in_a_row == 0),
                    last_contact_ns: c.and_then(|c| c.last_answer_ns),
                    last_error: c.and_then(|c| c.last_error.as_ref().map(|e| e.1.clone())),
                    last_error_ns: c.and_then(|c| c.last_error.as_ref().map(|e| e.0)),
                    endpoint: e,
                }
            })
            .collect();
        let items = seen.peers.get(peer);
        let mut lags: Vec<u64> = items
            .map(|s| s.lags_ms.iter().copied().collect())
            .unwrap_or_default();
        lags.sort_unstable();
        let failed: Vec<(i64, String)> = items
            .map(|s| s.failed.iter().cloned().collect())
            .unwrap_or_default();
        let last_error = endpoints
            .iter()
            .filter_map(|e| Some((e.last_error_ns?, e.last_error.clone()?)))
            .max_by_key(|e| e.0);
        Contact {
            peer: peer.to_owned(),
            online: endpoints.iter().any(|e| e.online),
            last_contact_ns: endpoints.iter().filter_map(|e| e.last_contact_ns).max(),
            last_error_ns: last_error.as_ref().map(|e| e.0),
            last_error: last_error.map(|e| e.1),
            versions_replicated: items.map_or(0, |s| s.versions),
            bytes_replicated: items.map_or(0, |s| s.bytes),
            lag_p50_ms: percentile(&lags, 50),
            lag_p99_ms: percentile(&lags, 99),
            failed,
            failures: items.map_or(0, |s| s.failures),
            endpoints,
            failing_in_a_row: items.map_or(0, |s| s.failing),
            next_retry_ns: items.and_then(|s| s.next_retry_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock as Manual;

    #[test]
    fn contacts_track_answers_errors_lag_and_failures() {
        let clock = Arc::new(Manual(AtomicI64::new(1_000_000_000)));
        let c = Contacts::new(clock.clone());
        let ep = "https://b.example:9000";
        let eps = [ep.to_owned()];
        let none = c.report("b", &eps);
        assert!(!none.online && none.last_contact_ns.is_none() && none.lag_p50_ms.is_none());
        c.answered(ep, None);
        assert!(c.report("b", &eps).online);
        c.unreachable(ep, "connect: refused".into());
        let down = c.report("b", &eps);
        assert!(!down.online);
        assert_eq!(down.last_contact_ns, Some(1_000_000_000));
        assert_eq!(down.last_error.as_deref(), Some("connect: refused"));
        // A refusal is an answer: the peer is up.
        c.answered(ep, Some("HTTP 403".into()));
        assert!(c.report("b", &eps).online);
        for lag_ms in 1..=100 {
            clock.0.store(10_000_000_000, Ordering::SeqCst);
            c.replicated("b", 10_000_000_000 - lag_ms * 1_000_000, 10);
        }
        let r = c.report("b", &eps);
        assert_eq!((r.versions_replicated, r.bytes_replicated), (100, 1_000));
        assert_eq!((r.lag_p50_ms, r.lag_p99_ms), (Some(50), Some(99)));
        for i in 0..(FAILED_KEPT + 3) {
            c.failed("b", format!("v{i}: {}", "x".repeat(MAX_REASON * 2)));
        }
        let r = c.report("b", &eps);
        assert_eq!(r.failed.len(), FAILED_KEPT);
        assert_eq!(r.failures, FAILED_KEPT as u64 + 3);
        assert!(r.failed[0].1.starts_with("v3: "), "oldest dropped first");
        assert!(r.failed.iter().all(|(_, w)| w.len() <= MAX_REASON));
        assert_eq!(c.report("c", &eps).versions_replicated, 0, "per peer");
    }

    #[test]
    fn calls_prefer_the_endpoint_that_answered_last_and_go_round_dead_ones() {
        let clock = Arc::new(Manual(AtomicI64::new(1)));
        let c = Contacts::new(clock.clone());
        let eps: Vec<String> = ["http://p:1", "http://q:1", "http://r:1"]
            .map(String::from)
            .to_vec();
        let at = |ns: i64| clock.0.store(ns, Ordering::SeqCst);
        assert_eq!(c.order(&eps), eps, "untried: as given");
        c.unreachable("http://p:1", "refused".into());
        at(2);
        c.answered("http://q:1", Some("HTTP 503".into()));
        assert_eq!(c.order(&eps), ["http://q:1", "http://r:1", "http://p:1"]);
        at(3);
        c.answered("http://r:1", None);
        assert_eq!(c.order(&eps), ["http://r:1", "http://q:1", "http://p:1"]);
        at(4);
        c.unreachable("http://r:1", "timed out".into());
        at(5);
        c.unreachable("http://q:1", "refused".into());
        assert_eq!(
            c.order(&eps),
            ["http://p:1", "http://r:1", "http://q:1"],
            "all down: the one that failed longest ago first"
        );
        let r = c.report("b", &eps);
        assert!(!r.online && r.endpoints.iter().all(|e| !e.online));
        assert_eq!(r.last_contact_ns, Some(3));
        assert_eq!(r.last_error.as_deref(), Some("refused"));
        assert_eq!(r.endpoints[0].endpoint, "http://p:1");
    }
}
