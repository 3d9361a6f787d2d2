//! `hive status`: what runs, read from pid files, the homeserver and the core's database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::cli::HiveDirs;
use crate::config::Config;
use crate::store::{ApprovalState, Store};

fn alive(data_dir: &Path, what: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(super::pid_file(data_dir, what))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    kill(Pid::from_raw(pid as i32), None).ok().map(|()| pid)
}

pub async fn run(config_path: Option<PathBuf>, dirs: HiveDirs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path.as_deref())?;
    let db = dirs.data_dir.join("c0re.db");
    if !db.exists() {
        println!(
            "no hive in {} (run `hive up` first)",
            dirs.data_dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    let health = reqwest::Client::new()
        .get(cfg.homeserver_url.join("health")?)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let hs_ok = matches!(&health, Ok(r) if r.status().is_success());
    let synapse = if cfg.embedded {
        alive(&dirs.data_dir, "synapse").map_or("not running".to_owned(), |p| format!("pid {p}"))
    } else {
        "external".into()
    };
    println!(
        "homeserver  {} — {} ({synapse})",
        cfg.homeserver_url,
        if hs_ok { "healthy" } else { "unreachable" }
    );
    let core = alive(&dirs.data_dir, "c0re");
    println!(
        "hive-c0re   {}",
        core.map_or("not running".to_owned(), |p| format!(
            "running, pid {p}, listening on {}",
            cfg.listen
        ))
    );
    println!("runtime     {}", cfg.describe_runtime());
    let store = Store::open(&db)?;
    let now = crate::store::now_us();
    let day_start = now - now.rem_euclid(86_400_000_000);
    println!("rooms");
    for (key, alias, room) in store.rooms()? {
        println!("  {key:<16} {alias:<36} {room}");
    }
    let peers = crate::c0re::peering::peer_statuses(&cfg, &store)?;
    if !peers.is_empty() {
        println!("peers");
        for line in crate::c0re::peering::status::lines(&peers, now, core.is_some()) {
            println!("  {line}");
        }
    }
    println!("agents");
    let states = store.agent_states()?;
    let names: Vec<String> = match crate::agent_spec::load_all(&dirs.bots) {
        Ok(specs) => specs.iter().map(|s| s.name.to_string()).collect(),
        Err(_) => states.iter().map(|(n, _, _)| n.clone()).collect(),
    };
    for name in names {
        let (state, pid) = states
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or(("unknown".to_owned(), None), |(_, s, p)| (s.clone(), *p));
        let state = if core.is_none() {
            "stopped".to_owned()
        } else {
            state
        };
        let c = store.counts(&name)?;
        let used = store.usage_since(&name, day_start)?;
        let model = match used.calls {
            0 => String::new(),
            n if used.unpriced_calls == n => format!("  model today {n} calls {} tok", used.tokens),
            n => format!(
                "  model today {n} calls {} tok ${:.4}",
                used.tokens, used.cost_usd
            ),
        };
        println!(
            "  {name:<12} {state:<12} {} queued {:>4}  done {:>6}  dead {:>3}{model}",
            pid.map_or("        ".to_owned(), |p| format!("pid {p:<4}")),
            c.pending + c.inflight,
            c.done,
            c.dead
        );
    }
    let open: Vec<_> = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Confirming,
        ApprovalState::Applying,
    ]
    .into_iter()
    .map(|s| store.approvals_in(s))
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .flatten()
    .collect();
    println!(
        "approvals          {} open (`hive approvals` lists them)",
        open.len()
    );
    for a in open {
        println!(
            "  #{:<4} {:<9} {:<12} {:<14} {} (expires {})",
            a.id,
            a.state.as_str(),
            a.kind,
            a.agent,
            a.summary,
            crate::store::utc(a.expires_us)
        );
    }
    Ok(ExitCode::SUCCESS)
}
