//! Cancelling a running turn (`!cancel` in an agent's inbox, `!hive cancel <agent>`): the core
//! marks the turn's message (and what the turn pulled) done, cancelled, in one sqlite
//! transaction, then kills the harness's whole process group at once (SIGKILL, no grace: the
//! brain's CLI, its command and their children go with it) and cuts its connection (a model
//! call the core is making for the turn is dropped). The supervisor sees the exit as a
//! cancellation, not a crash: it starts the harness again at once, no backoff, no crash notice,
//! and the agent's next message is delivered to the new harness.
//!
//! Which turn: the one the operator saw. A command cancels only a turn handed out before the
//! command was sent (its event's `origin_server_ts`): a turn that started after it (the one
//! they meant ended just then; or the command waited for a restart of the core) runs on, and
//! they are told. A command is carried out once: delivered again (the core crashed before
//! acking it) it is answered and cancels nothing ([`crate::store::CancelOutcome`]).
//!
//! Order matters: the agent's turn lock is held while a `next` hands out a message and records
//! it as the running turn, and while a cancel reads, marks and kills it, so the turn a cancel
//! marks is the one running, and the kill is sent before the harness can move on to its next
//! message. A turn that ended before the lock was taken is not cancelled ("no turn running").
//!
//! The kill reaches the harness the supervisor started, not a process that got its pid later:
//! the leader's start time (`/proc/<pid>/stat`, field 22) is recorded at its start and checked
//! before the kill. An exit is a cancellation only if the kill was delivered; a harness that
//! was gone already crashed on its own, and is reported as a crash.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::Notify;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::store::{CancelCommand, CancelOutcome, CancelledTurn, now_us};

/// An agent's harness process as its supervisor started it: what a cancel kills.
#[derive(Default)]
pub struct HarnessProc {
    /// The harness while it runs: the leader of its own process group.
    leader: Mutex<Option<Leader>>,
    /// Set by a cancel whose kill was delivered: the exit that follows is no crash.
    cancelled: AtomicBool,
    /// Ends the harness's connection to the core at once.
    cut: Notify,
}

/// A process group leader: its pid, and its start time (clock ticks after boot) if readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leader {
    pid: i32,
    start: Option<u64>,
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), if it runs.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's `(…)`, which may hold spaces: the first is field 3.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// What a kill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// The group got SIGKILL.
    Killed,
    /// No harness of the supervisor's runs (none started, or it is gone already).
    NoHarness,
}

impl HarnessProc {
    /// The supervisor started the harness as `pid` (its own process group).
    pub fn started(&self, pid: Option<u32>) {
        let leader = pid.and_then(|p| i32::try_from(p).ok()).map(|pid| Leader {
            pid,
            start: start_time(pid),
        });
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = leader;
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// The harness exited (it was waited for): whether a cancel killed it, so that the exit
    /// is no crash.
    pub fn exited(&self) -> bool {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.cancelled.swap(false, Ordering::SeqCst)
    }

    /// Resolves when a cancel cut the harness's connection (a future made before the cut).
    pub fn cut(&self) -> tokio::sync::futures::Notified<'_> {
        self.cut.notified()
    }

    /// Kills the harness's process group now, if the supervisor's harness still runs: not a
    /// process that took its pid after it was reaped (its start time differs).
    fn kill(&self) -> Kill {
        let leader = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Leader { pid, start }) = *leader else {
            return Kill::NoHarness;
        };
        if start.is_some() && start_time(pid) != start {
            tracing::warn!(
                pid,
                "the harness is gone (its pid is no longer its own): nothing to kill"
            );
            return Kill::NoHarness;
        }
        match kill(Pid::from_raw(-pid), Signal::SIGKILL) {
            Ok(()) => {
                self.cancelled.store(true, Ordering::SeqCst);
                Kill::Killed
            }
            Err(e) => {
                // The group is gone already (ESRCH): the harness exited on its own just now,
                // and its exit is a crash like any other.
                tracing::warn!(pid, error = %e, "could not kill the harness's process group");
                Kill::NoHarness
            }
        }
    }
}

