//! The manager's config tools, end to end on a real Synapse: hm1nd reads echo's config, writes a
//! change on the proposed side, files it; the operator's ✅ applies exactly that sha and echo
//! answers on it. Hostile writes change nothing; a non-manager is refused; the audit has every
//! call. (hm1nd is driven over its `tools.sock`, as `hive mcp` drives it for a Claude lane.)

mod common;

use common::call_tool as tool;

use std::time::Duration;

use common::{TestHive, echo_bot, react, request_message};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_reads_writes_and_files_a_config_the_operator_approves() {
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
    let hm1nd_room = op.join("agent-hm1nd").await;
    op.send(&echo, "hello").await;
    op.wait_until(&echo, WAIT, "v1 answer", |m| {
        m.iter().any(|x| x.body == "v1: hello")
    })
    .await;
    let mut hm1nd = common::hello_socket(&hive, "hm1nd", "tools.sock", WAIT).await;
    let mut alice = common::hello_socket(&hive, "alice", "tools.sock", WAIT).await;

    // read_config: what echo runs.
    let (text, err) = tool(&mut hm1nd, "read_config", json!({"agent": "echo"})).await;
    assert!(!err, "{text}");
    let read: Value = serde_json::from_str(&text).unwrap();
    let applied = read["applied_sha"].as_str().unwrap().to_owned();
    assert_eq!(read["deploy"], 1);
    assert_eq!(read["proposed"], "the same as applied");
    let toml = read["applied"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "agent.toml")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(toml.contains("v1: {body}"), "{toml}");

    // Hostile or invalid writes are refused and commit nothing.
    for (files, want) in [
        (
            json!([{"path": "../../escape", "content": "x"}]),
            "forbidden path component",
        ),
        (
            json!([{"path": "/etc/passwd", "content": "x"}]),
            "not a relative path",
        ),
        (
            json!([{"path": ".git/config", "content": "x"}]),
            "forbidden path component",
        ),
        (
            json!([{"path": "agent.toml", "content": "[brain]\nkind = \"telepathy\"\n"}]),
            "brain",
        ),
        (
            json!([{"path": "agent.toml", "content": "alowed_recipients = []\n[brain]\nkind = \"scripted\"\n"}]),
            "alowed_recipients",
        ),
        (json!([{"path": "blob", "content": "a\u{0}b"}]), "binary"),
    ] {
        let (text, err) = tool(
            &mut hm1nd,
            "write_config",
            json!({"agent": "echo", "files": files, "message": "bad"}),
        )
        .await;
        assert!(err && text.contains(want), "{want}: {text}");
    }
    for agent in ["..", "../hm1nd", "nobody", "Echo"] {
        let (text, err) = tool(
            &mut hm1nd,
            "write_config",
            json!({"agent": agent, "files": [{"path": "prompt.md", "content": "x"}], "message": "m"}),
        )
        .await;
        assert!(
            err && text.contains("not an agent of this hive"),
            "{agent}: {text}"
        );
    }
    assert!(!hive.dir.path().join("escape").exists());
    let (text, _) = tool(&mut hm1nd, "read_config", json!({"agent": "echo"})).await;
    assert!(
        text.contains("the same as applied"),
        "nothing was committed: {text}"
    );

    // A non-manager may not use any of them.
    for t in ["read_config", "write_config", "config_diff", "config_log"] {
        let (text, err) = tool(&mut alice, t, json!({"agent": "echo"})).await;
        assert!(err && text.contains("managers only"), "{t}: {text}");
    }

    // write_config: v2 on the proposed side; the answer is the sha and the diff.
    let (text, err) = tool(
        &mut hm1nd,
        "write_config",
        json!({"agent": "echo", "message": "echo answers v2",
               "files": [{"path": "agent.toml", "content": common::scripted("v2")},
                         {"path": "prompt.md", "content": "You are echo, second edition."}]}),
    )
    .await;
    assert!(!err, "{text}");
    let wrote: Value = serde_json::from_str(&text).unwrap();
    let sha = wrote["sha"].as_str().unwrap().to_owned();
    assert_eq!(sha.len(), 40);
    assert_ne!(sha, applied);
    let diff = wrote["diff"].as_str().unwrap();
    assert!(
        diff.contains("+reply = \"v2: {body}\"") && diff.contains("-reply = \"v1: {body}\""),
        "{diff}"
    );
    assert!(diff.contains("second edition"), "{diff}");
    // The same files again change nothing: no second commit.
    let (text, err) = tool(
        &mut hm1nd,
        "write_config",
        json!({"agent": "echo", "message": "again",
               "files": [{"path": "agent.toml", "content": common::scripted("v2")}]}),
    )
    .await;
    assert!(err && text.contains("nothing to commit"), "{text}");
    let (text, err) = tool(&mut hm1nd, "config_diff", json!({"agent": "echo"})).await;
    assert!(
        !err && text.contains(&sha) && text.contains("v2: {body}"),
        "{text}"
    );
    let (text, _) = tool(&mut hm1nd, "read_config", json!({"agent": "echo"})).await;
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(read["proposed_sha"], sha.as_str());
    assert_eq!(
        read["applied_sha"],
        applied.as_str(),
        "nothing runs before the ✅"
    );

    // Nothing changed for echo yet.
    op.send(&echo, "still").await;
    op.wait_until(&echo, WAIT, "still v1", |m| {
        m.iter().any(|x| x.body == "v1: still")
    })
    .await;

    // A request for a commit the repo does not have is refused (and audited, below); its
    // number, #1, is spent.
    let (text, err) = tool(
        &mut hm1nd,
        "request_apply_commit",
        json!({"agent": "echo", "sha": "0".repeat(40), "summary": "no such commit"}),
    )
    .await;
    assert!(err, "{text}");

    // File it; the operator approves; echo runs exactly that sha.
    let (text, err) = tool(
        &mut hm1nd,
        "request_apply_commit",
        json!({"agent": "echo", "sha": sha, "summary": "echo answers v2"}),
    )
    .await;
    assert!(!err, "{text}");
    let req = request_message(&op, &approvals, 2, WAIT).await;
    assert!(
        req.body.contains("echo answers v2") && req.body.contains("v2: {body}"),
        "{}",
        req.body
    );
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "applied", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/2"))
    })
    .await;
    // The managers learn it took effect: a config_applied event in hm1nd's inbox.
    let applied_text =
        format!("config_applied: **echo** runs config `{sha}` as deploy/2 (request #2).");
    op.wait_until(&hm1nd_room, WAIT, "config_applied", |m| {
        m.iter().any(|x| x.body == applied_text)
    })
    .await;
    op.send(&echo, "again").await;
    op.wait_until(&echo, WAIT, "v2 answer", |m| {
        m.iter().any(|x| x.body == "v2: again")
    })
    .await;
    let (text, _) = tool(&mut hm1nd, "read_config", json!({"agent": "echo"})).await;
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (read["applied_sha"].as_str(), read["deploy"].as_u64()),
        (Some(sha.as_str()), Some(2))
    );

    // config_log: both deploys, the request, who approved it.
    let (text, err) = tool(&mut hm1nd, "config_log", json!({"agent": "echo"})).await;
    assert!(!err, "{text}");
    let log: Value = serde_json::from_str(&text).unwrap();
    let deploys: Vec<(u64, &str)> = log["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["deploy"].as_u64().unwrap(), d["sha"].as_str().unwrap()))
        .collect();
    assert_eq!(deploys, [(1, applied.as_str()), (2, sha.as_str())]);
    let requests = log["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests.iter().any(|r| r["state"] == "cancelled"),
        "the refused request: {requests:?}"
    );
    let request = requests
        .iter()
        .find(|r| r["state"] == "applied")
        .expect("the applied request");
    assert_eq!(request["requester"], "hm1nd");
    assert_eq!(request["deploy"], 2);
    assert_eq!(request["approved_by"], json!([hive.operator.user_id]));

    // get_logs: a manager reads echo's log; alice only her own.
    let (text, err) = tool(
        &mut hm1nd,
        "get_logs",
        json!({"agent": "echo", "lines": 20}),
    )
    .await;
    assert!(!err && !text.trim().is_empty(), "{text}");
    assert!(text.lines().count() <= 20, "{text}");
    assert!(
        !text.contains(hive.data.to_str().unwrap()),
        "no host path: {text}"
    );
    let (text, err) = tool(&mut alice, "get_logs", json!({"agent": "echo"})).await;
    assert!(err && text.contains("its own log only"), "{text}");
    let (text, err) = tool(&mut alice, "get_logs", json!({"agent": "alice"})).await;
    assert!(!err, "{text}");
    let (text, err) = tool(&mut hm1nd, "get_logs", json!({"agent": "../../etc"})).await;
    assert!(err && text.contains("not an agent of this hive"), "{text}");

    // The audit has every call of the manager's.
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let calls: Vec<(String, String)> = store
        .audit_log(1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "hm1nd" && e.action.contains("config"))
        .map(|e| (e.action, e.outcome))
        .collect();
    assert!(
        calls.contains(&("write_config".into(), "committed".into())),
        "{calls:?}"
    );
    assert!(
        calls.iter().filter(|(a, _)| a == "read_config").count() >= 3,
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|(a, _)| a == "config_log")
            && calls.iter().any(|(a, _)| a == "config_diff"),
        "{calls:?}"
    );
    let refused = |actor: &str, why: &str| {
        store.audit_log(1000).unwrap().iter().any(|e| {
            e.actor == actor
                && e.action == "write_config"
                && e.outcome == "refused"
                && e.detail.as_deref().is_some_and(|d| d.contains(why))
        })
    };
    assert!(
        refused("hm1nd", "forbidden path component"),
        "a refused write is audited"
    );
    assert!(
        refused("alice", "managers only"),
        "a non-manager's attempt is audited"
    );
    assert!(
        store.audit_log(1000).unwrap().iter().any(|e| {
            e.actor == "hm1nd"
                && e.action == "request_apply_commit"
                && e.outcome == "refused"
                && e.sha.as_deref() == Some("0".repeat(40).as_str())
        }),
        "a refused request is audited"
    );
}
