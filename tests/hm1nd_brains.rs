//! The loop this project exists for, with real brains playing hm1nd, on a real Synapse: the
//! real pinned Claude Code CLI (over `hive mcp`) and the `anthropic` brain, each driven by a
//! local Messages API server whose scripted model decides every step from the conversation it
//! receives (the tool results it reads), so a tool that misbehaves fails the test.
//!
//! - A change: echo asks hm1nd to answer v2; hm1nd calls `read_config`, `write_config` (v1
//!   swapped for v2 in what it read) and `request_apply_commit` (the sha it was given); the
//!   operator's ✅ applies exactly that sha; echo answers v2.
//! - A crash: echo's harness dies on a message; hm1nd's turn is the `container_crash` event; it
//!   calls `get_logs`, writes a fixed `agent.toml`, requests; ✅; echo answers again. The time
//!   from the crash to the request in `#hive-approvals` is printed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use common::{TestHive, react, request_message};
use serde_json::{Value, json};

/// Generous: a Claude Code turn starts a Node process and an MCP server per model round.
const WAIT: Duration = Duration::from_secs(180);
const KEY: &str = "hh-test-manager-key-5e4d3c2b1a";
/// What echo's crashing brain says on stderr before it kills its harness: the log's evidence.
const MARKER: &str = "echo ran out of cheese";
/// echo's brain that kills its harness on every message (after saying why on stderr).
const CRASHING: &str = r#"[brain]
kind = "command"
command = ["sh", "-c", "echo 'echo ran out of cheese' >&2; kill -9 $PPID"]
"#;

/// echo v1: passes `ask hm1nd <text>` on to hm1nd, answers everything else `v1: …`.
const ECHO_V1: &str = r#"allowed_recipients = ["hm1nd"]
[brain]
kind = "scripted"
[[brain.rules]]
prefix = "ask hm1nd "
send_to = "hm1nd"
send = "{rest}"
reply = "I asked hm1nd."
[[brain.rules]]
reply = "v1: {body}"
"#;

// ---- The scripted manager model -------------------------------------------------------------

/// What the model does next.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Call the hive tool of this (unprefixed) name.
    Use(&'static str, Value),
    /// End the turn with this text.
    Say(String),
}

/// One tool call of this turn and its result, as the conversation carries them.
#[derive(Debug, Clone)]
struct Done {
    /// The tool's name without an MCP prefix (`mcp__hive__read_config` → `read_config`).
    tool: String,
    text: String,
    is_error: bool,
}

/// The turn the model is asked to continue: its prompt, the calls made since, and whether an
/// earlier turn already filed a fix.
#[derive(Debug, Clone, Default)]
struct Conversation {
    prompt: String,
    done: Vec<Done>,
    fix_filed_before: bool,
}

fn text_of(block: &Value) -> String {
    match &block["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => block["text"].as_str().unwrap_or("").to_owned(),
    }
}

fn is_prompt(text: &str) -> bool {
    text.contains(" wrote:\n") || text.contains("reports a `container_crash` event")
}

/// Reads a Messages API request: every block in order; the last prompt; the tool calls after it,
/// each paired with its `tool_use` by id. Works for both lanes: the CLI resends the whole
/// session (blocks of arrays, system reminders among them), the `anthropic` brain its history
/// (strings) and the turn's rounds.
fn conversation(body: &Value) -> Conversation {
    let blocks: Vec<(String, Value)> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| {
            let role = m["role"].as_str().unwrap_or("").to_owned();
            match &m["content"] {
                Value::String(s) => vec![(role, json!({"type": "text", "text": s}))],
                Value::Array(b) => b.iter().map(|b| (role.clone(), b.clone())).collect(),
                _ => vec![],
            }
        })
        .collect();
    let Some(at) = blocks.iter().rposition(|(role, b)| {
        role == "user" && b["type"] == "text" && is_prompt(b["text"].as_str().unwrap_or(""))
    }) else {
        return Conversation::default();
    };
    let name_of = |id: &Value| {
        blocks
            .iter()
            .find(|(_, b)| b["type"] == "tool_use" && b["id"] == *id)
            .and_then(|(_, b)| b["name"].as_str())
            .map(|n| n.rsplit("__").next().unwrap_or(n).to_owned())
            .unwrap_or_default()
    };
    Conversation {
        prompt: blocks[at].1["text"]
            .as_str()
            .unwrap_or("")
            .trim()
            .to_owned(),
        done: blocks[at..]
            .iter()
            .filter(|(_, b)| b["type"] == "tool_result")
            .map(|(_, b)| Done {
                tool: name_of(&b["tool_use_id"]),
                text: text_of(b),
                is_error: b["is_error"] == true,
            })
            .collect(),
        fix_filed_before: blocks[..at].iter().any(|(role, b)| {
            role == "assistant"
                && b["type"] == "text"
                && b["text"].as_str().unwrap_or("").contains("Filed fix ")
        }),
    }
}

