//! A node assembled from handed-in parts (DESIGN.md §9): production builds the parts from the
//! command line, real drives and sockets; the simulator from in-memory drives, a simulated network
//! and a seeded RNG. Either way the same code serves S3, heals and watches its peers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;
use tokio::sync::Semaphore;

use cairn_control_plane::raft::ControlPlane;
use cairn_control_plane::transport::Transport;

use super::health::Router;
use super::preauth::PreAuthBodies;
use super::route::Routes;
use crate::admin::AdminRoute;
use crate::auth::authorize::s3_access::S3Authorizer;
use crate::auth::authorize::Authorizer;
use crate::auth::iam::IamCredentials;
use crate::auth::{Authenticator, CredentialStore};
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::drive::service::{DataService, DriveServer};
use crate::drive::Drive;
use crate::erasure::layout::Layout;
use crate::node::Node;
use crate::object::{retire, HealRequest, ObjectError, ObjectLayer};
use crate::s3::CairnS3;
use crate::topology::Topology;

/// How often a networked node checks its peers' drives for coming back.
const MONITOR_INTERVAL: Duration = Duration::from_secs(5);
/// How long the leader lets a returning node heal itself before it heals too.
const REJOIN_HEAL_DELAY: Duration = Duration::from_secs(10);
/// Full heals tried after start-up or a rejoin while objects keep failing.
const HEAL_ATTEMPTS: u32 = 5;

/// Everything a node is made of.
pub struct NodeParts {
    pub topology: Topology,
    /// Every drive of the site in endpoint order: this node's own and the others' (remote).
    pub drives: Vec<Arc<dyn Drive>>,
    pub layout: Layout,
    pub deployment_id: String,
    pub control: Arc<ControlPlane>,
    pub credentials: Arc<dyn CredentialStore>,
    pub clock: SharedClock,
    pub rng: Box<dyn rand::RngCore + Send>,
    pub region: String,
    /// Requests served at once; beyond it clients get 503 SlowDown.
    pub max_requests: usize,
    /// The largest file of a browser-form upload (POST Object): s3s holds it in memory before
    /// the form's signature and policy are checked.
    pub max_post_object_size: u64,
    /// Heal everything once the control plane has a leader: blank drives joined, or the node was
    /// down and may have missed writes and deletes.
    pub heal_on_start: bool,
    /// The control plane started on empty storage: restore the state mirrored on the drives.
    pub restore_on_start: bool,
    /// KMS and auto-encryption for server-side encryption.
    pub sse: crate::sse::object::SseConfig,
    /// How this node reaches peer sites, and the authorities trusted for `https` peers.
    pub peer_dial: Arc<dyn crate::net::Dial>,
    pub peer_ca_pem: Vec<u8>,
    /// The site's internode secret (see [`super::site_secret`]): handed to joining nodes of the
    /// site that prove they hold the root credentials.
    pub site_secret: zeroize::Zeroizing<String>,
    /// External identity providers (LDAP, OpenID Connect).
    pub idp: crate::idp::Providers,
    /// Versions a resync sends per second at most (0: no limit).
    pub resync_rate: u32,
    /// How the lifecycle worker runs (rate, and for tests a shorter day).
    pub lifecycle: crate::lifecycle::Settings,
}

