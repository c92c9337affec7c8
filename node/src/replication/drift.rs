//! Per-entity drift between paired sites, as `cairn admin site status` shows it (like
//! `mc admin replicate status`): which buckets, users, groups, policies, service accounts and
//! directory mappings one site has and the other lacks or holds differently.
//!
//! Each site summarises its control-plane state as a [`Digest`]: one MAC per entity under the
//! pair's replication secret, so the answer tells the peer nothing it could not read from its own
//! state, and a user's secret takes part without crossing (a rotation one site missed shows as
//! drift). Secrets are sealed under each site's own key, so they are opened and MACed in clear.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use cairn_control_plane::iam::identity::SealedSecret;
use cairn_control_plane::SiteState;

use crate::auth::sealing::SecretSealer;

/// Admin operation a peer answers with its digest (the pair's replication identity only).
pub const DIGEST_OP: &str = "site/digest";

/// Names listed per kind and direction at most (the counts are exact).
const MAX_NAMES: usize = 20;

/// One MAC (hex, truncated to 128 bits) per entity name, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub kinds: BTreeMap<String, BTreeMap<String, String>>,
}

/// How one kind of entity differs between this site and a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindDrift {
    pub here: usize,
    pub there: usize,
    pub only_here: Names,
    pub only_there: Names,
    /// On both sites, held differently.
    pub differ: Names,
}

/// A count and at most [`MAX_NAMES`] of the names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub count: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Names {
    fn push(&mut self, name: &str) {
        self.count += 1;
        if self.names.len() < MAX_NAMES {
            self.names.push(name.to_string());
        }
    }
}

/// Drift with one peer: `in_sync` when every kind matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub in_sync: bool,
    pub kinds: BTreeMap<String, KindDrift>,
}

struct Macs<'a> {
    key: &'a [u8],
    out: BTreeMap<String, String>,
}

impl Macs<'_> {
    /// MACs `entity` (as JSON) and `secret` under the kind and name, so no two entities' inputs
    /// can be confused.
    fn add<T: Serialize>(&mut self, kind: &str, name: &str, entity: &T, secret: Option<&str>) {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key).expect("HMAC takes any key length");
        for part in [kind.as_bytes(), name.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let json = serde_json::to_vec(entity).unwrap_or_default();
        mac.update(&(json.len() as u64).to_be_bytes());
        mac.update(&json);
        match secret {
            Some(s) => {
                mac.update(&[1]);
                mac.update(s.as_bytes());
            }
            None => mac.update(&[0]),
        }
        let tag = mac.finalize().into_bytes();
        self.out.insert(name.to_string(), hex::encode(&tag[..16]));
    }

    /// MACs each of `items` with its secret in clear in place of its sealed form (sealed under
    /// each site's own key); one whose secret does not open is MACed without it, and shows as
    /// drift against a peer where it opens.
    fn add_sealed<T: Clone + Serialize>(
        &mut self,
        kind: &str,
        items: &BTreeMap<String, T>,
        sealer: &SecretSealer,
        secret: fn(&mut T) -> &mut SealedSecret,
    ) {
        for (name, item) in items {
            let mut item = item.clone();
            let blank = SealedSecret {
                nonce: Vec::new(),
                ciphertext: Vec::new(),
            };
            let sealed = std::mem::replace(secret(&mut item), blank);
            let plain = sealer.open(name, &sealed);
            self.add(kind, name, &item, plain.as_deref().map(String::as_str));
        }
    }

    fn take(&mut self) -> BTreeMap<String, String> {
        std::mem::take(&mut self.out)
    }
}

/// The digest of `state` under the pair's replication secret `key`.
pub fn digest(state: &SiteState, sealer: &SecretSealer, key: &[u8]) -> Digest {
    let mut m = Macs {
        key,
        out: BTreeMap::new(),
    };
    let mut kinds = BTreeMap::new();
    for (name, b) in &state.buckets {
        // The creation time differs where pairing merged two sites' buckets of the same name.
        let mut b = b.clone();
        b.created_ns = 0;
        m.add("bucket", name, &b, None);
    }
    kinds.insert("buckets".to_string(), m.take());
    m.add_sealed("user", &state.iam.users, sealer, |u| &mut u.secret);
    kinds.insert("users".to_string(), m.take());
    for (name, g) in &state.iam.groups {
        m.add("group", name, g, None);
    }
    kinds.insert("groups".to_string(), m.take());
    for (name, p) in &state.iam.policies {
        m.add("policy", name, p, None);
    }
    kinds.insert("policies".to_string(), m.take());
    m.add_sealed(
        "service account",
        &state.iam.service_accounts,
        sealer,
        |a| &mut a.secret,
    );
    kinds.insert("service_accounts".to_string(), m.take());
    for (dn, p) in &state.iam.ldap.users {
        m.add("ldap user", dn, p, None);
    }
    kinds.insert("ldap_user_policies".to_string(), m.take());
    for (dn, p) in &state.iam.ldap.groups {
        m.add("ldap group", dn, p, None);
    }
    kinds.insert("ldap_group_policies".to_string(), m.take());
    Digest { kinds }
}

