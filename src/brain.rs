//! Brains: what decides an agent's answer. One turn per inbound message; during the turn the
//! brain calls tools (reply, send_message, …) that the core executes under the agent's policy.
//!
//! The trait is built for model backends: a turn may call many tools and read their results
//! (multi-step tool use), and a backend keeps whatever session it needs in the agent's state dir.

pub mod anthropic;
pub mod claude_code;
pub mod command;
pub mod openai;
pub mod scripted;

use std::future::Future;
use std::path::Path;

use crate::agent_spec::{AgentSpec, BrainSpec};
use crate::harness::client::{SocketClient, ToolError};
use crate::harness::protocol::{Message, Request};

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

    /// Replies in the room the message came from.
    pub async fn reply(&mut self, body: &str) -> Result<Result<String, ToolError>, BrainError> {
        self.client
            .tool(&Request::Reply {
                body: body.to_owned(),
            })
            .await
            .map_err(BrainError::Connection)
    }

    /// Messages another agent (or `operator`).
    pub async fn send_message(
        &mut self,
        to: &str,
        body: &str,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.client
            .tool(&Request::SendMessage {
                to: to.to_owned(),
                body: body.to_owned(),
            })
            .await
            .map_err(BrainError::Connection)
    }
}

impl Tools<'_> {
    /// Managers only: asks the operators to apply commit `sha` to `agent`. Returns the
    /// approval request's id; the decision comes back later as a message.
    pub async fn request_apply_commit(
        &mut self,
        agent: &str,
        sha: &str,
        summary: &str,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.client
            .tool(&Request::RequestApplyCommit {
                agent: agent.to_owned(),
                sha: sha.to_owned(),
                summary: summary.to_owned(),
            })
            .await
            .map_err(BrainError::Connection)
    }
}

impl Tools<'_> {
    /// Managers only: asks the operators to spawn agent `name` from the template.
    pub async fn request_init_config(
        &mut self,
        name: &str,
        summary: &str,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.client
            .tool(&Request::RequestInitConfig {
                name: name.to_owned(),
                summary: summary.to_owned(),
            })
            .await
            .map_err(BrainError::Connection)
    }
}

impl Tools<'_> {
    /// Asks the operators a question; the answer comes back later as a message.
    pub async fn ask_operator(
        &mut self,
        question: &str,
        options: &[String],
        ttl_secs: Option<u64>,
    ) -> Result<Result<String, ToolError>, BrainError> {
        self.client
            .tool(&Request::AskOperator {
                question: question.to_owned(),
                options: options.to_vec(),
                ttl_secs,
            })
            .await
            .map_err(BrainError::Connection)
    }
}

impl Tools<'_> {
    /// The hive's tools this agent may call, with their JSON Schemas.
    pub async fn list_tools(
        &mut self,
    ) -> Result<Vec<crate::harness::protocol::ToolInfo>, BrainError> {
        match self
            .client
            .call(&Request::ListTools {})
            .await
            .map_err(BrainError::Connection)?
        {
            crate::harness::protocol::Response::Tools { tools } => Ok(tools),
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
            crate::harness::protocol::Response::ToolResult { content, is_error } => {
                Ok((content, is_error))
            }
            crate::harness::protocol::Response::Error { message, .. } => Ok((message, true)),
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
            crate::harness::protocol::Response::ModelResponse { body } => Ok(Ok(body)),
            crate::harness::protocol::Response::Error { code, message } => {
                Ok(Err(ToolError { code, message }))
            }
            other => Err(BrainError::Failed(format!(
                "unexpected answer to model: {other:?}"
            ))),
        }
    }
}

impl Tools<'_> {
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

/// The tools a model-backed brain offers in a turn: the hive's (run by the core) and those of
/// the MCP servers the agent declares (run in the harness, see `mcp::client`).
pub struct Toolbox {
    servers: crate::mcp::client::DeclaredServers,
    /// The declared servers that could not be started this turn, for the reply.
    unavailable: Option<String>,
}

impl Toolbox {
    pub fn new(spec: &AgentSpec, state_dir: &Path) -> Self {
        Self {
            servers: crate::mcp::client::DeclaredServers::new(spec, state_dir),
            unavailable: None,
        }
    }

    /// Every tool on offer this turn, and a line for the system prompt naming declared servers
    /// that could not be started (empty when all run).
    pub async fn offer(
        &mut self,
        tools: &mut Tools<'_>,
    ) -> Result<(Vec<crate::harness::protocol::ToolInfo>, String), BrainError> {
        let mut all = tools.list_tools().await?;
        self.unavailable = None;
        if self.servers.is_empty() {
            return Ok((all, String::new()));
        }
        let offered = self.servers.offer().await;
        all.extend(offered.tools);
        let note = if offered.unavailable.is_empty() {
            String::new()
        } else {
            let list = offered
                .unavailable
                .iter()
                .map(|(name, why)| format!("{name} ({why})"))
                .collect::<Vec<_>>()
                .join("; ");
            let names: Vec<String> = offered
                .unavailable
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            self.unavailable = Some(format!(
                "_(These MCP servers of mine did not start, so I worked without their tools: {}; the harness log says why.)_",
                names.join(", ")
            ));
            format!(
                "\n\nThese MCP servers of yours are unavailable this turn, so their tools are missing: {list}."
            )
        };
        Ok((all, note))
    }

    /// The turn's final reply, with a note naming declared servers that did not start.
    pub fn reply(&self, text: &str) -> String {
        match (&self.unavailable, text.is_empty()) {
            (None, _) => text.to_owned(),
            (Some(note), true) => note.clone(),
            (Some(note), false) => format!("{text}\n\n{note}"),
        }
    }

