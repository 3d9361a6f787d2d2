//! Messages leaving the hive: an agent's replies and messages (checked against its policy) and
//! the core's own notices.

use anyhow::Context;
use ruma::api::client::message::send_message_event;
use ruma::events::MessageLikeEventType;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, UserId};
use serde_json::json;

use super::Core;
use crate::agent_spec::{AgentName, AgentSpec};
use crate::matrix::markdown;
use crate::wire::protocol::ErrorCode;

/// Where an agent's `send_message` goes, once policy allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Another agent: posted in its inbox, mentioning it.
    Agent(AgentName),
    /// An operator: posted in the sender's own inbox, mentioning them.
    Operator(OwnedUserId),
}

/// Why a send was refused; `code` goes back to the harness.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// Whether `from` may message agent `to` (an agent of this hive): never itself, and only the
/// agents in its `allowed_recipients`. What [`check_recipient`] decides once `to` is known to be
/// an agent; `list_agents` shows it.
pub fn may_message(from: &AgentSpec, to: &AgentName) -> bool {
    *to != from.name && from.allowed_recipients.contains(to)
}

/// The policy for `send_message(to, …)` from `from`: a pure decision.
///
/// `to` is `operator`, an operator's Matrix ID, an agent's name or an agent's Matrix ID. Operators
/// are always allowed (`operator` is the first configured one); a Matrix ID must be an operator's
/// or an agent's of this hive; an agent must exist, must not be the sender itself, and must be in
/// the sender's `allowed_recipients` ([`may_message`]). Unknown recipients are refused with
/// `unknown_recipient`, agents the sender may not message with `not_allowed`.
pub fn check_recipient(
    from: &AgentSpec,
    to: &str,
    operators: &[OwnedUserId],
    agent_of: impl Fn(&UserId) -> Option<AgentName>,
    exists: impl Fn(&AgentName) -> bool,
) -> Result<Target, Refusal> {
    let to = to.trim();
    let refuse = |code, message: String| Err(Refusal { code, message });
    if to == "operator" {
        return Ok(Target::Operator(operators.first().cloned().ok_or_else(
            || Refusal {
                code: ErrorCode::UnknownRecipient,
                message: "the hive has no operator configured".into(),
            },
        )?));
    }
    let name = if to.starts_with('@') {
        let Ok(user) = UserId::parse(to) else {
            return refuse(
                ErrorCode::UnknownRecipient,
                format!("{to:?} is not a Matrix user ID"),
            );
        };
        if operators.contains(&user) {
            return Ok(Target::Operator(user));
        }
        match agent_of(&user) {
            Some(n) => n,
            None => {
                return refuse(
                    ErrorCode::UnknownRecipient,
                    format!("{to} is neither an operator nor an agent of this hive"),
                );
            }
        }
    } else {
        match AgentName::parse(to) {
            Ok(n) => n,
            Err(e) => return refuse(ErrorCode::UnknownRecipient, format!("no agent {to:?}: {e}")),
        }
    };
    if !exists(&name) {
        return refuse(
            ErrorCode::UnknownRecipient,
            format!("no agent named {name} in this hive"),
        );
    }
    if name == from.name {
        return refuse(
            ErrorCode::NotAllowed,
            format!("{name} cannot message itself"),
        );
    }
    if !from.allowed_recipients.contains(&name) {
        return refuse(
            ErrorCode::NotAllowed,
            format!(
                "{} may not message {name}: not in its allowed_recipients",
                from.name
            ),
        );
    }
    Ok(Target::Agent(name))
}

