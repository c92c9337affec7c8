//! Multi-site (DESIGN.md §7): sites reach each other over their S3 endpoints (`link`); the
//! control plane's outbox carries buckets, their configs and IAM to every peer (`outbox`), and
//! every version written here follows (`objects`).

pub mod link;
pub mod objects;
pub mod outbox;

use std::sync::Arc;

/// Starts the replicators once the site has peers (a site that never pairs runs none of them).
pub async fn start_when_paired(
    node: Arc<crate::server::Node>,
    s3: crate::s3::CairnS3,
    hints: tokio::sync::mpsc::UnboundedReceiver<objects::VersionRef>,
    region: String,
) {
    let mut state = node.catalog.control.subscribe();
    while !state.borrow_and_update().sites.enabled() {
        if state.changed().await.is_err() {
            return;
        }
    }
    tokio::spawn(outbox::replicate_forever(node.clone(), region.clone()));
    objects::replicate_forever(node, s3, hints, region).await;
}
