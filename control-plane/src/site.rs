//! Site replication of the control plane: buckets, their configs and IAM created on any site
//! appear on every peer site (DESIGN.md §7).
//!
//! Each site keeps an *outbox* in its replicated state: every replicable command applied here
//! (not one received from a peer) is appended under the next sequence number, in the same Raft
//! entry that applies it, so a change and its replication task are durable together. The leader's
//! replicator sends each peer the entries past what that peer acknowledged; the peer applies them
//! through its own Raft as [`SiteCommand::FromPeer`] and remembers, per origin, the last sequence
//! it applied, so a resent entry applies once. Entries every peer acknowledged are dropped.
//! Peers are a full mesh: a received command is never forwarded again, which keeps pairs from
//! looping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError};
use crate::iam::identity::{IamCommand, IamState, PolicyTarget, SealedSecret};
use crate::model::{BucketInfo, Versioning};
use crate::resync::{self, Resync, ResyncCommand, ResyncState};
use crate::stamp::{self, Stamp};

/// Longest site name accepted.
const MAX_NAME: usize = 63;

/// Another site this one replicates to, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitePeer {
    /// The peer's S3 endpoints (`http(s)://host:port`: its load balancer, or its nodes), where
    /// its admin API listens; tried in turn, so no one node of the peer is needed. State written
    /// before peers had several holds one `endpoint`.
    #[serde(alias = "endpoint", deserialize_with = "one_or_many")]
    pub endpoints: Vec<String>,
    /// The pair's replication identity (never a root credential: neither site holds the
    /// other's), the secret sealed for this site. Both sites of the pair hold it: each signs
    /// its replica writes and outbox entries to the other with it, and takes requests signed
    /// with it as the other's, and only those may carry replicas.
    pub access_key: String,
    pub secret: SealedSecret,
    /// Every outbox entry up to this sequence is applied on the peer.
    pub acked: u64,
    /// Versions removed for good (DELETE with a version id) are neither sent to this peer nor
    /// taken from it: each site of the pair keeps the versions the other removes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_version_deletes: bool,
}

/// What a `site add` gives for one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    #[serde(alias = "endpoint", deserialize_with = "one_or_many")]
    pub endpoints: Vec<String>,
    pub access_key: String,
    pub secret: SealedSecret,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_version_deletes: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sites {
    /// This site's name among its peers (empty until site replication is configured).
    pub local: String,
    pub peers: BTreeMap<String, SitePeer>,
    /// Replicable commands applied here, by sequence, until every peer has them.
    pub outbox: BTreeMap<u64, Command>,
    /// Sequence the next outbox entry gets (sequences start at 1).
    pub next_seq: u64,
    /// Per origin site: the last of its sequences applied here.
    pub received: BTreeMap<String, u64>,
    /// Per peer: its latest resync (`crate::resync`), running or not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resyncs: BTreeMap<String, Resync>,
    /// Id the next resync gets.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub next_resync: u64,
    /// The site's hybrid logical clock (`crate::stamp`): the latest stamp given or taken.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub hlc: i64,
    /// Per entity (`stamp::entities`): the stamp of the change this site holds, while paired.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stamps: BTreeMap<String, Stamp>,
    /// The stamps of outbox entries, by sequence (an export at pairing, or an entry from before
    /// stamps, has none and applies on the peer in arrival order).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outbox_stamps: BTreeMap<u64, i64>,
    /// Per origin site: entity changes it sent that were ignored here, this site holding a
    /// later change of the same entity (last writer wins, `crate::stamp`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stale: BTreeMap<String, u64>,
}

/// A list of endpoints, or the one endpoint (a string) older state and clients have.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(e) => vec![e],
        OneOrMany::Many(es) => es,
    })
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SiteCommand {
    /// Names this site and sets its peers (replacing the list). A new peer is sent everything
    /// replicable this site already holds (unless it holds peers' entries already), as commands
    /// appended to the outbox, and then every object version (a resync, when there are
    /// buckets); existing buckets become versioned, since object replication needs version ids.
    Configure {
        local: String,
        peers: BTreeMap<String, PeerConfig>,
    },
    /// The peer applied every outbox entry up to `seq`.
    Acked { peer: String, seq: u64 },
    /// Unpairs `peer` on this site: nothing more is sent to it, and its replication identity is
    /// no longer taken here.
    Remove { peer: String },
    /// Resyncs to a peer (`crate::resync`).
    Resync(ResyncCommand),
    /// A command that site `origin` applied under sequence `seq`, stamped `stamp_ns` there
    /// (`crate::stamp`; without a stamp it applies in arrival order, as entries did before).
    FromPeer {
        origin: String,
        seq: u64,
        command: Box<Command>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stamp_ns: Option<i64>,
    },
    /// An entry of `origin` this site received and does not apply (a bucket deletion while this
    /// site keeps the versions that peer removes): it counts as received.
    Declined { origin: String, seq: u64 },
}

/// Commands whose effect every site must share. KMS registry changes stay per site (each site has
/// its own KMS); membership-like commands (`Restore`, `Site`) are local by nature.
pub fn replicable(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::CreateBucket { .. }
            | Command::DeleteBucket { .. }
            | Command::SetVersioning { .. }
            | Command::SetObjectLock { .. }
            | Command::SetBucketEncryption { .. }
            | Command::SetBucketPolicy { .. }
            | Command::SetBucketTagging { .. }
            | Command::SetBucketLifecycle { .. }
            | Command::SetBucketCors { .. }
            | Command::Iam(_)
    )
}

