//! What a console form asks for, and what the operator's account sends for it: pure functions
//! over the path, the form's fields and the facts the handler gathered (the request or
//! question row, the rooms). The handler sends what [`plan`] answers and nothing else.
//!
//! Rules:
//! - the path names the verb and its target; a request or question id is a positive integer,
//!   an agent name is [`AgentName::parse`]d; anything else is refused before it touches the
//!   store ([`parse`]);
//! - approve: a ✅ reaction on the request's own event in `#hive-approvals`, only while the
//!   request is `pending` (a confirming purge wants its `purge <name>` reply instead);
//! - deny: a ❌ on it, while it is `pending` or `confirming` (the core denies a purge waiting
//!   for its confirmation too). Those are the keys the core counts (`routing::verdict_of`);
//! - purge: a reply `purge <name>` in the request's thread, only for a purge in `confirming`;
//! - answer: `option` (1-based) is the option's keycap reaction on the question's event
//!   (`routing::keycap`, 1️⃣ … 9️⃣, an option the question has); else a non-empty `text` is a
//!   reply in the question's thread; only while the question is `pending`;
//! - say: a non-empty `text` as a message in the agent's inbox;
//! - stop, start, restart, cancel: `!hive <verb> <agent>` in `#hive-c0re`; its outcome is the
//!   core's reply;
//! - compact, new-session: `!compact` / `!new-session` in the agent's inbox;
//! - destroy: a destroy request filed as `hive kept destroy` files it (`why` its summary);
//! - a request or question not posted yet (no event) cannot be reacted to: refused;
//! - the same action twice within [`WINDOW`] (a double click) is sent once ([`first_in_window`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ruma::OwnedRoomId;

use crate::agent_spec::AgentName;
use crate::c0re::approvals::decide::phrase;
use crate::c0re::routing::keycap;
use crate::store::{Approval, ApprovalKind, ApprovalState, Question, QuestionState, Verdict};

/// Identical actions within this long are one (a double-clicked form).
pub const WINDOW: Duration = Duration::from_secs(5);

/// A lifecycle command for the core (`!hive <verb> <agent>` in `#hive-c0re`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Stop,
    Start,
    Restart,
    Cancel,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Restart => "restart",
            Self::Cancel => "cancel",
        }
    }
}

/// A control message for an agent's brain, written in its inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Turn {
    Compact,
    NewSession,
}

impl Turn {
    /// The line the core reads in the inbox (`turn_control::decide`).
    pub fn line(self) -> &'static str {
        match self {
            Self::Compact => "!compact",
            Self::NewSession => "!new-session",
        }
    }
}

/// How a question is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Option `n`, 1-based, as the form numbers them.
    Option(usize),
    Text(String),
}

/// One form's request, parsed from its path and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Vote {
        id: i64,
        verdict: Verdict,
    },
    Purge {
        id: i64,
    },
    Answer {
        id: i64,
        answer: Answer,
    },
    Say {
        agent: AgentName,
        text: String,
    },
    Command {
        command: Command,
        agent: AgentName,
    },
    Turn {
        turn: Turn,
        agent: AgentName,
    },
    Destroy {
        agent: AgentName,
        why: Option<String>,
    },
}

impl Act {
    /// The verb as the path has it (the audit's `web <verb>`).
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Vote {
                verdict: Verdict::Approve,
                ..
            } => "approve",
            Self::Vote {
                verdict: Verdict::Deny,
                ..
            } => "deny",
            Self::Purge { .. } => "purge",
            Self::Answer { .. } => "answer",
            Self::Say { .. } => "say",
            Self::Command { command, .. } => command.as_str(),
            Self::Turn {
                turn: Turn::Compact,
                ..
            } => "compact",
            Self::Turn {
                turn: Turn::NewSession,
                ..
            } => "new-session",
            Self::Destroy { .. } => "destroy",
        }
    }
}

/// The fields a form may carry (the `csrf` field is the auth layer's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub option: Option<String>,
    pub text: Option<String>,
    pub why: Option<String>,
}

