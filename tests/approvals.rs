//! Approvals end to end on a real Synapse: versioned config, requests in #hive-approvals, the
//! operator's ✅/❌ with a real matrix-sdk client, forged and edge-case reactions, the manager's
//! tool over the socket, and the agent coming back on its new config.

mod common;

use std::time::Duration;

use common::{Operator, TestHive, react};
use matrix_sdk::Room;
use matrix_sdk::ruma::OwnedEventId;

const WAIT: Duration = Duration::from_secs(45);

/// A command bot that files `request_apply_commit` for echo when told `apply <sha>`.
const MANAGER_PY: &str = r#"#!/usr/bin/env python3
import json, sys
m = json.load(sys.stdin)["message"]
body = m["body"].strip()
if body.startswith("apply "):
    print(json.dumps({"request_apply_commit": [
        {"agent": "echo", "sha": body[6:].strip(), "summary": "the manager wants v3"}]}))
elif body.startswith("spawn "):
    print(json.dumps({"request_init_config": [
        {"name": body[6:].strip(), "summary": "a new lane for tests"}]}))
"#;

fn manager_bot() -> String {
    "allowed_recipients = [\"echo\"]\n[brain]\nkind = \"command\"\ncommand = [\"./manager.py\"]\n"
        .to_owned()
}

/// The request message `#id` in the approvals room.
async fn request_event(op: &Operator, approvals: &Room, id: u32) -> OwnedEventId {
    common::request_message(op, approvals, id, WAIT)
        .await
        .event_id
}

