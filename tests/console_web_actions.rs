//! The web console's actions, as the operator's own Matrix account, on a real Synapse.
//!
//! - With `hive c0re` as its own process: the console logs in with `hive up`'s operator (one
//!   device, its token kept mode 0600 and reused across restarts, replaced when the homeserver
//!   no longer knows it), writes in an agent's inbox (the agent answers), gives a `!hive`
//!   command (the core answers it: the command counted as the operator's), and approves a
//!   request with a ✅ that a matrix-sdk client sees as the operator's and the core applies.
//! - With a core in this process (its appservice endpoint, rooms, control and approvals
//!   loops): the console's routes and `Actions::act` end to end: a lifecycle button's outcome
//!   is the core's reply to its `!hive` command (the reply hook), a question is answered by
//!   its keycap, a request approved by a ✅ the core counts, a double click sent once, a
//!   closed request or question refused.
//! - Without any operator account, the console says which files are missing.
//!
//! (The session and CSRF layer in front of the routes is the server's, tested by the browser
//! tests once merged.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestHive, request_message};
use hyperhive::c0re::web::actions::operator::{self, OperatorAccount};
use matrix_sdk::Room;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use ruma::events::MessageLikeEventType;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);

fn scripted() -> String {
    "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nreply = \"v1: {body}\"\n".to_owned()
}

