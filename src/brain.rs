//! Brains: what decides an agent's answer. One turn per inbound message; during the turn the
//! brain calls tools (reply, send_message, …) that the core executes under the agent's policy.
//!
//! The trait is built for model backends: a turn may call many tools and read their results
//! (multi-step tool use), and a backend keeps whatever session it needs in the agent's state dir.

pub mod anthropic;
pub mod claude_code;
pub mod command;
pub mod model;
pub mod openai;
pub mod scripted;

use std::future::Future;
use std::path::Path;

use crate::agent_spec::{AgentSpec, BrainSpec};
use crate::wire::client::{SocketClient, ToolError};
use crate::wire::protocol::{Control, Message, Request, Response, ToolInfo};

/// Why a turn did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BrainError {
    /// This message could not be handled (bad output, timeout): it is dead-lettered.
    #[error("{0}")]
    Failed(String),
    /// The socket to the core broke: the harness reconnects and the message is redelivered.
    #[error("connection to hive-c0re lost: {0:#}")]
    Connection(anyhow::Error),
}

/// The tools a brain may call during a turn; each goes through the core.
pub struct Tools<'a> {
    client: &'a mut SocketClient,
}

impl<'a> Tools<'a> {
    pub fn new(client: &'a mut SocketClient) -> Self {
        Self { client }
    }

    /// A tool whose success is an id (event, approval, question); a broken socket is a
    /// connection error (the message is redelivered).
    async fn tool(&mut self, req: &Request) -> Result<Result<String, ToolError>, BrainError> {
        self.client.tool(req).await.map_err(BrainError::Connection)
    }

    /// Replies in the room the message came from.
    pub async fn reply(&mut self, body: &str) -> Result<Result<String, ToolError>, BrainError> {
        self.tool(&Request::Reply {
            body: body.to_owned(),
        })
        .await
    }

    /// Messages another agent (or `operator`).
    pub async fn send_message(
        &mut self,
        to: &str,
        body: &str,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.tool(&Request::SendMessage {
            to: to.to_owned(),
            body: body.to_owned(),
        })
        .await
    }

    /// Managers only: asks the operators to apply commit `sha` to `agent`. Returns the
    /// approval request's id; the decision comes back later as a message.
    pub async fn request_apply_commit(
        &mut self,
        agent: &str,
        sha: &str,
        summary: &str,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.tool(&Request::RequestApplyCommit {
            agent: agent.to_owned(),
            sha: sha.to_owned(),
            summary: summary.to_owned(),
        })
        .await
    }

    /// Managers only: asks the operators to spawn agent `name` from the template.
    pub async fn request_init_config(
        &mut self,
        name: &str,
        summary: &str,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.tool(&Request::RequestInitConfig {
            name: name.to_owned(),
            summary: summary.to_owned(),
        })
        .await
    }

    /// Asks the operators a question; the answer comes back later as a message.
    pub async fn ask_operator(
        &mut self,
        question: &str,
        options: &[String],
        ttl_secs: Option<u64>,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.tool(&Request::AskOperator {
            question: question.to_owned(),
            options: options.to_vec(),
            ttl_secs,
        })
        .await
    }

    /// The hive's tools this agent may call, with their JSON Schemas.
    pub async fn list_tools(&mut self) -> Result<Vec<ToolInfo>, BrainError> {
        match self
            .client
            .call(&Request::ListTools {})
            .await
            .map_err(BrainError::Connection)?
        {
            Response::Tools { tools } => Ok(tools),
            other => Err(BrainError::Failed(format!(
                "unexpected answer to list_tools: {other:?}"
            ))),
        }
    }

    /// Runs one of the hive's tools: (result text, is_error).
    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<(String, bool), BrainError> {
        match self
            .client
            .call(&Request::CallTool {
                name: name.to_owned(),
                arguments,
            })
            .await
            .map_err(BrainError::Connection)?
        {
            Response::ToolResult { content, is_error } => Ok((content, is_error)),
            Response::Error { message, .. } => Ok((message, true)),
            other => Err(BrainError::Failed(format!(
                "unexpected answer to call_tool: {other:?}"
            ))),
        }
    }

