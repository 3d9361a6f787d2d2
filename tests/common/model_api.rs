//! What the real model APIs refuse, for the tests' stand-in model servers: a stand-in that
//! accepted anything would let a request the real API answers with 400 pass green. Each check
//! is a documented rule of the chat-completions or the Messages API. A stand-in records what
//! it refuses in a [`Contract`] and answers 400 as the real API does (an assert in an axum
//! handler only panics its task, and the test sees an unexplained timeout); the test asserts
//! the record is empty at the end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Every request a stand-in refused, with why.
#[derive(Clone, Default)]
pub struct Contract(Arc<Mutex<Vec<String>>>);

impl Contract {
    /// `Some(400 answer)` when `body` breaks the chat-completions contract (recorded).
    pub fn openai(&self, body: &Value) -> Option<Response> {
        let why = openai_violations(body);
        let first = self.record("openai", why, body)?;
        let error = json!({"error": {"message": first, "type": "invalid_request_error"}});
        Some((StatusCode::BAD_REQUEST, axum::Json(error)).into_response())
    }

    /// `Some(400 answer)` when the request breaks the Messages API contract (recorded).
    pub fn anthropic(&self, headers: &HeaderMap, body: &Value) -> Option<Response> {
        let version = headers
            .get("anthropic-version")
            .and_then(|v| v.to_str().ok());
        let why = anthropic_violations(version, body);
        let first = self.record("anthropic", why, body)?;
        let error = json!({"type": "error",
            "error": {"type": "invalid_request_error", "message": first}});
        Some((StatusCode::BAD_REQUEST, axum::Json(error)).into_response())
    }

    /// Records `why` (if any) and returns its first line.
    pub fn record(&self, api: &str, why: Vec<String>, body: &Value) -> Option<String> {
        let first = why.first()?.clone();
        self.0
            .lock()
            .unwrap()
            .push(format!("{api}: {} in {body}", why.join("; ")));
        Some(first)
    }

    /// Panics naming every refused request.
    pub fn assert_kept(&self) {
        let seen = self.0.lock().unwrap();
        assert!(
            seen.is_empty(),
            "the stand-in model server refused {} request(s) the real API would refuse:\n{}",
            seen.len(),
            seen.join("\n")
        );
    }
}

/// Whether a chat-completions request asked for the usage chunk of a stream
/// (`stream_options.include_usage`): the real API streams one only then.
pub fn wants_usage(body: &Value) -> bool {
    body["stream"] == json!(true) && body["stream_options"]["include_usage"] == json!(true)
}

/// Why the chat-completions API would refuse `body` (empty: it would not).
pub fn openai_violations(body: &Value) -> Vec<String> {
    let mut why = Vec::new();
    if body["model"].as_str().is_none_or(str::is_empty) {
        why.push("`model` is required".to_owned());
    }
    if body.get("stream_options").is_some() && body["stream"] != json!(true) {
        why.push("`stream_options` is only allowed when `stream` is true".to_owned());
    }
    for t in body["tools"].as_array().into_iter().flatten() {
        if t["type"] != "function" || !t["function"]["name"].is_string() {
            why.push(format!("a tool is not a named function: {t}"));
        }
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        why.push("`messages` must be a non-empty array".to_owned());
        return why;
    };
    // The ids the last assistant message called and no `tool` message has answered yet.
    let mut owed: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "tool" && !owed.is_empty() {
            why.push(format!(
                "messages[{i}]: an assistant message with `tool_calls` must be followed by tool messages responding to each `tool_call_id` (missing: {})",
                owed.join(", ")
            ));
            owed.clear();
        }
        match role {
            "system" | "developer" | "user" => {}
            "assistant" => {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    let id = c["id"].as_str().unwrap_or("");
                    if id.is_empty() || c["type"] != "function" {
                        why.push(format!(
                            "messages[{i}]: a tool call needs an id and type `function`: {c}"
                        ));
                    }
                    if !c["function"]["name"].is_string() || !c["function"]["arguments"].is_string()
                    {
                        why.push(format!("messages[{i}]: a tool call's function needs a name and string arguments: {c}"));
                    }
                    owed.push(id.to_owned());
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                if owed.first().map(String::as_str) == Some(id) && !id.is_empty() {
                    owed.remove(0);
                } else {
                    why.push(format!(
                        "messages[{i}]: messages with role 'tool' must be a response to a preceding message with 'tool_calls' (tool_call_id {id:?}, expected {:?})",
                        owed.first()
                    ));
                }
            }
            other => why.push(format!("messages[{i}]: unknown role {other:?}")),
        }
    }
    if !owed.is_empty() {
        why.push(format!(
            "the last assistant message's tool calls were never answered: {}",
            owed.join(", ")
        ));
    }
    why
}

