//! Supervision for every runtime, and the `process` runtime: each agent's harness is a child of
//! hive-c0re, restarted with backoff when it dies. Its environment is cleared (no token or key of the core's leaks into it), its
//! working directory and HOME are its state dir, and it dies with the core (PR_SET_PDEATHSIG).

use std::fs::OpenOptions;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;

use super::{AgentLaunch, Runtime};
use crate::c0re::Core;

/// Crashes within [`CRASH_WINDOW`] that make a crash loop: the agent is stopped and reported.
const CRASH_LIMIT: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// How long a harness gets to finish its turn after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The harness program: `hive-agent` beside the running `hive` (small, no Matrix client
/// linked), else `hive agent`.
pub fn harness_command() -> anyhow::Result<tokio::process::Command> {
    let (program, pre) = harness_program()?;
    let mut c = tokio::process::Command::new(program);
    c.args(pre);
    Ok(c)
}

/// The harness executable and the arguments before its own (`hive agent` needs `agent`).
pub fn harness_program() -> anyhow::Result<(std::path::PathBuf, Vec<&'static str>)> {
    let exe = std::env::current_exe().context("cannot find the hive executable")?;
    let small = exe.with_file_name("hive-agent");
    Ok(if small.is_file() {
        (small, Vec::new())
    } else {
        (exe, vec!["agent"])
    })
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
    // Where the Claude Code CLI is, for `claude-code` brains (no secret in it).
    // (Absolute: the harness runs in its state dir.)
    if let Some(cli) = std::env::var_os(crate::brain::claude_code::CLI_ENV) {
        let cli = std::path::PathBuf::from(cli);
        cmd.env(
            crate::brain::claude_code::CLI_ENV,
            std::path::absolute(&cli).unwrap_or(cli),
        );
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
        let mut cmd = harness_command()?;
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        harness_args(&mut cmd, &launch.spec_dir, launch, &path);
        cmd.current_dir(&launch.state_dir);
        Ok(cmd)
    }
}

fn spawn(runtime: &dyn Runtime, launch: &AgentLaunch) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&launch.state_dir)
        .with_context(|| format!("cannot create {}", launch.state_dir.display()))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("cannot open {}", launch.log.display()))?;
    let mut cmd = runtime.command(launch)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn().with_context(|| {
        format!(
            "cannot start the agent harness ({} runtime)",
            runtime.name()
        )
    })
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

/// Last lines of a log file, for crash reports.
fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Supervises one agent until the core stops.
pub async fn supervise(core: Core, runtime: std::sync::Arc<dyn Runtime>, launch: AgentLaunch) {
    let name = launch.name.clone();
    let mut crashes: Vec<Instant> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut child = match spawn(runtime.as_ref(), &launch) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot start agent");
                core.notice(None, &format!("🛑 cannot start **{name}**: {e:#}"))
                    .await;
                return;
            }
        };
        let pid = child.id();
        tracing::info!(agent = %name, pid, "agent started");
        if let Err(e) = core.store().set_agent_state(name.as_str(), "running", pid) {
            tracing::warn!(error = %format!("{e:#}"), "could not record agent state");
        }
        let started = Instant::now();
        let restart = async {
            match core.agent(&name) {
                Some(entry) => entry.restart.notified().await,
                None => std::future::pending().await,
            }
        };
        let status = tokio::select! {
            _ = core.cancel().cancelled() => {
                stop_child(&mut child, STOP_GRACE).await;
                let _ = core.store().set_agent_state(name.as_str(), "stopped", None);
                return;
            }
            _ = restart => {
                // A new config generation: SIGTERM lets the harness finish its turn first.
                tracing::info!(agent = %name, "restarting on its new config");
                stop_child(&mut child, STOP_GRACE).await;
                backoff = Duration::from_millis(500);
                continue;
            }
            s = child.wait() => s,
        };
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        let _ = core.store().set_agent_state(name.as_str(), "crashed", None);
        if started.elapsed() > CRASH_WINDOW {
            backoff = Duration::from_millis(500);
        }
        crashes.retain(|t| t.elapsed() < CRASH_WINDOW);
        crashes.push(Instant::now());
        let last = tail(&launch.log, 5);
        tracing::warn!(agent = %name, %status, "agent exited unexpectedly");
        core.report_crash(&name, &status, &last).await;
        if crashes.len() >= CRASH_LIMIT {
            core.notice(None, &format!("🛑 **{name}** crashed {CRASH_LIMIT} times in {} s ({status}); stopped. Last log lines:\n```\n{last}\n```", CRASH_WINDOW.as_secs())).await;
            let _ = core
                .store()
                .set_agent_state(name.as_str(), "crash-loop", None);
            return;
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