fn check_site_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CommandError::InvalidRequest(format!(
            "invalid site name {name:?}: use 1 to {MAX_NAME} letters, digits, '-' or '_'"
        )))
    }
}

impl Sites {
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The peer whose replication identity `access_key` is.
    pub fn peer_by_key(&self, access_key: &str) -> Option<(&str, &SitePeer)> {
        self.peers
            .iter()
            .find(|(_, p)| p.access_key == access_key)
            .map(|(n, p)| (n.as_str(), p))
    }

    /// Appends a command applied here to the outbox, if any peer is to receive it, stamped if
    /// its proposer gave the time it was made (`now_ns`).
    pub(crate) fn record(&mut self, cmd: &Command, now_ns: Option<i64>) {
        if self.enabled() && replicable(cmd) {
            self.next_seq = self.next_seq.max(1);
            self.outbox.insert(self.next_seq, cmd.clone());
            if let Some(now) = now_ns {
                let at = self.stamp_local(cmd, now);
                self.outbox_stamps.insert(self.next_seq, at);
            }
            self.next_seq += 1;
        }
    }

    /// Stamps a change made here at wall time `now_ns`: later than the site clock and than the
    /// stamp of every entity it changes, so it replaces them on every site.
    fn stamp_local(&mut self, cmd: &Command, now_ns: i64) -> i64 {
        let parts = stamp::entities(cmd);
        let at = parts
            .iter()
            .filter_map(|(e, _)| self.stamps.get(e))
            .map(|s| s.at_ns.saturating_add(1))
            .fold(now_ns.max(self.hlc.saturating_add(1)), i64::max);
        // Past an entity stamped far ahead, only that entity's change goes (`MAX_AHEAD_NS`).
        if at <= now_ns.saturating_add(stamp::MAX_AHEAD_NS) {
            self.hlc = at;
        }
        for (e, _) in parts {
            let s = Stamp {
                at_ns: at,
                site: self.local.clone(),
            };
            self.stamps.insert(e, s);
        }
        at
    }

    /// Whether a `FromPeer` entry is new (not applied before), recording it as applied.
    pub(crate) fn accept(&mut self, origin: &str, seq: u64) -> bool {
        let last = self.received.entry(origin.to_string()).or_default();
        if seq <= *last {
            return false;
        }
        *last = seq;
        true
    }

    /// The outbox entries peer `name` still lacks, oldest first, at most `limit`, with their
    /// stamps.
    pub fn pending_for(&self, name: &str, limit: usize) -> Vec<(u64, Command, Option<i64>)> {
        let Some(peer) = self.peers.get(name) else {
            return Vec::new();
        };
        self.outbox
            .range(peer.acked + 1..)
            .take(limit)
            .map(|(s, c)| (*s, c.clone(), self.outbox_stamps.get(s).copied()))
            .collect()
    }

    /// Outbox entries peer `name` still lacks.
    pub fn backlog(&self, name: &str) -> u64 {
        self.peers
            .get(name)
            .map(|p| self.next_seq.max(1).saturating_sub(p.acked + 1))
            .unwrap_or(0)
    }

    fn ack(&mut self, peer: &str, seq: u64) -> Result<(), CommandError> {
        let last = self.next_seq.saturating_sub(1);
        let p = self
            .peers
            .get_mut(peer)
            .ok_or_else(|| CommandError::InvalidRequest(format!("no site peer {peer:?}")))?;
        // Acks arrive out of order from retries; only forward progress counts.
        p.acked = p.acked.max(seq.min(last));
        self.trim();
        Ok(())
    }

    /// Starts a resync to `peer`, which first takes `after_seq`.
    fn start_resync(&mut self, peer: &str, after_seq: u64, buckets: impl Iterator<Item = String>) {
        self.next_resync = self.next_resync.max(1);
        let r = Resync::new(self.next_resync, after_seq, buckets);
        self.next_resync += 1;
        self.resyncs.insert(peer.to_string(), r);
    }

    fn remove(&mut self, peer: &str) -> Result<(), CommandError> {
        if self.peers.remove(peer).is_none() {
            return Err(CommandError::InvalidRequest(format!(
                "no site peer {peer:?}"
            )));
        }
        self.resyncs.remove(peer);
        // Pairing again starts afresh: this site's state goes to it again.
        self.received.remove(peer);
        self.trim();
        Ok(())
    }

    /// Drops the entries every peer has.
    fn trim(&mut self) {
        let Some(low) = self.peers.values().map(|p| p.acked).min() else {
            self.outbox.clear();
            self.outbox_stamps.clear();
            return;
        };
        self.outbox = self.outbox.split_off(&(low + 1));
        self.outbox_stamps = self.outbox_stamps.split_off(&(low + 1));
    }
}

