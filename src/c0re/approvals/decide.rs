//! Who may decide, and what an event in `#hive-approvals` means: pure functions over the facts
//! the approvals loop gathered (the signal, its sender, the request or question it is about).
//! The loop carries out the [`Outcome`]; nothing here touches the network or the store.
//!
//! Rules (docs/approvals.md):
//! - an approver is a configured operator on this hive's server, not an agent of this hive,
//!   with at least `approvals.min_power_level` in the approvals room ([`standing`]). The power
//!   level costs an HTTP call: it is asked for ([`Outcome::NeedsStanding`]) only when the
//!   sender's standing decides the outcome, and only after the other rules held;
//! - a reaction on a question: an option's keycap (1️⃣ … 9️⃣, an option the question has) from
//!   an approver answers it, from anyone else is reported; every other key means nothing;
//! - a reaction on anything else: ✅ ✔ ☑ ✓ approve and ❌ ✖ deny (variation selectors ignored,
//!   `routing::verdict_of`); every other key means nothing and is said nowhere. An approve or
//!   deny on an event that is not a request is reported; on a request from a non-approver it is
//!   reported (naming the requester itself when the agent reacted to its own request); from an
//!   approver it is a vote;
//! - a vote is counted by the store, in one transaction, by [`tally`]: a reaction counted
//!   before is a duplicate; a request no longer pending is closed (but a purge waiting for its
//!   confirmation is still denied by a ❌); one past its time expires
//!   (`now >= expires`); a ❌ denies at once; an operator's second ✓ counts once; the request is
//!   approved when distinct ✓s reach the larger of the count it was filed with and the hive's
//!   `approvals.required` (the hive's count is a floor a filer cannot lower);
//! - a reply in a question's thread: from an approver, a non-empty reply answers it; from
//!   anyone else it is reported. A reply anywhere else means nothing;
//! - a reply `purge <name>` in a purge request's thread: from an approver, while the purge
//!   waits for it, it is the second confirmation; from anyone else it is reported
//!   (`kept::confirm`);
//! - a redaction of a request: from an approver it cancels the request, from anyone else it is
//!   reported. A redaction of anything else withdraws the vote it was, if it was one: only the
//!   reaction's sender (or a room moderator) can redact it. A withdrawn ✓ takes an approved
//!   (or confirming) request back to pending while its ✓s fall below the count ([`reverts`]).

use ruma::{OwnedUserId, UserId};

use crate::agent_spec::AgentName;
use crate::c0re::routing::{ApprovalSignal, option_of, verdict_of};
use crate::store::{Approval, ApprovalKind, ApprovalState, Question, Verdict};
pub use crate::store::{Ballot, reverts, tally};

/// Why a user may not decide approvals (said in the report and audited, as written here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotApprover {
    #[error("{user} is an agent ({agent})")]
    Agent { user: OwnedUserId, agent: AgentName },
    #[error("{user} is on another server")]
    OtherServer { user: OwnedUserId },
    #[error("{user} is not an operator")]
    NotOperator { user: OwnedUserId },
    #[error("{user} has power level {level} in the approvals room, below {min}")]
    LowPower {
        user: OwnedUserId,
        level: i64,
        min: i64,
    },
}

/// What the hive knows about a signal's sender.
#[derive(Debug, Clone)]
pub struct Sender<'a> {
    pub user: &'a UserId,
    /// The agent of this hive whose user this is.
    pub agent: Option<AgentName>,
    /// On this hive's server.
    pub local: bool,
    /// Listed in `[operators] users`.
    pub operator: bool,
    /// Its power level in the approvals room, once fetched (`None`: not asked yet).
    pub power: Option<i64>,
}

/// Whether a sender may decide approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Approver,
    NotApprover(NotApprover),
    /// Everything but the power level holds: fetch it and judge again.
    AskPowerLevel,
}

/// The sender's standing (module doc, first rule); `min_power` is the config's floor.
pub fn standing(s: &Sender<'_>, min_power: i64) -> Standing {
    let user = s.user.to_owned();
    if let Some(agent) = &s.agent {
        return Standing::NotApprover(NotApprover::Agent {
            user,
            agent: agent.clone(),
        });
    }
    if !s.local {
        return Standing::NotApprover(NotApprover::OtherServer { user });
    }
    if !s.operator {
        return Standing::NotApprover(NotApprover::NotOperator { user });
    }
    match s.power {
        None => Standing::AskPowerLevel,
        Some(level) if level < min_power => Standing::NotApprover(NotApprover::LowPower {
            user,
            level,
            min: min_power,
        }),
        Some(_) => Standing::Approver,
    }
}

/// The approvals room's power levels, as far as votes need them (`m.room.power_levels`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerLevels {
    users: std::collections::HashMap<String, i64>,
    users_default: i64,
}

impl PowerLevels {
    /// From the state event's content. A level that is not an integer is not a level: that
    /// user has the default, and a missing or odd default is 0 (the spec's default).
    pub fn from_content(content: &serde_json::Value) -> Self {
        let users = content
            .get("users")
            .and_then(|u| u.as_object())
            .map(|u| {
                u.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let users_default = content
            .get("users_default")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        Self {
            users,
            users_default,
        }
    }

    /// `user`'s level: its own, else the room's default.
    pub fn of(&self, user: &UserId) -> i64 {
        self.users
            .get(user.as_str())
            .copied()
            .unwrap_or(self.users_default)
    }
}

/// What an attempt that does not count was trying to do (the audit's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Answer,
    Approve,
    Deny,
    Cancel,
    /// A purge's second confirmation.
    Confirm,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Cancel => "cancel",
            Self::Confirm => "confirm",
        }
    }
}

impl From<Verdict> for Action {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Approve => Self::Approve,
            Verdict::Deny => Self::Deny,
        }
    }
}

