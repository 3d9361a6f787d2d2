//! `hive logs <agent>`: the end of an agent's log (`<data>/agents/<agent>/agent.log`, its
//! harness's output as the core copied it), secrets redacted as `get_logs` does. It reads files
//! only: no running core needed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::agent_spec::AgentName;
use crate::c0re::agents::logs::{LogRead, tail_of};
use crate::c0re::registration::Tokens;
use crate::cli::LogsArgs;
use crate::config::Config;
use crate::configrepo::AgentDirs;

/// The most of a log's end that is read: more than a whole log (`agent.log` rotates at 10 MiB).
const MAX_BYTES: u64 = 16 << 20;

pub fn run(config_path: Option<PathBuf>, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let name = AgentName::parse(&args.agent)?;
    if args.lines == 0 {
        anyhow::bail!("--lines must be at least 1");
    }
    let data = &args.dirs.data_dir;
    let dirs = AgentDirs::new(data, &name);
    if !dirs.root.is_dir() {
        anyhow::bail!("{}", unknown_agent(&name, data));
    }
    let cfg = Config::load(config_path.as_deref())?;
    let tokens = Tokens::load(data)?;
    let filter =
        crate::secrets::SecretFilter::new(crate::c0re::secrets::known(&cfg, data, &tokens));
    let log = dirs.log();
    match tail_of(&log, args.lines, MAX_BYTES) {
        Ok(Some(text)) => {
            if !text.is_empty() {
                println!("{}", filter.redact(&text));
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => anyhow::bail!("{name} has no log yet ({} does not exist)", log.display()),
        Err(LogRead::NotAFile) => {
            anyhow::bail!("{} is not a regular file; not read", log.display())
        }
        Err(LogRead::Io(e)) => Err(e).with_context(|| format!("cannot read {}", log.display())),
    }
}

/// "no agent x in <data>/agents (its agents: a, b)".
fn unknown_agent(name: &AgentName, data: &Path) -> String {
    let dir = data.join("agents");
    let mut known: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| AgentName::parse(n).is_ok())
        .collect();
    known.sort();
    if known.is_empty() {
        format!("no agent {name} in {} (no agents there)", dir.display())
    } else {
        format!(
            "no agent {name} in {} (its agents: {})",
            dir.display(),
            known.join(", ")
        )
    }
}
