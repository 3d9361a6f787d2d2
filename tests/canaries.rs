//! Canaries: a secret planted everywhere an agent, a config or a crash can put text (names,
//! topics, profiles, crash logs, request summaries, encoded replies, the core's own log) never
//! reaches a room or the core's log, in plain text or encoded.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Operator, TestHive, echo_bot};
use hyperhive::wire::client::SocketClient;
use hyperhive::wire::protocol::{Request, Response};
use matrix_sdk::Room;
use matrix_sdk::ruma::events::StateEventType;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const CANARY: &str = "hhcanary-Q7v9Zx3LmP2wK8rTj4";

/// The canary as it may leak: plain, hex, and base64 (standard and URL-safe) at every
/// alignment (only the characters that depend on the canary's bytes alone).
fn forms(secret: &str) -> Vec<String> {
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![secret.to_owned(), hex.clone(), hex.to_uppercase()];
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    for engine in engines {
        for k in 0..3 {
            let mut bytes = vec![b'x'; k];
            bytes.extend_from_slice(secret.as_bytes());
            let enc = engine.encode(&bytes);
            let start = (8 * k).div_ceil(6);
            let end = 8 * (k + secret.len()) / 6;
            out.push(enc[start..end].to_owned());
        }
    }
    out
}

/// Fails naming `what` and the form if `text` holds the canary in any form.
fn assert_clean(what: &str, text: &str) {
    for f in forms(CANARY) {
        assert!(
            !text.contains(&f),
            "the canary reached {what} (as {f:?}):\n{text}"
        );
    }
}

/// Replies with the canary encoded (base64, hex) or plain text.
fn encoder_py() -> String {
    format!(
        r#"#!/usr/bin/env python3
import base64, json, sys
m = json.load(sys.stdin)["message"]
body = m["body"].strip()
c = "{CANARY}".encode()
if body == "b64":
    out = {{"reply": "here: " + base64.b64encode(c).decode()}}
elif body == "hex":
    out = {{"reply": "here: " + c.hex()}}
else:
    out = {{"reply": "clean: " + body}}
print(json.dumps(out))
"#
    )
}

/// The content of state event `kind` (key "") in `room`, as JSON text.
async fn state(op: &Operator, room: &Room, kind: StateEventType, key: &str) -> String {
    let raw = op
        .client
        .send(
            matrix_sdk::ruma::api::client::state::get_state_event_for_key::v3::Request::new(
                room.room_id().to_owned(),
                kind,
                key.to_owned(),
            ),
        )
        .await
        .unwrap();
    raw.event_or_content.get().to_owned()
}

/// The raw JSON of event `id` in `room`, as the homeserver serves it.
async fn raw_event(op: &Operator, room: &Room, id: &matrix_sdk::ruma::OwnedEventId) -> String {
    let raw = op
        .client
        .send(
            matrix_sdk::ruma::api::client::room::get_room_event::v3::Request::new(
                room.room_id().to_owned(),
                id.clone(),
            ),
        )
        .await
        .unwrap();
    raw.event.json().get().to_owned()
}