/// Why the Messages API would refuse a request with this `anthropic-version` header and
/// `body` (empty: it would not).
pub fn anthropic_violations(version: Option<&str>, body: &Value) -> Vec<String> {
    let mut why = Vec::new();
    if version.is_none() {
        why.push("the anthropic-version header is required".to_owned());
    }
    if body["model"].as_str().is_none_or(str::is_empty) {
        why.push("model: Field required".to_owned());
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        why.push("max_tokens: Field required (a positive integer)".to_owned());
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        why.push("messages: at least one message is required".to_owned());
        return why;
    };
    if messages[0]["role"] != "user" {
        why.push("messages: the first message must use the user role".to_owned());
    }
    // The ids of the previous assistant message's tool_use blocks.
    let mut asked: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            other => {
                why.push(format!(
                    "messages.{i}.content: a string or blocks, not {other}"
                ));
                Vec::new()
            }
        };
        let last = i + 1 == messages.len();
        if blocks.is_empty() && !(last && m["role"] == "assistant") {
            why.push(format!(
                "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        match m["role"].as_str().unwrap_or("") {
            "assistant" => {
                asked.clear();
                for b in &blocks {
                    if b["type"] == "tool_use" {
                        if !b["input"].is_object() {
                            why.push(format!("messages.{i}: tool_use.input: Input should be a valid dictionary: {b}"));
                        }
                        asked.push(b["id"].as_str().unwrap_or("").to_owned());
                    }
                    if b["type"] == "tool_result" {
                        why.push(format!("messages.{i}: tool_result blocks belong in user messages"));
                    }
                }
            }
            "user" => {
                let results: Vec<&str> = blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_result")
                    .map(|b| b["tool_use_id"].as_str().unwrap_or(""))
                    .collect();
                let firsts = blocks.iter().take(results.len());
                if !results.is_empty() && firsts.clone().any(|b| b["type"] != "tool_result") {
                    why.push(format!("messages.{i}: tool_result blocks must come first in the content"));
                }
                let wanted: HashSet<&str> = asked.iter().map(String::as_str).collect();
                let got: HashSet<&str> = results.iter().copied().collect();
                for id in &results {
                    if !wanted.contains(id) {
                        why.push(format!(
                            "messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: {id:?}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message"
                        ));
                    }
                }
                if got.len() != results.len() {
                    why.push(format!("messages.{i}: a tool_use id is answered twice"));
                }
                let missing: Vec<&str> = wanted.difference(&got).copied().collect();
                if !missing.is_empty() {
                    why.push(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing:?}"
                    ));
                }
                asked.clear();
            }
            other => why.push(format!(
                "messages.{i}.role: {other:?} (only user and assistant; the system prompt is `system`)"
            )),
        }
    }
    if !asked.is_empty() {
        // A request that ends on an assistant turn with tool calls is a prefill the API
        // refuses: the calls need their results.
        why.push(format!(
            "the last message's `tool_use` ids have no `tool_result`: {asked:?}"
        ));
    }
    why
}

/// The `stop_reason` the Messages API gives an answer with these content blocks: `tool_use`
/// when it calls a tool, else `end_turn`.
pub fn stop_reason(content: &Value) -> &'static str {
    let calls = content
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["type"] == "tool_use");
    if calls { "tool_use" } else { "end_turn" }
}