impl Fields {
    /// From an urlencoded body; unknown fields are ignored, a repeated one keeps its last value.
    pub fn from_urlencoded(body: &[u8]) -> Self {
        let mut f = Self::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let slot = match k.as_ref() {
                "option" => &mut f.option,
                "text" => &mut f.text,
                "why" => &mut f.why,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        f
    }
}

/// Why a form's action is not taken (its toast, as written here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0:?} is not something the console does")]
    UnknownVerb(String),
    #[error("{0:?} is not a request or question number")]
    BadId(String),
    #[error("{0:?} is not an agent name")]
    BadAgent(String),
    #[error("{0} is not an agent of this hive")]
    UnknownAgent(AgentName),
    #[error("{0:?} is not an option number")]
    BadOption(String),
    #[error("nothing to send: the text is empty")]
    Empty,
    #[error("there is no request #{0}")]
    NoRequest(i64),
    #[error("request #{id} is {state}: there is nothing to {verb}")]
    Closed {
        id: i64,
        state: ApprovalState,
        verb: &'static str,
    },
    #[error(
        "request #{0} waits for its confirmation: confirm the purge instead of approving again"
    )]
    Confirming(i64),
    #[error("request #{id} is a {kind} request, not a purge")]
    NotAPurge { id: i64, kind: ApprovalKind },
    #[error("request #{id} is {state}: a purge is confirmed only after its ✅ (confirming)")]
    NotConfirming { id: i64, state: ApprovalState },
    #[error("question #{0} is not open (answered, expired or never asked)")]
    NoQuestion(i64),
    #[error("question #{id} is {state}: it takes no answer")]
    QuestionClosed { id: i64, state: QuestionState },
    #[error("question #{id} has {count} options: there is no option {option}")]
    NoOption {
        id: i64,
        option: usize,
        count: usize,
    },
    #[error("{0} is not posted in its room yet: try again in a moment")]
    NotPosted(String),
    #[error("the hive has no {0} room yet")]
    NoRoom(&'static str),
    #[error("the same {0} was sent a moment ago")]
    Twice(&'static str),
}

/// Reads a form's verb, target and fields into an [`Act`] (module doc, first rule).
pub fn parse(verb: &str, target: &str, fields: &Fields) -> Result<Act, Refused> {
    let id = || match target.parse::<i64>() {
        Ok(n) if n > 0 && !target.starts_with('+') => Ok(n),
        _ => Err(Refused::BadId(target.to_owned())),
    };
    let agent = || AgentName::parse(target).map_err(|_| Refused::BadAgent(target.to_owned()));
    let text = |t: &Option<String>| {
        t.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    Ok(match verb {
        "approve" => Act::Vote {
            id: id()?,
            verdict: Verdict::Approve,
        },
        "deny" => Act::Vote {
            id: id()?,
            verdict: Verdict::Deny,
        },
        "purge" => Act::Purge { id: id()? },
        "answer" => {
            let id = id()?;
            let option = fields.option.as_deref().map(str::trim).unwrap_or("");
            let answer = if !option.is_empty() {
                match option.parse::<usize>() {
                    Ok(n) if n >= 1 && !option.starts_with('+') => Answer::Option(n),
                    _ => return Err(Refused::BadOption(option.to_owned())),
                }
            } else {
                Answer::Text(text(&fields.text).ok_or(Refused::Empty)?)
            };
            Act::Answer { id, answer }
        }
        "say" => Act::Say {
            agent: agent()?,
            text: text(&fields.text).ok_or(Refused::Empty)?,
        },
        "stop" | "start" | "restart" | "cancel" => Act::Command {
            command: match verb {
                "stop" => Command::Stop,
                "start" => Command::Start,
                "restart" => Command::Restart,
                _ => Command::Cancel,
            },
            agent: agent()?,
        },
        "compact" => Act::Turn {
            turn: Turn::Compact,
            agent: agent()?,
        },
        "new-session" => Act::Turn {
            turn: Turn::NewSession,
            agent: agent()?,
        },
        "destroy" => Act::Destroy {
            agent: agent()?,
            why: text(&fields.why),
        },
        other => return Err(Refused::UnknownVerb(other.to_owned())),
    })
}

/// What the handler found for an act.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// The request a vote or purge names (`None`: no such id).
    pub approval: Option<&'a Approval>,
    /// The question an answer names (`None`: no such id).
    pub question: Option<&'a Question>,
    pub approvals_room: Option<OwnedRoomId>,
    pub control_room: Option<OwnedRoomId>,
    /// The named agent's inbox (`None`: no such room).
    pub inbox: Option<OwnedRoomId>,
    /// The named agent is in the hive's registry.
    pub agent_known: bool,
}

/// What the operator's account does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A reaction `key` on `event` in `room`.
    React {
        room: OwnedRoomId,
        event: String,
        key: String,
    },
    /// A reply `body` in the thread of `root`.
    Reply {
        room: OwnedRoomId,
        root: String,
        body: String,
    },
    /// A message `body` in `room` (an inbox, or `#hive-c0re` for a command).
    Message {
        room: OwnedRoomId,
        body: String,
        /// It is a `!hive` command: wait for the core's reply.
        command: bool,
    },
    /// File a destroy request for `agent`.
    FileDestroy { agent: AgentName, summary: String },
}

