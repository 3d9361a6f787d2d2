//! The `anthropic` brain: the Messages API tool-use loop, in the harness, with every model
//! call made by hive-c0re (which holds the key and the budgets).
//!
//! One turn: the system prompt (`prompt.md`), the last exchanges, the message, the tools; each
//! `tool_use` block is run and goes back as a `tool_result`; the final text is the reply. What
//! is not this API's shape is in [`super::model`]. Each request carries prompt-cache
//! breakpoints on its stable prefix ([`mark_cache`]).

use serde_json::{Value, json};

mod cache;
pub use cache::mark_cache;

use super::model::ModelBrain;
use super::{Brain, BrainError, Tools};
use crate::wire::protocol::{Control, Message};

pub struct Anthropic(pub ModelBrain);

impl Brain for Anthropic {
    async fn control(&mut self, c: Control, tools: &mut Tools<'_>) -> Result<String, BrainError> {
        let brain = &mut self.0;
        match c {
            Control::NewSession => brain.new_session(),
            Control::Compact => {
                let Some(transcript) = brain.transcript() else {
                    return Ok(ModelBrain::nothing_to_compact());
                };
                // One call, never repeated: not marked (a cache write costs more than input).
                let request = json!({
                    "system": super::model::SUMMARY_SYSTEM,
                    "messages": [{ "role": "user", "content": transcript }],
                    "max_tokens": 2048,
                });
                let Some(resp) = brain.call(tools, request).await? else {
                    return Ok(String::new());
                };
                let text: Vec<&str> = resp["content"]
                    .as_array()
                    .map(|blocks| {
                        blocks
                            .iter()
                            .filter(|b| b["type"] == "text")
                            .filter_map(|b| b["text"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                brain.compacted(&text.join("\n"))
            }
        }
    }

    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        let brain = &mut self.0;
        let turn = brain.begin(msg, tools).await?;
        let defs: Vec<Value> = turn
            .tools
            .iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.input_schema }))
            .collect();
        let mut messages = Vec::new();
        for x in &turn.history {
            messages.push(json!({ "role": "user", "content": x.user }));
            messages.push(json!({ "role": "assistant", "content": x.reply }));
        }
        messages.push(json!({ "role": "user", "content": turn.user }));
        for _ in 0..brain.max_steps {
            let mut request = json!({ "system": turn.system, "messages": messages, "tools": defs, "max_tokens": 4096 });
            // The prefix every call repeats is billed as cache reads (see `cache`).
            mark_cache(&mut request, 2 * turn.history.len());
            let Some(resp) = brain.call(tools, request).await? else {
                return Ok(());
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
                return brain.finish(tools, turn, &text).await;
            }
            let mut results = Vec::new();
            for u in uses {
                let id = u["id"].as_str().unwrap_or("").to_owned();
                let name = u["name"].as_str().unwrap_or("").to_owned();
                let (text, is_error) = match &u["input"] {
                    Value::Object(_) => brain.run_tool(tools, &name, u["input"].clone()).await?,
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
        brain.give_up(tools, turn).await
    }
}
