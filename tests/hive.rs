//! The hive end to end, on a real Synapse with a real matrix-sdk operator.

mod common;

use std::time::Duration;

use common::{Ephemeral, Operator, TestHive, echo_bot};

const WAIT: Duration = Duration::from_secs(30);

fn count_exact(msgs: &[common::Seen], body: &str) -> usize {
    msgs.iter().filter(|m| m.body == body).count()
}

/// How many `brain_unavailable` reports of `agent` the core has handled (its log line).
fn unavailable_handled(hive: &TestHive, agent: &str) -> usize {
    let field = format!("agent={agent}");
    hive.core_log()
        .lines()
        .filter(|l| l.contains("brain unavailable") && l.contains(&field))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_talks_to_agents_and_agents_to_each_other() {
    let mut hive = TestHive::new(&[
        ("echo", echo_bot(&["argus"])),
        ("argus", echo_bot(&[])),
        ("iris", echo_bot(&[])),
        ("dreamer", "[brain]\nkind = \"claude-code\"\n".to_owned()),
    ])
    .await;
    hive.start_core();
    let op: Operator = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let argus = op.join("agent-argus").await;
    let dreamer = op.join("agent-dreamer").await;
    let control = op.join("hive-c0re").await;

    // Operator → agent → reply, through Synapse, the core, the socket and the harness.
    op.send(&echo, "ping").await;
    let msgs = op
        .wait_until(&echo, WAIT, "pong", |m| count_exact(m, "pong") == 1)
        .await;
    let pong = msgs.iter().find(|m| m.body == "pong").unwrap();
    assert_eq!(pong.sender, "@echo:localhost");
    assert_eq!(
        pong.mentions,
        vec![hive.operator.user_id.clone()],
        "the reply mentions who asked"
    );

    // Agent → agent, allowed: posted by echo in argus's inbox, mentioning argus; argus answers.
    op.send(&echo, "relay argus").await;
    op.wait_until(&echo, WAIT, "relayed", |m| count_exact(m, "relayed") == 1)
        .await;
    let msgs = op
        .wait_until(&argus, WAIT, "argus's answer", |m| {
            m.iter()
                .any(|x| x.body == "argus heard: argus: hello from echo")
        })
        .await;
    let relayed = msgs
        .iter()
        .find(|m| m.sender == "@echo:localhost")
        .expect("echo posted in argus's inbox");
    assert_eq!(relayed.body, "argus: hello from echo");
    assert_eq!(relayed.mentions, vec!["@argus:localhost".to_owned()]);
    assert!(
        relayed
            .formatted
            .as_deref()
            .unwrap()
            .starts_with("<a href=\"https://matrix.to/#/@argus:localhost\">")
    );

    // Agent → agent, refused: iris is not in echo's allowed_recipients.
    op.send(&echo, "relay iris").await;
    let msgs = op
        .wait_until(&echo, WAIT, "the refusal", |m| {
            m.iter()
                .any(|x| x.body.starts_with("I could not send that to iris"))
        })
        .await;
    let refusal = msgs
        .iter()
        .find(|x| x.body.starts_with("I could not send that to iris"))
        .unwrap();
    assert!(
        refusal.body.contains("not in its allowed_recipients"),
        "{}",
        refusal.body
    );

    // A brain that cannot run says so in its room, once, and loses the message to nobody.
    op.send(&dreamer, "are you there?").await;
    op.wait_until(&dreamer, WAIT, "the brain notice", |m| {
        m.iter().any(|x| x.body.contains("cannot think right now"))
    })
    .await;

    // `!hive status` in the control room.
    op.send(&control, "!hive status").await;
    let msgs = op
        .wait_until(&control, WAIT, "status table", |m| {
            m.iter().any(|x| x.body.contains("| echo | scripted |"))
        })
        .await;
    assert!(
        msgs.iter()
            .any(|x| x.body.contains("| dreamer | claude-code |"))
    );

    // Restart: the notice is not repeated, rooms are not duplicated, the queued message is kept.
    let rooms_before = hyperhive::store::Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .rooms()
        .unwrap();
    assert_eq!(
        hive.stop_core().code(),
        Some(0),
        "hive c0re exits cleanly on SIGTERM"
    );
    hive.start_core();
    let rooms_after = hyperhive::store::Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .rooms()
        .unwrap();
    assert_eq!(rooms_before, rooms_after, "a restart reuses every room");
    // The fence: the restarted core has handled dreamer's new `brain_unavailable` (its log line
    // comes after the notice, were it posted again), and the echo round trip below starts
    // after that, so the operator's sync that brings its reply brings any repeated notice too.
    let deadline = std::time::Instant::now() + WAIT;
    while unavailable_handled(&hive, "dreamer") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted dreamer never reported its brain again:\n{}",
            hive.core_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    op.send(&echo, "after restart").await;
    op.wait_until(&echo, WAIT, "reply after restart", |m| {
        count_exact(m, "echo heard: after restart") == 1
    })
    .await;
    let notices = op
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.room == dreamer.room_id() && m.body.contains("cannot think"))
        .count();
    assert_eq!(notices, 1, "the brain notice is said once");
    let counts = hyperhive::store::Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .counts("dreamer")
        .unwrap();
    assert_eq!(counts.pending, 1, "dreamer's message waits in its queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_duplicated_transactions_deliver_once() {
    let mut hive = TestHive::new(&[("echo", echo_bot(&[]))]).await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let ev_id = op.send(&echo, "count me").await;
    op.wait_until(&echo, WAIT, "first reply", |m| {
        count_exact(m, "echo heard: count me") == 1
    })
    .await;

    // Replay the very event as Synapse would: the same txn id, then a txn id reused after a
    // Synapse restart (#14556), then the event inside another transaction (#11447).
    let raw = op
        .client
        .send(
            matrix_sdk::ruma::api::client::room::get_room_event::v3::Request::new(
                echo.room_id().to_owned(),
                ev_id.clone(),
            ),
        )
        .await
        .unwrap();
    let mut event: serde_json::Value = raw.event.deserialize_as_unchecked().unwrap();
    event["room_id"] = serde_json::json!(echo.room_id());
    let http = reqwest::Client::new();
    let base = format!("http://{}/_matrix/app/v1/transactions", hive.cfg.listen);
    for txn in ["1", "1", "replay-2", "999999"] {
        let r = http
            .put(format!("{base}/{txn}"))
            .bearer_auth(hive.hs_token())
            .json(&serde_json::json!({ "events": [event.clone(), event.clone()] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "txn {txn}");
    }
    // A reused txn id carrying an event the core has not seen (Synapse restarted its counter):
    // it must go through, not be taken for a re-send.
    let mut fresh = event.clone();
    fresh["event_id"] = serde_json::json!("$fresh-event-under-a-reused-txn-id");
    fresh["content"]["body"] = serde_json::json!("reused txn id, new event");
    let r = http
        .put(format!("{base}/1"))
        .bearer_auth(hive.hs_token())
        .json(&serde_json::json!({ "events": [fresh] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    op.wait_until(&echo, WAIT, "the reply to the new event", |m| {
        count_exact(m, "echo heard: reused txn id, new event") == 1
    })
    .await;
    // A fresh message after the replays proves the queue moved on past them.
    op.send(&echo, "fence").await;
    op.wait_until(&echo, WAIT, "fence reply", |m| {
        count_exact(m, "echo heard: fence") == 1
    })
    .await;
    assert_eq!(
        op.count(&echo, "echo heard: count me"),
        1,
        "the replayed event was delivered once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hs_token_is_refused() {
    let mut hive = TestHive::new(&[("echo", echo_bot(&[]))]).await;
    hive.start_core();
    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/_matrix/app/v1/transactions/forged-1",
        hive.cfg.listen
    );
    let body = serde_json::json!({ "events": [] });
    let none = http.put(&url).json(&body).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = http
        .put(&url)
        .bearer_auth("not-the-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let near = http
        .put(&url)
        .bearer_auth(format!("{}x", hive.hs_token()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(near.status(), 403);
    let user = http
        .get(format!(
            "http://{}/_matrix/app/v1/users/@echo:localhost",
            hive.cfg.listen
        ))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 403);
    let ok = http
        .put(&url)
        .bearer_auth(hive.hs_token())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let unknown = http
        .get(format!(
            "http://{}/_matrix/app/v1/users/@ghost:localhost",
            hive.cfg.listen
        ))
        .bearer_auth(hive.hs_token())
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        404,
        "users outside the bots are never created"
    );
}

/// A SIGKILL at a random moment of a burst: whatever was in flight, nothing is lost or doubled,
/// and the order holds. Where the kill lands is chance (it may fall between two turns); the two
/// exact crash points are `a_core_dead_mid_turn_redelivers_and_posts_once`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flight_loses_and_doubles_nothing() {
    let mut hive = TestHive::new(&[("echo", echo_bot(&[]))]).await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    const N: usize = 40;
    let sender = {
        let room = echo.clone();
        tokio::spawn(async move {
            for i in 0..N {
                room.send(
                    matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain(
                        format!("m{i}"),
                    ),
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Kill the core while messages are still arriving and being answered.
    op.wait_until(&echo, WAIT, "some replies", |m| {
        m.iter()
            .filter(|x| x.body.starts_with("echo heard: m"))
            .count()
            >= 5
    })
    .await;
    hive.kill_core();
    sender.await.unwrap();
    hive.start_core();
    op.wait_until(&echo, Duration::from_secs(60), "every reply", |m| {
        (0..N).all(|i| count_exact(m, &format!("echo heard: m{i}")) >= 1)
    })
    .await;
    // Give a duplicate every chance to show up before counting.
    op.send(&echo, "fence").await;
    let msgs2 = op
        .wait_until(&echo, WAIT, "fence", |m| {
            count_exact(m, "echo heard: fence") == 1
        })
        .await;
    for i in 0..N {
        assert_eq!(
            count_exact(&msgs2, &format!("echo heard: m{i}")),
            1,
            "m{i} answered exactly once"
        );
    }
    // And in order: the replies come in the order the messages were sent.
    let order: Vec<usize> = msgs2
        .iter()
        .filter_map(|m| m.body.strip_prefix("echo heard: m")?.parse().ok())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "one turn at a time, in order");
}

/// Writes each delivery it gets (`<body> <attempt>`) to `attempts.log` in its state dir, and
/// answers with the attempt.
const ATTEMPTS_PY: &str = r#"#!/usr/bin/env python3
import json, sys
m = json.load(sys.stdin)["message"]
body = m["body"].strip()
with open("attempts.log", "a") as f:
    f.write("%s %d\n" % (body, m["attempt"]))
print(json.dumps({"reply": "heard: %s (attempt %d)" % (body, m["attempt"])}))
"#;

/// hive-c0re dies at each exact point of a turn a crash can land on (failpoints, debug builds):
/// with the message handed to the harness and its brain running, nothing posted
/// (`c0re-before-reply`); and with the reply posted, the ack not yet recorded
/// (`c0re-before-ack`). Each time the failpoint's own line is in the core's log (101 alone
/// would also be a panic), the restarted core hands the message out again, the brain sees
/// attempt 2, and exactly one reply is posted for it (counted after a later message's reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_dead_mid_turn_redelivers_and_posts_once() {
    let bot = "[brain]\nkind = \"command\"\ncommand = [\"./attempts.py\"]\n".to_owned();
    let mut hive = TestHive::new(&[("att", bot)]).await;
    common::write_script(&hive.bots.join("att"), "attempts.py", ATTEMPTS_PY);
    let attempts = hive.data.join("agents/att/state/attempts.log");
    // The failpoint, the message, its one reply.
    let cases = [
        // Nothing was posted by attempt 1: the reply is attempt 2's.
        ("c0re-before-reply", "first", "heard: first (attempt 2)"),
        // Attempt 1 posted it: attempt 2's reply is answered from the record, not posted again.
        ("c0re-before-ack", "second", "heard: second (attempt 1)"),
    ];
    for (failpoint, body, reply) in cases {
        let log_from = hive.core_log().len();
        hive.start_core_env(&[("HYPERHIVE_FAILPOINT", failpoint)]);
        let op = hive.operator().await;
        let room = op.join("agent-att").await;
        op.send(&room, body).await;
        let status = hive.wait_core_exit(WAIT);
        let log = hive.core_log()[log_from..].to_owned();
        assert!(
            log.contains(&format!("failpoint {failpoint}: exiting")),
            "the failpoint {failpoint} did not fire ({status}):\n{log}"
        );
        assert!(!log.contains("panicked at"), "{log}");
        hive.start_core();
        op.wait_until(&room, WAIT, reply, |m| m.iter().any(|x| x.body == reply))
            .await;
        let fence = format!("fence after {failpoint}");
        op.send(&room, &fence).await;
        let fenced = format!("heard: {fence} (attempt 1)");
        let msgs = op
            .wait_until(&room, WAIT, &fenced, |m| m.iter().any(|x| x.body == fenced))
            .await;
        let replies: Vec<&str> = msgs
            .iter()
            .filter(|x| {
                x.sender == "@att:localhost" && x.body.starts_with(&format!("heard: {body} "))
            })
            .map(|x| x.body.as_str())
            .collect();
        assert_eq!(replies, [reply], "{failpoint}: one reply for {body:?}");
        let seen = std::fs::read_to_string(&attempts).unwrap();
        let seen: Vec<&str> = seen
            .lines()
            .filter(|l| l.starts_with(&format!("{body} ")))
            .collect();
        let want = [format!("{body} 1"), format!("{body} 2")];
        assert_eq!(seen, want, "{failpoint}: what the brain was handed");
        assert_eq!(hive.stop_core().code(), Some(0));
    }
}

/// The `command` brain end to end, and the two ways a turn can fail: the brain reports failure
/// (dead-lettered at once, said in the room), or the harness dies mid-turn (redelivered, then
/// dead-lettered after `delivery.max_attempts`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_brain_and_dead_letters() {
    let command_bot = |argv: &str| {
        format!("allowed_recipients = [\"argus\"]\n[brain]\nkind = \"command\"\ncommand = {argv}\n")
    };
    let mut hive = TestHive::new(&[
        ("py", command_bot(r#"["./bot.py"]"#)),
        ("argus", echo_bot(&[])),
        ("broken", command_bot(r#"["sh", "-c", "exit 3"]"#)),
        // Kills its own harness (the shell's parent) in the middle of every turn.
        ("crashy", command_bot(r#"["sh", "-c", "kill -9 $PPID"]"#)),
        // A turn long enough to show as typing.
        (
            "slow",
            command_bot(r#"["sh", "-c", "sleep 1.5; echo '{\"reply\": \"done, slowly\"}'"]"#),
        ),
    ])
    .await;
    let script = hive.bots.join("py/bot.py");
    std::fs::write(
        &script,
        r#"#!/usr/bin/env python3
import json, os, sys
req = json.load(sys.stdin)
m = req["message"]
out = {"reply": "py got *%s* (attempt %d, agent %s, env %s)" % (
    m["body"], m["attempt"], req["agent"], os.environ.get("HYPERHIVE_AGENT"))}
if m["body"].startswith("forward "):
    out["send"] = [{"to": "argus", "body": m["body"][8:]}, {"to": "broken", "body": "nope"}]
print(json.dumps(out))
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hive.start_core();
    let op = hive.operator().await;
    let py = op.join("agent-py").await;
    let argus = op.join("agent-argus").await;
    let broken = op.join("agent-broken").await;
    let crashy = op.join("agent-crashy").await;
    let control = op.join("hive-c0re").await;
    let slow = op.join("agent-slow").await;

    // A long turn shows the agent typing, then not, then its read receipt on the message.
    let asked = op.send(&slow, "take your time").await;
    op.wait_until(&slow, WAIT, "the slow reply", |m| {
        m.iter().any(|x| x.body == "done, slowly")
    })
    .await;
    let me = "@slow:localhost".to_owned();
    let room = slow.room_id().to_owned();
    op.wait_ephemeral(WAIT, "typing on, off, then the receipt", |e| {
        let on = e
            .iter()
            .position(|x| matches!(x, Ephemeral::Typing(r, u) if *r == room && u.contains(&me)));
        let off = on.and_then(|i| {
            e[i..].iter().position(
                |x| matches!(x, Ephemeral::Typing(r, u) if *r == room && !u.contains(&me)),
            )
        });
        off.is_some() && e.contains(&Ephemeral::Read(room.clone(), me.clone(), asked.clone()))
    })
    .await;

    op.send(&py, "forward the build is green").await;
    let msgs = op
        .wait_until(&py, WAIT, "py's reply", |m| {
            m.iter().any(|x| x.body.starts_with("py got *forward"))
        })
        .await;
    let reply = msgs
        .iter()
        .find(|x| x.body.starts_with("py got *forward"))
        .unwrap();
    assert_eq!(
        reply.body,
        "py got *forward the build is green* (attempt 1, agent py, env py)"
    );
    assert!(
        reply
            .formatted
            .as_deref()
            .unwrap()
            .contains("<em>forward the build is green</em>"),
        "Markdown is rendered: {:?}",
        reply.formatted
    );
    assert!(
        msgs.iter()
            .any(|x| x.body.starts_with("I could not send that to broken")
                && x.body.contains("not in its allowed_recipients")),
        "a refused send is reported in the room: {:?}",
        msgs.iter().map(|m| &m.body).collect::<Vec<_>>()
    );
    op.wait_until(&argus, WAIT, "the forwarded message", |m| {
        m.iter()
            .any(|x| x.sender == "@py:localhost" && x.body == "argus: the build is green")
    })
    .await;

    // A brain that fails: dead-lettered on its first delivery, said in its room and in #hive-c0re.
    op.send(&broken, "hello?").await;
    op.wait_until(&broken, WAIT, "the failure", |m| {
        m.iter().any(|x| {
            x.body
                .starts_with("⚠️ broken could not handle this message")
                && x.body.contains("exit status: 3")
        })
    })
    .await;
    op.wait_until(&control, WAIT, "broken's dead letter", |m| {
        m.iter().any(|x| {
            x.body.contains("dead letter")
                && x.body.contains("**broken**")
                && x.body.contains("after 1 deliveries")
        })
    })
    .await;

    // A harness that dies mid-turn gets the message again, max_attempts (3) times, then the
    // message is dead-lettered and the operator told.
    op.send(&crashy, "boom").await;
    op.wait_until(
        &control,
        Duration::from_secs(60),
        "crashy's dead letter",
        |m| {
            m.iter().any(|x| {
                x.body.contains("dead letter")
                    && x.body.contains("**crashy**")
                    && x.body.contains("after 3 deliveries")
            })
        },
    )
    .await;
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let c = store.counts("crashy").unwrap();
    assert_eq!((c.dead, c.pending, c.inflight), (1, 0, 0));
    let c = store.counts("broken").unwrap();
    assert_eq!((c.dead, c.pending, c.inflight), (1, 0, 0));
    // And the agent still answers afterwards (its harness was restarted after each crash).
    op.send(&py, "still here").await;
    op.wait_until(&py, WAIT, "py after the crashes", |m| {
        m.iter().any(|x| x.body.starts_with("py got *still here*"))
    })
    .await;
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// The homeserver crashes, with messages it accepted while hive-c0re was down still queued for
/// the appservice, and comes back: everything reaches the agent exactly once. Then it crashes
/// again under a running hive-c0re, which carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn homeserver_crash_loses_and_doubles_nothing() {
    let mut hive = TestHive::new(&[("echo", echo_bot(&[]))]).await;
    hive.start_core();
    {
        let op = hive.operator().await;
        let echo = op.join("agent-echo").await;
        op.send(&echo, "before").await;
        op.wait_until(&echo, WAIT, "first reply", |m| {
            count_exact(m, "echo heard: before") == 1
        })
        .await;
        // hive-c0re is down: Synapse accepts these and queues them for the appservice.
        hive.kill_core();
        for i in 0..5 {
            op.send(&echo, &format!("q{i}")).await;
        }
    }
    hive.crash_and_restart_synapse().await;
    hive.start_core();

    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    op.wait_until(
        &echo,
        Duration::from_secs(60),
        "every queued message answered",
        |m| (0..5).all(|i| count_exact(m, &format!("echo heard: q{i}")) >= 1),
    )
    .await;
    // Whatever Synapse still held for the appservice is released by new traffic and arrives
    // before this fence (one transaction in flight, in order).
    op.send(&echo, "fence").await;
    op.wait_until(&echo, WAIT, "fence", |m| {
        count_exact(m, "echo heard: fence") == 1
    })
    .await;

    // A crash under a running hive-c0re: it rides it out and keeps delivering.
    hive.crash_and_restart_synapse().await;
    let op2 = hive.operator().await;
    let echo2 = op2.join("agent-echo").await;
    op2.send(&echo2, "after").await;
    let msgs = op2
        .wait_until(
            &echo2,
            Duration::from_secs(60),
            "reply after the second crash",
            |m| count_exact(m, "echo heard: after") == 1,
        )
        .await;
    for body in ["before", "q0", "q1", "q2", "q3", "q4", "fence", "after"] {
        assert_eq!(
            count_exact(&msgs, &format!("echo heard: {body}")),
            1,
            "exactly one answer to {body}"
        );
    }
    assert_eq!(hive.stop_core().code(), Some(0));
}
