//! The signals section of `hive bench`: what each kind of the hive's own homeserver traffic
//! costs the operator's round trip. The same hive is restarted with every signal off, then with
//! each alone on (read receipts, typing notices, presence, the status message), then all on
//! (the default), in [`ROUNDS`] rounds of that order, so that drift over the run falls on every
//! setting. Each round connects a harness per agent that holds every turn [`HOLD`] (past the
//! 300 ms after which a turn shows as typing and as unavailable) and sends the next message as
//! soon as the turn before it ended: an operator answering at once, the worst case for traffic
//! sent around a turn's end. Per message: send → the core's transaction endpoint (the floor)
//! and send → the harness (the hive path). The idle floor (no harness connected, the core only
//! queues) is measured at the start of each "all off" round, on the same hive.
//!
//! Each round's core logs every homeserver request (`hyperhive::matrix::client=debug`); the
//! bench counts those made while the round's messages were sent and for [`DRAIN`] after (so
//! that a deferred receipt is counted), by kind ([`kind_of`]).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use matrix_sdk::ruma::RoomAliasId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde::Serialize;
use tokio::sync::mpsc;

use super::console::Hive;
use super::host::login;
use super::{pct, wait_received};
use crate::matrix::client::LOG_CALL;
use crate::store::{Store, now_us};
use crate::wire::protocol::{Request, Response};

/// How long each bench turn is held before its ack.
pub const HOLD: Duration = Duration::from_millis(400);
/// How long after a round's last message its requests are still counted (past the receipts'
/// quiet second).
pub const DRAIN: Duration = Duration::from_millis(2500);
/// Rounds of every setting.
const ROUNDS: usize = 2;

/// One setting of the section: which signals are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    AllOff,
    Receipts,
    Typing,
    Presence,
    StatusMessage,
    AllOn,
}

impl Setting {
    pub const ALL: [Setting; 6] = [
        Setting::AllOff,
        Setting::Receipts,
        Setting::Typing,
        Setting::Presence,
        Setting::StatusMessage,
        Setting::AllOn,
    ];

    /// `[console]` of this setting: status_message, presence, typing, read_receipts.
    pub fn switches(self) -> [bool; 4] {
        match self {
            Setting::AllOff => [false, false, false, false],
            Setting::Receipts => [false, false, false, true],
            Setting::Typing => [false, false, true, false],
            Setting::Presence => [false, true, false, false],
            Setting::StatusMessage => [true, false, false, false],
            Setting::AllOn => [true, true, true, true],
        }
    }

    fn label(self) -> &'static str {
        match self {
            Setting::AllOff => "all off",
            Setting::Receipts => "read receipts only",
            Setting::Typing => "typing only",
            Setting::Presence => "presence only",
            Setting::StatusMessage => "status message only",
            Setting::AllOn => "all on (default)",
        }
    }
}

/// The hive.toml of one setting: the bench's own, with `[console]` switched.
pub fn config_with(base: &str, s: Setting) -> String {
    let [status, presence, typing, receipts] = s.switches();
    format!(
        "{base}\n[console]\nstatus_message = {status}\npresence = {presence}\ntyping = {typing}\nread_receipts = {receipts}\n"
    )
}

/// What a homeserver request was for, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Typing,
    Receipt,
    Presence,
    /// A room event sent (a message, an edit of the status message, a reaction).
    Send,
    Other,
}

/// The kind of the request to `path` (a client-server API path).
pub fn kind_of(path: &str) -> CallKind {
    if path.contains("/typing/") {
        CallKind::Typing
    } else if path.contains("/receipt/") {
        CallKind::Receipt
    } else if path.contains("/presence/") {
        CallKind::Presence
    } else if path.contains("/send/") {
        CallKind::Send
    } else {
        CallKind::Other
    }
}

/// Homeserver requests by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Calls {
    pub typing: usize,
    pub receipt: usize,
    pub presence: usize,
    pub send: usize,
    pub other: usize,
}

impl Calls {
    fn add(&mut self, o: Calls) {
        self.typing += o.typing;
        self.receipt += o.receipt;
        self.presence += o.presence;
        self.send += o.send;
        self.other += o.other;
    }
}

