//! Schedules and notifications on a real Synapse (docs/operator.md): a schedule firing into an
//! agent's inbox and the agent answering it, one missed fire replayed after the core was down
//! across several fire times (not a burst), `!hive schedules` and `!hive fire` (audited), a
//! schedule changed by an approved config, the operators mentioned on a request and a
//! question (Synapse's own push rules highlight them), a `!hive fire` redelivered after a crash
//! firing once, and a schedule whose turns outlast its interval fired only once the last fire
//! was handled.
//!
//! Intervals of seconds are allowed only under the `short-schedules` failpoint (debug builds).

mod common;

use std::time::{Duration, Instant};

use common::{TestHive, react};
use matrix_sdk::ruma::api::client::push::get_notifications;

const WAIT: Duration = Duration::from_secs(45);
/// The test schedule's interval, µs (`every = "8s"`).
const TICK_US: i64 = 8_000_000;
const FAILPOINT: (&str, &str) = ("HYPERHIVE_FAILPOINT", "short-schedules");

/// Answers each schedule's fire with its name and prompt (from the event's data), and asks the
/// operator a question when told `ask`.
const CLOCK_PY: &str = r#"#!/usr/bin/env python3
import json, sys
m = json.load(sys.stdin)["message"]
ev = m.get("event") or {}
if ev.get("kind") == "schedule":
    print(json.dumps({"reply": "tock: " + ev["schedule"] + ": " + ev["prompt"]}))
elif m["body"].strip() == "tell":
    print(json.dumps({"reply": "told", "send": [{"to": "operator", "body": "hello operator"}]}))
elif m["body"].strip() == "ask":
    print(json.dumps({"ask_operator": [
        {"question": "Ship it?", "options": ["yes", "no"], "ttl_secs": 600}]}))
else:
    print(json.dumps({}))
"#;

fn clock_toml(schedules: &str) -> String {
    format!("[brain]\nkind = \"command\"\ncommand = [\"./clock.py\"]\n{schedules}")
}

const TICK_AND_STANDUP: &str = "[[schedules]]\nname = \"tick\"\nevery = \"8s\"\nprompt = \"what time is it?\"\n\
     [[schedules]]\nname = \"standup\"\ncron = \"0 9 * * 1-5\"\nprompt = \"post the standup\"\n";

