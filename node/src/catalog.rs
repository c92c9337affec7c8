//! The site's control-plane state (buckets and their configs) as the S3 front sees it.
//!
//! Writes go through Raft ([`ControlPlane::propose`]: forwarded to the leader, applied here before
//! they return). Reads come from this node's applied state without a round trip, except that a
//! bucket this node does not know yet is confirmed with a linearizable read before the answer is
//! NoSuchBucket: a bucket created through another node is visible here as soon as its create
//! returned, while the hot path for existing buckets stays local.
//!
//! The Raft storage lives on the node's first drive. So that losing that one drive cannot lose the
//! bucket list of a single-node site, every applied state is also mirrored (synced) to all of the
//! node's drives, before a proposal returns; a control plane that starts with empty Raft storage
//! restores the newest mirrored copy.

use std::sync::Arc;

use futures::future::join_all;

use cairn_control_plane::raft::{ControlPlane, ProposeError};
use cairn_control_plane::{BucketInfo, Command, CommandError, SiteState};

use crate::clock::SharedClock;
use crate::drive::{Drive, MetaOp};
use crate::object::keys::SITE_STATE;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
}

impl From<ProposeError> for CatalogError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Rejected(c) => CatalogError::Command(c),
            other => CatalogError::Unavailable(other.to_string()),
        }
    }
}

pub struct Catalog {
    pub control: Arc<ControlPlane>,
    /// This node's drives, holding mirrored copies of the state.
    local: Vec<Arc<dyn Drive>>,
    /// Serialises mirror writes so an older state never lands after a newer one, and remembers
    /// the last applied index written: a proposal and the watcher both mirror the same state, the
    /// second is skipped.
    mirror_lock: tokio::sync::Mutex<Option<u64>>,
    /// Signalled once the applied state has site peers (the replicators wait for it).
    pub paired: tokio::sync::Notify,
    /// Signalled while the applied state has a resync running (the resync task waits for it).
    pub resyncing: tokio::sync::Notify,
    /// Signalled once some bucket has lifecycle rules (the lifecycle worker waits for it).
    pub lifecycle: tokio::sync::Notify,
    /// The proposer's wall time, which a replicated change's stamp starts from
    /// (`cairn_control_plane::stamp`).
    clock: SharedClock,
}

impl Catalog {
    pub fn new(control: Arc<ControlPlane>, local: Vec<Arc<dyn Drive>>, clock: SharedClock) -> Self {
        Self {
            control,
            local,
            clock,
            mirror_lock: tokio::sync::Mutex::new(None),
            paired: tokio::sync::Notify::new(),
            resyncing: tokio::sync::Notify::new(),
            lifecycle: tokio::sync::Notify::new(),
        }
    }

    /// The applied state, without a round trip.
    pub fn state(&self) -> Arc<SiteState> {
        self.control.state()
    }

    /// The state as of now on the leader (read index), for listings that must not miss a bucket
    /// another node just created.
    pub async fn state_linearizable(&self) -> Result<Arc<SiteState>, CatalogError> {
        Ok(self.control.read_linearizable().await?)
    }

    /// The bucket's config; a local miss is confirmed against the leader (read index).
    pub async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, CatalogError> {
        if let Some(b) = self.state().bucket(name) {
            return Ok(Some(b.clone()));
        }
        let s = self.control.read_linearizable().await?;
        Ok(s.bucket(name).cloned())
    }

    /// Replicates a command through Raft; returns once it is applied and mirrored on this node.
    pub async fn propose(&self, cmd: Command) -> Result<(), CatalogError> {
        let cmd = cairn_control_plane::stamp::timed(cmd, self.clock.now_ns());
        self.control.propose(cmd).await?;
        self.mirror(&self.state()).await;
        Ok(())
    }

    /// Writes `state` to every local drive (synced); a drive that fails is caught up next time.
    async fn mirror(&self, state: &SiteState) {
        let mut mirrored = self.mirror_lock.lock().await;
        if mirrored.is_some_and(|m| m >= state.applied) {
            return;
        }
        let bytes = state.to_bytes();
        let results = join_all(
            self.local
                .iter()
                .map(|d| d.apply(vec![MetaOp::Put(SITE_STATE.to_vec(), bytes.clone())])),
        )
        .await;
        let mut all = true;
        for (d, r) in self.local.iter().zip(results) {
            if let Err(e) = r {
                all = false;
                tracing::warn!(drive = d.label(), error = %e, "site state not mirrored");
            }
        }
        if all {
            *mirrored = Some(state.applied);
        }
    }

    /// Mirrors every state this node applies, including those proposed through other nodes.
    pub async fn mirror_forever(self: Arc<Self>) {
        let mut rx = self.control.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            self.mirror(&state).await;
            if state.sites.enabled() {
                self.paired.notify_one();
            }
            if state.sites.resyncs.values().any(|r| r.running()) {
                self.resyncing.notify_one();
            }
            if state.buckets.values().any(|b| !b.lifecycle.is_empty()) {
                self.lifecycle.notify_one();
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// After a start on empty Raft storage: puts back the newest copy the drives hold, unless the
    /// site already has a state (then the copy is stale and Raft's state wins).
    pub async fn restore_from_drives(&self) {
        let copies = join_all(self.local.iter().map(|d| d.get(SITE_STATE))).await;
        let Some(kept) = copies
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .filter_map(|b| SiteState::from_bytes(&b).ok())
            .filter(|s| !s.buckets.is_empty())
            .max_by_key(|s| s.applied)
        else {
            return;
        };
        if !self.state().buckets.is_empty() {
            return;
        }
        let n = kept.buckets.len();
        match self
            .control
            .propose(Command::Restore {
                state: Box::new(kept),
            })
            .await
        {
            Ok(()) => tracing::info!(buckets = n, "site state restored from the drives"),
            Err(ProposeError::Rejected(CommandError::NotEmpty)) => {}
            Err(e) => tracing::warn!(error = %e, "site state not restored"),
        }
    }
}
