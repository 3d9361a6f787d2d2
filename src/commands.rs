//! One module per subcommand.

pub mod agent;
pub mod approvals;
pub mod bench;
pub mod c0re;
pub mod check;
pub mod status;
pub mod up;
pub mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::config::Config;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = Config::locate(cli.config.as_deref());
    match cli.command {
        Command::Up(dirs) => up::run(config_path, dirs).await,
        Command::C0re(dirs) => c0re::run(config_path, dirs).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Status(dirs) => status::run(config_path, dirs).await,
        Command::Check(dirs) => check::run(config_path, dirs),
        Command::Bench(args) => bench::run(args).await,
        Command::Config(crate::cli::ConfigCommand::Propose(args)) => {
            approvals::propose(config_path, args)
        }
        Command::Approvals(args) => approvals::list(args),
        Command::Audit(args) => approvals::audit(args),
        Command::Usage(args) => usage::run(args),
        Command::Mcp(args) => {
            crate::mcp::serve(&args.socket, &args.name).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A token cancelled on Ctrl-C or SIGTERM (the root of every task's shutdown).
pub fn shutdown_token() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let t = token.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        t.cancel();
    });
    Ok(token)
}

/// Loads and validates every bot; all errors are reported together.
pub fn load_bots(bots: &std::path::Path) -> anyhow::Result<Vec<crate::agent_spec::AgentSpec>> {
    crate::agent_spec::load_all(bots).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("invalid bots in {}:\n{}", bots.display(), lines.join("\n"))
    })
}

pub fn pid_file(data_dir: &std::path::Path, what: &str) -> PathBuf {
    data_dir.join("run").join(format!("{what}.pid"))
}
