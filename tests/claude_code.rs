//! The real, pinned Claude Code CLI as an agent's brain, offline: its model calls go through
//! the harness's proxy and hive-c0re (which adds the key) to a local Messages API server with a
//! scripted tool call; the tool call reaches the core through `hive mcp`; the answer reaches the
//! room; the session resumes on the next message.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use common::TestHive;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const KEY: &str = "hh-test-claude-key-0a9b8c7d6e";

/// The pinned CLI, installed from npm into the shared cache on first use.
fn cli() -> Option<PathBuf> {
    let version = hyperhive::brain::claude_code::CLI_VERSION;
    let dir = common::venv()
        .parent()
        .unwrap()
        .join(format!("claude-code-{version}"));
    let bin = dir.join("node_modules/.bin/claude");
    if bin.is_file() {
        return Some(bin);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("@anthropic-ai/claude-code@{version}"))
        .status();
    match status {
        Ok(s) if s.success() && bin.is_file() => Some(bin),
        Ok(s) => panic!("npm install @anthropic-ai/claude-code@{version} failed: {s}"),
        Err(e) => {
            eprintln!("SKIPPED: npm is unavailable ({e}); the Claude Code CLI cannot be installed");
            None
        }
    }
}

type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

async fn messages(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock().unwrap().push((key, body.clone()));
    let has_hive_tools = body["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["name"] == "mcp__hive__write_notes"));
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user_text = msgs
        .iter()
        .rev()
        .filter(|m| m["role"] == "user")
        .find_map(|m| match &m["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(blocks) => blocks
                .iter()
                .rev()
                .filter(|b| b["type"] == "text")
                .find_map(|b| b["text"].as_str())
                .map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    let answered_tool = msgs.last().is_some_and(|m| {
        m["content"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_result"))
    });
    let content = if has_hive_tools && !answered_tool && last_user_text.contains("hello") {
        json!([{"type": "tool_use", "id": "toolu_1", "name": "mcp__hive__write_notes",
                "input": {"notes": "from claude code"}}])
    } else {
        let said = last_user_text.rsplit('\n').next().unwrap_or("").to_owned();
        json!([{"type": "text", "text": format!("done: {said}")}])
    };
    let stop = if content[0]["type"] == "tool_use" {
        "tool_use"
    } else {
        "end_turn"
    };
    Json(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 6}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_cli_through_the_hive() {
    let Some(cli) = cli() else { return };
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("anthropic.key");
    std::fs::write(&key_file, KEY).unwrap();
    let key = key_file.to_str().unwrap();
    let mut hive = TestHive::with_config(
        &[(
            "claude",
            format!(
                "[brain]\nkind = \"claude-code\"\nmodel = \"claude-test\"\nbase_url = \"{base}\"\napi_key_file = \"{key}\"\n"
            ),
        )],
        &format!("[secrets]\nfiles = [{key:?}]\n"),
    )
    .await;
    hive.start_core_env(&[(
        hyperhive::brain::claude_code::CLI_ENV,
        cli.to_str().unwrap(),
    )]);
    let op = hive.operator().await;
    let room = op.join("agent-claude").await;
    op.send(&room, "hello").await;
    op.wait_until(&room, WAIT, "claude's answer", |m| {
        m.iter()
            .any(|x| x.sender == "@claude:localhost" && x.body == "done: hello")
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
            .any(|x| x.sender == "@claude:localhost" && x.body == "done: again")
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
    assert_eq!(hive.stop_core().code(), Some(0));
}
