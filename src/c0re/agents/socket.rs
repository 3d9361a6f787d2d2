//! Each agent's unix sockets and the connection loops behind them.
//!
//! The sockets live in `<data>/agents/<name>/sock/` (mode 0700): the directory, not the file, is
//! what a sandbox binds, so a restarted core's new socket is visible to a running harness.
//! One harness per agent at a time; one message in flight per agent; the message is done only
//! when the harness acks it. A connection that drops mid-turn puts the message back.
//!
//! This file is the plumbing: binding, permissions, accepting, the frame limit, reading one
//! request at a time and writing its answer. What a request does is `session.rs`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::AgentState;
use super::recv::Handover;
use super::session::{self, Admission, Session, Socket, Step};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::wire::protocol::{ErrorCode, Request, Response, SOCKET_NAME, TOOLS_SOCKET_NAME};

/// Largest request line accepted from a harness (the same limit the harness sends within).
const MAX_LINE: usize = crate::wire::protocol::MAX_FRAME;
/// `tools.sock` connections one agent may hold at once (each `hive mcp` holds one).
const MAX_TOOLS_CONNECTIONS: usize = 8;
/// A connection must say hello within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A `tools.sock` connection with no request for this long is closed (`hive mcp` reconnects).
const TOOLS_IDLE: Duration = Duration::from_secs(15 * 60);

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
        if let Some(gid) = self.agents().get(&name).and_then(|e| e.uid()) {
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
        // A destroyed agent's socket closes (its entry leaves the registry).
        let removed = self
            .agents()
            .get(&name)
            .map_or_else(Default::default, |e| e.removed().clone());
        let mut backoff = Duration::from_millis(50);
        loop {
            let accepted = tokio::select! {
                _ = self.cancel().cancelled() => break,
                _ = removed.cancelled() => break,
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
                        // The refused client may be gone already; nothing to tell anyone.
                        if let Err(e) = write_line(&mut w, &resp).await {
                            tracing::debug!(agent = %name, error = %format!("{e:#}"), "could not refuse a tools connection");
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            let core = self.clone();
            let name = name.clone();
            let removed = removed.clone();
            tokio::spawn(async move {
                let r = if tools_only {
                    // A destroy ends the connection, whatever it is doing.
                    let r = tokio::select! {
                        r = serve_tools_connection(&core, &name, stream) => r,
                        _ = removed.cancelled() => Ok(()),
                    };
                    drop(slot);
                    r
                } else {
                    serve_connection(&core, &name, stream, &removed).await
                };
                if let Err(e) = r {
                    tracing::warn!(agent = %name, error = %format!("{e:#}"), "agent connection ended with an error");
                }
            });
        }
        for p in [&path, &tools_path] {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::debug!(agent = %name, path = %p.display(), error = %e, "could not remove a socket at shutdown");
            }
        }
        Ok(())
    }
}

/// A tools-only connection (`hive mcp`): `hello`, then `list_tools` and `call_tool`.
async fn serve_tools_connection(
    core: &Core,
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
            _ = core.cancel().cancelled() => return Ok(()),
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
            write_line(&mut w, &too_large()).await?;
            return Ok(());
        }
        // What a `recv` in this call pulls is held until its answer is written (`recv.rs`).
        let handover = Handover::default();
        let resp = match serde_json::from_str::<Request>(line.trim_end()) {
            Err(e) => bad_request(e),
            Ok(req) => match session::admit(Socket::Tools, name, greeted, None, &req) {
                Admission::Admit => {
                    greeted |= matches!(req, Request::Hello { .. });
                    let call = handover.scope(session::tools_request(core, name, req));
                    tokio::pin!(call);
                    // The client is watched while the call runs: one that hangs up ends a
                    // recv's wait at once (the call itself runs to its end).
                    tokio::select! {
                        resp = &mut call => resp,
                        () = hung_up(&mut reader) => {
                            handover.hang_up();
                            call.await
                        }
                    }
                }
                refused @ Admission::Refuse { .. } => {
                    refused.response().expect("a refusal has a response")
                }
                closed @ Admission::Close { .. } => {
                    let resp = closed.response().expect("a refusal has a response");
                    write_line(&mut w, &resp).await?;
                    return Ok(());
                }
            },
        };
        throttle(&resp).await;
        let written = write_line(&mut w, &resp).await;
        core.hand_over(name, &handover, written.is_ok()).await;
        written?;
    }
}

