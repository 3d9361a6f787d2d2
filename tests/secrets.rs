//! Secrets never reach a room: an agent that tries to post a known secret, a credential-shaped
//! string, or the core's own token is refused and told why; the operator is alerted without the
//! secret; a secret in a crash log is redacted from the crash report.

mod common;

use common::{TestHive, echo_bot};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(45);
const PLANTED: &str = "hh-planted-SECRET-7f3a9c1e5b";
const PATTERN: &str = "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn leaky_py() -> String {
    format!(
        r#"#!/usr/bin/env python3
import json, os, sys
m = json.load(sys.stdin)["message"]
body = m["body"].strip()
if body == "file":
    out = {{"reply": "the key is {PLANTED}"}}
elif body == "pattern":
    out = {{"reply": "try **{PATTERN}**"}}
elif body == "token":
    # The core's own token, as an agent that got hold of it would post it.
    here = os.path.dirname(os.path.abspath(__file__))
    out = {{"reply": "hs_token: " + open(os.path.join(here, "token.txt")).read().strip()}}
elif body == "send":
    out = {{"send": [{{"to": "operator", "body": "psst {PLANTED}"}}]}}
else:
    out = {{"reply": "clean: " + body}}
print(json.dumps(out))
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_a_room() {
    let (_keys, key_file) = common::secret_file("api.key", &format!("{PLANTED}\n"));
    let mut hive = TestHive::with_config(
        &[
            (
                "leaky",
                "[brain]\nkind = \"command\"\ncommand = [\"./leaky.py\"]\n".to_owned(),
            ),
            ("hm1nd", echo_bot(&[])),
            (
                "crashy",
                format!(
                    "[brain]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo oops {PLANTED} >&2; kill -9 $PPID\"]\n"
                ),
            ),
        ],
        &format!("[secrets]\nfiles = [{key_file:?}]\n"),
    )
    .await;
    let script = hive.bots.join("leaky/leaky.py");
    std::fs::write(&script, leaky_py()).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // A sandboxed agent cannot read the core's token (tests/sandbox.rs): hand it one, as if it
    // had got hold of it, to show the filter stops it anyway.
    std::fs::write(hive.bots.join("leaky/token.txt"), hive.hs_token()).unwrap();
    hive.start_core();
    let hs_token = hive.hs_token();
    let op = hive.operator().await;
    let leaky = op.join("agent-leaky").await;
    let crashy = op.join("agent-crashy").await;
    let hm1nd = op.join("agent-hm1nd").await;
    let control = op.join("hive-c0re").await;

    for (ask, label) in [
        ("file", "a secret from"),
        ("pattern", "an Anthropic API key"),
        ("token", "the appservice's hs_token"),
    ] {
        op.send(&leaky, ask).await;
        op.wait_until(&leaky, WAIT, ask, |m| {
            m.iter().any(|x| {
                x.body.starts_with("⚠️ leaky could not handle this message")
                    && x.body.contains("not posted: the message contains")
                    && x.body.contains(label)
            })
        })
        .await;
    }
    op.send(&leaky, "send").await;
    op.wait_until(&leaky, WAIT, "refused send", |m| {
        m.iter().any(|x| {
            x.body
                .starts_with("I could not send that to operator: not posted")
        })
    })
    .await;
    op.wait_until(&control, WAIT, "alerts", |m| {
        m.iter()
            .filter(|x| {
                x.body
                    .starts_with("🔒 A message from **leaky** was not posted")
            })
            .count()
            == 4
    })
    .await;
    // Clean messages still flow.
    op.send(&leaky, "hello").await;
    op.wait_until(&leaky, WAIT, "clean", |m| {
        m.iter().any(|x| x.body == "clean: hello")
    })
    .await;

    // A secret in a crash log is redacted from the manager's crash report.
    op.send(&crashy, "boom").await;
    op.wait_until(&hm1nd, WAIT, "the crash report", |m| {
        m.iter().any(|x| {
            x.body.starts_with("container_crash: **crashy**")
                && x.body.contains("[redacted: a secret from")
        })
    })
    .await;

    // Nothing anywhere holds a secret, in plain text or in formatted_body.
    let seen = op.seen.lock().unwrap().clone();
    assert!(seen.len() > 10);
    for m in &seen {
        for text in [Some(&m.body), m.formatted.as_ref()].into_iter().flatten() {
            for secret in [PLANTED, PATTERN, hs_token.as_str()] {
                assert!(
                    !text.contains(secret),
                    "a secret reached {}: {text}",
                    m.room
                );
            }
        }
    }
    assert_eq!(hive.stop_core().code(), Some(0));
}