/// Message content with Markdown rendered to HTML, optional mention pill and reply relation.
pub fn message_content(
    body: &str,
    mention: Option<(&UserId, &str)>,
    reply_to: Option<&str>,
    notice: bool,
) -> serde_json::Value {
    let html = markdown::to_html(body);
    let (plain, formatted) = match mention {
        Some((user, label)) => {
            let pill = format!(
                "<a href=\"https://matrix.to/#/{}\">{}</a>",
                user,
                markdown::escape(label)
            );
            let inner = html.clone().unwrap_or_else(|| markdown::escape(body));
            // Keep a leading paragraph inline with the pill.
            let inner = inner.strip_prefix("<p>").map_or_else(
                || format!(":<br>{inner}"),
                |rest| format!(": {rest}").replacen("</p>", "", 1),
            );
            (format!("{label}: {body}"), Some(format!("{pill}{inner}")))
        }
        None => (body.to_owned(), html),
    };
    let mut content = json!({
        "msgtype": if notice { "m.notice" } else { "m.text" },
        "body": plain,
        "m.mentions": { "user_ids": mention.map(|(u, _)| vec![u.to_string()]).unwrap_or_default() },
    });
    if let Some(f) = formatted {
        content["format"] = json!("org.matrix.custom.html");
        content["formatted_body"] = json!(f);
    }
    if let Some(ev) = reply_to {
        content["m.relates_to"] = json!({ "m.in_reply_to": { "event_id": ev } });
    }
    content
}

impl Core {
    /// Sends `content` as `user` (or the bot) into `room` with a caller-chosen transaction id, so
    /// a turn re-run after a crash does not post twice.
    pub async fn send_raw(
        &self,
        room: &RoomId,
        user: Option<&UserId>,
        txn_id: &str,
        content: &serde_json::Value,
    ) -> anyhow::Result<OwnedEventId> {
        // The last line of defence: whatever reaches here is posted with secrets redacted.
        // (Agents' messages were already refused if they held one; see `guard`.)
        let mut content = content.clone();
        if self.secrets().redact_content(&mut content) {
            tracing::warn!(%room, "redacted a secret from an outgoing message");
        }
        let content = &content;
        let req = send_message_event::v3::Request::new_raw(
            room.to_owned(),
            OwnedTransactionId::from(txn_id.to_owned()),
            MessageLikeEventType::RoomMessage,
            Raw::from_json(serde_json::value::to_raw_value(content)?),
        );
        let sent = self
            .client()
            .send(req, user)
            .await
            .with_context(|| format!("cannot send into {room}"))?;
        if let Some(u) = user {
            self.console().acted(u);
        }
        Ok(sent.event_id)
    }

    /// A notice from the core in `#hive-c0re` (or another room). Failures are logged, not raised:
    /// a notice that cannot be posted must not stop what it reports on.
    pub async fn notice(&self, room: Option<OwnedRoomId>, text: &str) {
        let Some(room) = room.or_else(|| self.rooms().get(&super::rooms::RoomKey::Control)) else {
            tracing::warn!(text, "no room to post a notice in yet");
            return;
        };
        let content = message_content(text, None, None, true);
        let txn = format!("hh-notice-{}", crate::c0re::registration::random_secret(16));
        if let Err(e) = self.send_raw(&room, None, &txn, &content).await {
            tracing::warn!(error = %format!("{e:#}"), text, "could not post notice");
        }
    }

    /// `send_message` from agent `from`: policy first, then post as the agent.
    pub async fn agent_send(
        &self,
        from: &AgentName,
        to: &str,
        body: &str,
        txn_id: &str,
    ) -> Result<OwnedEventId, Refusal> {
        let entry = self.agents().get(from).ok_or_else(|| Refusal {
            code: ErrorCode::Internal,
            message: format!("unknown agent {from}"),
        })?;
        self.agents()
            .rate(from, crate::c0re::limits::Kind::Message)
            .map_err(|r| Refusal {
                code: ErrorCode::RateLimited,
                message: r.to_string(),
            })?;
        // `<agent>@<hive>`: a peer's agent goes to the peer; `<agent>@<this hive>` is ours.
        let local: String = match crate::agent_spec::QualifiedName::parse(to.trim()) {
            Some(Err(message)) => {
                return Err(Refusal {
                    code: ErrorCode::UnknownRecipient,
                    message,
                });
            }
            Some(Ok(q)) if Some(&q.hive) != self.cfg().hive_id.as_ref() => {
                return self.send_to_peer(from, &q, body, txn_id, None).await;
            }
            Some(Ok(q)) => q.agent.to_string(),
            None => to.to_owned(),
        };
        let to = local.as_str();
        let target = check_recipient(
            &entry.spec(),
            to,
            &self.cfg().operators,
            |u| self.cfg().agent_of(u),
            |n| self.agents().get(n).is_some(),
        )
        .map_err(|r| self.kept_recipient(to, r))?;
        let (room, mention, label) = match &target {
            Target::Agent(n) => {
                let to_entry = self
                    .agents()
                    .get(n)
                    .expect("policy checked the agent exists");
                (
                    self.rooms().get(&super::rooms::RoomKey::Inbox(n.clone())),
                    to_entry.user_id.clone(),
                    to_entry.spec().display_name.clone(),
                )
            }
            Target::Operator(op) => (
                self.rooms()
                    .get(&super::rooms::RoomKey::Inbox(from.clone())),
                op.clone(),
                op.localpart().to_owned(),
            ),
        };
        let room = room.ok_or_else(|| Refusal {
            code: ErrorCode::Internal,
            message: "the hive's rooms are not set up yet".into(),
        })?;
        let content = message_content(body, Some((&mention, &label)), None, false);
        self.guard(from, &content).await?;
        self.send_raw(&room, Some(&entry.user_id), txn_id, &content)
            .await
            .map_err(|e| Refusal {
                code: ErrorCode::Homeserver,
                message: format!("{e:#}"),
            })
    }