/// The sha a `write_config` of this turn answered.
fn written_sha(c: &Conversation) -> Option<String> {
    c.done
        .iter()
        .filter(|d| d.tool == "write_config" && !d.is_error)
        .find_map(|d| serde_json::from_str::<Value>(&d.text).ok())
        .and_then(|v| v["sha"].as_str().map(str::to_owned))
}

/// The `diff` of a `write_config` answer (empty when it is not one).
fn diff_of(answer: &str) -> String {
    serde_json::from_str::<Value>(answer)
        .ok()
        .and_then(|v| v["diff"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The crashed agent's name, from the event's data on the prompt's second line.
fn crashed_agent(prompt: &str) -> Option<String> {
    let data: Value = serde_json::from_str(prompt.lines().nth(1)?).ok()?;
    (data["kind"] == "container_crash").then(|| data["agent"].as_str().map(str::to_owned))?
}

/// hm1nd's next step, decided from what the conversation says so far.
///
/// A request to answer v2: read echo's config; write its `agent.toml` with `v1: {body}` swapped
/// for `v2: {body}` (so the write depends on what the read showed); file the sha the write
/// answered; say `Filed <sha> for echo.`. A crash: read the crashed agent's log; if it names
/// the cause, write the fixed config; file it; say `Filed fix <sha> for <agent>.` (once: a
/// later crash report of the same loop is acknowledged). An error result, or an answer that is
/// not what the tool promises, ends the turn with `failed: …`, which the test sees in the room.
fn decide(c: &Conversation) -> Step {
    let fail = |why: String| Step::Say(format!("failed: {why}"));
    if let Some(d) = c.done.last().filter(|d| d.is_error) {
        return fail(format!("{} refused: {}", d.tool, d.text));
    }
    let last = c.done.last().map(|d| (d.tool.as_str(), d.text.as_str()));
    if let Some(agent) = crashed_agent(&c.prompt) {
        if c.fix_filed_before && c.done.is_empty() {
            return Step::Say(format!("A fix for {agent} is filed already."));
        }
        return match last {
            None => Step::Use("get_logs", json!({"agent": agent, "lines": 50})),
            Some(("get_logs", log)) if log.contains(MARKER) => Step::Use(
                "write_config",
                json!({"agent": agent, "message": format!("{agent}: a scripted brain again (it crashed: {MARKER})"),
                       "files": [{"path": "agent.toml", "content": common::scripted("fixed")}]}),
            ),
            Some(("get_logs", log)) => fail(format!("the log does not say why: {log}")),
            Some(("write_config", _)) => match written_sha(c) {
                Some(sha) => Step::Use(
                    "request_apply_commit",
                    json!({"agent": agent, "sha": sha, "summary": format!("fix {agent}'s crash")}),
                ),
                None => fail("write_config answered no sha".into()),
            },
            Some(("request_apply_commit", _)) => match written_sha(c) {
                Some(sha) => Step::Say(format!("Filed fix {sha} for {agent}.")),
                None => fail("no sha to name".into()),
            },
            Some((tool, _)) => fail(format!("did not expect {tool}")),
        };
    }
    if !c.prompt.ends_with("echo should answer v2") {
        return Step::Say("Nothing to do.".into());
    }
    match last {
        None => Step::Use("read_config", json!({"agent": "echo"})),
        Some(("read_config", text)) => {
            let Ok(read) = serde_json::from_str::<Value>(text) else {
                return fail(format!("read_config answered no JSON: {text}"));
            };
            let toml = read["applied"].as_array().and_then(|files| {
                files
                    .iter()
                    .find(|f| f["path"] == "agent.toml")
                    .and_then(|f| f["content"].as_str())
            });
            match (read["applied_sha"].as_str(), toml) {
                (Some(applied), Some(toml)) if toml.contains("v1: {body}") => Step::Use(
                    "write_config",
                    json!({"agent": "echo", "message": format!("echo answers v2 (was {applied})"),
                           "files": [{"path": "agent.toml", "content": toml.replace("v1: {body}", "v2: {body}")}]}),
                ),
                _ => fail(format!("read_config did not show echo's v1: {text}")),
            }
        }
        Some(("write_config", text)) => match written_sha(c) {
            Some(sha) if diff_of(text).contains("+reply = \"v2: {body}\"") => Step::Use(
                "request_apply_commit",
                json!({"agent": "echo", "sha": sha, "summary": "echo asked to answer v2"}),
            ),
            _ => fail(format!(
                "write_config's answer is not the v2 commit: {text}"
            )),
        },
        Some(("request_apply_commit", _)) => match written_sha(c) {
            Some(sha) => Step::Say(format!("Filed {sha} for echo.")),
            None => fail("no sha to name".into()),
        },
        Some((tool, _)) => fail(format!("did not expect {tool}")),
    }
}

/// A model call as the server got it: the key it carried, its body.
type Call = (Option<String>, Value);

/// Every request the server got (the key it carried, the body), and when it first saw a
/// crash report as a prompt.
#[derive(Clone, Default)]
struct Server {
    requests: Arc<Mutex<Vec<Call>>>,
    crash_prompt_at: Arc<Mutex<Option<Instant>>>,
    /// The requests the real Messages API would refuse (answered 400 here).
    contract: common::model_api::Contract,
}

async fn messages(
    State(server): State<Server>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    server.requests.lock().unwrap().push((key, body.clone()));
    if let Some(refused) = server.contract.anthropic(&headers, &body) {
        return refused;
    }
    let offered: Vec<&str> = body["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let c = conversation(&body);
    if crashed_agent(&c.prompt).is_some() {
        server
            .crash_prompt_at
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
    }
    // The tool as this lane names it: `read_config`, or `mcp__hive__read_config` over MCP.
    let content = match decide(&c) {
        Step::Use(tool, input) => match offered
            .iter()
            .find(|n| **n == tool || n.ends_with(&format!("__{tool}")))
        {
            Some(name) => {
                json!([{"type": "tool_use", "id": format!("toolu_{}", c.done.len()), "name": name, "input": input}])
            }
            None => json!([{"type": "text", "text": format!("failed: {tool} is not offered")}]),
        },
        // A request of the CLI's own (no hive prompt in it) gets a plain answer too.
        Step::Say(text) => json!([{"type": "text", "text": text}]),
    };
    let stop = common::model_api::stop_reason(&content);
    Json(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 6}}),
    )
    .into_response()
}

// ---- The lanes ------------------------------------------------------------------------------

/// Which brain plays hm1nd.
#[derive(Debug, Clone, Copy)]
enum Lane {
    ClaudeCode,
    Anthropic,
}

/// A hive whose hm1nd is `lane`'s brain on the local model server, with echo on `echo`; the
/// core started; `None` when the lane cannot run here (no CLI, and skipping was asked for).
async fn hive_with(lane: Lane, echo: &str) -> Option<(TestHive, Server, tempfile::TempDir)> {
    let cli = match lane {
        Lane::ClaudeCode => Some(common::claude_code_cli()?),
        Lane::Anthropic => None,
    };
    let server = Server::default();
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .with_state(server.clone());
    let base = common::serve_http(app).await;
    let (keys, key) = common::secret_file("anthropic.key", KEY);
    let kind = match lane {
        Lane::ClaudeCode => "claude-code",
        Lane::Anthropic => "anthropic",
    };
    let mut hive = TestHive::with_config(
        &[
            (
                "hm1nd",
                format!(
                    "[brain]\nkind = \"{kind}\"\nmodel = \"claude-test\"\nprovider = \"local\"\n"
                ),
            ),
            ("echo", echo.to_owned()),
        ],
        &format!(
            "[providers.local]\nkind = \"anthropic\"\nbase_url = \"{base}\"\napi_key_file = {key:?}\nmodels = [\"claude-test\"]\n"
        ),
    )
    .await;
    match &cli {
        Some(cli) => hive.start_core_env(&[(
            hyperhive::brain::claude_code::CLI_ENV,
            cli.to_str().unwrap(),
        )]),
        None => hive.start_core(),
    }
    Some((hive, server, keys))
}

/// `hm1nd`'s message in its room that starts with `head`, once it is there; a `failed: …` of
/// the scripted model's fails the test at once with what it said.
async fn hm1nd_says(op: &common::Operator, room: &matrix_sdk::Room, head: &str) -> String {
    let msgs = op
        .wait_until(room, WAIT, &format!("hm1nd's {head:?}"), |m| {
            m.iter().any(|x| {
                x.sender == "@hm1nd:localhost"
                    && (x.body.starts_with(head) || x.body.starts_with("failed: "))
            })
        })
        .await;
    let said = msgs
        .iter()
        .find(|x| {
            x.sender == "@hm1nd:localhost"
                && (x.body.starts_with(head) || x.body.starts_with("failed: "))
        })
        .unwrap()
        .body
        .clone();
    assert!(said.starts_with(head), "hm1nd: {said}");
    said
}

/// The sha in `Filed [fix ]<sha> for …`.
fn sha_in(said: &str) -> String {
    said.split_whitespace()
        .find(|w| w.len() == 40 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no sha in {said:?}"))
        .to_owned()
}

/// The operator approves request #1, which must name `sha`; waits for the apply as deploy 2
/// and checks echo runs exactly that commit.
async fn approve(hive: &TestHive, op: &common::Operator, sha: &str, summary: &str) {
    let approvals = op.join("hive-approvals").await;
    let req = request_message(op, &approvals, 1, WAIT).await;
    assert!(
        req.body
            .starts_with("Request #1: hm1nd asks to apply a config commit to echo")
            && req.body.contains(&format!("commit {sha}"))
            && req.body.contains(summary),
        "{}",
        req.body
    );
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "applied", |m| {
        m.iter().any(|x| {
            x.body.starts_with("✅ Applied")
                && x.body.contains(&sha[..12])
                && x.body.contains("deploy/2")
        })
    })
    .await;
    let repo = hyperhive::configrepo::ConfigRepo::new(
        &hive.data,
        &hyperhive::agent_spec::AgentName::parse("echo").unwrap(),
    );
    assert_eq!(
        repo.current(),
        Some((2, sha.to_owned())),
        "echo runs that sha"
    );
}

/// Every model call carried the core's key, for the model this hive names.
fn check_calls(server: &Server) {
    server.contract.assert_kept();
    let requests = server.requests.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for (key, body) in &requests {
        assert_eq!(
            key.as_deref(),
            Some(KEY),
            "the core's key, added by the core"
        );
        assert_eq!(body["model"], "claude-test");
    }
}

/// hm1nd's audited calls (action, outcome), in order.
fn hm1nd_audit(hive: &TestHive) -> Vec<(String, String)> {
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let mut calls: Vec<_> = store
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "hm1nd")
        .collect();
    calls.sort_by_key(|e| e.ts_us);
    calls.into_iter().map(|e| (e.action, e.outcome)).collect()
}