/// Everything one signal is decided on.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub signal: &'a ApprovalSignal,
    pub sender: &'a UserId,
    /// The question whose event the signal is about, if it is one.
    pub question: Option<&'a Question>,
    /// The request whose event the signal is about, if it is one.
    pub request: Option<&'a Approval>,
    /// The sender's user is the requesting agent's.
    pub sender_is_requester: bool,
    /// Whether the sender is an approver (`Err`: why not), once asked for.
    pub approver: Option<Result<(), NotApprover>>,
}

/// What the loop does with one signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The sender's standing decides: find it (it may cost an HTTP call), then decide again.
    NeedsStanding,
    /// Nothing to do and nothing to say.
    Nothing,
    /// An attempt that does not count: audited as ignored and said in `#hive-c0re`.
    Report {
        action: Action,
        request: Option<&'a Approval>,
        what: String,
    },
    /// The approver's answer to a question.
    Answer {
        question: &'a Question,
        answer: String,
    },
    /// An approver's vote on a request (counted by the store: [`tally`]); `key` as reacted.
    Vote {
        request: &'a Approval,
        verdict: Verdict,
        key: &'a str,
    },
    /// An approver redacted the request: it is cancelled, if it is still open.
    Cancel { request: &'a Approval },
    /// A redaction of something that is not a request: the vote it was, if any, is withdrawn.
    Withdraw { reaction: &'a str },
    /// An approver's second confirmation of a purge waiting for it.
    Confirm { request: &'a Approval },
}

/// Decides one signal (module doc). Returns [`Outcome::NeedsStanding`] when the answer turns
/// on the sender's standing and `facts.approver` is not known yet.
pub fn decide<'a>(facts: &Facts<'a>) -> Outcome<'a> {
    let who = || facts.approver.clone();
    match facts.signal {
        ApprovalSignal::Reaction { target, key } => {
            if let Some(q) = facts.question {
                let Some(choice) = option_of(key).and_then(|i| q.options.get(i)) else {
                    return Outcome::Nothing;
                };
                return match who() {
                    None => Outcome::NeedsStanding,
                    Some(Err(why)) => Outcome::Report {
                        action: Action::Answer,
                        request: None,
                        what: format!("reacted {key} to question #{}: ignored, {why}", q.id),
                    },
                    Some(Ok(())) => Outcome::Answer {
                        question: q,
                        answer: choice.clone(),
                    },
                };
            }
            let Some(verdict) = verdict_of(key) else {
                return Outcome::Nothing; // 👍 and friends mean nothing here
            };
            let Some(a) = facts.request else {
                return Outcome::Report {
                    action: verdict.into(),
                    request: None,
                    what: format!(
                        "reacted {key} to {target}, which is not an approval request; nothing done"
                    ),
                };
            };
            match who() {
                None => Outcome::NeedsStanding,
                Some(Err(why)) => {
                    let who = if facts.sender_is_requester {
                        format!("{why}, the requester itself")
                    } else {
                        why.to_string()
                    };
                    Outcome::Report {
                        action: verdict.into(),
                        request: Some(a),
                        what: format!("reacted {key} to request #{}: ignored, {who}", a.id),
                    }
                }
                Some(Ok(())) => Outcome::Vote {
                    request: a,
                    verdict,
                    key,
                },
            }
        }
        ApprovalSignal::Reply { body, .. } => {
            let Some(q) = facts.question else {
                return match facts.request {
                    Some(a) => confirmation(a, body, who()),
                    None => Outcome::Nothing,
                };
            };
            match who() {
                None => Outcome::NeedsStanding,
                Some(Err(why)) => Outcome::Report {
                    action: Action::Answer,
                    request: None,
                    what: format!("answered question #{}: ignored, {why}", q.id),
                },
                Some(Ok(())) if body.trim().is_empty() => Outcome::Nothing,
                Some(Ok(())) => Outcome::Answer {
                    question: q,
                    answer: body.trim().to_owned(),
                },
            }
        }
        ApprovalSignal::Redaction { redacts } => match facts.request {
            Some(a) => match who() {
                None => Outcome::NeedsStanding,
                Some(Err(why)) => Outcome::Report {
                    action: Action::Cancel,
                    request: Some(a),
                    what: format!("redacted request #{}: ignored, {why}", a.id),
                },
                Some(Ok(())) => Outcome::Cancel { request: a },
            },
            None => Outcome::Withdraw { reaction: redacts },
        },
    }
}

/// The text that confirms a purge of `agent`.
pub fn phrase(agent: &str) -> String {
    format!("purge {agent}")
}

/// What a reply `body` in request `a`'s thread means: a purge's second confirmation, the
/// rules in `kept/confirm.rs`'s module doc; `approver` as [`Facts`] has it (`None`: not asked
/// yet).
pub fn confirmation<'a>(
    a: &'a Approval,
    body: &str,
    approver: Option<Result<(), NotApprover>>,
) -> Outcome<'a> {
    if a.kind != ApprovalKind::Purge || body.trim() != phrase(&a.agent) {
        return Outcome::Nothing;
    }
    match approver {
        None => Outcome::NeedsStanding,
        Some(Err(why)) => Outcome::Report {
            action: Action::Confirm,
            request: Some(a),
            what: format!("confirmed the purge of request #{}: ignored, {why}", a.id),
        },
        Some(Ok(())) if a.state == ApprovalState::Confirming => Outcome::Confirm { request: a },
        Some(Ok(())) => Outcome::Report {
            action: Action::Confirm,
            request: Some(a),
            what: format!(
                "confirmed the purge of request #{} while it is {}: ignored, a confirmation counts only after its ✅",
                a.id, a.state
            ),
        },
    }
}

#[cfg(test)]
mod tests;