/// Counts the homeserver requests in (a part of) a core's log.
pub fn calls(log: &str) -> Calls {
    let mut c = Calls::default();
    for line in log.lines() {
        if !line.contains("hyperhive::matrix::client") || !line.contains(LOG_CALL) {
            continue;
        }
        let path = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("path="))
            .unwrap_or("");
        match kind_of(path) {
            CallKind::Typing => c.typing += 1,
            CallKind::Receipt => c.receipt += 1,
            CallKind::Presence => c.presence += 1,
            CallKind::Send => c.send += 1,
            CallKind::Other => c.other += 1,
        }
    }
    c
}

/// One setting's figures.
#[derive(Debug, Serialize)]
pub struct SettingReport {
    pub setting: Setting,
    pub floor_p50_ms: f64,
    pub floor_p95_ms: f64,
    pub hive_p50_ms: f64,
    pub hive_p95_ms: f64,
    /// The floor while the hive works − the idle floor, at p50: what the hive's own traffic
    /// adds to the homeserver's hop (the target: ≤ 1.5 ms).
    pub floor_added_to_idle_p50_ms: f64,
    /// Hive path − the idle floor, at p50: the above plus the core's own hop to the harness.
    pub added_to_idle_p50_ms: f64,
    /// Floor / idle floor and hive path / idle floor, at p50.
    pub floor_ratio_p50: f64,
    pub hive_ratio_p50: f64,
    /// Homeserver requests the core made while the messages were sent and just after.
    pub calls: Calls,
}

#[derive(Debug, Serialize)]
pub struct SignalsReport {
    /// Messages measured per setting.
    pub messages: usize,
    pub agents: usize,
    pub hold_ms: u64,
    pub idle_floor_p50_ms: f64,
    pub idle_floor_p95_ms: f64,
    pub settings: Vec<SettingReport>,
}

/// What a bench harness saw: a message handed out (its event id, when), a turn ended.
enum Seen {
    Got(String, i64),
    Done(String),
}