/// echo asks hm1nd to answer v2; hm1nd reads, writes, files; ✅; echo answers v2 on that sha.
async fn change_loop(lane: Lane) {
    let Some((mut hive, server, _keys)) = hive_with(lane, ECHO_V1).await else {
        return;
    };
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let hm1nd = op.join("agent-hm1nd").await;
    op.send(&echo, "hello").await;
    op.wait_until(&echo, WAIT, "v1 answer", |m| {
        m.iter().any(|x| x.body == "v1: hello")
    })
    .await;
    op.send(&echo, "ask hm1nd echo should answer v2").await;
    let said = hm1nd_says(&op, &hm1nd, "Filed ").await;
    let sha = sha_in(&said);
    eprintln!("{lane:?}: hm1nd said {said:?}");
    // Nothing runs before the ✅.
    op.send(&echo, "still").await;
    op.wait_until(&echo, WAIT, "still v1", |m| {
        m.iter().any(|x| x.body == "v1: still")
    })
    .await;
    approve(&hive, &op, &sha, "echo asked to answer v2").await;
    op.send(&echo, "again").await;
    op.wait_until(&echo, WAIT, "v2 answer", |m| {
        m.iter().any(|x| x.body == "v2: again")
    })
    .await;
    check_calls(&server);
    let calls = hm1nd_audit(&hive);
    for want in [
        ("read_config", "read"),
        ("write_config", "committed"),
        ("apply_commit", "requested"),
    ] {
        assert!(
            calls.iter().any(|(a, o)| (a.as_str(), o.as_str()) == want),
            "{want:?} in {calls:?}"
        );
    }
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// echo crashes on a message; hm1nd gets `container_crash`, reads the log, writes the fix,
/// files it; ✅; echo answers again. Prints how long the manager took.
async fn crash_loop(lane: Lane) {
    let Some((mut hive, server, _keys)) = hive_with(lane, CRASHING).await else {
        return;
    };
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let hm1nd = op.join("agent-hm1nd").await;
    let approvals = op.join("hive-approvals").await;
    op.send(&echo, "boom").await;
    let crashed = Instant::now();
    op.wait_until(&hm1nd, WAIT, "the crash report", |m| {
        m.iter().any(|x| {
            x.body.starts_with("container_crash: **echo** exited") && x.body.contains(MARKER)
        })
    })
    .await;
    let reported = crashed.elapsed();
    let req = request_message(&op, &approvals, 1, WAIT).await;
    let requested = crashed.elapsed();
    let prompted = server
        .crash_prompt_at
        .lock()
        .unwrap()
        .expect("the model saw the crash")
        .duration_since(crashed);
    eprintln!(
        "{lane:?}: the message that crashed echo was sent; the crash report seen in hm1nd's room \
         after {reported:?}, hm1nd's model prompted with it after {prompted:?}, the fix's request \
         seen in #hive-approvals after {requested:?}"
    );
    let said = hm1nd_says(&op, &hm1nd, "Filed fix ").await;
    let sha = sha_in(&said);
    assert!(req.body.contains(&format!("commit {sha}")), "{}", req.body);
    approve(&hive, &op, &sha, "fix echo's crash").await;
    op.send(&echo, "are you back").await;
    op.wait_until(&echo, WAIT, "echo answering again", |m| {
        m.iter().any(|x| x.body == "fixed: are you back")
    })
    .await;
    check_calls(&server);
    let calls = hm1nd_audit(&hive);
    let order: Vec<&str> = calls
        .iter()
        .map(|(a, _)| a.as_str())
        .filter(|a| ["get_logs", "write_config", "apply_commit"].contains(a))
        .collect();
    assert_eq!(
        order.get(..3),
        Some(&["get_logs", "write_config", "apply_commit"][..]),
        "{calls:?}"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_hm1nd_changes_echo_on_request() {
    change_loop(Lane::ClaudeCode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_hm1nd_changes_echo_on_request() {
    change_loop(Lane::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_hm1nd_fixes_a_crashed_echo() {
    crash_loop(Lane::ClaudeCode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_hm1nd_fixes_a_crashed_echo() {
    crash_loop(Lane::Anthropic).await;
}

// ---- The script itself, without a hive ------------------------------------------------------

#[test]
fn the_scripted_manager_follows_the_tool_results() {
    let done = |tool: &str, text: &str, is_error: bool| Done {
        tool: tool.into(),
        text: text.into(),
        is_error,
    };
    let sha = "ab".repeat(20);
    let read = json!({"applied_sha": "cd".repeat(20),
        "applied": [{"path": "agent.toml", "content": "reply = \"v1: {body}\"\n"}]})
    .to_string();
    let wrote = json!({"sha": sha, "diff": "+reply = \"v2: {body}\""}).to_string();
    let ask = "@echo:localhost wrote:\necho should answer v2";
    let crash = format!(
        "hive-c0re (the hive itself, not a person) reports a `container_crash` event:\n{}\n\ncontainer_crash: …",
        json!({"kind": "container_crash", "agent": "echo"})
    );
    struct Case {
        name: &'static str,
        prompt: String,
        done: Vec<Done>,
        before: bool,
        want: &'static str,
    }
    let cases = [
        Case {
            name: "a request starts with a read",
            prompt: ask.into(),
            done: vec![],
            before: false,
            want: "use read_config",
        },
        Case {
            name: "the read's v1 becomes the write's v2",
            prompt: ask.into(),
            done: vec![done("read_config", &read, false)],
            before: false,
            want: "use write_config v2",
        },
        Case {
            name: "a read without v1 is a failure",
            prompt: ask.into(),
            done: vec![done("read_config", "{\"applied\": []}", false)],
            before: false,
            want: "failed",
        },
        Case {
            name: "the written sha is filed",
            prompt: ask.into(),
            done: vec![
                done("read_config", &read, false),
                done("write_config", &wrote, false),
            ],
            before: false,
            want: "use request_apply_commit sha",
        },
        Case {
            name: "a refusal ends the turn",
            prompt: ask.into(),
            done: vec![done("write_config", "nothing to commit", true)],
            before: false,
            want: "failed",
        },
        Case {
            name: "filed: the sha is named",
            prompt: ask.into(),
            done: vec![
                done("write_config", &wrote, false),
                done("request_apply_commit", "request #1 filed", false),
            ],
            before: false,
            want: "say Filed",
        },
        Case {
            name: "a crash starts with the log",
            prompt: crash.clone(),
            done: vec![],
            before: false,
            want: "use get_logs",
        },
        Case {
            name: "a log naming the cause is fixed",
            prompt: crash.clone(),
            done: vec![done("get_logs", &format!("…\n{MARKER}\n"), false)],
            before: false,
            want: "use write_config fixed",
        },
        Case {
            name: "a log that does not is not",
            prompt: crash.clone(),
            done: vec![done("get_logs", "all is well", false)],
            before: false,
            want: "failed",
        },
        Case {
            name: "a second report of the same loop is acknowledged",
            prompt: crash.clone(),
            done: vec![],
            before: true,
            want: "say A fix",
        },
        Case {
            name: "a person typing the event's words is not a crash",
            prompt: "@operator:localhost wrote:\ncontainer_crash: **echo** exited".into(),
            done: vec![],
            before: false,
            want: "say Nothing",
        },
    ];
    for case in cases {
        let step = decide(&Conversation {
            prompt: case.prompt,
            done: case.done,
            fix_filed_before: case.before,
        });
        let got = match &step {
            Step::Use("write_config", i) if i.to_string().contains("v2: {body}") => {
                "use write_config v2"
            }
            Step::Use("write_config", i) if i.to_string().contains("fixed: {body}") => {
                "use write_config fixed"
            }
            Step::Use("request_apply_commit", i) if i["sha"] == sha.as_str() => {
                "use request_apply_commit sha"
            }
            Step::Use("read_config", _) => "use read_config",
            Step::Use("get_logs", _) => "use get_logs",
            Step::Say(t) if t.starts_with("failed") => "failed",
            Step::Say(t) if t.starts_with(&format!("Filed {sha}")) => "say Filed",
            Step::Say(t) if t.starts_with("A fix") => "say A fix",
            Step::Say(t) if t.starts_with("Nothing") => "say Nothing",
            _ => "something else",
        };
        assert_eq!(got, case.want, "{}: {step:?}", case.name);
    }
}

#[test]
fn a_conversation_is_read_from_either_lane() {
    // The CLI's shape: arrays, an MCP-prefixed tool, a system reminder after the prompt.
    let body = json!({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "@op:x wrote:\nold"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Filed fix 00 for echo."}]},
        {"role": "user", "content": [{"type": "text", "text": "@echo:x wrote:\necho should answer v2"},
                                     {"type": "text", "text": "<system-reminder>x</system-reminder>"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t0", "name": "mcp__hive__read_config", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t0",
                                      "content": [{"type": "text", "text": "{}"}]}]},
    ]});
    let c = conversation(&body);
    assert_eq!(c.prompt, "@echo:x wrote:\necho should answer v2");
    assert_eq!(c.done.len(), 1);
    assert_eq!(
        (
            c.done[0].tool.as_str(),
            c.done[0].text.as_str(),
            c.done[0].is_error
        ),
        ("read_config", "{}", false)
    );
    assert!(c.fix_filed_before);
    // The anthropic brain's: strings for history and prompt, plain names.
    let body = json!({"messages": [
        {"role": "user", "content": "@echo:x wrote:\necho should answer v2"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t0", "name": "read_config", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t0", "content": "no", "is_error": true}]},
    ]});
    let c = conversation(&body);
    assert_eq!(
        (c.done[0].tool.as_str(), c.done[0].is_error),
        ("read_config", true)
    );
    assert!(!c.fix_filed_before);
}
