//! Helper events for managers: what happened to an agent that a manager may have to act on,
//! delivered to each manager's inbox as a core event (`org.hyperhive.event`, which only the
//! core can set: see `routing.rs`) through the outbox, so it is said once and never lost.
//!
//! | kind | when | data |
//! |---|---|---|
//! | `container_crash` | an agent's harness exited unexpectedly | `agent`, `status`, `sha`, `last_lines` (secrets redacted) |
//! | `config_applied` | an approved config took effect (a spawn too) | `agent`, `sha`, `deploy`, `approval_id`, `spawned` |
//! | `dead_letter` | a message was given up after its last delivery | `agent`, `event_id`, `sender`, `attempts` |
//!
//! (`approval_outcome` goes to the requesting agent only: `approvals/mod.rs`.)
//!
//! Who is told is [`audience`], a pure function: every manager but the agent the event is
//! about (a crashed manager cannot read its own crash; a manager's own dead letter told to
//! itself could fail the same way again). A dead letter of a `dead_letter` event is not told
//! again ([`tells_dead_letter`]): two managers that both fail on it would bounce it forever.

use serde_json::{Value, json};

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::store::InboxItem;

/// One helper event, with what it says.
#[derive(Debug, Clone, PartialEq)]
pub enum ManagerEvent {
    Crash {
        agent: AgentName,
        status: String,
        sha: String,
        last_lines: String,
    },
    Applied {
        agent: AgentName,
        sha: String,
        deploy: i64,
        approval_id: i64,
        spawned: bool,
    },
    DeadLetter {
        agent: AgentName,
        event_id: String,
        sender: String,
        attempts: u32,
        inbox_id: i64,
    },
}

impl ManagerEvent {
    /// The event's kind, as the harness sees it in `event.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Crash { .. } => "container_crash",
            Self::Applied { .. } => "config_applied",
            Self::DeadLetter { .. } => "dead_letter",
        }
    }

    /// The agent it is about.
    pub fn agent(&self) -> &AgentName {
        match self {
            Self::Crash { agent, .. }
            | Self::Applied { agent, .. }
            | Self::DeadLetter { agent, .. } => agent,
        }
    }

    /// The message's text (a person reading the manager's room reads this) and its data.
    pub fn render(&self) -> (String, Value) {
        match self {
            Self::Crash {
                agent,
                status,
                sha,
                last_lines,
            } => (
                format!(
                    "container_crash: **{agent}** exited ({status}) on config `{sha}`. Last log lines:\n```\n{last_lines}\n```"
                ),
                json!({ "agent": agent.as_str(), "status": status, "sha": sha, "last_lines": last_lines }),
            ),
            Self::Applied {
                agent,
                sha,
                deploy,
                approval_id,
                spawned,
            } => (
                format!(
                    "config_applied: **{agent}** {} config `{sha}` as deploy/{deploy} (request #{approval_id}).",
                    if *spawned { "was spawned on" } else { "runs" }
                ),
                json!({ "agent": agent.as_str(), "sha": sha, "deploy": deploy, "approval_id": approval_id, "spawned": spawned }),
            ),
            Self::DeadLetter {
                agent,
                event_id,
                sender,
                attempts,
                ..
            } => (
                format!(
                    "dead_letter: message {event_id} from {sender} to **{agent}** was given up after {attempts} deliveries."
                ),
                json!({ "agent": agent.as_str(), "event_id": event_id, "sender": sender, "attempts": attempts }),
            ),
        }
    }

    /// The post's transaction id for `manager`: the same event is one post, however often it
    /// is recorded (an apply finished again after a restart; a dead letter seen twice). A
    /// crash has no key of its own: `nonce` tells crashes apart.
    fn txn(&self, manager: &AgentName, nonce: &str) -> String {
        match self {
            Self::Crash { .. } => format!("hh-event-crash-{manager}-{nonce}"),
            Self::Applied { approval_id, .. } => {
                format!("hh-event-applied-{manager}-{approval_id}")
            }
            Self::DeadLetter { inbox_id, .. } => format!("hh-event-dead-{manager}-{inbox_id}"),
        }
    }
}

/// Who is told about an event concerning `about`: every manager but `about` itself.
pub fn audience(managers: &[AgentName], about: &AgentName) -> Vec<AgentName> {
    managers.iter().filter(|m| *m != about).cloned().collect()
}

/// Whether a dead-lettered message is told to the managers: not when it was itself a
/// `dead_letter` event (`hive_event` is the dead message's core event, JSON).
pub fn tells_dead_letter(hive_event: Option<&str>) -> bool {
    let kind = hive_event
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
        .and_then(|v| v.get("kind").and_then(Value::as_str).map(str::to_owned));
    kind.as_deref() != Some("dead_letter")
}

