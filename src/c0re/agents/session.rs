//! One connection's requests: [`admit`] decides from plain facts whether a request may run now;
//! then one function per request kind carries it out ([`Session::handle`] dispatches).
//!
//! The rules of a connection (all in [`admit`]):
//! - The first request is `hello`, naming the socket's own agent. A `hello` naming another
//!   agent is answered `wrong_agent` and the connection is closed: a harness that believes it is
//!   someone else must not act for this agent. Anything else before a `hello` is refused.
//! - A turn starts with `next` (which hands out the agent's next message) and ends with `ack`
//!   or `fail` of that message. `next` during a turn, `reply` or `model` outside one, and `ack`
//!   or `fail` of any other message are refused (`bad_request`); the connection goes on.
//! - `tools.sock` (`hive mcp`) serves `hello`, `list_tools` and `call_tool` only.
//!
//! A connection that ends mid-turn puts its message back in the queue ([`Session::leave`]): it is
//! delivered again (until `max_attempts`, then dead-lettered by the store), and the re-run turn's
//! side effects are answered as the first time (`effects.rs`). Unless an operator cancelled the
//! turn: then its end is the cancel's to record, and the message is done (`end.rs`).

use anyhow::Context;
use serde_json::json;
use tokio::io::AsyncBufRead;

use super::AgentState;
use super::effects::TurnCalls;
use super::typing::Typing;
use super::wait::{self, Wake};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::approvals::RequestRefused;
use crate::c0re::rooms::RoomKey;
use crate::store::InboxItem;
use crate::wire::protocol::{ErrorCode, Message, Request, Response};

/// Which socket a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// `c0re.sock`: the agent's harness, one at a time.
    Harness,
    /// `tools.sock`: tool calls only (`hive mcp`).
    Tools,
}

/// What the rules say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Carry it out.
    Admit,
    /// Answer this error and read the next request.
    Refuse { code: ErrorCode, message: String },
    /// Answer this error and close the connection.
    Close { code: ErrorCode, message: String },
}

impl Admission {
    /// The error response of a refusal (`None` for [`Admission::Admit`]).
    pub fn response(&self) -> Option<Response> {
        match self {
            Admission::Admit => None,
            Admission::Refuse { code, message } | Admission::Close { code, message } => {
                Some(Response::Error {
                    code: *code,
                    message: message.clone(),
                })
            }
        }
    }
}

const NO_REPLY_TARGET: &str = "no message in flight to reply to";
const MODEL_OUTSIDE_TURN: &str = "model calls are made during a turn";

fn bad_request(message: impl Into<String>) -> Admission {
    Admission::Refuse {
        code: ErrorCode::BadRequest,
        message: message.into(),
    }
}

fn not_in_flight(id: i64) -> String {
    format!("message {id} is not in flight on this connection")
}

/// Whether `req` may run now on a `socket` of agent `owner`: `greeted` says whether the
/// connection said hello, `in_flight` which message its turn is handling. The rules are in the
/// module doc; a pure function, the table is in the tests.
pub fn admit(
    socket: Socket,
    owner: &AgentName,
    greeted: bool,
    in_flight: Option<i64>,
    req: &Request,
) -> Admission {
    match req {
        Request::Hello { agent, .. } if agent != owner.as_str() => {
            return Admission::Close {
                code: ErrorCode::WrongAgent,
                message: format!("this socket belongs to {owner}, not {agent:?}"),
            };
        }
        Request::Hello { .. } => return Admission::Admit,
        _ if !greeted => return bad_request("say hello first"),
        _ => {}
    }
    if socket == Socket::Tools {
        return match req {
            Request::ListTools {} | Request::CallTool { .. } => Admission::Admit,
            _ => bad_request("this socket serves tools only (list_tools, call_tool)"),
        };
    }
    match (req, in_flight) {
        (Request::Next {}, Some(_)) => bad_request("ack or fail the current message first"),
        (Request::Reply { .. }, None) => bad_request(NO_REPLY_TARGET),
        (Request::Model { .. } | Request::ModelStream { .. }, None) => {
            bad_request(MODEL_OUTSIDE_TURN)
        }
        (Request::Ack { id } | Request::Fail { id, .. }, current) if current != Some(*id) => {
            bad_request(not_in_flight(*id))
        }
        _ => Admission::Admit,
    }
}

/// A transaction id for a send of the turn handling `inbox_id`, stable across re-runs of the
/// same turn (`sends`: this is the turn's n-th send); `None` outside a turn (`inbox_id` 0),
/// where the caller draws a random one.
pub fn turn_txn(agent: &AgentName, inbox_id: i64, sends: u32) -> Option<String> {
    (inbox_id != 0).then(|| format!("hh-{agent}-{inbox_id}-{sends}"))
}

