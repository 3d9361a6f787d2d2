//! Kept state, end to end on a real Synapse: hm1nd asks to destroy echo; after the operator's ✅
//! echo's identity leaves its inbox, its directory stays, and nothing reaches it; a revive brings
//! it back on its config; a purge of the destroyed echo waits after its ✅ for the operator's
//! `purge echo` in the thread (an agent's never counts), then removes echo's directory and
//! nothing else. Hostile names and non-managers are refused at the tool. (hm1nd is driven over
//! its `tools.sock`, as `hive mcp` drives it for a Claude lane.)

mod common;

use std::time::Duration;

use common::{TestHive, call_tool as tool, echo_bot, react, request_message};
use matrix_sdk::Room;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);

fn scripted() -> String {
    "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nreply = \"v1: {body}\"\n".to_owned()
}

/// `user`'s membership of `room`, as the operator's client reads it from the homeserver.
async fn membership(op: &common::Operator, room: &Room, user: &str) -> String {
    use matrix_sdk::ruma::api::client::state::get_state_event_for_key::v3::Request;
    use matrix_sdk::ruma::events::StateEventType;
    let r = op
        .client
        .send(Request::new(
            room.room_id().to_owned(),
            StateEventType::RoomMember,
            user.to_owned(),
        ))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(r.event_or_content.get()).unwrap();
    v.get("content").unwrap_or(&v)["membership"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until `user`'s membership of `room` is `want`.
async fn wait_membership(op: &common::Operator, room: &Room, user: &str, want: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = membership(op, room, user).await;
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{user} is {now:?} in {}, not {want:?}",
            room.room_id()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A thread reply `body` to `root` in the approvals room, as the operator.
async fn reply_in_thread(approvals: &Room, root: &str, body: &str) {
    approvals
        .send_raw(
            "m.room.message",
            json!({"msgtype": "m.text", "body": body,
                "m.relates_to": {"rel_type": "m.thread", "event_id": root,
                    "is_falling_back": true, "m.in_reply_to": {"event_id": root}}}),
        )
        .await
        .unwrap();
}

/// The same reply, forged as if `sender` (an agent) had posted it: the homeserver would not let
/// an agent post there, so it is pushed to the core as the homeserver would push it.
async fn forged_reply(hive: &TestHive, approvals: &Room, sender: &str, root: &str, body: &str) {
    let event = json!({
        "type": "m.room.message", "event_id": "$forged-confirmation",
        "room_id": approvals.room_id(), "sender": sender, "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    });
    let r = reqwest::Client::new()
        .put(format!(
            "http://{}/_matrix/app/v1/transactions/forged-confirmation",
            hive.cfg.listen
        ))
        .bearer_auth(hive.hs_token())
        .json(&json!({ "events": [event] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_revive_and_purge_with_the_second_confirmation() {
    let mut hive = TestHive::new(&[
        ("echo", scripted()),
        ("hm1nd", echo_bot(&["echo"])),
        ("alice", echo_bot(&[])),
    ])
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let approvals = op.join("hive-approvals").await;
    let control = op.join("hive-c0re").await;
    let echo_user = "@echo:localhost";
    op.send(&echo, "hello").await;
    op.wait_until(&echo, WAIT, "echo answers", |m| {
        m.iter().any(|x| x.body == "v1: hello")
    })
    .await;
    let mut hm1nd = common::hello_socket(&hive, "hm1nd", "tools.sock", WAIT).await;
    let mut alice = common::hello_socket(&hive, "alice", "tools.sock", WAIT).await;
    let echo_dir = hive.data.join("agents").join("echo");
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();

    // A non-manager is refused all three; hostile names are refused before anything is filed.
    for t in ["destroy", "revive", "purge"] {
        let (text, err) = tool(&mut alice, t, json!({"agent": "echo"})).await;
        assert!(err && text.contains("managers only"), "{t}: {text}");
        for name in ["..", "../x", "a/b", "", ".", "/etc", "ech\u{f6}", "Echo"] {
            let (text, err) = tool(&mut hm1nd, t, json!({"agent": name})).await;
            assert!(
                err && text.contains("not an agent's name"),
                "{t} {name:?}: {text}"
            );
        }
    }
    let (text, err) = tool(&mut hm1nd, "purge", json!({"agent": "echo"})).await;
    assert!(err && text.contains("only a destroyed agent"), "{text}");
    let (text, err) = tool(&mut hm1nd, "revive", json!({"agent": "echo"})).await;
    assert!(err && text.contains("is not kept"), "{text}");
    let (text, err) = tool(&mut hm1nd, "destroy", json!({"agent": "hm1nd"})).await;
    assert!(err && text.contains("is a manager"), "{text}");
    assert!(store.approval(1).unwrap().is_none(), "nothing was filed");
    assert!(echo_dir.join("config.git").is_dir());

    // 1. destroy → ✅: echo leaves its inbox, its directory stays, nothing reaches it, and its
    // open connections end.
    wait_membership(&op, &echo, echo_user, "join").await;
    let mut echo_tools = common::hello_socket(&hive, "echo", "tools.sock", WAIT).await;
    let (text, err) = tool(
        &mut hm1nd,
        "destroy",
        json!({"agent": "echo", "summary": "echo is not needed now"}),
    )
    .await;
    assert!(!err && text.contains("approval #1"), "{text}");
    let req = request_message(&op, &approvals, 1, WAIT).await;
    assert!(
        req.body.contains("asks to destroy echo") && req.body.contains("echo is not needed now"),
        "{}",
        req.body
    );
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "destroyed", |m| {
        m.iter().any(|x| x.body.contains("**echo** is destroyed"))
    })
    .await;
    wait_membership(&op, &echo, echo_user, "leave").await;
    let after = tokio::time::timeout(
        WAIT,
        echo_tools.call(&hyperhive::wire::protocol::Request::ListTools {}),
    )
    .await
    .expect("a destroyed agent's tools connection does not hang");
    assert!(after.is_err(), "its tools connection is closed: {after:?}");
    assert!(
        echo_dir.join("config.git").is_dir() && echo_dir.join("agent.log").is_file(),
        "its state is kept"
    );
    let kept = store.kept_agent("echo").unwrap().expect("echo is kept");
    assert_eq!(kept.approval_id, 1);
    assert!(
        store
            .agent_states()
            .unwrap()
            .iter()
            .any(|(n, s, _)| n == "echo" && s == "kept"),
        "hive status shows it kept"
    );
    let (text, err) = tool(&mut hm1nd, "list_agents", json!({})).await;
    assert!(!err, "{text}");
    let listed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "echo" && a["state"] == "kept"),
        "{text}"
    );
    let (text, err) = tool(
        &mut hm1nd,
        "send_message",
        json!({"to": "echo", "body": "are you there?"}),
    )
    .await;
    assert!(err && text.contains("echo is kept"), "{text}");
    op.send(&echo, "anyone?").await;
    let db = rusqlite::Connection::open(hive.data.join("c0re.db")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let dead: (String, String) = loop {
        let row = db
            .query_row(
                "SELECT state, COALESCE(error, '') FROM inbox WHERE agent = 'echo' AND body = 'anyone?'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        match row {
            Some(r) if r.0 == "dead" => break r,
            _ if std::time::Instant::now() > deadline => panic!("no dead letter: {row:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(dead.1.contains("echo is kept"), "{dead:?}");
    assert_eq!(
        op.count(&echo, "v1: anyone?"),
        0,
        "a kept agent answers nothing"
    );

    // A restart keeps it kept: not started, no socket, still out of its rooms. (The restarted
    // core fails its first revive's bring-up: a homeserver blip.)
    drop((hm1nd, alice));
    assert!(hive.stop_core().success());
    hive.start_core_env(&[("HYPERHIVE_FAILPOINT", "revive-bring-up:1")]);
    let mut hm1nd = common::hello_socket(&hive, "hm1nd", "tools.sock", WAIT).await;
    assert!(
        !echo_dir.join("sock").join("c0re.sock").exists(),
        "a kept agent has no socket after a restart"
    );
    assert_eq!(membership(&op, &echo, echo_user).await, "leave");
    assert!(store.kept_agent("echo").unwrap().is_some());

    // A revive that fails is undone whole: echo stays kept, out of the registry and its rooms.
    let (text, err) = tool(&mut hm1nd, "revive", json!({"agent": "echo"})).await;
    assert!(!err && text.contains("approval #2"), "{text}");
    let req = request_message(&op, &approvals, 2, WAIT).await;
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "the revive failed", |m| {
        m.iter()
            .any(|x| x.body.contains("❌ revive failed") && x.body.contains("it stays kept"))
    })
    .await;
    assert_eq!(
        store.kept_agent("echo").unwrap().map(|k| k.approval_id),
        Some(1),
        "kept again by its destroy"
    );
    assert_eq!(
        store.approval(2).unwrap().unwrap().state,
        hyperhive::store::ApprovalState::Failed
    );
    let (text, err) = tool(
        &mut hm1nd,
        "send_message",
        json!({"to": "echo", "body": "still there?"}),
    )
    .await;
    assert!(
        err && text.contains("echo is kept"),
        "not in the registry: {text}"
    );
    assert_eq!(membership(&op, &echo, echo_user).await, "leave");

    // 2. revive → ✅: echo rejoins and answers on its config.
    let (text, err) = tool(&mut hm1nd, "revive", json!({"agent": "echo"})).await;
    assert!(!err && text.contains("approval #3"), "{text}");
    let req = request_message(&op, &approvals, 3, WAIT).await;
    assert!(req.body.contains("asks to revive echo"), "{}", req.body);
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "revived", |m| {
        m.iter().any(|x| x.body.contains("**echo** is revived"))
    })
    .await;
    wait_membership(&op, &echo, echo_user, "join").await;
    op.send(&echo, "back?").await;
    op.wait_until(&echo, WAIT, "echo answers again", |m| {
        m.iter().any(|x| x.body == "v1: back?")
    })
    .await;
    assert_eq!(
        op.count(&echo, "v1: anyone?"),
        0,
        "a dead letter stays dead"
    );
    assert!(store.kept_agent("echo").unwrap().is_none());

    // 3. destroy again, then purge: ✅, and nothing is removed before the confirmation.
    let (text, err) = tool(&mut hm1nd, "destroy", json!({"agent": "echo"})).await;
    assert!(!err && text.contains("approval #4"), "{text}");
    let req = request_message(&op, &approvals, 4, WAIT).await;
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "destroyed again", |m| {
        m.iter()
            .filter(|x| x.body.contains("**echo** is destroyed"))
            .count()
            == 2
    })
    .await;
    wait_membership(&op, &echo, echo_user, "leave").await;
    // Planted inside echo's directory: links to what is outside the data dir.
    let outside = hive.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    std::os::unix::fs::symlink(&outside, echo_dir.join("state").join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("precious"), echo_dir.join("link")).unwrap();

    let (text, err) = tool(
        &mut hm1nd,
        "purge",
        json!({"agent": "echo", "summary": "for good"}),
    )
    .await;
    assert!(!err && text.contains("approval #5"), "{text}");
    let req = request_message(&op, &approvals, 5, WAIT).await;
    assert!(
        req.body.contains("asks to purge echo") && req.body.contains("second confirmation"),
        "{}",
        req.body
    );
    react(&approvals, &req.event_id, "✅").await;
    op.wait_until(&approvals, WAIT, "asked to confirm", |m| {
        m.iter()
            .any(|x| x.body.starts_with("🔐 Approved") && x.body.contains("`purge echo`"))
    })
    .await;
    assert_eq!(
        store.approval(5).unwrap().unwrap().state,
        hyperhive::store::ApprovalState::Confirming
    );
    assert!(echo_dir.is_dir(), "not removed before the confirmation");

    // An agent's confirmation never counts; conversation in the thread is nothing.
    let root = req.event_id.as_str();
    forged_reply(&hive, &approvals, "@hm1nd:localhost", root, "purge echo").await;
    op.wait_until(&control, WAIT, "the agent's confirmation reported", |m| {
        m.iter().any(|x| {
            x.body.contains("@hm1nd:localhost")
                && x.body
                    .contains("confirmed the purge of request #5: ignored")
        })
    })
    .await;
    reply_in_thread(&approvals, root, "hmm, are we sure?").await;
    reply_in_thread(&approvals, root, "purge argus").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(echo_dir.is_dir(), "neither removed anything");
    assert_eq!(
        store.approval(5).unwrap().unwrap().state,
        hyperhive::store::ApprovalState::Confirming
    );

    // The operator's confirmation: echo's directory goes, nothing else does.
    reply_in_thread(&approvals, root, "purge echo").await;
    op.wait_until(&approvals, WAIT, "purged", |m| {
        m.iter().any(|x| x.body.contains("kept state is purged"))
    })
    .await;
    assert!(!echo_dir.exists(), "echo's directory is gone");
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me",
        "what its links pointed to survives"
    );
    assert!(
        hive.data.join("agents/alice/config.git").is_dir(),
        "a sibling survives"
    );
    assert!(hive.data.join("agents/hm1nd/config.git").is_dir());
    assert!(hive.data.join("c0re.db").is_file());
    let a = store.approval(5).unwrap().unwrap();
    assert_eq!(a.state, hyperhive::store::ApprovalState::Applied);
    assert!(store.kept_agent("echo").unwrap().is_none());
    let audit = store.audit_log(1000).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "confirm"
            && e.approval_id == Some(5)
            && e.actor == hive.operator.user_id),
        "the operator's confirmation is audited"
    );
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "alice" && e.action == "destroy" && e.outcome == "refused"),
        "a non-manager's attempt is audited"
    );
    assert!(
        audit.iter().any(|e| e.actor == "hm1nd"
            && e.action == "purge"
            && e.outcome == "refused"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("not an agent's name"))),
        "a hostile name is audited"
    );
    // Nothing is left to purge.
    let (text, err) = tool(&mut hm1nd, "purge", json!({"agent": "echo"})).await;
    assert!(err && text.contains("only a destroyed agent"), "{text}");

    // The operator files the same requests from the command line.
    let run = |args: &[&str]| {
        let out = hive.hive(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = run(&["kept", "purge", "echo"]);
    assert!(
        code == Some(2) && text.contains("only a destroyed agent"),
        "{text}"
    );
    let (code, text) = run(&["kept", "destroy", ".."]);
    assert!(
        code == Some(2) && text.contains("must start with"),
        "{text}"
    );
    let (code, text) = run(&["kept", "destroy", "alice", "-m", "from the cli"]);
    assert!(code == Some(0) && text.contains("request #6"), "{text}");
    let req = request_message(&op, &approvals, 6, WAIT).await;
    assert!(
        req.body.contains("asks to destroy alice") && req.body.contains("from the cli"),
        "{}",
        req.body
    );
}
