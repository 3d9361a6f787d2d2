//! `hive config rollback <agent> <deploy>`: an operator asks for an earlier deploy's config
//! again. The same filing as a manager's `request_rollback` (`approvals::file_rollback`): a new
//! commit with that deploy's files on top of the applied config, filed in the store; a running
//! hive-c0re is woken over its control socket and posts it, a stopped one when it starts.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::RollbackArgs;
use crate::config::Config;

pub fn run(config_path: Option<PathBuf>, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path.as_deref())?;
    let data = &args.dirs.data_dir;
    let requester = std::env::var("USER")
        .map(|u| format!("{u} (hive config rollback)"))
        .unwrap_or_else(|_| "hive config rollback".into());
    let filed = crate::c0re::approvals::file_rollback(
        data,
        &cfg,
        &requester,
        &args.agent,
        args.deploy,
        args.summary.as_deref().unwrap_or(""),
    )?;
    match filed {
        Ok(r) => {
            println!(
                "rollback of {} to deploy/{} ({}) proposed as {}: request #{}",
                r.agent, r.deploy, r.deploy_sha, r.sha, r.id
            );
            if !r.abandoned.is_empty() {
                println!(
                    "the proposed branch moved to it; unapplied proposed commits no longer on it (kept): {}",
                    r.abandoned.join(", ")
                );
            }
            if crate::c0re::control::wake_running_core(data) {
                println!("posted in #hive-approvals: react ✅ there to apply it, ❌ to deny");
            } else {
                println!("hive-c0re is not running: the request is posted when it starts");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("error: no rollback of {}: {reason}", args.agent);
            Ok(ExitCode::from(2))
        }
    }
}
