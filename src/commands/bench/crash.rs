//! The crash phase of `hive bench`: an agent's harness dies → the manager's harness has the
//! `container_crash` event, next to the same manager receiving an operator's message, both
//! measured in the same run by the same clock (the store's `delivered_us`).
//!
//! Every earlier phase runs on the `external` runtime (the bench is every harness, so it can
//! timestamp deliveries). A crash is reported by the core's supervisor only for a harness it
//! started, so this phase restarts hive-c0re on the default runtime (bubblewrap where it can
//! run, else plain processes) with [`MANAGER`] as the hive's manager: the core now starts a
//! real `hive agent` for each agent. The bench kills [`CRASHER`]'s harness with SIGKILL (the
//! crash's instant is the kill) and waits until the manager's harness has the report; the
//! supervisor restarts the crasher with its backoff (0.5 s, 1 s, 2 s …) before the next round.
//! At most [`MAX_CRASHES`] rounds: one more within a minute is a crash loop, which stops it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use matrix_sdk::Client;
use matrix_sdk::ruma::RoomAliasId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde::Serialize;

use super::pct;
use crate::config::Config;
use crate::store::{Store, now_us};

/// The manager of the crash phase's hive (a silent scripted agent).
pub const MANAGER: &str = "keeper";
/// The agent whose harness is killed.
pub const CRASHER: &str = "crasher";
/// Rounds at most: the supervisor stops an agent at its 5th crash within a minute.
pub const MAX_CRASHES: usize = crate::c0re::agents::supervisor::CRASH_LIMIT - 1;

/// The crash phase's figures, in ms.
#[derive(Debug, Clone, Serialize)]
pub struct CrashReport {
    pub crashes: usize,
    /// Operator's message sent → the manager's harness has it (the baseline).
    pub message_p50_ms: f64,
    pub message_max_ms: f64,
    /// The crasher's harness killed → the manager's harness has the `container_crash`.
    pub crash_p50_ms: f64,
    pub crash_max_ms: f64,
    /// `crash_p50_ms / message_p50_ms`.
    pub ratio_p50: f64,
}

/// What the bench's hive.toml becomes for this phase: `base` without its `[runtime]` section
/// (the default runtime, which starts harnesses) and with [`MANAGER`] as the only manager (an
/// `[approvals]` section of its own is replaced: a table may not be declared twice).
pub fn crash_config(base: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in base.lines() {
        if line.starts_with('[') {
            skipping = matches!(line.trim(), "[runtime]" | "[approvals]");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("[approvals]\nmanagers = [\"{MANAGER}\"]\n"));
    out
}

/// Polls `f` every 2 ms until it gives a value, for at most `secs`.
async fn poll<T>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The pid of `agent`'s connected harness, once it is connected (and not `not`).
fn connected_pid(store: &Store, agent: &str, not: Option<u32>) -> anyhow::Result<Option<u32>> {
    Ok(store
        .agent_states()?
        .into_iter()
        .find(|(n, state, _)| n == agent && state == "connected")
        .and_then(|(_, _, pid)| pid)
        .filter(|p| Some(*p) != not))
}

/// Runs the phase against a core already restarted with [`crash_config`]: `messages` baseline
/// round trips, then `crashes` kills.
pub async fn run(
    cfg: &Config,
    data: &Path,
    client: &Client,
    messages: usize,
    crashes: usize,
) -> anyhow::Result<CrashReport> {
    let store = Store::open(&data.join("c0re.db"))?;
    poll(60, "the manager's harness to connect", || {
        connected_pid(&store, MANAGER, None)
    })
    .await?;
    let mut pid = poll(60, "the crasher's harness to connect", || {
        connected_pid(&store, CRASHER, None)
    })
    .await?;
    let alias = RoomAliasId::parse(format!("#agent-{MANAGER}:{}", cfg.server_name))?;
    let room = client
        .join_room_by_id_or_alias((&*alias).into(), &[])
        .await?;

    let mut message = Vec::new();
    for i in 0..messages {
        let t0 = now_us();
        let ev = room
            .send(RoomMessageEventContent::text_plain(format!("baseline {i}")))
            .await?
            .response
            .event_id;
        let got = poll(30, "the manager to get the operator's message", || {
            store.delivered_us(ev.as_str())
        })
        .await?;
        message.push((got - t0) as f64 / 1000.0);
    }

    let mut crash = Vec::new();
    for _ in 0..crashes.min(MAX_CRASHES) {
        let t0 = now_us();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).context("a pid out of range")?),
            nix::sys::signal::Signal::SIGKILL,
        )
        .with_context(|| format!("cannot kill the crasher's harness (pid {pid})"))?;
        let got = poll(30, "the manager to get the container_crash", || {
            store.event_delivered_since(MANAGER, "container_crash", t0)
        })
        .await?;
        crash.push((got - t0) as f64 / 1000.0);
        let old = pid;
        pid = poll(60, "the crasher to be restarted", || {
            connected_pid(&store, CRASHER, Some(old))
        })
        .await?;
    }
    message.sort_by(f64::total_cmp);
    crash.sort_by(f64::total_cmp);
    Ok(CrashReport {
        crashes: crash.len(),
        message_p50_ms: pct(&message, 50),
        message_max_ms: pct(&message, 100),
        crash_p50_ms: pct(&crash, 50),
        crash_max_ms: pct(&crash, 100),
        ratio_p50: pct(&crash, 50) / pct(&message, 50),
    })
}

