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

use super::model::{ModelBrain, Turn};
use super::{Brain, BrainError, Tools};
use crate::wire::protocol::{Control, Message, ToolInfo};

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
        let defs = tool_defs(&turn.tools);
        let mut messages = first_messages(&turn);
        for _ in 0..brain.max_steps {
            let request = request(&turn, &messages, &defs);
            let Some(resp) = brain.call(tools, request).await? else {
                return Ok(());
            };
            let (said, step) = read_answer(&resp);
            messages.push(said);
            let uses = match step {
                Step::Say(text) => return brain.finish(tools, turn, &text).await,
                Step::Use(uses) => uses,
            };
            let mut results = Vec::new();
            for u in uses {
                let (text, is_error) = match u.input {
                    Ok(input) => brain.run_tool(tools, &u.name, input).await?,
                    Err(why) => (why, true),
                };
                results.push(tool_result(&u.id, &text, is_error));
            }
            messages.push(json!({ "role": "user", "content": results }));
        }
        brain.give_up(tools, turn).await
    }
}

/// The tools in the Messages API's format.
fn tool_defs(tools: &[ToolInfo]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.input_schema }))
        .collect()
}

/// A turn's conversation before its first call: the remembered exchanges, then the message.
fn first_messages(turn: &Turn) -> Vec<Value> {
    let mut messages = Vec::new();
    for x in &turn.history {
        messages.push(json!({ "role": "user", "content": x.user }));
        messages.push(json!({ "role": "assistant", "content": x.reply }));
    }
    messages.push(json!({ "role": "user", "content": turn.user }));
    messages
}

/// The answer tokens a turn's call asks for (the Messages API requires the field).
const MAX_TOKENS: u64 = 4096;

/// One call of a turn: the system prompt apart (the API has no system role), the tools, the
/// conversation so far, `max_tokens`; marked for the prompt cache. The model and `stream` are
/// the core's to set.
fn request(turn: &Turn, messages: &[Value], defs: &[Value]) -> Value {
    let mut request = json!({ "system": turn.system, "messages": messages, "tools": defs, "max_tokens": MAX_TOKENS });
    // The prefix every call repeats is billed as cache reads (see `cache`).
    mark_cache(&mut request, 2 * turn.history.len());
    request
}

/// What an answer asks of the turn.
#[derive(Debug, PartialEq)]
enum Step {
    /// The final text: the turn ends with it.
    Say(String),
    /// Tool calls to run, in order; each result goes back by its id.
    Use(Vec<ToolUse>),
}

#[derive(Debug, PartialEq)]
struct ToolUse {
    id: String,
    name: String,
    /// The input, or why it is not one (told to the model as the call's error result).
    input: Result<Value, String>,
}

/// Reads a Messages answer: (the assistant message to keep in the conversation, the step).
/// The API refuses a `tool_use` whose input is not an object, even one it produced (a stream
/// cut mid-input), so the kept message carries `{}` there; the error result quotes it.
fn read_answer(resp: &Value) -> (Value, Step) {
    let mut content = resp["content"].as_array().cloned().unwrap_or_default();
    let mut uses = Vec::new();
    for b in content.iter_mut().filter(|b| b["type"] == "tool_use") {
        let name = b["name"].as_str().unwrap_or("").to_owned();
        let input = match &b["input"] {
            Value::Object(_) => Ok(b["input"].clone()),
            other => {
                let why = format!(
                    "the input is not a JSON object ({other}); call {name} again with an object that matches its schema"
                );
                b["input"] = json!({});
                Err(why)
            }
        };
        uses.push(ToolUse {
            id: b["id"].as_str().unwrap_or("").to_owned(),
            name,
            input,
        });
    }
    let step = if uses.is_empty() {
        let text: Vec<&str> = content
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect();
        Step::Say(text.join("\n"))
    } else {
        Step::Use(uses)
    };
    (json!({ "role": "assistant", "content": content }), step)
}

/// A tool's result, answering the `tool_use` block `id`.
fn tool_result(id: &str, text: &str, is_error: bool) -> Value {
    json!({ "type": "tool_result", "tool_use_id": id, "content": text, "is_error": is_error })
}

#[cfg(test)]
mod tests;
