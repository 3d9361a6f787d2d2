//! The console section of `hive bench`: the homeserver floor (send → the core's transaction
//! endpoint has it) with the status message and presence off, then on (`[console]` in
//! hive.toml), in two alternating rounds each on the same hive, so that drift over the run falls
//! on both. Each turn is held [`HOLD`] (longer than the 300 ms after which an agent shows as
//! unavailable), and the next message is sent [`SPACING`] after the turn ended (longer than the
//! 1 s out of a turn after which it shows online again), so that with the console on every
//! message costs two presence changes and the status message is edited as often as its gap
//! allows: the worst case for the floor. The core of each round logs every presence set and
//! status message sent (debug lines of `hyperhive::c0re::console`); the bench counts them, and a
//! round "on" with no presence set or no status message sent is an error: it measured nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use matrix_sdk::ruma::RoomAliasId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde::Serialize;
use tokio::sync::mpsc;

use super::host::login;
use super::pct;
use super::wait_received;
use crate::c0re::console::{LOG_PRESENCE_SET, LOG_STATUS_SENT, pace};
use crate::config::Config;
use crate::homeserver::OperatorCredentials;
use crate::store::{Store, now_us};
use crate::wire::protocol::{Request, Response};

/// How long each bench turn is held before its ack.
pub const HOLD: Duration = Duration::from_millis(400);
/// How long after a turn's end the next message is sent: past [`pace::THINK_AFTER`] +
/// [`pace::ONLINE_AFTER`], so the agent is back `online` (one presence change) before its next
/// turn makes it `unavailable` (the other).
pub const SPACING: Duration = Duration::from_millis(1500);
/// Rounds per setting (off, on, off, on).
const ROUNDS: usize = 2;

#[derive(Debug, Serialize)]
pub struct ConsoleReport {
    /// Messages measured per setting.
    pub messages: usize,
    pub hold_ms: u64,
    /// The gap between a turn's end and the next message.
    pub spacing_ms: u64,
    /// Presence sets and status message posts/edits the core made in the rounds "on" (with
    /// the harnesses' connecting and the rounds' end included).
    pub on_presence_sets: usize,
    pub on_status_sent: usize,
    /// The floor with `[console]` off (the baseline of this section).
    pub off_floor_p50_ms: f64,
    pub off_floor_p95_ms: f64,
    /// The floor with the status message and presence on.
    pub on_floor_p50_ms: f64,
    pub on_floor_p95_ms: f64,
    /// On / off.
    pub ratio_p50: f64,
    pub ratio_p95: f64,
}

/// What the section needs of the bench's hive.
pub(super) struct Hive<'a> {
    pub exe: &'a Path,
    pub dir: &'a Path,
    pub config: &'a Path,
    pub data: &'a Path,
    pub bots: &'a Path,
    pub cfg: &'a Config,
    pub names: &'a [String],
    pub creds: &'a OperatorCredentials,
}

/// What a round's core did for the console, counted from its log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub presence_sets: usize,
    pub status_sent: usize,
}

/// Counts the console's debug lines in a core's log.
pub fn traffic(log: &str) -> Traffic {
    let mut t = Traffic::default();
    for line in log.lines() {
        if !line.contains("hyperhive::c0re::console") {
            continue;
        }
        if line.contains(LOG_PRESENCE_SET) {
            t.presence_sets += 1;
        } else if line.contains(LOG_STATUS_SENT) {
            t.status_sent += 1;
        }
    }
    t
}

/// Whether a round's traffic shows the console worked: a round "on" with no presence set or
/// no status message sent measured nothing; a round "off" must have none.
pub fn round_ok(on: bool, t: Traffic) -> Result<(), RoundFault> {
    match (on, t.presence_sets, t.status_sent) {
        (true, 0, _) => Err(RoundFault::NoPresence),
        (true, _, 0) => Err(RoundFault::NoStatus),
        (false, p, s) if p + s > 0 => Err(RoundFault::WorkedWhileOff(t)),
        _ => Ok(()),
    }
}

/// Why a round's figures are not figures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoundFault {
    #[error("no presence was set with the console on")]
    NoPresence,
    #[error("no status message was sent with the console on")]
    NoStatus,
    #[error("the console worked while switched off ({0:?})")]
    WorkedWhileOff(Traffic),
}

