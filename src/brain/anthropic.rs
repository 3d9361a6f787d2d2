//! The `anthropic` brain: the Messages API tool-use loop, in the harness, with every model
//! call made by hive-c0re (which holds the key and the budgets).
//!
//! One turn: the system prompt (`prompt.md`), the message, the hive's tools; each `tool_use`
//! block runs in the core and goes back as a `tool_result`; the final text is the reply.

use serde_json::{Value, json};

use super::{Brain, BrainError, History, Toolbox, Tools};
use crate::agent_spec::AgentSpec;
use crate::harness::protocol::{ErrorCode, Message};

pub struct Anthropic {
    agent: String,
    prompt: Option<String>,
    max_steps: u64,
    toolbox: Toolbox,
    history: History,
}

impl Anthropic {
    pub fn new(spec: &AgentSpec, max_steps: u64, toolbox: Toolbox, history: History) -> Self {
        Self {
            agent: spec.name.to_string(),
            prompt: spec.prompt.clone(),
            max_steps: max_steps.max(1),
            toolbox,
            history,
        }
    }
}

impl Brain for Anthropic {
    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        let (offered, note) = self.toolbox.offer(tools).await?;
        let defs: Vec<Value> = offered
            .into_iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.input_schema }))
            .collect();
        let system = format!(
            "{}\n\nYou are {}, an agent of a hive on Matrix. Each user message is one message to you; \
             your final answer is posted as your reply. Use the tools to act.{note}",
            self.prompt.clone().unwrap_or_default(),
            self.agent
        );
        let user = format!("{} wrote:\n{}", msg.sender, msg.body);
        let mut messages = Vec::new();
        for x in self.history.exchanges() {
            messages.push(json!({ "role": "user", "content": x.user }));
            messages.push(json!({ "role": "assistant", "content": x.reply }));
        }
        messages.push(json!({ "role": "user", "content": user }));
        for _ in 0..self.max_steps {
            let resp = match tools
                .model(json!({ "system": system, "messages": messages, "tools": defs, "max_tokens": 4096 }))
                .await?
            {
                Ok(r) => r,
                Err(e) if e.code == ErrorCode::Budget => {
                    tools.stop_over_budget(&e.message).await?;
                    return Ok(());
                }
                Err(e) => return Err(BrainError::Failed(format!("model call failed: {e}"))),
            };
            let content = resp["content"].as_array().cloned().unwrap_or_default();
            messages.push(json!({ "role": "assistant", "content": content }));
            let uses: Vec<&Value> = content.iter().filter(|b| b["type"] == "tool_use").collect();
            if uses.is_empty() {
                let text: String = content
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                let text = self.toolbox.reply(text.trim());
                let text = text.as_str();
                if !text.is_empty() {
                    tools.say(text).await?;
                }
                self.history.push(user, super::reply_or_silence(text));
                return Ok(());
            }
            let mut results = Vec::new();
            for u in uses {
                let id = u["id"].as_str().unwrap_or("").to_owned();
                let name = u["name"].as_str().unwrap_or("").to_owned();
                let (text, is_error) = match &u["input"] {
                    Value::Object(_) => self.toolbox.run(tools, &name, u["input"].clone()).await?,
                    other => (
                        format!(
                            "the input is not a JSON object ({other}); call {name} again with an object that matches its schema"
                        ),
                        true,
                    ),
                };
                results.push(json!({
                    "type": "tool_result", "tool_use_id": id, "content": text, "is_error": is_error,
                }));
            }
            messages.push(json!({ "role": "user", "content": results }));
        }
        let stop = format!(
            "I stopped: this message needed more than {} model calls.",
            self.max_steps
        );
        tools.say(&stop).await?;
        self.history.push(user, stop);
        Ok(())
    }
}
