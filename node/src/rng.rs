//! Named random streams: one root seed, an independent ChaCha20 RNG per consumer name.
//!
//! Consumers that share one RNG, or fork theirs from it in turn, depend on each other's draws:
//! a new consumer, or one more draw by an early one, shifts what every later one gets, so a
//! simulated run (and its trace hash) changes everywhere for a local change. A stream's seed is
//! HMAC-SHA256 of its name under the root seed instead, so it depends on nothing but the root
//! and its own name, whatever other streams exist or draw.

use hmac::{Hmac, Mac};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;

/// Derives a stream per name from one root seed (see the module docs). Production roots it in
/// OS entropy, the simulator in its run seed.
#[derive(Clone)]
pub struct RngStreams {
    root: [u8; 32],
}

impl RngStreams {
    pub fn new(root: [u8; 32]) -> Self {
        Self { root }
    }

    /// Rooted in a 64-bit seed (the simulator's run seed).
    pub fn from_u64(seed: u64) -> Self {
        let mut root = [0u8; 32];
        root[..8].copy_from_slice(&seed.to_le_bytes());
        Self::new(root)
    }

    /// Rooted in 32 bytes drawn from `rng`.
    pub fn from_rng(rng: &mut dyn rand::RngCore) -> Self {
        let mut root = [0u8; 32];
        rng.fill_bytes(&mut root);
        Self::new(root)
    }

    /// The stream called `name`: the same for the same root and name, independent of every other.
    pub fn stream(&self, name: &str) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(self.seed(name))
    }

    /// The streams under `name`, for a consumer that hands out streams of its own (a node of a
    /// simulated site): `sub("node1").stream("iam")` differs from `sub("node2").stream("iam")`.
    pub fn sub(&self, name: &str) -> Self {
        Self::new(self.seed(name))
    }

    /// A 64-bit seed for a consumer that takes one (turmoil, openraft's election timeouts).
    pub fn u64(&self, name: &str) -> u64 {
        let seed = self.seed(name);
        u64::from_le_bytes(seed[..8].try_into().unwrap_or_default())
    }

    fn seed(&self, name: &str) -> [u8; 32] {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.root) else {
            return self.root;
        };
        mac.update(name.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for RngStreams {
    /// The root seed stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RngStreams").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand::RngCore;

    use super::*;

    fn draws(mut rng: ChaCha20Rng) -> [u64; 4] {
        std::array::from_fn(|_| rng.next_u64())
    }

    #[test]
    fn a_stream_depends_only_on_its_root_and_name() {
        let a = RngStreams::from_u64(7);
        let before = draws(a.stream("objects"));
        // Drawing from other streams, or adding one, leaves it as it was.
        let _ = draws(a.stream("iam"));
        let _ = draws(a.stream("new consumer"));
        assert_eq!(draws(RngStreams::from_u64(7).stream("objects")), before);
        assert_ne!(draws(a.stream("iam")), before);
        assert_ne!(draws(RngStreams::from_u64(8).stream("objects")), before);
        assert_ne!(draws(a.sub("node1").stream("objects")), before);
        assert_ne!(
            draws(a.sub("node1").stream("iam")),
            draws(a.sub("node2").stream("iam"))
        );
    }
}
