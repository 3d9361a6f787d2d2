//! What `list_agents` says of each agent's life: its [`Shown`] state (a pure function of what
//! the store records, what is wanted and whether a harness is connected or in a turn), its
//! current turn, its queue and its last crash.

use serde_json::{Value, json};

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::store::{AgentState, Wanted};

use super::registry::AgentEntry;

/// An agent's state as `list_agents` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Connected, waiting for a message.
    Idle,
    /// Connected, a turn in flight.
    Thinking,
    /// Its harness was started and has not said hello yet (or the core has not started it).
    Starting,
    /// A manager stopped it; its harness has not exited yet.
    Stopping,
    /// Stopped (by a manager, or with the core); its messages wait.
    Stopped,
    /// Its harness crashed; it is started again after a backoff.
    Crashed,
    /// It crashed too often in a row: it waits for a new config or `start`.
    CrashLoop,
    /// Its harness could not be started: it waits for a new config or `start`.
    CannotStart,
    /// The runtime refused to run it (e.g. unsandboxed without the opt-in).
    Refused,
    /// No harness is connected, and none is known to be starting (an external harness gone).
    Disconnected,
    /// Destroyed by an approved request: stopped, out of its rooms, its state kept until a
    /// revive or a purge.
    Kept,
}

impl Shown {
    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Idle => "idle",
            Shown::Thinking => "thinking",
            Shown::Starting => "starting",
            Shown::Stopping => "stopping",
            Shown::Stopped => "stopped",
            Shown::Crashed => "crashed",
            Shown::CrashLoop => "crash-loop",
            Shown::CannotStart => "cannot-start",
            Shown::Refused => "refused",
            Shown::Disconnected => "disconnected",
            Shown::Kept => "kept",
        }
    }
}

/// The facts the state shown is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub wanted: Wanted,
    /// The harness state the store records, if any.
    pub stored: Option<AgentState>,
    /// A harness process of the core's runs.
    pub alive: bool,
    /// A harness is connected on `c0re.sock`.
    pub connected: bool,
    /// Its turn is handling a message.
    pub turn: bool,
}

impl Facts {
    /// What `entry` says now, with the harness state the store records (`stored`).
    pub fn of(entry: &super::registry::AgentEntry, stored: Option<AgentState>) -> Self {
        Self {
            wanted: entry.control.wanted(),
            stored,
            alive: entry.control.alive(),
            connected: *entry.connected.lock().unwrap_or_else(|p| p.into_inner()),
            turn: entry
                .turn
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some(),
        }
    }
}

/// The state shown for an agent. The rules, in order:
/// - stopped by a manager: `stopping` while its harness process still runs, then `stopped`;
/// - a turn in flight: `thinking`; a harness connected: `idle`;
/// - otherwise what the store recorded: `crashed`, `crash-loop`, `cannot-start`, `refused`,
///   `stopped`; a started process (or nothing recorded yet) is `starting`; a connection that
///   ended is `disconnected`.
pub fn shown(f: Facts) -> Shown {
    match (f.wanted, f.alive, f.connected, f.turn) {
        (Wanted::Stopped, true, _, _) => return Shown::Stopping,
        (Wanted::Stopped, false, _, _) => return Shown::Stopped,
        (_, _, _, true) => return Shown::Thinking,
        (_, _, true, false) => return Shown::Idle,
        _ => {}
    }
    match f.stored {
        Some(AgentState::Crashed) => Shown::Crashed,
        Some(AgentState::CrashLoop) => Shown::CrashLoop,
        Some(AgentState::CannotStart) => Shown::CannotStart,
        Some(AgentState::Refused) => Shown::Refused,
        Some(AgentState::Stopped) => Shown::Stopped,
        Some(AgentState::Running) | None => Shown::Starting,
        Some(AgentState::Connected | AgentState::Disconnected) => Shown::Disconnected,
        Some(AgentState::Kept) => Shown::Kept,
    }
}

/// Whether `caller` is shown `subject`'s current turn (the message's sender and event id): a
/// manager sees every agent's, every agent its own; the rest see only that it is `thinking`.
pub fn sees_turn(caller_is_manager: bool, caller: &AgentName, subject: &AgentName) -> bool {
    caller_is_manager || caller == subject
}