/// Pushes a forged reaction straight into hive-c0re's transaction endpoint, as the homeserver
/// would deliver it.
async fn inject_reaction(hive: &TestHive, room: &Room, sender: &str, target: &str, id: &str) {
    let event = serde_json::json!({
        "type": "m.reaction", "event_id": id, "room_id": room.room_id(), "sender": sender,
        "origin_server_ts": 1, "content": {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": target, "key": "✅"}},
    });
    let r = reqwest::Client::new()
        .put(format!(
            "http://{}/_matrix/app/v1/transactions/forged-{id}",
            hive.cfg.listen
        ))
        .bearer_auth(hive.hs_token())
        .json(&serde_json::json!({ "events": [event] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn run(hive: &TestHive, args: &[&str]) -> (i32, String) {
    let out = hive.hive(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Proposes `common::scripted(version)` as echo's agent.toml (`hive config propose`, as a human does),
/// with `extra` arguments; asserts it was filed and returns what the command printed.
fn propose(hive: &TestHive, version: &str, extra: &[&str]) -> String {
    let file = hive.dir.path().join(format!("{version}.toml"));
    std::fs::write(&file, common::scripted(version)).unwrap();
    let mut args = vec![
        "config",
        "propose",
        "echo",
        "--file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out) = run(hive, &args);
    assert_eq!(code, 0, "{out}");
    out
}

/// One entry of `hive audit` about a request.
#[derive(Debug)]
struct Entry {
    actor: String,
    action: String,
    outcome: String,
    detail: String,
}

/// `hive audit`'s entries about request `id`, oldest first. A line is
/// `<date> <time>Z  <actor> <action> <outcome> #<id> <agent> <sha>  <detail>`.
fn audit_of(hive: &TestHive, id: i64) -> Vec<Entry> {
    let (code, out) = run(hive, &["audit", "--limit", "10000"]);
    assert_eq!(code, 0, "{out}");
    let tag = format!("#{id}");
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && f[5] == tag).then(|| Entry {
                actor: f[2].to_owned(),
                action: f[3].to_owned(),
                outcome: f[4].to_owned(),
                detail: f.get(8..).map(|d| d.join(" ")).unwrap_or_default(),
            })
        })
        .collect()
}

/// Request `id`'s state, by `hive approvals`.
fn state_of(hive: &TestHive, id: i64) -> String {
    let (code, out) = run(hive, &["approvals"]);
    assert_eq!(code, 0, "{out}");
    out.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id.to_string().as_str())).then(|| f[1].to_owned())
        })
        .unwrap_or_else(|| panic!("no request #{id}:\n{out}"))
}

/// How many times request `id` was applied (or failed to), by `hive audit`.
fn audit_applied(hive: &TestHive, id: i64) -> usize {
    audit_of(hive, id)
        .iter()
        .filter(|e| e.action == "apply")
        .count()
}

/// The lines of the core's log written since it was `from` bytes long.
fn log_since(hive: &TestHive, from: usize) -> String {
    hive.core_log().get(from..).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reactions_decide_and_forgeries_do_nothing() {
    let mut hive = TestHive::new(&[
        ("echo", common::scripted("v1")),
        ("hm1nd", manager_bot()),
        ("rogue", manager_bot()),
    ])
    .await;
    for bot in ["hm1nd", "rogue"] {
        let p = hive.bots.join(bot).join("manager.py");
        std::fs::write(&p, MANAGER_PY).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let hm1nd = op.join("agent-hm1nd").await;
    let rogue = op.join("agent-rogue").await;
    let approvals = op.join("hive-approvals").await;
    let control = op.join("hive-c0re").await;
    op.send(&echo, "hello").await;
    op.wait_until(&echo, WAIT, "v1 answer", |m| {
        m.iter().any(|x| x.body == "v1: hello")
    })
    .await;

    // 1. A human proposes v2 from the shell; the operator approves with ✅ in the client.
    let out = propose(&hive, "v2", &["-m", "echo v2"]);
    assert!(out.contains("request #1"), "{out}");
    let req1 = request_event(&op, &approvals, 1).await;
    let msgs = op
        .wait_until(&approvals, WAIT, "request body", |m| !m.is_empty())
        .await;
    let body = &msgs.iter().find(|x| x.event_id == req1).unwrap().body;
    assert!(
        body.contains("echo v2") && body.contains("+reply = \"v2: {body}\""),
        "{body}"
    );
    react(&approvals, &req1, "✅").await;
    op.wait_until(&approvals, WAIT, "applied", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/2"))
    })
    .await;
    op.send(&echo, "again").await;
    op.wait_until(&echo, WAIT, "v2 answer", |m| {
        m.iter().any(|x| x.body == "v2: again")
    })
    .await;

    // 2. ❌ denies: nothing changes.
    propose(&hive, "v9", &[]);
    let req2 = request_event(&op, &approvals, 2).await;
    react(&approvals, &req2, "✖️").await;
    op.wait_until(&approvals, WAIT, "denied", |m| {
        m.iter().any(|x| x.body.starts_with("❌ Denied by"))
    })
    .await;
    // A ✅ after the ❌ is ignored and reported.
    react(&approvals, &req2, "✅").await;
    op.wait_until(&control, WAIT, "late ✅ reported", |m| {
        m.iter().any(|x| {
            x.body
                .contains("to request #2 after it was denied: ignored")
        })
    })
    .await;

    // 3. The manager commits v3 on echo's proposed side and asks through its tool.
    let repo = hyperhive::configrepo::ConfigRepo::new(
        &hive.data,
        &hyperhive::agent_spec::AgentName::parse("echo").unwrap(),
    );
    // The proposed side still holds the denied v9 on top; base v3 on what is applied.
    let v3 = repo
        .commit_proposed(
            &[hyperhive::configrepo::ConfigFile {
                path: "agent.toml".into(),
                executable: false,
                content: common::scripted("v3").into_bytes(),
            }],
            "v3",
        )
        .unwrap();
    // A non-manager asking is refused by the core.
    op.send(&rogue, &format!("apply {v3}")).await;
    op.wait_until(&rogue, WAIT, "refusal", |m| {
        m.iter()
            .any(|x| x.body.contains("was refused") && x.body.contains("rogue is not a manager"))
    })
    .await;
    op.send(&hm1nd, &format!("apply {v3}")).await;
    op.wait_until(&hm1nd, WAIT, "hm1nd filed it", |m| {
        m.iter().any(|x| x.body.contains("(request #3)"))
    })
    .await;
    let req3 = request_event(&op, &approvals, 3).await;

    // Forged and misplaced reactions: an agent (the requester itself), a non-operator local
    // user, a remote user, and the operator's ✅ on some other event. None executes anything.
    let forgeries = [
        (
            "@hm1nd:localhost",
            req3.as_str(),
            "$forged-agent",
            "the requester itself",
        ),
        (
            "@mallory:localhost",
            req3.as_str(),
            "$forged-local",
            "is not an operator",
        ),
        (
            "@operator:evil.example",
            req3.as_str(),
            "$forged-remote",
            "is on another server",
        ),
    ];
    for (sender, target, id, _) in &forgeries {
        inject_reaction(&hive, &approvals, sender, target, id).await;
    }
    let other = op.send(&approvals, "an ordinary message").await;
    react(&approvals, &other, "✅").await;
    op.wait_until(&control, WAIT, "every forgery reported", |m| {
        forgeries
            .iter()
            .all(|(s, _, _, why)| m.iter().any(|x| x.body.contains(s) && x.body.contains(why)))
            && m.iter()
                .any(|x| x.body.contains("which is not an approval request"))
    })
    .await;
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    assert_eq!(
        store.approval(3).unwrap().unwrap().state,
        hyperhive::store::ApprovalState::Pending,
        "nothing forged moved the request"
    );

    // The operator's ✅, delivered twice (a replayed transaction), applies once.
    let r = react(&approvals, &req3, "✔️").await;
    op.wait_until(&approvals, WAIT, "v3 applied", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/3"))
    })
    .await;
    let raw = op
        .client
        .send(
            matrix_sdk::ruma::api::client::room::get_room_event::v3::Request::new(
                approvals.room_id().to_owned(),
                r.clone(),
            ),
        )
        .await
        .unwrap();
    let mut event: serde_json::Value = raw.event.deserialize_as_unchecked().unwrap();
    event["room_id"] = serde_json::json!(approvals.room_id());
    let log_from = hive.core_log().len();
    for txn in ["dup-1", "dup-2"] {
        reqwest::Client::new()
            .put(format!(
                "http://{}/_matrix/app/v1/transactions/{txn}",
                hive.cfg.listen
            ))
            .bearer_auth(hive.hs_token())
            .json(&serde_json::json!({ "events": [event.clone()] }))
            .send()
            .await
            .unwrap();
    }
    op.send(&echo, "third").await;
    op.wait_until(&echo, WAIT, "v3 answer", |m| {
        m.iter().any(|x| x.body == "v3: third")
    })
    .await;
    // A fence: the gate takes signals in order, so whatever the replays made it say is said
    // before its report of a later forgery.
    inject_reaction(
        &hive,
        &approvals,
        "@mallory:localhost",
        req3.as_str(),
        "$fence",
    )
    .await;
    let msgs = op
        .wait_until(&control, WAIT, "the fence's report", |m| {
            m.iter()
                .filter(|x| x.body.contains("@mallory:localhost is not an operator"))
                .count()
                == 2
        })
        .await;
    // Each replay was dropped by its event id before any vote logic saw it: the core says so,
    // and the gate said nothing of them (a replay that reached the vote after the apply would
    // be reported "after it was applied: ignored"; one before it would count twice).
    let late: Vec<&str> = msgs
        .iter()
        .map(|x| x.body.as_str())
        .filter(|b| b.contains("to request #3 after it was"))
        .collect();
    assert!(late.is_empty(), "a replay reached the vote: {late:?}");
    let entries = audit_of(&hive, 3);
    let votes: Vec<(&str, &str, &str)> = entries
        .iter()
        .filter(|e| e.actor == "@operator:localhost")
        .map(|e| (e.action.as_str(), e.outcome.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        votes,
        [("approve", "approved", r.as_str())],
        "one vote, the ✅'s own event"
    );
    let log = log_since(&hive, log_from);
    let dropped = log
        .lines()
        .filter(|l| {
            l.contains("an approval signal seen before: dropped by its event id")
                && l.contains(r.as_str())
        })
        .count();
    assert_eq!(dropped, 2, "each replay dropped by its event id:\n{log}");
    assert_eq!(audit_applied(&hive, 1), 1);
    assert_eq!(audit_applied(&hive, 3), 1, "applied exactly once");
    assert_eq!(repo.current().unwrap(), (3, v3.clone()));

    // The CLI shows it all.
    let (code, out) = run(&hive, &["approvals"]);
    assert_eq!(code, 0);
    for line in ["applied", "denied"] {
        assert!(out.contains(line), "{out}");
    }
    let (code, out) = run(&hive, &["audit"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ignored") && out.contains("@mallory:localhost"),
        "{out}"
    );
    // Each entry starts with its time in UTC, e.g. `2026-11-24 11:59:59Z`.
    let dated = |l: &str| {
        let b = l.as_bytes();
        b.len() > 20 && b[4] == b'-' && b[7] == b'-' && b[13] == b':' && b[19] == b'Z'
    };
    assert!(out.lines().all(dated), "{out}");
    assert_eq!(hive.stop_core().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proposals_are_refused_with_the_reason() {
    let mut hive = TestHive::new(&[("echo", common::scripted("v1"))]).await;
    hive.start_core();
    let op = hive.operator().await;
    let control = op.join("hive-c0re").await;
    let bad = hive.dir.path().join("bad.toml");
    std::fs::write(&bad, "[brain]\nkind = \"telepathy\"\n").unwrap();
    let (code, out) = run(
        &hive,
        &["config", "propose", "echo", "--file", bad.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("does not validate") && out.contains("brain"),
        "{out}"
    );
    // Each refused for its own reason by a clean error exit (1, `hive: <reason>`), never a
    // panic (whose exit code is 101).
    let reasons = [
        ("../etc", "must start with a lowercase ascii letter"),
        ("/etc", "must start with a lowercase ascii letter"),
        ("Echo", "must start with a lowercase ascii letter"),
        ("e\u{0301}cho", "has a forbidden character '\\u{301}'"),
        ("", "agent name is empty"),
    ];
    for (hostile, reason) in reasons {
        let out = hive
            .hive(&[
                "config",
                "propose",
                hostile,
                "--file",
                bad.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{hostile:?}: {err}");
        assert!(
            err.starts_with("hive: agent name") && err.contains(reason),
            "{hostile:?}: {err}"
        );
        assert!(!err.contains("panicked at"), "{hostile:?}: {err}");
    }
    assert!(!hive.data.join("etc").exists() && !hive.dir.path().join("etc").exists());
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let all = store.approvals(10).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, hyperhive::store::ApprovalState::Cancelled);
    drop(control);

    // Someone loosens #hive-approvals' power levels; the next start locks it down again.
    let approvals = op.join("hive-approvals").await;
    let get_pl = || async {
        let raw = op
            .client
            .send(
                matrix_sdk::ruma::api::client::state::get_state_event_for_key::v3::Request::new(
                    approvals.room_id().to_owned(),
                    matrix_sdk::ruma::events::StateEventType::RoomPowerLevels,
                    String::new(),
                ),
            )
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(raw.event_or_content.get()).unwrap();
        v.get("content").cloned().unwrap_or(v)
    };
    let mut pl = get_pl().await;
    pl["events"]["m.reaction"] = serde_json::json!(0);
    pl["events_default"] = serde_json::json!(0);
    approvals
        .send_state_event_raw("m.room.power_levels", "", pl)
        .await
        .unwrap();
    assert_eq!(get_pl().await["events"]["m.reaction"], 0);
    assert_eq!(hive.stop_core().code(), Some(0));
    hive.start_core();
    let pl = get_pl().await;
    assert_eq!(pl["events"]["m.reaction"], 100, "{pl}");
    assert_eq!(pl["events_default"], 100, "{pl}");
    assert_eq!(pl["users"]["@operator:localhost"], 100, "{pl}");
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// An agent's process dies: the manager gets a `container_crash` in its inbox (and its harness
/// receives it like any message); the operator sees a line in #hive-c0re. The message that
/// killed it every time is given up at last: the manager gets a `dead_letter`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_its_dead_letter_reach_the_manager() {
    let mut hive = TestHive::new(&[
        ("hm1nd", common::scripted("hm1nd got")),
        (
            "crashy",
            "[brain]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"kill -9 $PPID\"]\n"
                .to_owned(),
        ),
    ])
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let hm1nd = op.join("agent-hm1nd").await;
    let crashy = op.join("agent-crashy").await;
    let control = op.join("hive-c0re").await;
    let boom = op.send(&crashy, "boom").await;
    let repo = hyperhive::configrepo::ConfigRepo::new(
        &hive.data,
        &hyperhive::agent_spec::AgentName::parse("crashy").unwrap(),
    );
    let sha = repo.current().unwrap().1;
    let msgs = op
        .wait_until(&hm1nd, WAIT, "the crash report and hm1nd's answer", |m| {
            m.iter()
                .any(|x| x.body.starts_with("container_crash: **crashy** exited"))
                && m.iter()
                    .any(|x| x.body.starts_with("hm1nd got: container_crash"))
        })
        .await;
    let report = msgs
        .iter()
        .find(|x| x.body.starts_with("container_crash"))
        .unwrap();
    assert!(report.body.contains(&sha), "{}", report.body);
    assert!(report.body.contains("signal: 9"), "{}", report.body);
    op.wait_until(&control, WAIT, "the crash line", |m| {
        m.iter().any(|x| x.body.contains("**crashy** exited"))
    })
    .await;
    // Each delivery of "boom" kills the harness again: after delivery.max_attempts (3) the
    // message is dead-lettered, and the manager is told which.
    let msgs = op
        .wait_until(&hm1nd, Duration::from_secs(60), "the dead letter", |m| {
            m.iter().any(|x| x.body.starts_with("dead_letter: message"))
        })
        .await;
    let dead = msgs
        .iter()
        .find(|x| x.body.starts_with("dead_letter: message"))
        .unwrap();
    assert_eq!(
        dead.body,
        format!(
            "dead_letter: message {boom} from @operator:localhost to **crashy** was given up after 3 deliveries."
        )
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// hive-c0re dies in the middle of an apply, before and after its commit point: the restart
/// marks the first failed (nothing changed) and finishes the second, never running either twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_apply_neither_loses_nor_repeats_it() {
    let mut hive = TestHive::new(&[("echo", common::scripted("v1"))]).await;
    let cases = [
        ("apply-before-commit", "v2", 1, "v1", "nothing was changed"),
        (
            "apply-after-commit",
            "v3",
            2,
            "v3",
            "finished after hive-c0re restarted",
        ),
    ];
    for (failpoint, version, id, answers, said) in cases {
        let log_from = hive.core_log().len();
        hive.start_core_env(&[("HYPERHIVE_FAILPOINT", failpoint)]);
        let op = hive.operator().await;
        let echo = op.join("agent-echo").await;
        let approvals = op.join("hive-approvals").await;
        propose(&hive, version, &[]);
        let req = request_event(&op, &approvals, id).await;
        react(&approvals, &req, "✅").await;
        let status = hive.wait_core_exit(WAIT);
        // 101 is also a panic's exit code: the failpoint's own line says it was the failpoint.
        let log = log_since(&hive, log_from);
        assert!(
            log.contains(&format!("failpoint {failpoint}: exiting"))
                && !log.contains("panicked at"),
            "the failpoint {failpoint} did not fire ({status}):\n{log}"
        );
        hive.start_core();
        op.wait_until(&approvals, WAIT, said, |m| {
            m.iter().any(|x| x.body.contains(said))
        })
        .await;
        let probe = format!("after {failpoint}");
        op.send(&echo, &probe).await;
        let want = format!("{answers}: {probe}");
        op.wait_until(&echo, WAIT, &want, |m| m.iter().any(|x| x.body == want))
            .await;
        let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
        let a = store.approval(id as i64).unwrap().unwrap();
        let expect = if answers == "v1" {
            hyperhive::store::ApprovalState::Failed
        } else {
            hyperhive::store::ApprovalState::Applied
        };
        assert_eq!(a.state, expect, "{failpoint}");
        assert_eq!(
            audit_applied(&hive, id as i64),
            1,
            "{failpoint}: decided once"
        );
        assert_eq!(hive.stop_core().code(), Some(0));
    }
}

/// A manager asks for a new agent; the operator approves; the agent exists, has its room, and
/// answers. Its config is versioned like any other (deploy/1), and a restart keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_request_creates_an_answering_agent() {
    let mut hive =
        TestHive::new(&[("echo", common::scripted("v1")), ("hm1nd", manager_bot())]).await;
    let p = hive.bots.join("hm1nd").join("manager.py");
    std::fs::write(&p, MANAGER_PY).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hive.start_core();
    let op = hive.operator().await;
    let hm1nd = op.join("agent-hm1nd").await;
    let approvals = op.join("hive-approvals").await;

    // Hostile and existing names are refused before reaching the operator.
    for bad in ["../evil", "Echo", "echo", "hive"] {
        op.send(&hm1nd, &format!("spawn {bad}")).await;
        let want = format!("My request to spawn {bad} was refused");
        op.wait_until(&hm1nd, WAIT, &want, |m| {
            m.iter().any(|x| x.body.starts_with(&want))
        })
        .await;
    }
    assert!(!hive.data.join("evil").exists() && !hive.data.join("agents/evil").exists());

    op.send(&hm1nd, "spawn newbie").await;
    op.wait_until(&hm1nd, WAIT, "filed", |m| {
        m.iter()
            .any(|x| x.body.contains("spawning newbie (request #"))
    })
    .await;
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let id = store.approvals(1).unwrap()[0].id as u32;
    let req = request_event(&op, &approvals, id).await;
    react(&approvals, &req, "✅").await;
    op.wait_until(&approvals, WAIT, "spawned", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Spawned **newbie**"))
    })
    .await;
    // The manager hears how its request ended.
    op.wait_until(&hm1nd, WAIT, "the outcome", |m| {
        m.iter().any(|x| {
            x.body.starts_with("approval_outcome:") && x.body.contains("newbie is spawned")
        })
    })
    .await;
    // The deploy it claims: `hive approvals` shows the request applied as newbie's deploy/1,
    // and newbie runs exactly the sha the operator approved.
    let (code, out) = run(&hive, &["approvals"]);
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no request #{id}:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((f[1], f[3]), ("applied", "newbie"), "{line}");
    assert!(line.ends_with("[deploy/1]"), "{line}");
    let approved = f[4];
    let repo = hyperhive::configrepo::ConfigRepo::new(
        &hive.data,
        &hyperhive::agent_spec::AgentName::parse("newbie").unwrap(),
    );
    assert_eq!(repo.current().unwrap(), (1, approved.to_owned()));
    // Its room exists under its alias, and it answers there.
    let alias = matrix_sdk::ruma::RoomAliasId::parse("#agent-newbie:localhost").unwrap();
    let resolved = op.client.resolve_room_alias(&alias).await.unwrap().room_id;
    let newbie = op.join("agent-newbie").await;
    assert_eq!(newbie.room_id().as_str(), resolved.as_str());
    op.send(&newbie, "who are you?").await;
    let msgs = op
        .wait_until(&newbie, WAIT, "newbie answers", |m| {
            m.iter()
                .any(|x| x.sender == "@newbie:localhost" && x.body.starts_with("I am newbie"))
        })
        .await;
    let answer = msgs
        .iter()
        .find(|x| x.sender == "@newbie:localhost")
        .unwrap();
    assert_eq!(answer.room, resolved, "answered in its own room");

    // After a restart the spawned agent is still there, on its versioned config.
    assert_eq!(hive.stop_core().code(), Some(0));
    hive.start_core();
    op.send(&newbie, "still there?").await;
    op.wait_until(&newbie, WAIT, "newbie after restart", |m| {
        m.iter().filter(|x| x.sender == "@newbie:localhost").count() >= 2
    })
    .await;
    assert_eq!(hive.stop_core().code(), Some(0));
}

const ASKER_PY: &str = r#"#!/usr/bin/env python3
import json, sys
m = json.load(sys.stdin)["message"]
body = m["body"].strip()
if body.startswith("ask"):
    ttl = int(body.split()[1]) if len(body.split()) > 1 else 600
    print(json.dumps({"ask_operator": [
        {"question": "Deploy on Friday?", "options": ["yes", "no"], "ttl_secs": ttl}]}))
elif body.startswith("operator_answer:"):
    print(json.dumps({"reply": "noted: " + body}))
"#;

/// `ask_operator`: answered by an option's keycap, by a reply in the thread, or not at all;
/// the agent hears each outcome as a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_operator_round_trips() {
    let mut hive = TestHive::new(&[(
        "asker",
        "[brain]\nkind = \"command\"\ncommand = [\"./asker.py\"]\n".to_owned(),
    )])
    .await;
    let p = hive.bots.join("asker").join("asker.py");
    std::fs::write(&p, ASKER_PY).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hive.start_core();
    let op = hive.operator().await;
    let asker = op.join("agent-asker").await;
    let approvals = op.join("hive-approvals").await;

    let question = |id: u32| {
        let head = format!("**Question #{id}** from **asker**");
        let op = &op;
        let approvals = &approvals;
        async move {
            let msgs = op
                .wait_until(approvals, WAIT, &head, |m| {
                    m.iter().any(|x| x.body.starts_with(&head))
                })
                .await;
            let q = msgs.iter().find(|x| x.body.starts_with(&head)).unwrap();
            assert!(
                q.body
                    .contains("1\u{fe0f}\u{20e3} yes · 2\u{fe0f}\u{20e3} no"),
                "{}",
                q.body
            );
            q.event_id.clone()
        }
    };

    // 1. Answered by reacting with option 2's keycap.
    op.send(&asker, "ask").await;
    let q1 = question(1).await;
    react(&approvals, &q1, "2\u{fe0f}\u{20e3}").await;
    op.wait_until(&asker, WAIT, "the keycap answer", |m| {
        m.iter()
            .any(|x| x.body == "noted: operator_answer: question #1: no (from @operator:localhost)")
    })
    .await;

    // 2. Answered by a reply in the question's thread.
    op.send(&asker, "ask").await;
    let q2 = question(2).await;
    approvals
        .send_raw(
            "m.room.message",
            serde_json::json!({"msgtype": "m.text", "body": "only after the freeze",
                "m.relates_to": {"rel_type": "m.thread", "event_id": q2,
                    "is_falling_back": true, "m.in_reply_to": {"event_id": q2}}}),
        )
        .await
        .unwrap();
    op.wait_until(&asker, WAIT, "the thread answer", |m| {
        m.iter().any(|x| {
            x.body
                .starts_with("noted: operator_answer: question #2: only after the freeze")
        })
    })
    .await;

    // 3. Not answered: the timeout comes back instead.
    op.send(&asker, "ask 1").await;
    question(3).await;
    op.wait_until(&asker, WAIT, "the timeout", |m| {
        m.iter()
            .any(|x| x.body == "noted: operator_answer: question #3 expired without an answer")
    })
    .await;
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// Two operators, two approvals required: a withdrawn ✓ no longer counts, simultaneous ✓s
/// apply once, an edit of the request changes nothing, redacting the request cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_withdrawals_edits_and_cancels() {
    let TwoOperators {
        mut hive,
        op,
        op2: _op2,
        echo,
        approvals,
        approvals2,
    } = two_operators(2).await;
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let state = |id: i64| store.approval(id).unwrap().unwrap().state;
    use hyperhive::store::ApprovalState::*;

    // 1. M of N, and a withdrawn ✓.
    propose(&hive, "v2", &[]);
    let req1 = request_event(&op, &approvals, 1).await;
    let mine = react(&approvals, &req1, "✅").await;
    op.wait_until(&approvals, WAIT, "1 of 2", |m| {
        m.iter().any(|x| x.body.contains("1 of 2 approvals"))
    })
    .await;
    approvals.redact(&mine, None, None).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !store
        .audit_log(100)
        .unwrap()
        .iter()
        .any(|e| e.action == "withdraw")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the withdrawal was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    react(&approvals2, &req1, "✅").await;
    op.wait_until(&approvals, WAIT, "still 1 of 2", |m| {
        m.iter()
            .filter(|x| x.body.contains("1 of 2 approvals"))
            .count()
            == 2
    })
    .await;
    assert_eq!(state(1), Pending, "a withdrawn ✓ does not count");
    react(&approvals, &req1, "☑️").await;
    op.wait_until(&approvals, WAIT, "applied", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/2"))
    })
    .await;

    // 2. Both operators at the same moment: applied once.
    propose(&hive, "v3", &[]);
    let req2 = request_event(&op, &approvals, 2).await;
    let (a, b) = tokio::join!(
        react(&approvals, &req2, "✅"),
        react(&approvals2, &req2, "✅")
    );
    assert_ne!(a, b);
    op.wait_until(&approvals, WAIT, "v3 applied", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/3"))
    })
    .await;
    assert_eq!(audit_applied(&hive, 2), 1);
    op.send(&echo, "x").await;
    op.wait_until(&echo, WAIT, "v3", |m| m.iter().any(|x| x.body == "v3: x"))
        .await;

    // 3. An edit of the request (Synapse accepts edits of others' messages) changes nothing:
    //    a ✓ on the edit is not a ✓ on the request; redacting the request cancels it.
    propose(&hive, "v4", &[]);
    let req3 = request_event(&op, &approvals, 3).await;
    let edit = approvals
        .send_raw(
            "m.room.message",
            serde_json::json!({"msgtype": "m.text", "body": "* commit 0000000000000000000000000000000000000000",
                "m.new_content": {"msgtype": "m.text", "body": "commit 0000000000000000000000000000000000000000"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": req3}}),
        )
        .await
        .unwrap()
        .response
        .event_id;
    react(&approvals, &edit, "✅").await;
    react(&approvals2, &edit, "✅").await;
    let control = op.join("hive-c0re").await;
    op.wait_until(&control, WAIT, "✓ on the edit reported", |m| {
        m.iter()
            .filter(|x| {
                x.body.contains(edit.as_str()) && x.body.contains("not an approval request")
            })
            .count()
            == 2
    })
    .await;
    assert_eq!(state(3), Pending);
    approvals.redact(&req3, None, None).await.unwrap();
    op.wait_until(&control, WAIT, "cancelled", |m| {
        m.iter().any(|x| x.body.contains("Request #3 cancelled"))
    })
    .await;
    assert_eq!(state(3), Cancelled);
    op.send(&echo, "y").await;
    op.wait_until(&echo, WAIT, "still v3", |m| {
        m.iter().any(|x| x.body == "v3: y")
    })
    .await;
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// A request that stops fast-forwarding by the time it is approved fails to apply, says why,
/// and leaves the previous config running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_keeps_the_previous_config() {
    let mut hive = TestHive::new(&[("echo", common::scripted("v1"))]).await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = op.join("agent-echo").await;
    let approvals = op.join("hive-approvals").await;
    let repo = hyperhive::configrepo::ConfigRepo::new(
        &hive.data,
        &hyperhive::agent_spec::AgentName::parse("echo").unwrap(),
    );
    let seed = repo.applied().unwrap().unwrap();
    let commit = |version: &str| {
        repo.commit_proposed(
            &[hyperhive::configrepo::ConfigFile {
                path: "agent.toml".into(),
                executable: false,
                content: common::scripted(version).into_bytes(),
            }],
            version,
        )
        .unwrap()
    };
    // Two proposals, each on top of the applied seed: siblings, not a line. Each is filed
    // while it is on the proposed side (the proposed branch then moves back to the seed).
    let file = |sha: &str, id: i64| {
        let filed = hyperhive::c0re::approvals::file_apply_commit(
            &hive.data, &hive.cfg, "test", "echo", sha, "sibling",
        )
        .unwrap()
        .unwrap();
        assert_eq!(filed, id);
    };
    let a = commit("va");
    file(&a, 1);
    repo.reset_proposed(&seed).unwrap();
    let b = commit("vb");
    file(&b, 2);
    assert!(hyperhive::c0re::control::wake_running_core(&hive.data));
    let req1 = request_event(&op, &approvals, 1).await;
    let req2 = request_event(&op, &approvals, 2).await;
    react(&approvals, &req1, "✅").await;
    op.wait_until(&approvals, WAIT, "va applied", |m| {
        m.iter().any(|x| x.body.starts_with("✅ Applied"))
    })
    .await;
    react(&approvals, &req2, "✅").await;
    op.wait_until(&approvals, WAIT, "vb failed", |m| {
        m.iter().any(|x| {
            x.body.starts_with("❌ Applying failed") && x.body.contains("does not fast-forward")
        })
    })
    .await;
    op.send(&echo, "which?").await;
    op.wait_until(&echo, WAIT, "still va", |m| {
        m.iter().any(|x| x.body == "va: which?")
    })
    .await;
    assert_eq!(repo.current().unwrap().1, a);
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// An operator below the configured power level cannot approve; an unanswered request expires
/// by the core's clock. Then, with a threshold the operator meets (a request approved in time
/// applies), a ✅ that comes after its request expired is refused for that and applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_threshold_and_expiry() {
    let mut hive = TestHive::with_config(
        &[("echo", common::scripted("v1"))],
        "[approvals]\nmin_power_level = 101\nttl_secs = 4\n",
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let approvals = op.join("hive-approvals").await;
    let control = op.join("hive-c0re").await;
    propose(&hive, "v2", &[]);
    let req = request_event(&op, &approvals, 1).await;
    react(&approvals, &req, "✅").await;
    op.wait_until(&control, WAIT, "below the threshold", |m| {
        m.iter().any(|x| {
            x.body
                .contains("has power level 100 in the approvals room, below 101")
        })
    })
    .await;
    op.wait_until(&approvals, WAIT, "expired", |m| {
        m.iter()
            .any(|x| x.body.contains("Request #1 expired without a decision"))
    })
    .await;
    assert_eq!(state_of(&hive, 1), "expired");
    assert_eq!(audit_applied(&hive, 1), 0);
    assert_eq!(hive.stop_core().code(), Some(0));

    let toml = std::fs::read_to_string(&hive.config).unwrap();
    let lowered = toml.replace(
        "min_power_level = 101\nttl_secs = 4",
        "min_power_level = 100\nttl_secs = 6",
    );
    assert_ne!(toml, lowered);
    std::fs::write(&hive.config, lowered).unwrap();
    hive.start_core();
    let echo = op.join("agent-echo").await;
    propose(&hive, "v3", &[]);
    let req2 = request_event(&op, &approvals, 2).await;
    react(&approvals, &req2, "✅").await;
    op.wait_until(&approvals, WAIT, "applied in time", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/2"))
    })
    .await;
    propose(&hive, "v4", &[]);
    let req3 = request_event(&op, &approvals, 3).await;
    op.wait_until(&approvals, WAIT, "#3 expired", |m| {
        m.iter()
            .any(|x| x.body.contains("Request #3 expired without a decision"))
    })
    .await;
    react(&approvals, &req3, "✅").await;
    op.wait_until(&control, WAIT, "the late ✅ refused", |m| {
        m.iter().any(|x| {
            x.body
                .contains("reacted ✅ to request #3 after it was expired: ignored")
        })
    })
    .await;
    op.send(&echo, "which?").await;
    op.wait_until(&echo, WAIT, "still v3", |m| {
        m.iter().any(|x| x.body == "v3: which?")
    })
    .await;
    assert_eq!(state_of(&hive, 3), "expired");
    assert_eq!(
        audit_applied(&hive, 3),
        0,
        "nothing applied after the expiry"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// Two operators, one approval required, both ✓ at the same moment: one vote approves, the
/// other finds the request no longer pending (reported, ignored), and it applies exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_approvals_apply_once() {
    let TwoOperators {
        mut hive,
        op,
        op2: _op2,
        echo,
        approvals,
        approvals2,
    } = two_operators(1).await;
    let control = op.join("hive-c0re").await;
    propose(&hive, "v2", &[]);
    let req = request_event(&op, &approvals, 1).await;
    let (a, b) = tokio::join!(
        react(&approvals, &req, "✅"),
        react(&approvals2, &req, "✅")
    );
    assert_ne!(a, b);
    op.wait_until(&approvals, WAIT, "v2 applied", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/2"))
    })
    .await;
    op.send(&echo, "x").await;
    op.wait_until(&echo, WAIT, "v2", |m| m.iter().any(|x| x.body == "v2: x"))
        .await;
    // A fence: the gate takes signals in order, so both ✓ are handled before a later one.
    inject_reaction(
        &hive,
        &approvals,
        "@mallory:localhost",
        req.as_str(),
        "$fence",
    )
    .await;
    let msgs = op
        .wait_until(&control, WAIT, "the fence's report", |m| {
            m.iter()
                .any(|x| x.body.contains("@mallory:localhost is not an operator"))
        })
        .await;
    let entries = audit_of(&hive, 1);
    assert_eq!(
        audit_applied(&hive, 1),
        1,
        "applied exactly once: {entries:#?}"
    );
    let ignored: Vec<&str> = msgs
        .iter()
        .map(|x| x.body.as_str())
        .filter(|b| b.contains("to request #1 after it was"))
        .collect();
    assert_eq!(
        ignored.len(),
        1,
        "the other ✓ found it decided: {ignored:?}"
    );
    let votes: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.action == "approve" && e.actor != "@mallory:localhost")
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    let mut outcomes: Vec<&str> = votes.iter().map(|v| v.1).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["approved", "ignored"], "{entries:#?}");
    assert_ne!(votes[0].0, votes[1].0, "one vote each: {entries:#?}");
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// A hive with echo, two operators (`@operator`, `@second`) of whom `required` must approve,
/// the core started, and the rooms each has joined.
struct TwoOperators {
    hive: TestHive,
    op: Operator,
    op2: Operator,
    echo: matrix_sdk::Room,
    approvals: matrix_sdk::Room,
    approvals2: matrix_sdk::Room,
}

async fn two_operators(required: u32) -> TwoOperators {
    let mut hive = TestHive::with_config(
        &[("echo", common::scripted("v1"))],
        &format!(
            "[operators]\nusers = [\"@operator:localhost\", \"@second:localhost\"]\n[approvals]\nrequired = {required}\n"
        ),
    )
    .await;
    let second_creds = hive.register_user("second").await;
    hive.start_core();
    let op = hive.operator().await;
    let op2 = Operator::login(&second_creds).await;
    let echo = op.join("agent-echo").await;
    let approvals = op.join("hive-approvals").await;
    let approvals2 = op2.join("hive-approvals").await;
    TwoOperators {
        hive,
        op,
        op2,
        echo,
        approvals,
        approvals2,
    }
}
