//! Resource limits of the bwrap runtime, end to end on a real Synapse: agent `hog`
//! (`[resources] memory = "64M"`, a command brain) shows its sandbox's `RLIMIT_DATA` (twice the
//! limit), then eats 1.5× its limit and holds it: the core's watchdog kills its whole sandbox,
//! says so in `#hive-c0re`, and the agent starts again, while `echo` answers throughout. Agent
//! `plain` (no `[resources]`) gets the hive's default (2 GiB: `RLIMIT_DATA` of 4 GiB).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestHive, echo_bot};
use hyperhive::runtime::limits::Mechanism;

const WAIT: Duration = Duration::from_secs(90);

const BRAIN: &str = r#"#!/usr/bin/env python3
import json, sys, time
req = json.load(sys.stdin)
body = req["message"]["body"]
if body == "limits":
    line = [l for l in open("/proc/self/limits") if l.startswith("Max data size")][0]
    cgroup = open("/proc/self/cgroup").read().strip().split("::")[-1]
    print(json.dumps({"reply": "data: " + line.split()[3] + " cgroup: " + cgroup}))
elif body == "eat":
    chunks = []
    while len(chunks) * 8 < 96:
        b = bytearray(8 << 20)
        b[::4096] = b"\x01" * len(range(0, 8 << 20, 4096))
        chunks.append(b)
    time.sleep(60)
    print(json.dumps({"reply": "still here"}))
else:
    print(json.dumps({"reply": "?"}))
"#;

const COMMAND: &str = "[brain]\nkind = \"command\"\ncommand = [\"./brain.py\"]\n";

/// Host pids whose working directory is `dir` (the sandbox's processes: bwrap `--chdir`s there).
fn pids_in(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            (std::fs::read_link(e.path().join("cwd")).ok()? == dir).then_some(pid)
        })
        .collect()
}

fn starts(hive: &TestHive, agent: &str) -> usize {
    hive.core_log()
        .lines()
        .filter(|l| l.contains("agent started") && l.contains(&format!("agent={agent}")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_stops_a_hog_and_the_hive_goes_on() {
    if let Err(e) = hyperhive::runtime::bwrap::ensure_installed() {
        panic!("the bwrap runtime cannot be tested: {e:#}");
    }
    let mut hive = TestHive::with_config(
        &[
            ("hog", format!("{COMMAND}[resources]\nmemory = \"64M\"\n")),
            ("plain", COMMAND.to_owned()),
            ("echo", echo_bot(&[])),
        ],
        "[runtime]\nkind = \"bwrap\"\n",
    )
    .await;
    common::write_script(&hive.bots.join("hog"), "brain.py", BRAIN);
    common::write_script(&hive.bots.join("plain"), "brain.py", BRAIN);
    hive.start_core();
    let op = hive.operator().await;
    let control = op.join("hive-c0re").await;

    // The backstop inside the sandbox, as this machine enforces it, at twice the limit (the
    // watchdog acts at the limit): without systemd `RLIMIT_DATA`, in a systemd scope the
    // scope's `memory.max` (an override for hog, the default for plain).
    let mechanism =
        hyperhive::runtime::limits::mechanism(hyperhive::runtime::limits::Facts::gather());
    for (agent, limit) in [("hog", 64u64 << 20), ("plain", 2 << 30)] {
        let room = op.join(&format!("agent-{agent}")).await;
        op.send(&room, "limits").await;
        let said = op
            .wait_until(&room, WAIT, "the sandbox's limits", |m| {
                m.iter().any(|x| x.body.starts_with("data: "))
            })
            .await;
        let said = &said
            .iter()
            .find(|x| x.body.starts_with("data: "))
            .unwrap()
            .body;
        let (data, cgroup) = said
            .strip_prefix("data: ")
            .and_then(|r| r.split_once(" cgroup: "))
            .unwrap_or_else(|| panic!("{agent} said {said}"));
        match mechanism {
            Mechanism::Rlimits => {
                assert_eq!(data, (2 * limit).to_string(), "{agent}'s RLIMIT_DATA")
            }
            Mechanism::SystemdScope { .. } => {
                let max = std::fs::read_to_string(format!("/sys/fs/cgroup{cgroup}/memory.max"))
                    .unwrap_or_else(|e| panic!("{agent}'s scope {cgroup}: {e}"));
                assert_eq!(
                    max.trim(),
                    (2 * limit).to_string(),
                    "{agent}'s scope MemoryMax"
                );
            }
        }
    }

    let state = hive.data.join("agents/hog/state").canonicalize().unwrap();
    let before = pids_in(&state);
    assert!(
        !before.is_empty(),
        "hog's sandbox runs in {}",
        state.display()
    );
    let starts_before = starts(&hive, "hog");
    let hog = op.join("agent-hog").await;
    op.send(&hog, "eat").await;
    let report = op
        .wait_until(&control, WAIT, "the memory report", |m| {
            m.iter()
                .any(|x| x.body.contains("🧠 **hog** used") && x.body.contains("limit of 64 MiB"))
        })
        .await;
    let body = &report
        .iter()
        .find(|x| x.body.contains("🧠 **hog**"))
        .unwrap()
        .body;
    assert!(body.contains("`[resources] memory`"), "{body}");

    // The whole old sandbox is gone, and hog starts again.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left: Vec<i32> = pids_in(&state)
            .into_iter()
            .filter(|p| before.contains(p))
            .collect();
        let restarted = starts(&hive, "hog") > starts_before;
        if left.is_empty() && restarted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old pids left {left:?}, restarted {restarted}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The hive goes on: echo answers.
    let echo = op.join("agent-echo").await;
    op.send(&echo, "ping").await;
    op.wait_until(&echo, WAIT, "echo's pong", |m| {
        m.iter().any(|x| x.body == "pong")
    })
    .await;
}
