//! The start-up section of `hive bench`: how long a hive takes to start, on hives of its own.
//!
//! - fresh: an empty data dir → Synapse up (its `/health`, the floor, and the operator's
//!   account) → `hive c0re` ready → every agent answers (an operator message to each inbox
//!   reaches that agent's harness), for a 1-agent hive (the baseline) and for `N` agents;
//! - warm: the same N-agent data dir, Synapse and the core restarted (as `hive up` would);
//! - kill -9: the core SIGKILLed, one message sent to each of a few agents while it is down,
//!   the core started again → every queued message at its harness, timed from the new core's
//!   start and from the kill, next to one message's round trip on the running hive.
//!
//! The core's part is split with its own log lines ([`LOG_IDENTITIES`], [`LOG_ROOMS`]: set-up
//! began → identities, → rooms known); the rest of "ready" is the reconciliation, the sockets
//! and the harnesses' start; "answered" adds the first delivery (the operator's joins and
//! sends included: the bench's own, done a handful at once).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use matrix_sdk::ruma::RoomAliasId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde::Serialize;
use tokio::sync::mpsc;

use super::host::login;
use super::{connected, spawn_core_logging};
use crate::c0re::control::reconcile::LOG_RECONCILED;
use crate::c0re::rooms::{LOG_IDENTITIES, LOG_ROOMS};
use crate::config::Config;
use crate::homeserver::{self, Layout, Synapse};
use crate::wire::protocol::{Request, Response};

/// Agents sent a message while the core is down, at most.
const KILLED_MESSAGES: usize = 10;
/// Operator requests in flight at once (joins, sends).
const OPERATOR_IN_FLIGHT: usize = 8;
/// How long any one step may take before the section fails.
const STEP: Duration = Duration::from_secs(300);

/// One start, in ms.
#[derive(Debug, Clone, Serialize)]
pub struct Start {
    /// Synapse started → `/health` answers (on a fresh dir with the operator's account made).
    pub synapse_ms: f64,
    /// The core's set-up began → every identity set up (its log).
    pub identities_ms: f64,
    /// The core's set-up began → every room known (its log).
    pub rooms_ms: f64,
    /// The timeline reconciliation after set-up (its log: how long it took).
    pub reconcile_ms: f64,
    /// `hive c0re` spawned → ready (its pid file written: rooms, reconciliation, sockets).
    pub ready_ms: f64,
    /// `hive c0re` spawned → every agent's harness has the operator's message.
    pub answered_ms: f64,
    /// The section's start (Synapse included) → every agent answered.
    pub total_ms: f64,
}