/// The commands that recreate, on an empty peer, the replicable part of `buckets` and `iam`.
fn export(buckets: &BTreeMap<String, BucketInfo>, iam: &IamState) -> Vec<Command> {
    let mut out = Vec::new();
    for b in buckets.values() {
        out.push(Command::CreateBucket {
            name: b.name.clone(),
            created_ns: b.created_ns,
            object_lock: b.object_lock,
        });
        if !b.object_lock && b.versioning != Versioning::Unversioned {
            out.push(Command::SetVersioning {
                name: b.name.clone(),
                versioning: b.versioning,
            });
        }
        if b.object_lock && b.default_retention.is_some() {
            out.push(Command::SetObjectLock {
                name: b.name.clone(),
                default_retention: b.default_retention,
            });
        }
        if b.encryption.is_some() {
            out.push(Command::SetBucketEncryption {
                name: b.name.clone(),
                encryption: b.encryption.clone(),
            });
        }
        if b.policy.is_some() {
            out.push(Command::SetBucketPolicy {
                bucket: b.name.clone(),
                policy: b.policy.clone(),
            });
        }
        if !b.tags.is_empty() {
            out.push(Command::SetBucketTagging {
                name: b.name.clone(),
                tags: b.tags.clone(),
            });
        }
        if !b.lifecycle.is_empty() {
            out.push(Command::SetBucketLifecycle {
                name: b.name.clone(),
                rules: b.lifecycle.clone(),
            });
        }
        if !b.cors.is_empty() {
            out.push(Command::SetBucketCors {
                name: b.name.clone(),
                rules: b.cors.clone(),
            });
        }
    }
    let mut iam_cmds = Vec::new();
    for (name, document) in &iam.policies {
        iam_cmds.push(IamCommand::PutPolicy {
            name: name.clone(),
            document: document.clone(),
        });
    }
    for (key, user) in &iam.users {
        iam_cmds.push(IamCommand::AddUser {
            access_key: key.clone(),
            secret: user.secret.clone(),
        });
        if !user.enabled {
            iam_cmds.push(IamCommand::SetUserEnabled {
                access_key: key.clone(),
                enabled: false,
            });
        }
        if !user.policies.is_empty() {
            iam_cmds.push(IamCommand::AttachPolicy {
                policies: user.policies.iter().cloned().collect(),
                target: PolicyTarget::User(key.clone()),
            });
        }
    }
    for (name, group) in &iam.groups {
        iam_cmds.push(IamCommand::AddGroupMembers {
            group: name.clone(),
            members: group.members.iter().cloned().collect(),
        });
        if !group.enabled {
            iam_cmds.push(IamCommand::SetGroupEnabled {
                group: name.clone(),
                enabled: false,
            });
        }
        if !group.policies.is_empty() {
            iam_cmds.push(IamCommand::AttachPolicy {
                policies: group.policies.iter().cloned().collect(),
                target: PolicyTarget::Group(name.clone()),
            });
        }
    }
    for (key, account) in &iam.service_accounts {
        iam_cmds.push(IamCommand::AddServiceAccount {
            access_key: key.clone(),
            account: Box::new(account.clone()),
        });
    }
    let ldap = [
        (
            &iam.ldap.users,
            PolicyTarget::LdapUser as fn(String) -> PolicyTarget,
        ),
        (&iam.ldap.groups, PolicyTarget::LdapGroup),
    ];
    for (mappings, target) in ldap {
        for (dn, policies) in mappings {
            iam_cmds.push(IamCommand::AttachPolicy {
                policies: policies.iter().cloned().collect(),
                target: target(dn.clone()),
            });
        }
    }
    out.extend(iam_cmds.into_iter().map(Command::Iam));
    out
}

impl crate::state::SiteState {
    fn apply_resync(&mut self, cmd: &ResyncCommand) -> Result<(), CommandError> {
        let sites = &mut self.sites;
        match cmd {
            ResyncCommand::Start { peer } => {
                if !sites.peers.contains_key(peer) {
                    return Err(CommandError::InvalidRequest(format!(
                        "no site peer {peer:?}"
                    )));
                }
                if sites.resyncs.get(peer).is_some_and(Resync::running) {
                    return Err(CommandError::InvalidRequest(format!(
                        "a resync to {peer:?} is running already: cancel it first"
                    )));
                }
                // A peer that lost its data lost its buckets and users too: they go first.
                for c in export(&self.buckets, &self.iam) {
                    self.sites.record(&c, None);
                }
                let after = self.sites.next_seq.max(1) - 1;
                self.sites
                    .start_resync(peer, after, self.buckets.keys().cloned());
                Ok(())
            }
            ResyncCommand::Counted {
                peer,
                id,
                total,
                now_ns,
            } => {
                resync::counted(
                    resync::running(&mut sites.resyncs, peer, *id)?,
                    *total,
                    *now_ns,
                );
                Ok(())
            }
            ResyncCommand::Progress { peer, id, progress } => {
                resync::progress(resync::running(&mut sites.resyncs, peer, *id)?, progress)
            }
            ResyncCommand::Cancel { peer } => {
                let r = sites
                    .resyncs
                    .get_mut(peer)
                    .filter(|r| r.running())
                    .ok_or_else(|| {
                        CommandError::InvalidRequest(format!("no resync to {peer:?} is running"))
                    })?;
                r.state = ResyncState::Cancelled;
                Ok(())
            }
        }
    }