/// Why nothing was cancelled: the answer to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    #[error("there is no agent {0:?}")]
    UnknownAgent(String),
    #[error("{0} has no turn running: nothing to cancel")]
    NoTurn(AgentName),
    #[error("{0}'s running turn started after your `!cancel`: it runs on")]
    StartedAfter(AgentName),
    #[error("this `!cancel` was carried out already: it cancelled {0}'s turn on “{1}”")]
    AlreadyDone(AgentName, String),
    #[error(
        "{0}'s harness is started by someone else (runtime = \"external\" in hive.toml): the core cannot stop its turn"
    )]
    External(AgentName),
}

/// A message's body as a cancel names it: its first 80 characters, on one line. The caller
/// redacts the body first: a secret cut in two no longer matches the filter.
fn one_line(body: &str) -> String {
    let cut: String = body.chars().take(80).collect();
    let more = if body.chars().count() > 80 { "…" } else { "" };
    format!("{}{more}", cut.replace('\n', " "))
}

/// A turn cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub agent: AgentName,
    pub turn: CancelledTurn,
    /// How long it had run, in whole seconds.
    pub secs: u64,
}

impl Cancelled {
    /// What the rooms are told: "cancelled argus's turn on “…” after 3 s".
    pub fn text(&self) -> String {
        let body = one_line(&self.turn.body);
        let pulled = match self.turn.pulled {
            0 => String::new(),
            1 => " (and the 1 message it had pulled)".into(),
            n => format!(" (and the {n} messages it had pulled)"),
        };
        format!(
            "⏹️ cancelled {}'s turn on “{body}” after {} s{pulled}: it counts as done and is not delivered again.",
            self.agent, self.secs
        )
    }
}