/// The kill -9 figures, in ms.
#[derive(Debug, Clone, Serialize)]
pub struct Kill {
    /// Messages sent while the core was down (one per agent).
    pub messages: usize,
    /// One message's round trip on the running hive (send → harness): the baseline.
    pub floor_ms: f64,
    /// The new core spawned → ready.
    pub ready_ms: f64,
    /// The new core spawned → every queued message at its harness.
    pub from_start_ms: f64,
    /// The queued messages sent (the core killed before them) → every queued message at its
    /// harness. The clock starts once the bench's last send is answered, so neither the bench's
    /// own work (waiting for the killed core to exit, its sends while the core is down) nor
    /// Synapse's handling of those sends is in it: only the hive's catching up.
    pub from_kill_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StartupReport {
    pub agents: usize,
    /// A 1-agent hive from an empty data dir (the baseline).
    pub one_fresh: Start,
    /// N agents from an empty data dir.
    pub fresh: Start,
    /// N agents, the same data dir, Synapse and the core restarted.
    pub warm: Start,
    pub kill: Kill,
    /// N agents fresh / 1 agent fresh (answered, from the core's spawn).
    pub fresh_ratio: f64,
    /// Warm / fresh (answered, from the core's spawn).
    pub warm_ratio: f64,
    /// Kill -9 from the new core's start / the running hive's round trip.
    pub kill_ratio: f64,
    /// The same N-agent fresh and warm starts with `--startup-before`'s build as the core.
    pub before: Option<(Start, Start)>,
}

/// One throwaway hive of the section, its Synapse and core.
struct Hive {
    dir: PathBuf,
    config: PathBuf,
    data: PathBuf,
    bots: PathBuf,
    cfg: Config,
    layout: Layout,
    configs: Vec<PathBuf>,
    names: Vec<String>,
    /// The `hive` started as the core.
    exe: PathBuf,
    synapse: Option<Synapse>,
    core: Option<tokio::process::Child>,
    /// Every delivery to a harness: (event id, when).
    rx: mpsc::UnboundedReceiver<(String, Instant)>,
    harnesses: Vec<tokio::task::JoinHandle<()>>,
    rooms: Vec<matrix_sdk::Room>,
}

/// Runs the section in `dir` with `agents` agents (and one more hive of one agent).
pub(super) async fn run(
    dir: &Path,
    venv: &Path,
    agents: usize,
    before: Option<&Path>,
) -> anyhow::Result<StartupReport> {
    let exe = std::env::current_exe()?;
    let before = match before {
        Some(old) => {
            eprintln!(
                "bench: start-up, {agents} agents from fresh and warm, {} as the core",
                old.display()
            );
            let (mut hive, f) = fresh(&dir.join("before"), venv, agents, old).await?;
            let w = hive.warm().await;
            hive.stop().await;
            Some((f, w?))
        }
        None => None,
    };
    eprintln!("bench: start-up, 1 agent from fresh");
    let (mut one, one_fresh) = fresh(&dir.join("one"), venv, 1, &exe).await?;
    one.stop().await;
    eprintln!("bench: start-up, {agents} agents from fresh");
    let (mut hive, fresh) = fresh(&dir.join("many"), venv, agents, &exe).await?;
    let result = async {
        eprintln!("bench: start-up, {agents} agents warm (Synapse and hive-c0re restarted)");
        let warm = hive.warm().await?;
        eprintln!("bench: start-up, kill -9 of hive-c0re with messages queued");
        let kill = hive.kill().await?;
        anyhow::Ok((warm, kill))
    }
    .await;
    hive.stop().await;
    let (warm, kill) = result.with_context(|| format!("see {}", dir.join("many").display()))?;
    Ok(StartupReport {
        agents,
        fresh_ratio: fresh.answered_ms / one_fresh.answered_ms,
        warm_ratio: warm.answered_ms / fresh.answered_ms,
        kill_ratio: kill.from_start_ms / kill.floor_ms,
        before,
        one_fresh,
        fresh,
        warm,
        kill,
    })
}

/// A new hive of `agents` in `dir` (emptied first), started and answering.
async fn fresh(
    dir: &Path,
    venv: &Path,
    agents: usize,
    exe: &Path,
) -> anyhow::Result<(Hive, Start)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let t0 = Instant::now();
    let bots = dir.join("bots");
    let silent = "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nsilent = true\n";
    let names: Vec<String> = (0..agents).map(|i| format!("start{i}")).collect();
    for n in &names {
        std::fs::create_dir_all(bots.join(n))?;
        std::fs::write(bots.join(n).join("agent.toml"), silent)?;
    }
    let port = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let config = dir.join("hive.toml");
    std::fs::write(
        &config,
        format!(
            "[homeserver]\nport = {}\n[appservice]\nlisten = \"127.0.0.1:{}\"\n[web]\nenabled = false\n[runtime]\nkind = \"external\"\n",
            port()?,
            port()?,
        ),
    )?;
    let cfg = Config::load(Some(&config))?;
    let data = dir.join("data");
    let registration = super::super::c0re::prepare_data_dir(&cfg, &data)?;
    let layout = Layout::with_venv(&data, venv.to_owned());
    let configs = homeserver::render_config(
        &layout,
        &cfg,
        &registration,
        Some(homeserver::TEST_OVERRIDES),
    )?;
    let synapse = Synapse::start(&layout, &configs, &cfg.homeserver_url).await?;
    homeserver::ensure_operator(&data, &layout, &cfg).await?;
    let synapse_ms = ms(t0.elapsed());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut hive = Hive {
        dir: dir.to_owned(),
        config,
        data,
        bots,
        cfg,
        layout,
        configs,
        names,
        exe: exe.to_owned(),
        synapse: Some(synapse),
        core: None,
        rx,
        harnesses: Vec::new(),
        rooms: Vec::new(),
    };
    let spawned = hive.start_core("c0re-fresh.log")?;
    for n in &hive.names {
        let name = crate::agent_spec::AgentName::parse(n)?;
        let socket = crate::wire::socket_path(&crate::c0re::Core::socket_dir(&hive.data, &name));
        hive.harnesses
            .push(tokio::spawn(harness(socket, n.clone(), tx.clone())));
    }
    let ready_ms = ms(hive.wait_ready(spawned).await?.duration_since(spawned));
    hive.join_inboxes().await?;
    let answered = hive.every_agent_answers().await?;
    let (identities_ms, rooms_ms, reconcile_ms) = split(&hive.dir.join("c0re-fresh.log"))?;
    Ok((
        hive,
        Start {
            synapse_ms,
            identities_ms,
            rooms_ms,
            reconcile_ms,
            ready_ms,
            answered_ms: ms(answered.duration_since(spawned)),
            total_ms: ms(answered.duration_since(t0)),
        },
    ))
}