    /// Runs one tool call: (result text, is_error).
    pub async fn run(
        &mut self,
        tools: &mut Tools<'_>,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<(String, bool), BrainError> {
        if crate::mcp::client::DeclaredServers::owns(name) {
            Ok(self.servers.call(name, arguments).await)
        } else {
            tools.call_tool(name, arguments).await
        }
    }
}

pub trait Brain: Send {
    /// Handles one message. Returning `Ok` acks it: it will not be delivered again.
    fn turn(
        &mut self,
        msg: &Message,
        tools: &mut Tools<'_>,
    ) -> impl Future<Output = Result<(), BrainError>> + Send;
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
    /// Builds the agent's brain, or says plainly why it cannot run.
    pub fn build(spec: &AgentSpec, state_dir: &Path, socket: &Path) -> Result<Self, String> {
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
            BrainSpec::Openai {
                limits, history, ..
            } => Ok(AnyBrain::OpenAi(openai::OpenAi::new(
                spec,
                limits
                    .calls_per_message
                    .unwrap_or(crate::c0re::models::DEFAULT_CALLS_PER_MESSAGE),
                Toolbox::new(spec, state_dir),
                History::load(state_dir, history.unwrap_or(DEFAULT_HISTORY)),
            ))),
            BrainSpec::Anthropic {
                limits, history, ..
            } => Ok(AnyBrain::Anthropic(anthropic::Anthropic::new(
                spec,
                limits
                    .calls_per_message
                    .unwrap_or(crate::c0re::models::DEFAULT_CALLS_PER_MESSAGE),
                Toolbox::new(spec, state_dir),
                History::load(state_dir, history.unwrap_or(DEFAULT_HISTORY)),
            ))),
            BrainSpec::ClaudeCode { .. } => {
                claude_code::ClaudeCode::new(spec, state_dir, socket).map(AnyBrain::ClaudeCode)
            }
            #[allow(unreachable_patterns)]
            other => Err(format!(
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
}

/// Fills `{body}`, `{rest}`, `{sender}` and `{agent}` in a template.
pub fn render_template(template: &str, msg: &Message, rest: &str, agent: &str) -> String {
    template
        .replace("{body}", msg.body.trim())
        .replace("{rest}", rest)
        .replace("{sender}", &msg.sender)
        .replace("{agent}", agent)
}

/// What an in-process model brain remembers between messages: the last exchanges (message and
/// final reply), kept in the agent's state dir so they survive restarts and rebuilds. Tool calls
/// are not kept (their effect is in the reply, the notes, the rooms).
pub struct History {
    path: std::path::PathBuf,
    keep: usize,
    exchanges: std::collections::VecDeque<Exchange>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exchange {
    /// The message as the model saw it (`<sender> wrote:\n<body>`).
    pub user: String,
    /// What the agent said.
    pub reply: String,
}

/// The reply remembered for a turn that said nothing (model APIs refuse empty messages).
pub fn reply_or_silence(text: &str) -> String {
    if text.is_empty() {
        "(I said nothing.)".into()
    } else {
        text.to_owned()
    }
}

/// Exchanges kept unless the config says otherwise.
pub const DEFAULT_HISTORY: usize = 10;
/// The history's size in characters, at most; the oldest exchanges go first.
const MAX_HISTORY_CHARS: usize = 32 * 1024;

impl History {
    /// Loads `history.json` from the state dir; a file that cannot be read starts afresh (and
    /// is kept aside as `history.json.bad`), it never stops the agent.
    pub fn load(state_dir: &Path, keep: usize) -> Self {
        let path = state_dir.join("history.json");
        let exchanges = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "history.json is unreadable; starting afresh");
                    let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                    Default::default()
                }
            },
            Err(_) => Default::default(),
        };
        let mut h = Self {
            path,
            keep,
            exchanges,
        };
        h.trim();
        h
    }

    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.iter()
    }

    /// Remembers one exchange and saves the history.
    pub fn push(&mut self, user: String, reply: String) {
        if self.keep == 0 {
            return;
        }
        self.exchanges.push_back(Exchange { user, reply });
        self.trim();
        let bytes = serde_json::to_vec(&self.exchanges).expect("exchanges serialize");
        if let Err(e) = crate::fsutil::write_atomic(&self.path, &bytes, 0o600) {
            tracing::warn!(error = %format!("{e:#}"), "cannot save history.json");
        }
    }

    fn trim(&mut self) {
        while self.exchanges.len() > self.keep
            || self
                .exchanges
                .iter()
                .map(|x| x.user.len() + x.reply.len())
                .sum::<usize>()
                > MAX_HISTORY_CHARS
        {
            self.exchanges.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_exchanges_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path(), 2);
        for i in 0..3 {
            h.push(format!("op wrote:\nq{i}"), format!("a{i}"));
        }
        let again = History::load(dir.path(), 2);
        let replies: Vec<&str> = again.exchanges().map(|x| x.reply.as_str()).collect();
        assert_eq!(replies, ["a1", "a2"]);
        // A smaller limit on the next start trims; a huge exchange pushes out the rest.
        assert_eq!(History::load(dir.path(), 1).exchanges().count(), 1);
        let mut h = History::load(dir.path(), 5);
        h.push("x".repeat(MAX_HISTORY_CHARS - 1), "y".into());
        assert_eq!(h.exchanges().count(), 1);
        // A damaged file starts afresh and is kept aside.
        std::fs::write(dir.path().join("history.json"), "{nope").unwrap();
        assert_eq!(History::load(dir.path(), 5).exchanges().count(), 0);
        assert!(dir.path().join("history.json.bad").is_file());
        // 0 keeps nothing.
        let mut off = History::load(dir.path(), 0);
        off.push("a".into(), "b".into());
        assert_eq!(History::load(dir.path(), 5).exchanges().count(), 0);
    }
}