    /// A reply from agent `from` in the room of the message it is handling.
    pub async fn agent_reply(
        &self,
        from: &AgentName,
        room: &str,
        reply_to: &str,
        sender: &str,
        body: &str,
        txn_id: &str,
    ) -> Result<OwnedEventId, Refusal> {
        let entry = self.agents().get(from).ok_or_else(|| Refusal {
            code: ErrorCode::Internal,
            message: format!("unknown agent {from}"),
        })?;
        self.agents()
            .rate(from, crate::c0re::limits::Kind::Message)
            .map_err(|r| Refusal {
                code: ErrorCode::RateLimited,
                message: r.to_string(),
            })?;
        let room = RoomId::parse(room).map_err(|e| Refusal {
            code: ErrorCode::Internal,
            message: e.to_string(),
        })?;
        if let Some(hive) = self.peer_of_room(&room) {
            return self
                .reply_to_peer(from, &hive, reply_to, sender, body, txn_id)
                .await;
        }
        // Whom it answers is notified: an operator, or every operator when it answers a core
        // event in its own inbox (`mentions.rs`).
        let own_inbox = self
            .rooms()
            .get(&super::rooms::RoomKey::Inbox(from.clone()))
            .is_some_and(|inbox| inbox == room);
        let mentioned =
            super::mentions::reply_mentions(sender, self.bot(), &self.cfg().operators, own_inbox);
        let mut content = message_content(body, None, Some(reply_to), false);
        content["m.mentions"] = json!({ "user_ids": mentioned });
        self.guard(from, &content).await?;
        self.send_raw(&room, Some(&entry.user_id), txn_id, &content)
            .await
            .map_err(|e| Refusal {
                code: ErrorCode::Homeserver,
                message: format!("{e:#}"),
            })
    }

