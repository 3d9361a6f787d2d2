//! The `openai` brain: chat completions with tools (OpenAI, ollama, llama.cpp, vLLM).
//!
//! One turn: the system prompt (`prompt.md`) and the message go to the model with the hive's
//! tools; each tool call the model makes is run by hive-c0re and its result handed back; the
//! model's final text is the reply. Model calls go through the core (`model` on the socket),
//! which holds the key and the budgets. Arguments that are not valid JSON (small local models
//! emit them) are not fatal: the parse error goes back to the model as the tool's result.

use serde_json::{Value, json};

use super::{Brain, BrainError, History, Toolbox, Tools};
use crate::agent_spec::AgentSpec;
use crate::harness::protocol::{ErrorCode, Message};

pub struct OpenAi {
    agent: String,
    prompt: Option<String>,
    max_steps: u64,
    toolbox: Toolbox,
    history: History,
}

impl OpenAi {
    pub fn new(spec: &AgentSpec, max_steps: u64, toolbox: Toolbox, history: History) -> Self {
        Self {
            agent: spec.name.to_string(),
            prompt: spec.prompt.clone(),
            max_steps: max_steps.max(1),
            toolbox,
            history,
        }
    }

    fn system(&self) -> String {
        let base = self.prompt.clone().unwrap_or_default();
        format!(
            "{base}\n\nYou are {agent}, an agent of a hive on Matrix. Each user message is one message to you; \
             your final answer is posted as your reply. Use the tools to act.",
            agent = self.agent
        )
    }
}

/// The hive's tools in the chat-completions `tools` format.
fn tool_defs(tools: &[crate::harness::protocol::ToolInfo]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    }
                })
            })
            .collect(),
    )
}

impl Brain for OpenAi {
    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        let (offered, note) = self.toolbox.offer(tools).await?;
        let defs = tool_defs(&offered);
        let user = format!("{} wrote:\n{}", msg.sender, msg.body);
        let mut messages =
            vec![json!({ "role": "system", "content": format!("{}{note}", self.system()) })];
        for x in self.history.exchanges() {
            messages.push(json!({ "role": "user", "content": x.user }));
            messages.push(json!({ "role": "assistant", "content": x.reply }));
        }
        messages.push(json!({ "role": "user", "content": user }));
        for _ in 0..self.max_steps {
            let resp = match tools
                .model(json!({ "messages": messages, "tools": defs }))
                .await?
            {
                Ok(r) => r,
                Err(e) if e.code == ErrorCode::Budget => {
                    tools.stop_over_budget(&e.message).await?;
                    return Ok(());
                }
                Err(e) => return Err(BrainError::Failed(format!("model call failed: {e}"))),
            };
            let message = resp["choices"][0]["message"].clone();
            if !message.is_object() {
                return Err(BrainError::Failed(
                    "the model's answer has no message".into(),
                ));
            }
            let calls = message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            messages.push(message.clone());
            if calls.is_empty() {
                let text = self
                    .toolbox
                    .reply(message["content"].as_str().unwrap_or("").trim());
                let text = text.as_str();
                if !text.is_empty() {
                    tools.say(text).await?;
                }
                self.history.push(user, super::reply_or_silence(text));
                return Ok(());
            }
            for call in calls {
                let id = call["id"].as_str().unwrap_or("").to_owned();
                let name = call["function"]["name"].as_str().unwrap_or("").to_owned();
                let raw = &call["function"]["arguments"];
                // Arguments come as a JSON string; some servers send an object.
                let parsed = match raw {
                    Value::String(s) if s.trim().is_empty() => Ok(json!({})),
                    Value::String(s) => serde_json::from_str::<Value>(s),
                    Value::Object(_) => Ok(raw.clone()),
                    _ => Ok(json!({})),
                };
                let content = match parsed {
                    Ok(args) => {
                        let (text, is_error) = self.toolbox.run(tools, &name, args).await?;
                        if is_error {
                            format!("error: {text}")
                        } else {
                            text
                        }
                    }
                    Err(e) => format!(
                        "error: the arguments are not valid JSON ({e}); call {name} again with a JSON object that matches its schema"
                    ),
                };
                messages.push(json!({ "role": "tool", "tool_call_id": id, "content": content }));
            }
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
