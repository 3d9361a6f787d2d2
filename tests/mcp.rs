//! `hive mcp` spoken to as an MCP client does (JSON-RPC over stdio): the hive's tools listed
//! with their schemas, and calls reaching hive-c0re under the agent's policy.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{HIVE, TestHive, echo_bot};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hive_mcp_serves_the_tools() {
    let mut hive = TestHive::with_config(
        &[
            ("alice", echo_bot(&["bob"])),
            ("bob", echo_bot(&[])),
            ("hm1nd", echo_bot(&[])),
        ],
        "[runtime]\nkind = \"external\"\n",
    )
    .await;
    hive.start_core();
    // A real commit on bob's proposed side: a request for it fails only for who asks.
    let repo = hyperhive::configrepo::ConfigRepo::new(
        &hive.data,
        &hyperhive::agent_spec::AgentName::parse("bob").unwrap(),
    );
    let sha = repo
        .commit_proposed(
            &[hyperhive::configrepo::ConfigFile {
                path: "agent.toml".into(),
                executable: false,
                content: common::scripted("bob v2").into_bytes(),
            }],
            "bob v2",
        )
        .unwrap();
    let socket = hive.data.join("agents/alice/sock/tools.sock");
    let mut child = Command::new(HIVE)
        .args(["mcp", "--name", "alice", "--socket"])
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "write_notes", "arguments": {"notes": "via mcp"}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "send_message", "arguments": {"to": "hm1nd", "body": "hi"}}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "request_apply_commit", "arguments": {"agent": "bob", "sha": sha, "summary": "x"}}}),
    ];
    for r in &requests {
        writeln!(stdin, "{r}").unwrap();
    }
    stdin.flush().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut answers: HashMap<u64, Value> = HashMap::new();
    while answers.len() < 5 {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "hive mcp closed early"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = v["id"].as_u64() {
            answers.insert(id, v);
        }
    }
    drop(stdin);
    assert_eq!(answers[&1]["result"]["serverInfo"]["name"], "hive");
    let tools = answers[&2]["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"write_notes") && names.contains(&"send_message"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"request_apply_commit"),
        "alice is no manager: {names:?}"
    );
    let send = tools.iter().find(|t| t["name"] == "send_message").unwrap();
    assert_eq!(send["inputSchema"]["required"], json!(["to", "body"]));
    assert_eq!(answers[&3]["result"]["isError"], false, "{}", answers[&3]);
    assert_eq!(answers[&4]["result"]["isError"], true);
    assert!(
        answers[&4]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("not in its allowed_recipients")
    );
    assert_eq!(
        answers[&5]["result"]["isError"], true,
        "managers only, enforced by the core: {}",
        answers[&5]
    );
    let refusal = answers[&5]["result"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        refusal.contains("alice is not a manager: request_apply_commit is for managers only"),
        "{refusal}"
    );
    // The manager asking for the same commit is not refused for who it is: it is filed.
    let mut hm1nd = common::hello_socket(
        &hive,
        "hm1nd",
        "tools.sock",
        std::time::Duration::from_secs(30),
    )
    .await;
    let (text, is_error) = common::call_tool(
        &mut hm1nd,
        "request_apply_commit",
        json!({"agent": "bob", "sha": sha, "summary": "x"}),
    )
    .await;
    assert!(!text.contains("not a manager"), "{text}");
    assert!(!is_error, "the manager's request is filed: {text}");
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    assert_eq!(store.notes("alice").unwrap(), "via mcp");
    let _ = child.wait();
    assert_eq!(hive.stop_core().code(), Some(0));
}
