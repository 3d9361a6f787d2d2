//! `recv(wait_secs, max)`: an agent pulls further messages from its inbox while its turn runs.
//!
//! What it pulls is delivered by that turn, exactly once across crashes (`store/recv.rs`): the
//! messages are in flight as part of the turn's own message; the turn's ack marks them done in
//! the same transaction; a turn that ends without one (its harness died, the core restarted, the
//! brain failed) puts them back in the queue, so they are delivered again in order and never
//! lost. They are taken from the agent's own queue, oldest first, so only what routing already
//! gave the agent is ever pulled.
//!
//! Rules (checked by [`check_recv`], a pure function with a table): `wait_secs` 0 (the default:
//! answer at once) to [`MAX_WAIT_SECS`], the longest it waits for a first message; `max` 1 to
//! [`MAX_PULL`] (default [`DEFAULT_PULL`]); at most [`MAX_PULL_BYTES`] of bodies in one answer.
//! A call outside a turn is refused and says why (there is no turn for the messages to belong
//! to: they arrive as turns of their own). `recv` is no recorded effect (`effects.rs`): a re-run
//! turn pulls again, and gets again what its crashed attempt had pulled.
//! A wait ends early when the core stops; over `c0re.sock` the harness is blocked on the answer,
//! so one that dies while it waits is noticed when the wait ends (at most [`MAX_WAIT_SECS`]),
//! and its turn is released with what it pulled.
//!
//! Over `tools.sock` the turn outlives the caller (`hive mcp` may die, or drop the call, while
//! the harness goes on to ack the turn), so the pull and the hand-over are one step
//! ([`Handover`]): the connection watches its client while the call runs, a wait ends as soon
//! as the client hangs up, and a pull is never made for a client already gone; the rows a pull
//! took are kept with the call, and if its answer cannot be written they go back to the queue
//! ([`crate::store::Store::put_back`]), exactly those, whatever the turn did meanwhile. What a
//! recv pulled counts as delivered only once its answer was written.
//!
//! The answer is JSON, `{"messages": [...], "waiting": n}`: each message as the harness gets a
//! turn's (`id`, `event_id`, `room_id`, `sender`, `body`, `attempt`, and `event` only for what
//! the hive itself reports), with `text` as a model brain's prompt shows it
//! ([`crate::brain::prompt_of`]: a core event told apart from a person); every string through
//! the secret filter. Every call is in the audit, refused ones too.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::tool_spec::{ToolError, ToolSpec, args};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::store::{InboxItem, Pull, PullLimits};

/// The longest `recv` waits for a first message.
pub const MAX_WAIT_SECS: u64 = 180;
/// Most messages one `recv` pulls, and how many when `max` is not given.
pub const MAX_PULL: u64 = 32;
pub const DEFAULT_PULL: u64 = 8;
/// Most bytes of bodies (and core event data) one answer carries; what is left waits.
pub const MAX_PULL_BYTES: usize = 128 << 10;

/// The tool, for every agent.
pub fn catalog() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "recv",
        description: "Pull further messages from your inbox into this turn, oldest first (JSON: `messages`, each with sender, body, event_id, and `event` only for what the hive itself reports; `waiting`: how many are left). Waits up to `wait_secs` (default 0, at most 180) for a first one; at most `max` (default 8, at most 32). Pulled messages are handled by this turn: done when it completes, never delivered again; if the turn crashes they come back. Only during a turn.",
        input_schema: json!({
            "type": "object",
            "properties": {
                "wait_secs": { "type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECS },
                "max": { "type": "integer", "minimum": 1, "maximum": MAX_PULL }
            },
            "additionalProperties": false
        }),
        managers_only: false,
    }]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecvArgs {
    wait_secs: Option<u64>,
    max: Option<u64>,
}

/// A `recv` as checked: how long to wait for a first message, how many to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvBounds {
    pub wait: Duration,
    pub max: usize,
}

/// Why a `recv` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvRefused {
    #[error("wait_secs must be 0 to {MAX_WAIT_SECS}, not {0}")]
    Wait(u64),
    #[error("max must be 1 to {MAX_PULL}, not {0}")]
    Max(u64),
    #[error(
        "recv pulls messages into a running turn, and {0} has none now: its messages arrive as turns of their own"
    )]
    NoTurn(AgentName),
    #[error("hive-c0re is stopping")]
    Stopping,
    #[error("the caller hung up before anything was pulled")]
    HungUp,
}

