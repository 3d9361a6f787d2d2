//! The `openai` brain: chat completions with tools (OpenAI, ollama, llama.cpp, vLLM).
//!
//! One turn: the system prompt (`prompt.md`), the last exchanges and the message go to the model
//! with the hive's tools (and the declared MCP servers'); each tool call the model makes is run
//! and its result handed back; the model's final text is the reply. Model calls go through the
//! core (`model` on the socket), which holds the key and the budgets. Arguments that are not
//! valid JSON (small local models emit them) are not fatal: the parse error goes back to the
//! model as the tool's result. What is not this API's shape is in [`super::model`].

use serde_json::{Value, json};

use super::model::ModelBrain;
use super::{Brain, BrainError, Tools};
use crate::wire::protocol::{Control, Message, ToolInfo};

pub struct OpenAi(pub ModelBrain);

/// The tools in the chat-completions `tools` format.
fn tool_defs(tools: &[ToolInfo]) -> Value {
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
    async fn control(&mut self, c: Control, tools: &mut Tools<'_>) -> Result<String, BrainError> {
        let brain = &mut self.0;
        match c {
            Control::NewSession => brain.new_session(),
            Control::Compact => {
                let Some(transcript) = brain.transcript() else {
                    return Ok(ModelBrain::nothing_to_compact());
                };
                let messages = json!([
                    { "role": "system", "content": super::model::SUMMARY_SYSTEM },
                    { "role": "user", "content": transcript },
                ]);
                let Some(resp) = brain.call(tools, json!({ "messages": messages })).await? else {
                    return Ok(String::new());
                };
                let text = resp["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or("");
                brain.compacted(text)
            }
        }
    }

    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        let brain = &mut self.0;
        let turn = brain.begin(msg, tools).await?;
        let defs = tool_defs(&turn.tools);
        let mut messages = vec![json!({ "role": "system", "content": turn.system })];
        for x in &turn.history {
            messages.push(json!({ "role": "user", "content": x.user }));
            messages.push(json!({ "role": "assistant", "content": x.reply }));
        }
        messages.push(json!({ "role": "user", "content": turn.user }));
        for _ in 0..brain.max_steps {
            let Some(resp) = brain
                .call(tools, json!({ "messages": messages, "tools": defs }))
                .await?
            else {
                return Ok(());
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
                let text = message["content"].as_str().unwrap_or("");
                return brain.finish(tools, turn, text).await;
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
                        let (text, is_error) = brain.run_tool(tools, &name, args).await?;
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
        brain.give_up(tools, turn).await
    }
}
