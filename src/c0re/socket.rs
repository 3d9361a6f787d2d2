//! Each agent's unix socket and the delivery loop behind it.
//!
//! The socket lives in `<data>/agents/<name>/sock/` (mode 0700): the directory, not the file, is
//! what a sandbox binds, so a restarted core's new socket is visible to a running harness.
//! One harness per agent at a time; one message in flight per agent; the message is done only
//! when the harness acks it. A connection that drops mid-turn puts the message back.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::Context;
use ruma::api::client::{receipt, typing};
use ruma::events::receipt::ReceiptThread;
use ruma::{EventId, RoomId};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::Core;
use crate::agent_spec::AgentName;
use crate::harness::protocol::{
    ErrorCode, Message, Request, Response, SOCKET_NAME, TOOLS_SOCKET_NAME,
};
use crate::store::InboxItem;

/// Largest request line accepted from a harness (the same limit the harness sends within).
const MAX_LINE: usize = crate::harness::protocol::MAX_FRAME;
/// `tools.sock` connections one agent may hold at once (each `hive mcp` holds one).
const MAX_TOOLS_CONNECTIONS: usize = 8;
/// A connection must say hello within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A `tools.sock` connection with no request for this long is closed (`hive mcp` reconnects).
const TOOLS_IDLE: Duration = Duration::from_secs(15 * 60);

/// How long a turn runs before its agent shows as typing. Shorter turns never show it: the
/// notice would be gone before any client drew it, and each one is homeserver work (and an
/// ephemeral event pushed back to the appservice).
const TYPING_AFTER: Duration = Duration::from_millis(300);

