//! `hive kept destroy|revive|purge <agent>`: the operator files the same request a manager's
//! tool does (`c0re::approvals::kept::file_kept`); it is decided in `#hive-approvals` like any
//! other, and a purge waits for its second confirmation in the request's thread.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::c0re::approvals::kept::{KeptKind, file_kept};
use crate::cli::{KeptAction, KeptArgs};
use crate::config::Config;

pub fn run(config_path: Option<PathBuf>, args: KeptArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path.as_deref())?;
    let data = &args.dirs.data_dir;
    // Refuses a data dir with no hive in it before anything is created there.
    drop(super::approvals::store(data)?);
    let kind = match args.action {
        KeptAction::Destroy => KeptKind::Destroy,
        KeptAction::Revive => KeptKind::Revive,
        KeptAction::Purge => KeptKind::Purge,
    };
    let summary = args
        .summary
        .unwrap_or_else(|| format!("{} {}", kind.as_str(), args.agent));
    let requester = std::env::var("USER")
        .map(|u| format!("{u} (hive kept)"))
        .unwrap_or_else(|_| "hive kept".into());
    match file_kept(data, &cfg, &requester, kind, &args.agent, &summary)? {
        Ok(id) => {
            println!("asked to {} {}: request #{id}", kind.as_str(), args.agent);
            if crate::c0re::control::wake_running_core(data) {
                println!("posted in #hive-approvals: react ✅ there to approve it, ❌ to deny");
            } else {
                println!("hive-c0re is not running: the request is posted when it starts");
            }
            if kind == KeptKind::Purge {
                println!(
                    "after the ✅, reply `purge {}` in the request's thread to confirm",
                    args.agent
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("error: cannot {} {}: {reason}", kind.as_str(), args.agent);
            Ok(ExitCode::from(2))
        }
    }
}
