//! The command brain: runs an executable once per message (docs/brains.md).
//!
//! stdin: one JSON object `{"agent", "message": {id, event_id, room_id, sender, body, attempt},
//! "prompt"}`. stdout: one JSON object `{"reply"?: string, "send"?: [{"to", "body"}]}`.
//! Exit status 0 or the turn fails; the process is killed at the timeout. Its working directory
//! is the agent's state dir and its environment holds only PATH, HOME, LANG and HYPERHIVE_AGENT.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{Brain, BrainError, Tools};
use crate::agent_spec::AgentSpec;
use crate::wire::protocol::Message;

/// Largest stdout accepted from the program.
const MAX_OUTPUT: usize = 1 << 20;

pub struct Command {
    agent: String,
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    state_dir: PathBuf,
    prompt: Option<String>,
}

#[derive(Serialize)]
struct Input<'a> {
    agent: &'a str,
    message: &'a Message,
    prompt: Option<&'a str>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub reply: Option<String>,
    #[serde(default)]
    pub send: Vec<SendAction>,
    /// Managers only: approval requests to file (`request_apply_commit`).
    #[serde(default)]
    pub request_apply_commit: Vec<ApplyRequest>,
    /// Managers only: spawn requests to file (`request_init_config`).
    #[serde(default)]
    pub request_init_config: Vec<InitRequest>,
    /// Questions for the operators (`ask_operator`).
    #[serde(default)]
    pub ask_operator: Vec<Ask>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    pub question: String,
    #[serde(default)]
    pub options: Vec<String>,
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    pub name: String,
    pub summary: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub agent: String,
    pub sha: String,
    pub summary: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SendAction {
    pub to: String,
    pub body: String,
}

impl Command {
    pub fn new(
        spec: &AgentSpec,
        argv: &[String],
        timeout_secs: u64,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let (first, args) = argv
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("its command is empty"))?;
        let program = if first.contains('/') {
            spec.dir.join(first)
        } else {
            PathBuf::from(first)
        };
        if first.contains('/') && !program.is_file() {
            anyhow::bail!("its command {} does not exist", program.display());
        }
        Ok(Self {
            agent: spec.name.to_string(),
            program,
            args: args.to_vec(),
            timeout: Duration::from_secs(timeout_secs),
            state_dir: state_dir.to_owned(),
            prompt: spec.prompt.clone(),
        })
    }

    async fn run(&self, msg: &Message) -> Result<Output, BrainError> {
        let input = serde_json::to_vec(&Input {
            agent: &self.agent,
            message: msg,
            prompt: self.prompt.as_deref(),
        })
        .map_err(|e| BrainError::Failed(e.to_string()))?;
        let mut cmd = tokio::process::Command::new(&self.program);
        let mut child = crate::proc::harness_child(&mut cmd, &self.state_dir)
            .args(&self.args)
            .current_dir(&self.state_dir)
            .env("HYPERHIVE_AGENT", &self.agent)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BrainError::Failed(format!("cannot start {}: {e}", self.program.display()))
            })?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let write = async move {
            // A program that ignores its input may close stdin early: that is not an error.
            let _ = stdin.write_all(&input).await;
        };
        let run = async {
            write.await;
            child.wait_with_output().await
        };
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| {
                BrainError::Failed(format!(
                    "{} took longer than {} s",
                    self.program.display(),
                    self.timeout.as_secs()
                ))
            })?
            .map_err(|e| BrainError::Failed(format!("{}: {e}", self.program.display())))?;
        if !out.status.success() {
            return Err(BrainError::Failed(format!(
                "{} exited with {}",
                self.program.display(),
                out.status
            )));
        }
        if out.stdout.len() > MAX_OUTPUT {
            return Err(BrainError::Failed(format!(
                "{} wrote more than {MAX_OUTPUT} bytes",
                self.program.display()
            )));
        }
        parse_output(&out.stdout).map_err(|e| BrainError::Failed(e.to_string()))
    }
}

/// Why a command brain's output was not understood (the turn fails with this text).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the command's output is not UTF-8")]
    NotUtf8,
    #[error("the command's output is not the expected JSON: {0}")]
    NotJson(#[source] serde_json::Error),
}

/// The program's stdout as actions: empty is no action, anything else one JSON [`Output`].
pub fn parse_output(stdout: &[u8]) -> Result<Output, OutputError> {
    let text = std::str::from_utf8(stdout).map_err(|_| OutputError::NotUtf8)?;
    if text.trim().is_empty() {
        return Ok(Output {
            reply: None,
            send: Vec::new(),
            request_apply_commit: Vec::new(),
            request_init_config: Vec::new(),
            ask_operator: Vec::new(),
        });
    }
    serde_json::from_str(text.trim()).map_err(OutputError::NotJson)
}

impl Brain for Command {
    async fn control(
        &mut self,
        c: crate::wire::protocol::Control,
        _: &mut Tools<'_>,
    ) -> Result<String, BrainError> {
        Ok(super::unsupported("command", c))
    }

    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        let out = self.run(msg).await?;
        for s in &out.send {
            if let Err(refused) = tools.send_message(&s.to, &s.body).await? {
                tools
                    .say(&format!("I could not send that to {}: {refused}", s.to))
                    .await?;
            }
        }
        for r in &out.request_apply_commit {
            let said = match tools
                .request_apply_commit(&r.agent, &r.sha, &r.summary)
                .await?
            {
                Ok(id) => format!(
                    "Asked the operators to approve `{}` for {} (request #{id}).",
                    r.sha, r.agent
                ),
                Err(refused) => format!(
                    "My request to apply `{}` to {} was refused: {refused}",
                    r.sha, r.agent
                ),
            };
            tools.say(&said).await?;
        }
        for r in &out.request_init_config {
            let said = match tools.request_init_config(&r.name, &r.summary).await? {
                Ok(id) => format!(
                    "Asked the operators to approve spawning {} (request #{id}).",
                    r.name
                ),
                Err(refused) => format!("My request to spawn {} was refused: {refused}", r.name),
            };
            tools.say(&said).await?;
        }
        for q in &out.ask_operator {
            let said = match tools
                .ask_operator(&q.question, &q.options, q.ttl_secs)
                .await?
            {
                Ok(id) => format!("Asked the operators (question #{id})."),
                Err(refused) => format!("I could not ask the operators: {refused}"),
            };
            tools.say(&said).await?;
        }
        if let Some(reply) = &out.reply {
            tools.say(reply).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output() {
        assert_eq!(
            parse_output(b"").unwrap(),
            Output {
                reply: None,
                send: vec![],
                request_apply_commit: vec![],
                request_init_config: vec![],
                ask_operator: vec![],
            }
        );
        assert_eq!(
            parse_output(b"{\"reply\":\"hi\"}\n")
                .unwrap()
                .reply
                .as_deref(),
            Some("hi")
        );
        let o = parse_output(br#"{"send":[{"to":"argus","body":"b"}]}"#).unwrap();
        assert_eq!(
            o.send,
            vec![SendAction {
                to: "argus".into(),
                body: "b".into()
            }]
        );
        assert!(
            parse_output(b"hello")
                .unwrap_err()
                .to_string()
                .contains("expected JSON")
        );
        assert!(parse_output(br#"{"reply":"x","rm":"-rf"}"#).is_err());
        assert!(parse_output(&[0xff, 0xfe]).is_err());
    }
}
