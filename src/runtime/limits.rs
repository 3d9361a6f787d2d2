//! Resource limits of the `bwrap` runtime (`[resources]` of agent.toml over
//! `[runtime.resources]`): how they are enforced here is a pure decision from facts about the
//! machine ([`mechanism`], gathered once when the sandbox is set up: [`Facts::gather`]).
//!
//! - [`Mechanism::SystemdScope`]: systemd runs (PID 1), `systemd-run` is on `PATH` and a
//!   manager we may use is reachable (the system one as root, else the user's): the sandbox
//!   starts in a transient scope with `MemoryMax=`, `MemorySwapMax=0`, `CPUQuota=` and
//!   `TasksMax=` ([`scope_args`]). `systemd-run --scope` execs in place, so the child is still
//!   the core's, tied to it by `PR_SET_PDEATHSIG` and bwrap's `--die-with-parent`.
//! - [`Mechanism::Rlimits`]: otherwise, `RLIMIT_DATA` of twice the memory limit on the sandbox
//!   (a per-process backstop, inherited by everything in it). CPU and tasks have no limit
//!   then: `RLIMIT_NPROC` counts every process of the host uid, not the sandbox's.
//!
//! In both the core watches the harness's whole process tree ([`watchdog`]): every
//! [`WATCH_EVERY`] it sums their resident memory from `/proc` ([`tree_rss`], pure) and, over
//! the limit, kills the tree ([`kill_tree`]); the supervisor reports it and restarts the agent
//! as after a crash.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::agent_spec::resources::Resources;

/// How often the watchdog sums a harness's memory.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// What the machine offers for enforcing limits (found out once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// `/run/systemd/system` exists: systemd is PID 1.
    pub systemd_running: bool,
    /// `systemd-run` is on `PATH`.
    pub systemd_run: bool,
    /// We run as root (the system manager takes our scopes).
    pub root: bool,
    /// A user manager is reachable (`XDG_RUNTIME_DIR/systemd/private` exists).
    pub user_manager: bool,
}

/// How a sandbox's limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// A transient systemd scope; `user` when it is the user's manager (`--user`).
    SystemdScope { user: bool },
    /// `RLIMIT_DATA` (2 × memory) and the core's watchdog; no CPU or tasks limit.
    Rlimits,
}

/// The decision: a systemd scope when systemd can take one of ours, else rlimits.
pub fn mechanism(f: Facts) -> Mechanism {
    if f.systemd_running && f.systemd_run {
        if f.root {
            return Mechanism::SystemdScope { user: false };
        }
        if f.user_manager {
            return Mechanism::SystemdScope { user: true };
        }
    }
    Mechanism::Rlimits
}

impl Facts {
    pub fn gather() -> Self {
        let user_manager = std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|d| Path::new(&d).join("systemd/private").exists());
        Self {
            systemd_running: Path::new("/run/systemd/system").is_dir(),
            systemd_run: crate::fsutil::which("systemd-run").is_some(),
            root: nix::unistd::geteuid().is_root(),
            user_manager,
        }
    }
}

impl Mechanism {
    /// Said for a person (`hive check`, logs).
    pub fn describe(self) -> &'static str {
        match self {
            Mechanism::SystemdScope { user: false } => "a systemd scope (memory, CPU, tasks)",
            Mechanism::SystemdScope { user: true } => "a systemd user scope (memory, CPU, tasks)",
            Mechanism::Rlimits => {
                "RLIMIT_DATA and the core's memory watchdog (no CPU or tasks limit: no systemd here)"
            }
        }
    }
}