fn saved(hive: &TestHive) -> serde_json::Value {
    let path = operator::session_file(&hive.data);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

async fn say(account: &OperatorAccount, room: &Room, body: &str, txn: &str) {
    account
        .send(
            room.room_id(),
            MessageLikeEventType::RoomMessage,
            &json!({"msgtype": "m.text", "body": body}),
            txn,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_acts_as_the_operators_own_account() {
    let mut hive = TestHive::new(&[("echo", scripted())]).await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let control = op.join("hive-c0re").await;
    let approvals = op.join("hive-approvals").await;
    let reactions: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let r = reactions.clone();
    op.client
        .add_event_handler(move |ev: OriginalSyncReactionEvent| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push((
                    ev.sender.to_string(),
                    ev.content.relates_to.event_id.to_string(),
                    ev.content.relates_to.key.clone(),
                ));
            }
        });

    // The first use logs in as hive up's operator, on the console's own device.
    let account = OperatorAccount::new(&hive.cfg.homeserver_url, &hive.data, &hive.cfg.operators);
    assert_eq!(
        account.user().await.unwrap().as_str(),
        hive.operator.user_id
    );
    let path = operator::session_file(&hive.data);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token is private");
    let first = saved(&hive);
    assert_eq!(first["device_id"], operator::DEVICE_ID);
    assert_eq!(first["user_id"], hive.operator.user_id.as_str());
    let token = first["access_token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());

    // Written in the agent's inbox as the operator (the console's account joins it first):
    // the agent answers it.
    say(&account, &echo, "hello from the console", "t-say-1").await;
    op.wait_until(&echo, WAIT, "echo answers the console", |m| {
        m.iter().any(|x| x.body == "v1: hello from the console")
    })
    .await;
    let by_console = op
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.body == "hello from the console")
        .map(|m| m.sender.clone());
    assert_eq!(by_console.as_deref(), Some(hive.operator.user_id.as_str()));

    // A `!hive` command from the console is the operator's: the core carries it out.
    let table = "| agent | brain | state |";
    assert_eq!(
        op.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.body.contains(table))
            .count(),
        0
    );
    say(&account, &control, "!hive status", "t-status-1").await;
    let msgs = op
        .wait_until(&control, WAIT, "the core answers !hive status", |m| {
            m.iter().any(|x| x.body.contains(table))
        })
        .await;
    let answer = msgs.iter().find(|x| x.body.contains(table)).unwrap();
    assert!(
        answer.body.contains("| echo |"),
        "the status names echo: {}",
        answer.body
    );
    assert!(answer.sender.starts_with("@hive:"), "{}", answer.sender);

    // A restart reuses the saved token: no new login.
    let again = OperatorAccount::new(&hive.cfg.homeserver_url, &hive.data, &hive.cfg.operators);
    say(&again, &echo, "after a restart", "t-say-2").await;
    op.wait_until(&echo, WAIT, "echo answers after a restart", |m| {
        m.iter().any(|x| x.body == "v1: after a restart")
    })
    .await;
    assert_eq!(saved(&hive)["access_token"], token.as_str(), "reused");

    // A token the homeserver no longer knows is replaced by a new login, once.
    std::fs::write(
        &path,
        serde_json::to_vec(
            &json!({"user_id": hive.operator.user_id, "device_id": operator::DEVICE_ID,
            "access_token": "syt_b3BlcmF0b3I_notatokenatall_0000"}),
        )
        .unwrap(),
    )
    .unwrap();
    let relogged = OperatorAccount::new(&hive.cfg.homeserver_url, &hive.data, &hive.cfg.operators);
    say(&relogged, &echo, "after a lost token", "t-say-3").await;
    op.wait_until(&echo, WAIT, "echo answers after a new login", |m| {
        m.iter().any(|x| x.body == "v1: after a lost token")
    })
    .await;
    let now = saved(&hive)["access_token"].as_str().unwrap().to_owned();
    assert!(
        now != "syt_b3BlcmF0b3I_notatokenatall_0000" && !now.is_empty(),
        "a new token was saved"
    );

    // The console's account reacts ✅ on a request (the event the approve button sends, sent
    // here with `OperatorAccount::send`; the button itself is driven through `Actions::act`
    // below): a matrix-sdk client sees the operator's ✅, the core counts and applies it.
    let out = hive
        .hive(&["kept", "destroy", "echo", "-m", "from the console test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req = request_message(&op, &approvals, 1, WAIT).await;
    relogged
        .send(
            approvals.room_id(),
            MessageLikeEventType::Reaction,
            &json!({"m.relates_to": {"rel_type": "m.annotation",
                "event_id": req.event_id, "key": "✅"}}),
            "t-approve-1",
        )
        .await
        .unwrap();
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = reactions
            .lock()
            .unwrap()
            .iter()
            .any(|(sender, event, key)| {
                *sender == hive.operator.user_id && *event == req.event_id.as_str() && key == "✅"
            });
        let state = store.approval(1).unwrap().unwrap().state;
        if seen && state == hyperhive::store::ApprovalState::Applied {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ✅ seen: {seen}, request #1 is {state}\n{}",
            common::logs_tail(hive.dir.path())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let voters = store.approvers(1).unwrap();
    assert_eq!(
        voters,
        vec![hive.operator.user_id.clone()],
        "the operator's vote"
    );

    // A `web-operator.json` that names the operator but holds someone else's token: the
    // homeserver's whoami unmasks it, and nothing is sent.
    let mallory = hive.register_user("plain.mallory").await;
    let mallory = common::Operator::login(&mallory).await;
    let stolen = mallory.client.access_token().unwrap();
    let token_path = operator::token_file(&hive.data);
    std::fs::write(
        &token_path,
        serde_json::to_vec(&json!({"user_id": hive.operator.user_id, "access_token": stolen}))
            .unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let masked = OperatorAccount::new(&hive.cfg.homeserver_url, &hive.data, &hive.cfg.operators);
    let e = masked
        .send(
            echo.room_id(),
            MessageLikeEventType::RoomMessage,
            &json!({"msgtype": "m.text", "body": "as mallory, named the operator"}),
            "t-masked-1",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("web-operator.json")
            && e.contains(&format!(
                "says its access token is @plain.mallory:{}'s",
                hive.cfg.server_name
            )),
        "{e}"
    );
    assert!(!e.contains(&stolen), "the token is not shown: {e}");
    assert_eq!(
        op.count(&echo, "as mallory, named the operator"),
        0,
        "nothing was sent"
    );
}

/// A hive with no operator account (`hive c0re` on an existing homeserver): the console says
/// which files would give it one, and that a non-operator's token is no use.
#[tokio::test]
async fn without_an_operator_account_the_console_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::parse("http://127.0.0.1:1").unwrap();
    let operators = vec![ruma::OwnedUserId::try_from("@operator:localhost").unwrap()];
    let account = OperatorAccount::new(&url, dir.path(), &operators);
    let e = account.user().await.unwrap_err().to_string();
    assert!(
        e.contains("web-operator.json") && e.contains("operator.json"),
        "{e}"
    );
    std::fs::write(
        operator::token_file(dir.path()),
        r#"{"user_id": "@mallory:localhost", "access_token": "syt_x"}"#,
    )
    .unwrap();
    let e = account.user().await.unwrap_err().to_string();
    assert!(
        e.contains("@mallory:localhost is not one of the hive's operators"),
        "{e}"
    );
}

/// The lifecycle buttons' path end to end, in this process: a core (its appservice endpoint,
/// rooms and control loop) and the console's routes on it. The console's `!hive stop ghost`
/// is sent as the operator, the core answers it, and the hook on the reply path makes that
/// answer the button's outcome (not the "sent; no answer yet" of a timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cores_reply_to_a_console_command_is_its_outcome() {
    use tower::ServiceExt;
    let hive = TestHive::new(&[]).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let core = hyperhive::c0re::Core::new(hive.cfg.clone(), &hive.data, Vec::new(), cancel.clone())
        .unwrap();
    let listener = tokio::net::TcpListener::bind(hive.cfg.listen)
        .await
        .unwrap();
    let endpoint = axum::serve(listener, hyperhive::c0re::server::router(core.clone()))
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    tokio::spawn(async move { endpoint.await.unwrap() });
    core.setup().await.unwrap();
    core.rooms().set_ready();
    tokio::spawn(core.clone().control_loop());

    let routes = hyperhive::c0re::web::actions::routes(core.clone());
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/act/stop/ghost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("csrf=x"))
        .unwrap();
    let resp = routes.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = v["message"].as_str().unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        message.contains("cannot stop ghost") && message.contains("not an agent of this hive"),
        "the core's own reply: {message}"
    );
    let audit = core.store().audit_log(20).unwrap();
    assert!(
        audit.iter().any(|e| e.actor == hive.operator.user_id
            && e.action == "web stop"
            && e.outcome == "answered"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|e| e.actor == hive.operator.user_id
            && e.action == "stop"
            && e.outcome == "refused"),
        "the core audited the operator's command: {audit:?}"
    );
    assert_eq!(
        core.control().replies().waiting(),
        0,
        "nothing left waiting"
    );

    // A question answered from the console: option 2's keycap, as the operator, counted by
    // the core's approvals loop; the same click twice is sent once; a closed one is refused.
    tokio::spawn(core.clone().approvals_loop());
    let id = core
        .store()
        .create_question("ghost", "which?", &["yes".into(), "no".into()], 600_000_000)
        .unwrap();
    core.wake_approvals();
    let deadline = Instant::now() + WAIT;
    let event = loop {
        let posted = core
            .store()
            .open_questions()
            .unwrap()
            .into_iter()
            .find(|q| q.id == id)
            .and_then(|q| q.request_event);
        if let Some(e) = posted {
            break e;
        }
        assert!(Instant::now() < deadline, "question #{id} was not posted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let actions = hyperhive::c0re::web::actions::Actions::new(core.clone());
    let target = id.to_string();
    let first = actions.act("answer", &target, b"csrf=x&option=2").await;
    assert!(first.ok, "{first:?}");
    let twice = actions.act("answer", &target, b"csrf=x&option=2").await;
    assert!(
        !twice.ok && twice.message.contains("a moment ago"),
        "{twice:?}"
    );
    let deadline = Instant::now() + WAIT;
    let row = loop {
        let row = core.store().question_by_event(&event).unwrap().unwrap();
        if row.answer.is_some() {
            break row;
        }
        assert!(Instant::now() < deadline, "question #{id} was not answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row.answer.as_deref(), Some("no"));
    assert_eq!(
        row.answered_by.as_deref(),
        Some(hive.operator.user_id.as_str())
    );
    let late = actions
        .act("answer", &target, b"csrf=x&text=yes+after+all")
        .await;
    assert!(!late.ok && late.message.contains("is not open"), "{late:?}");

    // A request approved from the console: the operator's ✅ is the vote the core counts.
    use hyperhive::store::{ApprovalKind, ApprovalState, NewApproval};
    let rid = core
        .store()
        .create_approval(&NewApproval {
            kind: ApprovalKind::Destroy,
            agent: "ghost",
            sha: "0000000",
            requester: "the test",
            summary: "destroy ghost",
            required: 1,
            ttl_us: 600_000_000,
        })
        .unwrap();
    core.store().complete_approval(rid).unwrap();
    core.wake_approvals();
    let deadline = Instant::now() + WAIT;
    while core
        .store()
        .approval(rid)
        .unwrap()
        .unwrap()
        .request_event
        .is_none()
    {
        assert!(Instant::now() < deadline, "request #{rid} was not posted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let target = rid.to_string();
    let approved = actions.act("approve", &target, b"csrf=x").await;
    assert!(
        approved.ok && approved.message.contains('✅'),
        "{approved:?}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let state = core.store().approval(rid).unwrap().unwrap().state;
        if state != ApprovalState::Pending {
            break;
        }
        assert!(Instant::now() < deadline, "request #{rid} is still {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        core.store().approvers(rid).unwrap(),
        vec![hive.operator.user_id.clone()],
        "the operator's ✅ was counted"
    );
    // A request that needs two ✅: the operator's first, from another client of theirs, is
    // there already; the console's is the same reaction, and says so.
    let two = core
        .store()
        .create_approval(&NewApproval {
            kind: ApprovalKind::Destroy,
            agent: "ghost",
            sha: "0000000",
            requester: "the test",
            summary: "destroy ghost, twice approved",
            required: 2,
            ttl_us: 600_000_000,
        })
        .unwrap();
    core.store().complete_approval(two).unwrap();
    core.wake_approvals();
    let deadline = Instant::now() + WAIT;
    let event = loop {
        if let Some(e) = core.store().approval(two).unwrap().unwrap().request_event {
            break e;
        }
        assert!(Instant::now() < deadline, "request #{two} was not posted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let other = OperatorAccount::new(&hive.cfg.homeserver_url, &hive.data, &hive.cfg.operators);
    let approvals = core
        .rooms()
        .get(&hyperhive::c0re::rooms::RoomKey::Approvals)
        .unwrap();
    other
        .send(
            &approvals,
            MessageLikeEventType::Reaction,
            &json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": "✅"}}),
            "t-other-client-1",
        )
        .await
        .unwrap();
    let again = actions.act("approve", &two.to_string(), b"csrf=x").await;
    assert!(
        !again.ok && again.message.contains("you reacted ✅ to it already"),
        "{again:?}"
    );

    let denied = actions.act("deny", &target, b"csrf=x").await;
    assert!(
        !denied.ok && denied.message.contains("there is nothing to deny"),
        "{denied:?}"
    );
    cancel.cancel();
}
