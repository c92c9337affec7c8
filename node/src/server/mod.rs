//! `cairn server`: start-up, the HTTP listener, health endpoints and graceful shutdown.

mod cors;
pub mod health;
pub mod kes;
pub mod listener;
pub mod metrics;
pub mod node;
mod observe;
mod preauth;
mod route;
pub mod sigv2;
pub mod site_secret;
pub mod startup;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use cairn_control_plane::raft::{ControlPlane, ControlPlaneConfig};
use cairn_control_plane::transport::Transport;

use crate::auth::root::{self, Origin};
use crate::clock::SystemClock;
pub use crate::node::Node;
use crate::topology::{Topology, DEFAULT_INTERNODE_OFFSET};
use crate::units::{parse_duration, parse_size};
pub use node::NodeParts;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address of the S3 API, `HOST:PORT` or `:PORT` for every interface.
    #[arg(long, env = "CAIRN_ADDRESS", default_value = ":9000")]
    pub address: String,
    /// Parity shards per erasure set (default: 0 for 1 drive, 1 for 2-3, 2 for 4-5, 3 for 6-7, 4 for 8+).
    #[arg(long, env = "CAIRN_PARITY")]
    pub parity: Option<usize>,
    /// Region reported to clients.
    #[arg(long, env = "CAIRN_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Requests served at once; beyond it clients get 503 SlowDown.
    #[arg(long, env = "CAIRN_MAX_REQUESTS", default_value_t = 1024)]
    pub max_requests: usize,
    /// Connections open at once; more are closed as soon as they are accepted (0: no cap).
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 client: its /64); more are
    /// closed as soon as they are accepted (0: no cap, e.g. behind a proxy).
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// A client silent this long is dropped: a request head not complete, a request body with
    /// no new data (400 RequestTimeout), a connection with nothing in flight.
    #[arg(long, env = "CAIRN_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// A request body must arrive at this rate (bytes per second) on average over the time
    /// the server waits for it, once that is longer than the idle timeout; slower senders get
    /// 400 RequestTimeout, so dripping a byte now and then cannot hold a request for ever.
    /// 0: no minimum.
    #[arg(long, env = "CAIRN_MIN_BODY_RATE", default_value = "1KiB", value_parser = parse_size)]
    pub min_body_rate: u64,
    /// The largest file of a browser-form upload (POST Object), at most 5GiB: the form is read
    /// into memory before its signature and policy can be checked. Larger forms get 400
    /// EntityTooLarge.
    #[arg(long, env = "CAIRN_MAX_POST_OBJECT_SIZE", default_value = "32MiB", value_parser = parse_size)]
    pub max_post_object_size: u64,
    /// Internode gRPC (Raft, data service) listens on the S3 port plus this offset; the same on
    /// every node of a site.
    #[arg(long, env = "CAIRN_INTERNODE_OFFSET", default_value_t = DEFAULT_INTERNODE_OFFSET)]
    pub internode_offset: u16,
    /// Drive directories (`./data`, `/data{1...6}`), or for a site of several nodes the same
    /// endpoint list on every node: `http://HOST:PORT/PATH`, e.g. `http://node{1...3}:9000/data{1...2}`.
    #[arg(required = true, value_name = "DRIVES")]
    pub drives: Vec<String>,
    /// Directory with `public.crt` + `private.key` (and `CAs/`): HTTPS on the S3 port and mutual
    /// TLS between nodes. Default `~/.cairn/certs`; without the files Cairn serves plain HTTP.
    #[arg(long, env = "CAIRN_CERTS_DIR")]
    pub certs_dir: Option<std::path::PathBuf>,
    /// Also serve this site's KMS keys over the KES API at `HOST:PORT` (HTTPS with the certs
    /// directory's certificate; clients need a certificate from its `CAs/`), so other sites can
    /// use them with `CAIRN_KMS_KES_*`.
    #[arg(long, env = kes::ADDRESS_ENV)]
    pub kes_address: Option<String>,
    /// Versions a site resync sends per second at most (0: no limit), to spare the link and the
    /// peer while it runs.
    #[arg(long, env = "CAIRN_RESYNC_RATE", default_value_t = 0)]
    pub resync_rate: u32,
    /// Lifecycle actions (expirations, removals, aborted uploads) per second at most.
    #[arg(long, env = "CAIRN_LIFECYCLE_RATE", default_value_t = 1000)]
    pub lifecycle_rate: u32,
    /// For testing only: the length of a lifecycle rule's "day" (`2s` makes `Days=1` expire
    /// objects within seconds). Leave it at 1d in production.
    #[arg(long, env = "CAIRN_LIFECYCLE_DAY", default_value = "1d", value_parser = parse_duration)]
    pub lifecycle_day: Duration,
    /// How often the control-plane leader scans buckets with lifecycle rules (tests shorten it
    /// with the day).
    #[arg(long, env = "CAIRN_LIFECYCLE_SCAN", default_value = "1h", value_parser = parse_duration)]
    pub lifecycle_scan: Duration,
}