/// The message handed to the harness for `item`. A core event that does not parse (it was
/// written by the core itself) is logged and left out; the text is still delivered.
pub(super) fn message_of(item: &InboxItem) -> Message {
    let event = item
        .hive_event
        .as_deref()
        .and_then(|e| match serde_json::from_str(e) {
            Ok(v) => Some(v),
            Err(err) => {
                tracing::error!(agent = %item.agent, id = item.id, error = %err, "a queued core event does not parse; delivered as text only");
                None
            }
        });
    Message {
        id: item.id,
        event_id: item.event_id.clone(),
        room_id: item.room_id.clone(),
        sender: item.sender.clone(),
        body: item.body.clone(),
        attempt: item.attempts,
        event,
        control: None,
    }
}

/// What the connection does after a request.
pub(super) enum Step {
    /// Write this answer and read the next request.
    Answer(Response),
    /// The harness hung up (while it waited for a message): close without a word.
    Hangup,
}

/// One harness connection on `c0re.sock`.
pub(super) struct Session {
    core: Core,
    name: AgentName,
    /// Whether the harness said hello.
    pub(super) greeted: bool,
    inflight: Option<InboxItem>,
    typing: Option<Typing>,
    /// Sends within the current turn, for stable transaction ids.
    sends: u32,
    /// The harness's pid as the kernel gives it (`SO_PEERCRED`, in the core's pid namespace):
    /// recorded instead of the pid `hello` claims, which inside a sandbox is its own namespace's.
    pub(super) peer_pid: Option<u32>,
}

impl Session {
    pub(super) fn new(core: Core, name: AgentName) -> Self {
        Self {
            core,
            name,
            greeted: false,
            inflight: None,
            typing: None,
            sends: 0,
            peer_pid: None,
        }
    }

    /// The id of the message this connection's turn is handling.
    pub(super) fn in_flight(&self) -> Option<i64> {
        self.inflight.as_ref().map(|i| i.id)
    }

    /// Carries out one request [`admit`] admitted.
    pub(super) async fn handle(
        &mut self,
        req: Request,
        reader: &mut (impl AsyncBufRead + Unpin),
    ) -> anyhow::Result<Step> {
        let resp = match req {
            Request::Hello { pid, .. } => self.hello(pid)?,
            Request::Next {} => {
                return Ok(self.next(reader).await?.map_or(Step::Hangup, Step::Answer));
            }
            Request::Reply { body } => self.reply(body).await,
            Request::SendMessage { to, body } => self.send_message(to, body).await,
            Request::RequestApplyCommit {
                agent,
                sha,
                summary,
            } => self.request_apply_commit(agent, sha, summary).await,
            Request::RequestInitConfig { name, summary } => {
                self.request_init_config(name, summary).await
            }
            Request::Model { request } => self.model(&request).await,
            // The socket loop streams it (`model_stream`); here only if it could not.
            Request::ModelStream { request } => self.model(&request).await,
            Request::ListTools {} => Response::Tools {
                tools: self.core.tool_infos(&self.name),
            },
            Request::CallTool { name, arguments } => self.call_tool(&name, &arguments).await,
            Request::AskOperator {
                question,
                options,
                ttl_secs,
            } => self.ask_operator(question, options, ttl_secs).await,
            Request::Ack { id } => self.finish(id, None).await?,
            Request::Fail { id, error } => self.finish(id, Some(error)).await?,
            Request::BrainUnavailable { reason } => {
                self.cannot_think(&reason).await?;
                Response::Done
            }
        };
        Ok(Step::Answer(resp))
    }

    /// `hello`: the harness is connected (recorded with its pid, the kernel's where known).
    fn hello(&mut self, pid: u32) -> anyhow::Result<Response> {
        self.greeted = true;
        let pid = self.peer_pid.unwrap_or(pid);
        self.core
            .store()
            .set_agent_state(self.name.as_str(), AgentState::Connected, Some(pid))?;
        let entry = self
            .core
            .agents()
            .get(&self.name)
            .context("agent vanished")?;
        tracing::info!(agent = %self.name, pid, "harness connected");
        Ok(Response::Welcome {
            agent: self.name.to_string(),
            user_id: entry.user_id.to_string(),
        })
    }

    /// `reply`: posts in the room of the message in flight, as a reply to it; at most once.
    async fn reply(&mut self, body: String) -> Response {
        let Some(item) = self.inflight.clone() else {
            return bad_request(NO_REPLY_TARGET)
                .response()
                .expect("a refusal has a response");
        };
        if item.attempts == 1 {
            // Tests: the harness has the message and its brain is running, nothing is posted.
            crate::failpoint::exit_at("c0re-before-reply");
        }
        let fallback = self.txn_id(item.id);
        let (room, ev, sender) = (item.room_id, item.event_id, item.sender);
        let (core, name) = (&self.core, &self.name);
        core.once(name, "reply", &json!({}), fallback, |txn| async move {
            match core
                .agent_reply(name, &room, &ev, &sender, &body, &txn)
                .await
            {
                Ok(id) => Response::Sent {
                    event_id: id.to_string(),
                },
                Err(r) => Response::Error {
                    code: r.code,
                    message: r.message,
                },
            }
        })
        .await
    }

