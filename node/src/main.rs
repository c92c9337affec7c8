//! The `cairn` binary: server, admin client and load generator.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: an S3-compatible object store for several datacenters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a server on the given drives (`cairn server ./data`, `cairn server /data{1...6}`).
    Server(cairn_node::server::ServerArgs),
    /// Administer a running deployment.
    Admin(cairn_node::admin::cli::AdminArgs),
    /// Generate S3 load against a deployment and report throughput and latency (warp-like).
    Bench(cairn_node::bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => cairn_node::server::run(args),
        Command::Admin(args) => cairn_node::admin::cli::run(args),
        Command::Bench(args) => cairn_node::bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition (e.g. two options of one name, `--endpoint` being
    /// global to `admin`) only when that command is parsed: check them all at once.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
