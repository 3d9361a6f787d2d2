//! Supervision, for every runtime that starts harnesses: each agent's harness is a child of
//! hive-c0re, restarted with backoff when it dies, stopped when it crash-loops, restarted on an
//! approved config. What its state is goes to the store; crashes and refusals are said in the
//! rooms.
//!
//! Where each agent runs is decided again at every start ([`placement::place`]), so an
//! approved config that adds code of the agent's own moves it into the sandbox or refuses it.
//! The runtime only builds the command ([`Runtime::command`]); the child is started here, tied
//! to the core ([`crate::proc::spawn_tied`]), its output piped into its rotating log.
//!
//! A manager's `stop` (`lifecycle.rs`) is watched here too: the harness is stopped as at shutdown
//! and not started again until `start`, also across restarts of the core (what is wanted is in
//! the store, read by `Core::start_agent` before anything of the agent runs).
//!
//! How a crash is answered is a pure decision ([`CrashHistory::crashed`], a table test below):
//! restart after a backoff that doubles up to a minute (reset after a minute of running), or,
//! at [`CRASH_LIMIT`] crashes within [`CRASH_WINDOW`], stop until a new config is approved.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::rooms::RoomKey;
use crate::runtime::placement::{self, Placement};
use crate::runtime::process::{Process, prepare_for_sandbox, prepare_for_uid};
use crate::runtime::{AgentLaunch, Runtime, Runtimes, log};
use crate::store::{AgentState, Wanted};

use super::registry::AgentEntry;

/// Crashes within [`CRASH_WINDOW`] that make a crash loop: the agent is stopped and reported.
pub const CRASH_LIMIT: usize = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// How long a harness gets to finish its turn after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The first restart's delay, and the delay again after a calm minute.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest delay before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `agent.log` rotates past this size (the harness's output goes through the core).
const LOG_MAX_BYTES: u64 = 10 << 20;
/// Rotated logs kept (`agent.log.1` …).
const LOG_KEEP: usize = 3;

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start it again after this delay.
    Restart { after: Duration },
    /// It crashed [`CRASH_LIMIT`] times within [`CRASH_WINDOW`]: stop until a new config.
    CrashLoop,
}

/// One agent's recent crashes and its next backoff.
#[derive(Debug, Clone)]
pub struct CrashHistory {
    crashes: Vec<Instant>,
    backoff: Duration,
}

impl Default for CrashHistory {
    fn default() -> Self {
        Self {
            crashes: Vec::new(),
            backoff: FIRST_BACKOFF,
        }
    }
}

impl CrashHistory {
    /// A fresh start (a new config): no crashes remembered, the first backoff.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// A crash at `now` of a harness that had run for `ran_for`: restart after the current
    /// backoff (which then doubles, up to [`MAX_BACKOFF`]; a harness that ran longer than
    /// [`CRASH_WINDOW`] starts again from [`FIRST_BACKOFF`]), or a crash loop at the
    /// [`CRASH_LIMIT`]th crash within the window (and the history starts afresh).
    pub fn crashed(&mut self, now: Instant, ran_for: Duration) -> AfterCrash {
        if ran_for > CRASH_WINDOW {
            self.backoff = FIRST_BACKOFF;
        }
        self.crashes
            .retain(|t| now.saturating_duration_since(*t) < CRASH_WINDOW);
        self.crashes.push(now);
        if self.crashes.len() >= CRASH_LIMIT {
            self.reset();
            return AfterCrash::CrashLoop;
        }
        let after = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        AfterCrash::Restart { after }
    }
}

/// Starts a harness, its stdout and stderr piped through the core into its rotating log.
async fn spawn(
    runtime: &dyn Runtime,
    launch: &AgentLaunch,
) -> anyhow::Result<(Child, tokio::task::JoinHandle<std::io::Result<()>>)> {
    std::fs::create_dir_all(&launch.state_dir)
        .with_context(|| format!("cannot create {}", launch.state_dir.display()))?;
    let log = log::RotatingLog::open(&launch.log, LOG_MAX_BYTES, LOG_KEEP)
        .with_context(|| format!("cannot open {}", launch.log.display()))?;
    let (rx, out, err) = log::output_pipe()?;
    let mut cmd = runtime.command(launch)?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        // Its own process group: a cancelled turn kills the harness and everything its brain
        // started at once (`turn_control/cancel.rs`).
        .process_group(0);
    let child = crate::proc::spawn_tied(cmd).await.with_context(|| {
        format!(
            "cannot start the agent harness ({} runtime)",
            runtime.name()
        )
    })?;
    // (The command, and with it our copy of the pipe's write end, is gone: EOF comes when the
    // harness and its children close theirs.)
    Ok((child, tokio::spawn(log::pump(rx, log))))
}