/// The hive.toml of one setting: the bench's own, with `[console]` switched.
fn config_with(base: &str, on: bool) -> String {
    format!("{base}\n[console]\nstatus_message = {on}\npresence = {on}\n")
}

/// A harness that holds each turn [`HOLD`], then acks and says which event it handled.
async fn holding_harness(
    socket: PathBuf,
    name: String,
    done: mpsc::UnboundedSender<String>,
) -> anyhow::Result<()> {
    let mut c = super::connected(&socket, name).await?;
    loop {
        match c.call(&Request::Next {}).await? {
            Response::Message(m) => {
                tokio::time::sleep(HOLD).await;
                c.call(&Request::Ack { id: m.id }).await?;
                if done.send(m.event_id).is_err() {
                    return Ok(());
                }
            }
            other => bail!("unexpected {other:?}"),
        }
    }
}

/// Runs the section: `messages` per setting, over the hive's agents.
pub(super) async fn run(h: &Hive<'_>, messages: usize) -> anyhow::Result<ConsoleReport> {
    let base = std::fs::read_to_string(h.config)?;
    let client = login(h.creds).await?;
    let mut rooms = Vec::new();
    for n in h.names {
        let alias = RoomAliasId::parse(format!("#agent-{n}:{}", h.cfg.server_name))?;
        rooms.push(
            client
                .join_room_by_id_or_alias((&*alias).into(), &[])
                .await?,
        );
    }
    // The spacing must let the agent go back online between turns (see [`SPACING`]).
    const _: () = assert!(
        SPACING.as_millis() > pace::THINK_AFTER.as_millis() + pace::ONLINE_AFTER.as_millis()
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut on_traffic = Traffic::default();
    let per_round = messages.div_ceil(ROUNDS);
    for round in 0..ROUNDS * 2 {
        let switched_on = round % 2 == 1;
        let config = h.dir.join(format!("hive-console-{switched_on}.toml"));
        std::fs::write(&config, config_with(&base, switched_on))?;
        let log = h.dir.join(format!("c0re-console-{round}.log"));
        let mut core = spawn_console_core(h, &config, &log)?;
        let floors = measure_round(h, &rooms, per_round).await;
        crate::proc::stop(&mut core, Duration::from_secs(10)).await;
        let floors = floors.with_context(|| format!("see {}", log.display()))?;
        let t = traffic(&std::fs::read_to_string(&log)?);
        if let Err(e) = round_ok(switched_on, t) {
            bail!("console round {round}: {e}; see {}", log.display());
        }
        if switched_on {
            on_traffic.presence_sets += t.presence_sets;
            on_traffic.status_sent += t.status_sent;
        }
        if switched_on {
            on.extend(floors);
        } else {
            off.extend(floors);
        }
    }
    off.sort_by(f64::total_cmp);
    on.sort_by(f64::total_cmp);
    Ok(ConsoleReport {
        messages: off.len(),
        hold_ms: HOLD.as_millis() as u64,
        spacing_ms: SPACING.as_millis() as u64,
        on_presence_sets: on_traffic.presence_sets,
        on_status_sent: on_traffic.status_sent,
        off_floor_p50_ms: pct(&off, 50),
        off_floor_p95_ms: pct(&off, 95),
        on_floor_p50_ms: pct(&on, 50),
        on_floor_p95_ms: pct(&on, 95),
        ratio_p50: pct(&on, 50) / pct(&off, 50),
        ratio_p95: pct(&on, 95) / pct(&off, 95),
    })
}

/// The bench's core ([`super::spawn_core`]) with the console's debug lines logged, to be counted.
fn spawn_console_core(
    h: &Hive<'_>,
    config: &Path,
    log: &Path,
) -> anyhow::Result<tokio::process::Child> {
    super::spawn_core_logging(
        h.exe,
        config,
        h.data,
        h.bots,
        log,
        "warn,hyperhive::c0re::console=debug",
    )
}

/// One round on a core just started: harnesses connected, then `n` messages one at a time,
/// each [`SPACING`] after the turn before it ended. Returns each message's floor (ms).
async fn measure_round(
    h: &Hive<'_>,
    rooms: &[matrix_sdk::Room],
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let pid_file = crate::commands::pid_file(h.data, "c0re");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() {
        if std::time::Instant::now() > deadline {
            bail!("hive-c0re did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = Store::open(&h.data.join("c0re.db"))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut harnesses = Vec::new();
    for name in h.names {
        let agent = crate::agent_spec::AgentName::parse(name)?;
        let socket = crate::wire::socket_path(&crate::c0re::Core::socket_dir(h.data, &agent));
        harnesses.push(tokio::spawn(holding_harness(
            socket,
            name.clone(),
            tx.clone(),
        )));
    }
    // Settle: the harnesses connect (with the console on: online, the status message edited).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut floors = Vec::with_capacity(n);
    let result = async {
        for i in 0..n {
            let room = &rooms[i % rooms.len()];
            let t0 = now_us();
            let ev = room
                .send(RoomMessageEventContent::text_plain(format!("console {i}")))
                .await?
                .response
                .event_id;
            let recv = wait_received(&store, ev.as_str()).await?;
            floors.push((recv - t0) as f64 / 1000.0);
            loop {
                let done = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await?
                    .context("harness gone")?;
                if done == ev.as_str() {
                    break;
                }
            }
            tokio::time::sleep(SPACING).await;
        }
        anyhow::Ok(())
    }
    .await;
    for h in harnesses {
        h.abort();
    }
    result.map(|()| floors)
}

pub(super) fn print(c: &ConsoleReport) {
    println!();
    println!(
        "console ({} messages per setting, turns held {} ms, {} ms apart)  p50      p95",
        c.messages, c.hold_ms, c.spacing_ms
    );
    println!(
        "  floor, status message and presence off  {:>7.2}  {:>7.2}",
        c.off_floor_p50_ms, c.off_floor_p95_ms
    );
    println!(
        "  floor, status message and presence on   {:>7.2}  {:>7.2}",
        c.on_floor_p50_ms, c.on_floor_p95_ms
    );
    println!(
        "  ratio on / off                          {:>7.3}  {:>7.3}",
        c.ratio_p50, c.ratio_p95
    );
    println!(
        "  with the console on: {} presence sets, {} status messages sent",
        c.on_presence_sets, c.on_status_sent
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_the_console_traffic() {
        let log = "\
2026-12-01T21:00:00Z DEBUG hyperhive::c0re::console::presence: presence set agent=bench0 presence=Online
2026-12-01T21:00:00Z DEBUG hyperhive::c0re::console::message: status message sent event_id=$a edit=false
2026-12-01T21:00:01Z DEBUG hyperhive::c0re::console::presence: presence set agent=bench0 presence=Unavailable
2026-12-01T21:00:01Z  WARN hyperhive::c0re::agents: a message body that says presence set
2026-12-01T21:00:02Z DEBUG hyperhive::c0re::console::message: status message sent event_id=$a edit=true
";
        assert_eq!(
            traffic(log),
            Traffic {
                presence_sets: 2,
                status_sent: 2
            },
            "only the console's own lines"
        );
        assert_eq!(traffic(""), Traffic::default(), "an empty log");
    }

    #[test]
    fn a_round_measured_something() {
        struct Case {
            name: &'static str,
            on: bool,
            t: Traffic,
            ok: bool,
        }
        let t = |presence_sets, status_sent| Traffic {
            presence_sets,
            status_sent,
        };
        let cases = [
            Case {
                name: "on, both worked",
                on: true,
                t: t(40, 8),
                ok: true,
            },
            Case {
                name: "on, no presence: an error, not a figure",
                on: true,
                t: t(0, 8),
                ok: false,
            },
            Case {
                name: "on, no status message: an error",
                on: true,
                t: t(40, 0),
                ok: false,
            },
            Case {
                name: "off, nothing: right",
                on: false,
                t: t(0, 0),
                ok: true,
            },
            Case {
                name: "off, yet presence set: the switch did not take",
                on: false,
                t: t(3, 0),
                ok: false,
            },
        ];
        for c in cases {
            let got = round_ok(c.on, c.t);
            assert_eq!(got.is_ok(), c.ok, "{}: {got:?}", c.name);
        }
    }
}
