//! The `openai` brain against a local server that speaks the chat-completions API (plain and
//! streamed), with scripted tool calls: the model's tool calls reach the core, malformed
//! arguments go back to the model, the key is added by the core (never the harness), budgets
//! stop a runaway turn, and the final answer reaches the room.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use common::TestHive;
use common::model_api::{Contract, stop_reason, wants_usage};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(45);
const KEY: &str = "hh-test-model-key-5f1e2d3c4b";

/// A request the fake model server received: its Authorization header and its body.
type Request = (Option<String>, Value);

/// The requests, and what a real API would have refused among them.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>, Contract);

/// The scripted model: a malformed tool call, then a good one, then the answer.
fn script(body: &Value) -> Value {
    let messages = body["messages"].as_array().unwrap();
    let results: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    let user = messages
        .iter()
        .rfind(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .to_owned();
    let call = |id: &str, name: &str, args: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": name, "arguments": args}}]})
    };
    match results.len() {
        0 => call("c1", "write_notes", "{\"notes\": \"from the"),
        1 => {
            let r = results[0]["content"].as_str().unwrap_or("");
            assert!(
                r.starts_with("error: the arguments are not valid JSON"),
                "{r}"
            );
            call("c2", "write_notes", "{\"notes\": \"from the model\"}")
        }
        _ => json!({"role": "assistant", "content": format!("done: {user}")}),
    }
}

/// `message` streamed as chat-completions chunks; the usage chunk only if the request asked for
/// it (`stream_options.include_usage`), as the real API does.
fn sse(message: &Value, usage: bool) -> String {
    let mut out = String::new();
    let mut push = |delta: Value, finish: Value| {
        out.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        ));
    };
    if let Some(calls) = message["tool_calls"].as_array() {
        let c = &calls[0];
        let args = c["function"]["arguments"].as_str().unwrap();
        let (a, b) = args.split_at(args.len() / 2);
        push(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": c["id"], "type": "function",
            "function": {"name": c["function"]["name"], "arguments": a}}]}),
            Value::Null,
        );
        push(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
            json!("tool_calls"),
        );
    } else {
        let text = message["content"].as_str().unwrap();
        let (a, b) = text.split_at(text.len() / 2);
        push(json!({"role": "assistant", "content": a}), Value::Null);
        push(json!({"content": b}), json!("stop"));
    }
    if usage {
        out.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}})
        ));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

