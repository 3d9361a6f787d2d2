//! `recv` on a real Synapse: while a turn of echo's is in flight (the test is its harness, on
//! `c0re.sock`, with the runtime external), the operator sends more; `recv` on `tools.sock` (as
//! `hive mcp` calls it for Claude Code) pulls them into the turn; after the ack they are never
//! delivered again; a harness that dies mid-turn and a core killed mid-turn both give the pulled
//! messages back instead of losing them. Out-of-range arguments and calls outside a turn are
//! refused; a core event comes with its data, told apart from a person; every call is in the
//! audit. A `tools.sock` client that hangs up during a recv's wait ends it at once and pulls
//! nothing: what arrives afterwards is not lost to the turn's ack but comes as a turn of its own.

mod common;

use common::call_tool as tool;

use std::time::{Duration, Instant};

use common::{Ephemeral, TestHive, echo_bot};
use hyperhive::store::{QueueCounts, Store};
use hyperhive::wire::client::SocketClient;
use hyperhive::wire::protocol::{Message, Request, Response};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(45);
const PATTERN: &str = "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn external_hive() -> TestHive {
    let mut hive = TestHive::with_config(
        &[("echo", echo_bot(&[]))],
        "[runtime]\nkind = \"external\"\n",
    )
    .await;
    hive.start_core();
    hive
}