/// A harness that holds each turn [`HOLD`], then acks.
async fn holding_harness(
    socket: std::path::PathBuf,
    name: String,
    tx: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<()> {
    let mut c = super::connected(&socket, name).await?;
    loop {
        match c.call(&Request::Next {}).await? {
            Response::Message(m) => {
                if tx.send(Seen::Got(m.event_id.clone(), now_us())).is_err() {
                    return Ok(());
                }
                tokio::time::sleep(HOLD).await;
                c.call(&Request::Ack { id: m.id }).await?;
                if tx.send(Seen::Done(m.event_id)).is_err() {
                    return Ok(());
                }
            }
            other => bail!("unexpected {other:?}"),
        }
    }
}

/// Runs the section: `messages` per setting, over the hive's agents.
pub(super) async fn run(h: &Hive<'_>, messages: usize) -> anyhow::Result<SignalsReport> {
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
    let per_round = messages.div_ceil(ROUNDS);
    let mut idle = Vec::new();
    let mut got: Vec<(Vec<f64>, Vec<f64>, Calls)> = Setting::ALL
        .iter()
        .map(|_| (Vec::new(), Vec::new(), Calls::default()))
        .collect();
    for round in 0..ROUNDS {
        for (i, s) in Setting::ALL.iter().enumerate() {
            let config = h.dir.join(format!("hive-signals-{i}.toml"));
            std::fs::write(&config, config_with(&base, *s))?;
            let log = h.dir.join(format!("c0re-signals-{round}-{i}.log"));
            let mut core = super::spawn_core_logging(
                h.exe,
                &config,
                h.data,
                h.bots,
                &log,
                "warn,hyperhive::matrix::client=debug",
            )?;
            let r = measure_round(h, &rooms, per_round, *s == Setting::AllOff, &log).await;
            crate::proc::stop(&mut core, Duration::from_secs(10)).await;
            let r = r.with_context(|| {
                format!(
                    "signals round {round}, {}: see {}",
                    s.label(),
                    log.display()
                )
            })?;
            idle.extend(r.idle);
            got[i].0.extend(r.floor);
            got[i].1.extend(r.hive);
            got[i].2.add(r.calls);
        }
    }
    idle.sort_by(f64::total_cmp);
    let idle_p50 = pct(&idle, 50);
    let settings = Setting::ALL
        .iter()
        .zip(got)
        .map(|(s, (mut floor, mut hive, calls))| {
            floor.sort_by(f64::total_cmp);
            hive.sort_by(f64::total_cmp);
            SettingReport {
                setting: *s,
                floor_p50_ms: pct(&floor, 50),
                floor_p95_ms: pct(&floor, 95),
                hive_p50_ms: pct(&hive, 50),
                hive_p95_ms: pct(&hive, 95),
                floor_added_to_idle_p50_ms: pct(&floor, 50) - idle_p50,
                added_to_idle_p50_ms: pct(&hive, 50) - idle_p50,
                floor_ratio_p50: pct(&floor, 50) / idle_p50,
                hive_ratio_p50: pct(&hive, 50) / idle_p50,
                calls,
            }
        })
        .collect();
    Ok(SignalsReport {
        messages: per_round * ROUNDS,
        agents: h.names.len(),
        hold_ms: HOLD.as_millis() as u64,
        idle_floor_p50_ms: idle_p50,
        idle_floor_p95_ms: pct(&idle, 95),
        settings,
    })
}

/// What a harness saw next (a minute at most).
async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> anyhow::Result<Seen> {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await?
        .context("harness gone")
}

/// One round's samples (ms) and requests.
struct Round {
    idle: Vec<f64>,
    floor: Vec<f64>,
    hive: Vec<f64>,
    calls: Calls,
}

/// One round on a core just started: with `idle_first`, `n` messages with no harness connected
/// (the idle floor); then the harnesses connect (and drain those), and `n` messages one at a
/// time, round-robin, each sent as the turn before it ended.
async fn measure_round(
    h: &Hive<'_>,
    rooms: &[matrix_sdk::Room],
    n: usize,
    idle_first: bool,
    log: &Path,
) -> anyhow::Result<Round> {
    let pid_file = crate::commands::pid_file(h.data, "c0re");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() {
        if std::time::Instant::now() > deadline {
            bail!("hive-c0re did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = Store::open(&h.data.join("c0re.db"))?;
    let mut round = Round {
        idle: Vec::new(),
        floor: Vec::new(),
        hive: Vec::new(),
        calls: Calls::default(),
    };
    let mut queued = std::collections::HashSet::new();
    if idle_first {
        // Settle: the core's own start (joins, its notice, the space) is not the idle floor.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in 0..n {
            let room = &rooms[i % rooms.len()];
            let t0 = now_us();
            let ev = room
                .send(RoomMessageEventContent::text_plain(format!(
                    "signals idle {i}"
                )))
                .await?
                .response
                .event_id;
            let recv = wait_received(&store, ev.as_str()).await?;
            round.idle.push((recv - t0) as f64 / 1000.0);
            queued.insert(ev.to_string());
        }
    }
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
    let result = async {
        while !queued.is_empty() {
            if let Seen::Done(ev) = next(&mut rx).await? {
                queued.remove(&ev);
            }
        }
        // Settle: the harnesses connected (presence online, the status message edited).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let from = std::fs::metadata(log)?.len() as usize;
        for i in 0..n {
            let room = &rooms[i % rooms.len()];
            let t0 = now_us();
            let ev = room
                .send(RoomMessageEventContent::text_plain(format!("signals {i}")))
                .await?
                .response
                .event_id;
            let mut hive_at = None;
            loop {
                match next(&mut rx).await? {
                    Seen::Got(e, t) if e == ev.as_str() => hive_at = Some(t),
                    Seen::Done(e) if e == ev.as_str() => break,
                    _ => {}
                }
            }
            let recv = store
                .received_us(ev.as_str())?
                .context("event not recorded by the core")?;
            round.floor.push((recv - t0) as f64 / 1000.0);
            let at = hive_at.context("done before it was handed out")?;
            round.hive.push((at - t0) as f64 / 1000.0);
        }
        tokio::time::sleep(DRAIN).await;
        let text = std::fs::read(log)?;
        round.calls = calls(&String::from_utf8_lossy(
            text.get(from..).unwrap_or_default(),
        ));
        anyhow::Ok(())
    }
    .await;
    for h in harnesses {
        h.abort();
    }
    result.map(|()| round)
}

pub(super) fn print(r: &SignalsReport) {
    println!();
    println!(
        "signals ({} messages per setting over {} agents, turns held {} ms, the next sent as each ends)",
        r.messages, r.agents, r.hold_ms
    );
    println!(
        "  idle floor (no harness)  p50 {:.2}  p95 {:.2}",
        r.idle_floor_p50_ms, r.idle_floor_p95_ms
    );
    println!(
        "  setting                floor p50  hive p50  hive p95  floor−idle p50 (target)  hive−idle p50  floor/idle  hive/idle   requests per message: typing receipt presence send other"
    );
    let per = |n: usize| n as f64 / r.messages.max(1) as f64;
    for s in &r.settings {
        println!(
            "  {:<22} {:>9.2} {:>9.2} {:>9.2} {:>24.2} {:>14.2} {:>11.3} {:>10.3}   {:>6.2} {:>7.2} {:>8.2} {:>4.2} {:>5.2}",
            s.setting.label(),
            s.floor_p50_ms,
            s.hive_p50_ms,
            s.hive_p95_ms,
            s.floor_added_to_idle_p50_ms,
            s.added_to_idle_p50_ms,
            s.floor_ratio_p50,
            s.hive_ratio_p50,
            per(s.calls.typing),
            per(s.calls.receipt),
            per(s.calls.presence),
            per(s.calls.send),
            per(s.calls.other),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_request_was_for() {
        struct Case {
            name: &'static str,
            path: &'static str,
            want: CallKind,
        }
        let cases = [
            Case {
                name: "a typing notice",
                path: "/_matrix/client/v3/rooms/%21r%3Ahs/typing/%40echo%3Ahs",
                want: CallKind::Typing,
            },
            Case {
                name: "a read receipt",
                path: "/_matrix/client/v3/rooms/%21r%3Ahs/receipt/m.read/%24e",
                want: CallKind::Receipt,
            },
            Case {
                name: "a presence",
                path: "/_matrix/client/v3/presence/%40echo%3Ahs/status",
                want: CallKind::Presence,
            },
            Case {
                name: "a message or an edit",
                path: "/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/hh-1",
                want: CallKind::Send,
            },
            Case {
                name: "anything else",
                path: "/_matrix/client/v3/rooms/%21r%3Ahs/state/m.room.pinned_events/",
                want: CallKind::Other,
            },
        ];
        for c in cases {
            assert_eq!(kind_of(c.path), c.want, "{}", c.name);
        }
    }

    #[test]
    fn counting_the_requests() {
        let log = "\
2026-12-01T21:00:00Z DEBUG hyperhive::matrix::client: homeserver call method=PUT path=/_matrix/client/v3/rooms/%21r/receipt/m.read/%24e
2026-12-01T21:00:00Z DEBUG hyperhive::matrix::client: homeserver call method=PUT path=/_matrix/client/v3/rooms/%21r/typing/%40a
2026-12-01T21:00:00Z DEBUG hyperhive::matrix::client: retrying homeserver request error=boom
2026-12-01T21:00:01Z  WARN hyperhive::c0re::agents: homeserver call path=/x/typing/y in a message body
2026-12-01T21:00:02Z DEBUG hyperhive::matrix::client: homeserver call method=GET path=/_matrix/client/v3/rooms/%21r/state
";
        assert_eq!(
            calls(log),
            Calls {
                typing: 1,
                receipt: 1,
                other: 1,
                ..Calls::default()
            },
            "only the client's own lines, a retry line not counted"
        );
    }

    #[test]
    fn each_setting_switches_what_it_names() {
        let base = "[runtime]\nkind = \"external\"\n";
        for s in Setting::ALL {
            let text = config_with(base, s);
            let raw: toml::Value = toml::from_str(&text).expect("valid toml");
            let c = &raw["console"];
            let on = |k: &str| c[k].as_bool().expect("a bool");
            let got = [
                on("status_message"),
                on("presence"),
                on("typing"),
                on("read_receipts"),
            ];
            assert_eq!(got, s.switches(), "{s:?}");
            let count = got.iter().filter(|b| **b).count();
            let want = match s {
                Setting::AllOff => 0,
                Setting::AllOn => 4,
                _ => 1,
            };
            assert_eq!(count, want, "{s:?}: one signal alone");
        }
    }
}
