//! Which agents an inbound event is for: a pure function over data, with its table of cases.

use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};

use crate::agent_spec::AgentName;

/// Content key marking a core message addressed to the agent whose inbox it is in; its value
/// names the event (`container_crash`, `approval_outcome`).
pub const HIVE_EVENT_KEY: &str = "org.hyperhive.event";

/// The role a room plays in the hive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRole {
    Inbox(AgentName),
    Swarm,
    Control,
    Approvals,
    Space,
    /// The room shared with a peer hive: what reaches an agent there is decided by
    /// `peering::decide::inbound`, never by [`route`].
    Peer(crate::agent_spec::HiveName),
    /// A followed repository's room (`#forge-<owner>-<repo>`): routed like any other room (a
    /// human's message reaches the agents it mentions; an agent's reaches nobody).
    Forge(crate::forge::RepoName),
    /// Any other room an agent or the operator is in.
    Other,
}

/// Who sent an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderKind {
    /// The appservice's own user.
    Bot,
    Agent(AgentName),
    Operator,
    /// A user of another server (a peer's agent or human, anyone federation lets in): never an
    /// operator, never an agent of ours, whatever its localpart. What a peer's agents send
    /// reaches ours only through the peer room's own rules (`peering::decide`).
    Remote,
    /// Anyone else (local non-operator users).
    Other,
}

/// The fields of a timeline event the core looks at. Anything else is ignored, and an event
/// that lacks these is skipped (not an error: the homeserver sends all kinds of events).
#[derive(Debug, Clone, Deserialize)]
pub struct TimelineEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: String,
    pub room_id: String,
    pub sender: OwnedUserId,
    #[serde(default)]
    pub origin_server_ts: i64,
    #[serde(default)]
    pub content: serde_json::Value,
    pub state_key: Option<String>,
    /// Top-level `redacts` of a redaction in room versions before 11 (later ones use content).
    #[serde(default)]
    pub redacts: Option<String>,
}

impl TimelineEvent {
    pub fn body(&self) -> Option<&str> {
        self.content.get("body")?.as_str()
    }

    fn is_edit(&self) -> bool {
        self.content
            .pointer("/m.relates_to/rel_type")
            .and_then(|v| v.as_str())
            == Some("m.replace")
    }

    /// Users the event mentions: `m.mentions.user_ids`, or, for clients that do not send
    /// intentional mentions, user IDs written in the body.
    pub fn mentions(&self, candidates: &[(AgentName, OwnedUserId)]) -> Vec<AgentName> {
        let explicit: Option<Vec<&str>> = self
            .content
            .pointer("/m.mentions/user_ids")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|u| u.as_str()).collect());
        let body = self.body().unwrap_or("");
        candidates
            .iter()
            .filter(|(_, id)| match &explicit {
                Some(ids) => ids.contains(&id.as_str()),
                None => names_user(body, id.as_str()),
            })
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Whether `body` writes the user id `id` whole: not as the start of a longer server name
/// (`@argus:hs` is not in `@argus:hs:8448` nor in `@argus:hs.example.org`, a remote user), but
/// followed by the end, a space or punctuation (a final `.` too).
fn names_user(body: &str, id: &str) -> bool {
    let server_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == ':';
    body.match_indices(id).any(|(i, _)| {
        let mut rest = body[i + id.len()..].chars();
        match rest.next() {
            None => true,
            Some('.') => !rest.next().is_some_and(server_char),
            Some(c) => !server_char(c),
        }
    })
}

