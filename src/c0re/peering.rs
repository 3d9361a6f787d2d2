//! Peering with other hives over federation (docs/federation.md).
//!
//! Each declared peer has one shared room, `#peer-<remote hive>` on each side (the hive whose
//! name sorts first creates it; the other's core joins it), with `m.room.server_acl` allowing
//! exactly the two servers. Each hive publishes its paired agents there as
//! `org.hyperhive.agent` state (key `<agent>@<hive>`), and cross-hive messages are posted there
//! by the sender's own identity, mentioning the recipient: the one room where both operators
//! see everything that crosses. Every other room of a hive stays unfederated.
//!
//! - [`decide`]: what counts, what is delivered, what may leave (pure, table-tested);
//! - [`setup`]: the room, its ACL and power levels, the directory, the members;
//! - [`send`]: an agent's message or reply to a remote agent, numbered in its stream;
//! - [`task`]: the loop that sets peerings up, probes peers and fills gaps;
//! - [`status`]: what `hive status` and `!hive status` say of each peer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use ruma::{OwnedRoomId, OwnedUserId};

use crate::agent_spec::{AgentName, HiveName, QualifiedName};

pub mod decide;
mod inbound;
mod send;
mod setup;
pub mod status;
mod task;

/// Content key of a cross-hive message: `{epoch, seq, from, to}` (the sender's stream number,
/// the two agents' names).
pub const PEER_KEY: &str = "org.hyperhive.peer";
/// Content key of a core's refusal of a peer's message: `{sender, reason, event_id}`.
pub const REFUSAL_KEY: &str = "org.hyperhive.peer_refusal";
/// State event type of a directory entry; its key is `<agent>@<hive>`.
pub const AGENT_STATE: &str = "org.hyperhive.agent";

/// An agent a peer publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAgent {
    pub name: QualifiedName,
    pub user_id: OwnedUserId,
    pub display_name: String,
    pub description: Option<String>,
    /// Whether this hive's peers line pairs it with one of ours. Unpaired ones are kept (at
    /// most [`MAX_UNPAIRED`] per peer) only so that their messages are refused with a reason
    /// in their stream's order; `list_agents` shows only paired ones.
    pub paired: bool,
}

/// Agents a peer publishes that our peers line does not pair, kept at most (the rest are
/// strangers, their messages reach nobody).
pub const MAX_UNPAIRED: usize = 256;

#[derive(Debug, Default, Clone)]
struct PeerState {
    room: Option<OwnedRoomId>,
    directory: BTreeMap<AgentName, RemoteAgent>,
    /// A message came from someone the directory does not know: read it again.
    stale: bool,
}

/// What the core knows of its peers: each one's room and directory, and one send lock per peer
/// (a stream is numbered in the order its messages are posted).
#[derive(Default)]
pub struct Peering {
    peers: RwLock<HashMap<HiveName, PeerState>>,
    send_locks: Mutex<HashMap<HiveName, Arc<tokio::sync::Mutex<()>>>>,
    /// Strangers' messages that already asked for a directory read (the last 1024).
    strangers: Mutex<std::collections::VecDeque<String>>,
    /// Wakes the peering task (a gap to fill, a peer to set up again).
    wake: tokio::sync::Notify,
}

impl Peering {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<HiveName, PeerState>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<HiveName, PeerState>> {
        self.peers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The peer room with `hive`, once set up.
    pub fn room(&self, hive: &HiveName) -> Option<OwnedRoomId> {
        self.read().get(hive).and_then(|s| s.room.clone())
    }

    pub(crate) fn set_room(&self, hive: &HiveName, room: OwnedRoomId) {
        self.write().entry(hive.clone()).or_default().room = Some(room);
    }

    /// What `hive` publishes, by name.
    pub fn directory(&self, hive: &HiveName) -> Vec<RemoteAgent> {
        self.read()
            .get(hive)
            .map(|s| s.directory.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every remote agent of every peer.
    pub fn all_remote(&self) -> Vec<RemoteAgent> {
        let map = self.read();
        let mut all: Vec<RemoteAgent> = map
            .values()
            .flat_map(|s| s.directory.values().filter(|a| a.paired).cloned())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn remote(&self, name: &QualifiedName) -> Option<RemoteAgent> {
        self.read()
            .get(&name.hive)
            .and_then(|s| s.directory.get(&name.agent).cloned())
    }

    /// Applies a judged directory entry of `hive`'s.
    pub(crate) fn apply(&self, hive: &HiveName, entry: decide::Entry) {
        let mut map = self.write();
        let state = map.entry(hive.clone()).or_default();
        match entry {
            decide::Entry::Set(a) => {
                let unpaired = state.directory.values().filter(|d| !d.paired).count();
                let known = state.directory.contains_key(&a.name.agent);
                if a.paired || known || unpaired < MAX_UNPAIRED {
                    state.directory.insert(a.name.agent.clone(), a);
                }
            }
            decide::Entry::Remove(n) => {
                state.directory.remove(&n);
            }
            decide::Entry::Ignore => {}
        }
    }

    fn send_lock(&self, hive: &HiveName) -> Arc<tokio::sync::Mutex<()>> {
        self.send_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(hive.clone())
            .or_default()
            .clone()
    }

    /// Asks the peering task to read `hive`'s directory again, and the room's recent history
    /// after it, because of a stranger's message `event_id` (once per event: read back, the
    /// same message must not ask again).
    pub(crate) fn directory_stale(&self, hive: &HiveName, event_id: &str) {
        {
            let mut seen = self.strangers.lock().unwrap_or_else(|p| p.into_inner());
            if seen.contains(&event_id.to_owned()) {
                return;
            }
            if seen.len() >= 1024 {
                seen.pop_front();
            }
            seen.push_back(event_id.to_owned());
        }
        self.write().entry(hive.clone()).or_default().stale = true;
        self.wake();
    }

    /// The peers whose directory is to be read again (the flags are cleared).
    pub(crate) fn take_stale(&self) -> Vec<HiveName> {
        let mut map = self.write();
        map.iter_mut()
            .filter_map(|(h, s)| std::mem::take(&mut s.stale).then(|| h.clone()))
            .collect()
    }

    /// Wakes the peering task.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl crate::c0re::Core {
    /// Each declared peer with what the store knows of it.
    pub fn peer_statuses(
        &self,
    ) -> anyhow::Result<Vec<(crate::config::Peer, crate::store::PeerStatus)>> {
        peer_statuses(self.cfg(), self.store())
    }
}

/// Each peer `cfg` declares, with what `store` knows of it.
pub fn peer_statuses(
    cfg: &crate::config::Config,
    store: &crate::store::Store,
) -> anyhow::Result<Vec<(crate::config::Peer, crate::store::PeerStatus)>> {
    cfg.peers
        .iter()
        .map(|p| Ok((p.clone(), store.peer_status(p.hive.as_str())?)))
        .collect()
}
