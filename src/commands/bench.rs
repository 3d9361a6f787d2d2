//! `hive bench`: the hive's cost over its homeserver, measured in one run on a throwaway hive.
//!
//! A local Synapse (test rate limits), `hive c0re` as a child process with the `external`
//! runtime, and the bench itself as every agent's harness (the same socket client `hive agent`
//! uses). A matrix-sdk client is the operator. Per message it records: the send time, when the
//! core's transaction endpoint received it (the homeserver floor) and when the harness got it
//! (the hive path). Figures are reported with their ratio to the floor measured in the same run.
//! Last, the same round trip while one more agent floods (see [`flood`]), a crash reported to the
//! manager ([`crash`]) and, on two more hives, the cross-hive hop against the raw federation hop
//! ([`federation`]).

mod approvals;
mod console;
mod crash;
mod federation;
mod flood;
mod host;
mod model;
mod model_server;
mod report;
mod scale;
mod signals;
mod startup;
use approvals::approval_rounds;
pub use host::default_cache_venv;
use host::{login, proc_cpu_ticks, proc_rss_mb, tempfile_dir};
use report::{Report, pct, print_report};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use matrix_sdk::Client;
use matrix_sdk::ruma::RoomAliasId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use tokio::sync::mpsc;

use crate::cli::BenchArgs;
use crate::config::Config;
use crate::homeserver::{self, Layout, Synapse};
use crate::store::{Store, now_us};
use crate::wire::client::SocketClient;
use crate::wire::protocol::{Request, Response};

/// Concurrent senders per agent room during the burst.
const SENDERS_PER_ROOM: usize = 4;

