//! The hive's courtesy traffic on a real Synapse, seen by the operator's matrix-sdk client
//! (the test is echo's harness, on `c0re.sock`, with the runtime external):
//! - after a burst of short turns, each ended as the next message arrives, echo's read receipt
//!   arrives on the last message, and every receipt of echo's is for one of the burst's messages,
//!   in the burst's order (how many the burst coalesces into depends on the machine's speed, so
//!   the test does not count them);
//! - a long turn still shows echo typing while it runs, then not, then read;
//! - a receipt still pending when the core stops is sent on its way out;
//! - with `[console] typing = false` and `read_receipts = false`, a long turn sends neither.

mod common;

use std::time::{Duration, Instant};

use common::{Ephemeral, TestHive, echo_bot};
use hyperhive::wire::client::SocketClient;
use hyperhive::wire::protocol::{Message, Request, Response};

const WAIT: Duration = Duration::from_secs(45);

async fn external_hive(extra: &str) -> TestHive {
    let mut hive = TestHive::with_config(
        &[("echo", echo_bot(&[]))],
        &format!("[runtime]\nkind = \"external\"\n{extra}"),
    )
    .await;
    hive.start_core();
    hive
}

/// echo's harness connection (retried until the core listens).
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

/// echo's receipts in `room` among `e`, in order.
fn receipts(e: &[Ephemeral], room: &matrix_sdk::ruma::RoomId) -> Vec<String> {
    e.iter()
        .filter_map(|x| match x {
            Ephemeral::Read(r, u, ev) if r == room && u == "@echo:localhost" => {
                Some(ev.to_string())
            }
            _ => None,
        })
        .collect()
}

fn typing(x: &Ephemeral, room: &matrix_sdk::ruma::RoomId) -> Option<bool> {
    match x {
        Ephemeral::Typing(r, u) if r == room => Some(u.iter().any(|u| u == "@echo:localhost")),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_coalesce_after_a_burst_and_typing_shows_for_a_long_turn() {
    let mut hive = external_hive("").await;
    let op = hive.operator().await;
    let room = op.join("agent-echo").await;
    let rid = room.room_id().to_owned();
    let mut h = harness(&hive).await;

    // A burst: each message handled at once, the next one sent as the turn ends.
    let before = op.ephemeral.lock().unwrap().len();
    let mut burst = Vec::new();
    for i in 0..5 {
        let ev = op.send(&room, &format!("burst {i}")).await;
        let m = next(&mut h).await;
        assert_eq!(m.event_id, ev.as_str());
        ack(&mut h, m.id).await;
        burst.push(ev.to_string());
    }
    let last = burst.last().expect("five sent").clone();
    let seen = op
        .wait_ephemeral(WAIT, "echo's receipt on the burst's last message", |e| {
            receipts(&e[before..], &rid).contains(&last)
        })
        .await;
    // No timing here: how many receipts the burst coalesces into depends on how fast the
    // machine runs its round trips; that each is one of the burst's, and none goes back, does not.
    let at: Vec<usize> = receipts(&seen[before..], &rid)
        .iter()
        .map(|r| {
            burst
                .iter()
                .position(|b| b == r)
                .unwrap_or_else(|| panic!("a receipt for {r}, not one of the burst's {burst:?}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] <= w[1]),
        "echo's receipts go back in the burst: {at:?} of {burst:?}"
    );

    // A long turn: typing on while it runs (the test still holds the turn), then off, then read.
    let before = op.ephemeral.lock().unwrap().len();
    let slow = op.send(&room, "take your time").await;
    let m = next(&mut h).await;
    op.wait_ephemeral(WAIT, "echo typing mid-turn", |e| {
        e[before..].iter().any(|x| typing(x, &rid) == Some(true))
    })
    .await;
    ack(&mut h, m.id).await;
    op.wait_ephemeral(WAIT, "typing off, then the receipt", |e| {
        let e = &e[before..];
        let on = e.iter().position(|x| typing(x, &rid) == Some(true));
        let off = on.and_then(|i| e[i..].iter().position(|x| typing(x, &rid) == Some(false)));
        off.is_some() && receipts(e, &rid).contains(&slow.to_string())
    })
    .await;

    // A receipt still pending when the core stops goes out on its way.
    let before = op.ephemeral.lock().unwrap().len();
    let bye = op.send(&room, "last words").await;
    let m = next(&mut h).await;
    ack(&mut h, m.id).await;
    let status = hive.stop_core();
    assert!(status.success(), "the core stopped cleanly: {status}");
    op.wait_ephemeral(WAIT, "the pending receipt, sent as the core stopped", |e| {
        receipts(&e[before..], &rid).contains(&bye.to_string())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn switched_off_a_long_turn_sends_no_typing_and_no_receipt() {
    let mut hive = external_hive("[console]\ntyping = false\nread_receipts = false\n").await;
    let op = hive.operator().await;
    let room = op.join("agent-echo").await;
    let rid = room.room_id().to_owned();
    let mut h = harness(&hive).await;
    let before = op.ephemeral.lock().unwrap().len();
    op.send(&room, "take your time").await;
    let m = next(&mut h).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ack(&mut h, m.id).await;
    // Time for anything the turn could have caused to reach the operator (the receipt's quiet
    // second, the flush as the core stops).
    let status = hive.stop_core();
    assert!(status.success(), "the core stopped cleanly: {status}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = op.ephemeral.lock().unwrap().clone();
    assert!(
        !seen[before..].iter().any(|x| typing(x, &rid) == Some(true)),
        "no typing notice: {seen:#?}"
    );
    assert!(
        receipts(&seen[before..], &rid).is_empty(),
        "no receipt: {seen:#?}"
    );
}