    /// Refuses an agent's message that holds a secret: the agent learns which kind (never the
    /// value), the operator gets an alert without it.
    pub(crate) async fn guard(
        &self,
        from: &AgentName,
        content: &serde_json::Value,
    ) -> Result<(), Refusal> {
        let Some(label) = self.secrets().find_in_content(content) else {
            return Ok(());
        };
        tracing::warn!(agent = %from, what = %label, "refused a message holding a secret");
        self.notice(
            None,
            &format!("🔒 A message from **{from}** was not posted: it contained {label}. {from} was told why."),
        )
        .await;
        Err(Refusal {
            code: ErrorCode::Secret,
            message: format!(
                "not posted: the message contains {label}; secrets never go to a room"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(name: &str, allowed: &[&str]) -> AgentSpec {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            "allowed_recipients = [{}]\n[brain]\nkind = \"scripted\"\n",
            allowed.join(",")
        );
        let dir = Path::new("/nonexistent").join(name);
        AgentSpec::parse(
            AgentName::parse(name).unwrap(),
            &dir,
            &dir.join("agent.toml"),
            &text,
        )
        .unwrap()
    }

    #[test]
    fn recipients() {
        let ops = vec![UserId::parse("@op:hs").unwrap()];
        let agents = ["echo", "argus", "iris"];
        let agent_of = |u: &UserId| {
            (u.server_name() == "hs")
                .then(|| AgentName::parse(u.localpart()).ok())
                .flatten()
        };
        let exists = |n: &AgentName| agents.contains(&n.as_str());
        let echo = spec("echo", &["argus"]);
        let n = |s: &str| AgentName::parse(s).unwrap();
        struct Case {
            name: &'static str,
            to: &'static str,
            want: Result<Target, ErrorCode>,
        }
        let cases = [
            Case {
                name: "an allowed agent by name",
                to: "argus",
                want: Ok(Target::Agent(n("argus"))),
            },
            Case {
                name: "an allowed agent by Matrix ID",
                to: "@argus:hs",
                want: Ok(Target::Agent(n("argus"))),
            },
            Case {
                name: "the operator",
                to: "operator",
                want: Ok(Target::Operator(ops[0].clone())),
            },
            Case {
                name: "an operator by Matrix ID",
                to: "@op:hs",
                want: Ok(Target::Operator(ops[0].clone())),
            },
            Case {
                name: "an agent not in allowed_recipients",
                to: "iris",
                want: Err(ErrorCode::NotAllowed),
            },
            Case {
                name: "itself",
                to: "echo",
                want: Err(ErrorCode::NotAllowed),
            },
            Case {
                name: "no such agent",
                to: "ghost",
                want: Err(ErrorCode::UnknownRecipient),
            },
            Case {
                name: "not an agent name",
                to: "../argus",
                want: Err(ErrorCode::UnknownRecipient),
            },
            Case {
                name: "a user of another server",
                to: "@argus:elsewhere",
                want: Err(ErrorCode::UnknownRecipient),
            },
            Case {
                name: "not a Matrix ID",
                to: "@not a user",
                want: Err(ErrorCode::UnknownRecipient),
            },
        ];
        for c in cases {
            let got = check_recipient(&echo, c.to, &ops, agent_of, exists).map_err(|r| r.code);
            assert_eq!(got, c.want, "{}", c.name);
        }
        let none = check_recipient(&echo, "operator", &[], agent_of, exists)
            .expect_err("a hive without operators");
        assert_eq!(none.message, "the hive has no operator configured");
        let refused = check_recipient(&echo, "iris", &ops, agent_of, exists)
            .expect_err("iris is not allowed");
        assert_eq!(
            refused.message,
            "echo may not message iris: not in its allowed_recipients"
        );
    }

    #[test]
    fn whom_an_agent_may_message() {
        let n = |s: &str| AgentName::parse(s).unwrap();
        let echo = spec("echo", &["argus"]);
        struct Case {
            name: &'static str,
            to: &'static str,
            want: bool,
        }
        let cases = [
            Case {
                name: "in allowed_recipients",
                to: "argus",
                want: true,
            },
            Case {
                name: "not in allowed_recipients",
                to: "iris",
                want: false,
            },
            Case {
                name: "never itself",
                to: "echo",
                want: false,
            },
        ];
        for c in cases {
            assert_eq!(may_message(&echo, &n(c.to)), c.want, "{}", c.name);
        }
    }

    #[test]
    fn content_with_mention() {
        let u = UserId::parse("@argus:hs").unwrap();
        let c = message_content("**look** here", Some((&u, "Argus")), None, false);
        assert_eq!(c["body"], "Argus: **look** here");
        assert_eq!(
            c["formatted_body"],
            "<a href=\"https://matrix.to/#/@argus:hs\">Argus</a>: <strong>look</strong> here"
        );
        assert_eq!(c["m.mentions"]["user_ids"][0], "@argus:hs");
        let plain = message_content("hi", None, Some("$e"), true);
        assert_eq!(plain["msgtype"], "m.notice");
        assert!(plain.get("formatted_body").is_none());
        assert_eq!(plain["m.relates_to"]["m.in_reply_to"]["event_id"], "$e");
    }
}
