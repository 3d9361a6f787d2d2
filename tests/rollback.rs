//! Rollback and spawning from the manager's files, end to end on a real Synapse: echo runs v1
//! (deploy/1), then v2 (deploy/2) after hm1nd's request and the operator's ✅; hm1nd's
//! `request_rollback(echo, 1)` files deploy/1's files as a new commit, the request shows the
//! diff back to v1, the ✅ applies it as deploy/3 and echo answers v1 again; `config_log` and
//! the audit show both. `hive config rollback` files the same from the shell. hm1nd spawns bob
//! from its own agent.toml; hostile files are refused. (hm1nd is driven over its `tools.sock`,
//! as `hive mcp` drives it for a Claude lane.)

mod common;

use std::time::Duration;

use common::call_tool as tool;
use common::{TestHive, echo_bot, react, request_message};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_rolls_back_and_spawns_from_its_own_files() {
    let mut hive = TestHive::new(&[
        ("echo", common::scripted("v1")),
        ("hm1nd", echo_bot(&[])),
        ("alice", echo_bot(&[])),
    ])
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let approvals = op.join("hive-approvals").await;
    op.send(&echo, "hello").await;
    op.wait_until(&echo, WAIT, "v1 answer", |m| {
        m.iter().any(|x| x.body == "v1: hello")
    })
    .await;
    let mut hm1nd = common::hello_socket(&hive, "hm1nd", "tools.sock", WAIT).await;
    let mut alice = common::hello_socket(&hive, "alice", "tools.sock", WAIT).await;
    let (text, _) = tool(&mut hm1nd, "read_config", json!({"agent": "echo"})).await;
    let v1 = serde_json::from_str::<Value>(&text).unwrap()["applied_sha"]
        .as_str()
        .unwrap()
        .to_owned();

    // v2: written, requested, approved: deploy/2.
    let (text, err) = tool(
        &mut hm1nd,
        "write_config",
        json!({"agent": "echo", "message": "echo answers v2",
               "files": [{"path": "agent.toml", "content": common::scripted("v2")}]}),
    )
    .await;
    assert!(!err, "{text}");
    let v2 = serde_json::from_str::<Value>(&text).unwrap()["sha"]
        .as_str()
        .unwrap()
        .to_owned();
    let (text, err) = tool(
        &mut hm1nd,
        "request_apply_commit",
        json!({"agent": "echo", "sha": v2, "summary": "echo answers v2"}),
    )
    .await;
    assert!(!err, "{text}");
    let req = request_message(&op, &approvals, 1, WAIT).await;
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "deploy/2", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/2"))
    })
    .await;
    op.send(&echo, "again").await;
    op.wait_until(&echo, WAIT, "v2 answer", |m| {
        m.iter().any(|x| x.body == "v2: again")
    })
    .await;

    // Refused: the deploy that runs, one that never was, hostile names, a non-manager.
    for (args, want) in [
        (
            json!({"agent": "echo", "deploy": 2}),
            "nothing to roll back",
        ),
        (json!({"agent": "echo", "deploy": 9}), "has no deploy/9"),
        (json!({"agent": "../echo", "deploy": 1}), "agent name"),
        (json!({"agent": "nobody", "deploy": 1}), "not an agent"),
        (
            json!({"agent": "echo", "deploy": "deploy/1"}),
            "bad arguments",
        ),
    ] {
        let (text, err) = tool(&mut hm1nd, "request_rollback", args.clone()).await;
        assert!(err && text.contains(want), "{args}: {text}");
    }
    let (text, err) = tool(
        &mut alice,
        "request_rollback",
        json!({"agent": "echo", "deploy": 1}),
    )
    .await;
    assert!(err && text.contains("managers only"), "{text}");

    // An unapplied proposal is on the proposed side when the rollback is filed.
    let (text, err) = tool(
        &mut hm1nd,
        "write_config",
        json!({"agent": "echo", "message": "a v3 nobody asked for",
               "files": [{"path": "agent.toml", "content": common::scripted("v3")}]}),
    )
    .await;
    assert!(!err, "{text}");
    let v3 = serde_json::from_str::<Value>(&text).unwrap()["sha"]
        .as_str()
        .unwrap()
        .to_owned();

    // The rollback: a new commit of deploy/1's files on v2, the diff back to v1.
    let (text, err) = tool(
        &mut hm1nd,
        "request_rollback",
        json!({"agent": "echo", "deploy": 1, "summary": "v2 misbehaves"}),
    )
    .await;
    assert!(!err, "{text}");
    let filed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(filed["rollback_to"], "deploy/1");
    assert_eq!(filed["deploy_sha"], v1.as_str());
    assert_eq!(filed["parent"], v2.as_str());
    assert_eq!(filed["abandoned"], json!([v3]), "{text}");
    assert!(filed["note"].as_str().unwrap().contains(&v3), "{text}");
    let back = filed["sha"].as_str().unwrap().to_owned();
    assert!(back != v1 && back != v2 && back.len() == 40, "{back}");
    let (text, _) = tool(&mut hm1nd, "read_config", json!({"agent": "echo"})).await;
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        read["proposed_sha"],
        back.as_str(),
        "the proposed branch moved"
    );
    let req = request_message(&op, &approvals, 2, WAIT).await;
    assert!(
        req.body.contains("rollback to deploy/1: v2 misbehaves")
            && req.body.contains(&back)
            && req.body.contains("-reply = \"v2: {body}\"")
            && req.body.contains("+reply = \"v1: {body}\""),
        "{}",
        req.body
    );
    op.send(&echo, "before").await;
    op.wait_until(&echo, WAIT, "v2 until approved", |m| {
        m.iter().any(|x| x.body == "v2: before")
    })
    .await;
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "deploy/3", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/3"))
    })
    .await;
    op.send(&echo, "back").await;
    op.wait_until(&echo, WAIT, "v1 again", |m| {
        m.iter().any(|x| x.body == "v1: back")
    })
    .await;

    // config_log: three deploys, the third the rollback, its request applied as deploy/3.
    let (text, err) = tool(&mut hm1nd, "config_log", json!({"agent": "echo"})).await;
    assert!(!err, "{text}");
    let log: Value = serde_json::from_str(&text).unwrap();
    let deploys: Vec<(u64, &str)> = log["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["deploy"].as_u64().unwrap(), d["sha"].as_str().unwrap()))
        .collect();
    assert_eq!(
        deploys,
        [(1, v1.as_str()), (2, v2.as_str()), (3, back.as_str())]
    );
    let requests = log["requests"].as_array().unwrap();
    let rollback = requests.iter().find(|r| r["sha"] == back.as_str()).unwrap();
    assert_eq!(rollback["state"], "applied");
    assert_eq!(rollback["deploy"], 3);
    assert_eq!(rollback["summary"], "rollback to deploy/1: v2 misbehaves");
    assert_eq!(rollback["approved_by"], json!([hive.operator.user_id]));
    let (text, _) = tool(&mut hm1nd, "read_config", json!({"agent": "echo"})).await;
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(read["deploy"], 3);
    assert!(read["applied"].to_string().contains("v1: {body}"), "{text}");

    // The audit shows both deploys, and the rollback's request and call.
    let out = hive.hive(&["audit"]).output().unwrap();
    assert!(out.status.success());
    let audit = String::from_utf8_lossy(&out.stdout);
    for want in [
        "deploy/2",
        "deploy/3",
        "request_rollback",
        "rollback to deploy/1",
    ] {
        assert!(audit.contains(want), "{want}: {audit}");
    }
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let log = store.audit_log(1000).unwrap();
    let applied: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.action == "apply" && e.outcome == "applied")
        .map(|e| {
            (
                e.sha.as_deref().unwrap_or(""),
                e.detail.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        applied,
        [(v2.as_str(), "deploy/2"), (back.as_str(), "deploy/3")]
    );
    let calls: Vec<&str> = log
        .iter()
        .filter(|e| e.actor == "hm1nd" && e.action == "request_rollback")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(calls.iter().filter(|o| **o == "requested").count(), 1);
    assert!(
        calls.iter().filter(|o| **o == "refused").count() >= 4,
        "{calls:?}"
    );
    assert!(
        log.iter().any(|e| e.actor == "alice"
            && e.action == "request_rollback"
            && e.outcome == "refused"),
        "a non-manager's attempt is audited"
    );

    // From the shell: the operator asks for deploy/2 again.
    let out = hive
        .hive(&["config", "rollback", "echo", "2", "-m", "v2 after all"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("request #3"), "{said}");
    let req = request_message(&op, &approvals, 3, WAIT).await;
    assert!(
        req.body.contains("rollback to deploy/2: v2 after all")
            && req.body.contains("+reply = \"v2: {body}\""),
        "{}",
        req.body
    );
    for (args, want) in [
        (["config", "rollback", "echo", "3"], "nothing to roll back"),
        (["config", "rollback", "../x", "1"], "agent name"),
    ] {
        let out = hive.hive(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
    react(&approvals, &req.event_id, "❌").await;

    // request_init_config with files: hostile ones are refused and file nothing.
    let bob = "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nreply = \"bob: {body}\"\n";
    for (files, want) in [
        (
            json!([{"path": "../../escape", "content": "x"}]),
            "forbidden path component",
        ),
        (
            json!([{"path": "/etc/passwd", "content": "x"}]),
            "not a relative path",
        ),
        (json!([{"path": "blob", "content": "a\u{0}b"}]), "binary"),
        (
            json!([{"path": "agent.toml", "content": "alowed_recipients = []\n[brain]\nkind = \"scripted\"\n"}]),
            "alowed_recipients",
        ),
    ] {
        let (text, err) = tool(
            &mut hm1nd,
            "request_init_config",
            json!({"name": "bob", "summary": "bob echoes", "files": files}),
        )
        .await;
        assert!(err && text.contains(want), "{want}: {text}");
    }
    assert!(!hive.dir.path().join("escape").exists());
    assert!(
        store
            .approvals(10)
            .unwrap()
            .iter()
            .all(|a| a.agent != "bob"),
        "nothing was filed for bob"
    );
    let (text, err) = tool(
        &mut alice,
        "request_init_config",
        json!({"name": "bob", "summary": "x", "files": [{"path": "agent.toml", "content": bob}]}),
    )
    .await;
    assert!(err && text.contains("managers only"), "{text}");

    // Its own agent.toml (and the template's prompt): spawned, bob answers with its reply.
    let (text, err) = tool(
        &mut hm1nd,
        "request_init_config",
        json!({"name": "bob", "summary": "bob echoes",
               "files": [{"path": "agent.toml", "content": bob}]}),
    )
    .await;
    assert!(!err, "{text}");
    let req = request_message(&op, &approvals, 4, WAIT).await;
    assert!(
        req.body.contains("spawn") && req.body.contains("+reply = \"bob: {body}\""),
        "{}",
        req.body
    );
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "spawned", |m| {
        m.iter().any(|x| x.body.starts_with("✅ Spawned **bob**"))
    })
    .await;
    let bob_room = op.join("agent-bob").await;
    op.send(&bob_room, "hi there").await;
    op.wait_until(&bob_room, WAIT, "bob answers", |m| {
        m.iter()
            .any(|x| x.sender == "@bob:localhost" && x.body == "bob: hi there")
    })
    .await;
    let (text, _) = tool(&mut hm1nd, "read_config", json!({"agent": "bob"})).await;
    assert!(
        text.contains("bob: {body}") && text.contains("prompt.md"),
        "{text}"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}