/// What `act` sends, given `f` (module doc).
pub fn plan(act: &Act, f: &Facts<'_>) -> Result<Plan, Refused> {
    let approvals = || f.approvals_room.clone().ok_or(Refused::NoRoom("approvals"));
    let inbox = |agent: &AgentName| {
        if !f.agent_known {
            return Err(Refused::UnknownAgent(agent.clone()));
        }
        f.inbox.clone().ok_or(Refused::NoRoom("agent inbox"))
    };
    let posted = |a: &Approval| {
        a.request_event
            .clone()
            .ok_or_else(|| Refused::NotPosted(format!("request #{}", a.id)))
    };
    match act {
        Act::Vote { id, verdict } => {
            let a = f.approval.ok_or(Refused::NoRequest(*id))?;
            let (open, verb, key) = match verdict {
                Verdict::Approve => (a.state == ApprovalState::Pending, "approve", "✅"),
                Verdict::Deny => (
                    matches!(a.state, ApprovalState::Pending | ApprovalState::Confirming),
                    "deny",
                    "❌",
                ),
            };
            if *verdict == Verdict::Approve && a.state == ApprovalState::Confirming {
                return Err(Refused::Confirming(a.id));
            }
            if !open {
                return Err(Refused::Closed {
                    id: a.id,
                    state: a.state,
                    verb,
                });
            }
            Ok(Plan::React {
                room: approvals()?,
                event: posted(a)?,
                key: key.to_owned(),
            })
        }
        Act::Purge { id } => {
            let a = f.approval.ok_or(Refused::NoRequest(*id))?;
            if a.kind != ApprovalKind::Purge {
                return Err(Refused::NotAPurge {
                    id: a.id,
                    kind: a.kind,
                });
            }
            if a.state != ApprovalState::Confirming {
                return Err(Refused::NotConfirming {
                    id: a.id,
                    state: a.state,
                });
            }
            Ok(Plan::Reply {
                room: approvals()?,
                root: posted(a)?,
                body: phrase(&a.agent),
            })
        }
        Act::Answer { id, answer } => {
            let q = f.question.ok_or(Refused::NoQuestion(*id))?;
            if q.state != QuestionState::Pending {
                return Err(Refused::QuestionClosed {
                    id: q.id,
                    state: q.state,
                });
            }
            let root = q
                .request_event
                .clone()
                .ok_or_else(|| Refused::NotPosted(format!("question #{}", q.id)))?;
            match answer {
                Answer::Option(n) if *n > q.options.len() || *n > 9 => Err(Refused::NoOption {
                    id: q.id,
                    option: *n,
                    count: q.options.len(),
                }),
                Answer::Option(n) => Ok(Plan::React {
                    room: approvals()?,
                    event: root,
                    key: keycap(n - 1),
                }),
                Answer::Text(t) => Ok(Plan::Reply {
                    room: approvals()?,
                    root,
                    body: t.clone(),
                }),
            }
        }
        Act::Say { agent, text } => Ok(Plan::Message {
            room: inbox(agent)?,
            body: text.clone(),
            command: false,
        }),
        Act::Turn { turn, agent } => Ok(Plan::Message {
            room: inbox(agent)?,
            body: turn.line().to_owned(),
            command: false,
        }),
        Act::Command { command, agent } => Ok(Plan::Message {
            room: f
                .control_room
                .clone()
                .ok_or(Refused::NoRoom("#hive-c0re"))?,
            body: format!("!hive {} {agent}", command.as_str()),
            command: true,
        }),
        Act::Destroy { agent, why } => Ok(Plan::FileDestroy {
            agent: agent.clone(),
            summary: why.clone().unwrap_or_else(|| format!("destroy {agent}")),
        }),
    }
}

/// Whether `act` is new within [`WINDOW`] of `now`: `recent` forgets what is older and
/// remembers `act` when it is new. Identical acts within the window are one.
pub fn first_in_window(recent: &mut VecDeque<(Act, Instant)>, act: &Act, now: Instant) -> bool {
    recent.retain(|(_, at)| now.saturating_duration_since(*at) < WINDOW);
    if recent.iter().any(|(a, _)| a == act) {
        return false;
    }
    recent.push_back((act.clone(), now));
    true
}

#[cfg(test)]
mod tests;
