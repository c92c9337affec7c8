//! `cairn admin trace ALIAS`: prints the site's requests as they finish, one line each (or the
//! server's JSON lines with `--json`), until interrupted.

use super::alias::Aliases;
use crate::observe::trace::{TraceFilter, TraceLine, TraceRecord};

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
        let mut stream = Stream::open(&target, &filter, "trace").await?;
        eprintln!("Tracing {} (interrupt to stop)", target.url);
        while let Some(line) = stream.next_line().await? {
            print_line(&line, args.json, args.verbose);
        }
        anyhow::bail!("the trace stream of {} ended", target.url)
    })
}

/// A site's trace stream as the CLI reads it, line by line.
pub struct Stream {
    body: hyper::body::Incoming,
    partial: Vec<u8>,
    lines: std::collections::VecDeque<Vec<u8>>,
    /// How many nodes' records it carries (each says `tracing` once they flow).
    pub nodes: usize,
}

impl Stream {
    /// Opens the trace of `target`'s site for `filter`; `op` names the command in errors.
    pub async fn open(
        target: &super::alias::Target,
        filter: &TraceFilter,
        op: &str,
    ) -> anyhow::Result<Self> {
        let (link, peer) = super::cli::client(target)?;
        let query = filter.to_query();
        let resp = link
            .send(&peer, super::trace::request(&query))
            .await
            .map_err(|e| super::cli::failure(target, op, e))?;
        let nodes = resp
            .headers()
            .get(super::trace::NODES_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        Ok(Self {
            body: resp.into_body(),
            partial: Vec::new(),
            lines: Default::default(),
            nodes,
        })
    }

    /// The next line (without its newline; heartbeats come as empty lines), `None` once the
    /// stream ended.
    pub async fn next_line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        use http_body_util::BodyExt;
        loop {
            if let Some(mut line) = self.lines.pop_front() {
                line.pop();
                return Ok(Some(line));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            self.partial.extend_from_slice(&data);
            self.lines
                .extend(super::trace::complete_lines(&mut self.partial));
        }
    }
}

/// Prints one line of the stream (heartbeats, the empty lines, print nothing; a node's note
/// that it traces goes to stderr).
fn print_line(line: &[u8], json: bool, verbose: bool) {
    use std::io::Write;
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let parsed = serde_json::from_slice::<TraceLine>(line);
    if let Ok(TraceLine::Tracing { node, .. }) = &parsed {
        eprintln!("node {node}: tracing");
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = match parsed {
        _ if json => out.write_all(line).and(out.write_all(b"\n")),
        Ok(TraceLine::Record(r)) => out.write_all(readable(&r, verbose).as_bytes()),
        _ => out
            .write_all(line)
            .and(out.write_all(b"  (lines lost: this reader was too slow)\n")),
    };
    let _ = out.flush();
}

/// A record as a line for people (and its headers below it with `--verbose`).
fn readable(r: &TraceRecord, verbose: bool) -> String {
    let mut s = format!(
        "{} [{}] {} {} {} {} {:.1}ms in={}B out={}B from {} id={}\n",
        r.request.time,
        r.request.node,
        r.request.api,
        r.request.method,
        r.request.path,
        r.request.status,
        r.duration_ms,
        r.bytes_in,
        r.bytes_out,
        r.request.remote,
        r.request.request_id
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
