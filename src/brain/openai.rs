//! The `openai` brain: chat completions with tools (OpenAI, ollama, llama.cpp, vLLM).
//!
//! One turn: the system prompt (`prompt.md`), the last exchanges and the message go to the model
//! with the hive's tools (and the declared MCP servers'); each tool call the model makes is run
//! and its result handed back; the model's final text is the reply. Model calls go through the
//! core (`model` on the socket), which holds the key and the budgets. Arguments that are not
//! valid JSON (small local models emit them) are not fatal: the parse error goes back to the
//! model as the tool's result. What is not this API's shape is in [`super::model`].

use serde_json::{Value, json};

use super::model::{ModelBrain, Turn};
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
        let mut messages = first_messages(&turn);
        for _ in 0..brain.max_steps {
            let Some(resp) = brain.call(tools, request(&messages, &defs)).await? else {
                return Ok(());
            };
            let (said, step) = read_answer(&resp)?;
            messages.push(said);
            let calls = match step {
                Step::Say(text) => return brain.finish(tools, turn, &text).await,
                Step::Call(calls) => calls,
            };
            for call in calls {
                let content = match call.arguments {
                    Ok(args) => {
                        let (text, is_error) = brain.run_tool(tools, &call.name, args).await?;
                        if is_error {
                            format!("error: {text}")
                        } else {
                            text
                        }
                    }
                    Err(why) => why,
                };
                messages.push(tool_message(&call.id, &content));
            }
        }
        brain.give_up(tools, turn).await
    }
}

/// A turn's conversation before its first call: the system prompt, the remembered
/// exchanges, then the message.
fn first_messages(turn: &Turn) -> Vec<Value> {
    let mut messages = vec![json!({ "role": "system", "content": turn.system })];
    for x in &turn.history {
        messages.push(json!({ "role": "user", "content": x.user }));
        messages.push(json!({ "role": "assistant", "content": x.reply }));
    }
    messages.push(json!({ "role": "user", "content": turn.user }));
    messages
}

/// One call of a turn: the conversation so far and the tools. The model, `stream` and
/// `stream_options` are the core's to set.
fn request(messages: &[Value], defs: &Value) -> Value {
    json!({ "messages": messages, "tools": defs })
}

/// What an answer asks of the turn.
#[derive(Debug, PartialEq)]
enum Step {
    /// The final text: the turn ends with it.
    Say(String),
    /// Tool calls to run, in order; each result goes back as a `tool` message with its id.
    Call(Vec<ToolCall>),
}

#[derive(Debug, PartialEq)]
struct ToolCall {
    id: String,
    name: String,
    /// The arguments, or the error result that tells the model they are not JSON.
    arguments: Result<Value, String>,
}

/// Reads a chat-completions answer: (the assistant message to keep in the conversation, the
/// step); an answer without a message is a failure.
fn read_answer(resp: &Value) -> Result<(Value, Step), BrainError> {
    let message = resp["choices"][0]["message"].clone();
    if !message.is_object() {
        return Err(BrainError::Failed(
            "the model's answer has no message".into(),
        ));
    }
    let calls: Vec<ToolCall> = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|call| {
            let name = call["function"]["name"].as_str().unwrap_or("").to_owned();
            let raw = &call["function"]["arguments"];
            // Arguments come as a JSON string; some servers send an object.
            let parsed = match raw {
                Value::String(s) if s.trim().is_empty() => Ok(json!({})),
                Value::String(s) => serde_json::from_str::<Value>(s),
                Value::Object(_) => Ok(raw.clone()),
                _ => Ok(json!({})),
            };
            let arguments = parsed.map_err(|e| format!(
                "error: the arguments are not valid JSON ({e}); call {name} again with a JSON object that matches its schema"
            ));
            ToolCall {
                id: call["id"].as_str().unwrap_or("").to_owned(),
                name,
                arguments,
            }
        })
        .collect();
    let step = if calls.is_empty() {
        Step::Say(message["content"].as_str().unwrap_or("").to_owned())
    } else {
        Step::Call(calls)
    };
    Ok((message, step))
}

/// A tool's result, answering the tool call `id`.
fn tool_message(id: &str, content: &str) -> Value {
    json!({ "role": "tool", "tool_call_id": id, "content": content })
}

#[cfg(test)]
mod tests;
