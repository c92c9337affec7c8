//! When a failed send is tried again: exponential backoff with jitter, capped, never given up.
//!
//! Two levels, so a peer that is down costs neither a tight loop nor a try per version: a peer
//! whose last call did not get through (unreachable, or a 5xx) is not called again before its
//! next try, whatever versions wait for it (what this node saw of the peer, `next_retry_ns`, is
//! kept in `link::contacts` and shown by `cairn admin site status`); and each version that did
//! not reach every peer waits its own delay before the replicator takes it again. The version
//! stays PENDING in its record all along, so a restart loses no retry (the leader's rescan finds
//! it). The control-plane outbox and resyncs wait out the same schedule after a round that
//! failed. The jitter comes from a named random stream (`crate::rng`), the times from the
//! handed-in clock, so the simulator replays it.

use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, RngCore};

use crate::clock::SharedClock;
use crate::link::contacts::Contacts;
use crate::link::LinkError;

/// The first wait after a failure.
pub const FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two tries.
pub const CAP: Duration = Duration::from_secs(30);

/// The wait after `failures` failures in a row (at least 1): `FIRST * 2^(failures-1)`, capped at
/// [`CAP`], of which a random half is taken off (equal jitter), so tries that failed together
/// spread out.
pub fn delay(failures: u32, rng: &mut dyn RngCore) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let full = FIRST.saturating_mul(1 << doublings).min(CAP);
    let half = full / 2;
    let ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(rng.gen_range(0..=ms))
}

/// Whether a failed call says the peer as a whole is not taking calls (no connection, or it
/// answered 5xx), rather than refusing this one item.
pub fn peer_down(e: &LinkError) -> bool {
    match e {
        LinkError::Status { status, .. } => *status >= 500,
        LinkError::Endpoint(_) | LinkError::NoEndpoint(_) | LinkError::Unreachable { .. } => true,
    }
}

/// The schedule of one node's replicator: its random stream and clock.
pub struct Retry {
    clock: SharedClock,
    rng: Mutex<Box<dyn RngCore + Send>>,
}

impl Retry {
    pub fn new(clock: SharedClock, rng: Box<dyn RngCore + Send>) -> Self {
        Self {
            clock,
            rng: Mutex::new(rng),
        }
    }

    /// The wait after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        delay(failures, &mut **rng)
    }

    /// Whether peer `peer` may be called now: it is not waiting out a backoff, or this caller
    /// takes its next try (one caller per round; [`Retry::called`] must follow).
    pub fn ready(&self, contacts: &Contacts, peer: &str) -> bool {
        contacts.take_turn(peer, i64::try_from(CAP.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Notes how a call to peer `peer` went: a call that says the peer is down puts its next try
    /// off by the next delay; any other outcome lets it be called at once again.
    pub fn called(&self, contacts: &Contacts, peer: &str, result: Result<(), &LinkError>) {
        match result {
            Err(e) if peer_down(e) => {
                let failures = contacts.failing(peer) + 1;
                let wait = self.delay(failures);
                let at = self
                    .clock
                    .now_ns()
                    .saturating_add(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX));
                contacts.backing_off(peer, failures, at);
            }
            _ => contacts.backing_off(peer, 0, 0),
        }
    }

    /// The caller that took peer `peer`'s turn ([`Retry::ready`]) did not call it after all (the
    /// version could not be read here): the turn is free again, the failures in a row stay.
    pub fn not_called(&self, contacts: &Contacts, peer: &str) {
        let failures = contacts.failing(peer);
        if failures > 0 {
            contacts.backing_off(peer, failures, self.clock.now_ns());
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn delays_double_from_the_first_up_to_the_cap_with_half_jitter() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for failures in 1..=40u32 {
            let full = FIRST
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(CAP);
            for _ in 0..50 {
                let d = delay(failures, &mut rng);
                assert!(d >= full / 2 && d <= full, "{failures}: {d:?} of {full:?}");
            }
        }
        let first = delay(0, &mut rng);
        assert!(first >= FIRST / 2 && first <= FIRST, "{first:?}");
        assert!(delay(u32::MAX, &mut rng) <= CAP, "never past the cap");
        // Jitter spreads tries that failed together.
        let spread: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| delay(6, &mut rng)).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }

    struct Manual(std::sync::atomic::AtomicI64);

    impl crate::clock::Clock for Manual {
        fn now_ns(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn a_peer_down_waits_longer_after_each_failure_and_none_after_a_success() {
        let clock = std::sync::Arc::new(Manual(0.into()));
        let contacts = Contacts::new(clock.clone());
        let retry = Retry::new(
            clock.clone(),
            Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(1)),
        );
        let down = LinkError::Unreachable {
            endpoint: "e".into(),
            reason: "refused".into(),
        };
        assert!(retry.ready(&contacts, "b"), "never failed: ready");
        let mut last_wait = 0;
        for failures in 1..=12u32 {
            let now = clock.0.load(std::sync::atomic::Ordering::SeqCst);
            retry.called(&contacts, "b", Err(&down));
            assert_eq!(contacts.failing("b"), failures);
            let at = contacts.next_retry_ns("b").expect("a next try");
            let wait = at - now;
            let full = i64::try_from(
                FIRST
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(CAP)
                    .as_nanos(),
            )
            .expect("fits");
            assert!(wait >= full / 2 && wait <= full, "{failures}: {wait}");
            if full < i64::try_from(CAP.as_nanos()).expect("fits") {
                assert!(wait >= last_wait / 2, "{failures}: grows");
            }
            last_wait = wait;
            assert!(!retry.ready(&contacts, "b"), "not before its time");
            assert!(retry.ready(&contacts, "c"), "per peer");
            clock.0.store(at, std::sync::atomic::Ordering::SeqCst);
            assert!(retry.ready(&contacts, "b"), "at its time");
            assert!(!retry.ready(&contacts, "b"), "one caller per round");
        }
        // A clock gone back does not hold the peer off for longer than the cap.
        clock.0.store(0, std::sync::atomic::Ordering::SeqCst);
        assert!(retry.ready(&contacts, "b"));
        assert!(contacts.report("b", &[]).next_retry_ns.is_some(), "shown");
        // A refusal of one item says nothing of the peer.
        let refused = LinkError::Status {
            endpoint: "e".into(),
            status: 400,
            message: String::new(),
        };
        retry.called(&contacts, "b", Err(&refused));
        assert_eq!(contacts.failing("b"), 0);
        assert!(retry.ready(&contacts, "b"));
        assert_eq!(contacts.report("b", &[]).next_retry_ns, None);
        retry.called(&contacts, "b", Err(&down));
        retry.called(&contacts, "b", Ok(()));
        assert_eq!(contacts.failing("b"), 0, "a success starts afresh");
    }

    #[test]
    fn only_a_peer_that_is_down_is_backed_off() {
        let unreachable = LinkError::Unreachable {
            endpoint: "e".into(),
            reason: "refused".into(),
        };
        let status = |status| LinkError::Status {
            endpoint: "e".into(),
            status,
            message: String::new(),
        };
        assert!(peer_down(&unreachable) && peer_down(&status(503)));
        assert!(!peer_down(&status(400)) && !peer_down(&status(403)));
    }
}