    /// `send_message`: to another agent or the operator, under the recipient policy; at most
    /// once per call of a turn.
    async fn send_message(&mut self, to: String, body: String) -> Response {
        let fallback = self.txn_id(self.in_flight().unwrap_or(0));
        let (core, name) = (&self.core, &self.name);
        let args = json!({ "to": to });
        core.once(name, "send_message", &args, fallback, |txn| async move {
            match core.agent_send(name, &to, &body, &txn).await {
                Ok(id) => Response::Sent {
                    event_id: id.to_string(),
                },
                Err(r) => {
                    tracing::info!(agent = %name, to, reason = %r.message, "send refused");
                    Response::Error {
                        code: r.code,
                        message: r.message,
                    }
                }
            }
        })
        .await
    }

    /// `request_apply_commit` (managers only): files an approval request; at most once.
    async fn request_apply_commit(&self, agent: String, sha: String, summary: String) -> Response {
        let args = json!({ "agent": agent, "sha": sha });
        let filed = self
            .core
            .request_apply_commit(self.name.as_str(), &agent, &sha, &summary);
        self.core
            .once(
                &self.name,
                "request_apply_commit",
                &args,
                String::new(),
                |_| self.manager_request("request_apply_commit", filed),
            )
            .await
    }

    /// `request_init_config` (managers only): files a spawn request; at most once.
    async fn request_init_config(&self, name: String, summary: String) -> Response {
        let args = json!({ "name": name });
        let filed = self
            .core
            .request_init_config(self.name.as_str(), &name, &summary);
        self.core
            .once(
                &self.name,
                "request_init_config",
                &args,
                String::new(),
                |_| self.manager_request("request_init_config", filed),
            )
            .await
    }

    /// Files an approval request for a manager; anyone else is refused before `filed` runs.
    async fn manager_request(
        &self,
        tool: &str,
        filed: impl Future<Output = Result<i64, RequestRefused>>,
    ) -> Response {
        if let Err(e) = self.core.require_manager(&self.name, tool) {
            return Response::Error {
                code: ErrorCode::NotAllowed,
                message: e.to_string(),
            };
        }
        match filed.await {
            Ok(approval_id) => Response::Requested { approval_id },
            Err(r) => Response::Error {
                code: ErrorCode::Refused,
                message: r.to_string(),
            },
        }
    }

    /// `model`: one model call made by the core for the turn in flight.
    async fn model(&self, request: &serde_json::Value) -> Response {
        let Some(inbox_id) = self.in_flight() else {
            return bad_request(MODEL_OUTSIDE_TURN)
                .response()
                .expect("a refusal has a response");
        };
        match self.core.model_call(&self.name, inbox_id, request).await {
            Ok(body) => Response::ModelResponse { body },
            Err(r) => Response::Error {
                code: r.code,
                message: r.message,
            },
        }
    }

    /// `call_tool`: one of the hive's tools, under the agent's policy.
    async fn call_tool(&mut self, tool: &str, arguments: &serde_json::Value) -> Response {
        let fallback = self.txn_id(self.in_flight().unwrap_or(0));
        self.core
            .tool_once(&self.name, tool, arguments, fallback)
            .await
    }

    /// `ask_operator`: a question in `#hive-approvals`; at most once.
    async fn ask_operator(
        &self,
        question: String,
        options: Vec<String>,
        ttl_secs: Option<u64>,
    ) -> Response {
        let (core, me) = (&self.core, &self.name);
        core.once(me, "ask_operator", &json!({}), String::new(), |_| async {
            match core.ask_operator(me, &question, &options, ttl_secs) {
                Ok(question_id) => Response::Asked { question_id },
                Err(e) => Response::Error {
                    code: ErrorCode::BadRequest,
                    message: e.to_string(),
                },
            }
        })
        .await
    }

    /// A transaction id stable across re-runs of the same turn, unique per agent.
    fn txn_id(&mut self, inbox_id: i64) -> String {
        self.sends += 1;
        turn_txn(&self.name, inbox_id, self.sends).unwrap_or_else(|| {
            format!(
                "hh-{}-x{}",
                self.name,
                crate::c0re::registration::random_secret(12)
            )
        })
    }