async fn tools_client(hive: &TestHive, name: &str) -> SocketClient {
    common::hello_socket(hive, name, "tools.sock", WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_never_reach_a_room_or_a_log() {
    let (_keys, key_file) = common::secret_file("canary.key", &format!("{CANARY}\n"));
    let mut hive = TestHive::with_config(
        &[
            (
                "named",
                format!(
                    "display_name = \"Named {CANARY}\"\ndescription = \"keeps {CANARY} safe\"\n{}",
                    echo_bot(&[])
                ),
            ),
            ("hm1nd", echo_bot(&[])),
            (
                "crashy",
                format!(
                    "[brain]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo oops {CANARY} >&2; kill -9 $PPID\"]\n"
                ),
            ),
            (
                "encoder",
                "[brain]\nkind = \"command\"\ncommand = [\"./encoder.py\"]\n".to_owned(),
            ),
        ],
        &format!("[secrets]\nfiles = [{key_file:?}]\n"),
    )
    .await;
    common::write_script(&hive.bots.join("encoder"), "encoder.py", &encoder_py());
    hive.start_core();
    let op = hive.operator().await;
    let named = op.join("agent-named").await;
    let hm1nd = op.join("agent-hm1nd").await;
    let crashy = op.join("agent-crashy").await;
    let encoder = op.join("agent-encoder").await;
    let _approvals = op.join("hive-approvals").await;
    let control = op.join("hive-c0re").await;

    // (a) Display name and description: the room's name and topic and the agent's display
    //     name show a redaction, never the canary.
    op.send(&named, "hi").await;
    op.wait_until(&named, WAIT, "named answers", |m| {
        m.iter().any(|x| x.sender == "@named:localhost")
    })
    .await;
    let user = matrix_sdk::ruma::UserId::parse("@named:localhost").unwrap();
    let shown = [
        (
            "room name",
            state(&op, &named, StateEventType::RoomName, "").await,
        ),
        (
            "room topic",
            state(&op, &named, StateEventType::RoomTopic, "").await,
        ),
        (
            "room member",
            state(&op, &named, StateEventType::RoomMember, user.as_str()).await,
        ),
        (
            "profile",
            serde_json::to_string(
                &op.client
                    .account()
                    .fetch_user_profile_of(&user)
                    .await
                    .unwrap()
                    .get("displayname"),
            )
            .unwrap(),
        ),
    ];
    for (what, text) in &shown {
        assert_clean(what, text);
        assert!(text.contains("[redacted: "), "{what}: {text}");
    }

    // (b) A crash log holding the canary: the manager's container_crash carries no trace of it,
    //     neither in its text nor in its structured `last_lines`.
    op.send(&crashy, "boom").await;
    let msgs = op
        .wait_until(&hm1nd, WAIT, "the crash report", |m| {
            m.iter()
                .any(|x| x.body.starts_with("container_crash: **crashy**"))
        })
        .await;
    let report = msgs
        .iter()
        .find(|x| x.body.starts_with("container_crash: **crashy**"))
        .unwrap();
    let raw = raw_event(&op, &hm1nd, &report.event_id).await;
    let event: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let last_lines = &event["content"]["org.hyperhive.event"]["last_lines"];
    assert!(!last_lines.is_null(), "no last_lines in {raw}");
    assert!(raw.contains("oops"), "the crash log's line is there: {raw}");
    assert_clean("the raw container_crash event", &raw);

    // (c) A request's summary holding the canary: the request is not posted.
    let file = hive.dir.path().join("named.toml");
    std::fs::write(&file, echo_bot(&[])).unwrap();
    let out = hive
        .hive(&[
            "config",
            "propose",
            "named",
            "--file",
            file.to_str().unwrap(),
            "-m",
            &format!("rotate {CANARY} please"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // What the operator approves must be what is applied: a request that shows a secret is not
    // shown redacted, it is not posted; it is cancelled and said (without the secret).
    let msgs = op
        .wait_until(&control, WAIT, "request #1 refused", |m| {
            m.iter()
                .any(|x| x.body.starts_with("🚫 Request #1 ") && x.body.contains("shows a secret"))
        })
        .await;
    let said = msgs
        .iter()
        .find(|x| x.body.starts_with("🚫 Request #1 "))
        .unwrap();
    assert_clean("the refusal", &said.body);
    assert_clean(
        "the refusal's formatted body",
        said.formatted.as_deref().unwrap_or_default(),
    );
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let a = store.approval(1).unwrap().unwrap();
    assert_eq!(a.state, hyperhive::store::ApprovalState::Cancelled, "{a:?}");
    assert!(a.request_event.is_none(), "never posted: {a:?}");
    assert!(
        !op.seen
            .lock()
            .unwrap()
            .iter()
            .any(|x| x.body.starts_with("Request #1: ")),
        "the request was posted"
    );

    // (d) Encoded in a reply: refused, and the agent is told.
    for ask in ["b64", "hex"] {
        op.send(&encoder, ask).await;
        op.wait_until(&encoder, WAIT, ask, |m| {
            m.iter()
                .filter(|x| {
                    x.body
                        .starts_with("⚠️ encoder could not handle this message")
                        && x.body.contains("not posted")
                })
                .count()
                == if ask == "b64" { 1 } else { 2 }
        })
        .await;
    }
    op.send(&encoder, "hello").await;
    op.wait_until(&encoder, WAIT, "clean reply", |m| {
        m.iter().any(|x| x.body == "clean: hello")
    })
    .await;

    // (e) The core logs a tool error naming an argument called after the canary.
    let mut tools = tools_client(&hive, "encoder").await;
    let r = tools
        .call(&Request::CallTool {
            name: "send_message".into(),
            arguments: json!({"to": "operator", "body": "x", CANARY: true}),
        })
        .await
        .unwrap();
    assert!(
        matches!(&r, Response::ToolResult { is_error: true, content } if content.contains("unknown field")),
        "{r:?}"
    );
    drop(tools);
    let deadline = Instant::now() + WAIT;
    while !hive.core_log().contains("tool call failed") {
        assert!(
            Instant::now() < deadline,
            "the failed tool call was not logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_clean("the core's log", &hive.core_log());

    // Nothing any room shows holds the canary, in any form.
    drop(control);
    let seen = op.seen.lock().unwrap().clone();
    assert!(seen.len() > 10, "{seen:#?}");
    for m in &seen {
        for text in [Some(&m.body), m.formatted.as_ref()].into_iter().flatten() {
            assert_clean(&format!("a message in {}", m.room), text);
        }
    }
    assert_eq!(hive.stop_core().code(), Some(0));
    assert_clean("the core's log after it stopped", &hive.core_log());
}

/// The forms the test looks for do find the canary however it is encoded and embedded.
#[test]
fn forms_find_every_encoding() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let found = |text: &str| forms(CANARY).iter().any(|f| text.contains(f.as_str()));
    for prefix in ["", "a", "ab", "abc"] {
        let bytes = format!("{prefix}{CANARY} tail");
        assert!(found(&STANDARD.encode(&bytes)), "{prefix:?}");
        assert!(found(&URL_SAFE_NO_PAD.encode(&bytes)), "{prefix:?}");
        let hex: String = bytes.bytes().map(|b| format!("{b:02X}")).collect();
        assert!(found(&hex), "{prefix:?}");
    }
    assert!(found(&format!("x{CANARY}y")));
    assert!(!found("nothing to see here"));
}
