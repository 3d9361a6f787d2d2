//! Supervision for every runtime, and the `process` runtime: each agent's harness is a child of
//! hive-c0re, restarted with backoff when it dies. Its environment is cleared (no token or key
//! of the core's leaks into it), its working directory and HOME are its state dir, it dies with
//! the core (PR_SET_PDEATHSIG, from the spawner thread: [`super::tied`]), and when the hive runs
//! as root it runs as a uid of its own that can reach only its own files (see [`own_uids`]).
//!
//! Where each agent runs is decided again at every start ([`super::placement::place`]), so an
//! approved config that adds code of the agent's own moves it into the sandbox or refuses it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;

use std::sync::Arc;

use super::placement::Placement;
use super::{AgentLaunch, Runtime, Runtimes};
use crate::c0re::Core;

/// Crashes within [`CRASH_WINDOW`] that make a crash loop: the agent is stopped and reported.
const CRASH_LIMIT: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// How long a harness gets to finish its turn after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The harness program: `hive-agent` beside the running `hive` (or in `bin`, the copies an
/// agent's own uid can reach; small, no Matrix client linked), else `hive agent`.
pub fn harness_command(bin: Option<&Path>) -> anyhow::Result<tokio::process::Command> {
    let (program, pre) = harness_program(bin)?;
    let mut c = tokio::process::Command::new(program);
    c.args(pre);
    Ok(c)
}

/// The harness executable and the arguments before its own (`hive agent` needs `agent`).
pub fn harness_program(bin: Option<&Path>) -> anyhow::Result<(PathBuf, Vec<&'static str>)> {
    let exe = match bin {
        Some(dir) => dir.join("hive"),
        None => std::env::current_exe().context("cannot find the hive executable")?,
    };
    let small = exe.with_file_name("hive-agent");
    Ok(if small.is_file() {
        (small, Vec::new())
    } else {
        (exe, vec!["agent"])
    })
}

/// Where the Claude Code CLI is for a harness: the copy in `bin` when there is one, else the
/// core's (absolute: the harness runs in its state dir).
fn claude_cli(launch: &AgentLaunch) -> Option<PathBuf> {
    if let Some(copy) = launch
        .bin
        .as_ref()
        .map(|b| b.join("claude"))
        .filter(|p| p.is_file())
    {
        return Some(copy);
    }
    launch.claude_code.clone()
}

/// The harness's arguments and a scrubbed environment, for any runtime.
pub(crate) fn harness_args(
    cmd: &mut tokio::process::Command,
    bot: &std::path::Path,
    launch: &AgentLaunch,
    path_var: &std::ffi::OsStr,
) {
    cmd.arg("--bot")
        .arg(bot)
        .arg("--name")
        .arg(launch.name.as_str())
        .arg("--socket")
        .arg(crate::harness::socket_path(&launch.socket_dir))
        .arg("--state")
        .arg(&launch.state_dir)
        .env_clear()
        .env("PATH", path_var)
        .env("HOME", &launch.state_dir)
        .env("LANG", "C.UTF-8")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    // Debug builds: the tests' failpoints reach the harness too.
    if cfg!(debug_assertions)
        && let Some(fp) = std::env::var_os(crate::failpoint::ENV)
    {
        cmd.env(crate::failpoint::ENV, fp);
    }
    // Where the Claude Code CLI is, for `claude-code` brains (no secret in it).
    if let Some(cli) = claude_cli(launch) {
        cmd.env(crate::brain::claude_code::CLI_ENV, cli);
    }
}

/// The `process` runtime: the harness runs as a plain child, with a scrubbed environment and
/// its state dir as working directory. No isolation beyond that: use `bwrap` for a sandbox.
pub struct Process;

impl Runtime for Process {
    fn name(&self) -> &'static str {
        "process"
    }

    fn command(&self, launch: &AgentLaunch) -> anyhow::Result<tokio::process::Command> {
        let mut cmd = harness_command(launch.bin.as_deref())?;
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        harness_args(&mut cmd, &launch.spec_dir, launch, &path);
        cmd.current_dir(&launch.state_dir);
        if let Some(uid) = launch.uid {
            // std drops supplementary groups too (setgroups(0)) before setuid.
            cmd.uid(uid).gid(uid);
        }
        Ok(cmd)
    }
}

/// `agent.log` rotates past this size (the harness's output goes through the core).
const LOG_MAX_BYTES: u64 = 10 << 20;
/// Rotated logs kept (`agent.log.1` …).
const LOG_KEEP: usize = 3;