    /// Applies peer `origin`'s entry `seq` (once), each entity it changes only over an older
    /// change here (`crate::stamp`); a stale part is ignored and counted. `now_ns` is the
    /// proposer's wall time, which bounds how far the peer's stamp moves the site clock.
    fn apply_from_peer(
        &mut self,
        origin: &str,
        seq: u64,
        command: &Command,
        stamp_ns: Option<i64>,
        now_ns: Option<i64>,
    ) -> Result<(), CommandError> {
        if !replicable(command) {
            return Err(CommandError::InvalidRequest(
                "a peer may only send replicable commands".into(),
            ));
        }
        if !self.sites.accept(origin, seq) {
            return Ok(());
        }
        // A rejected command (the bucket exists already, say) still counts as received: the two
        // sites already agree on what it would have done. It does not join the outbox: peers
        // form a full mesh, so sending it on would only echo it back.
        let Some(at_ns) = stamp_ns else {
            return self.change(command, None);
        };
        if now_ns.is_none_or(|now| at_ns <= now.saturating_add(stamp::MAX_AHEAD_NS)) {
            self.sites.hlc = self.sites.hlc.max(at_ns);
        }
        let theirs = Stamp {
            at_ns,
            site: origin.to_string(),
        };
        let parts = stamp::entities(command);
        let total = parts.len();
        let fresh: Vec<(String, Command)> = parts
            .into_iter()
            .filter(|(entity, _)| {
                let ours = self.sites.stamps.get(entity).filter(|s| **s >= theirs);
                if let Some(ours) = ours {
                    tracing::info!(origin, seq, entity = %entity, theirs_ns = at_ns, ours_ns = ours.at_ns, ours_site = %ours.site, "a peer's change is older than the one this site holds: ignored");
                }
                ours.is_none()
            })
            .collect();
        if fresh.len() < total {
            *self.sites.stale.entry(origin.to_string()).or_default() +=
                (total - fresh.len()) as u64;
        }
        // All of it fresh: applied whole, as its origin applied it.
        let applied: Vec<(String, Result<(), CommandError>)> = if fresh.len() == total {
            let r = self.change(command, None);
            fresh.into_iter().map(|(e, _)| (e, r.clone())).collect()
        } else {
            fresh
                .into_iter()
                .map(|(e, part)| {
                    let r = self.change(&part, None);
                    (e, r)
                })
                .collect()
        };
        let mut result = Ok(());
        for (entity, r) in applied {
            match r {
                Ok(()) => {
                    self.sites.stamps.insert(entity, theirs.clone());
                }
                Err(e) => result = Err(e),
            }
        }
        result
    }

    pub(crate) fn apply_site(
        &mut self,
        cmd: &SiteCommand,
        now_ns: Option<i64>,
    ) -> Result<(), CommandError> {
        match cmd {
            SiteCommand::Configure { local, peers } => {
                check_site_name(local)?;
                let mut keys = std::collections::BTreeSet::new();
                for (name, cfg) in peers {
                    check_site_name(name)?;
                    if name == local {
                        return Err(CommandError::InvalidRequest(format!(
                            "site {name:?} cannot be its own peer"
                        )));
                    }
                    if cfg.endpoints.is_empty() {
                        return Err(CommandError::InvalidRequest(format!(
                            "site peer {name:?} needs at least one endpoint"
                        )));
                    }
                    // The identity tells which peer a replica comes from, and is no one else.
                    if !keys.insert(cfg.access_key.as_str())
                        || self.iam.users.contains_key(&cfg.access_key)
                        || self.iam.service_accounts.contains_key(&cfg.access_key)
                    {
                        return Err(CommandError::InvalidRequest(format!(
                            "the replication identity of peer {name:?} must be its own access key"
                        )));
                    }
                }
                let sites = &mut self.sites;
                sites.next_seq = sites.next_seq.max(1);
                let start = sites.next_seq - 1;
                let mut joined = Vec::new();
                let old = std::mem::take(&mut sites.peers);
                for (name, cfg) in peers {
                    // Still reached where it was (endpoints added or dropped): the same peer.
                    let acked = match old.get(name) {
                        Some(p) if p.endpoints.iter().any(|e| cfg.endpoints.contains(e)) => p.acked,
                        _ => {
                            joined.push(name.clone());
                            start
                        }
                    };
                    sites.peers.insert(
                        name.clone(),
                        SitePeer {
                            endpoints: cfg.endpoints.clone(),
                            access_key: cfg.access_key.clone(),
                            secret: cfg.secret.clone(),
                            acked,
                            skip_version_deletes: cfg.skip_version_deletes,
                        },
                    );
                }
                sites.local = local.clone();
                if !peers.is_empty() {
                    for b in self.buckets.values_mut() {
                        if b.versioning == Versioning::Unversioned {
                            b.versioning = Versioning::Enabled;
                        }
                    }
                }
                // A site that already received a peer's entries holds (some of) that peer's
                // state: exporting it would echo it back, and could bring back what the peer
                // removed since. As with MinIO, only one of the sites being paired may hold data.
                if !joined.is_empty() && self.sites.received.is_empty() {
                    for c in export(&self.buckets, &self.iam) {
                        self.sites.record(&c, None);
                    }
                }
                // The objects written before the pairing follow their buckets.
                let sites = &mut self.sites;
                sites.resyncs.retain(|p, _| sites.peers.contains_key(p));
                if !self.buckets.is_empty() {
                    let after = sites.next_seq - 1;
                    for peer in joined {
                        sites.start_resync(&peer, after, self.buckets.keys().cloned());
                    }
                }
                self.sites.trim();
                Ok(())
            }
            SiteCommand::Acked { peer, seq } => self.sites.ack(peer, *seq),
            SiteCommand::Remove { peer } => self.sites.remove(peer),
            SiteCommand::Resync(c) => self.apply_resync(c),
            SiteCommand::Declined { origin, seq } => {
                self.sites.accept(origin, *seq);
                Ok(())
            }
            SiteCommand::FromPeer {
                origin,
                seq,
                command,
                stamp_ns,
            } => self.apply_from_peer(origin, *seq, command, *stamp_ns, now_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SiteState;

    fn secret() -> SealedSecret {
        SealedSecret {
            nonce: vec![0; 12],
            ciphertext: vec![1; 20],
        }
    }

    fn configure(local: &str, peers: &[&str]) -> Command {
        Command::Site(SiteCommand::Configure {
            local: local.into(),
            peers: peers
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        PeerConfig {
                            endpoints: vec![format!("http://{p}:9000")],
                            access_key: format!("link-{local}-{p}"),
                            secret: secret(),
                            skip_version_deletes: false,
                        },
                    )
                })
                .collect(),
        })
    }

