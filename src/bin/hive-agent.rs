//! `hive-agent`: the agent harness alone, the same code as `hive agent`.
//!
//! A separate, small binary for the sandbox: it links no Matrix client, no HTTP server and no
//! database, so an idle agent stays a few megabytes and carries nothing it cannot use.

use std::process::ExitCode;

use clap::Parser;
use hyperhive::cli::AgentArgs;

#[derive(Parser)]
#[command(
    name = "hive-agent",
    version,
    about = "One agent's harness (started by hive-c0re's runtime)"
)]
struct Cli {
    #[command(flatten)]
    args: AgentArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hyperhive::logging::init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hive-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hyperhive::commands::agent::run(cli.args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hive-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
