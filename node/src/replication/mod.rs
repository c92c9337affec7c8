//! Site replication (DESIGN.md §7): sites reach each other over their S3 endpoints
//! ([`crate::link`]); the control plane's outbox carries buckets, their configs and IAM to every
//! peer (`outbox`), and every version written here follows (`objects`), then what changes it
//! (new metadata, removal for good: `changes`); a resync sends every version again (`resync`); a read
//! of a version not here yet is answered by the peer that holds it (`proxy`); `drift` compares the
//! sites' control-plane state entity by entity. The version's replication
//! status lives in its record (`object::replica`), so writes mark it without knowing this module.

pub mod backoff;
pub mod changes;
pub mod drift;
pub mod objects;
pub mod outbox;
pub mod proxy;
pub mod resync;

use std::sync::Arc;

/// Starts the replicators once the site has peers (a site that never pairs runs none of them,
/// and this task is not woken until then: idle tasks woken on every state change were seen to
/// change how a single site's tasks interleave).
pub async fn start_when_paired(
    node: Arc<crate::node::Node>,
    s3: crate::s3::CairnS3,
    hints: tokio::sync::mpsc::UnboundedReceiver<crate::object::replica::VersionRef>,
    region: String,
    resync_rate: u32,
    retry_rng: Box<dyn rand::RngCore + Send>,
) {
    node.catalog.paired.notified().await;
    let retry = Arc::new(backoff::Retry::new(node.objects.clock.clone(), retry_rng));
    tokio::spawn(outbox::replicate_forever(
        node.clone(),
        region.clone(),
        retry.clone(),
    ));
    // Joined rather than spawned: a task more would shift the simulator's task ids.
    let resync = resync::run_forever(
        node.clone(),
        Arc::new(s3.clone()),
        region.clone(),
        resync_rate,
        retry.clone(),
    );
    futures::join!(
        resync,
        objects::replicate_forever(node, s3, hints, region, retry)
    );
}