pub fn print(r: &CrashReport) {
    println!();
    println!(
        "crash → manager ({} crashes, ms)          p50      max",
        r.crashes
    );
    println!(
        "  operator's message → manager      {:>7.2}  {:>7.2}",
        r.message_p50_ms, r.message_max_ms
    );
    println!(
        "  harness killed → container_crash  {:>7.2}  {:>7.2}",
        r.crash_p50_ms, r.crash_max_ms
    );
    println!("  ratio crash / message at p50      {:>7.3}", r.ratio_p50);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_config_drops_the_runtime_and_names_the_manager() {
        struct Case {
            name: &'static str,
            base: &'static str,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "the bench's own config",
                base: "[homeserver]\nport = 1\n[appservice]\nlisten = \"127.0.0.1:2\"\n[runtime]\nkind = \"external\"\n[limits]\nmessages_per_minute = 120\n",
                want: "[homeserver]\nport = 1\n[appservice]\nlisten = \"127.0.0.1:2\"\n[limits]\nmessages_per_minute = 120\n[approvals]\nmanagers = [\"keeper\"]\n",
            },
            Case {
                name: "the runtime last",
                base: "[homeserver]\nport = 1\n[runtime]\nkind = \"external\"\n",
                want: "[homeserver]\nport = 1\n[approvals]\nmanagers = [\"keeper\"]\n",
            },
            Case {
                name: "an approvals section of its own is replaced",
                base: "[approvals]\nmanagers = [\"boss\"]\n[homeserver]\nport = 1\n",
                want: "[homeserver]\nport = 1\n[approvals]\nmanagers = [\"keeper\"]\n",
            },
            Case {
                name: "no runtime section",
                base: "[homeserver]\nport = 1\n",
                want: "[homeserver]\nport = 1\n[approvals]\nmanagers = [\"keeper\"]\n",
            },
        ];
        for c in cases {
            assert_eq!(crash_config(c.base), c.want, "{}", c.name);
        }
        // And the result is a config the hive loads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hive.toml");
        std::fs::write(&path, crash_config(cases_base())).unwrap();
        let cfg = Config::load(Some(&path)).unwrap();
        assert_eq!(cfg.managers[0].as_str(), MANAGER);
    }

    fn cases_base() -> &'static str {
        "[homeserver]\nport = 18008\n[appservice]\nlisten = \"127.0.0.1:18009\"\n[runtime]\nkind = \"external\"\n"
    }
}
