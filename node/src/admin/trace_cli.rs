//! `cairn admin trace ALIAS`: prints the site's requests as they finish, one line each (or the
//! server's JSON lines with `--json`), until interrupted.

use http_body_util::BodyExt;

use super::alias::Aliases;
use crate::observe::trace::{TraceFilter, TraceRecord};

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    pub alias: String,
    /// Only these APIs (`GetObject`, `PutObject`, `Admin`, `STS`, ...; repeat for more).
    #[arg(long = "api", value_name = "API")]
    pub apis: Vec<String>,
    /// Only requests answered with status 400 or more.
    #[arg(long)]
    pub errors: bool,
    /// Only requests on these buckets.
    #[arg(long = "bucket", value_name = "BUCKET")]
    pub buckets: Vec<String>,
    /// Only requests served by these nodes (`HOST:PORT` of their S3 API, as in the endpoint list).
    #[arg(long = "node", value_name = "HOST:PORT")]
    pub nodes: Vec<String>,
    /// Show request and answer headers (signatures, session tokens and SSE-C keys masked).
    #[arg(long)]
    pub verbose: bool,
    /// Print the server's JSON lines as they come.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let target = Aliases::load()?.resolve(&args.alias)?;
    let filter = TraceFilter {
        apis: args.apis.clone(),
        errors: args.errors,
        buckets: args.buckets.clone(),
        nodes: args.nodes.clone(),
        verbose: args.verbose,
    };
    super::cli::runtime()?.block_on(async {
        let (link, peer) = super::cli::client(&target)?;
        let query = filter.to_query();
        let resp = link
            .send(&peer, super::trace::request(&query))
            .await
            .map_err(|e| super::cli::failure(&target, "trace", e))?;
        eprintln!("Tracing {} (interrupt to stop)", target.url);
        let mut body = resp.into_body();
        let mut partial: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            partial.extend_from_slice(&data);
            for line in super::trace::complete_lines(&mut partial) {
                print_line(&line[..line.len() - 1], args.json, args.verbose);
            }
        }
        anyhow::bail!("the trace stream of {} ended", target.url)
    })
}

/// Prints one line of the stream (heartbeats, the empty lines, print nothing).
fn print_line(line: &[u8], json: bool, verbose: bool) {
    use std::io::Write;
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = if json {
        out.write_all(line).and(out.write_all(b"\n"))
    } else {
        match serde_json::from_slice::<TraceRecord>(line) {
            Ok(r) => out.write_all(readable(&r, verbose).as_bytes()),
            Err(_) => out
                .write_all(line)
                .and(out.write_all(b"  (lines lost: this reader was too slow)\n")),
        }
    };
    let _ = out.flush();
}

/// A record as a line for people (and its headers below it with `--verbose`).
fn readable(r: &TraceRecord, verbose: bool) -> String {
    let mut s = format!(
        "{} [{}] {} {} {} {} {:.1}ms in={}B out={}B from {} id={}\n",
        r.time,
        r.node,
        r.api,
        r.method,
        r.path,
        r.status,
        r.duration_ms,
        r.bytes_in,
        r.bytes_out,
        r.remote,
        r.request_id
    );
    if verbose {
        for (k, v) in &r.headers {
            s += &format!("    > {k}: {v}\n");
        }
        for (k, v) in &r.response_headers {
            s += &format!("    < {k}: {v}\n");
        }
    }
    s
}
