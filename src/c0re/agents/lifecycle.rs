//! `stop(agent)`, `start(agent)`, `restart(agent)`: a manager's hands on another agent's
//! harness, without approval. Executed by the core: what is wanted is recorded in the store
//! (so a stopped agent stays stopped across a restart of hive-c0re) and handed to the agent's
//! supervisor through its [`Control`]; the supervisor stops the harness as it does at shutdown
//! (SIGTERM, then its grace) and starts it again on `start`. Messages to a stopped agent wait in
//! its queue and are delivered once it runs again.
//!
//! What a call does is a pure decision ([`decide`], the rules in its doc, a table test below);
//! every call is in the audit, refused ones too; the answer says what happened and how many
//! messages wait.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::web::actions::replies::Reply;
use crate::store::{AgentState, Wanted};

use super::tool_spec::{ToolError, ToolSpec, args};

/// How long `stop` waits for the harness to exit: the supervisor's grace and a little more.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// The tools of this module (all managers only).
pub fn catalog() -> Vec<ToolSpec> {
    let schema = json!({
        "type": "object",
        "properties": { "agent": { "type": "string" } },
        "required": ["agent"],
        "additionalProperties": false
    });
    vec![
        ToolSpec {
            name: "stop",
            description: "Managers only: stop `agent`'s harness (it finishes its turn first) and keep it stopped, also across restarts of the core, until `start`. Its messages wait in its queue. You cannot stop yourself.",
            input_schema: schema.clone(),
            managers_only: true,
        },
        ToolSpec {
            name: "start",
            description: "Managers only: start `agent`'s harness again: a stopped agent, or one that crashed too often or could not start. Its queued messages are delivered.",
            input_schema: schema.clone(),
            managers_only: true,
        },
        ToolSpec {
            name: "restart",
            description: "Managers only: stop `agent`'s harness (after its turn) and start it afresh, its crash history forgotten; a stopped agent is started. You cannot restart yourself.",
            input_schema: schema,
            managers_only: true,
        },
    ]
}

/// One of the lifecycle tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    Start,
    Restart,
}

impl Action {
    /// The tool named `tool`, if it is one of these.
    pub fn of_tool(tool: &str) -> Option<Self> {
        match tool {
            "stop" => Some(Action::Stop),
            "start" => Some(Action::Start),
            "restart" => Some(Action::Restart),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
        }
    }
}

/// What is known about the target when a call is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The caller names itself.
    pub itself: bool,
    /// Someone else starts the hive's harnesses (`runtime = "external"`).
    pub external: bool,
    pub wanted: Wanted,
    /// The harness state the store records, if any.
    pub stored: Option<AgentState>,
}

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Record it stopped; the supervisor stops the harness and keeps it stopped.
    Stop,
    /// Record it running; the supervisor starts it.
    Start,
    /// It waits for a new config (a crash loop, a failed start, a refusal): start it again now.
    Wake,
    /// Stop the running harness after its turn and start it afresh, crash history forgotten.
    Restart,
    /// Nothing to do: it is already as asked.
    Already(Wanted),
}

/// Why a lifecycle call is refused (a non-manager is refused before, by the catalog's rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{agent} may not {action} itself: a stopped manager could never start again, and a restart would cut off the very turn that asks for it"
    )]
    Itself {
        agent: AgentName,
        action: &'static str,
    },
    #[error(
        "{agent}'s harness is started by someone else (runtime = \"external\" in hive.toml): the core cannot {action} it"
    )]
    External {
        agent: AgentName,
        action: &'static str,
    },
}

/// What `action` on `agent` does, from the [`Facts`]. The rules:
/// - a manager may not `stop` or `restart` itself (nobody could start it again; the turn asking
///   would be cut off and re-run); `start` of itself finds it running;
/// - under the external runtime the core starts no harness, so it cannot stop or start one;
/// - `stop`: a stopped agent stays as it is; any other is stopped (also one crash-looping);
/// - `start`: a stopped agent is started; one waiting for a new config (crash loop, failed start,
///   refused) is started again now; a running one (also one in a crash's backoff, which must
///   still count towards a crash loop) is left as it is;
/// - `restart`: a stopped agent is started; any other is stopped and started afresh.
pub fn decide(agent: &AgentName, action: Action, f: Facts) -> Result<Plan, Refusal> {
    let waits = matches!(
        f.stored,
        Some(AgentState::CrashLoop | AgentState::CannotStart | AgentState::Refused)
    );
    match action {
        Action::Stop | Action::Restart if f.itself => {
            return Err(Refusal::Itself {
                agent: agent.clone(),
                action: action.as_str(),
            });
        }
        _ if f.external => {
            return Err(Refusal::External {
                agent: agent.clone(),
                action: action.as_str(),
            });
        }
        _ => {}
    }
    Ok(match (action, f.wanted) {
        (Action::Stop, Wanted::Stopped) => Plan::Already(Wanted::Stopped),
        (Action::Stop, Wanted::Running) => Plan::Stop,
        (Action::Start | Action::Restart, Wanted::Stopped) => Plan::Start,
        (Action::Start, Wanted::Running) if waits => Plan::Wake,
        (Action::Start, Wanted::Running) => Plan::Already(Wanted::Running),
        (Action::Restart, Wanted::Running) => Plan::Restart,
    })
}