impl Hive {
    /// Spawns `hive c0re` (its stale pid file removed first); returns when.
    fn start_core(&mut self, log: &str) -> anyhow::Result<Instant> {
        let pid = super::super::pid_file(&self.data, "c0re");
        if pid.exists() {
            std::fs::remove_file(&pid)?;
        }
        let t = Instant::now();
        self.core = Some(spawn_core_logging(
            &self.exe,
            &self.config,
            &self.data,
            &self.bots,
            &self.dir.join(log),
            "warn,hyperhive::c0re::rooms=info,hyperhive::c0re::control::reconcile=info",
        )?);
        Ok(t)
    }

    /// Waits until the core spawned at `since` has written its pid file (it is ready).
    async fn wait_ready(&mut self, since: Instant) -> anyhow::Result<Instant> {
        let pid = super::super::pid_file(&self.data, "c0re");
        loop {
            if pid.exists() {
                return Ok(Instant::now());
            }
            if let Some(core) = &mut self.core
                && let Some(status) = core.try_wait()?
            {
                bail!("hive-c0re exited ({status}) before it was ready");
            }
            if since.elapsed() > STEP {
                bail!("hive-c0re did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The operator joins every inbox (a handful at once).
    async fn join_inboxes(&mut self) -> anyhow::Result<()> {
        let creds = homeserver::OperatorCredentials::load(&self.data)?
            .context("the operator's credentials")?;
        let client = login(&creds).await?;
        let mut set = tokio::task::JoinSet::new();
        let mut rooms = Vec::new();
        for n in &self.names {
            if set.len() >= OPERATOR_IN_FLIGHT
                && let Some(r) = set.join_next().await
            {
                rooms.push(r??);
            }
            let alias = RoomAliasId::parse(format!("#agent-{n}:{}", self.cfg.server_name))?;
            let client = client.clone();
            set.spawn(async move {
                anyhow::Ok(
                    client
                        .join_room_by_id_or_alias((&*alias).into(), &[])
                        .await?,
                )
            });
        }
        while let Some(r) = set.join_next().await {
            rooms.push(r??);
        }
        self.rooms = rooms;
        Ok(())
    }

    /// Sends one message to each of the first `count` inboxes; their event ids.
    async fn send_each(&self, count: usize, body: &str) -> anyhow::Result<HashSet<String>> {
        let mut set = tokio::task::JoinSet::new();
        let mut ids = HashSet::new();
        for (i, room) in self.rooms.iter().take(count).enumerate() {
            if set.len() >= OPERATOR_IN_FLIGHT
                && let Some(r) = set.join_next().await
            {
                ids.insert(r??);
            }
            let room = room.clone();
            let text = format!("{body} {i}");
            set.spawn(async move {
                anyhow::Ok(
                    room.send(RoomMessageEventContent::text_plain(text))
                        .await?
                        .response
                        .event_id
                        .to_string(),
                )
            });
        }
        while let Some(r) = set.join_next().await {
            ids.insert(r??);
        }
        Ok(ids)
    }

    /// Waits until every event of `ids` reached a harness; when the last did.
    async fn delivered(&mut self, mut ids: HashSet<String>) -> anyhow::Result<Instant> {
        let mut last = Instant::now();
        while !ids.is_empty() {
            let (ev, at) = tokio::time::timeout(STEP, self.rx.recv())
                .await
                .with_context(|| format!("{} messages never reached a harness", ids.len()))?
                .context("every harness is gone")?;
            if ids.remove(&ev) {
                last = at;
            }
        }
        Ok(last)
    }

    /// One message to every agent; when the last reached its harness.
    async fn every_agent_answers(&mut self) -> anyhow::Result<Instant> {
        let ids = self.send_each(self.rooms.len(), "are you there?").await?;
        self.delivered(ids).await
    }

    /// Synapse and the core stopped and started again, as `hive up` would.
    async fn warm(&mut self) -> anyhow::Result<Start> {
        self.stop().await;
        let t0 = Instant::now();
        self.synapse =
            Some(Synapse::start(&self.layout, &self.configs, &self.cfg.homeserver_url).await?);
        let synapse_ms = ms(t0.elapsed());
        let spawned = self.start_core("c0re-warm.log")?;
        let ready_ms = ms(self.wait_ready(spawned).await?.duration_since(spawned));
        let answered = self.every_agent_answers().await?;
        let (identities_ms, rooms_ms, reconcile_ms) = split(&self.dir.join("c0re-warm.log"))?;
        Ok(Start {
            synapse_ms,
            identities_ms,
            rooms_ms,
            reconcile_ms,
            ready_ms,
            answered_ms: ms(answered.duration_since(spawned)),
            total_ms: ms(answered.duration_since(t0)),
        })
    }

    /// The core SIGKILLed with messages queued behind it, then started again.
    async fn kill(&mut self) -> anyhow::Result<Kill> {
        let t = Instant::now();
        let ids = self.send_each(1, "round trip").await?;
        let floor_ms = ms(self.delivered(ids).await?.duration_since(t));
        let count = self.rooms.len().min(KILLED_MESSAGES);
        let mut core = self.core.take().context("the core runs")?;
        core.start_kill()?;
        core.wait().await?;
        let ids = self.send_each(count, "while you were down").await?;
        // The kill clock starts here: the kill and the sends above are the bench's own work.
        let queued = Instant::now();
        let spawned = self.start_core("c0re-killed.log")?;
        let ready_ms = ms(self.wait_ready(spawned).await?.duration_since(spawned));
        let last = self.delivered(ids).await?;
        Ok(Kill {
            messages: count,
            floor_ms,
            ready_ms,
            from_start_ms: ms(last.duration_since(spawned)),
            from_kill_ms: ms(last.duration_since(queued)),
        })
    }

    /// Stops the core (SIGTERM) and Synapse; the harnesses keep trying to reconnect.
    async fn stop(&mut self) {
        if let Some(mut core) = self.core.take() {
            crate::proc::stop(&mut core, Duration::from_secs(10)).await;
        }
        if let Some(s) = self.synapse.take() {
            s.stop().await;
        }
    }
}

impl Drop for Hive {
    fn drop(&mut self) {
        for h in &self.harnesses {
            h.abort();
        }
    }
}

/// A harness for agent `name` that reconnects whenever the core goes away, and reports each
/// delivery on `tx`.
async fn harness(socket: PathBuf, name: String, tx: mpsc::UnboundedSender<(String, Instant)>) {
    loop {
        let Ok(mut c) = connected(&socket, name.clone()).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        // Until the core goes away (or says something else): then connect again.
        while let Ok(Response::Message(m)) = c.call(&Request::Next {}).await {
            if tx.send((m.event_id.clone(), Instant::now())).is_err() {
                return;
            }
            if c.call(&Request::Ack { id: m.id }).await.is_err() {
                break;
            }
        }
    }
}

/// The identities, rooms and reconciliation parts of a core's start, from its log
/// (`elapsed_ms=` of the last [`LOG_IDENTITIES`], [`LOG_ROOMS`] and [`LOG_RECONCILED`] lines;
/// NaN for a line the log lacks: an older build's core).
fn split(log: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let find = |what: &str| {
        text.lines()
            .rev()
            .find(|l| l.contains(what))
            .and_then(elapsed_ms)
            .unwrap_or(f64::NAN)
    };
    Ok((find(LOG_IDENTITIES), find(LOG_ROOMS), find(LOG_RECONCILED)))
}

/// The `elapsed_ms=N` field of a log line.
fn elapsed_ms(line: &str) -> Option<f64> {
    let rest = &line[line.find("elapsed_ms=")? + "elapsed_ms=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) fn print(r: &StartupReport) {
    println!();
    println!(
        "start-up ({} agents; ms)         Synapse identities    rooms reconcile    ready  answered    total",
        r.agents
    );
    let mut rows = vec![
        ("1 agent, fresh (baseline)", &r.one_fresh),
        ("fresh", &r.fresh),
        ("warm (both restarted)", &r.warm),
    ];
    if let Some((f, w)) = &r.before {
        rows.push(("fresh, the build before", f));
        rows.push(("warm, the build before", w));
    }
    for (label, s) in rows {
        println!(
            "  {label:<27} {:>8.0} {:>10.0} {:>8.0} {:>9.0} {:>8.0} {:>9.0} {:>8.0}",
            s.synapse_ms,
            s.identities_ms,
            s.rooms_ms,
            s.reconcile_ms,
            s.ready_ms,
            s.answered_ms,
            s.total_ms
        );
    }
    println!(
        "  fresh / 1 agent fresh {:.2}, warm / fresh {:.3} (answered, from the core's spawn)",
        r.fresh_ratio, r.warm_ratio
    );
    println!(
        "  kill -9, {} messages queued: ready {:.0}, delivered {:.0} after the new core's start ({:.0} after they were queued); a running hive's round trip {:.1} (ratio {:.1})",
        r.kill.messages,
        r.kill.ready_ms,
        r.kill.from_start_ms,
        r.kill.from_kill_ms,
        r.kill.floor_ms,
        r.kill_ratio
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_elapsed_field_is_read_from_a_log_line() {
        struct Case {
            name: &'static str,
            line: &'static str,
            want: Option<f64>,
        }
        let cases = [
            Case {
                name: "a plain line",
                line: "2026-12-01T23:00:00Z  INFO hyperhive::c0re::rooms::setup: start-up: rooms ready elapsed_ms=1234",
                want: Some(1234.0),
            },
            Case {
                name: "more fields after it",
                line: "INFO x: start-up: identities ready elapsed_ms=7 other=1",
                want: Some(7.0),
            },
            Case {
                name: "no field",
                line: "INFO x: start-up: rooms ready",
                want: None,
            },
            Case {
                name: "no digits",
                line: "INFO x: start-up: rooms ready elapsed_ms=",
                want: None,
            },
        ];
        for c in cases {
            assert_eq!(elapsed_ms(c.line), c.want, "{}", c.name);
        }
    }
}
