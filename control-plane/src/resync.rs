//! Resyncs: every version this site holds, sent again to one peer (one that was just paired, or
//! lost its data). The record lives in the replicated state, so it outlives any node: the node
//! that leads the site's Raft group sends, and records after each batch how far each bucket got
//! ([`Cursor`]); a new leader, or the same node after a restart, goes on from there. A batch sent
//! twice is harmless (the peer stores each version under its own id once).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::CommandError;

/// Reasons of failed versions kept for the status (the count goes on).
const MAX_FAILURES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResyncState {
    Running,
    Cancelled,
    Done,
}

/// Versions and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub objects: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, o: Count) {
        self.objects += o.objects;
        self.bytes += o.bytes;
    }
}

/// How far one bucket got: the last version sent (a listing resumes after it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub key: String,
    pub version: Option<String>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resync {
    /// Tells one resync of a peer from the next: progress of a cancelled one is ignored.
    pub id: u64,
    pub state: ResyncState,
    /// Objects go only once the peer applied the outbox up to here (the buckets and IAM exported
    /// when the resync began): a version needs its bucket there first.
    pub after_seq: u64,
    pub buckets: BTreeMap<String, Cursor>,
    /// What there is to send, counted when sending begins (`None` until then).
    pub total: Option<Count>,
    pub done: Count,
    /// Versions the peer refused for good (a conflicting version under the same id, an SSE-C
    /// object), and the latest reasons.
    pub failed: u64,
    pub failures: Vec<String>,
    /// When counting finished, and the last batch (the proposer's clock).
    pub started_ns: i64,
    pub updated_ns: i64,
}

impl Resync {
    pub(crate) fn new(id: u64, after_seq: u64, buckets: impl Iterator<Item = String>) -> Self {
        Resync {
            id,
            state: ResyncState::Running,
            after_seq,
            buckets: buckets.map(|b| (b, Cursor::default())).collect(),
            total: None,
            done: Count::default(),
            failed: 0,
            failures: Vec::new(),
            started_ns: 0,
            updated_ns: 0,
        }
    }

    pub fn running(&self) -> bool {
        self.state == ResyncState::Running
    }

    /// The first bucket not done yet, and where it stands.
    pub fn next_bucket(&self) -> Option<(&str, &Cursor)> {
        self.buckets
            .iter()
            .find(|(_, c)| !c.done)
            .map(|(b, c)| (b.as_str(), c))
    }
}

/// One batch of a resync sent: where its bucket stands now, and what it carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub bucket: String,
    pub cursor: Cursor,
    pub sent: Count,
    pub failures: Vec<String>,
    pub now_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResyncCommand {
    /// Resends everything to `peer`: its buckets and IAM through the outbox, then every version.
    Start {
        peer: String,
    },
    /// What there is to send, counted.
    Counted {
        peer: String,
        id: u64,
        total: Count,
        now_ns: i64,
    },
    Progress {
        peer: String,
        id: u64,
        progress: Progress,
    },
    Cancel {
        peer: String,
    },
}

fn stale() -> CommandError {
    CommandError::InvalidRequest("no such resync running".into())
}

/// The running resync `id` of `peer`.
pub(crate) fn running<'a>(
    resyncs: &'a mut BTreeMap<String, Resync>,
    peer: &str,
    id: u64,
) -> Result<&'a mut Resync, CommandError> {
    resyncs
        .get_mut(peer)
        .filter(|r| r.id == id && r.running())
        .ok_or_else(stale)
}

pub(crate) fn counted(r: &mut Resync, total: Count, now_ns: i64) {
    r.total = Some(total);
    r.started_ns = now_ns;
    r.updated_ns = now_ns;
    if r.next_bucket().is_none() {
        r.state = ResyncState::Done;
    }
}

pub(crate) fn progress(r: &mut Resync, p: &Progress) -> Result<(), CommandError> {
    let cursor = r.buckets.get_mut(&p.bucket).ok_or_else(stale)?;
    *cursor = p.cursor.clone();
    r.done.add(p.sent);
    r.failed += p.failures.len() as u64;
    r.failures.extend(p.failures.iter().cloned());
    let excess = r.failures.len().saturating_sub(MAX_FAILURES);
    r.failures.drain(..excess);
    r.updated_ns = p.now_ns;
    if r.next_bucket().is_none() {
        r.state = ResyncState::Done;
    }
    Ok(())
}