/// Waits until the core has recorded `event_id`; returns when it received it.
async fn wait_received(store: &Store, event_id: &str) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = store.received_us(event_id)? {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!("hive-c0re never received {event_id}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// event id → time the harness received it (µs); counts every delivery to spot duplicates.
type Deliveries = Arc<Mutex<HashMap<String, Vec<i64>>>>;

/// One operator message, alone in flight, in ms from the client's send.
struct RoundTrip {
    /// The client's own send request (PUT …/send → 200).
    send_ms: f64,
    /// → the core's transaction endpoint has it (the homeserver floor).
    floor_ms: f64,
    /// → the harness has it (the hive path).
    hive_ms: f64,
}

/// Sends `body` to `room` and waits until a harness has it (every other delivery meanwhile is
/// skipped: the bench's harnesses only get what it sends them).
async fn round_trip(
    room: &matrix_sdk::Room,
    body: String,
    store: &Store,
    rx: &mut mpsc::UnboundedReceiver<String>,
    deliveries: &Deliveries,
) -> anyhow::Result<RoundTrip> {
    let t0 = now_us();
    let ev = room
        .send(RoomMessageEventContent::text_plain(body))
        .await?
        .response
        .event_id;
    let send_ms = (now_us() - t0) as f64 / 1000.0;
    loop {
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await?
            .context("harness gone")?;
        if got == ev.as_str() {
            break;
        }
    }
    let recv = store
        .received_us(ev.as_str())?
        .context("event not recorded by the core")?;
    let harness = deliveries.lock().unwrap_or_else(|p| p.into_inner())[ev.as_str()][0];
    Ok(RoundTrip {
        send_ms,
        floor_ms: (recv - t0) as f64 / 1000.0,
        hive_ms: (harness - t0) as f64 / 1000.0,
    })
}

/// A harness's connection to agent `name`'s socket once the core opened it, past its hello.
pub(super) async fn connected(
    socket: &std::path::Path,
    name: String,
) -> anyhow::Result<SocketClient> {
    let mut c = loop {
        match SocketClient::connect(socket).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    c.call(&Request::Hello {
        agent: name,
        pid: std::process::id(),
    })
    .await?;
    Ok(c)
}

async fn fake_harness(
    socket: PathBuf,
    name: String,
    deliveries: Deliveries,
    tx: mpsc::UnboundedSender<String>,
) -> anyhow::Result<()> {
    let mut c = connected(&socket, name).await?;
    loop {
        match c.call(&Request::Next {}).await? {
            Response::Message(m) => {
                let t = now_us();
                deliveries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(m.event_id.clone())
                    .or_default()
                    .push(t);
                let _ = tx.send(m.event_id);
                c.call(&Request::Ack { id: m.id }).await?;
            }
            other => bail!("unexpected {other:?}"),
        }
    }
}

/// Starts `hive c0re` (the binary `exe`) on `config`, `data` and `bots`, its log in `log`;
/// killed when the handle drops.
pub(super) fn spawn_core(
    exe: &std::path::Path,
    config: &std::path::Path,
    data: &std::path::Path,
    bots: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<tokio::process::Child> {
    spawn_core_logging(exe, config, data, bots, log, "warn")
}

/// [`spawn_core`] with its own `RUST_LOG` (the console section counts the core's debug lines).
pub(super) fn spawn_core_logging(
    exe: &std::path::Path,
    config: &std::path::Path,
    data: &std::path::Path,
    bots: &std::path::Path,
    log: &std::path::Path,
    rust_log: &str,
) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(exe)
        .arg("c0re")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("--bots")
        .arg(bots)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()?)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.agents == 0 || args.messages == 0 {
        bail!("--agents and --messages must be at least 1");
    }
    let tmp = tempfile_dir(args.dir.as_deref())?;
    let dir = tmp.path.clone();
    let bots = dir.join("bots");
    let silent = "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nsilent = true\n";
    let names: Vec<String> = (0..args.agents).map(|i| format!("bench{i}")).collect();
    let extra = [
        "idle".to_owned(),
        flood::FLOODER.to_owned(),
        crash::MANAGER.to_owned(),
        crash::CRASHER.to_owned(),
    ];
    for n in names.iter().chain(&extra) {
        std::fs::create_dir_all(bots.join(n))?;
        std::fs::write(bots.join(n).join("agent.toml"), silent)?;
    }
    let port = |_| -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let config = dir.join("hive.toml");
    std::fs::write(
        &config,
        format!(
            "[homeserver]\nport = {}\n[appservice]\nlisten = \"127.0.0.1:{}\"\n[web]\nenabled = false\n[runtime]\nkind = \"external\"\n[limits]\nmessages_per_minute = {}\n",
            port(0)?,
            port(1)?,
            flood::MESSAGES_PER_MINUTE,
        ),
    )?;
    let cfg = Config::load(Some(&config))?;
    let data = dir.join("data");
    let registration = super::c0re::prepare_data_dir(&cfg, &data)?;
    let layout = match std::env::var_os(crate::config::env::SYNAPSE_VENV) {
        Some(v) => Layout::with_venv(&data, v.into()),
        None => Layout::with_venv(&data, default_cache_venv()),
    };
    homeserver::ensure_installed(&layout).await?;
    let configs = homeserver::render_config(
        &layout,
        &cfg,
        &registration,
        Some(homeserver::TEST_OVERRIDES),
    )?;
    eprintln!("bench: starting Synapse and hive-c0re in {}", dir.display());
    let synapse = Synapse::start(&layout, &configs, &cfg.homeserver_url).await?;
    let creds = homeserver::ensure_operator(&data, &layout, &cfg).await?;
    let exe = std::env::current_exe()?;
    let start_core = |log: &str| spawn_core(&exe, &config, &data, &bots, &dir.join(log));
    let mut core = start_core("c0re.log")?;
    let result = measure(
        &args,
        &cfg,
        &data,
        &bots,
        &names,
        &creds,
        core.id().context("core has no pid")?,
    )
    .await;
    crate::proc::stop(&mut core, Duration::from_secs(10)).await;
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            synapse.stop().await;
            return Err(e);
        }
    };
    // The sections on the same hive, restarted for each setting: the console (the floor with
    // the status message and presence off and on, see `console`), the hive's own signals (all
    // off, each alone, all on: `signals`), the model path (providers on a local streaming
    // server: `model`).
    let hive = console::Hive {
        exe: &exe,
        dir: &dir,
        config: &config,
        data: &data,
        bots: &bots,
        cfg: &cfg,
        names: &names,
        creds: &creds,
    };
    let sections = async {
        if args.console_messages > 0 {
            eprintln!(
                "bench: console, {} messages with the status message and presence off, as many on",
                args.console_messages
            );
            report.console = Some(console::run(&hive, args.console_messages).await?);
        }
        if args.signal_messages > 0 {
            eprintln!(
                "bench: signals, {} messages per setting (all off, each signal alone, all on)",
                args.signal_messages
            );
            report.signals = Some(signals::run(&hive, args.signal_messages).await?);
        }
        if args.model_calls > 0 {
            eprintln!(
                "bench: model path, {} calls per brain direct and through the hive; the prompt cache over {} turns",
                args.model_calls,
                model::TURNS
            );
            report.model = Some(model::run(&hive, args.model_calls).await?);
        }
        anyhow::Ok(())
    };
    if let Err(e) = sections.await {
        synapse.stop().await;
        return Err(e);
    }
    // The crash phase: the same hive, its harnesses started by the core (see `crash`).
    if args.crashes > 0 {
        eprintln!(
            "bench: crashes, {} kills of {}'s harness, next to {} messages to {}",
            args.crashes.min(crash::MAX_CRASHES),
            crash::CRASHER,
            args.flood_messages.max(10),
            crash::MANAGER
        );
        std::fs::write(
            &config,
            crash::crash_config(&std::fs::read_to_string(&config)?),
        )?;
        let phase = async {
            let mut core = start_core("c0re-crash.log")?;
            let client = login(&creds).await?;
            let r = crash::run(
                &cfg,
                &data,
                &client,
                args.flood_messages.max(10),
                args.crashes,
            )
            .await;
            crate::proc::stop(&mut core, Duration::from_secs(10)).await;
            r.with_context(|| format!("see {}", dir.join("c0re-crash.log").display()))
        };
        match phase.await {
            Ok(r) => report.crash = Some(r),
            Err(e) => {
                synapse.stop().await;
                return Err(e);
            }
        }
    }
    synapse.stop().await;
    // The start-up section: hives of its own, fresh, warm and after a kill -9 (see `startup`).
    if args.startup_agents > 0 {
        report.startup = Some(
            startup::run(
                &dir.join("startup"),
                &layout.venv,
                args.startup_agents,
                args.startup_before.as_deref(),
            )
            .await?,
        );
    }
    // The scale section: one hive per size, all running at once (see `scale`).
    if !args.scale.is_empty() && args.scale_samples > 0 {
        report.scale = Some(scale::run(&dir.join("scale"), &layout.venv, &args).await?);
    }
    // The federation section: two more hives, their own Synapses (see `federation`).
    if !args.no_federation && args.federation_messages > 0 {
        eprintln!(
            "bench: federation, {} cross-hive hops next to as many raw federation hops",
            args.federation_messages
        );
        report.federation = Some(
            federation::run(
                &dir.join("federation"),
                &layout.venv,
                args.federation_messages,
            )
            .await?,
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &BenchArgs,
    cfg: &Config,
    data: &Path,
    bots: &Path,
    names: &[String],
    creds: &homeserver::OperatorCredentials,
    core_pid: u32,
) -> anyhow::Result<Report> {
    let pid_file = super::pid_file(data, "c0re");
    // The first start provisions every agent's user and room: minutes for 100 on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pid_file.exists() {
        if Instant::now() > deadline {
            bail!(
                "hive-c0re did not become ready; see {}",
                data.parent().unwrap_or(data).join("c0re.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = login(creds).await?;
    let mut rooms = Vec::new();
    for n in names {
        let alias = RoomAliasId::parse(format!("#agent-{n}:{}", cfg.server_name))?;
        rooms.push(
            client
                .join_room_by_id_or_alias((&*alias).into(), &[])
                .await?,
        );
    }
    let store = Store::open(&data.join("c0re.db"))?;

    // Warm-up: first sends pay for connection set-up on every side.
    for (i, room) in rooms.iter().enumerate() {
        let ev = room
            .send(RoomMessageEventContent::text_plain(format!("warm-up {i}")))
            .await?
            .response
            .event_id;
        wait_received(&store, ev.as_str()).await?;
    }

    // The quiet floor: no harness is connected, so the hive does nothing but accept transactions
    // (no typing, no receipts, no replies loading the homeserver). This is the homeserver alone.
    eprintln!(
        "bench: homeserver floor with the hive idle, {} messages",
        args.messages
    );
    let mut quiet = Vec::new();
    let mut queued = Vec::new();
    for i in 0..args.messages {
        let room = &rooms[i % rooms.len()];
        let t0 = now_us();
        let ev = room
            .send(RoomMessageEventContent::text_plain(format!("quiet {i}")))
            .await?
            .response
            .event_id;
        let recv = wait_received(&store, ev.as_str()).await?;
        quiet.push((recv - t0) as f64 / 1000.0);
        queued.push(ev.to_string());
    }
    quiet.sort_by(f64::total_cmp);

    // Now the harnesses connect and drain what queued up (warm-up messages come first: each
    // agent's queue is delivered in order).
    let deliveries: Deliveries = Arc::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut harnesses = Vec::new();
    for n in names {
        let name = crate::agent_spec::AgentName::parse(n)?;
        let socket = crate::wire::socket_path(&crate::c0re::Core::socket_dir(data, &name));
        harnesses.push(tokio::spawn(fake_harness(
            socket,
            n.clone(),
            deliveries.clone(),
            tx.clone(),
        )));
    }
    let mut backlog: std::collections::HashSet<String> = queued.into_iter().collect();
    while !backlog.is_empty() {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await?
            .context("harness gone")?;
        backlog.remove(&ev);
    }

    // Latency: one message in flight at a time.
    eprintln!(
        "bench: latency, {} messages over {} agents",
        args.messages,
        names.len()
    );
    let mut floor = Vec::new();
    let mut hive = Vec::new();
    let mut send_rtt = Vec::new();
    for i in 0..args.messages {
        let room = &rooms[i % rooms.len()];
        let t = round_trip(room, format!("latency {i}"), &store, &mut rx, &deliveries).await?;
        send_rtt.push(t.send_ms);
        floor.push(t.floor_ms);
        hive.push(t.hive_ms);
    }
    floor.sort_by(f64::total_cmp);
    hive.sort_by(f64::total_cmp);
    send_rtt.sort_by(f64::total_cmp);

    // Throughput: a burst from several concurrent senders.
    eprintln!("bench: throughput, a burst of {}", args.burst);
    let t_start = now_us();
    let mut sent = tokio::task::JoinSet::new();
    // Several senders per room, so the homeserver, not the client, sets the pace.
    let senders = rooms.len() * SENDERS_PER_ROOM;
    let per = args.burst.div_ceil(senders);
    for k in 0..senders {
        let room = rooms[k % rooms.len()].clone();
        let count = per.min(args.burst.saturating_sub(k * per));
        sent.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..count {
                ids.push(
                    room.send(RoomMessageEventContent::text_plain(format!(
                        "burst {k}/{i}"
                    )))
                    .await?
                    .response
                    .event_id
                    .to_string(),
                );
            }
            anyhow::Ok(ids)
        });
    }
    let mut burst_ids = Vec::new();
    while let Some(r) = sent.join_next().await {
        burst_ids.extend(r??);
    }
    let want: std::collections::HashSet<&str> = burst_ids.iter().map(String::as_str).collect();
    let mut got = 0;
    while got < want.len() {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await?
            .context("harness gone")?;
        if want.contains(ev.as_str()) {
            got += 1;
        }
    }
    // Let any duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut last_recv, mut last_harness, mut duplicates) = (t_start, t_start, 0);
    {
        let d = deliveries.lock().unwrap_or_else(|p| p.into_inner());
        for id in &burst_ids {
            last_recv = last_recv.max(store.received_us(id)?.context("burst event not recorded")?);
            let times = &d[id.as_str()];
            duplicates += times.len() - 1;
            last_harness = last_harness.max(times[0]);
        }
    }
    let hs_rate = burst_ids.len() as f64 / ((last_recv - t_start) as f64 / 1e6);
    let hive_rate = burst_ids.len() as f64 / ((last_harness - t_start) as f64 / 1e6);

    // Memory and idle CPU: the core as it is now, and one real `hive agent` process, idle.
    let idle_name = crate::agent_spec::AgentName::parse("idle")?;
    let state = data.join("agents/idle/state");
    std::fs::create_dir_all(&state)?;
    let mut idle = crate::runtime::process::harness_command(None)?;
    let mut idle = idle
        .arg("--bot")
        .arg(bots.join("idle"))
        .arg("--socket")
        .arg(crate::wire::socket_path(&crate::c0re::Core::socket_dir(
            data, &idle_name,
        )))
        .arg("--state")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let idle_pid = idle.id().context("no pid")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c0, h0) = (proc_cpu_ticks(core_pid)?, proc_cpu_ticks(idle_pid)?);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (c1, h1) = (proc_cpu_ticks(core_pid)?, proc_cpu_ticks(idle_pid)?);
    let mut report = Report {
        messages: args.messages,
        agents: names.len(),
        send_p50_ms: pct(&send_rtt, 50),
        quiet_floor_p50_ms: pct(&quiet, 50),
        quiet_floor_p95_ms: pct(&quiet, 95),
        quiet_floor_p99_ms: pct(&quiet, 99),
        added_to_quiet_p50_ms: pct(&hive, 50) - pct(&quiet, 50),
        added_to_quiet_p99_ms: pct(&hive, 99) - pct(&quiet, 99),
        floor_p50_ms: pct(&floor, 50),
        floor_p95_ms: pct(&floor, 95),
        floor_p99_ms: pct(&floor, 99),
        hive_p50_ms: pct(&hive, 50),
        hive_p95_ms: pct(&hive, 95),
        hive_p99_ms: pct(&hive, 99),
        added_p50_ms: pct(&hive, 50) - pct(&floor, 50),
        added_p99_ms: pct(&hive, 99) - pct(&floor, 99),
        ratio_p50: pct(&hive, 50) / pct(&floor, 50),
        burst: burst_ids.len(),
        homeserver_msgs_per_s: hs_rate,
        hive_msgs_per_s: hive_rate,
        throughput_ratio: hive_rate / hs_rate,
        delivered: got,
        duplicates,
        core_rss_mb: proc_rss_mb(core_pid)?,
        harness_rss_mb: proc_rss_mb(idle_pid)?,
        core_idle_cpu_ticks: c1 - c0,
        harness_idle_cpu_ticks: h1 - h0,
        approvals: 0,
        reaction_floor_p50_ms: f64::NAN,
        reaction_floor_p95_ms: f64::NAN,
        approve_to_apply_p50_ms: f64::NAN,
        approve_to_apply_p95_ms: f64::NAN,
        approve_added_p50_ms: f64::NAN,
        flood: None,
        console: None,
        signals: None,
        crash: None,
        federation: None,
        startup: None,
        scale: None,
        model: None,
    };
    let _ = idle.kill().await;

    // Approvals: the operator's ✅ → the core starts applying, next to the homeserver's own
    // reaction delivery (✅ sent → the core's transaction endpoint has it), same run.
    eprintln!("bench: approvals, {} rounds", args.approvals);
    let (reaction_floor, approve) =
        approval_rounds(args, cfg, data, &client, &names[0], &store).await?;
    report.approvals = approve.len();
    report.reaction_floor_p50_ms = pct(&reaction_floor, 50);
    report.reaction_floor_p95_ms = pct(&reaction_floor, 95);
    report.approve_to_apply_p50_ms = pct(&approve, 50);
    report.approve_to_apply_p95_ms = pct(&approve, 95);
    report.approve_added_p50_ms = pct(&approve, 50) - pct(&reaction_floor, 50);

    // Flood: the operator's round trip to the last agent, idle and then while the flooder sends
    // as fast as its rate limit lets it (after the approvals, so no earlier figure sees it).
    if args.flood_messages > 0 {
        let (room, agent) = (
            rooms.last().expect("at least one agent"),
            names.last().expect("at least one agent"),
        );
        eprintln!(
            "bench: flood, {} messages to {agent} idle, then as many while {} floods",
            args.flood_messages,
            flood::FLOODER
        );
        report.flood = Some(
            flood::Phase {
                data,
                store: &store,
                room,
                agent,
                messages: args.flood_messages,
                rx: &mut rx,
                deliveries: &deliveries,
            }
            .run()
            .await?,
        );
    }
    for h in harnesses {
        h.abort();
    }
    Ok(report)
}