fn default_certs_dir() -> std::path::PathBuf {
    std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
        .join(".cairn")
        .join("certs")
}

/// AWS's largest single upload, and so the largest browser-form upload.
const MAX_POST_OBJECT_SIZE: u64 = 5 << 30;

/// The socket to bind for `HOST:PORT` or `:PORT`; a host name binds every interface (a node is
/// named by its host in the endpoint list but must accept on whatever interface that resolves to).
pub fn parse_address(a: &str) -> anyhow::Result<SocketAddr> {
    let bad = || format!("invalid address {a:?}: expected HOST:PORT or :PORT");
    if let Ok(addr) = a.parse() {
        return Ok(addr);
    }
    let (_, port) = a.rsplit_once(':').with_context(bad)?;
    let port: u16 = port.parse().ok().with_context(bad)?;
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Fetches the site secret from another node's S3 port, signed with the root credentials.
struct PeerFetch {
    link: crate::link::Link,
    scheme: &'static str,
    root: crate::link::PeerTarget,
}

#[async_trait::async_trait]
impl site_secret::Fetch for PeerFetch {
    async fn fetch(
        &self,
        node: &crate::topology::NodeEndpoint,
    ) -> Option<zeroize::Zeroizing<String>> {
        #[derive(serde::Deserialize)]
        struct Answer {
            secret: String,
        }
        let peer = crate::link::PeerTarget {
            name: node.s3.to_string(),
            endpoints: vec![format!("{}://{}", self.scheme, node.s3)],
            ..self.root.clone()
        };
        let req = crate::link::PeerRequest {
            method: "GET",
            path: "/cairn/admin/v1/internode/secret",
            query: &[],
            headers: &[],
            body: crate::link::empty(),
        };
        match self.link.call(&peer, req).await {
            Ok(body) => serde_json::from_slice::<Answer>(&body)
                .ok()
                .map(|a| zeroize::Zeroizing::new(a.secret)),
            Err(e) => {
                tracing::debug!(peer = %node.s3, error = %e, "no internode secret from this node yet");
                None
            }
        }
    }
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Inside the runtime: the trace exporter's gRPC channel belongs to it.
    let telemetry =
        rt.block_on(async { crate::telemetry::init(&|k| std::env::var(k).ok(), &args.address) })?;
    let served = rt.block_on(serve(args, telemetry.internode()));
    // Off the runtime's workers, which still run the exporter's last batch.
    telemetry.shutdown();
    served
}

/// `trace` carries traces across internode calls (`None` with traces off).
async fn serve(
    args: ServerArgs,
    trace: Option<Arc<dyn cairn_control_plane::transport::TraceContext>>,
) -> anyhow::Result<()> {
    let addr = parse_address(&args.address)?;
    if args.max_post_object_size == 0 || args.max_post_object_size > MAX_POST_OBJECT_SIZE {
        anyhow::bail!("--max-post-object-size must be between 1 byte and 5GiB");
    }
    let topology = Topology::parse(&args.drives, &args.address, args.internode_offset)?;
    let user = std::env::var("CAIRN_ROOT_USER").ok();
    let password = std::env::var("CAIRN_ROOT_PASSWORD").ok();
    if topology.nodes.len() > 1 && (user.is_none() || password.is_none()) {
        anyhow::bail!(
            "a site of {} nodes needs CAIRN_ROOT_USER and CAIRN_ROOT_PASSWORD, set alike on every node",
            topology.nodes.len()
        );
    }
    tls::install_crypto_provider();
    let certs_dir = args.certs_dir.clone().unwrap_or_else(default_certs_dir);
    let tls = tls::TlsMaterial::load(&certs_dir)?;
    let drives = startup::open_drives(&topology, args.parity)?;
    let mut rng = rand::rngs::OsRng;
    let (root, origin) = root::load_or_create(user, password, &drives.paths, &mut rng)?;
    if topology.nodes.len() > 1 && tls.is_none() {
        tracing::warn!(
            certs = %certs_dir.display(),
            "SECURITY: this site of {} nodes runs WITHOUT mutual TLS: internode traffic (Raft, shards, the internode secret) crosses the network in clear and unauthenticated by certificates; put public.crt, private.key and CAs/ in the certificates directory of every node",
            topology.nodes.len()
        );
    }
    let fetch = PeerFetch {
        link: crate::link::Link::new(
            Arc::new(crate::net::TcpDial),
            tls.as_ref()
                .map(|m| m.ca_pem.as_slice())
                .unwrap_or_default(),
            Arc::new(SystemClock),
        ),
        scheme: if tls.is_some() { "https" } else { "http" },
        root: crate::link::PeerTarget {
            name: String::new(),
            endpoints: Vec::new(),
            access_key: root.access_key.clone(),
            secret_key: zeroize::Zeroizing::new(root.secret_key.clone()),
            region: args.region.clone(),
        },
    };
    let site_secret = site_secret::obtain(
        &topology,
        &site_secret::path(&drives.paths[0]),
        drives.formatted_before,
        &fetch,
        &mut rng,
    )
    .await?;
    let transport = Transport::tcp_tls(
        &site_secret,
        tls.as_ref().map(tls::TlsMaterial::internode_client),
    )?
    .with_trace(trace);
    let site_drives = drives.site_drives(&topology, &transport, Arc::new(SystemClock));
    if let Origin::Generated = origin {
        // Shown once: the operator needs it, and it is kept only on the drives.
        println!(
            "Generated root credentials (kept in {}/.cairn/root.json):",
            drives.paths[0].display()
        );
        println!("  AccessKey: {}", root.access_key);
        println!("  SecretKey: {}", root.secret_key);
    }

    let raft_dir = drives.paths[0]
        .join(crate::drive::format::SYS_DIR)
        .join("raft");
    let rejoining = raft_dir.exists();
    let control = Arc::new(
        ControlPlane::start(
            ControlPlaneConfig::new(
                topology.local_id(),
                raft_dir,
                topology.members(),
                topology.voters(),
            ),
            transport.clone(),
        )
        .await?,
    );
    if topology.networked {
        let internode = &topology.nodes[topology.local].internode;
        let bind = parse_address(internode)?;
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen for internode gRPC on {bind}"))?;
        let router = node::internode_router(
            &control,
            &transport,
            drives.local.clone(),
            Arc::new(SystemClock),
            tls.as_ref().map(tls::TlsMaterial::internode_server),
        )?;
        tokio::spawn(async move {
            // No Nagle on the answering side either: a reused connection otherwise waits for the
            // caller's delayed ACK (about 40 ms) before the rest of an answer leaves.
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |conn| {
                    if let Ok(s) = &conn {
                        let _ = s.set_nodelay(true);
                    }
                    conn
                },
            );
            if let Err(e) = router.serve_with_incoming(incoming).await {
                tracing::error!(error = %e, "internode gRPC server stopped");
            }
        });
        tracing::info!(%internode, mtls = tls.is_some(), "internode gRPC listening");
    }
    let heal_on_start = drives.fresh > 0 || (topology.networked && rejoining);
    let ca_pem = match &tls {
        Some(m) => m.ca_pem.clone(),
        None => tls::trusted_cas(&certs_dir)?,
    };
    let idp = crate::idp::Providers::from_env(
        &|k| std::env::var(k).ok(),
        Arc::new(crate::net::TcpDial),
        &ca_pem,
    )?;
    tracing::info!(
        ldap = idp.ldap.is_some(),
        openid = idp.openid.len(),
        certificates = idp.certificates,
        "external identity providers"
    );
    let client_certificates = idp.certificates;
    if client_certificates && tls.is_none() {
        anyhow::bail!(
            "{}=on needs TLS on the S3 port: put public.crt, private.key and CAs/ in {}",
            crate::idp::TLS_ENABLE_ENV,
            certs_dir.display()
        );
    }
    let root_secret = root.secret_key.clone();
    let metrics_auth = metrics::guard::AuthType::parse(
        std::env::var(crate::admin::prometheus::AUTH_TYPE_ENV)
            .ok()
            .as_deref(),
    )?;
    let (node, mut router) = Node::start(NodeParts {
        topology: topology.clone(),
        drives: site_drives.clone(),
        layout: drives.layout,
        deployment_id: drives.deployment_id.clone(),
        control: control.clone(),
        credentials: Arc::new(root),
        clock: Arc::new(SystemClock),
        rng: Box::new(<rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_entropy()),
        region: args.region.clone(),
        max_requests: args.max_requests,
        max_post_object_size: args.max_post_object_size,
        heal_on_start,
        restore_on_start: !rejoining,
        sse: crate::sse::object::SseConfig::from_env(
            Box::new(<rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_entropy()),
            &root_secret,
            tls.as_ref().map(|m| m.ca_pem.as_slice()),
        )?,
        peer_dial: Arc::new(crate::net::TcpDial),
        peer_ca_pem: ca_pem.clone(),
        idp,
        site_secret,
        resync_rate: args.resync_rate,
        lifecycle: crate::lifecycle::Settings {
            rate: args.lifecycle_rate,
            day: args.lifecycle_day,
            scan_every: args.lifecycle_scan,
        },
    })
    .await?;

    if let Some(settings) =
        crate::observe::audit::AuditSettings::from_env(&|k| std::env::var(k).ok())?
    {
        let link = crate::link::Link::new(
            Arc::new(crate::net::TcpDial),
            &ca_pem,
            Arc::new(SystemClock),
        );
        let audit = crate::observe::audit::Audit::start(&settings, link);
        let _ = node.audit.set(audit);
        tracing::info!(
            file = ?settings.file,
            webhook = settings.webhook.is_some(),
            queue = settings.queue,
            "audit log on"
        );
    }
    router.metrics_auth = metrics_auth;
    if metrics_auth == metrics::guard::AuthType::Public {
        tracing::warn!(
            "{}=public: anyone who reaches the S3 port may read the metrics",
            crate::admin::prometheus::AUTH_TYPE_ENV
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let mut served_cert = None;
    let acceptor = match &tls {
        Some(m) => {
            let (acceptor, cert) = tls::s3_acceptor(m, client_certificates)?;
            served_cert = Some(cert.clone());
            tokio::spawn(tls::reload_forever(m.dir.clone(), cert));
            Some(acceptor)
        }
        None => {
            tracing::warn!(certs = %certs_dir.display(), "no TLS certificate: serving plain HTTP");
            None
        }
    };
    if let Some(kes) = args.kes_address.as_deref().filter(|a| !a.trim().is_empty()) {
        let (Some(m), Some(cert)) = (&tls, served_cert) else {
            anyhow::bail!(
                "--kes-address needs public.crt and private.key in {}: KES is served over mutual TLS only",
                certs_dir.display()
            );
        };
        let bound = kes::start_for_node(parse_address(kes)?, &m.ca_pem, cert, node.clone()).await?;
        println!("Cairn serving KES on https://{bound} (client certificates required)");
    }
    tracing::info!(%addr, layout = ?drives.layout, deployment = %drives.deployment_id, "cairn is serving");
    println!(
        "Cairn serving S3 on {}://{} ({} drive(s) here, {} in the site on {} node(s), {:?})",
        if acceptor.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        drives.paths.len(),
        site_drives.len(),
        topology.nodes.len(),
        drives.layout
    );

    let limits = listener::ListenerLimits {
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        idle_timeout: args.idle_timeout,
        min_body_rate: args.min_body_rate,
    };
    listener::serve(listener, acceptor, router, limits, shutdown_signal()).await;
    control.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
