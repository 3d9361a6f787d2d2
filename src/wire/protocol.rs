//! The wire protocol between an agent's harness and hive-c0re (see docs/protocol.md).
//!
//! Newline-delimited JSON over the agent's own unix socket: the harness sends one request, the
//! core answers with exactly one response, in order. The socket the harness connects to *is* its
//! identity (one socket per agent, in a directory only that agent's sandbox sees), so no token
//! ever crosses it.

use serde::{Deserialize, Serialize};

/// File name of the socket inside the agent's socket directory.
pub const SOCKET_NAME: &str = "c0re.sock";
/// File name of the tools-only socket (`hive mcp`) beside it.
pub const TOOLS_SOCKET_NAME: &str = "tools.sock";

/// The largest model request a harness forwards (a Claude Code session's request grows with
/// the session).
pub const MAX_MODEL_REQUEST: usize = 16 << 20;
/// The largest line either side of the socket accepts: a model request and its envelope. One
/// limit for both sides, so a request the harness may send is one the core reads.
pub const MAX_FRAME: usize = MAX_MODEL_REQUEST + (64 << 10);

/// Model calls one message may make unless the agent's `[brain.limits] calls_per_message` says
/// otherwise: the core enforces it, and a model brain stops its loop there too.
pub const DEFAULT_CALLS_PER_MESSAGE: u64 = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// First request on a connection: names the agent the harness believes it is.
    Hello { agent: String, pid: u32 },
    /// Blocks until the agent's next message, then hands it over (the turn starts).
    Next {},
    /// Posts `body` (Markdown) in the room the current message came from, as a reply to it.
    Reply { body: String },
    /// Posts `body` to another agent's inbox (or `operator`), subject to `allowed_recipients`.
    SendMessage { to: String, body: String },
    /// The turn for message `id` is finished: it will never be delivered again.
    Ack { id: i64 },
    /// The turn for message `id` failed for good: it is dead-lettered and the operator told.
    Fail { id: i64, error: String },
    /// The brain cannot run at all (no credentials, unknown backend): said once in the room.
    BrainUnavailable { reason: String },
    /// Managers only: ask the operator to apply commit `sha` (full, from `agent`'s proposed
    /// config repo) to `agent`. Answered with `requested` once the request is filed.
    RequestApplyCommit {
        agent: String,
        sha: String,
        summary: String,
    },
    /// Managers only: ask the operator to spawn agent `name` from the template. Answered with
    /// `requested`; the outcome comes back later as a message.
    RequestInitConfig { name: String, summary: String },
    /// Any agent: a question for the operators in `#hive-approvals`, answered by reacting with
    /// an option's keycap (1️⃣ …) or replying in its thread. Answered with `asked`; the answer
    /// (or the timeout) comes back later as a message.
    /// Model-backed brains: one chat-completions request, made by the core with the agent's
    /// configured provider, model and key (answered with `model_response`). Only during a turn.
    Model { request: serde_json::Value },
    /// The tools this agent may call, with their JSON Schemas (answered with `tools`).
    ListTools {},
    /// Runs one of the hive's tools (answered with `tool_result`; a tool's failure is a
    /// result with `is_error`, not an error response).
    CallTool {
        name: String,
        #[serde(default)]
        arguments: serde_json::Value,
    },
    AskOperator {
        question: String,
        #[serde(default)]
        options: Vec<String>,
        ttl_secs: Option<u64>,
    },
    /// Model-backed brains: one model request like `model`, streamed: the core answers with a
    /// `model_chunk` per server-sent event as the provider sends it, then one `model_response`
    /// (the assembled answer) or an `error` (also mid-stream: the chunks so far are void).
    ModelStream { request: serde_json::Value },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Welcome {
        agent: String,
        user_id: String,
    },
    Message(Message),
    Sent {
        event_id: String,
    },
    Done,
    /// An approval request was filed; its outcome comes back later as a message.
    Requested {
        approval_id: i64,
    },
    Tools {
        tools: Vec<ToolInfo>,
    },
    ModelResponse {
        body: serde_json::Value,
    },
    ToolResult {
        content: String,
        is_error: bool,
    },
    /// A question was posted for the operators.
    Asked {
        question_id: i64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// One server-sent event of a `model_stream` answer, as the provider sent it (its
    /// `event:`/`data:` lines, without the blank line that ends it); more follow.
    ModelChunk {
        event: String,
    },
}

