//! Control of a running turn from the operator's Matrix client, end to end on a real Synapse:
//! a command brain that sleeps is cancelled by `!cancel` in its inbox and by `!hive cancel` in
//! `#hive-c0re` (its process is gone at once, the rooms say so, the message is never
//! redelivered, not after a restart of the core either, and the next message is answered);
//! another agent's `!cancel` is a plain message; a cancel is one `turns` row, `cancelled`; a
//! `!cancel` delivered again after a crash of the core cancels nothing; `!compact` and
//! `!new-session` change a model brain's history.json; `!model` files an apply-commit request
//! whose diff changes the model, and is refused while that commit is unapplied; a typo of a
//! command is answered with usage, a brain without a model or a context is told so; every
//! command is audited, refused ones too.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::Json;
use axum::response::IntoResponse;
use common::model_api::Contract;
use common::{TestHive, call_tool, echo_bot, write_script};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(45);
/// How long a cancelled brain's process may outlive the cancel.
const GONE: Duration = Duration::from_secs(2);
const KEY: &str = "hh-test-console-key-7a6b5c";

/// The sleeping brain: `sleep <n>` starts `sleep 6007` (a child of the script) and waits for
/// it; anything else is answered `done: <body>`.
const SLEEPER: &str = r#"#!/usr/bin/env python3
import json, subprocess, sys
body = json.load(sys.stdin)["message"]["body"]
if body.startswith("sleep "):
    subprocess.run(["sleep", "6007"])
print(json.dumps({"reply": "done: " + body}))
"#;

/// The pids of every `sleep 6007` running on this machine (inside a sandbox too).
fn sleepers() -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if cmdline == b"sleep\x006007\x00" && !zombie {
            out.push(pid);
        }
    }
    out
}

async fn until_sleeping() -> Vec<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = sleepers();
        if !s.is_empty() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the brain never started sleeping"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most [`GONE`]) until no sleeper of `pids` lives.
