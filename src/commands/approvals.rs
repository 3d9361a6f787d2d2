//! `hive config propose`, `hive approvals`, `hive audit`: the approvals, for humans at a shell.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::agent_spec::AgentName;
use crate::cli::{ApprovalsArgs, AuditArgs, ProposeArgs};
use crate::config::Config;
use crate::configrepo::{ConfigFile, ConfigRepo};
use crate::store::Store;

fn read_file(path: &std::path::Path, as_name: &str) -> anyhow::Result<ConfigFile> {
    let content = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(ConfigFile {
        path: as_name.to_owned(),
        executable: false,
        content,
    })
}

/// Commits the change on the agent's proposed side and files the request; a running hive-c0re
/// posts it at once, a stopped one when it starts.
pub fn propose(config_path: Option<PathBuf>, args: ProposeArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path.as_deref())?;
    let name = AgentName::parse(&args.agent)?;
    let data = &args.dirs.data_dir;
    let repo = ConfigRepo::new(data, &name);
    if !repo.exists() {
        bail!(
            "{name} has no versioned config in {} yet: start the hive once (`hive up`) so it is versioned from bots/",
            data.display()
        );
    }
    let mut files = Vec::new();
    if let Some(f) = &args.file {
        files.push(read_file(f, "agent.toml")?);
    }
    if let Some(p) = &args.prompt {
        files.push(read_file(p, "prompt.md")?);
    }
    let from_bots = files.is_empty();
    if from_bots {
        let dir = args.dirs.bots.join(name.as_str());
        crate::agent_spec::AgentSpec::load(&dir).map_err(|errs| {
            let lines: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
            anyhow::anyhow!("{} is invalid:\n{}", dir.display(), lines.join("\n"))
        })?;
        for f in ["agent.toml", "prompt.md"] {
            let p = dir.join(f);
            if p.is_file() {
                files.push(read_file(&p, f)?);
            }
        }
    }
    let summary = args.summary.unwrap_or_else(|| {
        if from_bots {
            format!("apply bots/{name}")
        } else {
            format!("update {name}'s config")
        }
    });
    let sha = repo.commit_proposed(&files, &summary)?;
    let requester = std::env::var("USER")
        .map(|u| format!("{u} (hive config propose)"))
        .unwrap_or_else(|_| "hive config propose".into());
    match crate::c0re::approvals::file_apply_commit(
        data,
        &cfg,
        &requester,
        name.as_str(),
        &sha,
        &summary,
    )? {
        Ok(id) => {
            println!("proposed {sha} for {name}: request #{id}");
            if crate::c0re::control::wake_running_core(data) {
                println!("posted in #hive-approvals: react ✅ there to apply it, ❌ to deny");
            } else {
                println!("hive-c0re is not running: the request is posted when it starts");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("error: the commit {sha} cannot be approved: {reason}");
            Ok(ExitCode::from(2))
        }
    }
}

pub(crate) fn store(data: &std::path::Path) -> anyhow::Result<Store> {
    let db = data.join("c0re.db");
    if !db.is_file() {
        bail!("no hive in {} (no c0re.db)", data.display());
    }
    Store::open(&db)
}

pub fn list(args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let store = store(&args.dirs.data_dir)?;
    if let Some(id) = args.diff {
        let a = store
            .approval(id)?
            .with_context(|| format!("no request #{id}"))?;
        let repo = ConfigRepo::new(&args.dirs.data_dir, &AgentName::parse(&a.agent)?);
        print!("{}", repo.diff(&a.sha)?);
        return Ok(ExitCode::SUCCESS);
    }
    let all = store.approvals(args.limit)?;
    if all.is_empty() {
        println!("no approval requests");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4}  {:<10} {:<12} {:<12} {:<40}  {:<20} summary",
        "id", "state", "kind", "agent", "sha", "requester"
    );
    for a in all {
        let detail = match (&a.reason, a.deploy) {
            (_, Some(d)) => format!(" [deploy/{d}]"),
            (Some(r), None) => format!(" [{r}]"),
            _ => String::new(),
        };
        println!(
            "{:>4}  {:<10} {:<12} {:<12} {:<40}  {:<20} {}{}",
            a.id,
            a.state.as_str(),
            a.kind,
            a.agent,
            a.sha,
            a.requester,
            a.summary,
            detail
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let store = store(&args.dirs.data_dir)?;
    let log = store.audit_log(args.limit)?;
    if args.json {
        for e in &log {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if log.is_empty() {
        println!("the audit trail is empty");
    }
    for e in &log {
        println!("{}", crate::c0re::control::console::audit_line(e));
    }
    Ok(ExitCode::SUCCESS)
}