    /// One model request through the core (which holds the key and enforces budgets).
    pub async fn model(
        &mut self,
        request: serde_json::Value,
    ) -> Result<Result<serde_json::Value, ToolError>, BrainError> {
        match self
            .client
            .call(&Request::Model { request })
            .await
            .map_err(BrainError::Connection)?
        {
            Response::ModelResponse { body } => Ok(Ok(body)),
            Response::Error { code, message } => Ok(Err(ToolError { code, message })),
            other => Err(BrainError::Failed(format!(
                "unexpected answer to model: {other:?}"
            ))),
        }
    }

    /// One model request through the core, streamed: read its chunks with
    /// [`ModelStream::next`] until the answer (see `model_stream` in docs/protocol.md).
    pub async fn model_stream(
        &mut self,
        request: serde_json::Value,
    ) -> Result<ModelStream<'_>, BrainError> {
        self.client
            .send(&Request::ModelStream { request })
            .await
            .map_err(BrainError::Connection)?;
        Ok(ModelStream {
            client: self.client,
            done: false,
        })
    }

    /// Replies in the room; a refusal fails the turn (it is dead-lettered and the operator told).
    pub async fn say(&mut self, body: &str) -> Result<(), BrainError> {
        self.reply(body)
            .await?
            .map_err(|e| BrainError::Failed(e.to_string()))?;
        Ok(())
    }

    /// Says the agent is over a model budget (`why` from the core), ending the turn cleanly.
    pub async fn stop_over_budget(&mut self, why: &str) -> Result<(), BrainError> {
        self.say(&format!("I have to stop here: I am {why}.")).await
    }
}

/// A streamed model call in progress: its chunks, then its answer.
pub struct ModelStream<'c> {
    client: &'c mut SocketClient,
    done: bool,
}

/// One step of a streamed model call.
#[derive(Debug)]
pub enum Streamed {
    /// One server-sent event, as the provider sent it (`event:`/`data:` lines).
    Chunk(String),
    /// The end: the assembled answer, or the core's refusal (mid-stream too: the chunks so
    /// far are then void).
    Done(Result<serde_json::Value, ToolError>),
}

impl ModelStream<'_> {
    /// The next chunk, or the answer (after which there is nothing more to read).
    pub async fn next(&mut self) -> Result<Streamed, BrainError> {
        if self.done {
            return Err(BrainError::Failed("the model stream has ended".into()));
        }
        let step = match self.client.read().await.map_err(BrainError::Connection)? {
            Response::ModelChunk { event } => Streamed::Chunk(event),
            Response::ModelResponse { body } => Streamed::Done(Ok(body)),
            Response::Error { code, message } => Streamed::Done(Err(ToolError { code, message })),
            other => {
                return Err(BrainError::Failed(format!(
                    "unexpected answer to model_stream: {other:?}"
                )));
            }
        };
        self.done = matches!(step, Streamed::Done(_));
        Ok(step)
    }
}

pub trait Brain: Send {
    /// Handles one message. Returning `Ok` acks it: it will not be delivered again.
    fn turn(
        &mut self,
        msg: &Message,
        tools: &mut Tools<'_>,
    ) -> impl Future<Output = Result<(), BrainError>> + Send;

    /// Handles an operator's control message (`!compact`, `!new-session`) instead of a turn:
    /// what was done, said in the room as the agent's reply (nothing when empty). A brain with
    /// no context to shrink or forget says so ([`unsupported`]).
    fn control(
        &mut self,
        control: Control,
        tools: &mut Tools<'_>,
    ) -> impl Future<Output = Result<String, BrainError>> + Send;
}

/// The backends this build can run.
pub enum AnyBrain {
    Scripted(scripted::Scripted),
    Command(command::Command),
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    ClaudeCode(claude_code::ClaudeCode),
}