/// "no message waits", "1 message waits", "3 messages wait".
fn waiting(n: u64) -> String {
    match n {
        0 => "no message waits in its queue".into(),
        1 => "1 message waits in its queue".into(),
        n => format!("{n} messages wait in its queue"),
    }
}

/// The supervisor's side of the lifecycle tools, one per agent: what is wanted of its harness
/// (watched by its supervisor) and whether a harness process runs now.
pub struct Control {
    wanted: watch::Sender<Wanted>,
    alive: watch::Sender<bool>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            wanted: watch::Sender::new(Wanted::Running),
            alive: watch::Sender::new(false),
        }
    }
}

impl Control {
    pub fn wanted(&self) -> Wanted {
        *self.wanted.borrow()
    }

    /// Says what is wanted; the supervisor acts on it.
    pub fn set_wanted(&self, wanted: Wanted) {
        self.wanted.send_replace(wanted);
    }

    /// Returns once `wanted` is wanted (at once if it is now).
    pub async fn until_wanted(&self, wanted: Wanted) {
        let mut rx = self.wanted.subscribe();
        // The sender lives as long as `self`: an error cannot come while we borrow it.
        if rx.wait_for(|w| *w == wanted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether a harness process of the supervisor's runs.
    pub fn alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// The supervisor says whether a harness process runs.
    pub fn set_alive(&self, alive: bool) {
        self.alive.send_replace(alive);
    }

    /// Waits up to `timeout` until no harness process runs; false if one still does.
    pub async fn until_gone(&self, timeout: Duration) -> bool {
        let mut rx = self.alive.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|alive| !*alive)).await,
            Ok(Ok(_))
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentArg {
    agent: String,
}

/// Who asks for a lifecycle action: a manager agent (a tool call) or an operator (`!hive stop`
/// in `#hive-c0re`). Both go the same way; only who is recorded (and whether it names itself)
/// differs.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Manager(&'a AgentName),
    Operator(&'a ruma::UserId),
}

impl Actor<'_> {
    /// As written in the audit and in `agent_lifecycle.wanted_by`.
    pub fn as_str(&self) -> &str {
        match self {
            Actor::Manager(a) => a.as_str(),
            Actor::Operator(u) => u.as_str(),
        }
    }

    /// Whether the actor is `target` itself (an operator is never an agent).
    fn is(&self, target: &AgentName) -> bool {
        matches!(self, Actor::Manager(a) if *a == target)
    }
}

impl Core {
    /// `stop`, `start` or `restart` (`tool`) from manager `caller`; audited whatever happens.
    pub(super) async fn lifecycle_tool(
        &self,
        caller: &AgentName,
        tool: &str,
        v: &serde_json::Value,
    ) -> Result<String, ToolError> {
        let target = v.get("agent").and_then(serde_json::Value::as_str);
        let result = match Action::of_tool(tool) {
            None => Err(ToolError::NoTool(tool.to_owned())),
            Some(action) => match args::<AgentArg>(tool, v) {
                Ok(a) => {
                    self.run_lifecycle(Actor::Manager(caller), action, &a.agent)
                        .await
                }
                Err(e) => Err(e),
            },
        };
        self.audit_lifecycle(Actor::Manager(caller), tool, target, &result);
        result.map(|(_, text)| self.shown(&text))
    }

    /// `!hive stop|start|restart <agent>` from `operator`: the managers' decision and effects,
    /// audited with the operator as the actor. The answer (or why not) as the room may read it.
    pub async fn operator_lifecycle(
        &self,
        operator: &ruma::UserId,
        action: Action,
        agent: &str,
    ) -> Reply {
        let actor = Actor::Operator(operator);
        let result = self.run_lifecycle(actor, action, agent).await;
        self.audit_lifecycle(actor, action.as_str(), Some(agent), &result);
        let reply = lifecycle_reply(action, agent, &result);
        Reply {
            text: self.shown(&reply.text),
            ..reply
        }
    }

