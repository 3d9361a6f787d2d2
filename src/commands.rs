//! One module per subcommand.

pub mod agent;
pub mod approvals;
pub mod bench;
pub mod c0re;
pub mod check;
pub mod console;
pub mod kept;
pub mod logs;
pub mod rollback;
pub mod status;
pub mod up;
pub mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::config::Config;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cli = absolute_paths(cli)?;
    let config_path = Config::locate(cli.config.as_deref());
    match cli.command {
        Command::Up(dirs) => up::run(config_path, dirs).await,
        Command::C0re(dirs) => c0re::run(config_path, dirs).await,
        Command::Registration(dirs) => c0re::registration(config_path, dirs),
        Command::Agent(args) => agent::run(args).await,
        Command::Status(dirs) => status::run(config_path, dirs).await,
        Command::Check(dirs) => check::run(config_path, dirs),
        Command::Bench(args) => bench::run(args).await,
        Command::Config(crate::cli::ConfigCommand::Propose(args)) => {
            approvals::propose(config_path, args)
        }
        Command::Config(crate::cli::ConfigCommand::Rollback(args)) => {
            rollback::run(config_path, args)
        }
        Command::Approvals(args) => approvals::list(args),
        Command::Audit(args) => approvals::audit(args),
        Command::Usage(args) => usage::run(args),
        Command::Logs(args) => logs::run(config_path, args),
        Command::Kept(args) => kept::run(config_path, args),
        Command::Console(dirs) => console::run(config_path, dirs),
        Command::Mcp(args) => {
            crate::mcp::serve(&args.socket, &args.name).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every path from the command line and the environment (clap reads `HYPERHIVE_*` into the same
/// fields), made absolute once, here: a relative `--data-dir` (the default `.hive`) must mean the
/// same directory to every child process, whatever its working directory (Synapse runs in its
/// own). Paths inside `hive.toml` are resolved by `Config::load`, against the file's directory.
fn absolute_paths(mut cli: Cli) -> anyhow::Result<Cli> {
    use crate::cli::Command as C;
    use crate::fsutil::absolute as abs;
    cli.config = cli.config.as_deref().map(abs).transpose()?;
    let dirs = |d: &mut crate::cli::HiveDirs| -> anyhow::Result<()> {
        d.data_dir = abs(&d.data_dir)?;
        d.bots = abs(&d.bots)?;
        Ok(())
    };
    match &mut cli.command {
        C::Up(d) | C::C0re(d) | C::Registration(d) | C::Status(d) | C::Check(d) | C::Console(d) => {
            dirs(d)?
        }
        C::Config(crate::cli::ConfigCommand::Propose(a)) => {
            dirs(&mut a.dirs)?;
            a.file = a.file.as_deref().map(abs).transpose()?;
            a.prompt = a.prompt.as_deref().map(abs).transpose()?;
        }
        C::Config(crate::cli::ConfigCommand::Rollback(a)) => dirs(&mut a.dirs)?,
        C::Approvals(a) => dirs(&mut a.dirs)?,
        C::Audit(a) => dirs(&mut a.dirs)?,
        C::Usage(a) => dirs(&mut a.dirs)?,
        C::Logs(a) => dirs(&mut a.dirs)?,
        C::Kept(a) => dirs(&mut a.dirs)?,
        C::Agent(a) => {
            a.bot = abs(&a.bot)?;
            a.socket = abs(&a.socket)?;
            a.state = abs(&a.state)?;
        }
        C::Bench(a) => a.dir = a.dir.as_deref().map(abs).transpose()?,
        C::Mcp(a) => a.socket = abs(&a.socket)?,
    }
    Ok(cli)
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