/// Starts a harness, its stdout and stderr piped through the core into its rotating log.
async fn spawn(
    runtime: &dyn Runtime,
    launch: &AgentLaunch,
) -> anyhow::Result<(Child, tokio::task::JoinHandle<std::io::Result<()>>)> {
    std::fs::create_dir_all(&launch.state_dir)
        .with_context(|| format!("cannot create {}", launch.state_dir.display()))?;
    let log = super::log::RotatingLog::open(&launch.log, LOG_MAX_BYTES, LOG_KEEP)
        .with_context(|| format!("cannot open {}", launch.log.display()))?;
    let (rx, out, err) = super::log::output_pipe()?;
    let mut cmd = runtime.command(launch)?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    let child = super::tied::spawn(cmd).await.with_context(|| {
        format!(
            "cannot start the agent harness ({} runtime)",
            runtime.name()
        )
    })?;
    // (The command, and with it our copy of the pipe's write end, is gone: EOF comes when the
    // harness and its children close theirs.)
    Ok((child, tokio::spawn(super::log::pump(rx, log))))
}

/// Whether agents can run as uids of their own here: the hive runs as root, and the data dir
/// is reachable by other uids (every directory above it can be entered by others).
pub fn own_uids(data_dir: &Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "the hive does not run as root, so it cannot give agents uids of their own".into(),
        );
    }
    let mut at = data_dir.parent();
    while let Some(dir) = at {
        match std::fs::metadata(dir) {
            Ok(m) if m.permissions().mode() & 0o001 == 0 => {
                return Err(format!(
                    "the data dir {} is inside {} (mode {:o}), which other uids cannot enter; use a data dir outside it",
                    data_dir.display(),
                    dir.display(),
                    m.permissions().mode() & 0o777
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("cannot inspect {}: {e}", dir.display())),
        }
        at = dir.parent();
    }
    Ok(())
}

/// Copies (hard links where it can) of the harness's programs into `<data>/bin`, which an
/// agent's own uid can reach (the build's own directory may be private, e.g. under /root).
pub fn install_bin(data_dir: &Path, claude_code: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = data_dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let exe = std::env::current_exe().context("cannot find the hive executable")?;
    let mut programs = vec![(exe.clone(), "hive")];
    let small = exe.with_file_name("hive-agent");
    if small.is_file() {
        programs.push((small, "hive-agent"));
    }
    if let Some(cli) = claude_code.and_then(|p| std::fs::canonicalize(p).ok()) {
        programs.push((cli, "claude"));
    }
    for (src, name) in programs {
        let dest = bin.join(name);
        let same = |a: &Path, b: &Path| {
            let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
                return false;
            };
            a.len() == b.len() && a.modified().ok() == b.modified().ok()
        };
        if same(&src, &dest) {
            continue;
        }
        let tmp = bin.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        // A hard link is the program itself (its mode is the build's, executable by all); a
        // copy is made readable and executable by the agents' uids.
        if std::fs::hard_link(&src, &tmp).is_err() {
            std::fs::copy(&src, &tmp)
                .with_context(|| format!("cannot copy {} into {}", src.display(), bin.display()))?;
            let modified = std::fs::metadata(&src)?.modified()?;
            std::fs::File::options()
                .write(true)
                .open(&tmp)?
                .set_modified(modified)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&tmp, &dest)?;
    }
    Ok(bin)
}

/// Gives an agent's own uid exactly its own files: its state dir (owned, mode 0700, every
/// entry re-owned without following links) and its config generations (group-readable:
/// root:<uid>, 0750/0640). Its socket dir is the socket server's (root:<uid> 0750), the
/// directories above are 0711 (enter, not list); everything else of the core's stays 0600/0700.
pub fn prepare_for_uid(data_dir: &Path, launch: &AgentLaunch, uid: u32) -> anyhow::Result<()> {
    for dir in [
        data_dir.to_owned(),
        data_dir.join("agents"),
        launch
            .state_dir
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default(),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot chmod {}", dir.display()))?;
    }
    let root = launch
        .state_dir
        .parent()
        .context("state dir has no parent")?;
    if root.join("config.git").is_dir() {
        std::fs::set_permissions(
            root.join("config.git"),
            std::fs::Permissions::from_mode(0o700),
        )?;
    }
    std::fs::create_dir_all(&launch.state_dir)?;
    chown_tree(&launch.state_dir, Some(uid), uid, None)?;
    std::fs::set_permissions(&launch.state_dir, std::fs::Permissions::from_mode(0o700))?;
    let gens = root.join("gen");
    if gens.is_dir() {
        chown_tree(&gens, Some(0), uid, Some(()))?;
    }
    Ok(())
}