impl Core {
    /// Records `event` for every manager in its [`audience`] (through the outbox: once, not
    /// lost) and wakes the outbox. A store that cannot record it is logged.
    pub fn tell_managers(&self, event: &ManagerEvent) {
        let (text, data) = event.render();
        let nonce = crate::c0re::registration::random_secret(12);
        let mut owed = false;
        for m in audience(&self.cfg().managers, event.agent()) {
            let Some(post) = self.core_event(
                m.as_str(),
                event.kind(),
                &text,
                data.clone(),
                &event.txn(&m, &nonce),
            ) else {
                continue;
            };
            match self.store().enqueue_post(&post) {
                Ok(()) => owed = true,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), manager = %m, kind = event.kind(), "could not record a manager event")
                }
            }
        }
        if owed {
            self.wake_outbox();
        }
    }

    /// An agent's process exited unexpectedly: a `container_crash` for each manager, with the
    /// log's last lines as an agent may read them (secrets redacted, the data dir left out).
    pub async fn report_crash(&self, agent: &AgentName, status: &str, last_lines: &str) {
        let sha = match crate::configrepo::ConfigRepo::new(self.data_dir(), agent).current() {
            Some((_, sha)) => sha,
            None => {
                tracing::warn!(agent = %agent, "the crashed agent has no current config commit");
                String::new()
            }
        };
        let data = self.data_dir().display().to_string();
        self.tell_managers(&ManagerEvent::Crash {
            agent: agent.clone(),
            status: status.to_owned(),
            sha,
            last_lines: self
                .secrets()
                .redact(&last_lines.replace(&data, "<data dir>")),
        });
    }

    /// A message was dead-lettered: the operator is told in `#hive-c0re`, the managers by a
    /// `dead_letter` event (unless it was one itself: [`tells_dead_letter`]).
    pub async fn dead_letter_notice(&self, item: &InboxItem) {
        tracing::warn!(agent = %item.agent, event_id = %item.event_id, attempts = item.attempts, "message dead-lettered");
        let text = format!(
            "☠️ dead letter: message {} from {} to **{}** was given up after {} deliveries. It stays in the queue database for inspection.",
            item.event_id, item.sender, item.agent, item.attempts
        );
        self.notice(None, &text).await;
        if let Ok(agent) = AgentName::parse(&item.agent)
            && tells_dead_letter(item.hive_event.as_deref())
        {
            self.tell_managers(&ManagerEvent::DeadLetter {
                agent,
                event_id: item.event_id.clone(),
                sender: item.sender.clone(),
                attempts: item.attempts,
                inbox_id: item.id,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> AgentName {
        AgentName::parse(s).expect("a valid name")
    }

    #[test]
    fn who_is_told() {
        struct Case {
            name: &'static str,
            managers: Vec<AgentName>,
            about: AgentName,
            want: Vec<AgentName>,
        }
        let cases = [
            Case {
                name: "the manager about a worker",
                managers: vec![n("hm1nd")],
                about: n("echo"),
                want: vec![n("hm1nd")],
            },
            Case {
                name: "a manager is not told about itself",
                managers: vec![n("hm1nd")],
                about: n("hm1nd"),
                want: vec![],
            },
            Case {
                name: "the other managers are told about one of them",
                managers: vec![n("hm1nd"), n("boss"), n("chief")],
                about: n("boss"),
                want: vec![n("hm1nd"), n("chief")],
            },
            Case {
                name: "a hive without managers tells no one",
                managers: vec![],
                about: n("echo"),
                want: vec![],
            },
        ];
        for c in cases {
            assert_eq!(audience(&c.managers, &c.about), c.want, "{}", c.name);
        }
    }

    #[test]
    fn which_dead_letters_are_told() {
        struct Case {
            name: &'static str,
            hive_event: Option<&'static str>,
            want: bool,
        }
        let cases = [
            Case {
                name: "a person's message",
                hive_event: None,
                want: true,
            },
            Case {
                name: "a crash report",
                hive_event: Some(r#"{"kind":"container_crash","agent":"echo"}"#),
                want: true,
            },
            Case {
                name: "a dead letter about a dead letter is not told again",
                hive_event: Some(r#"{"kind":"dead_letter","agent":"echo"}"#),
                want: false,
            },
            Case {
                name: "an event that does not parse is told (it is no dead letter event)",
                hive_event: Some("{not json"),
                want: true,
            },
        ];
        for c in cases {
            assert_eq!(tells_dead_letter(c.hive_event), c.want, "{}", c.name);
        }
    }

    #[test]
    fn what_each_event_says() {
        let applied = ManagerEvent::Applied {
            agent: n("echo"),
            sha: "a".repeat(40),
            deploy: 3,
            approval_id: 7,
            spawned: false,
        };
        let (text, data) = applied.render();
        assert!(
            text.starts_with("config_applied: **echo** runs config"),
            "{text}"
        );
        assert!(text.contains("deploy/3 (request #7)"), "{text}");
        assert_eq!(data["deploy"], 3);
        assert_eq!(data["sha"], "a".repeat(40));
        let dead = ManagerEvent::DeadLetter {
            agent: n("echo"),
            event_id: "$e".into(),
            sender: "@op:x".into(),
            attempts: 5,
            inbox_id: 9,
        };
        let (text, data) = dead.render();
        assert!(
            text.starts_with("dead_letter: message $e from @op:x"),
            "{text}"
        );
        assert_eq!(data["attempts"], 5);
        // The same event is one post per manager; crashes are told apart by their nonce.
        assert_eq!(applied.txn(&n("hm1nd"), "x"), applied.txn(&n("hm1nd"), "y"));
        assert_ne!(applied.txn(&n("hm1nd"), "x"), applied.txn(&n("boss"), "x"));
        assert_eq!(dead.txn(&n("hm1nd"), "x"), "hh-event-dead-hm1nd-9");
        let crash = ManagerEvent::Crash {
            agent: n("echo"),
            status: "exit status 1".into(),
            sha: String::new(),
            last_lines: "boom".into(),
        };
        assert_ne!(crash.txn(&n("hm1nd"), "x"), crash.txn(&n("hm1nd"), "y"));
        assert_eq!(crash.kind(), "container_crash");
    }
}
