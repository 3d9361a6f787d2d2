//! Every agent of the hive, owned in one place: each agent's entry (the config it runs now,
//! what wakes its delivery loop, its uid, the turn in flight), how harnesses are started on
//! this machine, the agents' tasks and their rates. [`Agents`] grows when a spawn is approved
//! and shrinks when a destroy is ([`Agents::remove`]: its tasks are told to end); an entry is
//! never replaced, so an `Arc<AgentEntry>` handed out stays the agent's (a revived agent gets
//! a new one).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use ruma::OwnedUserId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent_spec::{AgentName, AgentSpec};
use crate::c0re::limits::{self, Limiter};
use crate::runtime::Runtimes;

use super::effects::TurnCalls;

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
    pub turn: Mutex<Option<TurnCalls>>,
    /// What a manager wants of its harness (`stop`/`start`), watched by its supervisor.
    pub control: super::lifecycle::Control,
    /// Its harness process as the supervisor started it: what a cancelled turn kills.
    pub harness: crate::c0re::turn_control::cancel::HarnessProc,
    /// Cancelled when the agent leaves the registry (destroyed): its socket closes.
    removed: CancellationToken,
    /// What its tasks' supervision waits on ([`AgentEntry::tie_tasks`]): cancelled on removal
    /// before `removed`, so a task that ends then is not restarted.
    tasks: Mutex<Option<CancellationToken>>,
}

impl AgentEntry {
    fn new(user_id: OwnedUserId, spec: AgentSpec) -> Self {
        Self {
            user_id,
            spec: RwLock::new(Arc::new(spec)),
            notify: Notify::new(),
            connected: Mutex::new(false),
            restart: Notify::new(),
            uid: Mutex::new(None),
            turn: Mutex::new(None),
            control: Default::default(),
            harness: Default::default(),
            removed: CancellationToken::new(),
            tasks: Mutex::new(None),
        }
    }

    /// `tasks` ends the agent's supervised tasks: cancelled when it leaves the registry.
    pub fn tie_tasks(&self, tasks: CancellationToken) {
        *self.tasks.lock().unwrap_or_else(|p| p.into_inner()) = Some(tasks);
    }

    /// Cancelled once the agent has left the registry.
    pub fn removed(&self) -> &CancellationToken {
        &self.removed
    }

    /// The agent's own uid, if it has one.
    pub fn uid(&self) -> Option<u32> {
        *self.uid.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the agent its own uid (allocated once, recorded in the store).
    pub fn set_uid(&self, uid: u32) {
        *self.uid.lock().unwrap_or_else(|p| p.into_inner()) = Some(uid);
    }

    pub fn spec(&self) -> Arc<AgentSpec> {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_spec(&self, spec: AgentSpec) {
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(spec);
    }
}

/// The agents, their runtimes, tasks and rates.
pub struct Agents {
    map: RwLock<BTreeMap<AgentName, Arc<AgentEntry>>>,
    /// How agents' harnesses are started and what the machine allows (set once at start).
    runtimes: RwLock<Option<Arc<Runtimes>>>,
    /// Every agent's socket server and supervisor; waited for at shutdown.
    tasks: TaskTracker,
    /// Every agent's rates (messages, questions, reminders).
    limiter: Limiter<AgentName>,
}

impl Agents {
    /// `agents`: (user id, spec) of each agent the hive starts with.
    pub fn new(agents: Vec<(OwnedUserId, AgentSpec)>, rates: limits::RateLimits) -> Self {
        let map = agents
            .into_iter()
            .map(|(user, spec)| (spec.name.clone(), Arc::new(AgentEntry::new(user, spec))))
            .collect();
        Self {
            map: RwLock::new(map),
            runtimes: RwLock::new(None),
            tasks: TaskTracker::new(),
            limiter: Limiter::new(rates),
        }
    }

    /// A snapshot of every agent.
    pub fn all(&self) -> BTreeMap<AgentName, Arc<AgentEntry>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self, name: &AgentName) -> Option<Arc<AgentEntry>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Adds a new agent (an approved spawn). False if it exists already.
    pub fn add(&self, user_id: OwnedUserId, spec: AgentSpec) -> bool {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(&spec.name) {
            return false;
        }
        map.insert(spec.name.clone(), Arc::new(AgentEntry::new(user_id, spec)));
        true
    }

    /// Takes `name` out of the registry (an approved destroy, or a kept agent at start) and
    /// tells its tasks to end. Returns its entry, if it was there.
    pub fn remove(&self, name: &AgentName) -> Option<Arc<AgentEntry>> {
        let entry = self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)?;
        if let Some(tasks) = entry.tasks.lock().unwrap_or_else(|p| p.into_inner()).take() {
            tasks.cancel();
        }
        entry.removed.cancel();
        Some(entry)
    }

    /// (name, user id) of every agent, for routing.
    pub fn ids(&self) -> Vec<(AgentName, OwnedUserId)> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, e)| (n.clone(), e.user_id.clone()))
            .collect()
    }

    pub fn set_runtimes(&self, runtimes: Arc<Runtimes>) {
        *self.runtimes.write().unwrap_or_else(|p| p.into_inner()) = Some(runtimes);
    }

    pub fn runtimes(&self) -> Option<Arc<Runtimes>> {
        self.runtimes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Counts one `kind` action of `agent` against its rate; the refusal says when to retry.
    pub fn rate(&self, agent: &AgentName, kind: limits::Kind) -> Result<(), limits::Refused> {
        self.limiter
            .check(agent.clone(), kind, std::time::Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> AgentSpec {
        let toml = "[brain]\nkind = \"scripted\"\n";
        let dir = std::path::Path::new("/nonexistent");
        AgentSpec::parse(
            AgentName::parse(name).expect("valid"),
            dir,
            &dir.join("agent.toml"),
            toml,
        )
        .expect("a scripted agent parses")
    }

    fn user(name: &str) -> OwnedUserId {
        OwnedUserId::try_from(format!("@{name}:hive.test")).expect("valid user id")
    }

    #[test]
    fn an_added_agent_is_found_and_never_replaced() {
        let agents = Agents::new(vec![(user("a"), spec("a"))], Default::default());
        let a = AgentName::parse("a").unwrap();
        let b = AgentName::parse("b").unwrap();
        let first = agents.get(&a).expect("a is there");
        assert!(!agents.add(user("a"), spec("a")), "a exists already");
        assert!(
            Arc::ptr_eq(&first, &agents.get(&a).unwrap()),
            "not replaced"
        );
        assert!(agents.get(&b).is_none());
        assert!(agents.add(user("b"), spec("b")));
        assert_eq!(
            agents.ids(),
            vec![(a.clone(), user("a")), (b.clone(), user("b"))]
        );
        assert_eq!(agents.all().len(), 2);
        first.set_uid(600_001);
        assert_eq!(agents.get(&a).unwrap().uid(), Some(600_001));
        let tasks = CancellationToken::new();
        first.tie_tasks(tasks.clone());
        let removed = agents.remove(&a).expect("a was there");
        assert!(tasks.is_cancelled(), "its tasks end");
        assert!(Arc::ptr_eq(&first, &removed));
        assert!(first.removed().is_cancelled(), "its tasks are told");
        assert!(agents.get(&a).is_none() && agents.remove(&a).is_none());
        assert!(
            agents.add(user("a"), spec("a")),
            "a revived agent is a new entry"
        );
        assert!(!agents.get(&a).unwrap().removed().is_cancelled());
    }
}
