//! hive-c0re: the appservice. It owns the homeserver connection, the durable queue, the rooms and
//! every policy decision; agents reach it only through their sockets.
//!
//! - [`server`]: the HTTP endpoints the homeserver pushes to (transactions, queries, ping).
//! - [`routing`]: pure rules for which agent an event is for.
//! - [`rooms`]: the space and rooms, created idempotently by alias and repaired at start.
//! - [`socket`]: the per-agent unix socket and the delivery loop.
//! - [`outbound`]: sending as an agent, under its policy.
//! - [`control`]: heartbeat, timeline reconciliation, `!hive` commands, notices.

pub mod approvals;
pub mod control;
pub mod effects;
pub mod limits;
pub mod models;
pub mod outbound;
pub mod outbox;
pub mod registration;
pub mod request;
pub mod rooms;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod socket;
pub mod tools;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use ruma::{OwnedRoomId, OwnedUserId, UserId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agent_spec::{AgentName, AgentSpec};
use crate::config::Config;
use crate::matrix::AsClient;
use crate::store::{Enqueue, Store};
use registration::Tokens;
use rooms::RoomKey;
use routing::{RoomRole, SenderKind, TimelineEvent};

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
    pub turn: Mutex<Option<effects::TurnCalls>>,
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
    /// Wakes the approvals loop: a reaction arrived, a request was filed, an apply finished.
    approvals_notify: Notify,
    /// Wakes the outbox loop: a post was recorded.
    outbox_notify: Notify,
    /// The approvals room's power levels, as last fetched (cleared when they change).
    approvals_power: Mutex<Option<(std::time::Instant, serde_json::Value)>>,
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

/// The last transactions answered, as (txn id, digest of the body): a re-sent transaction is
/// answered at once without touching sqlite. The body is part of the key because Synapse
/// restarts its txn ids after a restart (synapse#14556): a reused id with new events must go
/// through. Bounded: this is a shortcut, the event-id dedupe in sqlite is the guarantee.
#[derive(Default)]
pub(crate) struct RecentTxns {
    set: HashSet<(String, [u8; 20])>,
    order: std::collections::VecDeque<(String, [u8; 20])>,
}

impl RecentTxns {
    const CAPACITY: usize = 1024;

    pub(crate) fn key(txn_id: &str, body: &[u8]) -> (String, [u8; 20]) {
        use sha1::Digest;
        (txn_id.to_owned(), sha1::Sha1::digest(body).into())
    }

    /// Records `key`; false if it was already there.
    pub(crate) fn insert(&mut self, key: (String, [u8; 20])) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    pub(crate) fn contains(&self, key: &(String, [u8; 20])) -> bool {
        self.set.contains(key)
    }

    #[cfg(test)]
    pub(crate) fn remove(&mut self, key: &(String, [u8; 20])) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }
}

/// Every secret the hive knows, labelled: the appservice tokens, the homeserver's registration
/// secret, the operator's password, every provider's key or token file, `secrets.files`. Files
/// are read bounded (a regular file of at most 64 KiB); one that cannot be read is logged and
/// not guarded. (`_specs`: keys are no longer per agent, they are hive.toml's providers'.)
fn known_secrets(cfg: &Config, data_dir: &Path, tokens: &Tokens) -> Vec<(String, String)> {
    let mut known = vec![
        (
            "the appservice's as_token".to_owned(),
            tokens.as_token.clone(),
        ),
        (
            "the appservice's hs_token".to_owned(),
            tokens.hs_token.clone(),
        ),
    ];
    if let Ok(s) = crate::homeserver::Layout::new(data_dir).shared_secret() {
        known.push(("the homeserver's registration secret".into(), s));
    }
    if let Ok(Some(op)) = crate::homeserver::OperatorCredentials::load(data_dir) {
        known.push(("the operator's password".into(), op.password));
    }
    let mut files: Vec<(String, PathBuf)> = cfg
        .secret_files
        .iter()
        .map(|p| (format!("a secret from {}", p.display()), p.clone()))
        .collect();
    for p in cfg.providers.values() {
        use crate::config::Credential;
        match &p.credential {
            Credential::ApiKey(f) => {
                files.push((format!("[providers.{}]'s API key", p.name), f.clone()))
            }
            Credential::OauthToken(f) => {
                files.push((format!("[providers.{}]'s OAuth token", p.name), f.clone()))
            }
            Credential::None => {}
        }
    }
    for (label, path) in files {
        match crate::config::read_bounded(&path, crate::config::MAX_KEY_FILE) {
            Ok(v) => known.push((label, v)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a secret file; it is not guarded")
            }
        }
    }
    known
}

/// The hive's rooms, both ways round: by the part each plays, and each room's role.
#[derive(Debug, Default, Clone)]
pub struct RoomMap {
    by_key: HashMap<RoomKey, OwnedRoomId>,
    roles: HashMap<OwnedRoomId, RoomRole>,
}

impl RoomMap {
    pub fn insert(&mut self, key: RoomKey, room: OwnedRoomId) {
        self.roles.insert(room.clone(), key.role());
        self.by_key.insert(key, room);
    }