/// `(fire_us, created_us)` of every post the core owed for `schedule` of `clock`, by fire time
/// (read from the store while the core is stopped).
fn fires(hive: &TestHive, schedule: &str) -> Vec<(i64, i64)> {
    let db = rusqlite::Connection::open(hive.data.join("c0re.db")).unwrap();
    let prefix = format!("hh-event-schedule.clock.{schedule}.");
    let mut st = db
        .prepare("SELECT txn_id, created_us FROM outbox WHERE txn_id LIKE ?1 || '%'")
        .unwrap();
    let mut v: Vec<(i64, i64)> = st
        .query_map([&prefix], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .filter_map(|(txn, created)| {
            // Scheduled fires only (`….by.<digest>` are `!hive fire`).
            txn[prefix.len()..].parse().ok().map(|f| (f, created))
        })
        .collect();
    v.sort();
    v
}

fn now_us() -> i64 {
    hyperhive::store::now_us()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_once_and_operators_are_mentioned() {
    let mut hive = TestHive::new(&[("clock", clock_toml(TICK_AND_STANDUP))]).await;
    common::write_script(&hive.bots.join("clock"), "clock.py", CLOCK_PY);
    let op_id = hive.operator.user_id.clone();
    hive.start_core_env(&[FAILPOINT]);
    let op = hive.operator().await.with_logs(&hive);
    let inbox = op.join("agent-clock").await;
    let control = op.join("hive-c0re").await;
    let approvals = op.join("hive-approvals").await;

    // A fire arrives as the core's message, its prompt the body; the agent answers it, and
    // its answer to a core event mentions the operator.
    let msgs = op
        .wait_until(&inbox, WAIT, "the first tick answered", |m| {
            m.iter()
                .any(|x| x.sender == "@clock:localhost" && x.body == "tock: tick: what time is it?")
        })
        .await;
    let fire = msgs
        .iter()
        .find(|x| x.body == "schedule tick: what time is it?")
        .expect("the fire itself is in the inbox");
    assert_eq!(fire.sender, "@hive:localhost");
    let answer = msgs
        .iter()
        .find(|x| x.body == "tock: tick: what time is it?")
        .unwrap();
    assert_eq!(
        answer.mentions,
        vec![op_id.clone()],
        "the reply mentions the operator"
    );

    // `!hive schedules` lists both with their next fire; the cron's is a weekday at 09:00.
    op.send(&control, "!hive schedules").await;
    let msgs = op
        .wait_until(&control, WAIT, "the schedules table", |m| {
            m.iter().any(|x| x.body.contains("| clock | standup |"))
        })
        .await;
    let table = &msgs
        .iter()
        .find(|x| x.body.contains("| clock | standup |"))
        .unwrap()
        .body;
    assert!(table.contains("| clock | tick | every 8s | "), "{table}");
    let standup = table.lines().find(|l| l.contains("| standup |")).unwrap();
    assert!(
        standup.contains("| cron 0 9 * * 1-5 | ") && standup.contains(" 09:00:00 UTC | never |"),
        "{standup}"
    );

    // `!hive fire`: the standup now, answered; a schedule it has not is refused; both audited.
    op.send(&control, "!hive fire clock standup").await;
    op.wait_until(&inbox, WAIT, "the standup answered", |m| {
        m.iter()
            .any(|x| x.body == "tock: standup: post the standup")
    })
    .await;
    op.send(&control, "!hive fire clock nightly").await;
    op.wait_until(&control, WAIT, "the refusal", |m| {
        m.iter().any(|x| {
            x.body == "Not fired: clock has no schedule \"nightly\" (its schedules: tick, standup)"
        })
    })
    .await;
    {
        let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
        let fired: Vec<(String, String)> = store
            .audit_log(1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "fire")
            .map(|e| (e.actor, e.outcome))
            .collect();
        assert_eq!(
            fired,
            vec![
                (op_id.clone(), "fired".to_owned()),
                (op_id.clone(), "refused".to_owned())
            ]
        );
    }

    // Down across two fire times: when it comes back, the latest missed fire is posted at
    // once, the one before it never (not a burst). The core comes back halfway between the
    // second and the third fire time after the last one it made (`L`): the replay is L + 2 I.
    assert_eq!(hive.stop_core().code(), Some(0));
    let before = fires(&hive, "tick");
    let last = before.last().expect("ticks fired").0;
    let back_at = last + 5 * TICK_US / 2;
    std::thread::sleep(Duration::from_micros((back_at - now_us()).max(0) as u64));
    hive.start_core_env(&[FAILPOINT]);
    op.wait_until(&inbox, WAIT, "a tick after the restart", |m| {
        m.iter()
            .filter(|x| x.body == "schedule tick: what time is it?")
            .count()
            > before.len()
    })
    .await;
    assert_eq!(hive.stop_core().code(), Some(0));
    let new: Vec<(i64, i64)> = fires(&hive, "tick")
        .into_iter()
        .filter(|(f, _)| *f > last)
        .collect();
    assert_eq!(
        new.first().map(|(f, _)| *f),
        Some(last + 2 * TICK_US),
        "the latest missed fire first, the one before it never: {new:?} after {last}"
    );
    // A fire on time is posted within milliseconds of its time; only the replay is late.
    let late: Vec<&(i64, i64)> = new.iter().filter(|(f, c)| c - f > 1_500_000).collect();
    assert_eq!(late.len(), 1, "one replay: {new:?}");

    // Changing schedules is a config change: proposed, approved, then in effect.
    hive.start_core_env(&[FAILPOINT]);
    let file = hive.dir.path().join("clock.toml");
    std::fs::write(
        &file,
        clock_toml(
            "[[schedules]]\nname = \"nightly\"\ncron = \"30 2 * * *\"\nprompt = \"sweep\"\n",
        ),
    )
    .unwrap();
    let out = hive
        .hive(&[
            "config",
            "propose",
            "clock",
            "--file",
            file.to_str().unwrap(),
        ])
        .env(FAILPOINT.0, FAILPOINT.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The request mentions the operator: in m.mentions, as a pill, by its user id.
    let request = common::request_message(&op, &approvals, 1, WAIT).await;
    assert!(request.mentions.contains(&op_id), "{:?}", request.mentions);
    let pill = format!("<a href=\"https://matrix.to/#/{op_id}\">");
    assert!(
        request
            .formatted
            .as_deref()
            .unwrap_or_default()
            .contains(&pill),
        "{:?}",
        request.formatted
    );
    assert!(
        request.body.ends_with(&format!("🔔 {op_id}")),
        "{}",
        request.body
    );
    react(&approvals, &request.event_id, "✅").await;
    let deadline = Instant::now() + WAIT;
    loop {
        op.send(&control, "!hive schedules").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let seen = op.seen.lock().unwrap().clone();
        let last = seen
            .iter()
            .rev()
            .find(|x| x.room == control.room_id() && x.body.contains("| clock |"))
            .map(|x| x.body.clone());
        if let Some(t) = last
            && t.contains("| clock | nightly | cron 30 2 * * * | ")
        {
            assert!(!t.contains("| tick |"), "the old schedules are gone: {t}");
            break;
        }
        assert!(Instant::now() < deadline, "the new schedules never showed");
    }

    // An agent's messages to the operator mention it: a reply to its message, and a
    // `send_message` to `operator` (with a pill and its name in the body).
    op.send(&inbox, "tell").await;
    let msgs = op
        .wait_until(&inbox, WAIT, "told", |m| {
            m.iter().any(|x| x.body == "told")
                && m.iter().any(|x| x.body == "operator: hello operator")
        })
        .await;
    let told = msgs.iter().find(|x| x.body == "told").unwrap();
    assert_eq!(told.mentions, vec![op_id.clone()]);
    let sent = msgs
        .iter()
        .find(|x| x.body == "operator: hello operator")
        .unwrap();
    assert_eq!(sent.mentions, vec![op_id.clone()]);
    assert!(
        sent.formatted
            .as_deref()
            .unwrap_or_default()
            .contains(&pill),
        "{:?}",
        sent.formatted
    );

    // A question mentions the operator too.
    op.send(&inbox, "ask").await;
    let msgs = op
        .wait_until(&approvals, WAIT, "the question", |m| {
            m.iter()
                .any(|x| x.body.starts_with("**Question #1** from **clock**"))
        })
        .await;
    let question = msgs
        .iter()
        .find(|x| x.body.starts_with("**Question #1** from **clock**"))
        .unwrap();
    assert!(
        question.mentions.contains(&op_id),
        "{:?}",
        question.mentions
    );
    assert!(
        question
            .formatted
            .as_deref()
            .unwrap_or_default()
            .contains(&pill),
        "{:?}",
        question.formatted
    );

    // Synapse's default push rules highlight both for the operator (a mention, not only a
    // message in a small room).
    let highlighted = |event_id: &str| {
        let op = &op;
        let event_id = event_id.to_owned();
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let resp = op
                    .client
                    .send(get_notifications::v3::Request::new())
                    .await
                    .unwrap();
                let n = resp.notifications.iter().find(|n| {
                    n.event
                        .get_field::<String>("event_id")
                        .ok()
                        .flatten()
                        .as_deref()
                        == Some(event_id.as_str())
                });
                if let Some(n) = n {
                    return n.actions.iter().any(|a| a.is_highlight());
                }
                assert!(Instant::now() < deadline, "no notification for {event_id}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert!(highlighted(request.event_id.as_str()).await, "the request");
    assert!(
        highlighted(question.event_id.as_str()).await,
        "the question"
    );

    // `!hive fire` with the core killed after the fire, before the command's ack: the command
    // is redelivered after the restart, answered as the first time, and fired once.
    // (One failpoint at a time: bots/ must hold no `every` shorter than a minute, as the
    // approved config does not.)
    assert_eq!(hive.stop_core().code(), Some(0));
    let nightly = "[[schedules]]\nname = \"nightly\"\ncron = \"30 2 * * *\"\nprompt = \"sweep\"\n";
    std::fs::write(
        hive.bots.join("clock").join("agent.toml"),
        clock_toml(nightly),
    )
    .unwrap();
    hive.start_core_env(&[("HYPERHIVE_FAILPOINT", "fire-before-ack")]);
    op.send(&control, "!hive fire clock nightly").await;
    let status = hive.wait_core_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(101),
        "the failpoint fire-before-ack fired"
    );
    hive.start_core();
    op.wait_until(&control, WAIT, "the redelivered command answered", |m| {
        m.iter()
            .any(|x| x.body == "🔔 Fired **nightly** of **clock** now.")
    })
    .await;
    op.wait_until(&inbox, WAIT, "the nightly answered", |m| {
        m.iter().any(|x| x.body == "tock: nightly: sweep")
    })
    .await;
    // Time for a second fire to arrive, were there one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hive.stop_core().code(), Some(0));
    assert_eq!(op.count(&inbox, "schedule nightly: sweep"), 1, "fired once");
    assert_eq!(op.count(&inbox, "tock: nightly: sweep"), 1, "one turn");
    let db = rusqlite::Connection::open(hive.data.join("c0re.db")).unwrap();
    let posts: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE txn_id LIKE 'hh-event-schedule.clock.nightly.by.%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(posts, 1, "one post for the command");
}

/// Each fire takes a turn of six seconds; the schedule fires every two.
const SLOW_PY: &str = r#"#!/usr/bin/env python3
import json, sys, time
m = json.load(sys.stdin)["message"]
ev = m.get("event") or {}
if ev.get("kind") == "schedule":
    time.sleep(6)
    print(json.dumps({"reply": "beaten"}))
else:
    print(json.dumps({}))
"#;

/// A turn longer than the interval: the fires due meanwhile are held, not queued (one fire of a
/// schedule is on its way at a time), and `!hive schedules` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_waits_until_the_last_one_is_handled() {
    let toml = "[brain]\nkind = \"command\"\ncommand = [\"./slow.py\"]\n\
        [[schedules]]\nname = \"beat\"\nevery = \"2s\"\nprompt = \"beat\"\n";
    let mut hive = TestHive::new(&[("slow", toml.to_owned())]).await;
    common::write_script(&hive.bots.join("slow"), "slow.py", SLOW_PY);
    hive.start_core_env(&[FAILPOINT]);
    let op = hive.operator().await.with_logs(&hive);
    let inbox = op.join("agent-slow").await;
    let control = op.join("hive-c0re").await;

    // Mid-turn (three seconds into six), the next fire is due and held.
    op.wait_until(&inbox, WAIT, "the first fire", |m| {
        m.iter().any(|x| x.body == "schedule beat: beat")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    op.send(&control, "!hive schedules").await;
    let msgs = op
        .wait_until(&control, WAIT, "the schedules table", |m| {
            m.iter().any(|x| x.body.contains("| slow | beat |"))
        })
        .await;
    let row = msgs
        .iter()
        .find_map(|x| x.body.lines().find(|l| l.contains("| slow | beat |")))
        .unwrap()
        .to_owned();
    assert!(
        row.contains("| held (its last fire is not handled yet; then one) |"),
        "{row}"
    );

    op.wait_until(&inbox, WAIT, "three turns", |m| {
        m.iter().filter(|x| x.body == "beaten").count() >= 3
    })
    .await;
    assert_eq!(hive.stop_core().code(), Some(0));

    // Every fire was posted only after the one before it was handled.
    let db = rusqlite::Connection::open(hive.data.join("c0re.db")).unwrap();
    let mut st = db
        .prepare(
            "SELECT o.txn_id, o.created_us, i.done_us FROM outbox o
             LEFT JOIN inbox i ON i.agent = 'slow' AND i.event_id = o.event_id
             WHERE o.txn_id LIKE 'hh-event-schedule.slow.beat.%' ORDER BY o.created_us",
        )
        .unwrap();
    let fires: Vec<(String, i64, Option<i64>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(fires.len() >= 3, "{fires:?}");
    for pair in fires.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let done = before
            .2
            .unwrap_or_else(|| panic!("{} never handled: {fires:?}", before.0));
        assert!(
            after.1 >= done,
            "{} posted before {} was handled: {fires:?}",
            after.0,
            before.0
        );
    }
}