    fn create(name: &str) -> Command {
        Command::CreateBucket {
            name: name.into(),
            created_ns: 1,
            object_lock: false,
        }
    }

    /// Delivers everything `from` has for `to`, as the replicator does, and acknowledges it.
    fn deliver(from: &mut SiteState, to: &mut SiteState) {
        let origin = from.sites.local.clone();
        let peer = to.sites.local.clone();
        let mut last = 0;
        for (seq, command, stamp_ns) in from.sites.pending_for(&peer, 1000) {
            let _ = to.apply(&Command::Site(SiteCommand::FromPeer {
                origin: origin.clone(),
                seq,
                command: Box::new(command),
                stamp_ns,
            }));
            last = seq;
        }
        if last > 0 {
            from.apply(&Command::Site(SiteCommand::Acked { peer, seq: last }))
                .unwrap();
        }
    }

    #[test]
    fn existing_state_reaches_a_new_peer_and_new_changes_follow() {
        let mut a = SiteState::default();
        a.apply(&create("old")).unwrap();
        a.apply(&Command::SetBucketLifecycle {
            name: "old".into(),
            rules: vec![crate::lifecycle::LifecycleRule {
                id: "expire".into(),
                enabled: true,
                filter: crate::lifecycle::LifecycleFilter::All,
                expiration: Some(crate::lifecycle::Expiration::Days(30)),
                expired_object_delete_marker: false,
                noncurrent: None,
                abort_multipart_days: None,
            }],
        })
        .unwrap();
        a.apply(&Command::SetBucketCors {
            name: "old".into(),
            rules: vec![crate::cors::CorsRule {
                id: None,
                allowed_origins: vec!["*".into()],
                allowed_methods: vec!["GET".into()],
                allowed_headers: Vec::new(),
                expose_headers: Vec::new(),
                max_age_seconds: None,
            }],
        })
        .unwrap();
        for target in [
            PolicyTarget::LdapUser("uid=a,dc=x".into()),
            PolicyTarget::LdapGroup("cn=g,dc=x".into()),
        ] {
            a.apply(&Command::Iam(IamCommand::AttachPolicy {
                policies: vec!["readonly".into()],
                target,
            }))
            .unwrap();
        }
        let mut b = SiteState::default();
        a.apply(&configure("a", &["b"])).unwrap();
        b.apply(&configure("b", &["a"])).unwrap();
        assert_eq!(a.bucket("old").unwrap().versioning, Versioning::Enabled);
        deliver(&mut a, &mut b);
        assert_eq!(b.buckets, a.buckets);
        assert_eq!(b.iam.ldap, a.iam.ldap, "DN mappings reach the new peer");
        assert!(
            a.sites.outbox.is_empty(),
            "acknowledged entries are dropped"
        );

        b.apply(&create("new")).unwrap();
        assert_eq!(
            b.bucket("new").unwrap().versioning,
            Versioning::Enabled,
            "buckets of a replicating site are versioned"
        );
        deliver(&mut b, &mut a);
        a.apply(&Command::DeleteBucket { name: "old".into() })
            .unwrap();
        deliver(&mut a, &mut b);
        assert_eq!(a.buckets, b.buckets);
        assert_eq!(a.buckets.keys().collect::<Vec<_>>(), vec!["new"]);
        assert_eq!(a.sites.backlog("b"), 0);
    }

    #[test]
    fn a_site_configured_after_receiving_does_not_echo_its_peers_state() {
        let mut a = SiteState::default();
        a.apply(&create("data")).unwrap();
        a.apply(&configure("a", &["b"])).unwrap();
        // b takes a's entries before it is configured itself.
        let mut b = SiteState::default();
        for (seq, command, stamp_ns) in a.sites.pending_for("b", 10) {
            b.apply(&Command::Site(SiteCommand::FromPeer {
                origin: "a".into(),
                seq,
                command: Box::new(command),
                stamp_ns,
            }))
            .unwrap();
        }
        assert!(b.bucket("data").is_some());
        b.apply(&configure("b", &["a"])).unwrap();
        assert!(b.sites.outbox.is_empty(), "{:?}", b.sites.outbox);
    }