async fn until_gone(pids: &[i32]) {
    let deadline = Instant::now() + GONE;
    while sleepers().iter().any(|p| pids.contains(p)) {
        assert!(
            Instant::now() < deadline,
            "the cancelled brain's sleep {pids:?} still runs after {GONE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (body, state, error) of every row of `agent`'s queue.
fn queue(data: &Path, agent: &str) -> Vec<(String, String, Option<String>)> {
    let db = rusqlite::Connection::open(data.join("c0re.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT body, state, error FROM inbox WHERE agent = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([agent], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The outcome of every `turns` row of the message `body` of `agent`.
fn turns_of(data: &Path, agent: &str, body: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(data.join("c0re.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT t.outcome FROM turns t JOIN inbox i ON i.id = t.inbox_id
             WHERE i.agent = ?1 AND i.body = ?2 ORDER BY t.id",
        )
        .unwrap();
    stmt.query_map([agent, body], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// (action, agent, outcome, detail) of every audit row of `actor`, oldest first, as
/// `hive audit --json` prints them (what an operator's script reads).
fn audited(hive: &TestHive, actor: &str) -> Vec<(String, String, String, String)> {
    let out = hive
        .hive(&["audit", "--json", "--limit", "100000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "hive audit: {out:?}");
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["actor"] == actor)
        .map(|v| {
            (
                field(&v, "action"),
                field(&v, "agent"),
                field(&v, "outcome"),
                field(&v, "detail"),
            )
        })
        .collect()
}

/// The model: a summary for a compact's call, else `done: <last line>`; what the real API
/// would refuse is answered 400 and recorded.
async fn completions(
    axum::extract::State(contract): axum::extract::State<Contract>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    if let Some(refused) = contract.openai(&body) {
        return refused;
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let system = messages[0]["content"].as_str().unwrap_or("");
    let content = if system.starts_with("You compact an agent's memory") {
        "SUMMARY: the operator said hello.".to_owned()
    } else {
        let last = messages.last().unwrap()["content"].as_str().unwrap_or("");
        format!("done: {}", last.lines().last().unwrap_or(""))
    };
    Json(json!({
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5},
    }))
    .into_response()
}

fn history(hive: &TestHive, agent: &str) -> Vec<Value> {
    let path = hive
        .data
        .join("agents")
        .join(agent)
        .join("state")
        .join("history.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cancels_compacts_and_switches_models() {
    let contract = Contract::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(contract.clone());
    let base = common::serve_http(app).await + "/v1";
    let (_keys, key) = common::secret_file("model.key", &format!("{KEY}\n"));
    let mut hive = TestHive::with_config(
        &[
            (
                "sleepy",
                "[brain]\nkind = \"command\"\ncommand = [\"./sleeper.py\"]\ntimeout_secs = 3600\n"
                    .into(),
            ),
            (
                "gpt",
                "[brain]\nkind = \"openai\"\nmodel = \"test-model\"\nprovider = \"local\"\n".into(),
            ),
            ("pal", echo_bot(&["sleepy"])),
        ],
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{base}\"\napi_key_file = {key:?}\nmodels = [\"test-model\", \"new-model\"]\n"
        ),
    )
    .await;
    write_script(&hive.bots.join("sleepy"), "sleeper.py", SLEEPER);
    hive.start_core();
    let op = hive.operator().await.with_logs(&hive);
    let me = op.client.user_id().unwrap().to_string();
    let inbox = op.join("agent-sleepy").await;
    let control = op.join("hive-c0re").await;
    let approvals = op.join("hive-approvals").await;
    let sleepy = "@sleepy:localhost";

    // Nothing runs: nothing is cancelled, and it is said.
    op.send(&inbox, "hi").await;
    op.wait_until(&inbox, WAIT, "sleepy's answer", |m| {
        m.iter().any(|x| x.sender == sleepy && x.body == "done: hi")
    })
    .await;
    op.send(&control, "!hive cancel sleepy").await;
    op.wait_until(&control, WAIT, "no turn to cancel", |m| {
        m.iter()
            .any(|x| x.body == "Nothing cancelled: sleepy has no turn running: nothing to cancel.")
    })
    .await;
    op.send(&control, "!hive cancel nobody").await;
    op.wait_until(&control, WAIT, "no such agent", |m| {
        m.iter()
            .any(|x| x.body == "Nothing cancelled: there is no agent \"nobody\".")
    })
    .await;

    // A turn that sleeps; another agent's `!cancel` in the inbox is a plain message: it waits
    // behind the turn and stops nothing. Once as `send_message` posts it (`sleepy: !cancel`),
    // once bare, posted as pal (a command's very text, from someone who is no operator).
    op.send(&inbox, "sleep one").await;
    let first = until_sleeping().await;
    let mut pal = common::hello_socket(&hive, "pal", "tools.sock", WAIT).await;
    let (text, err) = call_tool(
        &mut pal,
        "send_message",
        json!({"to": "sleepy", "body": "!cancel"}),
    )
    .await;
    assert!(!err, "{text}");
    common::as_agent::post_as(&hive, "@pal:localhost", inbox.room_id(), "!cancel").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sleepers().iter().any(|p| first.contains(p)),
        "an agent's !cancel stopped the turn"
    );

    // The operator's `!cancel`: the brain is gone at once; the inbox says so.
    op.send(&inbox, "!cancel").await;
    until_gone(&first).await;
    op.wait_until(&inbox, WAIT, "the cancel is said", |m| {
        m.iter().any(|x| {
            x.body
                .starts_with("⏹️ cancelled sleepy's turn on “sleep one” after ")
                && x.body
                    .ends_with(": it counts as done and is not delivered again.")
        })
    })
    .await;
    // The harness works on: the agent's `!cancel` was a message like any other.
    op.wait_until(&inbox, WAIT, "pal's !cancel answered as a message", |m| {
        m.iter()
            .any(|x| x.sender == sleepy && x.body == "done: sleepy: !cancel")
    })
    .await;
    op.wait_until(
        &inbox,
        WAIT,
        "pal's bare !cancel answered as a message",
        |m| {
            m.iter()
                .any(|x| x.sender == sleepy && x.body == "done: !cancel")
        },
    )
    .await;

    // `!hive cancel` from #hive-c0re: the same, said in both rooms.
    op.send(&inbox, "sleep two").await;
    let second = until_sleeping().await;
    op.send(&control, "!hive cancel sleepy").await;
    until_gone(&second).await;
    let said = |m: &[common::Seen]| {
        m.iter().any(|x| {
            x.body
                .starts_with("⏹️ cancelled sleepy's turn on “sleep two” after ")
        })
    };
    op.wait_until(&control, WAIT, "the answer in #hive-c0re", said)
        .await;
    op.wait_until(&inbox, WAIT, "the notice in the inbox", said)
        .await;
    op.send(&inbox, "after").await;
    op.wait_until(&inbox, WAIT, "the next message is answered", |m| {
        m.iter()
            .any(|x| x.sender == sleepy && x.body == "done: after")
    })
    .await;

    // Not delivered again, not after a restart of the core; recorded as cancelled.
    assert_eq!(hive.stop_core().code(), Some(0));
    hive.start_core();
    op.send(&inbox, "after the restart").await;
    op.wait_until(&inbox, WAIT, "an answer after the restart", |m| {
        m.iter()
            .any(|x| x.sender == sleepy && x.body == "done: after the restart")
    })
    .await;
    for body in ["sleep one", "sleep two"] {
        assert_eq!(op.count(&inbox, &format!("done: {body}")), 0, "{body}");
        assert_eq!(
            turns_of(&hive.data, "sleepy", body),
            ["cancelled"],
            "one attempt, recorded once: {body}"
        );
        let rows = queue(&hive.data, "sleepy");
        let row = rows.iter().find(|r| r.0 == body).unwrap();
        assert_eq!(
            (row.1.as_str(), row.2.as_deref()),
            ("done", Some(format!("cancelled by {me}").as_str())),
            "{rows:?}"
        );
    }
    let rows = queue(&hive.data, "sleepy");
    let commands: Vec<_> = rows.iter().filter(|r| r.0.starts_with('!')).collect();
    assert_eq!(
        commands,
        [&("!cancel".to_owned(), "done".to_owned(), None)],
        "only pal's !cancel, a message, reached sleepy's queue; the operator's never did"
    );
    assert!(
        rows.iter()
            .any(|r| r.0 == "sleepy: !cancel" && r.1 == "done" && r.2.is_none()),
        "pal's message was sleepy's, answered: {rows:?}"
    );

    // The core crashes after a cancel, before the command is acked: delivered again after the
    // restart, the command is answered and cancels nothing (not the new harness's turn).
    assert_eq!(hive.stop_core().code(), Some(0));
    hive.start_core_env(&[("HYPERHIVE_FAILPOINT", "cancel-before-ack")]);
    op.send(&inbox, "sleep three").await;
    let third = until_sleeping().await;
    op.send(&inbox, "!cancel").await;
    assert_eq!(hive.wait_core_exit(WAIT).code(), Some(101));
    until_gone(&third).await;
    op.send(&inbox, "after the crash").await;
    hive.start_core();
    op.wait_until(&inbox, WAIT, "the command answered again", |m| {
        m.iter().any(|x| {
            x.body
                == "Nothing cancelled: this `!cancel` was carried out already: it cancelled sleepy's turn on “sleep three”."
        })
    })
    .await;
    op.wait_until(&inbox, WAIT, "the next turn runs to its end", |m| {
        m.iter()
            .any(|x| x.sender == sleepy && x.body == "done: after the crash")
    })
    .await;
    assert_eq!(turns_of(&hive.data, "sleepy", "sleep three"), ["cancelled"]);
    assert_eq!(turns_of(&hive.data, "sleepy", "after the crash"), ["done"]);

    // Usage for a command with bad arguments; a brain without a context or a model is told.
    op.send(&inbox, "!cancel now").await;
    op.wait_until(&inbox, WAIT, "usage", |m| {
        m.iter()
            .any(|x| x.body.starts_with("`!cancel` takes no arguments."))
    })
    .await;
    op.send(&inbox, "!compact").await;
    op.wait_until(&inbox, WAIT, "compact unsupported", |m| {
        m.iter().any(|x| {
            x.sender == sleepy
                && x.body == "`!compact` is not supported by my brain (`command`): it keeps no context between messages."
        })
    })
    .await;
    op.send(&inbox, "!model gpt-4o").await;
    op.wait_until(&inbox, WAIT, "no model to switch", |m| {
        m.iter().any(|x| {
            x.body
                == "`!model gpt-4o`: nothing changed: its brain is `command`, which has no model."
        })
    })
    .await;

    // A model brain: `!compact` replaces its history with a summary, `!new-session` clears it.
    let gpt = op.join("agent-gpt").await;
    op.send(&gpt, "hello").await;
    op.wait_until(&gpt, WAIT, "gpt's answer", |m| {
        m.iter().any(|x| x.body == "done: hello")
    })
    .await;
    assert_eq!(history(&hive, "gpt").len(), 1);
    op.send(&gpt, "!compact").await;
    op.wait_until(&gpt, WAIT, "compacted", |m| {
        m.iter().any(|x| {
            x.sender == "@gpt:localhost"
                && x.body == "Compacted my history: 1 exchange(s) replaced by a summary."
        })
    })
    .await;
    let h = history(&hive, "gpt");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["reply"], "SUMMARY: the operator said hello.", "{h:?}");
    op.send(&gpt, "!new-session").await;
    op.wait_until(&gpt, WAIT, "a new session", |m| {
        m.iter()
            .any(|x| x.body == "Started a new session: I forgot our 1 earlier exchange(s).")
    })
    .await;
    assert_eq!(history(&hive, "gpt"), Vec::<Value>::new());

    // `!model`: an approval request whose diff changes the model, nothing changed before it.
    op.send(&gpt, "!model new-model").await;
    let answer = op
        .wait_until(&gpt, WAIT, "the request filed", |m| {
            m.iter().any(|x| {
                x.body
                    .starts_with("Asked the operators to switch **gpt** to `new-model`")
            })
        })
        .await;
    let answer = answer
        .iter()
        .find(|x| x.body.starts_with("Asked the operators"))
        .unwrap();
    let id: u32 = answer
        .body
        .split("request #")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a request number in {:?}", answer.body));
    let request = common::request_message(&op, &approvals, id, WAIT).await;
    assert!(
        request.body.contains("-model = \"test-model\"")
            && request.body.contains("+model = \"new-model\""),
        "{}",
        request.body
    );
    let toml = std::fs::read_to_string(hive.data.join("agents/gpt/current/agent.toml")).unwrap();
    assert!(
        toml.contains("model = \"test-model\""),
        "not applied yet: {toml}"
    );

    // Another `!model` while that commit is unapplied: refused, naming it (it would be filed
    // under the operator's name again).
    op.send(&gpt, "!model test-model").await;
    op.wait_until(&gpt, WAIT, "refused while a commit is unapplied", |m| {
        m.iter().any(|x| {
            x.body.starts_with("`!model test-model`: nothing changed: 1 unapplied commit on gpt's proposed side (`")
                && x.body.ends_with("“model: new-model (!model)”) would be filed with it: approve, deny or revert them first.")
        })
    })
    .await;

    // Every command audited under the operator, refused ones and the brain's too.
    let audit = audited(&hive, &me);
    for (action, agent, outcome, detail) in [
        (
            "cancel",
            "sleepy",
            "refused",
            "Nothing cancelled: sleepy has no turn",
        ),
        (
            "cancel",
            "nobody",
            "refused",
            "Nothing cancelled: there is no agent",
        ),
        (
            "cancel",
            "sleepy",
            "cancelled",
            "⏹️ cancelled sleepy's turn on “sleep one”",
        ),
        (
            "cancel",
            "sleepy",
            "refused",
            "Nothing cancelled: this `!cancel` was carried",
        ),
        (
            "cancel",
            "sleepy",
            "refused",
            "!cancel now: `!cancel` takes no arguments.",
        ),
        ("compact", "sleepy", "delivered", "handed to the brain"),
        ("compact", "gpt", "delivered", "handed to the brain"),
        ("new-session", "gpt", "delivered", "handed to the brain"),
        (
            "model",
            "sleepy",
            "refused",
            "`!model gpt-4o`: nothing changed",
        ),
        ("model", "gpt", "requested", "Asked the operators"),
        (
            "model",
            "gpt",
            "refused",
            "`!model test-model`: nothing changed: 1 unapplied",
        ),
    ] {
        assert!(
            audit
                .iter()
                .any(|(a, g, o, d)| (a.as_str(), g.as_str(), o.as_str())
                    == (action, agent, outcome)
                    && d.starts_with(detail)),
            "{action} {agent} {outcome} {detail:?} not in {audit:?}"
        );
    }
    contract.assert_kept();
    assert_eq!(hive.stop_core().code(), Some(0));
}

type Requests = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// The requests the stand-in got, and those the real API would refuse.
type Server = (Requests, Contract);

/// The Messages API for the real Claude Code CLI: a summary for its `/compact`, else
/// `done: <the prompt's last line>`.
async fn messages(
    axum::extract::State((seen, contract)): axum::extract::State<Server>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    seen.lock().unwrap().push(body.clone());
    if let Some(refused) = contract.anthropic(&headers, &body) {
        return refused;
    }
    let all = body["messages"].to_string();
    let text = if all.contains("create a detailed summary of the conversation") {
        "<analysis>short</analysis>\n<summary>The operator said hello.</summary>".to_owned()
    } else {
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
                    .filter_map(|b| b["text"].as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            })
            .find(|t| t.contains(" wrote:"))
            .unwrap_or_default();
        format!("done: {}", prompt.trim().rsplit('\n').next().unwrap_or(""))
    };
    Json(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 6}}),
    )
    .into_response()
}

/// The real, pinned Claude Code CLI, offline: `!compact` runs its own `/compact` on the resumed
/// session (the model is asked for a summary), `!new-session` forgets the session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_compacts_and_forgets_its_session() {
    let Some(cli) = common::claude_code_cli() else {
        return;
    };
    let seen = Requests::default();
    let contract = Contract::default();
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .with_state((seen.clone(), contract.clone()));
    let base = common::serve_http(app).await;
    let (_keys, key) = common::secret_file("anthropic.key", KEY);
    let mut hive = TestHive::with_config(
        &[(
            "claude",
            "[brain]\nkind = \"claude-code\"\nmodel = \"claude-test\"\nprovider = \"local-claude\"\n"
                .to_owned(),
        )],
        &format!(
            "[providers.local-claude]\nkind = \"anthropic\"\nbase_url = \"{base}\"\napi_key_file = {key:?}\nmodels = [\"claude-test\"]\n"
        ),
    )
    .await;
    hive.start_core_env(&[(
        hyperhive::brain::claude_code::CLI_ENV,
        cli.to_str().unwrap(),
    )]);
    let op = hive.operator().await.with_logs(&hive);
    let room = op.join("agent-claude").await;
    let me = "@claude:localhost";
    let session_file = hive.data.join("agents/claude/state/claude-session");

    // No session yet: nothing to compact.
    op.send(&room, "!compact").await;
    op.wait_until(&room, WAIT, "nothing to compact", |m| {
        m.iter()
            .any(|x| x.sender == me && x.body == "Nothing to compact: I have no session yet.")
    })
    .await;
    op.send(&room, "hello").await;
    op.wait_until(&room, WAIT, "claude's answer", |m| {
        m.iter().any(|x| x.sender == me && x.body == "done: hello")
    })
    .await;
    let session = std::fs::read_to_string(&session_file).unwrap();
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|b| b["messages"].to_string().contains("!compact")),
        "a control message is never a prompt"
    );

    op.send(&room, "!compact").await;
    op.wait_until(&room, WAIT, "compacted", |m| {
        m.iter().any(|x| {
            x.sender == me && x.body == format!("Compacted my Claude Code session `{session}`.")
        })
    })
    .await;
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|b| b["messages"].to_string().contains("detailed summary")),
        "the model was asked for the summary"
    );
    assert_eq!(std::fs::read_to_string(&session_file).unwrap(), session);

    op.send(&room, "!new-session").await;
    op.wait_until(&room, WAIT, "a new session", |m| {
        m.iter().any(|x| {
            x.sender == me
                && x.body
                    == format!("Started a new session: my next message starts afresh (session `{session}` is forgotten).")
        })
    })
    .await;
    assert!(!session_file.exists(), "the session id is forgotten");
    op.send(&room, "again").await;
    op.wait_until(&room, WAIT, "an answer in the new session", |m| {
        m.iter().any(|x| x.sender == me && x.body == "done: again")
    })
    .await;
    let fresh = std::fs::read_to_string(&session_file).unwrap();
    assert_ne!(fresh, session, "a new session");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        !last["messages"].to_string().contains("said hello"),
        "the new session does not carry the old one: {last}"
    );
    contract.assert_kept();
    assert_eq!(hive.stop_core().code(), Some(0));
}
