//! The site's control-plane state (buckets and their configs) as this node keeps it.
//!
//! Commands are applied to `cairn_control_plane::SiteState` and the resulting state is written to
//! every drive (synced, write quorum of all drives). On start-up the copy with the highest applied
//! index wins. The Raft issue replaces this persistence with openraft; the command interface stays.

use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::{Mutex, RwLock};

use cairn_control_plane::{BucketInfo, Command, CommandError, SiteState};

use crate::drive::{Drive, MetaOp};
use crate::object::keys::SITE_STATE;
use crate::object::ObjectError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("control-plane state not persisted: {0}")]
    Persist(#[from] ObjectError),
}

pub struct Catalog {
    drives: Vec<Arc<dyn Drive>>,
    state: RwLock<Arc<SiteState>>,
    /// Serialises proposals so each is applied to the state the previous one left.
    propose: Mutex<()>,
}

impl Catalog {
    /// Loads the newest state any drive holds.
    pub async fn load(drives: Vec<Arc<dyn Drive>>) -> Self {
        let copies = join_all(drives.iter().map(|d| d.get(SITE_STATE))).await;
        let state = copies
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .filter_map(|b| SiteState::from_bytes(&b).ok())
            .max_by_key(|s| s.applied)
            .unwrap_or_default();
        Self {
            drives,
            state: RwLock::new(Arc::new(state)),
            propose: Mutex::new(()),
        }
    }

    /// The applied state, without a round trip (the S3 hot path reads this).
    pub async fn state(&self) -> Arc<SiteState> {
        self.state.read().await.clone()
    }

    pub async fn bucket(&self, name: &str) -> Option<BucketInfo> {
        self.state.read().await.bucket(name).cloned()
    }

    /// Applies a command and persists the result before it becomes visible.
    pub async fn propose(&self, cmd: Command) -> Result<(), CatalogError> {
        let _g = self.propose.lock().await;
        let mut next = (*self.state().await).clone();
        next.apply(&cmd)?;
        self.persist(&next).await?;
        *self.state.write().await = Arc::new(next);
        Ok(())
    }

    async fn persist(&self, s: &SiteState) -> Result<(), ObjectError> {
        let bytes = s.to_bytes();
        let results = join_all(
            self.drives
                .iter()
                .map(|d| d.apply(vec![MetaOp::Put(SITE_STATE.to_vec(), bytes.clone())])),
        )
        .await;
        let have = results.iter().filter(|r| r.is_ok()).count();
        let need = self.drives.len() / 2 + 1;
        if have < need {
            return Err(ObjectError::WriteQuorum { have, need });
        }
        Ok(())
    }

    /// Writes the current state to drives that hold an older copy (or none); returns how many.
    pub async fn heal(&self) -> usize {
        let _g = self.propose.lock().await;
        let s = self.state().await;
        let copies = join_all(self.drives.iter().map(|d| d.get(SITE_STATE))).await;
        let mut healed = 0;
        for (d, c) in self.drives.iter().zip(copies) {
            let stale = match c {
                Ok(Some(b)) => SiteState::from_bytes(&b)
                    .map(|x| x.applied < s.applied)
                    .unwrap_or(true),
                Ok(None) => s.applied > 0,
                Err(_) => false,
            };
            if stale
                && d.apply(vec![MetaOp::Put(SITE_STATE.to_vec(), s.to_bytes())])
                    .await
                    .is_ok()
            {
                healed += 1;
            }
        }
        healed
    }
}
