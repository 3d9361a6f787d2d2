//! The hive's rooms as hive-c0re knows them: [`RoomMap`] (by the part each room plays, and
//! each room's role, both ways round) and [`Rooms`], the service that owns it and says whether
//! the rooms are known yet (a transaction before that is refused, and re-sent).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ruma::OwnedRoomId;

use super::RoomKey;
use crate::c0re::routing::RoomRole;

/// The hive's rooms, both ways round: by the part each plays, and each room's role.
#[derive(Debug, Default, Clone)]
pub struct RoomMap {
    by_key: HashMap<RoomKey, OwnedRoomId>,
    roles: HashMap<String, RoomRole>,
}

impl RoomMap {
    pub fn insert(&mut self, key: RoomKey, room: OwnedRoomId) {
        self.roles.insert(room.to_string(), key.role());
        self.by_key.insert(key, room);
    }

    pub fn get(&self, key: &RoomKey) -> Option<&OwnedRoomId> {
        self.by_key.get(key)
    }

    /// The role of `room` (a room id as the homeserver sends it); `Other` if it is none of the
    /// hive's.
    pub fn role(&self, room: &str) -> RoomRole {
        self.roles.get(room).cloned().unwrap_or(RoomRole::Other)
    }

    pub fn all(&self) -> impl Iterator<Item = &OwnedRoomId> {
        self.by_key.values()
    }
}

/// The rooms service: the map, replaced whole at set-up and grown by a spawn.
#[derive(Default)]
pub struct Rooms {
    map: RwLock<RoomMap>,
    ready: AtomicBool,
}

impl Rooms {
    /// A snapshot of every room.
    pub fn snapshot(&self) -> RoomMap {
        self.map.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self, key: &RoomKey) -> Option<OwnedRoomId> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Records one more room (a spawned agent's inbox).
    pub fn add(&self, key: RoomKey, room: OwnedRoomId) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, room);
    }

    /// Replaces the map (set-up found or made every room).
    pub fn set(&self, map: RoomMap) {
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// The rooms are known: transactions can be routed from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_spec::AgentName;

    #[test]
    fn rooms_are_found_by_key_and_by_id() {
        let rooms = Rooms::default();
        assert!(!rooms.is_ready());
        let id = |s: &str| OwnedRoomId::try_from(s).expect("valid room id");
        let mut map = RoomMap::default();
        map.insert(RoomKey::Approvals, id("!a:hive.test"));
        map.insert(RoomKey::Swarm, id("!s:hive.test"));
        rooms.set(map);
        let echo = AgentName::parse("echo").unwrap();
        rooms.add(RoomKey::Inbox(echo.clone()), id("!e:hive.test"));
        rooms.set_ready();
        assert!(rooms.is_ready());
        assert_eq!(rooms.get(&RoomKey::Approvals), Some(id("!a:hive.test")));
        assert_eq!(rooms.get(&RoomKey::Control), None);
        let snap = rooms.snapshot();
        assert_eq!(snap.role("!a:hive.test"), RoomRole::Approvals);
        assert_eq!(snap.role("!e:hive.test"), RoomKey::Inbox(echo).role());
        assert_eq!(snap.role("!elsewhere:hive.test"), RoomRole::Other);
        assert_eq!(snap.all().count(), 3);
    }
}
