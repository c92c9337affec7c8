//! `cairn admin info [ALIAS]`: the site as tables for people (nodes and drives, erasure sets
//! against their quorums, the control plane, replication peers), or `--json`, the admin API's
//! answer as it is, for scripts.

use std::fmt::Write as _;

use super::alias::Target;
use super::info::Info;
use crate::units::format_size;

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// The site (default: `--endpoint` with `--access-key`/`--secret-key`).
    pub alias: Option<String>,
    /// The admin API's JSON, unchanged.
    #[arg(long)]
    pub json: bool,
}

pub fn run(target: &Target, args: &InfoArgs) -> anyhow::Result<()> {
    let text = super::cli::runtime()?.block_on(super::cli::call(
        target,
        "GET",
        "info",
        &[],
        Vec::new(),
    ))?;
    if args.json {
        println!("{text}");
        return Ok(());
    }
    let info: Info = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the server's info does not parse ({e}); try --json"))?;
    print!("{}", table(&info));
    Ok(())
}

fn space(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), format_size)
}

/// How a set stands against its quorums.
fn set_state(online: usize, read: usize, write: usize) -> &'static str {
    if online < read {
        "DOWN: below read quorum"
    } else if online < write {
        "read-only: below write quorum"
    } else {
        "ok"
    }
}

/// `info` for people.
pub fn table(i: &Info) -> String {
    let mut out = String::new();
    let cp = &i.control_plane;
    let name = |id: u64| match cp.members.get(&id) {
        Some(addr) => format!("node {id} ({addr})"),
        None => format!("node {id}"),
    };
    let _ = writeln!(
        out,
        "Site: {} node(s), {} erasure set(s) of {} drives (parity {}), {} bucket(s); answered by {}",
        i.nodes.len(),
        i.sets,
        i.set_size,
        i.parity,
        i.buckets,
        i.answered_by
    );
    let _ = writeln!(
        out,
        "Control plane: leader {}, term {}; answering node: {}, {}, applied index {}",
        cp.leader.map_or_else(|| "none".into(), name),
        cp.term,
        name(cp.node_id),
        format!("{:?}", cp.role).to_lowercase(),
        cp.last_applied_index
            .map_or_else(|| "-".into(), |v| v.to_string())
    );
    let _ = writeln!(
        out,
        "Heal: {}; versions removed as lost beyond parity since start-up: {}",
        if i.healing {
            "a background heal is running"
        } else {
            "no background heal running"
        },
        i.lost_versions_removed
    );

    let _ = writeln!(
        out,
        "\n{:<22} {:<40} {:>3} {:<8} {:>11} {:>11}",
        "NODE", "DRIVE", "SET", "STATE", "FREE", "SIZE"
    );
    for d in &i.drives {
        let (node, path) = if d.node.is_empty() {
            ("-", d.endpoint.as_str())
        } else {
            (d.node.as_str(), d.path.as_str())
        };
        let _ = writeln!(
            out,
            "{:<22} {:<40} {:>3} {:<8} {:>11} {:>11}",
            node,
            path,
            d.set,
            d.state,
            space(d.free_bytes),
            space(d.total_bytes)
        );
    }

    if !i.erasure_sets.is_empty() {
        let _ = writeln!(
            out,
            "\n{:>3} {:>7} {:>11} {:>12}  STATE",
            "SET", "ONLINE", "READ QUORUM", "WRITE QUORUM"
        );
        for s in &i.erasure_sets {
            let _ = writeln!(
                out,
                "{:>3} {:>7} {:>11} {:>12}  {}",
                s.set,
                format!("{}/{}", s.online, s.drives),
                s.read_quorum,
                s.write_quorum,
                set_state(s.online, s.read_quorum, s.write_quorum)
            );
        }
    }

    if let Some(r) = &i.replication {
        let _ = writeln!(
            out,
            "\nReplication of site {}:\n{:<16} {:<7} {:>8} {:>10} {:>10} {:>9}  RESYNC",
            r.local, "PEER", "ONLINE", "BACKLOG", "VERSIONS", "LAG P99", "FAILURES"
        );
        for p in &r.peers {
            let _ = writeln!(
                out,
                "{:<16} {:<7} {:>8} {:>10} {:>10} {:>9}  {}",
                p.name,
                if p.contact.online { "yes" } else { "no" },
                p.backlog,
                p.contact.versions_replicated,
                p.contact
                    .lag_p99_ms
                    .map_or_else(|| "-".into(), |v| format!("{v}ms")),
                p.contact.failures,
                p.resync
                    .as_ref()
                    .map_or_else(|| "-".into(), |s| format!("{:?}", s.state))
            );
        }
    }
    out
}
