//! Cancelling a running turn (`!cancel` in an agent's inbox, `!hive cancel <agent>`): the core
//! marks the turn's message (and what the turn pulled) done, cancelled, in one sqlite
//! transaction, then kills the harness's whole process group at once (SIGKILL, no grace: the
//! brain's CLI, its command and their children go with it) and cuts its connection (a model
//! call the core is making for the turn is dropped). The supervisor sees the exit as a
//! cancellation, not a crash: it starts the harness again at once, no backoff, no crash notice,
//! and the agent's next message is delivered to the new harness.
//!
//! Order matters: the turn's message is read and marked under the agent's turn lock, and the
//! kill is sent before that lock is released, so the harness cannot have moved on to its next
//! message meanwhile (a `next` waits on the same lock before handing one out). A turn that
//! ended before the lock was taken is not cancelled (answered "no turn running").

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::Notify;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::store::{CancelledTurn, now_us};

/// An agent's harness process as its supervisor started it: what a cancel kills.
#[derive(Default)]
pub struct HarnessProc {
    /// The harness's pid while it runs: the leader of its own process group.
    pid: Mutex<Option<u32>>,
    /// Set by a cancel before its kill: the exit that follows is no crash.
    cancelled: AtomicBool,
    /// Ends the harness's connection to the core at once.
    cut: Notify,
}

impl HarnessProc {
    /// The supervisor started the harness as `pid` (its own process group).
    pub fn started(&self, pid: Option<u32>) {
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) = pid;
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// The harness exited (it was waited for): whether a cancel killed it, so that the exit
    /// is no crash.
    pub fn exited(&self) -> bool {
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.cancelled.swap(false, Ordering::SeqCst)
    }

    /// Resolves when a cancel cut the harness's connection (a future made before the cut).
    pub fn cut(&self) -> tokio::sync::futures::Notified<'_> {
        self.cut.notified()
    }

    /// Kills the harness's process group now; false if no harness of the supervisor's runs.
    fn kill(&self) -> bool {
        let pid = self.pid.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pid) = *pid else {
            return false;
        };
        let Ok(pid) = i32::try_from(pid) else {
            return false;
        };
        self.cancelled.store(true, Ordering::SeqCst);
        if let Err(e) = kill(Pid::from_raw(-pid), Signal::SIGKILL) {
            // The group is gone already (ESRCH): the harness exited on its own just now.
            tracing::warn!(pid, error = %e, "could not kill the harness's process group");
        }
        true
    }
}

/// Why nothing was cancelled: the answer to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    #[error("there is no agent {0:?}")]
    UnknownAgent(String),
    #[error("{0} has no turn running: nothing to cancel")]
    NoTurn(AgentName),
    #[error(
        "{0}'s harness is started by someone else (runtime = \"external\" in hive.toml): the core cannot stop its turn"
    )]
    External(AgentName),
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
        let body: String = self.turn.body.chars().take(80).collect();
        let more = if self.turn.body.chars().count() > 80 {
            "…"
        } else {
            ""
        };
        let body = body.replace('\n', " ");
        let pulled = match self.turn.pulled {
            0 => String::new(),
            1 => " (and the 1 message it had pulled)".into(),
            n => format!(" (and the {n} messages it had pulled)"),
        };
        format!(
            "⏹️ cancelled {}'s turn on “{body}{more}” after {} s{pulled}: it counts as done and is not delivered again.",
            self.agent, self.secs
        )
    }
}

impl Core {
    /// Cancels `agent`'s running turn on behalf of operator `by` (module doc).
    pub fn cancel_turn(
        &self,
        agent: &str,
        by: &str,
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
        let turn = {
            let running = entry.turn.lock().unwrap_or_else(|p| p.into_inner());
            let Some(id) = running.as_ref().map(|t| t.inbox_id) else {
                return Ok(Err(CancelRefusal::NoTurn(name)));
            };
            let model = {
                let spec = entry.spec();
                spec.brain.model().unwrap_or(spec.brain.kind()).to_owned()
            };
            let Some(turn) = self.store().cancel_turn(id, by, &model)? else {
                return Ok(Err(CancelRefusal::NoTurn(name)));
            };
            // Before the lock is released: the harness cannot be on its next message yet.
            if !entry.harness.kill() {
                tracing::warn!(agent = %name, "no harness process to kill; cutting its connection");
            }
            turn
        };
        entry.harness.cut.notify_waiters();
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
        assert!(!proc.kill(), "nothing to kill before a start");
        proc.started(child.id());
        assert!(proc.kill());
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
}