/// How `peer` differs from `local`, kind by kind.
pub fn compare(local: &Digest, peer: &Digest) -> Drift {
    let empty = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    let names = local.kinds.keys().chain(peer.kinds.keys());
    for kind in names {
        if kinds.contains_key(kind) {
            continue;
        }
        let here = local.kinds.get(kind).unwrap_or(&empty);
        let there = peer.kinds.get(kind).unwrap_or(&empty);
        let mut d = KindDrift {
            here: here.len(),
            there: there.len(),
            ..Default::default()
        };
        for (name, mac) in here {
            match there.get(name) {
                None => d.only_here.push(name),
                Some(theirs) if theirs != mac => d.differ.push(name),
                Some(_) => {}
            }
        }
        for name in there.keys().filter(|n| !here.contains_key(*n)) {
            d.only_there.push(name);
        }
        kinds.insert(kind.clone(), d);
    }
    let in_sync = kinds
        .values()
        .all(|d| d.only_here.count + d.only_there.count + d.differ.count == 0);
    Drift { in_sync, kinds }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::RootCredentials;
    use cairn_control_plane::iam::identity::{IamCommand, IamState};

    fn sealer(secret: &str) -> SecretSealer {
        SecretSealer::new(
            &RootCredentials {
                access_key: "root".into(),
                secret_key: secret.into(),
            },
            None,
        )
    }

    fn with_user(sealer: &SecretSealer, user: &str, secret: &str, seed: u8) -> SiteState {
        let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_seed([seed; 32]);
        let mut iam = IamState::default();
        iam.apply(&IamCommand::AddUser {
            access_key: user.into(),
            secret: sealer.seal(user, secret, &mut rng),
        })
        .unwrap();
        SiteState {
            iam,
            ..Default::default()
        }
    }

    #[test]
    fn sites_that_seal_differently_agree_on_the_same_secret() {
        let (a, b) = (sealer("site-a-root-secret"), sealer("site-b-root-secret"));
        let here = digest(&with_user(&a, "alice", "alice-secret-1", 1), &a, b"pair");
        let there = digest(&with_user(&b, "alice", "alice-secret-1", 2), &b, b"pair");
        let drift = compare(&here, &there);
        assert!(drift.in_sync, "{drift:?}");
        assert_eq!(drift.kinds["users"].here, 1);
    }

    #[test]
    fn a_rotation_one_site_missed_is_drift() {
        let (a, b) = (sealer("site-a-root-secret"), sealer("site-b-root-secret"));
        let here = digest(&with_user(&a, "alice", "alice-secret-1", 1), &a, b"pair");
        let there = digest(&with_user(&b, "alice", "alice-secret-2", 1), &b, b"pair");
        let drift = compare(&here, &there);
        assert!(!drift.in_sync);
        assert_eq!(drift.kinds["users"].differ.names, vec!["alice".to_string()]);
        // The answer carries MACs, never the secret or its plain hash.
        let json = serde_json::to_string(&there).unwrap();
        assert!(!json.contains("alice-secret"));
    }

    #[test]
    fn entities_on_one_side_are_named_and_counted() {
        let a = sealer("site-a-root-secret");
        let mut here = with_user(&a, "alice", "alice-secret-1", 1);
        let there = here.clone();
        for i in 0..(MAX_NAMES + 5) {
            here.iam.policies.insert(format!("p{i:02}"), "{}".into());
        }
        let drift = compare(&digest(&here, &a, b"k"), &digest(&there, &a, b"k"));
        let p = &drift.kinds["policies"];
        assert_eq!((p.here, p.there), (MAX_NAMES + 5, 0));
        assert_eq!(p.only_here.count, MAX_NAMES + 5);
        assert_eq!(p.only_here.names.len(), MAX_NAMES);
        let back = compare(&digest(&there, &a, b"k"), &digest(&here, &a, b"k"));
        assert_eq!(back.kinds["policies"].only_there.count, MAX_NAMES + 5);
        // Another pair's key gives other MACs: a digest is only comparable within its pair.
        assert!(!compare(&digest(&here, &a, b"k"), &digest(&here, &a, b"other")).in_sync);
    }
}