/// Ends when the client on `reader` hung up (end of stream, or the connection broke); never
/// when it merely sent its next request early (that waits in the buffer for the loop).
async fn hung_up(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) {
    match reader.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// A harness connection on `c0re.sock`: claims the agent (one harness at a time), serves it
/// until it hangs up, the hive stops or the agent is destroyed (`removed`), and on the way out
/// puts a message in flight back and records the agent disconnected.
async fn serve_connection(
    core: &Core,
    name: &AgentName,
    stream: UnixStream,
    removed: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let entry = core.agents().get(name).context("agent vanished")?;
    let busy = {
        let mut connected = entry.connected.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *connected, true)
    };
    core.console().changed();
    if busy {
        let (_, mut w) = stream.into_split();
        let resp = Response::Error {
            code: ErrorCode::AlreadyConnected,
            message: format!("a harness for {name} is already connected"),
        };
        write_line(&mut w, &resp).await?;
        return Ok(());
    }
    let mut session = Session::new(core.clone(), name.clone());
    session.peer_pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    let result = tokio::select! {
        r = serve_harness(core, name, &mut session, stream) => r,
        // A cancelled turn: its harness is killed; what the core does for it (a model call)
        // ends with the connection, now.
        _ = entry.harness.cut() => {
            tracing::info!(agent = %name, "turn cancelled: its harness connection ends");
            Ok(())
        }
        _ = removed.cancelled() => {
            tracing::info!(agent = %name, "destroyed: its harness connection ends");
            Ok(())
        }
    };
    // The harness is gone: whatever it was doing goes back to the queue, and the agent is
    // free for its next harness whatever fails below.
    session.leave().await;
    *entry.connected.lock().unwrap_or_else(|p| p.into_inner()) = false;
    entry.notify.notify_one();
    core.console().changed();
    if let Err(e) = core
        .store()
        .set_agent_state(name.as_str(), AgentState::Disconnected, None)
    {
        tracing::warn!(agent = %name, error = %format!("{e:#}"), "could not record agent state");
    }
    result
}

/// Reads the harness's requests one at a time, admits each ([`session::admit`]) and writes the
/// session's answer.
async fn serve_harness(
    core: &Core,
    name: &AgentName,
    session: &mut Session,
    stream: UnixStream,
) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let greeted = session.greeted;
        let read = async {
            if greeted {
                Ok(read_bounded(&mut reader, &mut line).await)
            } else {
                tokio::time::timeout(HELLO_TIMEOUT, read_bounded(&mut reader, &mut line)).await
            }
        };
        let n = tokio::select! {
            _ = core.cancel().cancelled() => {
                write_line(&mut w, &stopping()).await.ok();
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
            write_line(&mut w, &too_large()).await?;
            return Ok(());
        }
        let req = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(r) => r,
            Err(e) => {
                write_line(&mut w, &bad_request(e)).await?;
                continue;
            }
        };
        let admission = session::admit(
            Socket::Harness,
            name,
            session.greeted,
            session.in_flight(),
            &req,
        );
        let resp = match admission {
            Admission::Admit => match req {
                // Its chunks are written as they come; the last answer below.
                Request::ModelStream { request } => session.model_stream(&request, &mut w).await?,
                req => match session.handle(req, &mut reader).await? {
                    Step::Answer(resp) => resp,
                    Step::Hangup => return Ok(()),
                },
            },
            Admission::Refuse { .. } => admission.response().expect("a refusal has a response"),
            Admission::Close { .. } => {
                let resp = admission.response().expect("a refusal has a response");
                write_line(&mut w, &resp).await?;
                return Ok(());
            }
        };
        throttle(&resp).await;
        write_line(&mut w, &resp).await?;
    }
}

fn too_large() -> Response {
    Response::Error {
        code: ErrorCode::BadRequest,
        message: "request too large".into(),
    }
}

fn bad_request(e: serde_json::Error) -> Response {
    Response::Error {
        code: ErrorCode::BadRequest,
        message: format!("bad request: {e}"),
    }
}

fn stopping() -> Response {
    Response::Error {
        code: ErrorCode::ShuttingDown,
        message: "hive-c0re is stopping".into(),
    }
}

/// How long a refusal for a rate limit is held before it is answered: a harness that keeps
/// calling after `rate_limited` (one request at a time on its socket) is slowed to a few calls
/// a second instead of keeping the core busy.
const RATE_LIMITED_PAUSE: Duration = Duration::from_millis(250);

/// Whether an answer refuses for a rate limit (and is held back [`RATE_LIMITED_PAUSE`]).
fn is_rate_limited(resp: &Response) -> bool {
    match resp {
        Response::Error { code, .. } => *code == ErrorCode::RateLimited,
        Response::ToolResult {
            content,
            is_error: true,
        } => content.starts_with("rate limit:"),
        _ => false,
    }
}

/// Holds back an answer that refuses for a rate limit.
async fn throttle(resp: &Response) {
    if is_rate_limited(resp) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_are_held_back() {
        struct Case {
            name: &'static str,
            response: Response,
            want: bool,
        }
        let cases = [
            Case {
                name: "a rate_limited error",
                response: Response::Error {
                    code: ErrorCode::RateLimited,
                    message: "rate limit: at most 120 messages per minute; try again in 1 s".into(),
                },
                want: true,
            },
            Case {
                name: "a tool refused for a rate limit",
                response: Response::ToolResult {
                    content: "rate limit: at most 120 reminders per hour; try again in 30 s".into(),
                    is_error: true,
                },
                want: true,
            },
            Case {
                name: "another error",
                response: Response::Error {
                    code: ErrorCode::NotAllowed,
                    message: "rate limit: in the text of another refusal".into(),
                },
                want: false,
            },
            Case {
                name: "another tool failure",
                response: Response::ToolResult {
                    content: "no tool named \"x\"".into(),
                    is_error: true,
                },
                want: false,
            },
            Case {
                name: "a tool result that merely says it",
                response: Response::ToolResult {
                    content: "rate limit: fine".into(),
                    is_error: false,
                },
                want: false,
            },
            Case {
                name: "a success",
                response: Response::Done,
                want: false,
            },
        ];
        for c in cases {
            assert_eq!(is_rate_limited(&c.response), c.want, "{}", c.name);
        }
    }
}
