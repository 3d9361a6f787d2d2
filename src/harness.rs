//! The agent harness (`hive agent`): runs inside the agent's sandbox, connects to its socket,
//! takes one message at a time, runs one brain turn, acks.
//!
//! It holds no token of any kind. When the core goes away (restart, upgrade) it reconnects with
//! backoff; the message it was working on is redelivered by the core. The socket's protocol and
//! client are [`crate::wire`]'s, shared with the core and `hive mcp`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::agent_spec::AgentSpec;
use crate::brain::{AnyBrain, Brain, BrainError, Tools};
use crate::wire::client::SocketClient;
use crate::wire::protocol::{ErrorCode, Request, Response};

pub struct HarnessOptions {
    pub spec: AgentSpec,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

/// Runs until `cancel` fires. A turn in progress is finished first.
pub async fn run(opts: HarnessOptions, cancel: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create {}", opts.state_dir.display()))?;
    let mut brain = AnyBrain::build(&opts.spec, &opts.state_dir, &opts.socket);
    let mut delay = Duration::from_millis(50);
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        match session(&opts, &mut brain, &cancel).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "lost hive-c0re; reconnecting");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One connection's worth of work. `Ok` means stop for good; `Err` means reconnect.
async fn session(
    opts: &HarnessOptions,
    brain: &mut anyhow::Result<AnyBrain>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut client = SocketClient::connect(&opts.socket).await?;
    let hello = Request::Hello {
        agent: opts.spec.name.to_string(),
        pid: std::process::id(),
    };
    match client.call(&hello).await? {
        Response::Welcome { user_id, .. } => tracing::info!(%user_id, "connected to hive-c0re"),
        Response::Error {
            code: ErrorCode::WrongAgent,
            message,
        } => anyhow::bail!("refused by hive-c0re: {message}"),
        other => anyhow::bail!("unexpected answer to hello: {other:?}"),
    }
    let brain = match brain {
        Ok(b) => b,
        Err(e) => {
            // Say it once (the core dedupes), keep the queue intact, and wait to be stopped.
            let reason = format!("{e:#}");
            tracing::error!(reason = %reason, "brain cannot run");
            client.call(&Request::BrainUnavailable { reason }).await?;
            cancel.cancelled().await;
            return Ok(());
        }
    };
    loop {
        let resp = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = client.call(&Request::Next {}) => r?,
        };
        let msg = match resp {
            Response::Message(m) => m,
            Response::Error {
                code: ErrorCode::ShuttingDown,
                ..
            } => anyhow::bail!("hive-c0re is stopping"),
            other => anyhow::bail!("unexpected answer to next: {other:?}"),
        };
        tracing::info!(id = msg.id, event_id = %msg.event_id, attempt = msg.attempt, "turn started");
        // The turn runs to the end even if a stop was requested meanwhile. An operator's
        // control message is the brain's to handle, never a prompt.
        let outcome = {
            let mut tools = Tools::new(&mut client);
            match msg.control {
                Some(c) => crate::brain::control_turn(brain, c, &mut tools).await,
                None => brain.turn(&msg, &mut tools).await,
            }
        };
        if msg.attempt == 1 {
            // Tests: the turn's effects are done, its ack is not (a crash at the worst moment).
            crate::failpoint::exit_at("harness-before-ack");
        }
        let done = match outcome {
            Ok(()) => Request::Ack { id: msg.id },
            Err(BrainError::Failed(error)) => {
                tracing::warn!(id = msg.id, %error, "turn failed");
                Request::Fail { id: msg.id, error }
            }
            Err(BrainError::Connection(e)) => return Err(e),
        };
        match client.call(&done).await? {
            Response::Done => tracing::info!(id = msg.id, "turn done"),
            other => tracing::warn!(id = msg.id, answer = ?other, "unexpected answer to ack"),
        }
    }
}