/// Before a sandboxed start: the agent's directory is the core's alone (0700: the harness is
/// uid 0 outside its namespace, so nothing it leaves in its state dir may be reachable by other
/// users), a state dir an agent's own uid used before is owned by root again (the sandbox's
/// harness has no capability to write another uid's files), and no setuid or setgid bit
/// survives in it. The sandbox and every process in it are gone by now (its pid namespace died
/// with it), so nothing races the walk.
fn prepare_for_sandbox(launch: &AgentLaunch) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    if let Some(root) = launch.state_dir.parent() {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot chmod {}", root.display()))?;
    }
    if launch.state_dir.is_dir() {
        chown_tree(&launch.state_dir, Some(0), 0, None)?;
    }
    Ok(())
}

/// Kills every process of `uid` (what an agent left running: a detached child could otherwise
/// race the core's walk over its files). `kill(-1)` sent as that uid reaches exactly its
/// processes.
async fn kill_all_of(uid: u32) {
    let mut cmd = tokio::process::Command::new("true");
    cmd.uid(uid).gid(uid).stdin(Stdio::null());
    // SAFETY: kill(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            Ok(())
        });
    }
    // Either way the processes got the signal; the helper itself may be among them.
    let _ = cmd.status().await;
}

/// Owns every entry under `top` (itself included) by `uid`:`gid` without following symlinks;
/// with `group_read`, directories become 0750 and files 0640 (0750 when executable). No
/// setuid/setgid bit survives. A regular file with more than one link is left alone: it may be
/// a hard link to a file outside (a host file an agent linked in), which must not change hands.
/// Callers make sure no process of the tree's owner runs meanwhile.
fn chown_tree(
    top: &Path,
    uid: Option<u32>,
    gid: u32,
    group_read: Option<()>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(top)?;
    if meta.is_file() && meta.nlink() > 1 {
        tracing::warn!(path = %top.display(), "left a file with several links as it is");
        return Ok(());
    }
    std::os::unix::fs::lchown(top, uid, Some(gid))
        .with_context(|| format!("cannot chown {}", top.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let mode = match group_read {
        Some(()) if meta.is_dir() || mode & 0o100 != 0 => 0o750,
        Some(()) => 0o640,
        None => mode & !0o6000,
    };
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(top)? {
            chown_tree(&e?.path(), uid, gid, group_read)?;
        }
    }
    Ok(())
}

/// Asks a child to stop (SIGTERM), then kills it after the grace period.
pub async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!("child did not stop in time; killing it");
        let _ = child.kill().await;
    }
}

/// Records an agent's state; a store that cannot is logged (the state is only a display).
fn set_state(core: &Core, name: &crate::agent_spec::AgentName, state: &str, pid: Option<u32>) {
    if let Err(e) = core.store().set_agent_state(name.as_str(), state, pid) {
        tracing::warn!(agent = %name, error = %format!("{e:#}"), "could not record agent state");
    }
}

/// Waits for an approved config (`restart`) or shutdown; false on shutdown.
async fn wait_for_new_config(core: &Core, name: &crate::agent_spec::AgentName) -> bool {
    let Some(entry) = core.agent(name) else {
        return false;
    };
    tokio::select! {
        _ = core.cancel().cancelled() => false,
        _ = entry.restart.notified() => true,
    }
}