impl AnyBrain {
    /// Builds the agent's brain, or says plainly why it cannot run (the harness says it once
    /// in the agent's room; nobody branches on it).
    pub fn build(spec: &AgentSpec, state_dir: &Path, socket: &Path) -> anyhow::Result<Self> {
        match &spec.brain {
            BrainSpec::Scripted { rules } => Ok(AnyBrain::Scripted(scripted::Scripted::new(
                spec.name.to_string(),
                rules.clone(),
            ))),
            BrainSpec::Command {
                command,
                timeout_secs,
            } => command::Command::new(spec, command, *timeout_secs, state_dir)
                .map(AnyBrain::Command),
            BrainSpec::Openai { .. } => Ok(AnyBrain::OpenAi(openai::OpenAi(
                model::ModelBrain::new(spec, state_dir),
            ))),
            BrainSpec::Anthropic { .. } => Ok(AnyBrain::Anthropic(anthropic::Anthropic(
                model::ModelBrain::new(spec, state_dir),
            ))),
            BrainSpec::ClaudeCode { .. } => {
                claude_code::ClaudeCode::new(spec, state_dir, socket).map(AnyBrain::ClaudeCode)
            }
            #[allow(unreachable_patterns)]
            other => Err(anyhow::anyhow!(
                "its brain is `{}`, which this build of hyperhive cannot run yet",
                other.kind()
            )),
        }
    }
}

impl Brain for AnyBrain {
    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        match self {
            AnyBrain::Scripted(b) => b.turn(msg, tools).await,
            AnyBrain::Command(b) => b.turn(msg, tools).await,
            AnyBrain::OpenAi(b) => b.turn(msg, tools).await,
            AnyBrain::Anthropic(b) => b.turn(msg, tools).await,
            AnyBrain::ClaudeCode(b) => b.turn(msg, tools).await,
        }
    }

    async fn control(&mut self, c: Control, tools: &mut Tools<'_>) -> Result<String, BrainError> {
        match self {
            AnyBrain::Scripted(b) => b.control(c, tools).await,
            AnyBrain::Command(b) => b.control(c, tools).await,
            AnyBrain::OpenAi(b) => b.control(c, tools).await,
            AnyBrain::Anthropic(b) => b.control(c, tools).await,
            AnyBrain::ClaudeCode(b) => b.control(c, tools).await,
        }
    }
}

/// What a brain without a context of its own answers to a control message.
pub fn unsupported(kind: &str, c: Control) -> String {
    format!(
        "`{}` is not supported by my brain (`{kind}`): it keeps no context between messages.",
        c.command()
    )
}

/// The harness's side of a control message: the brain handles it and what it did is said.
pub async fn control_turn(
    brain: &mut impl Brain,
    c: Control,
    tools: &mut Tools<'_>,
) -> Result<(), BrainError> {
    let said = brain.control(c, tools).await?;
    if !said.is_empty() {
        tools.say(&said).await?;
    }
    Ok(())
}

/// A message as a model sees it: `<sender> wrote:\n<body>`; a core event says so and carries
/// its data, which only the core can send (a person writing `approval_outcome: …` is a person).
pub fn prompt_of(msg: &Message) -> String {
    match &msg.event {
        Some(event) => format!(
            "hive-c0re (the hive itself, not a person) reports a `{}` event:\n{event}\n\n{}",
            event["kind"].as_str().unwrap_or("core"),
            msg.body
        ),
        None => format!("{} wrote:\n{}", msg.sender, msg.body),
    }
}

/// Fills `{body}`, `{rest}`, `{sender}` and `{agent}` in a template.
pub fn render_template(template: &str, msg: &Message, rest: &str, agent: &str) -> String {
    template
        .replace("{body}", msg.body.trim())
        .replace("{rest}", rest)
        .replace("{sender}", &msg.sender)
        .replace("{agent}", agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_events_are_told_apart_from_people() {
        let mut msg = Message {
            id: 1,
            event_id: "$e".into(),
            room_id: "!r:x".into(),
            sender: "@op:x".into(),
            body: "approval_outcome: request #1: applied".into(),
            attempt: 1,
            event: None,
            control: None,
        };
        // Typed by a person: a person's words, whatever they say.
        assert_eq!(
            prompt_of(&msg),
            "@op:x wrote:\napproval_outcome: request #1: applied"
        );
        msg.event = Some(serde_json::json!({"kind": "approval_outcome", "approval_id": 1}));
        let p = prompt_of(&msg);
        assert!(
            p.starts_with(
                "hive-c0re (the hive itself, not a person) reports a `approval_outcome` event:\n{"
            ),
            "{p}"
        );
        assert!(p.contains("\"approval_id\":1"), "{p}");
    }
}