/// The scope's unit name: unique per hive (its state dir) and agent.
pub fn unit_name(agent: &str, state_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    let hex: String = h[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("hyperhive-{hex}-{agent}")
}

/// `systemd-run`'s arguments (before `--` and the sandbox's command). The scope's
/// `MemoryMax=` is the same backstop as `RLIMIT_DATA` without systemd, twice the limit
/// ([`data_limit`]): the core's watchdog stops a tree over the limit itself and says so (a
/// kernel OOM kill at the limit would only be seen as a crash); the kernel bounds a spike the
/// watchdog's half-second samples miss.
pub fn scope_args(r: &Resources, user: bool, unit: &str) -> Vec<String> {
    let mut a = vec!["--scope".to_owned(), "--quiet".into(), "--collect".into()];
    if user {
        a.push("--user".into());
    }
    a.push(format!("--unit={unit}"));
    for p in [
        // Past the limit the kernel reclaims and throttles (page cache and tmpfs too, which
        // the watchdog's RSS does not see); twice it, it kills.
        format!("MemoryHigh={}", r.memory_bytes),
        format!("MemoryMax={}", data_limit(r.memory_bytes)),
        "MemorySwapMax=0".to_owned(),
        format!("CPUQuota={}%", r.cpu_percent),
        format!("TasksMax={}", r.tasks),
    ] {
        a.push("-p".into());
        a.push(p);
    }
    a.push("--".into());
    a
}

/// The `RLIMIT_DATA` backstop for a memory limit: twice it (the watchdog fires first).
pub fn data_limit(memory_bytes: u64) -> u64 {
    memory_bytes.saturating_mul(2)
}

/// One process as `/proc/<pid>/stat` says: its parent and resident bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub rss_bytes: u64,
}

/// Parses `/proc/<pid>/stat` (the name, in parentheses, may hold anything): ppid is field 4,
/// rss (pages) field 24.
pub fn parse_stat(stat: &str, page: u64) -> Option<ProcInfo> {
    let (head, rest) = stat.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state).
    let ppid = f.get(1)?.parse().ok()?;
    let rss: i64 = f.get(21)?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        rss_bytes: rss.max(0) as u64 * page,
    })
}

/// The pids of `root` and all its descendants.
pub fn tree(procs: &[ProcInfo], root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    if !procs.iter().any(|p| p.pid == root) {
        return out;
    }
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if out.contains(&pid) {
            continue;
        }
        out.push(pid);
        if let Some(c) = children.get(&pid) {
            todo.extend(c);
        }
    }
    out
}

/// The resident memory of `root`'s process tree, in bytes.
pub fn tree_rss(procs: &[ProcInfo], root: i32) -> u64 {
    let pids = tree(procs, root);
    procs
        .iter()
        .filter(|p| pids.contains(&p.pid))
        .map(|p| p.rss_bytes)
        .sum()
}

/// Every process of this machine, from `/proc` (the ones gone meanwhile are skipped).
pub fn read_procs() -> Vec<ProcInfo> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        e.file_name().to_str()?.parse::<i32>().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        parse_stat(&stat, page)
    })
    .collect()
}

/// SIGKILLs `root` and every process under it (the sandbox's, seen with host pids).
pub fn kill_tree(root: i32) {
    use nix::sys::signal::{Signal, kill};
    // Twice: a process forked between the walk and the kill is caught by the second.
    for _ in 0..2 {
        for pid in tree(&read_procs(), root) {
            // Fire and forget: ESRCH is a process already gone.
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Watches `root`'s tree and returns the bytes it uses once it is over `limit`. Never returns
/// while under. It kills nothing: the caller kills the tree with [`kill_tree`] while `root` is
/// still unreaped (its pid cannot be reused), and only then waits for it.
pub async fn watchdog(root: u32, limit: u64) -> u64 {
    let root = root as i32;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let procs = tokio::task::spawn_blocking(read_procs)
            .await
            .unwrap_or_default();
        let used = tree_rss(&procs, root);
        if used > limit {
            tracing::warn!(
                pid = root,
                used,
                limit,
                "over its memory limit: killing its tree"
            );
            return used;
        }
    }
}

#[cfg(test)]
mod tests;
