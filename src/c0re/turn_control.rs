//! An operator's hands on an agent's running turn and its brain's context, from any Matrix
//! client (docs/operator.md, "Controlling a turn"):
//!
//! - `!cancel` in the agent's inbox, `!hive cancel <agent>` in `#hive-c0re`: the running turn
//!   stops at once and its message counts as done ([`cancel`]);
//! - `!model <id>` in the inbox: the brain's model is config, so the core commits the change of
//!   `agent.toml` on the agent's proposed side and files an apply-commit request ([`model`]);
//! - `!compact`, `!new-session` in the inbox: control messages for the brain, queued in order
//!   with its other messages and handed over as [`Message::control`], never as a prompt.
//!
//! What a line is, is decided once, purely ([`decide::classify`]): at ingest (a command for the
//! core goes to the control queue instead of the agent's, so it never waits behind the turn it
//! may stop), in the control loop (which command), and at delivery (a control message).
//!
//! [`Message::control`]: crate::wire::protocol::Message::control

pub mod cancel;
pub mod decide;
mod model;

use ruma::UserId;

use super::rooms::RoomKey;
use super::routing::{RoomRole, SenderKind};
use super::{CONTROL_QUEUE, Core};
use crate::agent_spec::AgentName;
use crate::c0re::web::actions::replies::Reply;
use crate::store::{CancelCommand, InboxItem};
use crate::wire::protocol::Control;
use cancel::{CancelRefusal, Cancelled};
use decide::{CoreCommand, InboxLine};

/// At ingest: `targets` (what [`super::routing::route`] chose for an event in a room of
/// `role`) with an operator's inbox command for the core moved from the agent's queue to the
/// control queue. Anything else is left as it is.
pub fn retarget(
    body: Option<&str>,
    role: &RoomRole,
    sender: &SenderKind,
    targets: &mut Vec<String>,
) {
    let (Some(body), RoomRole::Inbox(owner)) = (body, role) else {
        return;
    };
    if !targets.iter().any(|t| t == owner.as_str()) {
        return;
    }
    if decide::classify(body, role, sender).for_the_core() {
        targets.retain(|t| t != owner.as_str());
        targets.push(CONTROL_QUEUE.to_owned());
    }
}

impl Core {
    /// Who sent `item`, and in a room of which role.
    fn line_of(&self, item: &InboxItem) -> InboxLine {
        let sender = match UserId::parse(&item.sender) {
            Ok(user) => self.sender_kind(&user),
            Err(_) => SenderKind::Other,
        };
        let role = self.rooms().snapshot().role(&item.room_id);
        decide::classify(&item.body, &role, &sender)
    }

    /// At delivery: the control message `item` is for `agent`'s brain, if it is one (an
    /// operator's `!compact` or `!new-session` in that agent's own inbox). Audited as handed
    /// over, each time it is (a redelivery too).
    pub fn brain_control(&self, agent: &AgentName, item: &InboxItem) -> Option<Control> {
        if item.agent != agent.as_str() || item.hive_event.is_some() {
            return None;
        }
        let InboxLine::Brain(c) = self.line_of(item) else {
            return None;
        };
        let action = c.command().trim_start_matches('!');
        let detail = format!("handed to the brain (attempt {})", item.attempts);
        self.audit_by(
            &item.sender,
            action,
            Some(agent.as_str()),
            None,
            "delivered",
            Some(&detail),
        );
        Some(c)
    }

    /// In the control loop: the answer to an inbox command (`item` came from an agent's
    /// inbox), or `None` when `item` is no inbox line (a `!hive` command).
    pub async fn inbox_command(&self, item: &InboxItem) -> Option<String> {
        let RoomRole::Inbox(_) = self.rooms().snapshot().role(&item.room_id) else {
            return None;
        };
        Some(match self.line_of(item) {
            InboxLine::Core(agent, CoreCommand::Cancel) => {
                self.cancel_command(agent.as_str(), &item.sender, item, false)
                    .await
                    .text
            }
            InboxLine::Core(agent, CoreCommand::Model(id)) => {
                self.model_command(&agent, &id, &item.sender).await
            }
            InboxLine::Usage(agent, text) => {
                self.audit_by(
                    &item.sender,
                    decide::command_word(&item.body),
                    Some(agent.as_str()),
                    None,
                    "refused",
                    Some(&format!("{}: {text}", item.body.trim())),
                );
                text
            }
            // Queued here and no command any more (the operators changed meanwhile).
            InboxLine::Brain(_) | InboxLine::Plain => decide::USAGE.to_owned(),
        })
    }