/// What a `recv` does next, from what it knows now (a pure function; the table is in the
/// tests): a caller gone ends it before anything is pulled, so a dead client's wait pulls
/// nothing; a pull that took something, or a wait that is over, answers; else it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvNext {
    /// Look again (or first): pull what is queued.
    Pull,
    /// Answer with what was pulled (maybe nothing).
    Answer,
    /// Wait for a message, the deadline, the caller or shutdown.
    Wait,
    /// End without pulling: the caller is gone.
    HungUp,
}

/// The step after a look: `pulled` is `None` before the pull of this round, else how many it
/// took.
pub fn recv_next(hung_up: bool, pulled: Option<usize>, timed_out: bool) -> RecvNext {
    match pulled {
        None if hung_up => RecvNext::HungUp,
        None => RecvNext::Pull,
        Some(n) if n > 0 || timed_out => RecvNext::Answer,
        Some(_) if hung_up => RecvNext::HungUp,
        Some(_) => RecvNext::Wait,
    }
}

/// What becomes of a `recv`'s pull once its answer was, or was not, written (a pure
/// function; the table is in the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// Nothing was pulled: nothing to do.
    Nothing,
    /// The answer reached the connection: the rows are the turn's.
    Delivered,
    /// The answer was never written: the rows go back to the queue.
    PutBack,
}

/// What becomes of a pull of `pulled` rows whose answer was `written` (or not).
pub fn handed(written: bool, pulled: usize) -> Handed {
    match (pulled, written) {
        (0, _) => Handed::Nothing,
        (_, true) => Handed::Delivered,
        (_, false) => Handed::PutBack,
    }
}

/// The connection a tool call came on, for `recv` (`tools.sock`): whether its client hung up,
/// and what the call pulled until its answer is written. Set for the call's task by the socket
/// ([`Handover::scope`]); a call without one (over `c0re.sock`, whose turn ends with its
/// connection) behaves as before.
#[derive(Clone, Default)]
pub(super) struct Handover {
    hung_up: tokio_util::sync::CancellationToken,
    pulled: std::sync::Arc<std::sync::Mutex<Option<Held>>>,
}

/// What a call's pull took into turn `turn`, held until its answer is written.
struct Held {
    turn: i64,
    taken: Vec<InboxItem>,
}

tokio::task_local! {
    static HANDOVER: Handover;
}

impl Handover {
    /// Runs `call` with this hand-over as its connection's.
    pub(super) async fn scope<F: std::future::Future>(&self, call: F) -> F::Output {
        HANDOVER.scope(self.clone(), call).await
    }

    /// The connection's client hung up: a waiting recv ends and pulls nothing more.
    pub(super) fn hang_up(&self) {
        self.hung_up.cancel();
    }

    fn current() -> Option<Handover> {
        HANDOVER.try_with(Handover::clone).ok()
    }

    fn hold(&self, turn: i64, taken: &[InboxItem]) {
        let mut held = self.pulled.lock().unwrap_or_else(|p| p.into_inner());
        *held = Some(Held {
            turn,
            taken: taken.to_vec(),
        });
    }

    fn take(&self) -> Option<Held> {
        self.pulled.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl From<RecvRefused> for ToolError {
    fn from(r: RecvRefused) -> Self {
        ToolError::Refused(r.to_string())
    }
}

/// The bounds of a `recv` from its arguments (defaults: no wait, [`DEFAULT_PULL`]). A pure
/// function; the table is in the tests.
pub fn check_recv(wait_secs: Option<u64>, max: Option<u64>) -> Result<RecvBounds, RecvRefused> {
    let wait = wait_secs.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(RecvRefused::Wait(wait));
    }
    let max = max.unwrap_or(DEFAULT_PULL);
    if !(1..=MAX_PULL).contains(&max) {
        return Err(RecvRefused::Max(max));
    }
    Ok(RecvBounds {
        wait: Duration::from_secs(wait),
        max: usize::try_from(max).expect("at most MAX_PULL"),
    })
}

/// How a `recv` ended.
enum Recvd {
    /// The answer, and the event ids it pulled.
    Answer(String, Vec<String>),
    /// The caller hung up before anything was pulled.
    HungUp,
}

/// Hands a wake-up of the agent's queue on when dropped, if one was taken.
struct PassOn<'a> {
    notify: &'a tokio::sync::Notify,
    took: bool,
}