/// A tool as offered to a model: name, description, JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

/// One inbound message: one turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Queue id: what `ack`/`fail` name.
    pub id: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub body: String,
    /// 1 on first delivery; more after a harness died mid-turn.
    pub attempt: u32,
    /// Set only for a core event (an approval's outcome, an operator's answer, a reminder, a
    /// crash report): what the core itself reports, as data (`kind` names it). No Matrix sender
    /// can set it: a person typing `approval_outcome: …` sends a plain message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
    /// Set only for an operator's control message in the agent's inbox (`!compact`,
    /// `!new-session`): the harness hands it to its brain's [`Control`] handling instead of a
    /// turn, and the body is never a prompt. Absent for every other message, so an older
    /// harness still parses the line (and would take it as a plain message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
}

/// What an operator's control message asks of the agent's brain. Queued with the agent's other
/// messages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// `!compact`: shrink the brain's context (Claude Code compacts its session; the model
    /// brains replace their history with a summary of it).
    Compact,
    /// `!new-session`: forget the context (Claude Code forgets its session id; the model brains
    /// clear their history).
    NewSession,
}

impl Control {
    /// The control message a body may be, by its text alone (who sent it is the core's to
    /// judge): exactly `!compact` or `!new-session`, blanks around it aside.
    pub fn of_body(body: &str) -> Option<Self> {
        match body.trim() {
            "!compact" => Some(Control::Compact),
            "!new-session" => Some(Control::NewSession),
            _ => None,
        }
    }

    /// The inbox command that asks for it.
    pub fn command(self) -> &'static str {
        match self {
            Control::Compact => "!compact",
            Control::NewSession => "!new-session",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request, or a request out of turn (reply with no message in flight).
    BadRequest,
    /// Another harness is already connected for this agent.
    AlreadyConnected,
    /// `hello` named a different agent than the socket belongs to.
    WrongAgent,
    /// The recipient is not in `allowed_recipients`.
    NotAllowed,
    /// No such agent or user.
    UnknownRecipient,
    /// The homeserver refused or could not be reached.
    Homeserver,
    /// The core is shutting down.
    ShuttingDown,
    /// A request for approval was refused before reaching the operator (the message says why).
    Refused,
    /// The message holds a secret (a known one or a credential pattern): not posted.
    Secret,
    /// Over a model budget (per message or per day): the agent should say so and stop.
    Budget,
    /// Over a rate limit (messages, questions, reminders): try again later.
    RateLimited,
    /// The model server failed or could not be reached.
    Model,
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let cases: &[(Request, &str)] = &[
            (Request::Next {}, r#"{"op":"next"}"#),
            (Request::Ack { id: 7 }, r#"{"op":"ack","id":7}"#),
            (
                Request::SendMessage {
                    to: "argus".into(),
                    body: "hi".into(),
                },
                r#"{"op":"send_message","to":"argus","body":"hi"}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(serde_json::to_string(req).unwrap(), *json);
            assert_eq!(&serde_json::from_str::<Request>(json).unwrap(), req);
        }
        let err = Response::Error {
            code: ErrorCode::NotAllowed,
            message: "no".into(),
        };
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"type":"error","code":"not_allowed","message":"no"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"next","sneaky":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
        // A control message carries `control`; any other leaves it out, and a line without it
        // parses (an older core).
        let mut msg = Message {
            id: 1,
            event_id: "$e".into(),
            room_id: "!r".into(),
            sender: "@op:hs".into(),
            body: "!compact".into(),
            attempt: 1,
            event: None,
            control: Some(Control::Compact),
        };
        let line = serde_json::to_string(&Response::Message(msg.clone())).unwrap();
        assert!(line.contains(r#""control":"compact""#), "{line}");
        msg.control = None;
        let line = serde_json::to_string(&Response::Message(msg.clone())).unwrap();
        assert!(!line.contains("control"), "{line}");
        assert_eq!(
            serde_json::from_str::<Response>(&line).unwrap(),
            Response::Message(msg)
        );
    }
}