/// Runs what `runtime` needs done before `launch`'s harness starts (a NixOS container's limits
/// and start), in order; the first that fails is the error, with what it said. A step that
/// fails is tried again twice (a container slow to stop or start), unless the hive stops
/// meanwhile; a refusal of the runtime's own (no container declared) is not.
async fn before_start(
    runtime: &dyn Runtime,
    launch: &AgentLaunch,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        let steps = runtime.before_start(launch)?;
        let ran = async {
            for cmd in steps {
                run_step(cmd).await?;
            }
            anyhow::Ok(())
        }
        .await;
        match ran {
            Err(e) if tries < 2 => {
                tries += 1;
                tracing::warn!(agent = %launch.name, error = %format!("{e:#}"), "a step before the start failed; trying again");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(e.context("the hive is stopping")),
                    _ = tokio::time::sleep(Duration::from_secs(2 * tries)) => {}
                }
            }
            done => return done,
        }
    }
}

/// Runs what `runtime` does once `launch`'s harness has ended (a NixOS container is stopped;
/// killed first when the harness is `gone`). Every step runs; failures are logged, and the
/// first is the error.
async fn after_stop(runtime: &dyn Runtime, launch: &AgentLaunch, gone: bool) -> anyhow::Result<()> {
    run_all(&launch.name, runtime.after_stop(launch, gone)).await
}

