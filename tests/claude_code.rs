//! The real, pinned Claude Code CLI as an agent's brain, offline: its model calls go through
//! the harness's proxy and hive-c0re (which adds the key) to a local Messages API server with a
//! scripted tool call; the tool call reaches the core through `hive mcp`; the answer reaches the
//! room; the session resumes on the next message.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use common::TestHive;
use common::model_api::Contract;
use serde_json::{Value, json};

/// Said after each answer: the declared `ghost` server cannot start.
const GHOST: &str = "\n\n_(These MCP servers of mine did not connect, so I worked without their tools: `ghost` (failed).)_";
const WAIT: Duration = Duration::from_secs(90);
const KEY: &str = "hh-test-claude-key-0a9b8c7d6e";

type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;
type Prompts = Arc<Mutex<std::collections::HashSet<String>>>;

async fn messages(
    State((seen, seen_prompts, contract)): State<(Seen, Prompts, Contract)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock().unwrap().push((key, body.clone()));
    if let Some(refused) = contract.anthropic(&headers, &body) {
        return refused;
    }
    let names: Vec<&str> = body["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    // The CLI merges a turn's new prompt into the last user message, after any earlier
    // tool_result: decide on the message's last block.
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    let blocks: Vec<Value> = match &last["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(b) => b.clone(),
        _ => vec![],
    };
    let text_of = |b: &Value| match &b["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => b["text"].as_str().unwrap_or("").to_owned(),
    };
    // The latest prompt anywhere in the conversation (a tool round leaves it behind).
    let prompt = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| match &m["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(b) => b
                .iter()
                .rev()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str().map(str::to_owned))
                .collect(),
            _ => vec![],
        })
        .map(|t| t.trim().to_owned())
        .find(|t| t.contains(" wrote:"))
        .unwrap_or_default();
    let said = prompt.rsplit('\n').next().unwrap_or("").to_owned();
    let tool_use = |id: &str, name: &str, input: Value| json!([{"type": "tool_use", "id": id, "name": name, "input": input}]);
    // One tool call per prompt, then the answer (the CLI may put reminders after results).
    let first_time = seen_prompts.lock().unwrap().insert(prompt.clone());
    let results: String = blocks
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(text_of)
        .collect();
    let content = if first_time && said == "shout it" && names.contains(&"mcp__shout__shout") {
        tool_use(
            "toolu_2",
            "mcp__shout__shout",
            json!({"text": "quiet words"}),
        )
    } else if first_time && said == "hello" && names.contains(&"mcp__hive__write_notes") {
        tool_use(
            "toolu_1",
            "mcp__hive__write_notes",
            json!({"notes": "from claude code"}),
        )
    } else if said == "shout it" && results.contains("QUIET") {
        json!([{"type": "text", "text": "done: QUIET WORDS"}])
    } else {
        json!([{"type": "text", "text": format!("done: {said}")}])
    };
    let stop = common::model_api::stop_reason(&content);
    Json(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 6}}),
    )
    .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_cli_through_the_hive() {
    round_trip("").await;
}

/// The same inside the bwrap sandbox: no network, no key, only a loopback proxy to the core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_cli_in_the_bwrap_sandbox() {
    hyperhive::runtime::bwrap::ensure_installed().expect("bubblewrap");
    round_trip("[runtime]\nkind = \"bwrap\"\n").await;
}

async fn round_trip(runtime: &str) {
    let Some(cli) = common::claude_code_cli() else {
        return;
    };
    let seen: Seen = Arc::default();
    // What the real Messages API would refuse among the CLI's requests (answered 400 here).
    let contract = Contract::default();
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .with_state((seen.clone(), Prompts::default(), contract.clone()));
    let base = common::serve_http(app).await;
    let (_keys, key) = common::secret_file("anthropic.key", KEY);
    let mut hive = TestHive::with_config(
        &[(
            "claude",
            "[brain]\nkind = \"claude-code\"\nmodel = \"claude-test\"\nprovider = \"local-claude\"\n\
             [brain.mcp_servers.shout]\ncommand = [\"./shout.py\"]\n\
             [brain.mcp_servers.ghost]\ncommand = [\"./no-such-server\"]\n"
                .to_owned(),
        )],
        &format!(
            "[providers.local-claude]\nkind = \"anthropic\"\nbase_url = \"{base}\"\napi_key_file = {key:?}\nmodels = [\"claude-test\"]\n{runtime}"
        ),
    )
    .await;
    common::write_script(&hive.bots.join("claude"), "shout.py", common::SHOUT_PY);
    hive.start_core_env(&[(
        hyperhive::brain::claude_code::CLI_ENV,
        cli.to_str().unwrap(),
    )]);
    let op = hive.operator().await;
    let room = op.join("agent-claude").await;
    op.send(&room, "hello").await;
    op.wait_until(&room, WAIT, "claude's answer", |m| {
        m.iter()
            .any(|x| x.sender == "@claude:localhost" && x.body == format!("done: hello{GHOST}"))
    })
    .await;
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    assert_eq!(
        store.notes("claude").unwrap(),
        "from claude code",
        "the tool call reached the core"
    );

    // The next message resumes the same session: the model sees the earlier exchange.
    op.send(&room, "again").await;
    op.wait_until(&room, WAIT, "the second answer", |m| {
        m.iter()
            .any(|x| x.sender == "@claude:localhost" && x.body == format!("done: again{GHOST}"))
    })
    .await;
    // A declared MCP server is offered to the model too.
    op.send(&room, "shout it").await;
    op.wait_until(&room, WAIT, "the declared server's result", |m| {
        m.iter().any(|x| {
            x.sender == "@claude:localhost" && x.body == format!("done: QUIET WORDS{GHOST}")
        })
    })
    .await;
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for (k, body) in &requests {
        assert_eq!(k.as_deref(), Some(KEY), "the core's key, added by the core");
        assert_eq!(body["model"], "claude-test");
    }
    let last = &requests.last().unwrap().1;
    assert!(
        last["messages"].to_string().contains("hello"),
        "resumed: {last}"
    );
    assert!(
        hive.data
            .join("agents/claude/state/claude-session")
            .is_file()
    );
    assert!(store.usage_since("claude", 0).unwrap().calls >= 3);
    contract.assert_kept();
    assert_eq!(hive.stop_core().code(), Some(0));
}