impl Node {
    /// Builds the node, spawns its background tasks (healer, peer monitor) and returns the HTTP
    /// router that serves health probes, the admin API and S3 on any connection.
    ///
    /// A single node whose control plane starts on empty storage restores the mirrored state
    /// before it returns, so it never answers from an empty bucket list; a networked node does
    /// that in the background (its peers normally hold the state).
    pub async fn start(parts: NodeParts) -> Result<(Arc<Node>, Router), ObjectError> {
        let local: Vec<Arc<dyn Drive>> = parts
            .topology
            .local_drives()
            .filter_map(|(i, _)| parts.drives.get(i).cloned())
            .collect();
        // Every consumer draws from its own named stream, rooted in the handed-in RNG, so a new
        // consumer (or one more draw) shifts no other's numbers (`crate::rng`).
        let mut rng = parts.rng;
        let streams = crate::rng::RngStreams::from_rng(&mut *rng);
        let iam = parts.credentials.root().map(|root| {
            let creds = IamCredentials::new(root, parts.control.clone(), parts.clock.clone())
                .with_master_key(parts.sse.master_key.as_deref());
            Arc::new(Authorizer::new(
                Arc::new(creds),
                parts.clock.clone(),
                &mut streams.stream("iam"),
            ))
        });
        let credentials: Arc<dyn CredentialStore> = match &iam {
            Some(a) => a.iam.clone(),
            None => parts.credentials,
        };
        let nodes_link = crate::link::Link::new(
            parts.peer_dial.clone(),
            &parts.peer_ca_pem,
            parts.clock.clone(),
        );
        let link = crate::link::Link::new(parts.peer_dial, &parts.peer_ca_pem, parts.clock.clone());
        let (objects, heal_rx) = ObjectLayer::new(
            parts.drives,
            parts.layout,
            &parts.deployment_id,
            parts.clock,
            Box::new(streams.stream("objects")),
            Arc::new(crate::sse::object::SealedLayout),
        )?;
        let objects = Arc::new(objects);
        let catalog = Arc::new(Catalog::new(parts.control, local, objects.clock.clone()));
        let sse = Arc::new(crate::sse::object::Keyring::new(
            parts.sse,
            catalog.clone(),
            Box::new(streams.stream("sse/registry")),
            Box::new(streams.stream("sse/objects")),
        ));
        let node = Arc::new(Node {
            objects: objects.clone(),
            catalog: catalog.clone(),
            credentials: credentials.clone(),
            iam: iam.clone(),
            topology: parts.topology,
            healing: AtomicUsize::new(0),
            sse: sse.clone(),
            link,
            site_secret: parts.site_secret,
            idp: parts.idp,
            trace: Default::default(),
            nodes_link,
            audit: Default::default(),
        });
        let metrics = Arc::new(super::metrics::Metrics::new(objects.clock.clone()));
        tokio::spawn(heal_worker(objects.clone(), heal_rx, metrics.clone()));
        tokio::spawn(sweep_retired(node.clone()));
        let mut restore = parts.restore_on_start;
        if restore && !node.topology.networked {
            wait_for_leader(&node).await;
            catalog.restore_from_drives().await;
            restore = false;
        }
        let (n, c) = (node.clone(), catalog.clone());
        let heal = parts.heal_on_start;
        tokio::spawn(async move {
            wait_for_leader(&n).await;
            if restore {
                c.restore_from_drives().await;
            }
            tokio::spawn(c.mirror_forever());
            if heal {
                heal_until_clean(&n, "start-up").await;
            }
        });
        if node.topology.networked {
            tokio::spawn(rejoin_monitor(node.clone()));
        }
        if let Some(ldap) = node.idp.ldap.clone() {
            tokio::spawn(ldap_account_check(node.clone(), ldap));
        }
        let (replication, hints) = crate::object::replica::Hints::new();
        let s3 = CairnS3 {
            objects: objects.clone(),
            catalog,
            region: parts.region.clone(),
            credentials: credentials.clone(),
            sse,
            replication,
            proxy: Some(crate::replication::proxy::Proxy::new(
                node.clone(),
                parts.region.clone(),
            )),
            lifecycle_day_ns: parts.lifecycle.day_ns(),
        };
        // One task for both waiting workers: a task more would shift the simulator's task ids.
        let replication = crate::replication::start_when_paired(
            node.clone(),
            s3.clone(),
            hints,
            parts.region.clone(),
            parts.resync_rate,
            Box::new(streams.stream("replication/retry")),
        );
        let lifecycle =
            crate::lifecycle::start_when_configured(node.clone(), s3.clone(), parts.lifecycle);
        tokio::spawn(async move {
            futures::join!(replication, lifecycle);
        });
        let mut b = S3ServiceBuilder::new(s3);
        let mut config = S3Config::default();
        config.post_object_max_file_size = parts.max_post_object_size;
        config.form_max_fields_size = super::preauth::FORM_FIELDS_MAX;
        b.set_config(Arc::new(StaticConfigProvider::new(Arc::new(config))));
        b.set_auth(Authenticator(credentials));
        if let Some(a) = iam {
            b.set_access(S3Authorizer {
                authorizer: a,
                objects,
            });
        }
        b.set_route(Routes {
            admin: AdminRoute {
                node: node.clone(),
                region: parts.region,
            },
            sts: crate::sts::StsRoute { node: node.clone() },
            metrics: super::metrics::guard::MetricsRoute {
                node: node.clone(),
                metrics: metrics.clone(),
            },
        });
        let router = Router {
            s3: b.build(),
            node: node.clone(),
            limit: Arc::new(Semaphore::new(parts.max_requests.max(1))),
            preauth: Arc::new(PreAuthBodies::new(parts.max_post_object_size)),
            request_ids: Arc::new(super::health::RequestIds::new(node.topology.local as u64)),
            metrics,
            metrics_auth: Default::default(),
        };
        Ok((node, router))
    }
}

/// The internode gRPC services of a node (Raft and its drives), to serve on any incoming stream;
/// with `tls`, only peers presenting a certificate from a trusted authority get through.
pub fn internode_router(
    control: &ControlPlane,
    transport: &Transport,
    local: BTreeMap<u32, Arc<dyn Drive>>,
    clock: SharedClock,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::server::Router, tonic::transport::Error> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    Ok(server
        .add_service(control.grpc_service())
        .add_service(DriveServer::new(DataService::new(
            transport.clone(),
            local,
            clock,
        ))))
}