/// The agents `ev` must reach. `room` is the role of its room, `sender` who sent it,
/// `agents` every agent with its user ID.
///
/// Rules (docs/architecture.md, "Routing"):
/// - only `m.room.message` with a body; edits are never new messages;
/// - the appservice's own events go nowhere;
/// - in an agent's inbox, everything not written by that agent reaches it (that is how agents
///   write to each other: `send_message` posts in the recipient's inbox);
/// - in `#hive-swarm`, a human's message reaches every agent;
/// - a remote user's message reaches nobody, in any room (a peer room's events never come
///   here: `peering::decide::inbound` judges them);
/// - elsewhere a human's message reaches each agent it mentions. Agents' messages outside an
///   inbox reach nobody, so two agents can never loop through mentions.
pub fn route(
    ev: &TimelineEvent,
    room: &RoomRole,
    sender: &SenderKind,
    agents: &[(AgentName, OwnedUserId)],
) -> Vec<AgentName> {
    if ev.kind != "m.room.message" || ev.body().is_none() || ev.is_edit() || ev.state_key.is_some()
    {
        return Vec::new();
    }
    if *sender == SenderKind::Remote {
        return Vec::new();
    }
    if *sender == SenderKind::Bot {
        // The core's own events go nowhere, except the ones it addresses to an inbox's owner
        // (crash reports, approval outcomes): they travel like any message, durably.
        return match room {
            RoomRole::Inbox(owner) if ev.content.get(HIVE_EVENT_KEY).is_some() => {
                vec![owner.clone()]
            }
            _ => Vec::new(),
        };
    }
    let human = matches!(sender, SenderKind::Operator | SenderKind::Other);
    match room {
        RoomRole::Inbox(owner) => match sender {
            SenderKind::Agent(a) if a == owner => Vec::new(),
            _ => vec![owner.clone()],
        },
        RoomRole::Swarm if human => agents.iter().map(|(n, _)| n.clone()).collect(),
        RoomRole::Control | RoomRole::Other | RoomRole::Forge(_) if human => ev.mentions(agents),
        _ => Vec::new(),
    }
}

/// Whether a `!hive …` command from `sender` is carried out or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandRight {
    /// An operator's: carried out.
    Obey,
    /// Anyone else's (an agent, a local user, a remote user): answered that only the hive's
    /// operators may give commands, and nothing else.
    Refuse,
}

/// What becomes of a `!hive …` command from `sender`. The rules:
/// - an operator's is carried out;
/// - an agent's, a local non-operator's and a remote user's are refused, in words (never
///   silently: the sender would not know why nothing happens);
/// - the core's own messages are never commands (`None`): its answers never start with
///   `!hive`, and this rule makes sure an answer can never be taken for one, so nothing loops.
pub fn command_right(sender: &SenderKind) -> Option<CommandRight> {
    match sender {
        SenderKind::Bot => None,
        SenderKind::Operator => Some(CommandRight::Obey),
        SenderKind::Agent(_) | SenderKind::Remote | SenderKind::Other => Some(CommandRight::Refuse),
    }
}

/// A `!hive …` command for the core, if `ev` is one: a message (not an edit) in the control
/// room from anyone [`command_right`] answers. Whether it is carried out or refused is decided
/// when it is answered, from the same rule.
pub fn control_command(ev: &TimelineEvent, room: &RoomRole, sender: &SenderKind) -> Option<String> {
    if ev.kind != "m.room.message"
        || *room != RoomRole::Control
        || command_right(sender).is_none()
        || ev.is_edit()
    {
        return None;
    }
    command_args(ev.body()?).map(str::to_owned)
}

