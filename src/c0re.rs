//! hive-c0re: the appservice. It owns the homeserver connection, the durable queue, the rooms and
//! every policy decision; agents reach it only through their sockets.
//!
//! - [`server`]: the HTTP endpoints the homeserver pushes to (transactions, queries, ping).
//! - [`routing`]: pure rules for which agent an event is for.
//! - [`rooms`]: the space and rooms, created idempotently by alias and repaired at start.
//! - [`agents`]: the per-agent unix sockets, each connection's requests, the tools.
//! - [`outbound`]: sending as an agent, under its policy.
//! - [`control`]: heartbeat, timeline reconciliation, `!hive` commands, notices.

pub mod agents;
pub mod approvals;
pub mod control;
pub mod ingest;
pub mod limits;
pub mod models;
pub mod outbound;
pub mod outbox;
pub mod registration;
pub mod rooms;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod tasks;

pub(crate) use ingest::RecentTxns;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use ruma::{OwnedRoomId, OwnedUserId, UserId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agent_spec::{AgentName, AgentSpec};
use crate::config::Config;
use crate::matrix::AsClient;
use crate::store::Store;
use registration::Tokens;
use routing::RoomRole;

/// The queue name of the core's own commands (`!hive …`); never a valid agent name.
pub const CONTROL_QUEUE: &str = "!c0re";
/// The queue of reactions and redactions in `#hive-approvals`.
pub const APPROVALS_QUEUE: &str = "!approvals";

/// A cloneable handle on the running core.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

pub struct AgentEntry {
    /// The config the agent runs now; replaced when an approved commit is applied.
    spec: RwLock<Arc<AgentSpec>>,
    pub user_id: OwnedUserId,
    /// Woken when the agent's queue gets a message (no polling anywhere).
    pub notify: Notify,
    /// Whether a harness is connected now.
    pub connected: Mutex<bool>,
    /// Asks the runtime to restart the agent (after its in-flight turn) on its current config.
    pub restart: Notify,
    /// The agent's own uid, when the hive can give it one (root, unsandboxed).
    uid: Mutex<Option<u32>>,
    /// The message its harness is handling now, and that turn's side-effecting calls.
    pub turn: Mutex<Option<agents::effects::TurnCalls>>,
}

impl AgentEntry {
    fn new(cfg: &Config, spec: AgentSpec) -> Self {
        Self {
            user_id: cfg.agent_user_id(&spec.name),
            spec: RwLock::new(Arc::new(spec)),
            notify: Notify::new(),
            connected: Mutex::new(false),
            restart: Notify::new(),
            uid: Mutex::new(None),
            turn: Mutex::new(None),
        }
    }

    /// The agent's own uid, if it has one.
    pub fn uid(&self) -> Option<u32> {
        *self.uid.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn spec(&self) -> Arc<AgentSpec> {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_spec(&self, spec: AgentSpec) {
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(spec);
    }
}

struct Inner {
    cfg: Config,
    data_dir: PathBuf,
    store: Store,
    client: AsClient,
    tokens: Tokens,
    bot: OwnedUserId,
    /// Every agent; grows when a spawn is approved.
    agents: RwLock<BTreeMap<AgentName, Arc<AgentEntry>>>,
    rooms: RwLock<RoomMap>,
    /// Transactions already answered in this run (the durable dedupe is by event id).
    txns: Mutex<RecentTxns>,
    control_notify: Notify,
    /// The approvals service: what wakes its loop, the approvals room's power levels.
    approvals: approvals::Approvals,
    /// Wakes the outbox loop: a post was recorded.
    outbox_notify: Notify,
    heartbeat: Notify,
    /// Set once the rooms are known; transactions before that are refused (and re-sent).
    ready: std::sync::atomic::AtomicBool,
    cancel: CancellationToken,
    /// What must never be posted to a room.
    secrets: secrets::SecretFilter,
    /// Every agent's rates (messages, questions, reminders).
    limiter: limits::Limiter<AgentName>,
    /// HTTP client for model calls (agents' brains), made on first use.
    model_http: std::sync::OnceLock<reqwest::Client>,
    /// How agents' harnesses are started and what the machine allows (set once at start).
    runtimes: RwLock<Option<Arc<crate::runtime::Runtimes>>>,
    /// Every agent's socket server and supervisor; waited for at shutdown.
    tasks: tokio_util::task::TaskTracker,
}

/// The hive's rooms, both ways round.
#[derive(Debug, Default, Clone)]
pub struct RoomMap {
    by_key: HashMap<String, OwnedRoomId>,
    roles: HashMap<OwnedRoomId, RoomRole>,
}

impl RoomMap {
    pub fn insert(&mut self, key: &str, room: OwnedRoomId, role: RoomRole) {
        self.by_key.insert(key.to_owned(), room.clone());
        self.roles.insert(room, role);
    }

    pub fn get(&self, key: &str) -> Option<&OwnedRoomId> {
        self.by_key.get(key)
    }

    pub fn role(&self, room: &str) -> RoomRole {
        self.roles
            .iter()
            .find(|(id, _)| id.as_str() == room)
            .map_or(RoomRole::Other, |(_, r)| r.clone())
    }

    pub fn all(&self) -> impl Iterator<Item = &OwnedRoomId> {
        self.by_key.values()
    }
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
        let limiter = limits::Limiter::new(cfg.rates);
        let store = Store::open(&data_dir.join("c0re.db"))?;
        let client = AsClient::new(&cfg.homeserver_url, tokens.as_token.clone())?;
        let agents: BTreeMap<AgentName, Arc<AgentEntry>> = specs
            .into_iter()
            .map(|spec| (spec.name.clone(), Arc::new(AgentEntry::new(&cfg, spec))))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                bot: cfg.bot_user_id(),
                cfg,
                data_dir: data_dir.to_owned(),
                store,
                client,
                tokens,
                agents: RwLock::new(agents),
                rooms: RwLock::new(RoomMap::default()),
                txns: Mutex::new(RecentTxns::default()),
                control_notify: Notify::new(),
                approvals: approvals::Approvals::new(),
                outbox_notify: Notify::new(),
                heartbeat: Notify::new(),
                ready: std::sync::atomic::AtomicBool::new(false),
                cancel,
                runtimes: RwLock::new(None),
                secrets,
                limiter,
                model_http: std::sync::OnceLock::new(),
                tasks: tokio_util::task::TaskTracker::new(),
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

    /// Counts one `kind` action of `agent` against its rate; the refusal says when to retry.
    pub fn rate(&self, agent: &AgentName, kind: limits::Kind) -> Result<(), limits::Refused> {
        self.inner
            .limiter
            .check(agent.clone(), kind, std::time::Instant::now())
    }

    pub fn set_runtimes(&self, runtimes: Arc<crate::runtime::Runtimes>) {
        *self
            .inner
            .runtimes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(runtimes);
    }

    pub fn runtimes(&self) -> Option<Arc<crate::runtime::Runtimes>> {
        self.inner
            .runtimes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.inner.tasks
    }

    /// Serves `name`'s socket and, unless the runtime is external, starts and supervises its
    /// harness. Where the agent may have a uid of its own, it gets one (recorded in the store:
    /// the same uid at every start).
    pub fn start_agent(&self, name: &AgentName) {
        let runtimes = self.runtimes();
        if let (Some(rt), Some(entry)) = (&runtimes, self.agent(name))
            && rt.host.own_uids.is_ok()
        {
            let in_use = |uid: u32| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .is_some()
            };
            match self.store().agent_uid(
                name.as_str(),
                self.cfg()
                    .uid_base
                    .unwrap_or_else(|| crate::config::default_uid_base(self.data_dir())),
                in_use,
            ) {
                Ok(uid) => *entry.uid.lock().unwrap_or_else(|p| p.into_inner()) = Some(uid),
                Err(e) => {
                    tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot allocate the agent's uid")
                }
            }
        }
        let c = self.clone();
        let n = name.clone();
        self.inner.tasks.spawn(tasks::supervised(
            format!("{name}'s socket"),
            tasks::Scope::Agent,
            tasks::Policy::default(),
            self.cancel().clone(),
            tasks::Fatal::default(),
            move || c.clone().serve_agent_socket(n.clone()),
        ));
        if let Some(rt) = runtimes {
            let c = self.clone();
            let n = name.clone();
            self.inner.tasks.spawn(tasks::supervised(
                format!("{name}'s supervisor"),
                tasks::Scope::Agent,
                tasks::Policy::default(),
                self.cancel().clone(),
                tasks::Fatal::default(),
                move || {
                    let (c, rt, n) = (c.clone(), rt.clone(), n.clone());
                    async move {
                        agents::supervisor::supervise(c, rt, n).await;
                        Ok(())
                    }
                },
            ));
        }
    }

    /// A spawned agent's first start: identity, rooms, socket, harness.
    pub async fn bring_up(&self, name: &AgentName) -> anyhow::Result<()> {
        self.set_up_new_agent(name).await?;
        self.start_agent(name);
        Ok(())
    }

    /// Records one more room (a spawned agent's inbox).
    pub fn add_room(&self, key: &str, room: OwnedRoomId, role: RoomRole) {
        self.inner
            .rooms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, room, role);
    }

    /// A snapshot of every agent.
    pub fn agents(&self) -> BTreeMap<AgentName, Arc<AgentEntry>> {
        self.inner
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn agent(&self, name: &AgentName) -> Option<Arc<AgentEntry>> {
        self.inner
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Adds a new agent (an approved spawn). False if it exists already.
    pub fn add_agent(&self, spec: AgentSpec) -> bool {
        let mut agents = self.inner.agents.write().unwrap_or_else(|p| p.into_inner());
        if agents.contains_key(&spec.name) {
            return false;
        }
        agents.insert(
            spec.name.clone(),
            Arc::new(AgentEntry::new(&self.inner.cfg, spec)),
        );
        true
    }

    /// (name, user id) of every agent, for routing.
    fn agent_ids(&self) -> Vec<(AgentName, OwnedUserId)> {
        self.inner
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, e)| (n.clone(), e.user_id.clone()))
            .collect()
    }

    pub fn rooms(&self) -> RoomMap {
        self.inner
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn room(&self, key: &str) -> Option<OwnedRoomId> {
        self.inner
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn set_rooms(&self, map: RoomMap) {
        *self.inner.rooms.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// The directory holding agent `name`'s socket (bind-mount this directory, not the file).
    pub fn socket_dir(data_dir: &Path, name: &AgentName) -> PathBuf {
        data_dir.join("agents").join(name.as_str()).join("sock")
    }

    pub fn hs_token(&self) -> &str {
        &self.inner.tokens.hs_token
    }
}

impl Core {
    /// Rooms are known: transactions can be routed from now on.
    pub fn set_ready(&self) {
        self.inner
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(std::sync::atomic::Ordering::Acquire)
    }
}