impl Core {
    /// Binds agent `name`'s sockets and serves them until shutdown: `c0re.sock` for its
    /// harness (one at a time), `tools.sock` for tool calls only (`hive mcp`, any number).
    pub async fn serve_agent_socket(self, name: AgentName) -> anyhow::Result<()> {
        let dir = Core::socket_dir(self.data_dir(), &name);
        crate::fsutil::private_dir(&dir)?;
        let bind = |file: &str| -> anyhow::Result<(UnixListener, std::path::PathBuf)> {
            let path = dir.join(file);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot remove stale socket {}", path.display()));
                }
            }
            let listener = UnixListener::bind(&path)
                .with_context(|| format!("cannot bind {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            Ok((listener, path))
        };
        let (listener, path) = bind(SOCKET_NAME)?;
        let (tools, tools_path) = bind(TOOLS_SOCKET_NAME)?;
        // An agent with a uid of its own reaches its sockets through their group, and nobody
        // else's: the directory stays the core's (root:<gid> 0750, so the agent can plant
        // nothing in it), the sockets root:<gid> 0660.
        if let Some(gid) = self.agent(&name).and_then(|e| e.uid()) {
            let share = |p: &std::path::Path, mode: u32| -> anyhow::Result<()> {
                std::os::unix::fs::lchown(p, None, Some(gid))
                    .with_context(|| format!("cannot chgrp {}", p.display()))?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
                Ok(())
            };
            share(&dir, 0o750)?;
            share(&path, 0o660)?;
            share(&tools_path, 0o660)?;
        }
        tracing::debug!(agent = %name, path = %path.display(), "agent socket ready");
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_TOOLS_CONNECTIONS));
        let mut backoff = Duration::from_millis(50);
        loop {
            let accepted = tokio::select! {
                _ = self.cancel().cancelled() => break,
                r = listener.accept() => r.map(|(s, _)| (s, false)),
                r = tools.accept() => r.map(|(s, _)| (s, true)),
            };
            let (stream, tools_only) = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(50);
                    a
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) or the like: accepting again at once would
                    // spin; wait, longer each time.
                    tracing::warn!(agent = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = self.cancel().cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let slot = if tools_only {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        let (_, mut w) = stream.into_split();
                        let resp = Response::Error {
                            code: ErrorCode::BadRequest,
                            message: format!(
                                "{name} has {MAX_TOOLS_CONNECTIONS} tools connections open already"
                            ),
                        };
                        let _ = write_line(&mut w, &resp).await;
                        continue;
                    }
                }
            } else {
                None
            };
            let core = self.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let r = if tools_only {
                    let r = core.serve_tools_connection(&name, stream).await;
                    drop(slot);
                    r
                } else {
                    core.serve_connection(&name, stream).await
                };
                if let Err(e) = r {
                    tracing::warn!(agent = %name, error = %format!("{e:#}"), "agent connection ended with an error");
                }
            });
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&tools_path);
        Ok(())
    }

    /// A tools-only connection (`hive mcp`): `hello`, then `list_tools` and `call_tool`.
    async fn serve_tools_connection(
        &self,
        name: &AgentName,
        stream: UnixStream,
    ) -> anyhow::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        let mut greeted = false;
        loop {
            line.clear();
            let wait = if greeted { TOOLS_IDLE } else { HELLO_TIMEOUT };
            let n = tokio::select! {
                _ = self.cancel().cancelled() => return Ok(()),
                n = tokio::time::timeout(wait, read_bounded(&mut reader, &mut line)) => match n {
                    Ok(n) => n?,
                    Err(_) => {
                        tracing::debug!(agent = %name, "tools connection idle; closed");
                        return Ok(());
                    }
                },
            };
            if n == 0 {
                return Ok(());
            }
            if line.len() > MAX_LINE {
                let resp = Response::Error {
                    code: ErrorCode::BadRequest,
                    message: "request too large".into(),
                };
                write_line(&mut w, &resp).await?;
                return Ok(());
            }
            let resp = match serde_json::from_str::<Request>(line.trim_end()) {
                Err(e) => Response::Error {
                    code: ErrorCode::BadRequest,
                    message: format!("bad request: {e}"),
                },
                Ok(Request::Hello { agent, .. }) if agent == name.as_str() => {
                    greeted = true;
                    let user_id = self
                        .agent(name)
                        .map(|e| e.user_id.to_string())
                        .unwrap_or_default();
                    Response::Welcome {
                        agent: agent.clone(),
                        user_id,
                    }
                }
                Ok(Request::Hello { agent, .. }) => {
                    let resp = Response::Error {
                        code: ErrorCode::WrongAgent,
                        message: format!("this socket belongs to {name}, not {agent:?}"),
                    };
                    write_line(&mut w, &resp).await?;
                    return Ok(());
                }
                Ok(_) if !greeted => Response::Error {
                    code: ErrorCode::BadRequest,
                    message: "say hello first".into(),
                },
                Ok(Request::ListTools {}) => Response::Tools {
                    tools: self.tool_infos(name),
                },
                Ok(Request::CallTool {
                    name: tool,
                    arguments,
                }) => {
                    let txn = format!(
                        "hh-{name}-t{}",
                        crate::c0re::registration::random_secret(12)
                    );
                    self.tool_once(name, &tool, &arguments, txn).await
                }
                Ok(_) => Response::Error {
                    code: ErrorCode::BadRequest,
                    message: "this socket serves tools only (list_tools, call_tool)".into(),
                },
            };
            throttle(&resp).await;
            write_line(&mut w, &resp).await?;
        }
    }

    /// One tool call, at most once per call of a turn (see `effects.rs`).
    async fn tool_once(
        &self,
        agent: &AgentName,
        tool: &str,
        arguments: &serde_json::Value,
        fallback_txn: String,
    ) -> Response {
        self.once(agent, tool, arguments, fallback_txn, |txn| async move {
            let (content, is_error) = self.call_tool(agent, tool, arguments, &txn).await;
            if is_error {
                tracing::info!(%agent, tool, error = %content, "tool call failed");
            }
            Response::ToolResult { content, is_error }
        })
        .await
    }

    /// The tools `name` may call, as the wire protocol describes them.
    fn tool_infos(&self, name: &AgentName) -> Vec<crate::harness::protocol::ToolInfo> {
        self.tools_for(name)
            .into_iter()
            .map(|t| crate::harness::protocol::ToolInfo {
                name: t.name.to_owned(),
                description: t.description.to_owned(),
                input_schema: t.input_schema,
            })
            .collect()
    }

    async fn serve_connection(&self, name: &AgentName, stream: UnixStream) -> anyhow::Result<()> {
        let entry = self.agent(name).context("agent vanished")?;
        let busy = {
            let mut connected = entry.connected.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *connected, true)
        };
        {
            if busy {
                let (_, mut w) = stream.into_split();
                let resp = Response::Error {
                    code: ErrorCode::AlreadyConnected,
                    message: format!("a harness for {name} is already connected"),
                };
                write_line(&mut w, &resp).await?;
                return Ok(());
            }
        }
        let mut conn = Conn {
            core: self.clone(),
            name: name.clone(),
            inflight: None,
            typing: None,
            sends: 0,
        };
        let result = conn.run(stream).await;
        // The harness is gone: whatever it was doing goes back to the queue, and the agent is
        // free for its next harness whatever fails below.
        *entry.turn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(item) = conn.inflight.take() {
            tracing::warn!(agent = %name, event_id = %item.event_id, "harness left mid-turn; the message will be delivered again");
            self.release_until_done(name, item.id).await;
        }
        conn.stop_typing(None).await;
        *entry.connected.lock().unwrap_or_else(|p| p.into_inner()) = false;
        entry.notify.notify_one();
        if let Err(e) = self
            .store()
            .set_agent_state(name.as_str(), "disconnected", None)
        {
            tracing::warn!(agent = %name, error = %format!("{e:#}"), "could not record agent state");
        }
        result
    }

    /// Puts a message back in its queue, retrying while the store fails (it must not stay in
    /// flight: nothing would deliver it until a restart).
    async fn release_until_done(&self, name: &AgentName, id: i64) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.store().release(id) {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(agent = %name, id, error = %format!("{e:#}"), "cannot put a message back; retrying");
                    tokio::select! {
                        // At the next start every in-flight message is put back anyway.
                        _ = self.cancel().cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

struct Conn {
    core: Core,
    name: AgentName,
    inflight: Option<InboxItem>,
    typing: Option<Typing>,
    /// Sends within the current turn, for stable transaction ids.
    sends: u32,
}

/// How long a refusal for a rate limit is held before it is answered: a harness that keeps
/// calling after `rate_limited` (one request at a time on its socket) is slowed to a few calls
/// a second instead of keeping the core busy.
const RATE_LIMITED_PAUSE: Duration = Duration::from_millis(250);

/// Holds back an answer that refuses for a rate limit.
async fn throttle(resp: &Response) {
    let limited = match resp {
        Response::Error { code, .. } => *code == ErrorCode::RateLimited,
        Response::ToolResult {
            content,
            is_error: true,
        } => content.starts_with("rate limit:"),
        _ => false,
    };
    if limited {
        tokio::time::sleep(RATE_LIMITED_PAUSE).await;
    }
}

/// Reads one line of at most `MAX_LINE` (+1, to detect overflow) bytes.
async fn read_bounded(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    line: &mut String,
) -> std::io::Result<usize> {
    let mut limited = reader.take(MAX_LINE as u64 + 1);
    limited.read_line(line).await
}

async fn write_line(w: &mut (impl AsyncWriteExt + Unpin), resp: &Response) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(resp)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    Ok(())
}

impl Conn {
    async fn run(&mut self, stream: UnixStream) -> anyhow::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        let mut greeted = false;
        loop {
            line.clear();
            let read = async {
                if greeted {
                    Ok(read_bounded(&mut reader, &mut line).await)
                } else {
                    tokio::time::timeout(HELLO_TIMEOUT, read_bounded(&mut reader, &mut line)).await
                }
            };
            let n = tokio::select! {
                _ = self.core.cancel().cancelled() => {
                    write_line(&mut w, &Response::Error { code: ErrorCode::ShuttingDown, message: "hive-c0re is stopping".into() }).await.ok();
                    return Ok(());
                }
                n = read => match n {
                    Ok(n) => n?,
                    Err(_) => return Ok(()), // no hello in time
                },
            };
            if n == 0 {
                return Ok(());
            }
            if line.len() > MAX_LINE {
                write_line(
                    &mut w,
                    &Response::Error {
                        code: ErrorCode::BadRequest,
                        message: "request too large".into(),
                    },
                )
                .await?;
                return Ok(());
            }
            let req = match serde_json::from_str::<Request>(line.trim_end()) {
                Ok(r) => r,
                Err(e) => {
                    write_line(
                        &mut w,
                        &Response::Error {
                            code: ErrorCode::BadRequest,
                            message: format!("bad request: {e}"),
                        },
                    )
                    .await?;
                    continue;
                }
            };
            if !greeted && !matches!(req, Request::Hello { .. }) {
                write_line(
                    &mut w,
                    &Response::Error {
                        code: ErrorCode::BadRequest,
                        message: "say hello first".into(),
                    },
                )
                .await?;
                continue;
            }
            let resp = match req {
                Request::Hello { agent, pid } => {
                    if agent != self.name.as_str() {
                        write_line(
                            &mut w,
                            &Response::Error {
                                code: ErrorCode::WrongAgent,
                                message: format!(
                                    "this socket belongs to {}, not {agent:?}",
                                    self.name
                                ),
                            },
                        )
                        .await?;
                        return Ok(());
                    }
                    greeted = true;
                    self.core.store().set_agent_state(
                        self.name.as_str(),
                        "connected",
                        Some(pid),
                    )?;
                    let entry = self.core.agent(&self.name).context("agent vanished")?;
                    tracing::info!(agent = %self.name, pid, "harness connected");
                    Response::Welcome {
                        agent: self.name.to_string(),
                        user_id: entry.user_id.to_string(),
                    }
                }
                Request::Next {} => {
                    if self.inflight.is_some() {
                        Response::Error {
                            code: ErrorCode::BadRequest,
                            message: "ack or fail the current message first".into(),
                        }
                    } else {
                        match self.next(&mut reader).await? {
                            Some(resp) => resp,
                            None => return Ok(()),
                        }
                    }
                }
                Request::Reply { body } => match self.inflight.clone() {
                    None => Response::Error {
                        code: ErrorCode::BadRequest,
                        message: "no message in flight to reply to".into(),
                    },
                    Some(item) => {
                        let fallback = self.txn_id(item.id);
                        let (room, ev, sender) = (item.room_id, item.event_id, item.sender);
                        let (core, name) = (self.core.clone(), self.name.clone());
                        let me = self.name.clone();
                        self.core
                            .once(
                                &me,
                                "reply",
                                &serde_json::json!({}),
                                fallback,
                                |txn| async move {
                                    match core
                                        .agent_reply(&name, &room, &ev, &sender, &body, &txn)
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
                                },
                            )
                            .await
                    }
                },
                Request::SendMessage { to, body } => {
                    let fallback = self.txn_id(self.inflight.as_ref().map_or(0, |i| i.id));
                    let (core, name) = (self.core.clone(), self.name.clone());
                    let me = self.name.clone();
                    let args = serde_json::json!({ "to": to });
                    self.core
                        .once(&me, "send_message", &args, fallback, |txn| async move {
                            match core.agent_send(&name, &to, &body, &txn).await {
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
                Request::RequestApplyCommit {
                    agent,
                    sha,
                    summary,
                } => {
                    let args = serde_json::json!({ "agent": agent, "sha": sha });
                    let me = self.name.clone();
                    let filed = self
                        .core
                        .request_apply_commit(me.as_str(), &agent, &sha, &summary);
                    let (core, fallback) = (self.core.clone(), String::new());
                    core.once(&me, "request_apply_commit", &args, fallback, |_| {
                        self.manager_request("request_apply_commit", filed)
                    })
                    .await
                }
                Request::RequestInitConfig { name, summary } => {
                    let args = serde_json::json!({ "name": name });
                    let me = self.name.clone();
                    let filed = self.core.request_init_config(me.as_str(), &name, &summary);
                    let core = self.core.clone();
                    core.once(&me, "request_init_config", &args, String::new(), |_| {
                        self.manager_request("request_init_config", filed)
                    })
                    .await
                }
                Request::Model { request } => match self.inflight.as_ref().map(|i| i.id) {
                    None => Response::Error {
                        code: ErrorCode::BadRequest,
                        message: "model calls are made during a turn".into(),
                    },
                    Some(inbox_id) => {
                        match self.core.model_call(&self.name, inbox_id, &request).await {
                            Ok(body) => Response::ModelResponse { body },
                            Err(r) => Response::Error {
                                code: r.code,
                                message: r.message,
                            },
                        }
                    }
                },
                Request::ListTools {} => Response::Tools {
                    tools: self.core.tool_infos(&self.name),
                },
                Request::CallTool { name, arguments } => {
                    let fallback = self.txn_id(self.inflight.as_ref().map_or(0, |i| i.id));
                    let me = self.name.clone();
                    self.core.tool_once(&me, &name, &arguments, fallback).await
                }
                Request::AskOperator {
                    question,
                    options,
                    ttl_secs,
                } => {
                    let (core, me) = (self.core.clone(), self.name.clone());
                    core.once(
                        &me,
                        "ask_operator",
                        &serde_json::json!({}),
                        String::new(),
                        |_| async {
                            match core.ask_operator(&me, &question, &options, ttl_secs) {
                                Ok(question_id) => Response::Asked { question_id },
                                Err(message) => Response::Error {
                                    code: ErrorCode::BadRequest,
                                    message,
                                },
                            }
                        },
                    )
                    .await
                }
                Request::Ack { id } => self.finish(id, None).await?,
                Request::Fail { id, error } => self.finish(id, Some(error)).await?,
                Request::BrainUnavailable { reason } => {
                    self.cannot_think(&reason).await?;
                    Response::Done
                }
            };
            throttle(&resp).await;
            write_line(&mut w, &resp).await?;
        }
    }

    /// Files an approval request for a manager; anyone else is refused before `filed` runs.
    async fn manager_request(
        &self,
        tool: &str,
        filed: impl std::future::Future<Output = Result<i64, crate::c0re::approvals::RequestRefused>>,
    ) -> Response {
        if let Err(message) = self.core.require_manager(&self.name, tool) {
            return Response::Error {
                code: ErrorCode::NotAllowed,
                message,
            };
        }
        match filed.await {
            Ok(approval_id) => Response::Requested { approval_id },
            Err(r) => Response::Error {
                code: ErrorCode::Refused,
                message: r.0,
            },
        }
    }

    /// A transaction id stable across re-runs of the same turn, unique per agent.
    fn txn_id(&mut self, inbox_id: i64) -> String {
        self.sends += 1;
        if inbox_id == 0 {
            format!(
                "hh-{}-x{}",
                self.name,
                crate::c0re::registration::random_secret(12)
            )
        } else {
            format!("hh-{}-{}-{}", self.name, inbox_id, self.sends)
        }
    }

    /// Says in the agent's room, once per reason, that it cannot think; its messages wait.
    async fn cannot_think(&self, reason: &str) -> anyhow::Result<()> {
        if self
            .core
            .store()
            .set_brain_notice(self.name.as_str(), Some(reason))?
        {
            let room = self
                .core
                .room(&super::rooms::RoomKey::Inbox(self.name.clone()));
            let text = format!(
                "⚠️ {} cannot think right now: {reason}. Messages wait in the queue until its brain can run.",
                self.name
            );
            self.core
                .post_as_agent_or_notice(&self.name, room, &text)
                .await;
        }
        Ok(())
    }

    /// Waits for the agent's next message. `None`: the harness hung up while waiting.
    async fn next(
        &mut self,
        reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    ) -> anyhow::Result<Option<Response>> {
        let entry = self.core.agent(&self.name).context("agent vanished")?;
        // A model brain whose provider hive.toml does not grant cannot think, whatever its
        // harness could start: said once, and no message is handed out (they wait in the queue,
        // as when the harness itself says its brain cannot run).
        if let Err(why) = self.core.cfg().provider_for(&entry.spec().brain) {
            self.cannot_think(&why.to_string()).await?;
            tokio::select! {
                _ = self.core.cancel().cancelled() => {
                    return Ok(Some(Response::Error { code: ErrorCode::ShuttingDown, message: "hive-c0re is stopping".into() }));
                }
                r = reader.fill_buf() => {
                    return Ok(match r {
                        Ok([]) | Err(_) => None,
                        Ok(_) => Some(Response::Error { code: ErrorCode::BadRequest, message: "one request at a time".into() }),
                    });
                }
            }
        }
        loop {
            let core = self.core.clone();
            let name = self.name.to_string();
            let max = core.cfg().max_attempts;
            let (item, dead) =
                tokio::task::spawn_blocking(move || core.store().take_next(&name, max)).await??;
            for d in dead {
                self.core.dead_letter_notice(&d).await;
            }
            if let Some(item) = item {
                self.sends = 0;
                self.start_typing(&item);
                let msg = Message {
                    id: item.id,
                    event_id: item.event_id.clone(),
                    room_id: item.room_id.clone(),
                    sender: item.sender.clone(),
                    body: item.body.clone(),
                    attempt: item.attempts,
                    event: item
                        .hive_event
                        .as_deref()
                        .and_then(|e| serde_json::from_str(e).ok()),
                };
                *entry.turn.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(crate::c0re::effects::TurnCalls::new(item.id));
                self.inflight = Some(item);
                return Ok(Some(Response::Message(msg)));
            }
            tokio::select! {
                _ = entry.notify.notified() => {}
                _ = self.core.cancel().cancelled() => {
                    return Ok(Some(Response::Error { code: ErrorCode::ShuttingDown, message: "hive-c0re is stopping".into() }));
                }
                // The harness sends nothing while it waits: readable means it hung up.
                r = reader.fill_buf() => {
                    match r {
                        Ok([]) | Err(_) => return Ok(None),
                        Ok(_) => return Ok(Some(Response::Error { code: ErrorCode::BadRequest, message: "one request at a time".into() })),
                    }
                }
            }
        }
    }

    async fn finish(&mut self, id: i64, failure: Option<String>) -> anyhow::Result<Response> {
        let Some(item) = self.inflight.take_if(|i| i.id == id) else {
            return Ok(Response::Error {
                code: ErrorCode::BadRequest,
                message: format!("message {id} is not in flight on this connection"),
            });
        };
        if let Some(entry) = self.core.agent(&self.name) {
            *entry.turn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        match &failure {
            None => {
                self.core.store().ack(id)?;
                // A successful turn clears a brain problem once reported.
                self.core
                    .store()
                    .set_brain_notice(self.name.as_str(), None)?;
            }
            Some(reason) => {
                self.core.store().fail(id, reason)?;
                self.core
                    .dead_letter_notice(&InboxItem { ..item.clone() })
                    .await;
                let room = RoomId::parse(&item.room_id).ok();
                let text = format!("⚠️ {} could not handle this message: {reason}", self.name);
                self.core
                    .post_as_agent_or_notice(&self.name, room, &text)
                    .await;
            }
        }
        self.stop_typing(Some(&item)).await;
        Ok(Response::Done)
    }

    fn start_typing(&mut self, item: &InboxItem) {
        let Ok(room) = RoomId::parse(&item.room_id) else {
            return;
        };
        let core = self.core.clone();
        let Some(user) = core.agent(&self.name).map(|e| e.user_id.clone()) else {
            return;
        };
        if let Some(t) = self.typing.take() {
            t.handle.abort();
        }
        let shown = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = shown.clone();
        // Typing is a courtesy, shown once a turn has run for TYPING_AFTER and refreshed while it
        // runs; failures only get logged. A turn that ends sooner costs the homeserver nothing.
        let handle = tokio::spawn(async move {
            tokio::time::sleep(TYPING_AFTER).await;
            loop {
                let state = typing::create_typing_event::v3::Typing::Yes(
                    typing::create_typing_event::v3::TypingInfo::new(Duration::from_secs(30)),
                );
                let req = typing::create_typing_event::v3::Request::new(
                    user.clone(),
                    room.clone(),
                    state,
                );
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                if let Err(e) = core.client().send(req, Some(&user)).await {
                    tracing::debug!(error = %e, "typing notice failed");
                }
                tokio::time::sleep(Duration::from_secs(25)).await;
            }
        });
        self.typing = Some(Typing {
            handle,
            shown,
            room: item.room_id.clone(),
        });
    }

    /// Ends the turn's typing notice (if one was shown); with `done`, also marks the message
    /// read, unless a later message of the same room is already waiting (its receipt will
    /// cover this one: receipts are cumulative).
    async fn stop_typing(&mut self, done: Option<&InboxItem>) {
        let Some(t) = self.typing.take() else { return };
        t.handle.abort();
        let Some(user) = self.core.agent(&self.name).map(|e| e.user_id.clone()) else {
            return;
        };
        let shown = t.shown.load(std::sync::atomic::Ordering::SeqCst);
        let receipt_for = match done {
            Some(item) => {
                let later = self
                    .core
                    .store()
                    .has_later_pending(self.name.as_str(), &item.room_id, item.id)
                    .unwrap_or(false);
                (!later)
                    .then(|| EventId::parse(&item.event_id).ok())
                    .flatten()
            }
            None => None,
        };
        if !shown && receipt_for.is_none() {
            return;
        }
        let Ok(room) = RoomId::parse(&t.room) else {
            return;
        };
        let core = self.core.clone();
        tokio::spawn(async move {
            if shown {
                let req = typing::create_typing_event::v3::Request::new(
                    user.clone(),
                    room.clone(),
                    typing::create_typing_event::v3::Typing::No,
                );
                if let Err(e) = core.client().send(req, Some(&user)).await {
                    tracing::debug!(error = %e, "typing off failed");
                }
            }
            if let Some(event) = receipt_for {
                let mut req = receipt::create_receipt::v3::Request::new(
                    room,
                    receipt::create_receipt::v3::ReceiptType::Read,
                    event,
                );
                req.thread = ReceiptThread::Unthreaded;
                if let Err(e) = core.client().send(req, Some(&user)).await {
                    tracing::debug!(error = %e, "read receipt failed");
                }
            }
        });
    }
}

/// The typing notice of the turn in flight.
struct Typing {
    handle: tokio::task::JoinHandle<()>,
    /// Whether a typing notice was sent (so one must be withdrawn).
    shown: std::sync::Arc<std::sync::atomic::AtomicBool>,
    room: String,
}