/// The words after `!hive` in a command's body (trimmed), if the body is one: `!hive` alone
/// or followed by whitespace. The control loop parses them (`control::commands::parse`).
pub fn command_args(body: &str) -> Option<&str> {
    let rest = body.trim().strip_prefix("!hive")?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

/// What an operator's reaction key means for an approval request. Variation selectors are
/// ignored, so ✔ and ✔️ are the same key.
pub fn verdict_of(key: &str) -> Option<crate::store::Verdict> {
    let k: String = key
        .chars()
        .filter(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}'))
        .collect();
    match k.as_str() {
        "✅" | "✔" | "☑" | "✓" => Some(crate::store::Verdict::Approve),
        "❌" | "✖" => Some(crate::store::Verdict::Deny),
        _ => None,
    }
}

/// The keycap emoji of option `i` (0-based) of a question: 1️⃣ … 9️⃣.
pub fn keycap(i: usize) -> String {
    format!("{}\u{FE0F}\u{20E3}", i + 1)
}

/// The option index a keycap reaction names (variation selectors ignored).
pub fn option_of(key: &str) -> Option<usize> {
    let k: Vec<char> = key.chars().filter(|c| *c != '\u{FE0F}').collect();
    match k[..] {
        [d @ '1'..='9', '\u{20E3}'] => Some(d as usize - '1' as usize),
        _ => None,
    }
}

/// A reaction, redaction or thread reply in `#hive-approvals`: the one value the approvals loop
/// acts on. It is typed from here to `approvals::decide`; only the `!approvals` queue stores it
/// as text (`inbox.body`), written with `Display` and read back with `FromStr`. The stored text
/// is a JSON object with its keys in order (`{"key":"✅","kind":"reaction","target":"$req"}`):
/// data dirs written before this type existed read back the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ApprovalSignal {
    /// Reaction `key` on event `target` (a request, or a question).
    Reaction { target: String, key: String },
    /// A reply in the thread of event `target` (an answer, if `target` is a question).
    Reply { target: String, body: String },
    /// The redaction of event `redacts` (a request, or a counted vote).
    Redaction { redacts: String },
}

impl ApprovalSignal {
    /// What the signal is, as said in a notice ("reaction").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reaction { .. } => "reaction",
            Self::Reply { .. } => "reply",
            Self::Redaction { .. } => "redaction",
        }
    }

    /// The event it is about: what was reacted to, replied to or redacted.
    pub fn target(&self) -> &str {
        match self {
            Self::Reaction { target, .. } | Self::Reply { target, .. } => target,
            Self::Redaction { redacts } => redacts,
        }
    }
}

impl std::fmt::Display for ApprovalSignal {
    /// The stored text: through a `Value`, whose map keeps its keys sorted, as the queue's
    /// rows have always been written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).expect("a signal is plain strings: it serialises");
        write!(f, "{v}")
    }
}

impl std::str::FromStr for ApprovalSignal {
    type Err = serde_json::Error;

    /// Reads a stored signal back; anything else (an unknown kind, a missing field) is an
    /// error for the caller to show, never a default.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(s)
    }
}

