//! Model calls on behalf of agents: the harness never holds a key and has no network in the
//! `bwrap` runtime, so its brain sends each request over its socket and hive-c0re makes the
//! HTTP call: to the hive.toml provider the agent's (approved) config names, at that provider's
//! URL only (no redirects), with the key only the core can read, within the agent's budgets,
//! recording usage per turn and per day. The answer is read with a size cap as it arrives.

use std::time::Duration;

use serde_json::{Value, json};

use super::Core;
use crate::agent_spec::{AgentName, BrainSpec};
mod charge;
mod endpoint;
mod forward;
mod read;
#[cfg(test)]
use endpoint::append_segments;
pub use endpoint::endpoint;
use read::{read_capped, read_forwarding};
mod markers;
mod stream;
pub use forward::SseSplitter;
pub use markers::{MAX_BREAKPOINTS, MarkerRefused, markers_allowed};
pub use stream::{StreamError, assemble_anthropic_stream, assemble_stream};

use crate::config::{Credential, ProviderKind, read_key_file};
use crate::wire::protocol::ErrorCode;

/// Model calls per message when `limits.calls_per_message` is not set.
pub use crate::wire::protocol::DEFAULT_CALLS_PER_MESSAGE;
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
/// The largest model answer the core reads (cut off as it arrives, not after).
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

/// Why a model call that was sent got no usable answer (told to the brain as `model`).
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("cannot reach the model server at {base}: {error}")]
    Unreachable {
        base: url::Url,
        error: reqwest::Error,
    },
    #[error(
        "the model server at {base} answered {status}, a redirect to {to:?}: the core follows no redirects (set [providers.{provider}] base_url to the final address)"
    )]
    Redirect {
        base: url::Url,
        status: reqwest::StatusCode,
        to: String,
        provider: String,
    },
    #[error("the model's answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the model's answer: {0}")]
    Reading(reqwest::Error),
    /// `head` is the start of the body, already redacted.
    #[error("the model server answered {status}: {head}")]
    Status {
        status: reqwest::StatusCode,
        head: String,
    },
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("the model's answer is not JSON: {0}")]
    NotJson(serde_json::Error),
}

/// A request that would make the provider reach out on the agent's behalf.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum Outreach {
    #[error("the provider's own tools are not offered through the hive ({0})")]
    ProviderTools(String),
    #[error("content the provider would fetch by URL is not sent through the hive; send it inline")]
    ByUrl,
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

/// Refuses a request that would make the provider reach out on the agent's behalf: its
/// server-side tools (web search, web fetch, code execution: an Anthropic tool with a `type`,
/// an OpenAI tool that is not a function) or content it fetches by URL (an Anthropic `source`
/// of type `url`, an OpenAI `image_url` that is not a `data:` URI). A sandboxed agent has no
/// network; the provider must not be one. A pure decision over the request body.
fn reaches_only_the_model(
    kind: ProviderKind,
    body: &serde_json::Map<String, Value>,
) -> Result<(), Outreach> {
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = tool.get("type").and_then(Value::as_str);
        let ok = match kind {
            ProviderKind::Anthropic => t.is_none() || t == Some("custom"),
            ProviderKind::Openai => t.is_none() || t == Some("function"),
        };
        if !ok {
            return Err(Outreach::ProviderTools(t.unwrap_or("?").to_owned()));
        }
    }
    // Every content block, at any depth (tool results nest them).
    let mut stack: Vec<&Value> = body.get("messages").into_iter().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(o) => {
                let url_source = o
                    .get("source")
                    .and_then(|s| s.get("type"))
                    .and_then(Value::as_str)
                    == Some("url");
                let image_url = o
                    .get("image_url")
                    .map(|i| i.get("url").unwrap_or(i))
                    .and_then(Value::as_str)
                    .is_some_and(|u| !u.starts_with("data:"));
                if url_source || image_url {
                    return Err(Outreach::ByUrl);
                }
                stack.extend(o.values());
            }
            _ => {}
        }
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

impl Core {
    /// One chat-completions call for `agent`, during its turn for inbox message `inbox_id`.
    pub async fn model_call(
        &self,
        agent: &AgentName,
        inbox_id: i64,
        request: &Value,
    ) -> Result<Value, ModelRefusal> {
        self.call_model(agent, inbox_id, request, None).await
    }