    fn audit_lifecycle(
        &self,
        actor: Actor<'_>,
        tool: &str,
        target: Option<&str>,
        result: &Result<(&'static str, String), ToolError>,
    ) {
        match result {
            Ok((outcome, text)) => {
                self.audit_by(actor.as_str(), tool, target, None, outcome, Some(text))
            }
            Err(e) => self.audit_by(
                actor.as_str(),
                tool,
                target,
                None,
                "refused",
                Some(&e.to_string()),
            ),
        }
    }

    /// Carries out one call; (the audit's outcome, the answer).
    async fn run_lifecycle(
        &self,
        actor: Actor<'_>,
        action: Action,
        agent: &str,
    ) -> Result<(&'static str, String), ToolError> {
        let name = self.agent_named(agent)?;
        let entry = self
            .agents()
            .get(&name)
            .ok_or_else(|| ToolError::Refused(format!("{name:?} is not an agent of this hive")))?;
        let stored = self
            .store()
            .agent_states()
            .map_err(ToolError::Store)?
            .into_iter()
            .find(|(n, _, _)| n == name.as_str())
            .and_then(|(_, s, _)| s.parse().ok());
        let facts = Facts {
            itself: actor.is(&name),
            external: self.cfg().runtime == crate::config::RuntimeKind::External,
            wanted: entry.control.wanted(),
            stored,
        };
        let plan = decide(&name, action, facts).map_err(|r| ToolError::Refused(r.to_string()))?;
        let want = |w: Wanted| -> Result<(), ToolError> {
            self.store()
                .set_wanted(name.as_str(), w, actor.as_str())
                .map_err(ToolError::Store)?;
            entry.control.set_wanted(w);
            Ok(())
        };
        let (outcome, said) = match plan {
            Plan::Stop => {
                want(Wanted::Stopped)?;
                if entry.control.until_gone(STOP_WAIT).await {
                    ("stopped", format!("stopped {name}"))
                } else {
                    (
                        "stopped",
                        format!("{name} is stopping (its harness has not exited yet)"),
                    )
                }
            }
            Plan::Start => {
                want(Wanted::Running)?;
                ("started", format!("starting {name}"))
            }
            Plan::Wake => {
                entry.restart.notify_one();
                let was = stored.map_or("waiting", AgentState::as_str);
                ("started", format!("starting {name} again (it was {was})"))
            }
            Plan::Restart => {
                entry.restart.notify_one();
                (
                    "restarted",
                    format!(
                        "restarting {name}: its harness finishes its turn, then starts afresh with its crash history forgotten"
                    ),
                )
            }
            Plan::Already(w) => ("unchanged", format!("{name} is already {}", w.as_str())),
        };
        let queued = self
            .store()
            .counts(name.as_str())
            .map_err(ToolError::Store)?;
        let after = match plan {
            Plan::Stop | Plan::Already(Wanted::Stopped) => " (delivered when it is started)",
            _ => "",
        };
        Ok((
            outcome,
            format!(
                "{said}; {}{after}",
                waiting(queued.pending + queued.inflight)
            ),
        ))
    }
}

/// The operator's answer to `!hive <action> <agent>` from its `result`: done when the agent's
/// state changed (or was asked to), not when it was refused or already so (`unchanged`).
pub fn lifecycle_reply(
    action: Action,
    agent: &str,
    result: &Result<(&'static str, String), ToolError>,
) -> Reply {
    match result {
        Ok(("unchanged", text)) => Reply::not_done(text.clone()),
        Ok((_, text)) => Reply::done(text.clone()),
        Err(e) => Reply::not_done(format!("cannot {} {agent}: {e}", action.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_lifecycle_call_does() {
        struct Case {
            name: &'static str,
            action: Action,
            itself: bool,
            external: bool,
            wanted: Wanted,
            stored: Option<AgentState>,
            want: Result<Plan, &'static str>,
        }
        let case = |name, action, wanted, stored, want| Case {
            name,
            action,
            itself: false,
            external: false,
            wanted,
            stored,
            want,
        };
        use Action::*;
        use AgentState as S;
        use Wanted::{Running, Stopped};
        let cases = [
            case(
                "stop a running agent",
                Stop,
                Running,
                Some(S::Connected),
                Ok(Plan::Stop),
            ),
            case(
                "stop a crash-looping agent",
                Stop,
                Running,
                Some(S::CrashLoop),
                Ok(Plan::Stop),
            ),
            case(
                "stop a stopped agent",
                Stop,
                Stopped,
                Some(S::Stopped),
                Ok(Plan::Already(Stopped)),
            ),
            case(
                "start a stopped agent",
                Start,
                Stopped,
                Some(S::Stopped),
                Ok(Plan::Start),
            ),
            case(
                // Its backoff runs out by itself; a start must not reset the crash history that
                // stops a crash loop (`restart` is the way to start afresh).
                "start one in a crash's backoff finds it running",
                Start,
                Running,
                Some(S::Crashed),
                Ok(Plan::Already(Wanted::Running)),
            ),
            case(
                "start a crash loop again",
                Start,
                Running,
                Some(S::CrashLoop),
                Ok(Plan::Wake),
            ),
            case(
                "start one that could not start",
                Start,
                Running,
                Some(S::CannotStart),
                Ok(Plan::Wake),
            ),
            case(
                "start a running agent",
                Start,
                Running,
                Some(S::Connected),
                Ok(Plan::Already(Running)),
            ),
            case(
                "start one never seen",
                Start,
                Running,
                None,
                Ok(Plan::Already(Running)),
            ),
            case(
                "restart a running agent",
                Restart,
                Running,
                Some(S::Connected),
                Ok(Plan::Restart),
            ),
            case(
                "restart a crash loop",
                Restart,
                Running,
                Some(S::CrashLoop),
                Ok(Plan::Restart),
            ),
            case(
                "restart a stopped agent starts it",
                Restart,
                Stopped,
                Some(S::Stopped),
                Ok(Plan::Start),
            ),
            Case {
                itself: true,
                ..case(
                    "a manager may not stop itself",
                    Stop,
                    Running,
                    Some(S::Connected),
                    Err(
                        "hm1nd may not stop itself: a stopped manager could never start again, and a restart would cut off the very turn that asks for it",
                    ),
                )
            },
            Case {
                itself: true,
                ..case(
                    "nor restart itself",
                    Restart,
                    Running,
                    Some(S::Connected),
                    Err(
                        "hm1nd may not restart itself: a stopped manager could never start again, and a restart would cut off the very turn that asks for it",
                    ),
                )
            },
            Case {
                itself: true,
                ..case(
                    "starting itself finds it running",
                    Start,
                    Running,
                    Some(S::Connected),
                    Ok(Plan::Already(Running)),
                )
            },
            Case {
                external: true,
                ..case(
                    "an external harness cannot be stopped",
                    Stop,
                    Running,
                    Some(S::Connected),
                    Err(
                        "hm1nd's harness is started by someone else (runtime = \"external\" in hive.toml): the core cannot stop it",
                    ),
                )
            },
            Case {
                external: true,
                ..case(
                    "nor started",
                    Start,
                    Running,
                    Some(S::Disconnected),
                    Err(
                        "hm1nd's harness is started by someone else (runtime = \"external\" in hive.toml): the core cannot start it",
                    ),
                )
            },
        ];
        let hm1nd = AgentName::parse("hm1nd").expect("a valid name");
        for c in cases {
            let got = decide(
                &hm1nd,
                c.action,
                Facts {
                    itself: c.itself,
                    external: c.external,
                    wanted: c.wanted,
                    stored: c.stored,
                },
            )
            .map_err(|e| e.to_string());
            assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
        }
    }

    #[test]
    fn the_answer_counts_what_waits() {
        assert_eq!(waiting(0), "no message waits in its queue");
        assert_eq!(waiting(1), "1 message waits in its queue");
        assert_eq!(waiting(2), "2 messages wait in its queue");
    }

    #[tokio::test]
    async fn control_wakes_the_supervisor_and_reports_the_harness_gone() {
        let c = Control::default();
        assert_eq!(c.wanted(), Wanted::Running);
        c.until_wanted(Wanted::Running).await;
        // The waiter is waiting before the change comes.
        let change = async {
            tokio::task::yield_now().await;
            c.set_wanted(Wanted::Stopped);
        };
        let waiter = tokio::time::timeout(Duration::from_secs(1), c.until_wanted(Wanted::Stopped));
        let ((), woken) = tokio::join!(change, waiter);
        woken.expect("woken by the change");
        c.set_alive(true);
        assert!(!c.until_gone(Duration::from_millis(20)).await, "still runs");
        c.set_alive(false);
        assert!(c.until_gone(Duration::from_millis(20)).await);
    }
}
