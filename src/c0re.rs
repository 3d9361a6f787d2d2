//! hive-c0re: the appservice. It owns the homeserver connection, the durable queue, the rooms and
//! every policy decision; agents reach it only through their sockets.
//!
//! - [`server`]: the HTTP endpoints the homeserver pushes to (transactions, queries, ping).
//! - [`routing`]: pure rules for which agent an event is for.
//! - [`rooms`]: the space and rooms, created idempotently by alias and repaired at start.
//! - [`agents`]: the per-agent unix sockets, each connection's requests, the tools.
//! - [`outbound`]: sending as an agent, under its policy.
//! - [`control`]: heartbeat, timeline reconciliation, `!hive` commands, notices.
//! - [`web`]: the web console: the operator's browser, logged in by a one-time link.

pub mod agents;
pub mod approvals;
pub mod console;
pub mod control;
pub mod events;
pub mod forge;
pub mod ingest;
pub mod limits;
pub mod mentions;
pub mod models;
pub mod outbound;
pub mod outbox;
pub mod peering;
pub mod registration;
pub mod rooms;
pub mod routing;
pub mod schedules;
pub mod secrets;
pub mod server;
pub mod signals;
pub mod tasks;
#[cfg(test)]
pub(crate) mod test_core;
pub mod turn_control;
pub mod web;

pub use agents::registry::{AgentEntry, Agents};
pub(crate) use ingest::RecentTxns;
pub use rooms::{RoomMap, Rooms};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ruma::{OwnedUserId, UserId};
use tokio_util::sync::CancellationToken;

use crate::agent_spec::{AgentName, AgentSpec};
use crate::config::Config;
use crate::matrix::AsClient;
use crate::store::Store;
use registration::Tokens;

/// The queue name of the core's own commands (`!hive …`); never a valid agent name.
pub const CONTROL_QUEUE: &str = "!c0re";
/// The queue of reactions and redactions in `#hive-approvals`.
pub const APPROVALS_QUEUE: &str = "!approvals";

/// A cloneable handle on the running core.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    data_dir: PathBuf,
    store: Store,
    client: AsClient,
    tokens: Tokens,
    bot: OwnedUserId,
    /// Every agent, their runtimes, tasks and rates; grows when a spawn is approved.
    agents: Agents,
    /// The hive's rooms by the part each plays, and whether they are known yet.
    rooms: Rooms,
    /// Transactions already answered in this run (the durable dedupe is by event id).
    txns: Mutex<RecentTxns>,
    /// The approvals service: what wakes its loop, the approvals room's power levels.
    approvals: approvals::Approvals,
    /// What wakes the control loop and the heartbeat.
    control: control::Control,
    /// What wakes the status message and presence task.
    console: console::Console,
    /// What wakes the outbox's sender.
    outbox: outbox::Outbox,
    /// The read receipts pending and the last message's arrival (`signals.rs`).
    signals: signals::Signals,
    /// Each peer's room and directory (`peering.rs`).
    peering: peering::Peering,
    /// What wakes the schedules task (`schedules.rs`).
    schedules: schedules::Scheduler,
    cancel: CancellationToken,
    /// What must never be posted to a room.
    secrets: secrets::SecretFilter,
    /// Held while the rooms' timelines are reconciled: one reconciliation at a time.
    reconciling: tokio::sync::Mutex<()>,
    /// HTTP client for model calls (agents' brains), made on first use.
    model_http: std::sync::OnceLock<reqwest::Client>,
    /// What the web console's pages keep between renders (`web/views.rs`).
    views: web::views::Views,
    web: web::Web,
    forge: forge::Forge,
}

impl Core {
    pub fn new(
        cfg: Config,
        data_dir: &Path,
        specs: Vec<AgentSpec>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let tokens = Tokens::load(data_dir)?;
        let secrets = secrets::SecretFilter::new(secrets::known(&cfg, data_dir, &tokens));
        crate::logging::guard_secrets(secrets.clone());
        let store = Store::open(&data_dir.join("c0re.db"))?;
        let client = AsClient::new(&cfg.homeserver_url, tokens.as_token.clone())?;
        let agents = Agents::new(
            specs
                .into_iter()
                .map(|spec| (cfg.agent_user_id(&spec.name), spec))
                .collect(),
            cfg.rates,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                bot: cfg.bot_user_id(),
                cfg,
                data_dir: data_dir.to_owned(),
                store,
                client,
                tokens,
                agents,
                rooms: Rooms::default(),
                txns: Mutex::new(RecentTxns::default()),
                approvals: approvals::Approvals::new(),
                control: control::Control::default(),
                console: console::Console::default(),
                outbox: outbox::Outbox::default(),
                peering: peering::Peering::default(),
                signals: signals::Signals::default(),
                schedules: schedules::Scheduler::default(),
                cancel,
                secrets,
                reconciling: tokio::sync::Mutex::new(()),
                model_http: std::sync::OnceLock::new(),
                views: web::views::Views::default(),
                web: web::Web::default(),
                forge: forge::Forge::default(),
            }),
        })
    }

    pub fn cfg(&self) -> &Config {
        &self.inner.cfg
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn client(&self) -> &AsClient {
        &self.inner.client
    }

    pub fn bot(&self) -> &UserId {
        &self.inner.bot
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub fn cancel(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    pub fn secrets(&self) -> &secrets::SecretFilter {
        &self.inner.secrets
    }

    /// Every agent, their runtimes, tasks and rates.
    pub fn agents(&self) -> &Agents {
        &self.inner.agents
    }

    /// The hive's rooms.
    pub fn rooms(&self) -> &Rooms {
        &self.inner.rooms
    }

    /// The approvals service (its wake-up, the power levels it last read).
    pub fn approvals(&self) -> &approvals::Approvals {
        &self.inner.approvals
    }

    /// What wakes the control loop and the heartbeat.
    pub fn control(&self) -> &control::Control {
        &self.inner.control
    }

    /// What wakes the status message and presence task (`console.rs`): call
    /// `console().changed()` wherever something it shows changes.
    pub fn console(&self) -> &console::Console {
        &self.inner.console
    }

    /// The courtesy traffic's state (`signals.rs`): call `signals().arrived()` when a
    /// message comes in, `signals().read(..)` when an agent has read one.
    pub fn signals(&self) -> &signals::Signals {
        &self.inner.signals
    }

    /// What wakes the outbox's sender.
    pub fn peering(&self) -> &peering::Peering {
        &self.inner.peering
    }

    pub fn outbox(&self) -> &outbox::Outbox {
        &self.inner.outbox
    }

    /// What wakes the schedules task.
    pub fn schedules(&self) -> &schedules::Scheduler {
        &self.inner.schedules
    }

    /// The web console, once it is served.
    pub fn web(&self) -> &web::Web {
        &self.inner.web
    }

    pub fn forge(&self) -> &forge::Forge {
        &self.inner.forge
    }

    /// The directory holding agent `name`'s socket (bind-mount this directory, not the file).
    pub fn socket_dir(data_dir: &Path, name: &AgentName) -> PathBuf {
        data_dir.join("agents").join(name.as_str()).join("sock")
    }

    /// What the web console's pages keep between renders: each agent room's recent messages
    /// (fed by [`Core::accept`]), each open request's rendered text.
    pub fn views(&self) -> &web::views::Views {
        &self.inner.views
    }

    pub fn hs_token(&self) -> &str {
        &self.inner.tokens.hs_token
    }
}
