//! Model calls on behalf of agents: the harness never holds a key and has no network in the
//! `bwrap` runtime, so its brain sends each request over its socket and hive-c0re makes the
//! HTTP call: to the provider in the agent's (approved) config only, with the key only the core
//! can read, within the agent's budgets, recording usage per turn and per day.

use std::time::Duration;

use serde_json::{Value, json};

use super::Core;
use crate::agent_spec::{AgentName, BrainSpec, ModelLimits};
use crate::harness::protocol::ErrorCode;

/// Model calls per message when `limits.calls_per_message` is not set.
pub const DEFAULT_CALLS_PER_MESSAGE: u64 = 8;
/// Request fields a harness may set; everything else (model, keys, endpoints) is the core's.
const ALLOWED_FIELDS: &[&str] = &[
    "messages",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "response_format",
];
const MAX_RESPONSE: usize = 8 << 20;
/// Messages API request fields a harness may set.
const ANTHROPIC_FIELDS: &[&str] = &[
    "messages",
    "system",
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
];
/// The Messages API version the core speaks.
const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
}

pub struct ModelRefusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ModelRefusal {
    ModelRefusal {
        code,
        message: message.into(),
    }
}

/// Whether `used` plus one more call stays within `limits` for this message and today.
fn check_budget(
    limits: &ModelLimits,
    turn: crate::store::Usage,
    day: crate::store::Usage,
) -> Result<(), String> {
    let per_msg = limits
        .calls_per_message
        .unwrap_or(DEFAULT_CALLS_PER_MESSAGE);
    if turn.calls >= per_msg {
        return Err(format!(
            "{} model calls for this message (limit {per_msg})",
            turn.calls
        ));
    }
    if let Some(max) = limits.tokens_per_message
        && turn.tokens >= max
    {
        return Err(format!(
            "{} tokens for this message (limit {max})",
            turn.tokens
        ));
    }
    if let Some(max) = limits.calls_per_day
        && day.calls >= max
    {
        return Err(format!("{} model calls today (limit {max})", day.calls));
    }
    if let Some(max) = limits.tokens_per_day
        && day.tokens >= max
    {
        return Err(format!("{} tokens today (limit {max})", day.tokens));
    }
    if let Some(max) = limits.usd_per_message
        && turn.cost_usd >= max
    {
        return Err(format!(
            "${:.4} for this message (limit ${max})",
            turn.cost_usd
        ));
    }
    if let Some(max) = limits.usd_per_day
        && day.cost_usd >= max
    {
        return Err(format!("${:.4} today (limit ${max})", day.cost_usd));
    }
    Ok(())
}

/// The tokens a provider reports for one call, split the way it prices them. OpenAI counts
/// cached input inside `prompt_tokens`; Anthropic counts cache reads and writes apart.
pub fn tokens_of(usage: &Value) -> crate::config::Tokens {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    if usage.get("prompt_tokens").is_some() || usage.get("completion_tokens").is_some() {
        let cached = n(&usage["prompt_tokens_details"]["cached_tokens"]);
        crate::config::Tokens {
            input: n(&usage["prompt_tokens"]).saturating_sub(cached),
            output: n(&usage["completion_tokens"]),
            cache_read: cached,
            cache_write: 0,
        }
    } else {
        crate::config::Tokens {
            input: n(&usage["input_tokens"]),
            output: n(&usage["output_tokens"]),
            cache_read: n(&usage["cache_read_input_tokens"]),
            cache_write: n(&usage["cache_creation_input_tokens"]),
        }
    }
}

/// Assembles an OpenAI chat-completions stream (server-sent events) into one response.
pub fn assemble_stream(text: &str) -> Result<Value, String> {
    let mut content = String::new();
    let mut tool_calls: Vec<Value> = Vec::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    let mut any = false;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| format!("bad stream chunk: {e}"))?;
        any = true;
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
        let delta = &choice["delta"];
        if let Some(c) = delta["content"].as_str() {
            content.push_str(c);
        }
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap_or(0) as usize;
            while tool_calls.len() <= i {
                tool_calls.push(json!({"id": "", "type": "function",
                    "function": {"name": "", "arguments": ""}}));
            }
            let slot = &mut tool_calls[i];
            if let Some(id) = tc["id"].as_str() {
                slot["id"] = json!(id);
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                let name = format!("{}{n}", slot["function"]["name"].as_str().unwrap_or(""));
                slot["function"]["name"] = json!(name);
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                let args = format!(
                    "{}{a}",
                    slot["function"]["arguments"].as_str().unwrap_or("")
                );
                slot["function"]["arguments"] = json!(args);
            }
        }
    }
    if !any {
        return Err("the stream held no chunks".into());
    }
    let mut message = json!({ "role": "assistant", "content": content });
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    Ok(json!({
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": usage,
    }))
}

