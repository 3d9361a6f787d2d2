//! A manager's lifecycle tools, end to end on a real Synapse: hm1nd stops echo, and echo stays
//! silent while the operator's message waits in its queue, also across a restart of the core;
//! `start` delivers it; `restart` gives echo a fresh harness that answers again. A non-manager,
//! hostile names and a manager's stop of itself are refused and told; every call is audited.
//! `hive logs echo` prints echo's log without the core. (hm1nd is driven over its `tools.sock`.)

mod common;

use std::time::{Duration, Instant};

use common::call_tool as tool;
use common::{TestHive, echo_bot};
use hyperhive::wire::client::SocketClient;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(45);

/// `list_agents`' entry for `name`, as `caller` sees it.
async fn listed(caller: &mut SocketClient, name: &str) -> Value {
    let (text, err) = tool(caller, "list_agents", json!({})).await;
    assert!(!err, "{text}");
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    list.into_iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} is listed: {text}"))
}

/// Waits until `name`'s listed state is `state`; returns its entry.
async fn until_state(caller: &mut SocketClient, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let entry = listed(caller, name).await;
        if entry["state"] == state {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How often the core started echo's harness (its log says so at each start: a pid inside a
/// sandbox's namespace would say nothing).
fn echo_starts(hive: &TestHive) -> usize {
    hive.core_log()
        .lines()
        .filter(|l| l.contains("agent started") && l.contains("agent=echo"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_stops_starts_and_restarts_an_agent() {
    let mut hive = TestHive::new(&[
        ("echo", echo_bot(&[])),
        ("hm1nd", echo_bot(&[])),
        ("alice", echo_bot(&[])),
    ])
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    op.send(&echo, "first").await;
    op.wait_until(&echo, WAIT, "echo answers", |m| {
        m.iter().any(|x| x.body == "echo heard: first")
    })
    .await;
    let mut hm1nd = common::hello_socket(&hive, "hm1nd", "tools.sock", WAIT).await;
    let mut alice = common::hello_socket(&hive, "alice", "tools.sock", WAIT).await;

    // list_agents: the old fields and the new ones.
    let entry = until_state(&mut hm1nd, "echo", "idle").await;
    assert_eq!(
        (
            entry["queue"].clone(),
            entry["current_turn"].clone(),
            entry["last_crash"].clone()
        ),
        (json!(0), Value::Null, Value::Null),
        "{entry}"
    );
    assert!(entry.get("may_message").is_some(), "{entry}");

    // A non-manager is refused and told; so are hostile names and a manager's stop of itself.
    for t in ["stop", "start", "restart"] {
        let (text, err) = tool(&mut alice, t, json!({"agent": "echo"})).await;
        assert!(err && text.contains("managers only"), "{t}: {text}");
    }
    for agent in ["..", "../echo", "nobody", "Echo", "", "echo/../hm1nd"] {
        let (text, err) = tool(&mut hm1nd, "stop", json!({"agent": agent})).await;
        assert!(
            err && text.contains("not an agent of this hive"),
            "{agent:?}: {text}"
        );
    }
    for t in ["stop", "restart"] {
        let (text, err) = tool(&mut hm1nd, t, json!({"agent": "hm1nd"})).await;
        assert!(
            err && text.contains(&format!("hm1nd may not {t} itself")),
            "{t}: {text}"
        );
    }
    let (text, err) = tool(&mut hm1nd, "start", json!({"agent": "echo"})).await;
    assert!(!err && text.contains("echo is already running"), "{text}");
    assert_eq!(listed(&mut hm1nd, "echo").await["state"], "idle");

    // stop: echo's harness goes; the operator's message waits, unanswered.
    let (text, err) = tool(&mut hm1nd, "stop", json!({"agent": "echo"})).await;
    assert_eq!(
        (text.as_str(), err),
        (
            "stopped echo; no message waits in its queue (delivered when it is started)",
            false
        )
    );
    assert_eq!(listed(&mut hm1nd, "echo").await["state"], "stopped");
    op.send(&echo, "while stopped").await;
    let deadline = Instant::now() + WAIT;
    while listed(&mut hm1nd, "echo").await["queue"] != 1 {
        assert!(Instant::now() < deadline, "the message was never queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op.count(&echo, "echo heard: while stopped"),
        0,
        "a stopped agent answers nothing"
    );
    let (text, err) = tool(&mut hm1nd, "stop", json!({"agent": "echo"})).await;
    assert!(
        !err && text.contains("echo is already stopped; 1 message waits in its queue"),
        "{text}"
    );

    // It stays stopped across a restart of the core.
    drop((hm1nd, alice));
    assert_eq!(hive.stop_core().code(), Some(0));
    hive.start_core();
    let mut hm1nd = common::hello_socket(&hive, "hm1nd", "tools.sock", WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let entry = listed(&mut hm1nd, "echo").await;
    assert_eq!(
        (entry["state"].clone(), entry["queue"].clone()),
        (json!("stopped"), json!(1)),
        "{entry}"
    );
    assert_eq!(op.count(&echo, "echo heard: while stopped"), 0);

    // start: the queued message is answered.
    let (text, err) = tool(&mut hm1nd, "start", json!({"agent": "echo"})).await;
    assert_eq!(
        (text.as_str(), err),
        ("starting echo; 1 message waits in its queue", false)
    );
    op.wait_until(&echo, WAIT, "the queued message answered", |m| {
        m.iter().any(|x| x.body == "echo heard: while stopped")
    })
    .await;
    until_state(&mut hm1nd, "echo", "idle").await;
    let before = echo_starts(&hive);
    assert!(before >= 2, "started at least twice by now");

    // restart: a fresh harness, which answers again.
    let (text, err) = tool(&mut hm1nd, "restart", json!({"agent": "echo"})).await;
    assert!(!err && text.starts_with("restarting echo"), "{text}");
    let deadline = Instant::now() + WAIT;
    loop {
        let starts = echo_starts(&hive);
        if starts > before && listed(&mut hm1nd, "echo").await["state"] == "idle" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "echo was not restarted: {starts} starts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    op.send(&echo, "after restart").await;
    op.wait_until(&echo, WAIT, "echo answers after its restart", |m| {
        m.iter().any(|x| x.body == "echo heard: after restart")
    })
    .await;
    assert_eq!(
        op.count(&echo, "echo heard: while stopped"),
        1,
        "answered once"
    );

    // A crash is remembered: list_agents shows when and how.
    let pid: i32 = hive
        .core_log()
        .lines()
        .rev()
        .find(|l| l.contains("agent started") && l.contains("agent=echo"))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the core logs the harness's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    let crash = loop {
        let entry = listed(&mut hm1nd, "echo").await;
        if !entry["last_crash"].is_null() {
            break entry["last_crash"].clone();
        }
        assert!(Instant::now() < deadline, "no crash recorded: {entry}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        crash["status"].as_str().is_some_and(|s| !s.is_empty()) && crash["at"].is_string(),
        "{crash}"
    );
    until_state(&mut hm1nd, "echo", "idle").await;

    // Every call is in the audit, refused ones too.
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let audit: Vec<(String, String, String)> = store
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .filter(|e| ["stop", "start", "restart"].contains(&e.action.as_str()))
        .map(|e| (e.actor, e.action, e.outcome))
        .collect();
    for want in [
        ("hm1nd", "stop", "stopped"),
        ("hm1nd", "stop", "unchanged"),
        ("hm1nd", "start", "started"),
        ("hm1nd", "restart", "restarted"),
        ("hm1nd", "stop", "refused"),
        ("hm1nd", "restart", "refused"),
        ("alice", "stop", "refused"),
        ("alice", "start", "refused"),
        ("alice", "restart", "refused"),
    ] {
        assert!(
            audit
                .iter()
                .any(|(a, t, o)| (a.as_str(), t.as_str(), o.as_str()) == want),
            "{want:?} in {audit:?}"
        );
    }

    // hive logs: echo's log, read from the files, with no core running.
    drop(hm1nd);
    assert_eq!(hive.stop_core().code(), Some(0));
    let out = hive
        .hive(&["logs", "echo", "--lines", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout.lines().count();
    assert!((1..=5).contains(&lines), "{stdout}");
    let whole = std::fs::read_to_string(hive.data.join("agents/echo/agent.log")).unwrap();
    let last = whole.lines().last().unwrap();
    assert_eq!(stdout.lines().last(), Some(last), "the end of echo's log");
    for (name, want) in [
        ("nobody", "no agent nobody"),
        ("..", "must start with a lowercase"),
        ("../hm1nd", "must start with a lowercase"),
    ] {
        let out = hive.hive(&["logs", name]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(want),
            "{name}: {stderr}"
        );
    }
}