    #[test]
    fn a_resent_entry_applies_once_and_is_not_sent_back() {
        let mut a = SiteState::default();
        let mut b = SiteState::default();
        a.apply(&configure("a", &["b"])).unwrap();
        b.apply(&configure("b", &["a"])).unwrap();
        a.apply(&create("x")).unwrap();
        let entry = Command::Site(SiteCommand::FromPeer {
            origin: "a".into(),
            seq: 1,
            command: Box::new(create("x")),
            stamp_ns: None,
        });
        b.apply(&entry).unwrap();
        b.apply(&Command::DeleteBucket { name: "x".into() })
            .unwrap();
        // The same entry again (the ack was lost) must not bring the bucket back.
        b.apply(&entry).unwrap();
        assert!(b.bucket("x").is_none());
        assert_eq!(
            b.sites.outbox.values().collect::<Vec<_>>(),
            vec![&Command::DeleteBucket { name: "x".into() }],
            "only b's own change is queued for a"
        );
    }

    #[test]
    fn a_declined_entry_counts_as_received_and_changes_nothing() {
        let mut b = SiteState::default();
        b.apply(&configure("b", &["a"])).unwrap();
        b.apply(&create("kept")).unwrap();
        let before = b.buckets.clone();
        b.apply(&Command::Site(SiteCommand::Declined {
            origin: "a".into(),
            seq: 1,
        }))
        .unwrap();
        assert_eq!(b.buckets, before);
        assert_eq!(b.sites.received["a"], 1);
        // The same entry sent again is not applied either.
        let entry = Command::Site(SiteCommand::FromPeer {
            origin: "a".into(),
            seq: 1,
            command: Box::new(Command::DeleteBucket {
                name: "kept".into(),
            }),
            stamp_ns: None,
        });
        b.apply(&entry).unwrap();
        assert!(b.bucket("kept").is_some());
    }

    #[test]
    fn peers_cannot_send_local_commands_or_name_themselves() {
        let mut a = SiteState::default();
        assert!(a.apply(&configure("a", &["a"])).is_err());
        assert!(a.apply(&configure("bad name", &["b"])).is_err());
        a.apply(&configure("a", &["b"])).unwrap();
        let restore = Command::Site(SiteCommand::FromPeer {
            origin: "b".into(),
            seq: 1,
            command: Box::new(Command::Restore {
                state: Box::default(),
            }),
            stamp_ns: None,
        });
        assert!(a.apply(&restore).is_err());
        assert!(a.sites.received.is_empty());
    }

    fn resync(cmd: ResyncCommand) -> Command {
        Command::Site(SiteCommand::Resync(cmd))
    }

    fn progress(bucket: &str, key: &str, done: bool) -> crate::resync::Progress {
        crate::resync::Progress {
            bucket: bucket.into(),
            cursor: crate::resync::Cursor {
                key: key.into(),
                version: Some("v".into()),
                done,
            },
            sent: crate::resync::Count {
                objects: 2,
                bytes: 10,
            },
            failures: vec![],
            now_ns: 5,
        }
    }

    #[test]
    fn pairing_a_site_with_buckets_resyncs_them_after_the_export() {
        // No buckets, no resync: the state stays as it was (the simulator's pairing).
        let mut empty = SiteState::default();
        empty.apply(&configure("a", &["b"])).unwrap();
        assert!(empty.sites.resyncs.is_empty());
        let json = String::from_utf8(empty.to_bytes()).unwrap();
        assert!(!json.contains("resync"), "{json}");

        let mut a = SiteState::default();
        a.apply(&create("old")).unwrap();
        a.apply(&configure("a", &["b"])).unwrap();
        let r = &a.sites.resyncs["b"];
        assert!(r.running());
        assert_eq!(
            r.after_seq,
            a.sites.next_seq - 1,
            "objects wait for the export"
        );
        assert!(r.after_seq >= 1);
        assert_eq!(r.buckets.keys().collect::<Vec<_>>(), vec!["old"]);
        // Configuring the same peers again starts nothing new.
        let id = r.id;
        a.apply(&configure("a", &["b"])).unwrap();
        assert_eq!(a.sites.resyncs["b"].id, id);
    }

    #[test]
    fn a_resync_counts_advances_per_bucket_and_cancels() {
        let mut a = SiteState::default();
        a.apply(&create("p")).unwrap();
        a.apply(&create("q")).unwrap();
        a.apply(&configure("a", &["b"])).unwrap();
        let first = a.sites.resyncs["b"].id;
        assert!(
            a.apply(&resync(ResyncCommand::Start { peer: "b".into() }))
                .is_err(),
            "one resync per peer at a time"
        );
        assert!(a
            .apply(&resync(ResyncCommand::Start { peer: "z".into() }))
            .is_err());
        let total = crate::resync::Count {
            objects: 4,
            bytes: 20,
        };
        let (peer, id) = ("b".to_string(), first);
        a.apply(&resync(ResyncCommand::Counted {
            peer: peer.clone(),
            id,
            total,
            now_ns: 1,
        }))
        .unwrap();
        a.apply(&resync(ResyncCommand::Progress {
            peer: peer.clone(),
            id,
            progress: progress("p", "k", true),
        }))
        .unwrap();
        let r = &a.sites.resyncs["b"];
        assert_eq!(r.next_bucket().map(|(b, _)| b), Some("q"));
        assert_eq!(r.done.objects, 2);
        a.apply(&resync(ResyncCommand::Progress {
            peer: peer.clone(),
            id,
            progress: progress("q", "k", true),
        }))
        .unwrap();
        assert_eq!(a.sites.resyncs["b"].state, ResyncState::Done);
        assert_eq!(a.sites.resyncs["b"].done, total);

        // A new one: the buckets go through the outbox again, then the objects.
        let before = a.sites.next_seq;
        a.apply(&resync(ResyncCommand::Start { peer: peer.clone() }))
            .unwrap();
        let r = a.sites.resyncs["b"].clone();
        assert!(r.id > first && r.after_seq >= before && r.running());
        assert!(
            a.apply(&resync(ResyncCommand::Progress {
                peer: peer.clone(),
                id: first,
                progress: progress("p", "z", false),
            }))
            .is_err(),
            "the old resync's progress is stale"
        );
        a.apply(&resync(ResyncCommand::Cancel { peer: peer.clone() }))
            .unwrap();
        assert_eq!(a.sites.resyncs["b"].state, ResyncState::Cancelled);
        assert!(
            a.apply(&resync(ResyncCommand::Progress {
                peer: peer.clone(),
                id: r.id,
                progress: progress("p", "z", false),
            }))
            .is_err(),
            "a cancelled resync goes no further"
        );
        assert!(a.apply(&resync(ResyncCommand::Cancel { peer })).is_err());
    }