/// Assembles an Anthropic Messages stream (server-sent events) into one message. A tool call
/// whose streamed input is not valid JSON keeps it as a string (the brain reports it back).
pub fn assemble_anthropic_stream(text: &str) -> Result<Value, String> {
    let mut message = Value::Null;
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        let ev: Value = serde_json::from_str(data).map_err(|e| format!("bad stream event: {e}"))?;
        match ev["type"].as_str().unwrap_or("") {
            "message_start" => message = ev["message"].clone(),
            "content_block_start" => {
                let i = ev["index"].as_u64().unwrap_or(0) as usize;
                while blocks.len() <= i {
                    blocks.push(Value::Null);
                    partial.push(String::new());
                }
                blocks[i] = ev["content_block"].clone();
            }
            "content_block_delta" => {
                let i = ev["index"].as_u64().unwrap_or(0) as usize;
                let (Some(block), Some(acc)) = (blocks.get_mut(i), partial.get_mut(i)) else {
                    return Err("a delta for a block that never started".into());
                };
                let d = &ev["delta"];
                match d["type"].as_str().unwrap_or("") {
                    "text_delta" => {
                        let t = format!(
                            "{}{}",
                            block["text"].as_str().unwrap_or(""),
                            d["text"].as_str().unwrap_or("")
                        );
                        block["text"] = json!(t);
                    }
                    "input_json_delta" => acc.push_str(d["partial_json"].as_str().unwrap_or("")),
                    _ => {}
                }
            }
            "message_delta" => {
                if message.is_null() {
                    message = json!({});
                }
                if let Some(r) = ev["delta"]["stop_reason"].as_str() {
                    message["stop_reason"] = json!(r);
                }
                if let Some(o) = ev["usage"]["output_tokens"].as_u64() {
                    message["usage"]["output_tokens"] = json!(o);
                }
            }
            "error" => return Err(format!("the model server reported {}", ev["error"])),
            _ => {}
        }
    }
    if message.is_null() {
        return Err("the stream held no message".into());
    }
    for (block, raw) in blocks.iter_mut().zip(partial) {
        if block["type"] == "tool_use" && !raw.is_empty() {
            block["input"] = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
        }
    }
    message["content"] = Value::Array(blocks);
    Ok(message)
}

