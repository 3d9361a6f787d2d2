//! The hive's tools over the socket, as any brain (or `hive mcp`) calls them: the catalog each
//! agent sees, policy, notes that persist, reminders that come back as messages.

mod common;

use common::call_tool as tool;

use std::time::Duration;

use common::{TestHive, echo_bot};
use hyperhive::wire::client::SocketClient;
use hyperhive::wire::protocol::{Request, Response};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);

async fn connect(hive: &TestHive, name: &str) -> SocketClient {
    common::hello_socket(hive, name, "c0re.sock", WAIT).await
}

async fn tool_names(c: &mut SocketClient) -> Vec<String> {
    match c.call(&Request::ListTools {}).await.unwrap() {
        Response::Tools { tools } => tools.into_iter().map(|t| t.name).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_over_the_socket() {
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
    let op = hive.operator().await;
    let bob_room = op.join("agent-bob").await;
    let mut alice = connect(&hive, "alice").await;
    let mut hm1nd = connect(&hive, "hm1nd").await;

    // The catalog: managers see the approval tools, others do not.
    let mine = tool_names(&mut alice).await;
    for t in [
        "send_message",
        "read_notes",
        "write_notes",
        "ask_operator",
        "remind",
        "list_agents",
    ] {
        assert!(mine.iter().any(|n| n == t), "{t} in {mine:?}");
    }
    assert!(!mine.iter().any(|n| n.starts_with("request_")), "{mine:?}");
    assert!(
        tool_names(&mut hm1nd)
            .await
            .iter()
            .any(|n| n == "request_apply_commit")
    );
    let (text, err) = tool(
        &mut alice,
        "request_init_config",
        json!({"name": "x", "summary": "y"}),
    )
    .await;
    assert!(err && text.contains("managers only"), "{text}");

    // Policy: allowed, refused, secrets, bad arguments, unknown tools.
    let (text, err) = tool(
        &mut alice,
        "send_message",
        json!({"to": "bob", "body": "hi *bob*"}),
    )
    .await;
    assert!(!err, "{text}");
    op.wait_until(&bob_room, WAIT, "alice's message", |m| {
        m.iter()
            .any(|x| x.sender == "@alice:localhost" && x.body == "bob: hi *bob*")
    })
    .await;
    let (text, err) = tool(
        &mut alice,
        "send_message",
        json!({"to": "hm1nd", "body": "x"}),
    )
    .await;
    assert!(
        err && text.contains("not in its allowed_recipients"),
        "{text}"
    );
    let (text, err) = tool(
        &mut alice,
        "send_message",
        json!({"to": "bob", "body": "key sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    )
    .await;
    assert!(err && text.contains("not posted"), "{text}");
    let (text, err) = tool(&mut alice, "send_message", json!({"to": "bob"})).await;
    assert!(err && text.contains("bad arguments"), "{text}");
    let (text, err) = tool(&mut alice, "format_disk", json!({})).await;
    assert!(err && text.contains("no tool"), "{text}");

    // list_agents says whom alice may message.
    let (text, err) = tool(&mut alice, "list_agents", serde_json::Value::Null).await;
    assert!(!err, "{text}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let may = |n: &str| list.iter().find(|a| a["name"] == n).unwrap()["may_message"].clone();
    assert_eq!((may("bob"), may("hm1nd")), (json!(true), json!(false)));

    // Notes persist across a restart of the core.
    let (_, err) = tool(
        &mut alice,
        "write_notes",
        json!({"notes": "remember the milk"}),
    )
    .await;
    assert!(!err);
    drop(alice);
    drop(hm1nd);
    assert_eq!(hive.stop_core().code(), Some(0));
    hive.start_core();
    let mut alice = connect(&hive, "alice").await;
    assert_eq!(
        tool(&mut alice, "read_notes", json!({})).await,
        ("remember the milk".into(), false)
    );

    // A reminder comes back as a message in alice's inbox.
    let (text, err) = tool(
        &mut alice,
        "remind",
        json!({"in_secs": 1, "text": "check the build"}),
    )
    .await;
    assert!(!err, "{text}");
    let msg = tokio::time::timeout(WAIT, alice.call(&Request::Next {}))
        .await
        .expect("the reminder arrives")
        .unwrap();
    match msg {
        Response::Message(m) => {
            assert_eq!(m.body, "reminder: check the build");
            assert_eq!(m.sender, "@hive:localhost");
            alice.call(&Request::Ack { id: m.id }).await.unwrap();
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(alice);
    assert_eq!(hive.stop_core().code(), Some(0));
}
