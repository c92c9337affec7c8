//! `cairn admin ...`: a SigV4-signing client of the admin API.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::bench::sign::{amz_date, SignRequest, Signer, UNSIGNED_PAYLOAD};

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// The deployment's S3 endpoint.
    #[arg(
        long,
        env = "CAIRN_ENDPOINT",
        default_value = "http://127.0.0.1:9000",
        global = true
    )]
    pub endpoint: String,
    #[arg(long, env = "CAIRN_ACCESS_KEY", global = true)]
    pub access_key: Option<String>,
    #[arg(long, env = "CAIRN_SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<String>,
    #[arg(long, env = "CAIRN_REGION", default_value = "us-east-1", global = true)]
    pub region: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Rebuild missing or damaged shards of every object (prints a JSON summary).
    Heal,
    /// Show the deployment's layout and drive states (JSON).
    Info,
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (method, op) = match args.command {
        AdminCommand::Heal => ("POST", "heal"),
        AdminCommand::Info => ("GET", "info"),
    };
    let body = rt.block_on(call(&args, method, op))?;
    println!("{body}");
    Ok(())
}

async fn call(args: &AdminArgs, method: &str, op: &str) -> anyhow::Result<String> {
    let ak = args
        .access_key
        .clone()
        .context("no access key: pass --access-key or set CAIRN_ACCESS_KEY")?;
    let sk = args
        .secret_key
        .clone()
        .context("no secret key: pass --secret-key or set CAIRN_SECRET_KEY")?;
    let base: hyper::Uri = args
        .endpoint
        .parse()
        .with_context(|| format!("invalid endpoint {:?}", args.endpoint))?;
    let host = base
        .authority()
        .context("endpoint has no host")?
        .to_string();
    let path = format!("{}{op}", super::PREFIX);
    let date = amz_date(time::OffsetDateTime::now_utc());
    let mut signer = Signer::new(&ak, &sk, &args.region, "s3");
    let auth = signer.authorization(&SignRequest {
        method,
        path: &path,
        query: &[],
        headers: &[
            ("host", &host),
            ("x-amz-date", &date),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ],
        payload_hash: UNSIGNED_PAYLOAD,
        amz_date: &date,
    });
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!(
            "{}://{host}{path}",
            base.scheme_str().unwrap_or("http")
        ))
        .header("host", &host)
        .header("x-amz-date", &date)
        .header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
        .header("authorization", auth)
        .body(Full::new(Bytes::new()))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // Healing a large deployment takes a while; only connection problems should fail fast.
    let resp = tokio::time::timeout(Duration::from_secs(24 * 3600), client.request(req))
        .await
        .context("admin request timed out")?
        .with_context(|| format!("cannot reach {}", args.endpoint))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        anyhow::bail!("{op} failed: HTTP {status}: {text}");
    }
    Ok(text)
}