impl Core {
    /// One chat-completions call for `agent`, during its turn for inbox message `inbox_id`.
    pub async fn model_call(
        &self,
        agent: &AgentName,
        inbox_id: i64,
        request: &Value,
    ) -> Result<Value, ModelRefusal> {
        let entry = self
            .agent(agent)
            .ok_or_else(|| refuse(ErrorCode::Internal, "unknown agent"))?;
        let spec = entry.spec();
        let (provider, model, base_url, api_key_file, stream, limits) = match &spec.brain {
            BrainSpec::Openai {
                model,
                base_url,
                api_key_file,
                stream,
                limits,
                ..
            } => (
                Provider::OpenAi,
                Some(model),
                base_url,
                api_key_file,
                stream,
                limits,
            ),
            BrainSpec::Anthropic {
                model,
                base_url,
                api_key_file,
                stream,
                limits,
                ..
            } => (
                Provider::Anthropic,
                Some(model),
                base_url,
                api_key_file,
                stream,
                limits,
            ),
            // The harness's proxy re-streams for the CLI: the core asks for one message.
            BrainSpec::ClaudeCode {
                model,
                base_url,
                api_key_file,
                limits,
                ..
            } => (
                Provider::Anthropic,
                model.as_ref(),
                base_url,
                api_key_file,
                &false,
                limits,
            ),
            other => {
                return Err(refuse(
                    ErrorCode::NotAllowed,
                    format!(
                        "{agent}'s brain is {}, not a model the core calls",
                        other.kind()
                    ),
                ));
            }
        };
        let now = crate::store::now_us();
        let day_start = now - now.rem_euclid(86_400_000_000);
        let store = self.store();
        let (turn, day) = (
            store
                .turn_usage(agent.as_str(), inbox_id)
                .map_err(|e| refuse(ErrorCode::Internal, format!("{e:#}")))?,
            store
                .usage_since(agent.as_str(), day_start)
                .map_err(|e| refuse(ErrorCode::Internal, format!("{e:#}")))?,
        );
        check_budget(limits, turn, day)
            .map_err(|why| refuse(ErrorCode::Budget, format!("over budget: {why}")))?;
        let oauth = match &spec.brain {
            BrainSpec::ClaudeCode {
                oauth_token_file, ..
            }
            | BrainSpec::Anthropic {
                oauth_token_file, ..
            } => oauth_token_file.as_ref(),
            _ => None,
        };
        let oauth = match oauth {
            None => None,
            Some(path) => Some(
                self.read_key(path)
                    .map_err(|e| refuse(ErrorCode::NotAllowed, e))?,
            ),
        };
        let key = match api_key_file {
            None => None,
            Some(path) => Some(
                self.read_key(path)
                    .map_err(|e| refuse(ErrorCode::NotAllowed, e))?,
            ),
        };
        let allowed = match provider {
            Provider::OpenAi => ALLOWED_FIELDS,
            Provider::Anthropic => ANTHROPIC_FIELDS,
        };
        let mut body = serde_json::Map::new();
        for (k, v) in request.as_object().into_iter().flatten() {
            if allowed.contains(&k.as_str()) {
                body.insert(k.clone(), v.clone());
            }
        }
        match model {
            Some(m) => {
                body.insert("model".into(), json!(m));
            }
            // No model configured (claude-code): the client's choice, within the provider.
            None => {
                let m = request["model"].as_str().unwrap_or("").to_owned();
                if m.is_empty() {
                    return Err(refuse(ErrorCode::BadRequest, "no model named"));
                }
                body.insert("model".into(), json!(m));
            }
        }
        let model = body["model"].as_str().unwrap_or("").to_owned();
        let price = self.cfg().price_of(&model).cloned();
        if price.is_none() && (limits.usd_per_message.is_some() || limits.usd_per_day.is_some()) {
            return Err(refuse(
                ErrorCode::Budget,
                format!(
                    "over budget: my limits are in dollars but hive.toml has no [prices.{model:?}] to count them"
                ),
            ));
        }
        body.insert("stream".into(), json!(stream));
        let (url, base) = match provider {
            Provider::OpenAi => {
                if *stream {
                    body.insert("stream_options".into(), json!({ "include_usage": true }));
                }
                let base = base_url
                    .as_deref()
                    .unwrap_or("https://api.openai.com/v1")
                    .trim_end_matches('/');
                (format!("{base}/chat/completions"), base.to_owned())
            }
            Provider::Anthropic => {
                body.entry("max_tokens").or_insert(json!(4096));
                let base = base_url
                    .as_deref()
                    .unwrap_or("https://api.anthropic.com")
                    .trim_end_matches('/');
                (format!("{base}/v1/messages"), base.to_owned())
            }
        };
        let mut req = self
            .model_http()
            .post(&url)
            .timeout(Duration::from_secs(300))
            .json(&Value::Object(body));
        if let (Provider::Anthropic, Some(token)) = (provider, &oauth) {
            // A Claude subscription: its OAuth token, as Claude Code itself sends it.
            req = req
                .bearer_auth(token)
                .header("anthropic-beta", "oauth-2025-04-20");
        }
        match (provider, &key) {
            (Provider::OpenAi, Some(k)) => req = req.bearer_auth(k),
            (Provider::Anthropic, Some(k)) => {
                req = req
                    .header("x-api-key", k)
                    .header("anthropic-version", ANTHROPIC_VERSION);
            }
            (Provider::Anthropic, None) => req = req.header("anthropic-version", ANTHROPIC_VERSION),
            (Provider::OpenAi, None) => {}
        }
        let result = async {
            let resp = req
                .send()
                .await
                .map_err(|e| format!("cannot reach the model server at {base}: {e}"))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| format!("reading the model's answer: {e}"))?;
            if bytes.len() > MAX_RESPONSE {
                return Err("the model's answer is too large".to_owned());
            }
            let text = String::from_utf8_lossy(&bytes);
            if !status.is_success() {
                let head: String = text.chars().take(300).collect();
                return Err(format!("the model server answered {status}: {head}"));
            }
            if *stream {
                match provider {
                    Provider::OpenAi => assemble_stream(&text),
                    Provider::Anthropic => assemble_anthropic_stream(&text),
                }
            } else {
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| format!("the model's answer is not JSON: {e}"))
            }
        }
        .await;
        let tokens = result
            .as_ref()
            .map_or_else(|_| Default::default(), |v| tokens_of(&v["usage"]));
        let cost = price.map(|p| p.cost(&tokens));
        if let Err(e) = store.record_model_call(
            agent.as_str(),
            inbox_id,
            &model,
            &tokens,
            cost,
            result.is_ok(),
        ) {
            tracing::error!(error = %format!("{e:#}"), "could not record a model call");
        }
        result.map_err(|m| refuse(ErrorCode::Model, m))
    }

    /// Reads an API key: only from files the operator listed in `secrets.files` (an approved
    /// agent config cannot point the core at an arbitrary host file).
    fn read_key(&self, path: &std::path::Path) -> Result<String, String> {
        let canon = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        let wanted = canon(path);
        let listed = self
            .cfg()
            .secret_files
            .iter()
            .any(|f| wanted.is_some() && canon(f) == wanted);
        if !listed {
            return Err(format!(
                "api_key_file {} is not listed in hive.toml's secrets.files",
                path.display()
            ));
        }
        std::fs::read_to_string(path)
            .map(|k| k.trim().to_owned())
            .map_err(|e| format!("cannot read api_key_file {}: {e}", path.display()))
    }

    fn model_http(&self) -> &reqwest::Client {
        self.inner.model_http.get_or_init(reqwest::Client::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Usage;

    #[test]
    fn budgets() {
        let none = ModelLimits::default();
        let u = |calls, tokens| Usage {
            calls,
            tokens,
            ..Default::default()
        };
        assert!(check_budget(&none, u(7, 0), u(100, 0)).is_ok());
        assert!(check_budget(&none, u(8, 0), u(0, 0)).is_err());
        let l = ModelLimits {
            calls_per_message: Some(2),
            tokens_per_message: Some(100),
            calls_per_day: Some(10),
            tokens_per_day: Some(1000),
            ..Default::default()
        };
        assert!(check_budget(&l, u(1, 99), u(9, 999)).is_ok());
        for (t, d) in [
            (u(2, 0), u(0, 0)),
            (u(0, 100), u(0, 0)),
            (u(0, 0), u(10, 0)),
            (u(0, 0), u(0, 1000)),
        ] {
            assert!(check_budget(&l, t, d).is_err(), "{t:?} {d:?}");
        }
        let dollars = ModelLimits {
            usd_per_message: Some(0.5),
            usd_per_day: Some(2.0),
            ..Default::default()
        };
        let c = |cost_usd| Usage {
            cost_usd,
            ..Default::default()
        };
        assert!(check_budget(&dollars, c(0.49), c(1.99)).is_ok());
        let why = check_budget(&dollars, c(0.5), c(0.5)).unwrap_err();
        assert_eq!(why, "$0.5000 for this message (limit $0.5)");
        assert!(check_budget(&dollars, c(0.0), c(2.0)).is_err());
    }

    #[test]
    fn tokens_as_each_provider_counts_them() {
        let t = tokens_of(&json!({"prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 60}}));
        assert_eq!(
            (t.input, t.output, t.cache_read, t.cache_write),
            (40, 7, 60, 0)
        );
        let t = tokens_of(&json!({"input_tokens": 5, "output_tokens": 9,
            "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}));
        assert_eq!(
            (t.input, t.output, t.cache_read, t.cache_write),
            (5, 9, 1000, 200)
        );
        assert_eq!(t.total(), 1214);
        assert_eq!(tokens_of(&Value::Null).total(), 0);
    }

    #[test]
    fn assembles_a_streamed_tool_call() {
        let sse = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"read_\",\"arguments\":\"{\\\"a\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"notes\",\"arguments\":\"\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        );
        let v = assemble_stream(sse).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Hello");
        assert_eq!(m["tool_calls"][0]["id"], "c1");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "read_notes");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["completion_tokens"], 7);
        assert!(assemble_stream("").is_err());
    }

    #[test]
    fn assembles_an_anthropic_stream() {
        let events = [
            json!({"type": "message_start", "message": {"role": "assistant", "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "look."}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "read_notes", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ": 1}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ];
        let sse: String = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect();
        let m = assemble_anthropic_stream(&sse).unwrap();
        assert_eq!(m["content"][0]["text"], "Let me look.");
        assert_eq!(m["content"][1]["input"], json!({"a": 1}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["usage"]["output_tokens"], 12);
        assert_eq!(m["usage"]["input_tokens"], 9);
    }
}