impl Core {
    /// `list_agents`' fields about `name`'s life: `state`, `current_turn`, `queue` (messages
    /// waiting), `last_crash`. A store that cannot answer shows `null` and is logged.
    pub(super) fn life_fields(
        &self,
        caller: &AgentName,
        name: &AgentName,
        entry: &AgentEntry,
        stored: Option<AgentState>,
    ) -> serde_json::Map<String, Value> {
        let facts = Facts::of(entry, stored);
        let (state, turn) = (shown(facts), facts.turn);
        let logged = |what: &str, e: anyhow::Error| {
            tracing::warn!(agent = %name, error = %format!("{e:#}"), "list_agents cannot read {what}");
            Value::Null
        };
        let shown_turn = sees_turn(self.cfg().managers.contains(caller), caller, name);
        let current_turn = match self.store().inflight_turn(name.as_str()) {
            Ok(Some(t)) if turn && shown_turn => json!({
                "event_id": t.event_id,
                "sender": t.sender,
                "since": crate::store::utc(t.since_us),
                "attempt": t.attempt,
            }),
            Ok(_) => Value::Null,
            Err(e) => logged("the turn in flight", e),
        };
        let queue = match self.store().counts(name.as_str()) {
            Ok(c) => json!(c.pending),
            Err(e) => logged("the queue", e),
        };
        let last_crash = match self.store().last_crash(name.as_str()) {
            Ok(Some(c)) => json!({ "at": crate::store::utc(c.at_us), "status": c.status }),
            Ok(None) => Value::Null,
            Err(e) => logged("the last crash", e),
        };
        let mut m = serde_json::Map::new();
        m.insert("state".into(), json!(state.as_str()));
        m.insert("current_turn".into(), current_turn);
        m.insert("queue".into(), queue);
        m.insert("last_crash".into(), last_crash);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_sees_a_turn() {
        let n = |s: &str| AgentName::parse(s).expect("a valid name");
        struct Case {
            name: &'static str,
            manager: bool,
            caller: &'static str,
            subject: &'static str,
            want: bool,
        }
        let cases = [
            Case {
                name: "a manager sees another's turn",
                manager: true,
                caller: "hm1nd",
                subject: "echo",
                want: true,
            },
            Case {
                name: "an agent sees its own",
                manager: false,
                caller: "echo",
                subject: "echo",
                want: true,
            },
            Case {
                name: "an agent does not see another's",
                manager: false,
                caller: "alice",
                subject: "echo",
                want: false,
            },
        ];
        for c in cases {
            assert_eq!(
                sees_turn(c.manager, &n(c.caller), &n(c.subject)),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn the_state_shown() {
        struct Case {
            name: &'static str,
            wanted: Wanted,
            stored: Option<AgentState>,
            connected: bool,
            turn: bool,
            want: Shown,
        }
        use AgentState as S;
        use Wanted::{Running, Stopped};
        let case = |name, wanted, stored, connected, turn, want| Case {
            name,
            wanted,
            stored,
            connected,
            turn,
            want,
        };
        // (A connected harness is a live process here; the last rows show them apart.)
        let cases = [
            case(
                "destroyed: kept",
                Running,
                Some(S::Kept),
                false,
                false,
                Shown::Kept,
            ),
            case(
                "connected, no turn",
                Running,
                Some(S::Connected),
                true,
                false,
                Shown::Idle,
            ),
            case(
                "connected, a turn in flight",
                Running,
                Some(S::Connected),
                true,
                true,
                Shown::Thinking,
            ),
            case(
                "the live connection wins over a stale record",
                Running,
                Some(S::Crashed),
                true,
                false,
                Shown::Idle,
            ),
            case(
                "stopped by a manager",
                Stopped,
                Some(S::Stopped),
                false,
                false,
                Shown::Stopped,
            ),
            case(
                "stopped by a manager, the harness still finishing",
                Stopped,
                Some(S::Connected),
                true,
                true,
                Shown::Stopping,
            ),
            case(
                "stopped while it crash-looped",
                Stopped,
                Some(S::CrashLoop),
                false,
                false,
                Shown::Stopped,
            ),
            case(
                "crashed, restarting after a backoff",
                Running,
                Some(S::Crashed),
                false,
                false,
                Shown::Crashed,
            ),
            case(
                "a crash loop",
                Running,
                Some(S::CrashLoop),
                false,
                false,
                Shown::CrashLoop,
            ),
            case(
                "could not start",
                Running,
                Some(S::CannotStart),
                false,
                false,
                Shown::CannotStart,
            ),
            case(
                "refused by the runtime",
                Running,
                Some(S::Refused),
                false,
                false,
                Shown::Refused,
            ),
            case(
                "the process started, no hello yet",
                Running,
                Some(S::Running),
                false,
                false,
                Shown::Starting,
            ),
            case(
                "nothing recorded yet",
                Running,
                None,
                false,
                false,
                Shown::Starting,
            ),
            case(
                "stopped with the core",
                Running,
                Some(S::Stopped),
                false,
                false,
                Shown::Stopped,
            ),
            case(
                "a connection that ended",
                Running,
                Some(S::Disconnected),
                false,
                false,
                Shown::Disconnected,
            ),
        ];
        for c in cases {
            let f = Facts {
                wanted: c.wanted,
                stored: c.stored,
                alive: c.connected,
                connected: c.connected,
                turn: c.turn,
            };
            assert_eq!(shown(f), c.want, "{}", c.name);
        }
        let stopped = |alive, connected| Facts {
            wanted: Stopped,
            stored: Some(S::Connected),
            alive,
            connected,
            turn: false,
        };
        assert_eq!(
            shown(stopped(true, false)),
            Shown::Stopping,
            "stopped, its process not yet gone"
        );
        assert_eq!(
            shown(stopped(false, true)),
            Shown::Stopped,
            "stopped, the process gone before its connection is seen closed"
        );
    }
}