    /// `!hive cancel <agent>` (`in_control`: the answer goes to `#hive-c0re`, and the agent's
    /// inbox is told too) or `!cancel` in the agent's inbox: `command` (the queued command
    /// event) cancels its running turn for operator `by`, if that turn started before the
    /// command was sent. The answer, also when nothing was cancelled.
    pub async fn cancel_command(
        &self,
        agent: &str,
        by: &str,
        command: &InboxItem,
        in_control: bool,
    ) -> Reply {
        let command = CancelCommand {
            event_id: &command.event_id,
            origin_ts: command.origin_ts,
        };
        let result = self.cancel_turn(agent, by, command);
        if let Err(e) = &result {
            tracing::error!(agent, error = %format!("{e:#}"), "cancelling a turn failed");
        }
        let inbox = match &result {
            Ok(Ok(done)) => self.rooms().get(&RoomKey::Inbox(done.agent.clone())),
            _ => None,
        };
        let (reply, outcome) = cancel_reply(&result);
        let reply = Reply {
            text: self.shown(&reply.text),
            ..reply
        };
        self.audit_by(by, "cancel", Some(agent), None, outcome, Some(&reply.text));
        if reply.done {
            // A crash before the command is acked: it is delivered again after the restart.
            crate::failpoint::exit_at("cancel-before-ack");
        }
        if in_control && inbox.is_some() {
            self.notice(inbox, &reply.text).await;
        }
        reply
    }
}

/// The answer to a cancel from its `result`, and the audit's outcome word: done only when a
/// turn was cancelled.
pub fn cancel_reply(
    result: &anyhow::Result<Result<Cancelled, CancelRefusal>>,
) -> (Reply, &'static str) {
    match result {
        Ok(Ok(done)) => (Reply::done(done.text()), "cancelled"),
        Ok(Err(refused)) => (
            Reply::not_done(format!("Nothing cancelled: {refused}.")),
            "refused",
        ),
        Err(e) => (
            Reply::not_done(format!("Cancelling failed: {e:#}")),
            "failed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_operators_core_command_leaves_the_agents_queue() {
        struct Case {
            name: &'static str,
            body: &'static str,
            sender: SenderKind,
            targets: &'static [&'static str],
            want: &'static [&'static str],
        }
        let argus = AgentName::parse("argus").unwrap();
        let cases = [
            Case {
                name: "!cancel goes to the core",
                body: "!cancel",
                sender: SenderKind::Operator,
                targets: &["argus"],
                want: &["!c0re"],
            },
            Case {
                name: "usage goes to the core",
                body: "!model",
                sender: SenderKind::Operator,
                targets: &["argus"],
                want: &["!c0re"],
            },
            Case {
                name: "!model goes to the core",
                body: "!model gpt-4o",
                sender: SenderKind::Operator,
                targets: &["argus"],
                want: &["!c0re"],
            },
            Case {
                name: "!compact stays in the agent's queue",
                body: "!compact",
                sender: SenderKind::Operator,
                targets: &["argus"],
                want: &["argus"],
            },
            Case {
                name: "an agent's !cancel stays a message",
                body: "!cancel",
                sender: SenderKind::Agent(AgentName::parse("iris").unwrap()),
                targets: &["argus"],
                want: &["argus"],
            },
            Case {
                name: "what routing dropped stays dropped",
                body: "!cancel",
                sender: SenderKind::Operator,
                targets: &[],
                want: &[],
            },
        ];
        for c in cases {
            let mut targets: Vec<String> = c.targets.iter().map(|t| t.to_string()).collect();
            retarget(
                Some(c.body),
                &RoomRole::Inbox(argus.clone()),
                &c.sender,
                &mut targets,
            );
            assert_eq!(targets, c.want, "{}", c.name);
        }
    }
}
