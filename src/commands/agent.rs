//! `hive agent`: one agent's harness.

use std::process::ExitCode;

use crate::agent_spec::AgentSpec;
use crate::cli::AgentArgs;
use crate::harness::{self, HarnessOptions};

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let loaded = match &args.name {
        Some(n) => {
            let name = crate::agent_spec::AgentName::parse(n)?;
            AgentSpec::load_as(name, &args.bot)
        }
        None => AgentSpec::load(&args.bot),
    };
    let spec = loaded.map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("invalid bot {}:\n{}", args.bot.display(), lines.join("\n"))
    })?;
    let cancel = super::shutdown_token()?;
    harness::run(
        HarnessOptions {
            spec,
            socket: args.socket,
            state_dir: args.state,
        },
        cancel,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