    /// [`Core::model_call`], streamed: the provider is asked for a stream and each of its
    /// server-sent events goes to `chunks` as soon as it is read (see `forward`); the size cap,
    /// the budgets and the usage record are the same, and the assembled answer is returned at
    /// the end. An error after some chunks voids them (the caller says so).
    pub async fn model_call_streamed(
        &self,
        agent: &AgentName,
        inbox_id: i64,
        request: &Value,
        chunks: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<Value, ModelRefusal> {
        self.call_model(agent, inbox_id, request, Some(chunks))
            .await
    }

    async fn call_model(
        &self,
        agent: &AgentName,
        inbox_id: i64,
        request: &Value,
        chunks: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Value, ModelRefusal> {
        let entry = self
            .agents()
            .get(agent)
            .ok_or_else(|| refuse(ErrorCode::Internal, "unknown agent"))?;
        let spec = entry.spec();
        let (model, stream, limits) = match &spec.brain {
            BrainSpec::Openai {
                model,
                stream,
                limits,
                ..
            }
            | BrainSpec::Anthropic {
                model,
                stream,
                limits,
                ..
            } => (Some(model), *stream, limits),
            // The harness's proxy re-streams for the CLI: the core asks for one message.
            BrainSpec::ClaudeCode { model, limits, .. } => (model.as_ref(), false, limits),
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
        // The host and the key are hive.toml's, checked against the agent's brain every call.
        let provider = self
            .cfg()
            .provider_for(&spec.brain)
            .map_err(|why| refuse(ErrorCode::NotAllowed, format!("{agent}: {why}")))?
            .ok_or_else(|| refuse(ErrorCode::Internal, "a model brain without a provider"))?;
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
        // The hive's daily ceilings hold whatever the agent's (approved) config asks.
        let limits = &super::limits::under_ceilings(
            limits,
            self.cfg().model_calls_per_day,
            self.cfg().model_tokens_per_day,
        );
        super::limits::check_budget(limits, turn, day)
            .map_err(|why| refuse(ErrorCode::Budget, format!("over budget: {why}")))?;
        let secret = match provider.credential.file() {
            None => None,
            Some(path) => Some(read_key_file(path).map_err(|e| {
                refuse(
                    ErrorCode::NotAllowed,
                    format!("the key of [providers.{}]: {e}", provider.name),
                )
            })?),
        };
        let allowed = match provider.kind {
            ProviderKind::Openai => ALLOWED_FIELDS,
            ProviderKind::Anthropic => ANTHROPIC_FIELDS,
        };
        let mut body = serde_json::Map::new();
        for (k, v) in request.as_object().into_iter().flatten() {
            if allowed.contains(&k.as_str()) {
                body.insert(k.clone(), v.clone());
            }
        }
        reaches_only_the_model(provider.kind, &body)
            .map_err(|why| refuse(ErrorCode::NotAllowed, why.to_string()))?;
        markers_allowed(provider.kind, &mut body)
            .map_err(|why| refuse(ErrorCode::NotAllowed, why.to_string()))?;
        // A streamed call asks the provider for a stream whatever the config says.
        let stream = stream || chunks.is_some();
        let model = match model {
            Some(m) => m.clone(),
            // No model configured (claude-code): the client's choice, within the provider's.
            None => {
                let m = request["model"].as_str().unwrap_or("").to_owned();
                if m.is_empty() {
                    return Err(refuse(ErrorCode::BadRequest, "no model named"));
                }
                m
            }
        };
        if !provider.allows(&model) {
            return Err(refuse(
                ErrorCode::NotAllowed,
                format!(
                    "model {model:?} is not in [providers.{}] models ({})",
                    provider.name,
                    provider.models.join(", ")
                ),
            ));
        }
        body.insert("model".into(), json!(model));
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
        match provider.kind {
            ProviderKind::Openai if stream => {
                body.insert("stream_options".into(), json!({ "include_usage": true }));
            }
            ProviderKind::Openai => {}
            ProviderKind::Anthropic => {
                body.entry("max_tokens").or_insert(json!(4096));
            }
        }
        let url = endpoint(provider).map_err(|e| refuse(ErrorCode::Internal, format!("{e:#}")))?;
        let http = self
            .model_http()
            .map_err(|e| refuse(ErrorCode::Internal, format!("{e:#}")))?;
        let body = serde_json::to_vec(&Value::Object(body))
            .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
        let request_bytes = body.len();
        let mut req = http
            .post(url)
            .timeout(Duration::from_secs(300))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if provider.kind == ProviderKind::Anthropic {
            req = req.header("anthropic-version", ANTHROPIC_VERSION);
        }
        match (&provider.credential, &secret) {
            // A Claude subscription: its OAuth token, as Claude Code itself sends it.
            (Credential::OauthToken(_), Some(token)) => {
                req = req
                    .bearer_auth(token)
                    .header("anthropic-beta", "oauth-2025-04-20");
            }
            (Credential::ApiKey(_), Some(k)) if provider.kind == ProviderKind::Anthropic => {
                req = req.header("x-api-key", k);
            }
            (Credential::ApiKey(_), Some(k)) => req = req.bearer_auth(k),
            _ => {}
        }
        let base = &provider.base_url;
        // The events already passed on when a streamed call fails: charged all the same.
        let mut passed: Option<String> = None;
        let result = async {
            let resp = req.send().await.map_err(|error| CallError::Unreachable {
                base: base.clone(),
                error,
            })?;
            let status = resp.status();
            if status.is_redirection() {
                let to = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nowhere")
                    .to_owned();
                return Err(CallError::Redirect {
                    base: base.clone(),
                    status,
                    to,
                    provider: provider.name.clone(),
                });
            }
            // A provider may answer a streamed call in one piece: read as JSON, nothing to pass on.
            let sse = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/event-stream"));
            let as_sse = stream && (sse || chunks.is_none());
            let forwarded = status.is_success() && sse && chunks.is_some();
            let text = match chunks {
                Some(tx) if forwarded => match read_forwarding(resp, MAX_RESPONSE, tx).await {
                    Ok(text) => text,
                    Err(cut) => {
                        passed = Some(cut.passed);
                        return Err(cut.error);
                    }
                },
                _ => String::from_utf8_lossy(&read_capped(resp, MAX_RESPONSE).await?).into_owned(),
            };
            if !status.is_success() {
                let head: String = text.chars().take(300).collect();
                // What a server says may echo what it was sent (a gateway quoting the key).
                return Err(CallError::Status {
                    status,
                    head: self.secrets().redact(&head),
                });
            }
            if as_sse {
                let assembled = match provider.kind {
                    ProviderKind::Openai => assemble_stream(&text),
                    ProviderKind::Anthropic => assemble_anthropic_stream(&text),
                };
                if assembled.is_err() && forwarded {
                    passed = Some(text);
                }
                Ok(assembled?)
            } else {
                serde_json::from_str::<Value>(&text).map_err(CallError::NotJson)
            }
        }
        .await;
        let tokens = match (&result, &passed) {
            (Ok(v), _) => tokens_of(&v["usage"]),
            (Err(_), Some(passed)) => charge::charged_after_failure(passed, request_bytes),
            (Err(_), None) => Default::default(),
        };
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
        result.map_err(|e| refuse(ErrorCode::Model, e.to_string()))
    }

    /// The HTTP client for model calls: it follows no redirects (a redirect could carry the
    /// key to another host, and the provider's URL is the only one the operator declared).
    fn model_http(&self) -> anyhow::Result<&reqwest::Client> {
        if let Some(c) = self.inner.model_http.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the model HTTP client: {e}"))?;
        Ok(self.inner.model_http.get_or_init(|| client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_append_path_segments() {
        let cases = [
            (
                "openai",
                "http://127.0.0.1:1234/v1",
                "http://127.0.0.1:1234/v1/chat/completions",
            ),
            (
                "openai",
                "http://127.0.0.1:1234/v1/",
                "http://127.0.0.1:1234/v1/chat/completions",
            ),
            (
                "openai",
                "http://127.0.0.1:1234",
                "http://127.0.0.1:1234/chat/completions",
            ),
            (
                "anthropic",
                "https://api.anthropic.com",
                "https://api.anthropic.com/v1/messages",
            ),
            (
                "anthropic",
                "https://gw.example/a/b",
                "https://gw.example/a/b/v1/messages",
            ),
        ];
        for (kind, base, want) in cases {
            let text = format!("[providers.p]\nkind = \"{kind}\"\nbase_url = \"{base}\"");
            let raw: crate::config::RawConfig = toml::from_str(&text).unwrap();
            let cfg = crate::config::Config::validate(raw, None).unwrap();
            assert_eq!(
                endpoint(&cfg.providers["p"]).unwrap().as_str(),
                want,
                "{base}"
            );
        }
        // Segments are segments: nothing appended can become a query or a new host.
        let base = url::Url::parse("https://api.example/v1").unwrap();
        let odd = append_segments(&base, &["a?b", "#c", ".."]).unwrap();
        assert_eq!(odd.host_str(), Some("api.example"));
        assert_eq!((odd.query(), odd.fragment()), (None, None));
    }

    #[test]
    fn requests_reach_only_the_model() {
        use ProviderKind::*;
        let body = |v: Value| v.as_object().unwrap().clone();
        let cases = [
            (
                Anthropic,
                json!({"tools": [{"name": "mcp__hive__x", "input_schema": {}}]}),
                true,
            ),
            (
                Anthropic,
                json!({"tools": [{"type": "custom", "name": "x"}]}),
                true,
            ),
            (
                Anthropic,
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                false,
            ),
            (
                Anthropic,
                json!({"tools": [{"type": "code_execution_20250522", "name": "c"}]}),
                false,
            ),
            (
                Openai,
                json!({"tools": [{"type": "function", "function": {"name": "x"}}]}),
                true,
            ),
            (
                Openai,
                json!({"tools": [{"type": "web_search_preview"}]}),
                false,
            ),
            (
                Anthropic,
                json!({"messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "data": "AA=="}}]}]}),
                true,
            ),
            (
                Anthropic,
                json!({"messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}}]}]}),
                false,
            ),
            (
                Anthropic,
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result",
                "content": [{"type": "image", "source": {"type": "url", "url": "http://10.0.0.1/"}}]}]}]}),
                false,
            ),
            (
                Openai,
                json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}),
                true,
            ),
            (
                Openai,
                json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://169.254.169.254/"}}]}]}),
                false,
            ),
            (
                Openai,
                json!({"messages": [{"role": "user", "content": "plain text"}]}),
                true,
            ),
        ];
        for (kind, b, ok) in cases {
            assert_eq!(
                reaches_only_the_model(kind, &body(b.clone())).is_ok(),
                ok,
                "{b}"
            );
        }
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
}