/// Supervises one agent until the core stops: decides where it runs from its current config
/// (again at every start), starts it, restarts it after a crash with backoff, stops a crash
/// loop until a new config is approved, restarts it on an approved config.
pub async fn supervise(core: Core, runtimes: Arc<Runtimes>, name: crate::agent_spec::AgentName) {
    let mut crashes: Vec<Instant> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    let mut refused_said: Option<String> = None;
    loop {
        let Some(entry) = core.agent(&name) else {
            return;
        };
        let spec = entry.spec();
        let cfg = core.cfg();
        let placement = super::placement::place(
            cfg.runtime,
            cfg.allow_unsandboxed,
            &runtimes.host,
            super::placement::own_code(&spec.brain).as_deref(),
        );
        let dirs = crate::configrepo::AgentDirs::new(core.data_dir(), &name);
        let mut launch = AgentLaunch {
            uid: None,
            bin: None,
            claude_code: cfg.claude_code.clone(),
            name: name.clone(),
            spec_dir: dirs.current(),
            socket_dir: Core::socket_dir(core.data_dir(), &name),
            state_dir: dirs.state(),
            log: dirs.log(),
        };
        let runtime: &dyn Runtime = match &placement {
            Placement::External => return,
            Placement::Sandboxed => match &runtimes.bwrap {
                Some(b) => b,
                None => unreachable!("placed in a sandbox only when one can run"),
            },
            Placement::Unsandboxed { own_uid } => {
                if *own_uid {
                    // Never as root when a uid of its own was due: wait for a new config.
                    let Some(uid) = entry.uid() else {
                        tracing::error!(agent = %name, "no uid of its own was allocated; not started");
                        set_state(&core, &name, "cannot-start", None);
                        if !wait_for_new_config(&core, &name).await {
                            return;
                        }
                        continue;
                    };
                    launch.uid = Some(uid);
                    launch.bin = runtimes.bin.clone();
                }
                &Process
            }
            Placement::Refused(why) => {
                tracing::warn!(agent = %name, reason = %why, "not starting the agent");
                set_state(&core, &name, "refused", None);
                if refused_said.as_deref() != Some(why.as_str()) {
                    let text = format!("🛑 **{name}** is not started: {why}.");
                    core.notice(None, &text).await;
                    core.post_as_agent_or_notice(
                        &name,
                        core.room(&crate::c0re::rooms::RoomKey::Inbox(name.clone())),
                        &text,
                    )
                    .await;
                    refused_said = Some(why.clone());
                }
                if !wait_for_new_config(&core, &name).await {
                    return;
                }
                continue;
            }
        };
        refused_said = None;
        let prepared = match (&placement, launch.uid) {
            (Placement::Sandboxed, _) => prepare_for_sandbox(&launch),
            (_, Some(uid)) => {
                kill_all_of(uid).await;
                prepare_for_uid(core.data_dir(), &launch, uid)
            }
            _ => Ok(()),
        };
        if let Err(e) = prepared {
            // Never start an agent whose files are not as they must be.
            tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot prepare the agent's files");
            core.notice(None, &format!("🛑 cannot prepare **{name}**'s files: {e:#}. It starts again when a new config is approved.")).await;
            set_state(&core, &name, "cannot-start", None);
            if !wait_for_new_config(&core, &name).await {
                return;
            }
            continue;
        }
        let (mut child, pump) = match spawn(runtime, &launch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot start agent");
                core.notice(None, &format!("🛑 cannot start **{name}**: {e:#}. It starts again when a new config is approved."))
                    .await;
                set_state(&core, &name, "cannot-start", None);
                if !wait_for_new_config(&core, &name).await {
                    return;
                }
                continue;
            }
        };
        let pid = child.id();
        tracing::info!(agent = %name, pid, runtime = runtime.name(), uid = launch.uid, "agent started");
        set_state(&core, &name, "running", pid);
        let started = Instant::now();
        let status = tokio::select! {
            _ = core.cancel().cancelled() => {
                stop_child(&mut child, STOP_GRACE).await;
                set_state(&core, &name, "stopped", None);
                return;
            }
            _ = entry.restart.notified() => {
                // A new config generation: SIGTERM lets the harness finish its turn first.
                tracing::info!(agent = %name, "restarting on its new config");
                stop_child(&mut child, STOP_GRACE).await;
                backoff = Duration::from_millis(500);
                crashes.clear();
                continue;
            }
            s = child.wait() => s,
        };
        let status = status.map_or_else(|e| e.to_string(), |s| runtime.describe_exit(s));
        set_state(&core, &name, "crashed", None);
        if started.elapsed() > CRASH_WINDOW {
            backoff = Duration::from_millis(500);
        }
        crashes.retain(|t| t.elapsed() < CRASH_WINDOW);
        crashes.push(Instant::now());
        // The harness's last words are in the pipe still: let them reach the log (a child of
        // its that lives on may hold the pipe open, so not for long).
        match tokio::time::timeout(Duration::from_secs(2), pump).await {
            Ok(Ok(Ok(()))) | Err(_) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(agent = %name, error = %e, "writing the agent's log failed")
            }
            Ok(Err(e)) => tracing::warn!(agent = %name, error = %e, "the agent's log pump failed"),
        }
        let last =
            super::log::tail(&launch.log, 5, 64 << 10).unwrap_or_else(|e| format!("(no log: {e})"));
        tracing::warn!(agent = %name, %status, "agent exited unexpectedly");
        core.report_crash(&name, &status, &last).await;
        if crashes.len() >= CRASH_LIMIT {
            core.notice(None, &format!("🛑 **{name}** crashed {CRASH_LIMIT} times in {} s ({status}); stopped until a new config is approved. Last log lines:\n```\n{last}\n```", CRASH_WINDOW.as_secs())).await;
            set_state(&core, &name, "crash-loop", None);
            if !wait_for_new_config(&core, &name).await {
                return;
            }
            crashes.clear();
            backoff = Duration::from_millis(500);
            continue;
        }
        core.notice(
            None,
            &format!(
                "💥 **{name}** exited ({status}); restarting in {} ms.",
                backoff.as_millis()
            ),
        )
        .await;
        tokio::select! {
            _ = core.cancel().cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