    /// `brain_unavailable` (and a brain whose provider is not granted): says in the agent's
    /// room, once per reason, that it cannot think; its messages wait.
    async fn cannot_think(&self, reason: &str) -> anyhow::Result<()> {
        let new = self
            .core
            .store()
            .set_brain_notice(self.name.as_str(), Some(reason))?;
        if new {
            let room = self.core.rooms().get(&RoomKey::Inbox(self.name.clone()));
            let text = format!(
                "⚠️ {} cannot think right now: {reason}. Messages wait in the queue until its brain can run.",
                self.name
            );
            self.core
                .post_as_agent_or_notice(&self.name, room, &text)
                .await;
        }
        // After the notice, if any, was posted: the tests' fence for "said once".
        tracing::info!(agent = %self.name, said = new, "brain unavailable");
        Ok(())
    }

    /// `next`: waits for the agent's next message and starts its turn. `None`: the harness hung
    /// up while waiting.
    async fn next(
        &mut self,
        reader: &mut (impl AsyncBufRead + Unpin),
    ) -> anyhow::Result<Option<Response>> {
        let entry = self
            .core
            .agents()
            .get(&self.name)
            .context("agent vanished")?;
        // A model brain whose provider hive.toml does not grant cannot think, whatever its
        // harness could start: said once, and no message is handed out (they wait in the queue,
        // as when the harness itself says its brain cannot run).
        if let Err(why) = self.core.cfg().provider_for(&entry.spec().brain) {
            self.cannot_think(&why.to_string()).await?;
            loop {
                if let Some(end) = wait::wait(reader, self.core.cancel(), None)
                    .await
                    .ends_next()
                {
                    return Ok(end);
                }
            }
        }
        loop {
            let (core, turn) = (self.core.clone(), entry.clone());
            let name = self.name.to_string();
            let max = core.cfg().max_attempts;
            // Under the turn lock, which a cancel holds too: the message handed out and the
            // turn recorded as running are one step (turn_control/cancel.rs).
            let (item, dead) = tokio::task::spawn_blocking(move || {
                let mut running = turn.turn.lock().unwrap_or_else(|p| p.into_inner());
                let taken = core.store().take_next(&name, max)?;
                if let Some(item) = &taken.0 {
                    *running = Some(TurnCalls::new(item.id));
                }
                anyhow::Ok(taken)
            })
            .await??;
            for d in dead {
                self.core.dead_letter_notice(&d).await;
            }
            if let Some(item) = item {
                self.sends = 0;
                self.start_typing(&item);
                let mut msg = message_of(&item);
                msg.control = self.core.brain_control(&self.name, &item);
                self.inflight = Some(item);
                self.core.console().changed();
                return Ok(Some(Response::Message(msg)));
            }
            if let Some(end) = wait::wait(reader, self.core.cancel(), Some(&entry.notify))
                .await
                .ends_next()
            {
                return Ok(end);
            }
        }
    }

    fn start_typing(&mut self, item: &InboxItem) {
        if let Some(new) = Typing::start(&self.core, &self.name, item)
            && let Some(old) = self.typing.replace(new)
        {
            old.abort();
        }
    }

    async fn stop_typing(&mut self, done: Option<&InboxItem>) {
        if let Some(t) = self.typing.take() {
            t.stop(&self.core, &self.name, done).await;
        }
    }
}

impl Wake {
    /// How a wait for the next message ends: `None` to keep waiting (a message may be queued);
    /// `Some(None)` when the harness hung up; `Some(Some(answer))` otherwise.
    fn ends_next(self) -> Option<Option<Response>> {
        match self {
            Wake::Notified => None,
            Wake::HungUp => Some(None),
            Wake::Stopping => Some(Some(Response::Error {
                code: ErrorCode::ShuttingDown,
                message: "hive-c0re is stopping".into(),
            })),
            Wake::SpokeOutOfTurn => Some(Some(Response::Error {
                code: ErrorCode::BadRequest,
                message: "one request at a time".into(),
            })),
        }
    }
}

/// One request on `tools.sock` that [`admit`] admitted: `hello`, `list_tools` or `call_tool`.
pub(super) async fn tools_request(core: &Core, name: &AgentName, req: Request) -> Response {
    match req {
        Request::Hello { agent, .. } => Response::Welcome {
            agent,
            user_id: core
                .agents()
                .get(name)
                .map(|e| e.user_id.to_string())
                .unwrap_or_default(),
        },
        Request::ListTools {} => Response::Tools {
            tools: core.tool_infos(name),
        },
        Request::CallTool {
            name: tool,
            arguments,
        } => {
            let txn = format!(
                "hh-{name}-t{}",
                crate::c0re::registration::random_secret(12)
            );
            core.tool_once(name, &tool, &arguments, txn).await
        }
        _ => bad_request("this socket serves tools only (list_tools, call_tool)")
            .response()
            .expect("a refusal has a response"),
    }
}

mod end;
mod stream;
#[cfg(test)]
mod tests;