/// The approvals signal `ev` is, if it is one. Everything else in that room is nothing to the core.
pub fn approval_signal(ev: &TimelineEvent, room: &RoomRole) -> Option<ApprovalSignal> {
    if *room != RoomRole::Approvals {
        return None;
    }
    match ev.kind.as_str() {
        "m.reaction" => {
            let rel = ev.content.get("m.relates_to")?;
            if rel.get("rel_type")?.as_str()? != "m.annotation" {
                return None;
            }
            Some(ApprovalSignal::Reaction {
                target: rel.get("event_id")?.as_str()?.to_owned(),
                key: rel.get("key")?.as_str()?.to_owned(),
            })
        }
        "m.room.message" => {
            // A reply in a question's thread is an answer.
            let rel = ev.content.get("m.relates_to")?;
            if rel.get("rel_type")?.as_str()? != "m.thread" || ev.is_edit() {
                return None;
            }
            Some(ApprovalSignal::Reply {
                target: rel.get("event_id")?.as_str()?.to_owned(),
                body: ev.body()?.to_owned(),
            })
        }
        "m.room.redaction" => {
            let redacts = ev
                .content
                .get("redacts")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .or_else(|| ev.redacts.clone())?;
            Some(ApprovalSignal::Redaction { redacts })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::UserId;
    use serde_json::json;

    fn agents() -> Vec<(AgentName, OwnedUserId)> {
        ["echo", "argus"]
            .iter()
            .map(|n| {
                (
                    AgentName::parse(n).unwrap(),
                    UserId::parse(format!("@{n}:hs")).unwrap(),
                )
            })
            .collect()
    }

    fn ev(kind: &str, content: serde_json::Value) -> TimelineEvent {
        serde_json::from_value(json!({
            "type": kind, "event_id": "$e", "room_id": "!r:hs", "sender": "@someone:hs",
            "origin_server_ts": 1, "content": content,
        }))
        .unwrap()
    }

    fn n(s: &str) -> AgentName {
        AgentName::parse(s).unwrap()
    }

    #[test]
    fn reaction_keys() {
        use crate::store::Verdict::{Approve, Deny};
        for k in ["✅", "✔️", "✔", "☑️", "☑", "✓", "✓\u{FE0F}"] {
            assert_eq!(verdict_of(k), Some(Approve), "{k}");
        }
        for k in ["❌", "✖️", "✖"] {
            assert_eq!(verdict_of(k), Some(Deny), "{k}");
        }
        for k in ["👍", "🎉", "", "✅✅", "x"] {
            assert_eq!(verdict_of(k), None, "{k}");
        }
        let r = ev(
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$req", "key": "✅"}}),
        );
        assert_eq!(
            approval_signal(&r, &RoomRole::Approvals).unwrap(),
            ApprovalSignal::Reaction {
                target: "$req".into(),
                key: "✅".into()
            }
        );
        assert!(approval_signal(&r, &RoomRole::Control).is_none());
        assert_eq!(option_of(&keycap(0)), Some(0));
        assert_eq!(option_of("9\u{20E3}"), Some(8));
        for k in ["0\u{20E3}", "1", "✅", "10\u{20E3}"] {
            assert_eq!(option_of(k), None, "{k}");
        }
        let reply = ev(
            "m.room.message",
            json!({"body": "later", "m.relates_to": {"rel_type": "m.thread", "event_id": "$q"}}),
        );
        assert_eq!(
            approval_signal(&reply, &RoomRole::Approvals).unwrap(),
            ApprovalSignal::Reply {
                target: "$q".into(),
                body: "later".into()
            }
        );
        let red = ev("m.room.redaction", json!({"redacts": "$r"}));
        assert_eq!(
            approval_signal(&red, &RoomRole::Approvals).unwrap(),
            ApprovalSignal::Redaction {
                redacts: "$r".into()
            }
        );
        // A redaction in a room version before 11 names its event at the top level.
        let mut old = ev("m.room.redaction", json!({}));
        old.redacts = Some("$old".into());
        assert_eq!(
            approval_signal(&old, &RoomRole::Approvals)
                .unwrap()
                .target(),
            "$old"
        );
    }

    /// The `!approvals` queue's stored text: exactly what was stored before the signal had a
    /// type (the JSON of `json!`, keys sorted), read back to the same value; and a row that is
    /// not a signal is an error, never a default.
    #[test]
    fn approval_signals_stored_as_before() {
        struct Case {
            name: &'static str,
            signal: ApprovalSignal,
            stored: &'static str,
        }
        let cases = [
            Case {
                name: "reaction",
                signal: ApprovalSignal::Reaction {
                    target: "$req".into(),
                    key: "✅".into(),
                },
                stored: r#"{"key":"✅","kind":"reaction","target":"$req"}"#,
            },
            Case {
                name: "reply",
                signal: ApprovalSignal::Reply {
                    target: "$q".into(),
                    body: "later \"quoted\"".into(),
                },
                stored: r#"{"body":"later \"quoted\"","kind":"reply","target":"$q"}"#,
            },
            Case {
                name: "redaction",
                signal: ApprovalSignal::Redaction {
                    redacts: "$r".into(),
                },
                stored: r#"{"kind":"redaction","redacts":"$r"}"#,
            },
        ];
        for c in cases {
            assert_eq!(c.signal.to_string(), c.stored, "{}", c.name);
            let back: ApprovalSignal = c.stored.parse().expect(c.name);
            assert_eq!(back, c.signal, "{}", c.name);
            // The same JSON as the untyped code wrote, key by key.
            let old = match &c.signal {
                ApprovalSignal::Reaction { target, key } => {
                    json!({"kind": "reaction", "target": target, "key": key})
                }
                ApprovalSignal::Reply { target, body } => {
                    json!({"kind": "reply", "target": target, "body": body})
                }
                ApprovalSignal::Redaction { redacts } => {
                    json!({"kind": "redaction", "redacts": redacts})
                }
            };
            assert_eq!(old.to_string(), c.stored, "{}", c.name);
        }
        for bad in [
            "",
            "null",
            "{}",
            r#"{"kind":"vote","target":"$x"}"#,
            r#"{"kind":"reaction","target":"$x"}"#,
            r#"{"kind":"redaction"}"#,
        ] {
            assert!(bad.parse::<ApprovalSignal>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn routes() {
        let text = |b: &str| ev("m.room.message", json!({"msgtype": "m.text", "body": b}));
        let mention_argus = ev(
            "m.room.message",
            json!({"msgtype": "m.text", "body": "argus: look", "m.mentions": {"user_ids": ["@argus:hs"]}}),
        );
        let edit = ev(
            "m.room.message",
            json!({"body": "* x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}),
        );
        let inbox_echo = RoomRole::Inbox(n("echo"));
        let op = SenderKind::Operator;
        let cases: Vec<(&str, TimelineEvent, RoomRole, SenderKind, Vec<&str>)> = vec![
            (
                "operator in inbox",
                text("hi"),
                inbox_echo.clone(),
                op.clone(),
                vec!["echo"],
            ),
            (
                "agent writes to another's inbox",
                text("hi"),
                inbox_echo.clone(),
                SenderKind::Agent(n("argus")),
                vec!["echo"],
            ),
            (
                "agent's own reply in its inbox",
                text("hi"),
                inbox_echo.clone(),
                SenderKind::Agent(n("echo")),
                vec![],
            ),
            (
                "core event for the inbox's owner",
                ev(
                    "m.room.message",
                    json!({"msgtype": "m.notice", "body": "container_crash", "org.hyperhive.event": {"kind": "container_crash"}}),
                ),
                inbox_echo.clone(),
                SenderKind::Bot,
                vec!["echo"],
            ),
            (
                "bot notice",
                text("hi"),
                inbox_echo.clone(),
                SenderKind::Bot,
                vec![],
            ),
            (
                "reaction",
                ev("m.reaction", json!({})),
                inbox_echo.clone(),
                op.clone(),
                vec![],
            ),
            ("edit", edit, inbox_echo.clone(), op.clone(), vec![]),
            (
                "no body",
                ev("m.room.message", json!({"msgtype": "m.text"})),
                inbox_echo.clone(),
                op.clone(),
                vec![],
            ),
            (
                "swarm from operator",
                text("all"),
                RoomRole::Swarm,
                op.clone(),
                vec!["echo", "argus"],
            ),
            (
                "swarm from agent",
                text("all"),
                RoomRole::Swarm,
                SenderKind::Agent(n("echo")),
                vec![],
            ),
            (
                "mention in control",
                mention_argus.clone(),
                RoomRole::Control,
                op.clone(),
                vec!["argus"],
            ),
            (
                "an operator mentioning an agent in a repository's room",
                mention_argus.clone(),
                RoomRole::Forge(crate::forge::RepoName::parse("acme/widgets").unwrap()),
                op.clone(),
                vec!["argus"],
            ),
            (
                "an unmentioned agent in a repository's room hears nothing",
                text("a thread line"),
                RoomRole::Forge(crate::forge::RepoName::parse("acme/widgets").unwrap()),
                op.clone(),
                vec![],
            ),
            (
                "an agent mentioning another in a repository's room: nobody, no loops",
                mention_argus.clone(),
                RoomRole::Forge(crate::forge::RepoName::parse("acme/widgets").unwrap()),
                SenderKind::Agent(n("echo")),
                vec![],
            ),
            (
                "the hive's thread lines in a repository's room go nowhere",
                mention_argus.clone(),
                RoomRole::Forge(crate::forge::RepoName::parse("acme/widgets").unwrap()),
                SenderKind::Bot,
                vec![],
            ),
            (
                "mention by agent elsewhere",
                mention_argus.clone(),
                RoomRole::Other,
                SenderKind::Agent(n("echo")),
                vec![],
            ),
            (
                "body mention fallback",
                text("ping @echo:hs"),
                RoomRole::Other,
                SenderKind::Other,
                vec!["echo"],
            ),
            (
                "body mention at the end of a sentence",
                text("ask @echo:hs."),
                RoomRole::Other,
                SenderKind::Other,
                vec!["echo"],
            ),
            (
                "a remote namesake on a server with a port is no mention",
                text("ping @echo:hs:8448 and @argus:hs.example.org"),
                RoomRole::Other,
                SenderKind::Other,
                vec![],
            ),
            (
                "a remote user mentioning an agent",
                mention_argus.clone(),
                RoomRole::Other,
                SenderKind::Remote,
                vec![],
            ),
            (
                "a remote user in an inbox",
                text("hi"),
                RoomRole::Inbox(n("echo")),
                SenderKind::Remote,
                vec![],
            ),
            (
                "a remote user in the swarm",
                text("hi"),
                RoomRole::Swarm,
                SenderKind::Remote,
                vec![],
            ),
            (
                "approvals room",
                text("hi"),
                RoomRole::Approvals,
                op.clone(),
                vec![],
            ),
            (
                "plain control message",
                text("hello"),
                RoomRole::Control,
                op.clone(),
                vec![],
            ),
        ];
        for (name, ev, room, sender, want) in cases {
            let got: Vec<String> = route(&ev, &room, &sender, &agents())
                .iter()
                .map(|a| a.to_string())
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn commands() {
        struct Case {
            name: &'static str,
            body: &'static str,
            room: RoomRole,
            sender: SenderKind,
            /// The words queued for the control loop, if any.
            want: Option<&'static str>,
        }
        let op = SenderKind::Operator;
        let case = |name, body, room, sender: SenderKind, want| Case {
            name,
            body,
            room,
            sender,
            want,
        };
        let cases = [
            case(
                "a command",
                "!hive status",
                RoomRole::Control,
                op.clone(),
                Some("status"),
            ),
            case(
                "!hive alone",
                "!hive",
                RoomRole::Control,
                op.clone(),
                Some(""),
            ),
            case("not !hive", "!hivex", RoomRole::Control, op.clone(), None),
            case(
                "not in the control room",
                "!hive status",
                RoomRole::Swarm,
                op.clone(),
                None,
            ),
            case(
                "a local non-operator's is queued, to be refused",
                "!hive status",
                RoomRole::Control,
                SenderKind::Other,
                Some("status"),
            ),
            case(
                "a remote user's too",
                "!hive status",
                RoomRole::Control,
                SenderKind::Remote,
                Some("status"),
            ),
            case(
                "an agent's too",
                "!hive stop echo",
                RoomRole::Control,
                SenderKind::Agent(n("echo")),
                Some("stop echo"),
            ),
            case(
                "the core's own message is never one (no loop)",
                "!hive status",
                RoomRole::Control,
                SenderKind::Bot,
                None,
            ),
        ];
        for c in cases {
            let got = control_command(
                &ev(
                    "m.room.message",
                    json!({"msgtype": "m.text", "body": c.body}),
                ),
                &c.room,
                &c.sender,
            );
            assert_eq!(got.as_deref(), c.want, "{}", c.name);
        }
        assert_eq!(command_right(&op), Some(CommandRight::Obey));
        for s in [
            SenderKind::Other,
            SenderKind::Remote,
            SenderKind::Agent(n("echo")),
        ] {
            assert_eq!(command_right(&s), Some(CommandRight::Refuse), "{s:?}");
        }
        assert_eq!(command_right(&SenderKind::Bot), None);
        let edit = ev(
            "m.room.message",
            json!({"body": "!hive status", "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}),
        );
        assert_eq!(
            control_command(&edit, &RoomRole::Control, &op),
            None,
            "an edit"
        );
    }
}