async fn run_all(agent: &AgentName, steps: Vec<std::process::Command>) -> anyhow::Result<()> {
    let mut first = None;
    for cmd in steps {
        if let Err(e) = run_step(cmd).await {
            tracing::warn!(%agent, error = %format!("{e:#}"), "a step after the harness failed");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Stops a running harness: SIGTERM, the grace, SIGKILL; then what the runtime keeps of it.
async fn stop_harness(runtime: &dyn Runtime, launch: &AgentLaunch, child: &mut Child) {
    crate::proc::stop(child, STOP_GRACE).await;
    let _ = after_stop(runtime, launch, false).await;
}

/// One of a runtime's steps; its stderr is the error when it fails.
async fn run_step(cmd: std::process::Command) -> anyhow::Result<()> {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = tokio::process::Command::from(cmd)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{what}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    tracing::debug!(step = %what, "runtime step done");
    Ok(())
}

/// Records an agent's state; a store that cannot is logged (the state is only a display).
fn set_state(core: &Core, name: &AgentName, state: AgentState, pid: Option<u32>) {
    core.console().changed();
    if let Err(e) = core.store().set_agent_state(name.as_str(), state, pid) {
        tracing::warn!(agent = %name, error = %format!("{e:#}"), "could not record agent state");
    }
}

/// Why a supervisor's wait ended without what it waited for: the hive stops, or the agent it
/// was started for left the registry (destroyed).
fn ended(hive: &CancellationToken, entry: &AgentEntry) -> bool {
    hive.is_cancelled() || entry.removed().is_cancelled()
}

/// Waits on `entry` (the one the supervisor was started for, never one looked up again: after
/// a revive that would be the new entry, whose restart signal it would steal) for an approved
/// config or a manager's `start` (`restart`), a manager's `stop` (the loop then keeps it
/// stopped), shutdown or the agent's removal; false on shutdown or removal.
async fn wait_for_new_config(hive: &CancellationToken, entry: &AgentEntry) -> bool {
    tokio::select! {
        _ = hive.cancelled() => false,
        _ = entry.removed().cancelled() => false,
        _ = entry.restart.notified() => !ended(hive, entry),
        _ = entry.control.until_wanted(Wanted::Stopped) => !ended(hive, entry),
    }
}

/// A manager stopped the agent: waits for its `start`; false on shutdown or the agent's
/// removal (a destroy while stopped ends the supervisor). A config approved meanwhile is taken
/// when it starts (its restart signal is consumed here, so it does not stop the fresh harness
/// again).
async fn wait_while_stopped(hive: &CancellationToken, entry: &AgentEntry) -> bool {
    loop {
        tokio::select! {
            _ = hive.cancelled() => return false,
            _ = entry.removed().cancelled() => return false,
            _ = entry.control.until_wanted(Wanted::Running) => return !ended(hive, entry),
            _ = entry.restart.notified() => {}
        }
    }
}

/// Supervises one agent until the core stops: decides where it runs from its current config
/// (again at every start), starts it, restarts it after a crash with backoff, stops a crash
/// loop until a new config is approved, restarts it on an approved config.
pub async fn supervise(core: Core, runtimes: Arc<Runtimes>, name: AgentName) {
    let mine = core.agents().get(&name);
    supervise_entry(&core, &runtimes, &name, mine.clone()).await;
    // Destroyed: what ran under the agent's own uid (a detached child of its harness) ends too;
    // not when it was revived meanwhile (its new harness runs under the same uid). (A revive
    // started between this check and the kill is not excluded; revives take an operator's ✅
    // after the destroy's, so that is seconds at the least.)
    if let Some(entry) = mine
        && entry.removed().is_cancelled()
        && core.agents().get(&name).is_none()
        && let Some(uid) = entry.uid()
    {
        tracing::info!(agent = %name, uid, "destroyed: ending every process of its uid");
        crate::proc::kill_all_of_uid(uid).await;
    }
}

async fn supervise_entry(
    core: &Core,
    runtimes: &Runtimes,
    name: &AgentName,
    mine: Option<Arc<AgentEntry>>,
) {
    let (core, name) = (core.clone(), name.clone());
    let mut history = CrashHistory::default();
    let mut refused_said: Option<String> = None;
    // A core before this one (killed, crashed) may have left the agent's container running,
    // whatever the agent is now (stopped, refused, external): it is stopped first.
    if let Some(c) = &runtimes.container {
        let _ = run_all(&name, c.stop_commands(&name, false)).await;
    }
    // Only the entry it was started for: a destroyed agent's supervisor ends, even if the
    // agent was revived (a new entry, with a supervisor of its own) in the meantime.
    loop {
        let Some(entry) = core
            .agents()
            .get(&name)
            .filter(|e| mine.as_ref().is_some_and(|m| Arc::ptr_eq(m, e)))
        else {
            return;
        };
        if entry.control.wanted() == Wanted::Stopped {
            tracing::info!(agent = %name, "stopped by a manager; waiting for start");
            set_state(&core, &name, AgentState::Stopped, None);
            if !wait_while_stopped(core.cancel(), &entry).await {
                return;
            }
            tracing::info!(agent = %name, "started by a manager");
            history.reset();
            continue;
        }
        let spec = entry.spec();
        let cfg = core.cfg();
        let placement = placement::place(
            cfg.runtime,
            cfg.allow_unsandboxed,
            &runtimes.host,
            placement::own_code(&spec.brain).as_deref(),
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
            resources: spec.resources.over(cfg.resources),
        };
        let runtime: &dyn Runtime = match &placement {
            // Someone else starts it; this task only ends with the hive (or the agent).
            Placement::External => {
                return tokio::select! {
                    _ = core.cancel().cancelled() => {}
                    _ = entry.removed().cancelled() => {}
                };
            }
            Placement::Sandboxed => match (&runtimes.bwrap, &runtimes.container) {
                (Some(b), _) => b,
                (None, Some(c)) => c,
                (None, None) => unreachable!("placed in a sandbox only when one can run"),
            },
            Placement::Unsandboxed { own_uid } => {
                if *own_uid {
                    // Never as root when a uid of its own was due: wait for a new config.
                    let Some(uid) = entry.uid() else {
                        tracing::error!(agent = %name, "no uid of its own was allocated; not started");
                        set_state(&core, &name, AgentState::CannotStart, None);
                        if !wait_for_new_config(core.cancel(), &entry).await {
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
                set_state(&core, &name, AgentState::Refused, None);
                if refused_said.as_deref() != Some(why.as_str()) {
                    let text = format!("🛑 **{name}** is not started: {why}.");
                    core.notice(None, &text).await;
                    core.post_as_agent_or_notice(
                        &name,
                        core.rooms().get(&RoomKey::Inbox(name.clone())),
                        &text,
                    )
                    .await;
                    refused_said = Some(why.clone());
                }
                if !wait_for_new_config(core.cancel(), &entry).await {
                    return;
                }
                continue;
            }
        };
        refused_said = None;
        // Whatever of the last run the runtime keeps is gone before the files are touched (a
        // container that cannot be stopped is not re-owned under its own feet).
        let prepared = match after_stop(runtime, &launch, false).await {
            Err(e) => Err(e.context("what ran of it before could not be stopped")),
            Ok(()) => match (&placement, launch.uid) {
                // A NixOS container's root is its own uid range here: its state is that uid's.
                (Placement::Sandboxed, _) if runtimes.container.is_some() => prepare_for_uid(
                    core.data_dir(),
                    &launch,
                    crate::runtime::nixos_container::uid_base(&name),
                ),
                (Placement::Sandboxed, _) => prepare_for_sandbox(&launch),
                (_, Some(uid)) => {
                    crate::proc::kill_all_of_uid(uid).await;
                    prepare_for_uid(core.data_dir(), &launch, uid)
                }
                _ => Ok(()),
            },
        };
        if let Err(e) = prepared {
            // Never start an agent whose files are not as they must be.
            tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot prepare the agent's files");
            core.notice(None, &format!("🛑 cannot prepare **{name}**'s files: {e:#}. It starts again when a new config is approved.")).await;
            set_state(&core, &name, AgentState::CannotStart, None);
            if !wait_for_new_config(core.cancel(), &entry).await {
                return;
            }
            continue;
        }
        let started = match before_start(runtime, &launch, core.cancel()).await {
            Ok(()) => spawn(runtime, &launch).await,
            Err(e) => Err(e),
        };
        let (mut child, pump) = match started {
            Ok(c) => c,
            Err(e) => {
                // Nothing of a start that failed half-way runs on (a started container).
                let _ = after_stop(runtime, &launch, true).await;
                tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot start agent");
                core.notice(None, &format!("🛑 cannot start **{name}**: {e:#}. It starts again when a new config is approved."))
                    .await;
                set_state(&core, &name, AgentState::CannotStart, None);
                if !wait_for_new_config(core.cancel(), &entry).await {
                    return;
                }
                continue;
            }
        };
        let pid = child.id();
        tracing::info!(agent = %name, pid, runtime = runtime.name(), uid = launch.uid, "agent started");
        set_state(&core, &name, AgentState::Running, pid);
        entry.harness.started(pid);
        entry.control.set_alive(true);
        let started = Instant::now();
        let limit = launch.resources.memory_bytes;
        let (status, over_memory) = tokio::select! {
            _ = core.cancel().cancelled() => {
                stop_harness(runtime, &launch, &mut child).await;
                entry.harness.exited();
                entry.control.set_alive(false);
                set_state(&core, &name, AgentState::Stopped, None);
                return;
            }
            _ = entry.removed().cancelled() => {
                // Destroyed: SIGTERM lets the harness finish its turn, then this ends.
                tracing::info!(agent = %name, "destroyed: stopping");
                stop_harness(runtime, &launch, &mut child).await;
                entry.harness.exited();
                entry.control.set_alive(false);
                return;
            }
            _ = entry.restart.notified() => {
                // A new config generation (or a manager's restart): SIGTERM lets the harness
                // finish its turn first.
                tracing::info!(agent = %name, "restarting");
                stop_harness(runtime, &launch, &mut child).await;
                entry.harness.exited();
                entry.control.set_alive(false);
                history.reset();
                continue;
            }
            _ = entry.control.until_wanted(Wanted::Stopped) => {
                // A manager's stop: as at shutdown; the loop's top keeps it stopped.
                tracing::info!(agent = %name, "stopping, as a manager asked");
                stop_harness(runtime, &launch, &mut child).await;
                entry.harness.exited();
                entry.control.set_alive(false);
                continue;
            }
            watched = super::memory_limit::wait_watched(&mut child, limit) => watched,
        };
        entry.control.set_alive(false);
        // Ended by itself, or killed for a cancelled turn: nothing of it may run on.
        let _ = after_stop(runtime, &launch, true).await;
        if entry.harness.exited() {
            // An operator cancelled its turn (the kill was theirs): no crash, start it again now.
            tracing::info!(agent = %name, "harness killed for a cancelled turn; starting it again");
            continue;
        }
        let status = match over_memory {
            Some(used) => super::memory_limit::status(used, limit),
            None => status.map_or_else(|e| e.to_string(), |s| runtime.describe_exit(s)),
        };
        set_state(&core, &name, AgentState::Crashed, None);
        if let Err(e) = core.store().record_crash(name.as_str(), &status) {
            tracing::warn!(agent = %name, error = %format!("{e:#}"), "could not record the crash");
        }
        let after = history.crashed(Instant::now(), started.elapsed());
        // The harness's last words are in the pipe still: let them reach the log (a child of
        // its that lives on may hold the pipe open, so not for long).
        match tokio::time::timeout(Duration::from_secs(2), pump).await {
            Ok(Ok(Ok(()))) | Err(_) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(agent = %name, error = %e, "writing the agent's log failed")
            }
            Ok(Err(e)) => tracing::warn!(agent = %name, error = %e, "the agent's log pump failed"),
        }
        let last = log::tail(&launch.log, 5, 64 << 10).unwrap_or_else(|e| format!("(no log: {e})"));
        tracing::warn!(agent = %name, %status, "agent exited unexpectedly");
        if let Some(used) = over_memory {
            super::memory_limit::report(&core, &name, used, limit).await;
        }
        core.report_crash(&name, &status, &last).await;
        match after {
            AfterCrash::CrashLoop => {
                core.notice(None, &format!("🛑 **{name}** crashed {CRASH_LIMIT} times in {} s ({status}); stopped until a new config is approved. Last log lines:\n```\n{last}\n```", CRASH_WINDOW.as_secs())).await;
                set_state(&core, &name, AgentState::CrashLoop, None);
                if !wait_for_new_config(core.cancel(), &entry).await {
                    return;
                }
            }
            AfterCrash::Restart { after } => {
                core.notice(
                    None,
                    &format!(
                        "💥 **{name}** exited ({status}); restarting in {} ms.",
                        after.as_millis()
                    ),
                )
                .await;
                tokio::select! {
                    _ = core.cancel().cancelled() => return,
                    _ = entry.removed().cancelled() => return,
                    _ = tokio::time::sleep(after) => {}
                    // A manager's restart comes now, not after the backoff; a stop is kept.
                    _ = entry.restart.notified() => history.reset(),
                    _ = entry.control.until_wanted(Wanted::Stopped) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents_with_echo() -> (super::super::registry::Agents, AgentName) {
        let name = AgentName::parse("echo").unwrap();
        let dir = std::path::Path::new("/nonexistent");
        let spec = |n: &AgentName| {
            crate::agent_spec::AgentSpec::parse(
                n.clone(),
                dir,
                &dir.join("agent.toml"),
                "[brain]\nkind = \"scripted\"\n",
            )
            .expect("a scripted agent parses")
        };
        let user: ruma::OwnedUserId = "@echo:hive.test".try_into().unwrap();
        let agents =
            super::super::registry::Agents::new(vec![(user, spec(&name))], Default::default());
        (agents, name)
    }

    /// A destroy while stopped ends the supervisor's wait (it used to wait for a `start` that
    /// never comes, swallowing the destroy's restart signal).
    #[tokio::test]
    async fn a_destroy_ends_every_wait() {
        let hive = CancellationToken::new();
        let (agents, name) = agents_with_echo();
        let entry = agents.get(&name).unwrap();
        entry.control.set_wanted(Wanted::Stopped);
        let waiting = {
            let (hive, entry) = (hive.clone(), entry.clone());
            tokio::spawn(async move { wait_while_stopped(&hive, &entry).await })
        };
        tokio::task::yield_now().await;
        agents.remove(&name);
        entry.restart.notify_one();
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends on removal")
            .unwrap();
        assert!(!ended, "a removed agent's supervisor ends");
        assert!(
            !tokio::time::timeout(Duration::from_secs(5), wait_for_new_config(&hive, &entry))
                .await
                .expect("ends at once"),
            "nor does it wait for a new config"
        );
    }

    /// After a revive the old supervisor waits on its own entry: the new one's restart signal
    /// is left for the new supervisor.
    #[tokio::test]
    async fn an_old_supervisor_never_takes_the_revived_entrys_signal() {
        let hive = CancellationToken::new();
        let (agents, name) = agents_with_echo();
        let old = agents.get(&name).unwrap();
        agents.remove(&name);
        let user: ruma::OwnedUserId = "@echo:hive.test".try_into().unwrap();
        assert!(agents.add(user, old.spec().as_ref().clone()));
        let new = agents.get(&name).unwrap();
        new.restart.notify_one();
        assert!(!wait_for_new_config(&hive, &old).await);
        tokio::time::timeout(Duration::from_secs(5), new.restart.notified())
            .await
            .expect("the new entry's signal is still there");
        // A running wait ends with the hive too.
        let entry = new.clone();
        let h = hive.clone();
        let waiting = tokio::spawn(async move { wait_for_new_config(&h, &entry).await });
        tokio::task::yield_now().await;
        hive.cancel();
        assert!(!waiting.await.unwrap());
    }

    /// How a run of crashes is answered: each step is (seconds since the first crash, seconds
    /// the harness had run) → what follows.
    #[test]
    fn crash_table() {
        struct Case {
            name: &'static str,
            crashes: &'static [(u64, u64)],
            want: Vec<AfterCrash>,
        }
        const fn restart(ms: u64) -> AfterCrash {
            AfterCrash::Restart {
                after: Duration::from_millis(ms),
            }
        }
        use AfterCrash::CrashLoop;
        let cases = [
            Case {
                name: "one crash restarts after the first backoff",
                crashes: &[(0, 1)],
                want: vec![restart(500)],
            },
            Case {
                name: "the backoff doubles, and the fifth crash in a minute is a loop",
                crashes: &[(0, 1), (2, 1), (5, 1), (9, 1), (14, 1)],
                want: vec![
                    restart(500),
                    restart(1000),
                    restart(2000),
                    restart(4000),
                    CrashLoop,
                ],
            },
            Case {
                name: "after a loop the history starts afresh",
                crashes: &[(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1)],
                want: vec![
                    restart(500),
                    restart(1000),
                    restart(2000),
                    restart(4000),
                    CrashLoop,
                    restart(500),
                ],
            },
            Case {
                name: "crashes older than the window are forgotten",
                crashes: &[(0, 1), (30, 1), (61, 1), (62, 1), (63, 1), (64, 1)],
                want: vec![
                    restart(500),
                    restart(1000),
                    restart(2000),
                    restart(4000),
                    restart(8000),
                    CrashLoop,
                ],
            },
            Case {
                name: "a calm minute of running resets the backoff",
                crashes: &[(0, 1), (2, 1), (200, 120)],
                want: vec![restart(500), restart(1000), restart(500)],
            },
        ];
        for case in cases {
            let t0 = Instant::now();
            let mut h = CrashHistory::default();
            let got: Vec<AfterCrash> = case
                .crashes
                .iter()
                .map(|&(at, ran)| h.crashed(t0 + Duration::from_secs(at), Duration::from_secs(ran)))
                .collect();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn the_backoff_stops_growing_at_a_minute() {
        let t0 = Instant::now();
        let mut h = CrashHistory::default();
        let mut last = Duration::ZERO;
        // One crash every 20 s: never five in a window, the backoff keeps doubling.
        for i in 0..12 {
            if let AfterCrash::Restart { after } =
                h.crashed(t0 + Duration::from_secs(i * 20), Duration::from_secs(1))
            {
                last = after;
            }
        }
        assert_eq!(last, MAX_BACKOFF);
    }
}