    pub fn get(&self, key: &RoomKey) -> Option<&OwnedRoomId> {
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
        let secrets = secrets::SecretFilter::new(known_secrets(&cfg, data_dir, &tokens));
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
                approvals_notify: Notify::new(),
                outbox_notify: Notify::new(),
                approvals_power: Mutex::new(None),
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
        self.inner.tasks.spawn(async move {
            if let Err(e) = c.serve_agent_socket(n.clone()).await {
                tracing::error!(agent = %n, error = %format!("{e:#}"), "agent socket failed");
            }
        });
        if let Some(rt) = runtimes {
            let c = self.clone();
            let n = name.clone();
            self.inner
                .tasks
                .spawn(async move { crate::runtime::process::supervise(c, rt, n).await });
        }
    }

    /// A spawned agent's first start: identity, rooms, socket, harness.
    pub async fn bring_up(&self, name: &AgentName) -> anyhow::Result<()> {
        self.set_up_new_agent(name).await?;
        self.start_agent(name);
        Ok(())
    }

    /// Records one more room (a spawned agent's inbox).
    pub fn add_room(&self, key: RoomKey, room: OwnedRoomId) {
        self.inner
            .rooms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, room);
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

    pub fn room(&self, key: &RoomKey) -> Option<OwnedRoomId> {
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

    fn sender_kind(&self, user: &UserId) -> SenderKind {
        if user == self.inner.bot {
            SenderKind::Bot
        } else if self.inner.cfg.is_operator(user) {
            SenderKind::Operator
        } else {
            match self.inner.cfg.agent_of(user) {
                Some(name) if self.agent(&name).is_some() => SenderKind::Agent(name),
                _ => SenderKind::Other,
            }
        }
    }

    /// Accepts events from the homeserver (a transaction, or timeline reconciliation): routes
    /// them, then records and enqueues them in one sqlite transaction, deduplicated by event id.
    /// Wakes the agents that got something. Nothing slow happens here.
    pub fn accept(&self, events: &[TimelineEvent], received_us: i64) -> anyhow::Result<()> {
        let rooms = self.rooms();
        let agent_ids = self.agent_ids();
        let mut seen = Vec::with_capacity(events.len());
        let mut routed = Vec::new();
        for ev in events {
            seen.push((ev.event_id.clone(), ev.room_id.clone()));
            if ev.kind == control::HEARTBEAT_TYPE && ev.sender == self.inner.bot {
                self.inner.heartbeat.notify_waiters();
                continue;
            }
            let role = rooms.role(&ev.room_id);
            if role == RoomRole::Approvals && ev.kind == "m.room.power_levels" {
                // Before any reaction behind it is judged.
                *self
                    .inner
                    .approvals_power
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
            }
            let sender = self.sender_kind(&ev.sender);
            let mut targets: Vec<String> = routing::route(ev, &role, &sender, &agent_ids)
                .iter()
                .map(|a| a.to_string())
                .collect();
            if routing::control_command(ev, &role, &sender).is_some() {
                targets.push(CONTROL_QUEUE.to_owned());
            }
            if sender != SenderKind::Bot
                && let Some(signal) = routing::approval_signal(ev, &role)
            {
                routed.push(Enqueue {
                    event_id: ev.event_id.clone(),
                    room_id: ev.room_id.clone(),
                    sender: ev.sender.to_string(),
                    body: signal.to_string(),
                    origin_ts: ev.origin_server_ts,
                    agents: vec![APPROVALS_QUEUE.to_owned()],
                    hive_event: None,
                });
            }
            if !targets.is_empty() {
                // Only the core's own messages carry a core event to the agent.
                let hive_event = (sender == SenderKind::Bot)
                    .then(|| ev.content.get(routing::HIVE_EVENT_KEY))
                    .flatten()
                    .map(|e| e.to_string());
                routed.push(Enqueue {
                    event_id: ev.event_id.clone(),
                    room_id: ev.room_id.clone(),
                    sender: ev.sender.to_string(),
                    body: ev.body().unwrap_or_default().to_owned(),
                    origin_ts: ev.origin_server_ts,
                    agents: targets,
                    hive_event,
                });
            }
        }
        let woken = self.inner.store.ingest(&seen, &routed, received_us)?;
        for name in woken {
            if name == CONTROL_QUEUE {
                self.inner.control_notify.notify_one();
            } else if name == APPROVALS_QUEUE {
                self.inner.approvals_notify.notify_one();
            } else if let Some(a) = AgentName::parse(&name).ok().and_then(|n| self.agent(&n)) {
                a.notify.notify_one();
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::RecentTxns;

    #[test]
    fn recent_txns_key_on_id_and_body() {
        let mut r = RecentTxns::default();
        assert!(r.insert(RecentTxns::key("1", b"a")));
        assert!(
            !r.insert(RecentTxns::key("1", b"a")),
            "a re-send is recognised"
        );
        assert!(
            r.insert(RecentTxns::key("1", b"b")),
            "a reused id with new events is not"
        );
        r.remove(&RecentTxns::key("1", b"a"));
        assert!(
            r.insert(RecentTxns::key("1", b"a")),
            "a forgotten txn is accepted again"
        );
        for i in 0..RecentTxns::CAPACITY {
            r.insert(RecentTxns::key(&i.to_string(), b"x"));
        }
        assert!(r.set.len() <= RecentTxns::CAPACITY && r.order.len() == r.set.len());
        assert!(
            r.insert(RecentTxns::key("1", b"b")),
            "old entries are evicted"
        );
    }
}
