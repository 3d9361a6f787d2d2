//! The operator's `!hive` commands in `#hive-c0re`, end to end on a real Synapse: each command
//! answered with what it is about (not just an answer), a typo answered with usage, a
//! non-operator (a plain user, `plain.user`: a localpart no agent can have) refused in words, `stop` and `start` changing the agent's state as the store
//! and `!hive agents` see it (audited with the operator as the actor), and `hive usage --turns`
//! printing each turn's duration.

mod common;

use std::time::Duration;

use common::{Operator, Seen, TestHive, call_tool, echo_bot, hello_socket};
use matrix_sdk::Room;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);

/// Sends `command` in the control room and waits for the core's answer holding `fragment`,
/// posted after the command; returns its body.
async fn ask(op: &Operator, control: &Room, command: &str, fragment: &str) -> String {
    let sent = op.send(control, command).await;
    let msgs = op
        .wait_until(control, WAIT, &format!("an answer to {command:?}"), |m| {
            answer_after(m, sent.as_str(), fragment).is_some()
        })
        .await;
    answer_after(&msgs, sent.as_str(), fragment).expect("just seen")
}

/// The first message after event `after` whose body holds `fragment`; edits (the status
/// message is edited in place whenever an agent's state changes) are not answers.
fn answer_after(msgs: &[Seen], after: &str, fragment: &str) -> Option<String> {
    let at = msgs.iter().position(|m| m.event_id == after)?;
    msgs[at + 1..]
        .iter()
        .find(|m| m.edit_of.is_none() && m.body.contains(fragment))
        .map(|m| m.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_the_hive_from_its_control_room() {
    let echo_toml = format!("description = \"repeats what it hears\"\n{}", echo_bot(&[]));
    let mut hive = TestHive::new(&[("echo", echo_toml)]).await;
    let stranger_creds = hive.register_user("plain.user").await;
    hive.start_core();
    let op = hive.operator().await;
    let control = op.join("hive-c0re").await;
    let echo = op.join("agent-echo").await;
    let approvals = op.join("hive-approvals").await;

    // A typo is answered with usage.
    let typo = ask(&op, &control, "!hive agnets", "unrecognized subcommand").await;
    assert!(
        typo.contains("'agents'") && typo.contains("`!hive help` lists commands."),
        "{typo}"
    );
    let help = ask(&op, &control, "!hive help", "Commands:").await;
    for c in [
        "agents",
        "logs",
        "stop",
        "start",
        "restart",
        "notes",
        "usage",
        "approvals",
        "audit",
    ] {
        assert!(help.contains(&format!("  {c} ")), "{c} missing in\n{help}");
    }

    // One turn, then notes and a question kept over echo's tools socket.
    op.send(&echo, "ping").await;
    op.wait_until(&echo, WAIT, "pong", |m| m.iter().any(|x| x.body == "pong"))
        .await;
    {
        let mut tools = hello_socket(&hive, "echo", "tools.sock", WAIT).await;
        let (t, err) = call_tool(
            &mut tools,
            "write_notes",
            json!({"notes": "remember the milk"}),
        )
        .await;
        assert!(!err, "{t}");
        let (t, err) = call_tool(
            &mut tools,
            "ask_operator",
            json!({"question": "which colour for the shed?", "options": ["red", "blue"]}),
        )
        .await;
        assert!(!err, "{t}");
    }
    let question = op
        .wait_until(&approvals, WAIT, "the question posted", |m| {
            m.iter()
                .any(|x| x.body.contains("which colour for the shed?"))
        })
        .await
        .into_iter()
        .find(|x| x.body.contains("which colour for the shed?"))
        .expect("just seen");

    let agents = ask(&op, &control, "!hive agents", "| agent | state |").await;
    let row = agents
        .lines()
        .find(|l| l.starts_with("| echo |"))
        .unwrap_or_else(|| panic!("no echo row in\n{agents}"));
    assert!(
        row.starts_with("| echo | idle | scripted | - | ` repeats what it hears ` | 0 | done in "),
        "{row}"
    );

    // A secret that reached the log is redacted in the answer.
    let log_path = hive.data.join("agents/echo/agent.log");
    let token = hive.hs_token();
    {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .unwrap();
        writeln!(log, "leaked {token} here").unwrap();
    }
    let logs = ask(&op, &control, "!hive logs echo 3", "echo's log").await;
    assert!(!logs.contains(&token), "{logs}");
    assert!(logs.contains("leaked [redacted: "), "{logs}");
    let inside: Vec<&str> = logs
        .lines()
        .filter(|l| !l.starts_with("```"))
        .skip(1)
        .collect();
    assert!(logs.contains("\n```"), "fenced: {logs}");
    assert!(
        !inside.is_empty() && inside.len() <= 3,
        "at most 3 lines: {logs}"
    );
    let none = ask(&op, &control, "!hive logs nobody", "not an agent").await;
    assert!(none.contains("\"nobody\""), "{none}");

    let notes = ask(&op, &control, "!hive notes echo", "echo's notes").await;
    assert!(notes.contains("remember the milk"), "{notes}");

    let usage = ask(&op, &control, "!hive usage", "| agent | turns today |").await;
    let row = usage
        .lines()
        .find(|l| l.starts_with("| echo |"))
        .unwrap_or_else(|| panic!("no echo row in\n{usage}"));
    assert!(row.starts_with("| echo | 1 | "), "one turn today: {row}");
    assert!(
        row.ends_with("| 1 | 0 | - |"),
        "one turn this week, no model: {row}"
    );

    let open = ask(&op, &control, "!hive approvals", "**Questions**").await;
    let link = format!(
        "https://matrix.to/#/{}/{}",
        approvals.room_id(),
        question.event_id
    );
    assert!(
        open.contains("which colour for the shed?") && open.contains(&link),
        "{link} not in\n{open}"
    );

    // stop, then start: the store and `!hive agents` follow; the audit names the operator.
    let stopped = ask(&op, &control, "!hive stop echo", "stop").await;
    assert!(
        stopped.starts_with("stopped echo") || stopped.contains("is stopping"),
        "{stopped}"
    );
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    assert_eq!(
        store.wanted("echo").unwrap(),
        hyperhive::store::Wanted::Stopped
    );
    let agents = ask(&op, &control, "!hive agents", "| echo | stop").await;
    assert!(agents.contains("| echo | stopped |") || agents.contains("| echo | stopping |"));
    let again = ask(&op, &control, "!hive stop echo", "already").await;
    assert!(again.contains("echo is already stopped"), "{again}");
    let started = ask(&op, &control, "!hive start echo", "starting echo").await;
    assert!(started.contains("no message waits"), "{started}");
    assert_eq!(
        store.wanted("echo").unwrap(),
        hyperhive::store::Wanted::Running
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let agents = ask(&op, &control, "!hive agents", "| agent | state |").await;
        if agents.contains("| echo | idle |") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "echo never idle again:\n{agents}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let audit = ask(&op, &control, "!hive audit 5", "audit rows").await;
    assert!(
        audit.lines().any(|l| l.contains("@operator:localhost")
            && l.contains(" stop ")
            && l.contains(" stopped ")),
        "{audit}"
    );
    assert!(
        audit.lines().any(|l| l.contains("@operator:localhost")
            && l.contains(" start ")
            && l.contains(" started ")),
        "{audit}"
    );

    // A non-operator is refused in words, and nothing is done for it.
    let stranger_id = matrix_sdk::ruma::UserId::parse(&stranger_creds.user_id).unwrap();
    control.invite_user_by_id(&stranger_id).await.unwrap();
    let stranger = Operator::login(&stranger_creds).await;
    let their_control = stranger.join("hive-c0re").await;
    let sent = stranger.send(&their_control, "!hive stop echo").await;
    let msgs = op
        .wait_until(&control, WAIT, "the stranger refused", |m| {
            answer_after(m, sent.as_str(), "only the hive's operators").is_some()
        })
        .await;
    let refusal = answer_after(&msgs, sent.as_str(), "only the hive's operators").expect("seen");
    assert!(
        refusal.contains("@plain.user:localhost is not one"),
        "{refusal}"
    );
    assert_eq!(
        store.wanted("echo").unwrap(),
        hyperhive::store::Wanted::Running,
        "the stranger's stop did nothing"
    );
    // Nothing ran for the stranger: its one audit row is the refusal.
    let theirs: Vec<_> = store
        .audit_log(50)
        .unwrap()
        .into_iter()
        .filter(|e| e.actor.contains("plain.user"))
        .map(|e| (e.action, e.outcome, e.detail))
        .collect();
    assert_eq!(
        theirs,
        [(
            "!hive".to_owned(),
            "refused".to_owned(),
            Some("stop echo".to_owned())
        )],
        "the stranger's attempt is on the record, refused"
    );

    // `hive usage --turns`: the turn, how it ended and how long it took.
    let out = hive.hive(&["usage", "--turns", "5"]).output().unwrap();
    let turns = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = turns.lines().collect();
    assert_eq!(lines.len(), 2, "a header and echo's one turn:\n{turns}");
    assert!(
        lines[0].contains("duration") && lines[0].contains("outcome"),
        "{turns}"
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        (cols[2], cols[4], cols[6]),
        ("echo", "1", "done"),
        "{turns}"
    );
    let secs: f64 = cols[5]
        .strip_suffix('s')
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {turns}"));
    assert!((0.0..60.0).contains(&secs), "{turns}");
    assert_eq!(
        cols[9], "scripted",
        "the model column names the brain: {turns}"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}