impl Drop for PassOn<'_> {
    fn drop(&mut self) {
        if self.took {
            self.notify.notify_one();
        }
    }
}

impl Core {
    /// `recv` for `agent`, audited whatever its outcome.
    pub(super) async fn recv_tool(
        &self,
        agent: &AgentName,
        v: &Value,
    ) -> Result<String, ToolError> {
        match self.recv(agent, v).await {
            Ok(Recvd::Answer(answer, ids)) => {
                let detail = (!ids.is_empty()).then(|| ids.join(" "));
                let outcome = if ids.is_empty() { "nothing" } else { "pulled" };
                self.audit_call(agent, "recv", None, None, outcome, detail.as_deref());
                Ok(answer)
            }
            Ok(Recvd::HungUp) => {
                self.audit_call(agent, "recv", None, None, "hung_up", None);
                Err(RecvRefused::HungUp.into())
            }
            Err(e) => {
                self.audit_call(agent, "recv", None, None, "refused", Some(&e.to_string()));
                Err(e)
            }
        }
    }

    /// After the answer of a call that carried `handover` was written (`written`) or could not
    /// be: what its recv pulled is the turn's, or goes back to the queue (audited), retried
    /// while the store fails (left in flight, the turn's ack would mark it done unseen).
    pub(super) async fn hand_over(&self, agent: &AgentName, handover: &Handover, written: bool) {
        let Some(Held { turn, taken }) = handover.take() else {
            return;
        };
        if handed(written, taken.len()) != Handed::PutBack {
            return;
        }
        let ids: Vec<&str> = taken.iter().map(|i| i.event_id.as_str()).collect();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.store().put_back(turn, &taken) {
                Ok(back) => {
                    tracing::warn!(%agent, turn, pulled = taken.len(), back, "recv answer not written; its messages are back in the queue");
                    self.audit_call(agent, "recv", None, None, "put_back", Some(&ids.join(" ")));
                    self.agents().get(agent).inspect(|e| e.notify.notify_one());
                    return;
                }
                Err(e) => {
                    tracing::error!(%agent, turn, error = %format!("{e:#}"), "cannot put back what a recv pulled; retrying");
                    tokio::select! {
                        _ = self.cancel().cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// The answer and the event ids pulled, or that the caller hung up first.
    async fn recv(&self, agent: &AgentName, v: &Value) -> Result<Recvd, ToolError> {
        let a: RecvArgs = args("recv", v)?;
        let bounds = check_recv(a.wait_secs, a.max)?;
        let entry = self
            .agents()
            .get(agent)
            .ok_or_else(|| RecvRefused::NoTurn(agent.clone()))?;
        let limits = PullLimits {
            max: bounds.max,
            max_bytes: MAX_PULL_BYTES,
            max_attempts: self.cfg().max_attempts,
        };
        // The turn is pinned, message and delivery, when the call starts: a wait that outlives
        // it (the harness died meanwhile) pulls nothing into the next turn or a re-run.
        let no_turn = || ToolError::from(RecvRefused::NoTurn(agent.clone()));
        let turn = entry
            .turn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|t| t.inbox_id)
            .ok_or_else(no_turn)?;
        let attempt = self
            .store()
            .turn_attempt(agent.as_str(), turn)
            .map_err(ToolError::Store)?
            .ok_or_else(no_turn)?;
        // A wake-up this call took from the agent's queue is handed on when it returns: the
        // delivery loop waits on the same `Notify`, and must not miss a message because a recv
        // that ended without it was woken instead.
        let mut woken = PassOn {
            notify: &entry.notify,
            took: false,
        };
        let handover = Handover::current();
        let hung_up = handover
            .as_ref()
            .map_or_else(Default::default, |h| h.hung_up.clone());
        let deadline = tokio::time::Instant::now() + bounds.wait;
        loop {
            if recv_next(hung_up.is_cancelled(), None, false) == RecvNext::HungUp {
                return Ok(Recvd::HungUp);
            }
            // Listening before looking: a message queued between the look and the wait still
            // wakes it (`notify_one` keeps a permit when nobody listens).
            let notified = entry.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (core, name) = (self.clone(), agent.to_string());
            let pull = tokio::task::spawn_blocking(move || {
                core.store().pull_into_turn(&name, turn, attempt, &limits)
            })
            .await
            .map_err(|e| ToolError::Store(e.into()))?
            .map_err(ToolError::Store)?;
            let Pull::Pulled {
                taken,
                dead,
                waiting,
            } = pull
            else {
                return Err(no_turn());
            };
            for d in &dead {
                self.dead_letter_notice(d).await;
            }
            let timed_out = tokio::time::Instant::now() >= deadline;
            match recv_next(hung_up.is_cancelled(), Some(taken.len()), timed_out) {
                RecvNext::Answer => {
                    if !taken.is_empty() {
                        tracing::info!(%agent, turn, pulled = taken.len(), waiting, "recv pulled messages into the turn");
                        // Held with the call until its answer is written (`hand_over`).
                        if let Some(h) = &handover {
                            h.hold(turn, &taken);
                        }
                    }
                    let ids = taken.iter().map(|i| i.event_id.clone()).collect();
                    return Ok(Recvd::Answer(self.recv_answer(&taken, waiting), ids));
                }
                RecvNext::HungUp => return Ok(Recvd::HungUp),
                RecvNext::Pull | RecvNext::Wait => {}
            }
            tokio::select! {
                _ = &mut notified => woken.took = true,
                _ = tokio::time::sleep_until(deadline) => {}
                _ = hung_up.cancelled() => {}
                _ = self.cancel().cancelled() => return Err(RecvRefused::Stopping.into()),
            }
        }
    }

    /// What a finished turn of `turn` read up to in its room: the newest message it pulled
    /// from there, else its own (the read receipt names it; receipts are cumulative).
    pub(super) fn read_up_to(&self, turn: InboxItem) -> InboxItem {
        match self.store().last_pulled_done(turn.id, &turn.room_id) {
            Ok(pulled) => pulled.unwrap_or(turn),
            Err(e) => {
                tracing::warn!(agent = %turn.agent, error = %format!("{e:#}"), "cannot tell what the turn pulled; marking its own message read");
                turn
            }
        }
    }

    /// The pulled messages as the brain reads them, every string through the secret filter.
    fn recv_answer(&self, taken: &[InboxItem], waiting: u64) -> String {
        let messages: Vec<Value> = taken
            .iter()
            .map(|item| {
                let msg = super::session::message_of(item);
                let text = crate::brain::prompt_of(&msg);
                let mut v = serde_json::to_value(&msg).expect("a message serialises");
                v["text"] = Value::String(text);
                v
            })
            .collect();
        let mut answer = json!({ "messages": messages, "waiting": waiting });
        self.shown_json(&mut answer);
        serde_json::to_string(&answer).expect("json serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_recv_may_ask() {
        struct Case {
            name: &'static str,
            wait_secs: Option<u64>,
            max: Option<u64>,
            want: Result<(u64, usize), &'static str>,
        }
        let cases = [
            Case {
                name: "the defaults: no wait, eight",
                wait_secs: None,
                max: None,
                want: Ok((0, 8)),
            },
            Case {
                name: "the largest",
                wait_secs: Some(180),
                max: Some(32),
                want: Ok((180, 32)),
            },
            Case {
                name: "one message",
                wait_secs: Some(5),
                max: Some(1),
                want: Ok((5, 1)),
            },
            Case {
                name: "waiting too long",
                wait_secs: Some(181),
                max: None,
                want: Err("wait_secs must be 0 to 180, not 181"),
            },
            Case {
                name: "too many",
                wait_secs: None,
                max: Some(33),
                want: Err("max must be 1 to 32, not 33"),
            },
            Case {
                name: "none at all is no pull",
                wait_secs: None,
                max: Some(0),
                want: Err("max must be 1 to 32, not 0"),
            },
        ];
        for c in cases {
            let got = check_recv(c.wait_secs, c.max)
                .map(|b| (b.wait.as_secs(), b.max))
                .map_err(|e| e.to_string());
            assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
        }
    }

    #[test]
    fn what_a_recv_does_next() {
        struct Case {
            name: &'static str,
            hung_up: bool,
            pulled: Option<usize>,
            timed_out: bool,
            want: RecvNext,
        }
        let cases = [
            Case {
                name: "a first look",
                hung_up: false,
                pulled: None,
                timed_out: false,
                want: RecvNext::Pull,
            },
            Case {
                name: "a caller gone before the pull pulls nothing",
                hung_up: true,
                pulled: None,
                timed_out: false,
                want: RecvNext::HungUp,
            },
            Case {
                name: "something pulled is answered",
                hung_up: false,
                pulled: Some(2),
                timed_out: false,
                want: RecvNext::Answer,
            },
            Case {
                name: "pulled as the caller left: answered, put back if not written",
                hung_up: true,
                pulled: Some(1),
                timed_out: false,
                want: RecvNext::Answer,
            },
            Case {
                name: "nothing yet: wait",
                hung_up: false,
                pulled: Some(0),
                timed_out: false,
                want: RecvNext::Wait,
            },
            Case {
                name: "nothing by the deadline: the empty answer",
                hung_up: false,
                pulled: Some(0),
                timed_out: true,
                want: RecvNext::Answer,
            },
            Case {
                name: "nothing, and the caller is gone: end",
                hung_up: true,
                pulled: Some(0),
                timed_out: false,
                want: RecvNext::HungUp,
            },
        ];
        for c in cases {
            assert_eq!(
                recv_next(c.hung_up, c.pulled, c.timed_out),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn what_becomes_of_a_pull() {
        struct Case {
            name: &'static str,
            written: bool,
            pulled: usize,
            want: Handed,
        }
        let cases = [
            Case {
                name: "written: the turn's",
                written: true,
                pulled: 3,
                want: Handed::Delivered,
            },
            Case {
                name: "not written: back to the queue",
                written: false,
                pulled: 1,
                want: Handed::PutBack,
            },
            Case {
                name: "nothing pulled, written",
                written: true,
                pulled: 0,
                want: Handed::Nothing,
            },
            Case {
                name: "nothing pulled, not written",
                written: false,
                pulled: 0,
                want: Handed::Nothing,
            },
        ];
        for c in cases {
            assert_eq!(handed(c.written, c.pulled), c.want, "{}", c.name);
        }
    }

    #[tokio::test]
    async fn a_call_sees_its_own_connection_only() {
        assert!(
            Handover::current().is_none(),
            "no connection outside a call"
        );
        let h = Handover::default();
        let seen = h
            .scope(async {
                let mine = Handover::current().expect("the call's connection");
                h.hang_up();
                mine.hung_up.is_cancelled()
            })
            .await;
        assert!(seen, "the call sees its connection hang up");
    }

    #[test]
    fn the_schema_says_the_bounds() {
        let spec = catalog().remove(0);
        assert_eq!(spec.name, "recv");
        assert!(!spec.managers_only, "every agent may pull its own inbox");
        let p = &spec.input_schema["properties"];
        assert_eq!(p["wait_secs"]["maximum"], MAX_WAIT_SECS);
        assert_eq!(p["max"]["maximum"], MAX_PULL);
        assert!(spec.input_schema.get("required").is_none(), "both optional");
    }

    #[test]
    fn a_wake_up_taken_is_handed_on() {
        use std::future::Future;
        // Whether a wait on `notify` would end at once (a wake-up is stored for it).
        let ready = |notify: &tokio::sync::Notify| {
            let mut wait = std::pin::pin!(notify.notified());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            wait.as_mut().poll(&mut cx).is_ready()
        };
        let notify = tokio::sync::Notify::new();
        drop(PassOn {
            notify: &notify,
            took: false,
        });
        assert!(!ready(&notify), "nothing taken, nothing handed on");
        drop(PassOn {
            notify: &notify,
            took: true,
        });
        assert!(ready(&notify), "the delivery loop is woken in its place");
    }

    #[test]
    fn arguments_are_checked() {
        assert!(args::<RecvArgs>("recv", &Value::Null).is_ok());
        assert!(args::<RecvArgs>("recv", &json!({"wait_secs": 3, "max": 2})).is_ok());
        assert!(args::<RecvArgs>("recv", &json!({"wait_secs": -1})).is_err());
        assert!(args::<RecvArgs>("recv", &json!({"max": "all"})).is_err());
        assert!(args::<RecvArgs>("recv", &json!({"timeout": 3})).is_err());
    }
}