/// echo's harness connection: retried while the core still holds the last one (it notices a
/// closed connection a moment later) or is not listening yet.
async fn harness(hive: &TestHive) -> SocketClient {
    let path = hive.data.join("agents/echo/sock/c0re.sock");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut c) = SocketClient::connect(&path).await {
            let hello = Request::Hello {
                agent: "echo".into(),
                pid: 1,
            };
            if let Ok(Response::Welcome { .. }) = c.call(&hello).await {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no harness connection for echo\n{}",
            common::logs_tail(hive.dir.path())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn tools(hive: &TestHive) -> SocketClient {
    common::hello_socket(hive, "echo", "tools.sock", WAIT).await
}

/// The next turn's message.
async fn next(c: &mut SocketClient) -> Message {
    match tokio::time::timeout(WAIT, c.call(&Request::Next {}))
        .await
        .expect("a turn within the wait")
        .unwrap()
    {
        Response::Message(m) => m,
        other => panic!("unexpected {other:?}"),
    }
}

async fn ack(c: &mut SocketClient, id: i64) {
    assert_eq!(c.call(&Request::Ack { id }).await.unwrap(), Response::Done);
}

/// `recv`: the messages pulled and how many wait.
async fn recv(c: &mut SocketClient, args: Value) -> (Vec<Value>, u64) {
    let (text, err) = tool(c, "recv", args).await;
    assert!(!err, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    (
        v["messages"].as_array().unwrap().clone(),
        v["waiting"].as_u64().unwrap(),
    )
}

fn bodies(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().map(|m| m["body"].as_str().unwrap()).collect()
}

fn counts(hive: &TestHive) -> QueueCounts {
    Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .counts("echo")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_pulls_into_the_turn_exactly_once_across_crashes() {
    let mut hive = external_hive().await;
    let op = hive.operator().await;
    let room = op.join("agent-echo").await;
    let me = hive.operator.user_id.clone();
    let mut h = harness(&hive).await;
    let mut t = tools(&hive).await;

    // A turn is in flight; recv waits for what the operator sends meanwhile.
    op.send(&room, "one").await;
    let one = next(&mut h).await;
    assert_eq!((one.body.as_str(), one.attempt), ("one", 1));
    let pulling = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(recv(&mut t, json!({"wait_secs": 40})).await.0);
        }
        (t, got)
    });
    let two = op.send(&room, "two").await;
    let three = op.send(&room, "three").await;
    let (mut t, got) = tokio::time::timeout(WAIT, pulling).await.unwrap().unwrap();
    assert_eq!(bodies(&got), ["two", "three"]);
    assert_eq!(got[0]["event_id"], two.as_str());
    assert_eq!(got[1]["event_id"], three.as_str());
    for m in &got {
        assert_eq!(m["sender"], me.as_str());
        assert_eq!(m["attempt"], 1);
        assert!(m.get("event").is_none(), "a person's message: {m}");
        assert_eq!(m["room_id"], room.room_id().as_str());
    }
    assert_eq!(got[0]["text"], format!("{me} wrote:\ntwo"));
    assert_eq!(
        counts(&hive).inflight,
        3,
        "the turn's message and its two pulled"
    );
    // What passes the secret filter on the way.
    let key = op.send(&room, &format!("the key is {PATTERN}")).await;
    let (got, waiting) = recv(&mut t, json!({"wait_secs": 40, "max": 1})).await;
    assert_eq!(waiting, 0);
    let body = got[0]["body"].as_str().unwrap();
    assert!(
        body.starts_with("the key is [redacted: ") && !body.contains(PATTERN),
        "{body}"
    );
    assert!(!got[0]["text"].as_str().unwrap().contains(PATTERN));
    ack(&mut h, one.id).await;
    assert_eq!(counts(&hive).done, 4, "the turn and its three pulled");
    // echo read up to the newest message it pulled (a receipt covers what came before).
    let (rid, echo) = (room.room_id().to_owned(), "@echo:localhost".to_owned());
    op.wait_ephemeral(WAIT, "echo's receipt on the last message it pulled", |e| {
        e.contains(&Ephemeral::Read(rid.clone(), echo.clone(), key.clone()))
    })
    .await;

    // Never delivered again: the next turn is the next new message, and it has nothing to pull.
    op.send(&room, "four").await;
    let four = next(&mut h).await;
    assert_eq!((four.body.as_str(), four.attempt), ("four", 1));
    assert_eq!(recv(&mut t, json!({})).await, (vec![], 0));
    ack(&mut h, four.id).await;

    // The harness dies mid-turn after a pull: both come back, the turn's message first, and the
    // re-run pulls the same message again (its second delivery).
    op.send(&room, "five").await;
    let five = next(&mut h).await;
    op.send(&room, "six").await;
    let (got, _) = recv(&mut t, json!({"wait_secs": 40})).await;
    assert_eq!(bodies(&got), ["six"]);
    drop(h);
    let mut h = harness(&hive).await;
    let again = next(&mut h).await;
    assert_eq!((again.id, again.attempt), (five.id, 2));
    let (got, _) = recv(&mut t, json!({})).await;
    assert_eq!(bodies(&got), ["six"]);
    assert_eq!(got[0]["attempt"], 2);
    ack(&mut h, five.id).await;
    op.send(&room, "seven").await;
    let seven = next(&mut h).await;
    assert_eq!(seven.body, "seven", "six was done with five");
    ack(&mut h, seven.id).await;

    // The core is killed mid-turn after a pull: at its start both are pending again; this time
    // the pulled message comes as a turn of its own, not lost.
    op.send(&room, "eight").await;
    let eight = next(&mut h).await;
    op.send(&room, "nine").await;
    let (got, _) = recv(&mut t, json!({"wait_secs": 40})).await;
    assert_eq!(bodies(&got), ["nine"]);
    drop((h, t));
    hive.kill_core();
    hive.start_core();
    let mut h = harness(&hive).await;
    let again = next(&mut h).await;
    assert_eq!((again.id, again.attempt), (eight.id, 2));
    ack(&mut h, eight.id).await;
    let nine = next(&mut h).await;
    assert_eq!((nine.body.as_str(), nine.attempt), ("nine", 2));
    ack(&mut h, nine.id).await;
    assert_eq!(
        counts(&hive),
        QueueCounts {
            pending: 0,
            inflight: 0,
            done: 10,
            dead: 0
        },
        "every message done once"
    );

    // The audit has the pulls, with the event ids.
    let audit = Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .audit_log(1000)
        .unwrap();
    let pulled: Vec<&str> = audit
        .iter()
        .filter(|e| e.actor == "echo" && e.action == "recv" && e.outcome == "pulled")
        .filter_map(|e| e.detail.as_deref())
        .flat_map(|d| d.split(' '))
        .collect();
    for ev in [&two, &three] {
        assert!(pulled.contains(&ev.as_str()), "{ev} in {pulled:?}");
    }
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "echo" && e.action == "recv" && e.outcome == "nothing"),
        "an empty pull is audited too"
    );
    drop(h);
    assert_eq!(hive.stop_core().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_is_bounded_only_within_a_turn_and_tells_core_events_apart() {
    let hive = external_hive().await;
    let op = hive.operator().await;
    let room = op.join("agent-echo").await;
    let mut h = harness(&hive).await;
    let mut t = tools(&hive).await;

    // Outside a turn there is nothing to pull into: refused, and said why.
    let (text, err) = tool(&mut t, "recv", json!({})).await;
    assert!(
        err && text.contains("recv pulls messages into a running turn, and echo has none now"),
        "{text}"
    );
    op.send(&room, "one").await;
    let one = next(&mut h).await;
    op.send(&room, "two").await;
    for (args, want) in [
        (json!({"max": 33}), "max must be 1 to 32, not 33"),
        (json!({"max": 0}), "max must be 1 to 32, not 0"),
        (
            json!({"wait_secs": 181}),
            "wait_secs must be 0 to 180, not 181",
        ),
        (json!({"wait_secs": -1}), "bad arguments for recv"),
        (json!({"all": true}), "bad arguments for recv"),
    ] {
        let (text, err) = tool(&mut t, "recv", args.clone()).await;
        assert!(err && text.contains(want), "{args}: {text}");
    }
    // Nothing was taken by the refusals: two is still there, for a call over c0re.sock too.
    let (got, waiting) = recv(&mut h, json!({"wait_secs": 40, "max": 32})).await;
    assert_eq!((bodies(&got), waiting), (vec!["two"], 0));
    assert!(got[0].get("event").is_none());
    // A core event is pulled with its data, and told apart from a person's words.
    let (text, err) = tool(
        &mut t,
        "remind",
        json!({"in_secs": 1, "text": "look again"}),
    )
    .await;
    assert!(!err, "{text}");
    let (got, _) = recv(&mut t, json!({"wait_secs": 40})).await;
    assert_eq!(bodies(&got), ["reminder: look again"]);
    assert_eq!(got[0]["event"]["kind"], "reminder");
    assert_eq!(got[0]["event"]["text"], "look again");
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("hive-c0re (the hive itself, not a person) reports a `reminder` event:"),
        "{text}"
    );
    ack(&mut h, one.id).await;
    let (text, err) = tool(&mut t, "recv", json!({})).await;
    assert!(
        err && text.contains("has none now"),
        "after the ack: {text}"
    );

    let audit = Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .audit_log(1000)
        .unwrap();
    let refused = |why: &str| {
        audit.iter().any(|e| {
            e.actor == "echo"
                && e.action == "recv"
                && e.outcome == "refused"
                && e.detail.as_deref().is_some_and(|d| d.contains(why))
        })
    };
    assert!(refused("not 33") && refused("not 181") && refused("has none now"));
}