async fn completions(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.0.lock().unwrap().push((auth.clone(), body.clone()));
    if let Some(refused) = seen.1.openai(&body) {
        return refused;
    }
    let leak = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .is_some_and(|c| c.ends_with("\nleak"));
    // A model (or a gateway) that says back the key it was sent: the core must not post it.
    let message = if leak {
        json!({"role": "assistant", "content": format!("my key: {}", auth.unwrap_or_default())})
    } else {
        script(&body)
    };
    let finish = if message["tool_calls"].is_array() {
        "tool_calls"
    } else {
        "stop"
    };
    if body["stream"] == json!(true) {
        (
            [("content-type", "text/event-stream")],
            sse(&message, wants_usage(&body)),
        )
            .into_response()
    } else {
        Json(json!({
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4},
        }))
        .into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_brain_with_tools_streaming_and_budgets() {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(seen.clone());
    let base = common::serve_http(app).await + "/v1";
    let (_keys, key) = common::secret_file("model.key", &format!("{KEY}\n"));
    let bot = |extra: &str| {
        format!("[brain]\nkind = \"openai\"\nmodel = \"test-model\"\nprovider = \"local\"\n{extra}")
    };
    let mut hive = TestHive::with_config(
        &[
            ("gpt", bot("")),
            ("gpts", bot("stream = true\n")),
            ("broke", bot("[brain.limits]\ntokens_per_message = 10\n")),
            ("rich", bot("[brain.limits]\nusd_per_day = 0.00001\n")),
        ],
        // Dollars per million tokens: each call (11 in, 4 out) costs $0.000019.
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{base}\"\napi_key_file = {key:?}\nmodels = [\"test-model\"]\n\
             [prices.\"test-model\"]\ninput = 1.0\noutput = 2.0\n"
        ),
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    for name in ["gpt", "gpts"] {
        let room = op.join(&format!("agent-{name}")).await;
        op.send(&room, "hello").await;
        op.wait_until(&room, WAIT, &format!("{name}'s answer"), |m| {
            m.iter()
                .any(|x| x.sender == format!("@{name}:localhost") && x.body == "done: hello")
        })
        .await;
    }
    let broke = op.join("agent-broke").await;
    op.send(&broke, "hello").await;
    op.wait_until(&broke, WAIT, "the budget stop", |m| {
        m.iter().any(|x| {
            x.body.starts_with(
                "I have to stop here: I am over budget: 15 tokens for this message (limit 10).",
            )
        })
    })
    .await;

    // A budget in dollars: the first call ($0.000019) goes over $0.00001 a day.
    let rich = op.join("agent-rich").await;
    op.send(&rich, "hello").await;
    op.wait_until(&rich, WAIT, "the dollar budget stop", |m| {
        m.iter().any(|x| {
            x.body.starts_with(
                "I have to stop here: I am over budget: $0.0000 today (limit $0.00001)",
            )
        })
    })
    .await;

    // The tool calls reached the core, the key was the core's, the model was the config's.
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    for name in ["gpt", "gpts"] {
        assert_eq!(store.notes(name).unwrap(), "from the model");
        let used = store.usage_since(name, 0).unwrap();
        assert_eq!((used.calls, used.tokens), (3, 45), "{name}");
        assert!((used.cost_usd - 0.000057).abs() < 1e-12, "{used:?}");
        assert_eq!(used.unpriced_calls, 0);
    }
    // `hive usage` reports them per agent and day.
    let out = hive.hive(&["usage"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    let gpt = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("gpt"))
        .unwrap_or_else(|| panic!("no gpt line in\n{table}"));
    let cols: Vec<&str> = gpt.split_whitespace().collect();
    // day agent turns calls input output cache-read cache-write tokens cost
    assert_eq!(
        &cols[2..],
        ["1", "3", "33", "12", "0", "0", "45", "$0.0001"],
        "{table}"
    );
    assert!(
        table.lines().last().unwrap().starts_with("total"),
        "{table}"
    );
    // … and per turn: gpt's one message, three calls.
    let out = hive
        .hive(&["usage", "--turns", "5", "--agent", "gpt"])
        .output()
        .unwrap();
    let turns = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = turns.lines().collect();
    assert_eq!(lines.len(), 2, "a header and gpt's one turn:\n{turns}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    // started (date and time), agent, message, attempt, duration, outcome, calls, tokens,
    // model, cost
    assert_eq!(cols[2], "gpt", "{turns}");
    assert!(cols[3].parse::<i64>().is_ok(), "{turns}");
    assert_eq!(cols[4], "1", "{turns}");
    assert!(
        cols[5]
            .strip_suffix('s')
            .is_some_and(|d| d.parse::<f64>().is_ok()),
        "{turns}"
    );
    assert_eq!(
        &cols[6..],
        ["done", "3", "45", "test-model", "$0.0001"],
        "{turns}"
    );
    // A model that says back the key it was sent: the reply is refused, and says why
    // without the key.
    let gpt = op.join("agent-gpt").await;
    op.send(&gpt, "leak").await;
    op.wait_until(&gpt, WAIT, "the refused leak", |m| {
        m.iter().any(|x| {
            x.body.starts_with("⚠️ gpt could not handle this message")
                && x.body
                    .contains("not posted: the message contains [providers.local]'s API key")
        })
    })
    .await;
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 9, "3 + 3 + 1 + 1 + 1 model calls");
    for (auth, body) in &requests {
        assert_eq!(auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
        assert_eq!(body["model"], "test-model");
        let tools: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert!(
            tools.contains(&"write_notes") && tools.contains(&"send_message"),
            "{tools:?}"
        );
    }
    assert!(requests.iter().any(|(_, b)| b["stream"] == json!(true)));
    // The key never reached a room, though the model said it back.
    let said = op.seen.lock().unwrap().clone();
    assert!(said.iter().any(|m| m.body.contains("could not handle")));
    for m in &said {
        for text in [Some(&m.body), m.formatted.as_ref()].into_iter().flatten() {
            assert!(!text.contains(KEY), "the key reached {}: {text}", m.room);
        }
    }
    seen.1.assert_kept();
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// The scripted Messages-API model: a malformed tool call, a good one, then the answer.
fn anthropic_script(body: &Value) -> Value {
    let messages = body["messages"].as_array().unwrap();
    let results: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .collect();
    let user = last_user(messages)
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .to_owned();
    let content = match results.len() {
        0 => json!([{"type": "text", "text": "Noting."},
                    {"type": "tool_use", "id": "t1", "name": "write_notes", "input": "{\"notes\": "}]),
        1 => {
            assert_eq!(results[0]["is_error"], true, "{}", results[0]);
            json!([{"type": "tool_use", "id": "t2", "name": "write_notes", "input": {"notes": "from claude"}}])
        }
        _ => json!([{"type": "text", "text": format!("done: {user}")}]),
    };
    json!({"type": "message", "role": "assistant", "content": content,
           "stop_reason": stop_reason(&content), "usage": {"input_tokens": 20, "output_tokens": 5}})
}

fn anthropic_sse(message: &Value) -> String {
    let mut events = vec![
        json!({"type": "message_start", "message": {"type": "message", "role": "assistant",
        "content": [], "usage": {"input_tokens": 20, "output_tokens": 1}}}),
    ];
    for (i, b) in message["content"].as_array().unwrap().iter().enumerate() {
        if b["type"] == "text" {
            events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
            events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": b["text"]}}));
        } else {
            events.push(
                json!({"type": "content_block_start", "index": i, "content_block":
                {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}),
            );
            let raw = match &b["input"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": raw}}));
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]}, "usage": {"output_tokens": 5}}));
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

async fn messages_api(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    // An API key arrives as x-api-key; a subscription's OAuth token as a bearer + beta header.
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let key = header("x-api-key").or_else(|| {
        header("authorization")
            .map(|a| format!("{a} ({})", header("anthropic-beta").unwrap_or_default()))
    });
    seen.0.lock().unwrap().push((key, body.clone()));
    if let Some(refused) = seen.1.anthropic(&headers, &body) {
        return refused;
    }
    if headers.get("anthropic-version").unwrap() != "2023-06-01" {
        seen.1.record(
            "anthropic",
            vec!["not the version the core speaks".into()],
            &body,
        );
    }
    let message = anthropic_script(&body);
    if body["stream"] == json!(true) {
        (
            [("content-type", "text/event-stream")],
            anthropic_sse(&message),
        )
            .into_response()
    } else {
        Json(message).into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_brain_with_tools_and_streaming() {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages_api))
        .with_state(seen.clone());
    let base = common::serve_http(app).await;
    let (_keys, key) = common::secret_file("anthropic.key", KEY);
    let bot =
        |extra: &str| format!("[brain]\nkind = \"anthropic\"\nmodel = \"claude-test\"\n{extra}");
    let (_tokens, token) = common::secret_file("oauth.token", "sk-ant-oat01-TESTTOKEN");
    let subscriber =
        "[brain]\nkind = \"anthropic\"\nmodel = \"claude-test\"\nprovider = \"subscription\"\n"
            .to_owned();
    let mut hive = TestHive::with_config(
        &[
            ("claude", bot("")),
            ("claudes", bot("stream = true\n")),
            ("subscriber", subscriber),
        ],
        // `claude` and `claudes` name no provider: they use the one named after their API.
        &format!(
            "[providers.anthropic]\nkind = \"anthropic\"\nbase_url = \"{base}\"\napi_key_file = {key:?}\n\
             [providers.subscription]\nkind = \"anthropic\"\nbase_url = \"{base}\"\noauth_token_file = {token:?}\n"
        ),
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    for name in ["claude", "claudes", "subscriber"] {
        let room = op.join(&format!("agent-{name}")).await;
        op.send(&room, "hello").await;
        op.wait_until(&room, WAIT, &format!("{name}'s answer"), |m| {
            m.iter()
                .any(|x| x.sender == format!("@{name}:localhost") && x.body == "done: hello")
        })
        .await;
    }
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    for name in ["claude", "claudes"] {
        assert_eq!(store.notes(name).unwrap(), "from claude");
        assert_eq!(store.usage_since(name, 0).unwrap().calls, 3);
    }
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 9);
    let by_token = requests
        .iter()
        .filter(|(k, _)| k.as_deref() == Some("Bearer sk-ant-oat01-TESTTOKEN (oauth-2025-04-20)"))
        .count();
    assert_eq!(by_token, 3, "the subscriber's calls carry its OAuth token");
    for (key, body) in &requests {
        assert!(
            key.as_deref() == Some(KEY) || key.as_deref().is_some_and(|k| k.starts_with("Bearer ")),
            "{key:?}"
        );
        assert_eq!(body["model"], "claude-test");
        // The system prompt is one text block, marked for the prompt cache, like the last
        // tool and the last message (see brain/anthropic/cache.rs).
        let eph = json!({"type": "ephemeral"});
        assert!(
            body["system"][0]["text"]
                .as_str()
                .unwrap()
                .contains("You are ")
        );
        assert_eq!(body["system"][0]["cache_control"], eph, "{body}");
        assert_eq!(
            body["tools"].as_array().unwrap().last().unwrap()["cache_control"],
            eph
        );
        let last = body["messages"].as_array().unwrap().last().unwrap();
        assert_eq!(
            last["content"].as_array().unwrap().last().unwrap()["cache_control"],
            eph
        );
        assert!(
            body["tools"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "write_notes")
        );
    }
    seen.1.assert_kept();
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// The harness's pid as the core recorded it.
fn store_pid(hive: &TestHive, agent: &str) -> i32 {
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let states = store.agent_states().unwrap();
    let (_, _, pid) = states.iter().find(|(n, _, _)| n == agent).unwrap();
    pid.expect("the harness runs") as i32
}

/// The scripted model for declared MCP servers: `shout <text>`, `env` and `die` call the
/// `shout` server's tool of that name; then the tool's result is the answer.
fn mcp_call(user: &str) -> Option<(&'static str, Value)> {
    match user.split_once(' ') {
        Some(("shout", text)) => Some(("mcp__shout__shout", json!({ "text": text }))),
        _ if user == "env" => Some(("mcp__shout__env", json!({}))),
        _ if user == "die" => Some(("mcp__shout__die", json!({}))),
        _ if user == "pid" => Some(("mcp__shout__pid", json!({}))),
        _ => None,
    }
}

/// The newest message to the agent (earlier exchanges come before it as history).
/// The last user message's text: a string, or (marked for the prompt cache) one text block.
fn last_user(messages: &[Value]) -> &str {
    messages
        .iter()
        .rev()
        .filter(|m| m["role"] == "user")
        .find_map(|m| {
            m["content"]
                .as_str()
                .or_else(|| match m["content"][0]["type"].as_str() {
                    Some("text") => m["content"][0]["text"].as_str(),
                    _ => None,
                })
        })
        .unwrap_or("")
}

fn last_line(text: &str) -> String {
    text.rsplit('\n').next().unwrap_or("").to_owned()
}

async fn mcp_completions(State(seen): State<Seen>, Json(body): Json<Value>) -> Response {
    seen.0.lock().unwrap().push((None, body.clone()));
    if let Some(refused) = seen.1.openai(&body) {
        return refused;
    }
    let messages = body["messages"].as_array().unwrap();
    let user = last_line(last_user(messages));
    let result = messages.iter().find(|m| m["role"] == "tool");
    let message = match (result, mcp_call(&user)) {
        (None, Some((name, args))) => json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "m1", "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}),
        (Some(r), _) => {
            json!({"role": "assistant", "content": format!("done: {}", r["content"].as_str().unwrap())})
        }
        (None, None) => json!({"role": "assistant", "content": "done"}),
    };
    let finish = if message["tool_calls"].is_array() {
        "tool_calls"
    } else {
        "stop"
    };
    Json(json!({
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }))
    .into_response()
}

async fn mcp_messages(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    seen.0.lock().unwrap().push((None, body.clone()));
    if let Some(refused) = seen.1.anthropic(&headers, &body) {
        return refused;
    }
    let messages = body["messages"].as_array().unwrap();
    let user = last_line(last_user(messages));
    let result = messages
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_result");
    let content = match (result, mcp_call(&user)) {
        (None, Some((name, input))) => {
            json!([{"type": "tool_use", "id": "u1", "name": name, "input": input}])
        }
        (Some(r), _) => {
            json!([{"type": "text", "text": format!("done: {}", r["content"].as_str().unwrap())}])
        }
        (None, None) => json!([{"type": "text", "text": "done"}]),
    };
    Json(
        json!({"type": "message", "role": "assistant", "content": content,
                "stop_reason": stop_reason(&content), "usage": {"input_tokens": 1, "output_tokens": 1}}),
    )
    .into_response()
}

/// MCP servers declared in agent.toml are offered to the in-process brains too: the model calls
/// their tools by `mcp__<server>__<tool>`, the harness runs them (with a clean environment), a
/// server that dies is started again on the next turn, and one that cannot start is named in
/// the system prompt instead of failing the turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_mcp_servers_for_openai_and_anthropic() {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(mcp_completions))
        .route("/v1/messages", axum::routing::post(mcp_messages))
        .with_state(seen.clone());
    let base = common::serve_http(app).await;
    let servers = "[brain.mcp_servers.shout]\ncommand = [\"./shout.py\"]\nenv = { MODE = \"linger\" }\n\
                   [brain.mcp_servers.ghost]\ncommand = [\"./no-such-server\"]\n";
    let mut hive = TestHive::with_config(
        &[
            (
                "gpt",
                format!("[brain]\nkind = \"openai\"\nmodel = \"m\"\n{servers}"),
            ),
            (
                "claude",
                format!("[brain]\nkind = \"anthropic\"\nmodel = \"m\"\n{servers}"),
            ),
        ],
        // Local servers without auth. Unsandboxed, each agent on a uid of its own (the test is
        // about the servers' environment and lifetime, which a sandbox's pid namespace hides).
        &format!(
            "[providers.openai]\nkind = \"openai\"\nbase_url = \"{base}/v1\"\n\
             [providers.anthropic]\nkind = \"anthropic\"\nbase_url = \"{base}\"\n\
             [runtime]\nkind = \"process\"\nallow_unsandboxed = true\n"
        ),
    )
    .await;
    for name in ["gpt", "claude"] {
        common::write_script(&hive.bots.join(name), "shout.py", common::SHOUT_PY);
    }
    // Other uids must be able to enter the test's directory to reach their own files.
    std::fs::set_permissions(
        hive.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    hive.start_core();
    let op = hive.operator().await;
    for name in ["gpt", "claude"] {
        let room = op.join(&format!("agent-{name}")).await;
        let me = format!("@{name}:localhost");
        // Every answer ends by naming the declared server that cannot start.
        let says = |text: &'static str| {
            let me = me.clone();
            let body = format!(
                "{text}\n\n_(These MCP servers of mine did not start, so I worked without their tools: `ghost`; the harness log says why.)_"
            );
            move |m: &[common::Seen]| m.iter().any(|x| x.sender == me && x.body == body)
        };
        op.send(&room, "shout quiet words").await;
        op.wait_until(&room, WAIT, "the shouted words", says("done: QUIET WORDS"))
            .await;
        // A clean environment: the declaration's `env`, none of the harness's (RUST_LOG). (An
        // interpreter's launcher, such as a pyenv shim, may add its own.)
        op.send(&room, "env").await;
        let seen = op
            .wait_until(&room, WAIT, "the server's environment", |m| {
                m.iter().any(|x| x.sender == me && x.body.contains("MODE"))
            })
            .await;
        let env = &seen.iter().rfind(|x| x.sender == me).unwrap().body;
        let first = env.lines().next().unwrap_or_default();
        let names: Vec<&str> = first.trim_start_matches("done: ").split(' ').collect();
        for wanted in ["HOME", "LANG", "MODE", "PATH"] {
            assert!(names.contains(&wanted), "{env}");
        }
        assert!(
            !names.contains(&"RUST_LOG"),
            "the harness's environment leaked: {env}"
        );
        // A server that dies mid-call: the model reads the failure, the next turn restarts it.
        op.send(&room, "die").await;
        op.wait_until(&room, WAIT, "the failure", |m| {
            m.iter()
                .any(|x| x.sender == me && x.body.contains("the MCP server \"shout\" failed"))
        })
        .await;
        op.send(&room, "shout again").await;
        op.wait_until(&room, WAIT, "the restarted server", says("done: AGAIN"))
            .await;
    }
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 16, "2 model calls per message");
    // Earlier exchanges come along as history: each agent's last message (its 7th and 8th
    // calls; gpt's come first) carries them.
    for last in [&requests[6].1, &requests[14].1] {
        let m = last["messages"].to_string();
        assert!(
            m.contains("shout quiet words")
                && m.contains("done: QUIET WORDS")
                && m.contains("shout again"),
            "{m}"
        );
    }
    assert!(hive.data.join("agents/gpt/state/history.json").is_file());

    // A declared server that ignores EOF still goes when its harness is killed (SIGKILL, so no
    // destructor runs): PR_SET_PDEATHSIG.
    let room = op.join("agent-gpt").await;
    op.send(&room, "pid").await;
    let said = op
        .wait_until(&room, WAIT, "the server's pid", |m| {
            m.iter().any(|x| {
                x.sender == "@gpt:localhost"
                    && x.body.starts_with("done: ")
                    && x.body[6..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .await;
    let body = &said
        .iter()
        .rfind(|x| x.sender == "@gpt:localhost")
        .unwrap()
        .body;
    let server: i32 = body[6..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let harness = store_pid(&hive, "gpt");
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    };
    assert!(alive(server), "the server runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(harness),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(server) {
        assert!(
            std::time::Instant::now() < deadline,
            "the declared server outlived its harness"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, body) in &requests {
        let tools = body["tools"].to_string();
        assert!(
            tools.contains("mcp__shout__shout") && tools.contains("write_notes"),
            "{tools}"
        );
        assert!(!tools.contains("mcp__ghost"), "{tools}");
        let system = match (body["system"].as_str(), body["system"][0]["text"].as_str()) {
            (Some(s), _) | (None, Some(s)) => s.to_owned(),
            _ => body["messages"][0]["content"].as_str().unwrap().to_owned(),
        };
        assert!(
            system.contains("unavailable this turn") && system.contains("ghost (cannot run"),
            "{system}"
        );
    }
    seen.1.assert_kept();
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// Headers a fake server received, per request.
#[derive(Clone, Default)]
struct Headers(Arc<Mutex<Vec<HeaderMap>>>);

async fn record_headers(State(seen): State<Headers>, headers: HeaderMap) -> Response {
    seen.0.lock().unwrap().push(headers);
    Json(json!({"type": "message", "role": "assistant", "content": [{"type": "text", "text": "stolen"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}))
    .into_response()
}

/// A model server that streams forever: answers each request with an endless, close-delimited
/// event stream (no length), until the client goes away.
async fn endless_stream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let header = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                if conn.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!(
                    "data: {}\n\n",
                    json!({"choices": [{"index": 0, "delta": {"content": "x".repeat(1000)}}]})
                )
                .repeat(64);
                while conn.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    base
}

/// What an approved agent.toml may not grant: the core calls the provider's URL only. A
/// provider that redirects gets no second request (the key never reaches the redirect's
/// target); an answer larger than 8 MiB is refused while it streams; an agent naming a provider
/// hive.toml does not declare, or naming none when hive.toml has none for its API, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_the_only_hosts_and_answers_are_capped() {
    let target = Headers::default();
    let elsewhere = axum::Router::new()
        .fallback(axum::routing::any(record_headers))
        .with_state(target.clone());
    let elsewhere = common::serve_http(elsewhere)
        .await
        .replace("127.0.0.1", "localhost");
    let asked = Headers::default();
    let to = format!("{elsewhere}/v1/messages");
    let redirector = axum::Router::new()
        .route(
            "/v1/messages",
            axum::routing::post(
                move |State(seen): State<Headers>, headers: HeaderMap| async move {
                    seen.0.lock().unwrap().push(headers);
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, to)],
                    )
                },
            ),
        )
        .with_state(asked.clone());
    let hop = common::serve_http(redirector).await;
    let big = endless_stream().await;
    let (_keys, key) = common::secret_file("hop.key", KEY);
    let mut hive = TestHive::with_config(
        &[
            (
                "hop",
                "[brain]\nkind = \"anthropic\"\nmodel = \"m\"\nprovider = \"hop\"\n".into(),
            ),
            (
                "big",
                "[brain]\nkind = \"openai\"\nmodel = \"m\"\nstream = true\nprovider = \"big\"\n"
                    .into(),
            ),
            (
                "lost",
                "[brain]\nkind = \"openai\"\nmodel = \"m\"\nprovider = \"nowhere\"\n".into(),
            ),
            ("idle", "[brain]\nkind = \"openai\"\nmodel = \"m\"\n".into()),
        ],
        &format!(
            "[providers.hop]\nkind = \"anthropic\"\nbase_url = \"{hop}\"\napi_key_file = {key:?}\n\
             [providers.big]\nkind = \"openai\"\nbase_url = \"{big}/v1\"\n"
        ),
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let failure = |name: &str, why: &str| {
        let prefix = format!("⚠️ {name} could not handle this message: model call failed: ");
        let why = why.to_owned();
        move |m: &[common::Seen]| {
            m.iter()
                .any(|x| x.body.starts_with(&prefix) && x.body.contains(&why))
        }
    };
    let cases = [
        (
            "hop",
            format!(
                "the model server at {hop}/ answered 302 Found, a redirect to \"{elsewhere}/v1/messages\": the core follows no redirects"
            ),
        ),
        (
            "big",
            "the model's answer is larger than 8388608 bytes".to_owned(),
        ),
    ];
    for (name, why) in &cases {
        let room = op.join(&format!("agent-{name}")).await;
        op.send(&room, "hello").await;
        op.wait_until(
            &room,
            WAIT,
            &format!("{name}'s refusal"),
            failure(name, why),
        )
        .await;
    }
    // A provider hive.toml does not grant: the agent cannot think, says so once, and its
    // messages wait in the queue (none is handed out and lost).
    let ungranted = [
        (
            "lost",
            "brain.provider \"nowhere\" is not declared in hive.toml (no [providers.nowhere])",
        ),
        (
            "idle",
            "no [providers.openai] in hive.toml: it cannot think until one is declared",
        ),
    ];
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    for (name, why) in ungranted {
        let room = op.join(&format!("agent-{name}")).await;
        op.send(&room, "hello").await;
        let notice = format!("⚠️ {name} cannot think right now: {why}. Messages wait in the queue");
        op.wait_until(&room, WAIT, &format!("{name}'s notice"), |m| {
            m.iter().any(|x| x.body.starts_with(&notice))
        })
        .await;
        // (The notice may come before the message is queued: it is said when the harness asks.)
        let deadline = std::time::Instant::now() + WAIT;
        let queued = loop {
            let q = store.counts(name).unwrap();
            if q.pending + q.inflight + q.done + q.dead > 0 || std::time::Instant::now() > deadline
            {
                break q;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            (queued.pending, queued.inflight, queued.dead),
            (1, 0, 0),
            "{name}: {queued:?}"
        );
    }
    let asked = asked.0.lock().unwrap().clone();
    assert!(!asked.is_empty());
    for h in &asked {
        assert_eq!(h.get("x-api-key").unwrap(), KEY, "the provider got the key");
    }
    assert!(
        target.0.lock().unwrap().is_empty(),
        "the redirect was followed: the key went to {elsewhere}"
    );
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    assert!(
        store.usage_since("big", 0).unwrap().calls >= 1,
        "the failed call is recorded"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// The stand-ins' contract refuses what the real APIs refuse (and passes what they take).
#[test]
fn the_stand_ins_refuse_what_the_apis_refuse() {
    use common::model_api::{anthropic_violations, openai_violations};
    let call = |id: &str| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}});
    let ok = json!({"model": "m", "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
        {"role": "assistant", "content": null, "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "a", "content": "r"},
        {"role": "tool", "tool_call_id": "b", "content": "r"}]});
    assert_eq!(openai_violations(&ok), Vec::<String>::new());
    let mut wrong = ok.clone();
    wrong["messages"][3]["tool_call_id"] = json!("b");
    assert!(!openai_violations(&wrong).is_empty());
    let mut short = ok.clone();
    short["messages"].as_array_mut().unwrap().pop();
    assert!(!openai_violations(&short).is_empty());
    let mut usage = ok.clone();
    usage["stream_options"] = json!({"include_usage": true});
    assert!(!openai_violations(&usage).is_empty());

    let ok = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}]});
    assert_eq!(anthropic_violations(Some("v"), &ok), Vec::<String>::new());
    let mut no_max = ok.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    assert!(!anthropic_violations(Some("v"), &no_max).is_empty());
    let mut wrong = ok.clone();
    wrong["messages"][2]["content"][0]["tool_use_id"] = json!("x");
    assert!(!anthropic_violations(Some("v"), &wrong).is_empty());
    let mut string_input = ok.clone();
    string_input["messages"][1]["content"][0]["input"] = json!("{");
    assert!(!anthropic_violations(Some("v"), &string_input).is_empty());
    assert!(!anthropic_violations(None, &ok).is_empty());
}