impl Core {
    /// Carries out `command`, operator `by`'s cancel of `agent`'s running turn (module doc).
    pub fn cancel_turn(
        &self,
        agent: &str,
        by: &str,
        command: CancelCommand<'_>,
    ) -> anyhow::Result<Result<Cancelled, CancelRefusal>> {
        let Some((name, entry)) = AgentName::parse(agent)
            .ok()
            .and_then(|n| self.agents().get(&n).map(|e| (n, e)))
        else {
            return Ok(Err(CancelRefusal::UnknownAgent(agent.to_owned())));
        };
        if self.cfg().runtime == crate::config::RuntimeKind::External {
            return Ok(Err(CancelRefusal::External(name)));
        }
        // Delivered again (a crash before its ack): answered, whatever runs now.
        if let Some(CancelOutcome::AlreadyDone { body, .. }) =
            self.store().cancel_done(command.event_id)?
        {
            return Ok(Err(CancelRefusal::AlreadyDone(
                name,
                one_line(&self.secrets().redact(&body)),
            )));
        }
        let turn = {
            let running = entry.turn.lock().unwrap_or_else(|p| p.into_inner());
            let Some(id) = running.as_ref().map(|t| t.inbox_id) else {
                return Ok(Err(CancelRefusal::NoTurn(name)));
            };
            let model = {
                let spec = entry.spec();
                spec.brain.model().unwrap_or(spec.brain.kind()).to_owned()
            };
            let turn = match self.store().cancel_turn(id, by, &model, command)? {
                CancelOutcome::Cancelled(turn) => turn,
                CancelOutcome::NotInFlight => return Ok(Err(CancelRefusal::NoTurn(name))),
                CancelOutcome::StartedAfter => return Ok(Err(CancelRefusal::StartedAfter(name))),
                CancelOutcome::AlreadyDone { body, .. } => {
                    return Ok(Err(CancelRefusal::AlreadyDone(
                        name,
                        one_line(&self.secrets().redact(&body)),
                    )));
                }
            };
            // Before the lock is released: the harness cannot be on its next message yet, and
            // the connection cut is the killed harness's, not a new one's.
            if entry.harness.kill() == Kill::NoHarness {
                tracing::warn!(agent = %name, "no harness process to kill; cutting its connection");
            }
            entry.harness.cut.notify_waiters();
            turn
        };
        // Named in the rooms' notices: redacted whole, before `one_line` cuts it.
        let turn = CancelledTurn {
            body: self.secrets().redact(&turn.body),
            ..turn
        };
        let secs = turn.delivered_us.map_or(0, |t| {
            u64::try_from((now_us() - t) / 1_000_000).unwrap_or(0)
        });
        tracing::info!(agent = %name, id = turn.id, secs, by, "turn cancelled");
        Ok(Ok(Cancelled {
            agent: name,
            turn,
            secs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rooms_are_told_what_was_cancelled() {
        struct Case {
            name: &'static str,
            body: String,
            pulled: usize,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "a short message",
                body: "sleep".into(),
                pulled: 0,
                want: "⏹️ cancelled argus's turn on “sleep” after 3 s: it counts as done and is not delivered again.",
            },
            Case {
                name: "a long one is cut, on one line",
                body: format!("a\n{}", "b".repeat(100)),
                pulled: 2,
                want: "⏹️ cancelled argus's turn on “a bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb…” after 3 s (and the 2 messages it had pulled): it counts as done and is not delivered again.",
            },
        ];
        for c in cases {
            let got = Cancelled {
                agent: AgentName::parse("argus").unwrap(),
                turn: CancelledTurn {
                    id: 1,
                    body: c.body,
                    delivered_us: None,
                    pulled: c.pulled,
                },
                secs: 3,
            }
            .text();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    /// A kill reaches the whole group (a child the harness started too), and the exit it
    /// causes is a cancellation, once.
    #[tokio::test]
    async fn a_kill_ends_the_group_and_is_no_crash() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "sleep 600 & echo $!; wait"])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        use tokio::io::AsyncBufReadExt;
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).await.unwrap();
        let sleeper: i32 = line.trim().parse().unwrap();
        let proc = HarnessProc::default();
        assert_eq!(
            proc.kill(),
            Kill::NoHarness,
            "nothing to kill before a start"
        );
        proc.started(child.id());
        assert_eq!(proc.kill(), Kill::Killed);
        child.wait().await.unwrap();
        assert!(proc.exited(), "a cancellation");
        assert!(!proc.exited(), "once");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{sleeper}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "the brain's child lives on"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A harness that is gone already is not killed, and its exit is a crash: whether its
    /// group is gone (ESRCH), or its pid belongs to another process now.
    #[tokio::test]
    async fn a_harness_gone_already_is_no_cancellation() {
        let mut child = tokio::process::Command::new("true")
            .process_group(0)
            .spawn()
            .unwrap();
        let proc = HarnessProc::default();
        proc.started(child.id());
        child.wait().await.unwrap();
        assert_eq!(proc.kill(), Kill::NoHarness, "reaped: no group to kill");
        assert!(!proc.exited(), "a crash, not a cancellation");

        // A pid reused by another process: its start time is not the harness's, so it lives.
        let mut other = tokio::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = i32::try_from(other.id().unwrap()).unwrap();
        let start = start_time(pid).expect("field 22 is read");
        *proc.leader.lock().unwrap() = Some(Leader {
            pid,
            start: Some(start + 1),
        });
        assert_eq!(
            proc.kill(),
            Kill::NoHarness,
            "not the harness's pid any more"
        );
        assert!(!proc.exited());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            other.try_wait().unwrap().is_none(),
            "the other process lives"
        );
        proc.started(other.id());
        assert_eq!(proc.kill(), Kill::Killed, "its own start time: killed");
        other.wait().await.unwrap();
        assert!(proc.exited());
    }
}