/// The audit outcomes of echo's `recv` calls, oldest first.
fn recv_outcomes(hive: &TestHive) -> Vec<String> {
    let mut audit = Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .audit_log(1000)
        .unwrap();
    audit.retain(|e| e.actor == "echo" && e.action == "recv");
    audit.sort_by_key(|e| e.ts_us);
    audit.into_iter().map(|e| e.outcome).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recv_whose_caller_hung_up_loses_nothing() {
    let mut hive = external_hive().await;
    let op = hive.operator().await;
    let room = op.join("agent-echo").await;
    let mut h = harness(&hive).await;

    op.send(&room, "one").await;
    let one = next(&mut h).await;
    // `hive mcp` calls recv with a long wait, then dies (its connection drops mid-call).
    let mut t = tools(&hive).await;
    let waiting =
        tokio::spawn(async move { tool(&mut t, "recv", json!({"wait_secs": 170})).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the recv waits for a message");
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    // The core notices at once (not when the wait would have ended): the call ends, audited.
    audited(&hive, "hung_up").await;
    // What the operator sends now is not pulled by the dead call: it waits in the queue.
    let two = op.send(&room, "two").await;
    let deadline = Instant::now() + WAIT;
    while counts(&hive).pending == 0 {
        assert!(Instant::now() < deadline, "two never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (counts(&hive).pending, counts(&hive).inflight),
        (1, 1),
        "two pending, only the turn in flight"
    );
    // The harness acks the turn; two is delivered after it, a turn of its own, first delivery.
    ack(&mut h, one.id).await;
    let again = next(&mut h).await;
    assert_eq!(
        (again.body.as_str(), again.event_id.as_str(), again.attempt),
        ("two", two.as_str(), 1)
    );
    ack(&mut h, again.id).await;
    assert_eq!(
        counts(&hive),
        QueueCounts {
            pending: 0,
            inflight: 0,
            done: 2,
            dead: 0
        }
    );
    assert_eq!(
        recv_outcomes(&hive),
        ["hung_up"],
        "the dead call pulled nothing"
    );
    drop(h);
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// `hive mcp` for echo, as Claude Code runs it: JSON-RPC lines in, answers out (read on a
/// thread of their own, handed over on a channel).
struct Mcp {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    answers: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Mcp {
    fn start(hive: &TestHive) -> Mcp {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let socket = hive.data.join("agents/echo/sock/tools.sock");
        let mut child = Command::new(common::HIVE)
            .args(["mcp", "--name", "echo", "--socket"])
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line).unwrap();
                if v.get("id").is_some() && tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut mcp = Mcp {
            child,
            stdin,
            answers,
        };
        mcp.send(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        );
        mcp.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        mcp
    }

    fn send(&mut self, v: Value) {
        use std::io::Write;
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The answer to request `id` (answers to others before it are skipped).
    async fn answer(&mut self, id: u64) -> Value {
        loop {
            let v = tokio::time::timeout(WAIT, self.answers.recv())
                .await
                .expect("an answer within the wait")
                .expect("hive mcp is running");
            if v["id"] == id {
                return v;
            }
        }
    }
}

/// Waits until echo's recv calls have been audited with `outcome`.
async fn audited(hive: &TestHive, outcome: &str) {
    let deadline = Instant::now() + WAIT;
    while !recv_outcomes(hive).iter().any(|o| o == outcome) {
        assert!(
            Instant::now() < deadline,
            "no recv {outcome}: {:?}\n{}",
            recv_outcomes(hive),
            common::logs_tail(hive.dir.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recv_the_mcp_client_cancels_loses_nothing() {
    let mut hive = external_hive().await;
    let op = hive.operator().await;
    let room = op.join("agent-echo").await;
    let mut h = harness(&hive).await;
    let mut mcp = Mcp::start(&hive);
    assert_eq!(mcp.answer(0).await["result"]["serverInfo"]["name"], "hive");

    op.send(&room, "one").await;
    let one = next(&mut h).await;
    // Claude Code calls recv with a long wait, then cancels the call (its user pressed Esc).
    mcp.send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "recv", "arguments": {"wait_secs": 170}}}),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    mcp.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 1, "reason": "interrupted"}}),
    );
    // hive mcp hangs up that call's connection; the core ends the wait at once.
    audited(&hive, "hung_up").await;
    let two = op.send(&room, "two").await;
    let deadline = Instant::now() + WAIT;
    while counts(&hive).pending == 0 {
        assert!(Instant::now() < deadline, "two never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ack(&mut h, one.id).await;
    let again = next(&mut h).await;
    assert_eq!(
        (again.body.as_str(), again.event_id.as_str(), again.attempt),
        ("two", two.as_str(), 1),
        "two comes as a turn of its own"
    );
    // The next call connects again, and pulls into the turn running now.
    let three = op.send(&room, "three").await;
    mcp.send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "recv", "arguments": {"wait_secs": 40}}}),
    );
    let answer = mcp.answer(2).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    let got: Value = serde_json::from_str(text).unwrap();
    assert_eq!(got["messages"][0]["event_id"], three.as_str(), "{got}");
    ack(&mut h, again.id).await;
    assert_eq!(
        counts(&hive),
        QueueCounts {
            pending: 0,
            inflight: 0,
            done: 3,
            dead: 0
        }
    );
    assert_eq!(recv_outcomes(&hive), ["hung_up", "pulled"]);
    drop(mcp.stdin);
    mcp.child.wait().unwrap();
    drop(h);
    assert_eq!(hive.stop_core().code(), Some(0));
}