/// How often a heal is retried while a drive it needs does not answer.
const HEAL_RETRIES: u32 = 6;
/// The first wait before a retry; it doubles each time (about a minute in all).
const HEAL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Repairs objects that reads found damaged and writes that missed drives, one at a time,
/// skipping repeats already queued; retries one later while a drive did not answer.
async fn heal_worker(
    objects: Arc<ObjectLayer>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<HealRequest>,
    metrics: Arc<super::metrics::Metrics>,
) {
    while let Some(req) = rx.recv().await {
        let mut batch = vec![req];
        while let Ok(r) = rx.try_recv() {
            if !batch.iter().any(|b| b.bucket == r.bucket && b.key == r.key) {
                batch.push(r);
            }
        }
        // Objects still to heal, this one included; 0 once the batch is done and none came.
        let mut left = batch.len();
        for r in batch {
            metrics.heal_queue(left + rx.len());
            left -= 1;
            let again = match objects.heal_object(&r.bucket, &r.key).await {
                Ok(s) => {
                    tracing::info!(bucket = %r.bucket, key = %r.key, shards = s.shards_written, "healed");
                    metrics.healed(s.shards_unwritten == 0);
                    s.shards_unwritten > 0
                }
                Err(e) => {
                    tracing::warn!(bucket = %r.bucket, key = %r.key, error = %e, "heal failed");
                    metrics.healed(false);
                    true
                }
            };
            if again && r.attempt < HEAL_RETRIES {
                let objects = objects.clone();
                let wait = HEAL_RETRY_AFTER * 2u32.pow(r.attempt);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    objects.request_heal(HealRequest {
                        attempt: r.attempt + 1,
                        ..r
                    });
                });
            }
        }
        metrics.heal_queue(rx.len());
    }
}

/// Removes what settled changes retired from this node's drives (`object::retire`) once no read
/// that began on it can still be running.
async fn sweep_retired(node: Arc<Node>) {
    let size = node.objects.layout.set_size;
    let drives: Vec<Arc<dyn Drive>> = node
        .topology
        .local_drives()
        .filter_map(|(i, _)| {
            node.objects
                .sets
                .get(i / size)?
                .drives
                .get(i % size)
                .cloned()
        })
        .collect();
    let mut sweepers: Vec<retire::Sweeper> = drives.iter().map(|_| Default::default()).collect();
    loop {
        tokio::time::sleep(retire::SWEEP_INTERVAL).await;
        let now = node.objects.clock.now_ns();
        for (d, s) in drives.iter().zip(&mut sweepers) {
            match s.sweep(d.as_ref(), now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(drive = d.label(), removed = n, "retired data removed"),
                Err(e) => tracing::warn!(drive = d.label(), error = %e, "retired data sweep"),
            }
        }
    }
}

/// Heals everything, again after a pause while some object failed (a drive still flapping, or
/// another node healing the same object at the same moment), a bounded number of times.
async fn heal_until_clean(node: &Node, why: &str) {
    node.healing.fetch_add(1, Ordering::SeqCst);
    heal_attempts(node, why).await;
    node.healing.fetch_sub(1, Ordering::SeqCst);
}

async fn heal_attempts(node: &Node, why: &str) {
    for attempt in 1..=HEAL_ATTEMPTS {
        tracing::info!(why, attempt, "healing everything");
        let s = crate::admin::heal_everything(node).await;
        tracing::info!(why, attempt, ?s, "heal finished");
        if s.errors == 0 && s.shards_unwritten == 0 {
            return;
        }
        tokio::time::sleep(MONITOR_INTERVAL).await;
    }
}

/// Waits until the site's control plane has a leader (a restarted node must first learn the
/// bucket list it heals).
async fn wait_for_leader(node: &Node) {
    let mut rx = node.catalog.control.metrics();
    while rx.borrow_and_update().current_leader.is_none() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// On the Raft leader: when a drive of another node comes back after being unreachable, heals
/// everything, so shards written while it was away are restored without an operator.
async fn rejoin_monitor(node: Arc<Node>) {
    let drives: Vec<_> = node
        .objects
        .sets
        .iter()
        .flat_map(|s| s.drives.iter().cloned())
        .collect();
    let mut offline = vec![false; drives.len()];
    loop {
        tokio::time::sleep(MONITOR_INTERVAL).await;
        let health = join_all(drives.iter().map(|d| d.health())).await;
        let mut returned = 0;
        for (was, now) in offline.iter_mut().zip(&health) {
            if *was && now.is_ok() {
                returned += 1;
            }
            *was = now.is_err();
        }
        let status = node.catalog.control.status();
        if returned > 0 && status.leader == Some(status.node_id) {
            // A restarted node heals itself first; heal after it so two nodes rarely rebuild
            // the same object at once.
            tokio::time::sleep(REJOIN_HEAL_DELAY).await;
            heal_until_clean(&node, "rejoin").await;
        }
    }
}

/// Checks directory users' service accounts every `check_interval`, on the control plane's
/// leader only (one directory round trip per user and site, not per node).
async fn ldap_account_check(node: Arc<Node>, ldap: Arc<crate::idp::ldap::Ldap>) {
    loop {
        tokio::time::sleep(ldap.check_interval).await;
        let status = node.catalog.control.status();
        if status.leader != Some(status.node_id) {
            continue;
        }
        match ldap.check_accounts(&node.catalog).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(disabled = n, "LDAP service-account check"),
            Err(e) => {
                tracing::warn!(error = %e, "LDAP service-account check failed; nothing changed")
            }
        }
    }
}
