//! `cairn server`: start-up, the HTTP listener, health endpoints and graceful shutdown.

mod health;
pub mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admin::AdminRoute;
use crate::auth::root::{self, Origin};
use crate::auth::{Authenticator, CredentialStore};
use crate::catalog::Catalog;
use crate::clock::{SharedClock, SystemClock};
use crate::object::{HealRequest, ObjectLayer};
use crate::s3::CairnS3;

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
    /// Drive directories; `{a...b}` ranges expand (`/data{1...6}`).
    #[arg(required = true, value_name = "DIR")]
    pub drives: Vec<String>,
}

pub fn parse_address(a: &str) -> anyhow::Result<SocketAddr> {
    let full = if a.starts_with(':') {
        format!("0.0.0.0{a}")
    } else {
        a.to_string()
    };
    full.parse()
        .with_context(|| format!("invalid --address {a:?}: expected HOST:PORT or :PORT"))
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::admin::init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

/// Everything a running node holds.
pub struct Node {
    pub objects: Arc<ObjectLayer>,
    pub catalog: Arc<Catalog>,
    pub credentials: Arc<dyn CredentialStore>,
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let addr = parse_address(&args.address)?;
    let drives = startup::open_drives(&args.drives, args.parity)?;
    let mut rng = rand::rngs::OsRng;
    let (root, origin) = root::load_or_create(
        std::env::var("CAIRN_ROOT_USER").ok(),
        std::env::var("CAIRN_ROOT_PASSWORD").ok(),
        &drives.paths,
        &mut rng,
    )?;
    if let Origin::Generated = origin {
        // Shown once: the operator needs it, and it is kept only on the drives.
        println!(
            "Generated root credentials (kept in {}/.cairn/root.json):",
            drives.paths[0].display()
        );
        println!("  AccessKey: {}", root.access_key);
        println!("  SecretKey: {}", root.secret_key);
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let (objects, heal_rx) = ObjectLayer::new(
        drives.drives.clone(),
        drives.layout,
        &drives.deployment_id,
        clock,
        Box::new(<rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_entropy()),
    )?;
    let objects = Arc::new(objects);
    let catalog = Arc::new(Catalog::load(drives.drives.clone()).await);
    let credentials: Arc<dyn CredentialStore> = Arc::new(root);
    let node = Arc::new(Node {
        objects: objects.clone(),
        catalog: catalog.clone(),
        credentials: credentials.clone(),
    });

    tokio::spawn(heal_worker(objects.clone(), heal_rx));
    if drives.fresh > 0 {
        let n = node.clone();
        tokio::spawn(async move {
            tracing::info!(
                drives = drives.fresh,
                "blank drives joined: healing everything"
            );
            let s = crate::admin::heal_everything(&n).await;
            tracing::info!(?s, "start-up heal finished");
        });
    }

    let mut b = S3ServiceBuilder::new(CairnS3 {
        objects: objects.clone(),
        catalog,
        region: args.region.clone(),
    });
    b.set_auth(Authenticator(credentials));
    b.set_route(AdminRoute { node: node.clone() });
    let s3 = b.build();

    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, layout = ?drives.layout, deployment = %drives.deployment_id, "cairn is serving");
    println!(
        "Cairn serving S3 on http://{} ({} drive(s), {:?})",
        listener.local_addr()?,
        drives.paths.len(),
        drives.layout
    );

    let limit = Arc::new(Semaphore::new(args.max_requests.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = health::Router { s3: s3.clone(), node: node.clone(), limit: limit.clone() };
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let svc = svc.clone();
                    async move { svc.handle(req).await }
                });
                let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after 30 s; stopping anyway");
    }
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

/// Repairs objects that reads found damaged, one at a time, skipping repeats already queued.
async fn heal_worker(
    objects: Arc<ObjectLayer>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<HealRequest>,
) {
    while let Some(req) = rx.recv().await {
        let mut batch = vec![req];
        while let Ok(r) = rx.try_recv() {
            if !batch.contains(&r) {
                batch.push(r);
            }
        }
        for r in batch {
            match objects.heal_object(&r.bucket, &r.key).await {
                Ok(s) => {
                    tracing::info!(bucket = %r.bucket, key = %r.key, shards = s.shards_written, "healed")
                }
                Err(e) => {
                    tracing::warn!(bucket = %r.bucket, key = %r.key, error = %e, "heal failed")
                }
            }
        }
    }
}
