//! Provisioning one hive of the scale section: its Synapse, its core, the bench as its agents'
//! harnesses, an idle `hive-agent` and a syncing operator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::RoomAliasId;
use matrix_sdk::ruma::events::room::message::OriginalSyncRoomMessageEvent;
use tokio::sync::mpsc;

use super::super::host::login;
use super::super::{connected, spawn_core};
use super::{IDLE, JOINS_IN_FLIGHT};
use crate::config::Config;
use crate::homeserver::{self, Layout, Synapse};
use crate::store::{Store, now_us};
use crate::wire::protocol::{Request, Response};

/// What the fake harness tells of each turn: the message's event id, when it had it, when its
/// reply was answered `sent`, and the reply's event id.
type Turn = (String, i64, i64, String);

/// One hive of the section, running.
pub(super) struct Hive {
    pub(super) agents: usize,
    pub(super) synapse: Synapse,
    pub(super) core: tokio::process::Child,
    pub(super) idle: tokio::process::Child,
    pub(super) store: Store,
    pub(super) rooms: Vec<matrix_sdk::Room>,
    pub(super) turns: mpsc::UnboundedReceiver<Turn>,
    /// Event id → when the operator's sync had it (others' events only).
    pub(super) synced: mpsc::UnboundedReceiver<(String, i64)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Hive {
    pub(super) async fn stop(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.idle.kill().await;
        crate::proc::stop(&mut self.core, Duration::from_secs(10)).await;
        self.synapse.stop().await;
    }
}

/// The bench as agent `name`'s harness: every message answered with a reply, then acked.
async fn harness(socket: PathBuf, name: String, tx: mpsc::UnboundedSender<Turn>) {
    if let Err(e) = turns(socket, name, tx).await {
        eprintln!("bench: scale harness: {e:#}");
    }
}

/// [`harness`]'s turns, until its connection fails.
async fn turns(
    socket: PathBuf,
    name: String,
    tx: mpsc::UnboundedSender<Turn>,
) -> anyhow::Result<()> {
    let mut c = connected(&socket, name).await?;
    loop {
        let m = match c.call(&Request::Next {}).await? {
            Response::Message(m) => m,
            other => bail!("unexpected {other:?}"),
        };
        let had = now_us();
        let reply = match c.call(&Request::Reply { body: "ok".into() }).await? {
            Response::Sent { event_id } => event_id,
            other => bail!("reply refused: {other:?}"),
        };
        let sent = now_us();
        c.call(&Request::Ack { id: m.id }).await?;
        // The receiver is gone only when the section is over.
        let _ = tx.send((m.event_id, had, sent, reply));
    }
}

/// Writes a hive of `agents` (and [`IDLE`]) under `dir`, starts its Synapse, its core, its
/// harnesses and its syncing operator.
pub(super) async fn provision(dir: PathBuf, venv: PathBuf, agents: usize) -> anyhow::Result<Hive> {
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let bots = dir.join("bots");
    let silent = "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nsilent = true\n";
    let names: Vec<String> = (0..agents).map(|i| format!("scale{i}")).collect();
    for n in names.iter().map(String::as_str).chain([IDLE]) {
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
    let registration = crate::commands::c0re::prepare_data_dir(&cfg, &data)?;
    let layout = Layout::with_venv(&data, venv);
    let configs = homeserver::render_config(
        &layout,
        &cfg,
        &registration,
        Some(homeserver::TEST_OVERRIDES),
    )?;
    let synapse = Synapse::start(&layout, &configs, &cfg.homeserver_url).await?;
    let creds = homeserver::ensure_operator(&data, &layout, &cfg).await?;
    let exe = std::env::current_exe()?;
    let mut core = spawn_core(&exe, &config, &data, &bots, &dir.join("c0re.log"))?;
    let pid_file = crate::commands::pid_file(&data, "c0re");
    let started = Instant::now();
    while !pid_file.exists() {
        if let Some(status) = core.try_wait()? {
            bail!("hive-c0re exited ({status}) before it was ready");
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("hive-c0re did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let socket = |n: &str| -> anyhow::Result<PathBuf> {
        let name = crate::agent_spec::AgentName::parse(n)?;
        Ok(crate::wire::socket_path(&crate::c0re::Core::socket_dir(
            &data, &name,
        )))
    };
    let (turn_tx, turns) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for n in &names {
        tasks.push(tokio::spawn(harness(
            socket(n)?,
            n.clone(),
            turn_tx.clone(),
        )));
    }
    let state = data.join("agents").join(IDLE).join("state");
    std::fs::create_dir_all(&state)?;
    let idle = crate::runtime::process::harness_command(None)?
        .arg("--bot")
        .arg(bots.join(IDLE))
        .arg("--socket")
        .arg(socket(IDLE)?)
        .arg("--state")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    // The operator joins every inbox, then syncs as a client does.
    let client = login(&creds).await?;
    let mut set = tokio::task::JoinSet::new();
    let mut rooms = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if set.len() >= JOINS_IN_FLIGHT
            && let Some(r) = set.join_next().await
        {
            rooms.push(r??);
        }
        let alias = RoomAliasId::parse(format!("#agent-{n}:{}", cfg.server_name))?;
        let client = client.clone();
        set.spawn(async move {
            let room = client
                .join_room_by_id_or_alias((&*alias).into(), &[])
                .await?;
            anyhow::Ok((i, room))
        });
    }
    while let Some(r) = set.join_next().await {
        rooms.push(r??);
    }
    rooms.sort_by_key(|r| r.0);
    let rooms = rooms.into_iter().map(|r| r.1).collect();
    let (sync_tx, synced) = mpsc::unbounded_channel();
    let me = client
        .user_id()
        .context("the operator has no user id")?
        .to_owned();
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let (tx, me) = (sync_tx.clone(), me.clone());
        async move {
            if ev.sender != me {
                let _ = tx.send((ev.event_id.to_string(), now_us()));
            }
        }
    });
    let settings = SyncSettings::default().timeout(Duration::from_secs(30));
    client.sync_once(settings.clone()).await?;
    let c = client.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = c.sync(settings).await {
            eprintln!("bench: scale operator's sync: {e}");
        }
    }));
    Ok(Hive {
        agents,
        store: Store::open(&data.join("c0re.db"))?,
        synapse,
        core,
        idle,
        rooms,
        turns,
        synced,
        tasks,
    })
}