    #[test]
    fn removing_a_peer_drops_its_identity_queue_and_resync() {
        let mut a = SiteState::default();
        a.apply(&create("x")).unwrap();
        a.apply(&configure("a", &["b", "c"])).unwrap();
        a.apply(&create("y")).unwrap();
        assert!(a.sites.peer_by_key("link-a-b").is_some());
        a.apply(&Command::Site(SiteCommand::Remove { peer: "b".into() }))
            .unwrap();
        assert!(a.sites.peer_by_key("link-a-b").is_none());
        assert!(!a.sites.resyncs.contains_key("b"));
        assert_eq!(a.sites.backlog("b"), 0);
        assert!(a.sites.enabled(), "c is still a peer");
        assert!(a
            .apply(&Command::Site(SiteCommand::Remove { peer: "b".into() }))
            .is_err());
        a.apply(&Command::Site(SiteCommand::Remove { peer: "c".into() }))
            .unwrap();
        assert!(!a.sites.enabled() && a.sites.outbox.is_empty());
    }

    #[test]
    fn a_peer_keeps_its_progress_while_one_of_its_endpoints_stays() {
        // State and commands written when a peer had one `endpoint` still read.
        let old = serde_json::json!({
            "endpoint": "http://b1:9000",
            "access_key": "link-a-b",
            "secret": secret(),
            "acked": 7,
        });
        let peer: SitePeer = serde_json::from_value(old).unwrap();
        assert_eq!(peer.endpoints, vec!["http://b1:9000".to_string()]);
        let cfg: PeerConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://b1:9000", "access_key": "k", "secret": secret(),
        }))
        .unwrap();
        assert_eq!(cfg.endpoints, peer.endpoints);

        let mut a = SiteState::default();
        a.apply(&configure("a", &["b"])).unwrap();
        for n in ["p", "q"] {
            a.apply(&create(n)).unwrap();
        }
        a.apply(&Command::Site(SiteCommand::Acked {
            peer: "b".into(),
            seq: 2,
        }))
        .unwrap();
        let with = |endpoints: &[&str]| {
            let Command::Site(SiteCommand::Configure { local, mut peers }) = configure("a", &["b"])
            else {
                unreachable!()
            };
            if let Some(p) = peers.get_mut("b") {
                p.endpoints = endpoints.iter().map(|e| e.to_string()).collect();
            }
            Command::Site(SiteCommand::Configure { local, peers })
        };
        a.apply(&with(&["http://b:9000", "http://b2:9000"]))
            .unwrap();
        assert_eq!(a.sites.peers["b"].endpoints.len(), 2);
        assert_eq!(a.sites.peers["b"].acked, 2, "an endpoint added: same peer");
        assert_eq!(a.sites.backlog("b"), 0, "nothing is sent again");
        assert!(a.sites.resyncs.is_empty());
        assert!(a.apply(&with(&[])).is_err(), "a peer needs an endpoint");
        a.apply(&with(&["http://elsewhere:9000"])).unwrap();
        assert!(
            a.sites.backlog("b") > 0 && a.sites.resyncs.contains_key("b"),
            "reached nowhere it was: a new peer, sent everything"
        );
    }

    #[test]
    fn acks_only_move_forward_and_trim_for_the_slowest_peer() {
        let mut a = SiteState::default();
        a.apply(&configure("a", &["b", "c"])).unwrap();
        for n in ["p", "q", "r"] {
            a.apply(&create(n)).unwrap();
        }
        let ack = |peer: &str, seq| {
            Command::Site(SiteCommand::Acked {
                peer: peer.into(),
                seq,
            })
        };
        a.apply(&ack("b", 3)).unwrap();
        a.apply(&ack("b", 1)).unwrap();
        assert_eq!(a.sites.peers["b"].acked, 3);
        assert_eq!(a.sites.outbox.len(), 3, "c has nothing yet");
        a.apply(&ack("c", 2)).unwrap();
        assert_eq!(a.sites.outbox.keys().collect::<Vec<_>>(), vec![&3]);
        assert_eq!(a.sites.pending_for("c", 10).len(), 1);
        assert_eq!(a.sites.backlog("c"), 1);
        assert!(a.apply(&ack("nobody", 1)).is_err());
    }

    fn at(now_ns: i64, cmd: Command) -> Command {
        crate::stamp::timed(cmd, now_ns)
    }

    /// A policy document that names `tag`.
    fn doc(tag: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{tag}/*"]}}]}}"#
        )
    }

    fn put_policy(tag: &str) -> Command {
        Command::Iam(IamCommand::PutPolicy {
            name: "shared".into(),
            document: doc(tag),
        })
    }

    const MIN: i64 = 60 * 1_000_000_000;

    /// Two paired sites.
    fn pair() -> (SiteState, SiteState) {
        let (mut a, mut b) = (SiteState::default(), SiteState::default());
        a.apply(&configure("a", &["b"])).unwrap();
        b.apply(&configure("b", &["a"])).unwrap();
        (a, b)
    }

    #[test]
    fn concurrent_changes_of_one_entity_end_the_same_on_both_sites_in_any_order() {
        for a_first in [true, false] {
            let (mut a, mut b) = pair();
            // a's clock runs 10 minutes ahead of b's; b changes the policy a minute later.
            a.apply(&at(100 * MIN, put_policy("from-a"))).unwrap();
            b.apply(&at(91 * MIN, put_policy("from-b"))).unwrap();
            if a_first {
                deliver(&mut a, &mut b);
                deliver(&mut b, &mut a);
            } else {
                deliver(&mut b, &mut a);
                deliver(&mut a, &mut b);
            }
            assert_eq!(a.iam.policies, b.iam.policies, "a first: {a_first}");
            assert_eq!(a.iam.policies["shared"], doc("from-a"), "the greater stamp");
            assert_eq!(b.sites.stale.get("a"), None);
            assert_eq!(a.sites.stale["b"], 1, "b's change ignored and counted on a");
        }
    }

    #[test]
    fn a_change_after_seeing_a_peers_orders_after_it_whatever_the_clocks() {
        let (mut a, mut b) = pair();
        a.apply(&at(100 * MIN, put_policy("first-a"))).unwrap();
        deliver(&mut a, &mut b);
        // b's clock is 10 minutes behind, yet its change follows the one it saw.
        b.apply(&at(90 * MIN, put_policy("then-b"))).unwrap();
        deliver(&mut b, &mut a);
        assert_eq!(a.iam.policies["shared"], doc("then-b"));
        assert_eq!(b.iam.policies["shared"], doc("then-b"));
        assert!(a.sites.stale.is_empty() && b.sites.stale.is_empty());
        // a holds b's stamp for the policy now, later than its own.
        let stamp = a.sites.stamps["policy/shared"].clone();
        assert_eq!(stamp.site, "b");
        assert!(stamp.at_ns > 100 * MIN, "{stamp:?}");
    }

    #[test]
    fn group_members_converge_per_member() {
        let (mut a, mut b) = pair();
        let members = |add: bool, m: &[&str]| {
            let (group, members) = ("g".to_string(), m.iter().map(|s| s.to_string()).collect());
            Command::Iam(if add {
                IamCommand::AddGroupMembers { group, members }
            } else {
                IamCommand::RemoveGroupMembers { group, members }
            })
        };
        for s in [&mut a, &mut b] {
            for u in ["user1", "user2", "user3"] {
                s.apply(&Command::Iam(IamCommand::AddUser {
                    access_key: u.into(),
                    secret: secret(),
                }))
                .unwrap();
            }
        }
        deliver(&mut a, &mut b);
        deliver(&mut b, &mut a);
        a.apply(&at(10 * MIN, members(true, &["user1", "user2"])))
            .unwrap();
        deliver(&mut a, &mut b);
        // At once: a removes user1 (later), b adds user1 and user3 (earlier, its clock behind).
        a.apply(&at(12 * MIN, members(false, &["user1"]))).unwrap();
        b.apply(&at(11 * MIN, members(true, &["user1", "user3"])))
            .unwrap();
        deliver(&mut b, &mut a);
        deliver(&mut a, &mut b);
        assert_eq!(a.iam.groups, b.iam.groups);
        let g: Vec<_> = a.iam.groups["g"].members.iter().cloned().collect();
        assert_eq!(g, vec!["user2".to_string(), "user3".to_string()]);
        assert_eq!(
            a.sites.stale["b"], 1,
            "only user1's part of b's change was stale"
        );
    }

    #[test]
    fn a_stamp_far_ahead_orders_its_entity_but_does_not_drag_the_site_clock() {
        let (mut a, mut b) = pair();
        a.apply(&at(10_000 * MIN, put_policy("future"))).unwrap();
        let (origin, seq, command, stamp_ns) = {
            let (seq, c, s) = a.sites.pending_for("b", 1).remove(0);
            ("a".to_string(), seq, c, s)
        };
        b.apply(&at(
            100 * MIN,
            Command::Site(SiteCommand::FromPeer {
                origin,
                seq,
                command: Box::new(command),
                stamp_ns,
            }),
        ))
        .unwrap();
        assert_eq!(b.iam.policies["shared"], doc("future"));
        assert!(b.sites.hlc < 10_000 * MIN, "{}", b.sites.hlc);
        b.apply(&at(101 * MIN, put_policy("later-b"))).unwrap();
        assert!(b.sites.stamps["policy/shared"].at_ns > 10_000 * MIN);
        b.apply(&at(102 * MIN, create("elsewhere"))).unwrap();
        assert!(b.sites.stamps["bucket/elsewhere"].at_ns < 10_000 * MIN);
        deliver(&mut b, &mut a);
        assert_eq!(a.iam.policies["shared"], doc("later-b"));
    }
}
