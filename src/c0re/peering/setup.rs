//! Setting up a peering: the shared room, its ACL and power levels, this hive's directory
//! entries in it, its members on this side; and reading the peer's directory back.
//!
//! The hive whose name sorts first creates the room (alias `#peer-<other hive>` on its server)
//! and invites the other's core user; the other resolves that alias over federation, joins, and
//! gives the room its own alias `#peer-<first hive>`. Both sides then invite their operators,
//! join their paired agents and publish them. Every step is idempotent: the peering task runs it
//! again until it has gone through (a peer that is away makes it fail, not hang).

use anyhow::Context;
use ruma::api::client::{alias, membership, room, state};
use ruma::events::StateEventType;
use ruma::serde::Raw;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomOrAliasId, UserId};
use serde_json::json;

use super::{AGENT_STATE, decide};
use crate::agent_spec::HiveName;
use crate::c0re::Core;
use crate::c0re::rooms::{RoomKey, RoomMap};
use crate::config::Peer;

/// The host of a server name, without its port.
fn host(server: &ruma::ServerName) -> &str {
    server.host()
}

/// `m.room.server_acl` content allowing exactly `ours` and `theirs`. Synapse matches incoming
/// requests by host only (the port is cut off) but checks the ACL it sends against its own
/// full name, so both forms are listed. IP literals are never allowed.
pub fn server_acl(ours: &ruma::ServerName, theirs: &ruma::ServerName) -> serde_json::Value {
    let mut allow: Vec<String> = Vec::new();
    for s in [ours, theirs] {
        for name in [host(s), s.as_str()] {
            if !allow.iter().any(|a| a == name) {
                allow.push(name.to_owned());
            }
        }
    }
    json!({ "allow": allow, "deny": [], "allow_ip_literals": false })
}

/// Whether this hive creates the room it shares with `peer` (its name sorts first).
pub fn creates(ours: &HiveName, peer: &HiveName) -> bool {
    ours < peer
}

/// The local alias of the room shared with `hive`: `peer-<hive>`.
pub fn alias_local(hive: &HiveName) -> String {
    format!("peer-{hive}")
}

impl Core {
    /// This hive's name as its peers know it (validated when peers are declared).
    pub(crate) fn hive_id(&self) -> anyhow::Result<HiveName> {
        self.cfg().hive_id.clone().ok_or_else(|| {
            anyhow::anyhow!("hive.name {:?} is not a hive name", self.cfg().hive_name)
        })
    }

    /// At start, before any transaction is routed: the peer rooms set up before, with each
    /// peer's directory as our homeserver has it (no federation needed), so that a peer's
    /// message pushed at once is judged as a peer's, against what the peer publishes.
    pub(crate) async fn known_peer_rooms(&self, map: &mut RoomMap) -> anyhow::Result<()> {
        for peer in &self.cfg().peers {
            let alias = RoomAliasId::parse(format!(
                "#{}:{}",
                alias_local(&peer.hive),
                self.cfg().server_name
            ))?;
            // A peering that cannot be read now (we left the room, the peer banned us) must not
            // keep the hive from starting: the peering task sets it up again, and until then
            // its room is unknown and nothing from it is delivered.
            let known = match self.resolve_alias(&alias).await {
                Ok(Some(room)) => self.read_directory(peer, &room).await.map(|()| Some(room)),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match known {
                Ok(Some(room)) => {
                    self.peering().set_room(&peer.hive, room.clone());
                    map.insert(RoomKey::Peer(peer.hive.clone()), room);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(peer = %peer.hive, error = %format!("{e:#}"), "cannot read the peer room at start; the peering task will try again")
                }
            }
        }
        Ok(())
    }

    /// Sets up (or repairs) the peering with `peer`, end to end. Fails while the peer is away.
    pub(crate) async fn set_up_peering(&self, peer: &Peer) -> anyhow::Result<OwnedRoomId> {
        let ours = self.hive_id()?;
        let own_alias: OwnedRoomAliasId = RoomAliasId::parse(format!(
            "#{}:{}",
            alias_local(&peer.hive),
            self.cfg().server_name
        ))?;
        let room = match self.resolve_alias(&own_alias).await? {
            Some(room) => room,
            None if creates(&ours, &peer.hive) => self.create_peer_room(peer).await?,
            None => self.join_peer_room(&ours, peer, &own_alias).await?,
        };
        self.peering().set_room(&peer.hive, room.clone());
        self.rooms()
            .add(RoomKey::Peer(peer.hive.clone()), room.clone());
        self.store().set_room(
            &RoomKey::Peer(peer.hive.clone()).as_str(),
            own_alias.as_str(),
            room.as_str(),
        )?;
        self.store()
            .set_peer_room(peer.hive.as_str(), room.as_str())?;
        if creates(&ours, &peer.hive) {
            self.invite_if_absent(&room, &peer.bot)
                .await
                .with_context(|| {
                    format!("cannot invite {} (is {} reachable?)", peer.bot, peer.hive)
                })?;
        }
        for op in &self.cfg().operators {
            self.invite_if_absent(&room, op).await?;
        }
        self.read_directory(peer, &room).await?;
        self.publish_directory(&ours, peer, &room).await?;
        Ok(room)
    }

    async fn create_peer_room(&self, peer: &Peer) -> anyhow::Result<OwnedRoomId> {
        let ours = &self.cfg().server_name;
        let mut users = serde_json::Map::new();
        for op in &self.cfg().operators {
            users.insert(op.to_string(), json!(100));
        }
        // The peer's core may invite its own people and publish its agents; nothing else
        // above a member's rights (it cannot change the ACL, kick or redact ours).
        users.insert(peer.bot.to_string(), json!(50));
        let pl = json!({
            "users": users,
            "users_default": 0,
            "events_default": 0,
            "state_default": 100,
            "invite": 50,
            "kick": 100,
            "ban": 100,
            "redact": 100,
            "notifications": { "room": 100 },
            "events": {
                AGENT_STATE: 50,
                "m.room.server_acl": 100,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.join_rules": 100,
            },
        });
        let acl = server_acl(ours, &peer.server_name);
        let mut req = room::create_room::v3::Request::new();
        req.room_alias_name = Some(alias_local(&peer.hive));
        req.name = Some(format!("{} ⇄ {}", self.cfg().hive_name, peer.hive));
        req.topic = Some(format!(
            "What crosses between {} and {}: their agents' messages to each other, and who each publishes.",
            self.cfg().hive_name,
            peer.hive
        ));
        req.preset = Some(room::create_room::v3::RoomPreset::PrivateChat);
        // Pinned: the power levels below follow version 12's rules (the creator is not in
        // `users`); a homeserver without it says so (M_UNSUPPORTED_ROOM_VERSION).
        req.room_version = Some(ruma::RoomVersionId::V12);
        req.power_level_content_override =
            Some(Raw::from_json(serde_json::value::to_raw_value(&pl)?));
        req.initial_state = vec![Raw::from_json(serde_json::value::to_raw_value(&json!({
            "type": "m.room.server_acl",
            "state_key": "",
            "content": acl,
        }))?)];
        match self.client().send(req, None).await {
            Ok(r) => {
                tracing::info!(peer = %peer.hive, room = %r.room_id, "created the peer room");
                Ok(r.room_id)
            }
            Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {
                let alias = RoomAliasId::parse(format!("#{}:{ours}", alias_local(&peer.hive)))?;
                self.resolve_alias(&alias)
                    .await?
                    .context("the peer room's alias is taken but does not resolve")
            }
            Err(e) => Err(e).context("cannot create the peer room"),
        }
    }

    /// Joins the room `peer` created (alias `#peer-<ours>` on its server) and gives it our
    /// alias. Fails until the peer is reachable and has invited us.
    async fn join_peer_room(
        &self,
        ours: &HiveName,
        peer: &Peer,
        own_alias: &RoomAliasId,
    ) -> anyhow::Result<OwnedRoomId> {
        let theirs = RoomAliasId::parse(format!("#{}:{}", alias_local(ours), peer.server_name))?;
        let room = self
            .resolve_alias(&theirs)
            .await
            .with_context(|| format!("cannot look up {theirs} (is {} reachable?)", peer.hive))?
            .with_context(|| format!("{} has not made {theirs} yet", peer.hive))?;
        let via: Vec<OwnedServerName> = vec![peer.server_name.clone()];
        let mut req = membership::join_room_by_id_or_alias::v3::Request::new(
            <&RoomOrAliasId>::from(&*room).to_owned(),
        );
        req.via = via;
        self.client()
            .send(req, None)
            .await
            .with_context(|| format!("cannot join {theirs} (has {} invited us?)", peer.hive))?;
        // The room behind the peer's alias must be the peer's core's: anyone else's is left.
        let creator = self.creator(&room).await?;
        if creator != peer.bot {
            let req = membership::leave_room::v3::Request::new(room.clone());
            if let Err(e) = self.client().send(req, None).await {
                tracing::warn!(%room, error = %e, "cannot leave a room that is not the peer's");
            }
            anyhow::bail!(
                "{theirs} points at {room}, made by {creator}, not by {}'s core {}: not joined",
                peer.hive,
                peer.bot
            );
        }
        let req = alias::create_alias::v3::Request::new(own_alias.to_owned(), room.clone());
        match self.client().send(req, None).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {}
            Err(e) => return Err(e).context("cannot give the peer room our alias"),
        }
        tracing::info!(peer = %peer.hive, %room, "joined the peer room");
        Ok(room)
    }

    /// Every state event of `room`, as JSON.
    async fn full_state(&self, room: &OwnedRoomId) -> anyhow::Result<Vec<serde_json::Value>> {
        let resp = self
            .client()
            .send(
                state::get_state_events::v3::Request::new(room.clone()),
                None,
            )
            .await
            .with_context(|| format!("cannot read the state of {room}"))?;
        resp.room_state
            .iter()
            .map(|raw| Ok(raw.deserialize_as_unchecked()?))
            .collect()
    }

    /// Who created `room` (the sender of its `m.room.create`).
    async fn creator(&self, room: &OwnedRoomId) -> anyhow::Result<ruma::OwnedUserId> {
        for v in self.full_state(room).await? {
            if v["type"] == "m.room.create" {
                return v["sender"]
                    .as_str()
                    .and_then(|s| UserId::parse(s).ok())
                    .with_context(|| format!("{room}'s create event has no sender"));
            }
        }
        anyhow::bail!("{room} has no create event")
    }

    async fn invite_if_absent(&self, room: &OwnedRoomId, user: &UserId) -> anyhow::Result<()> {
        match self.membership(room, user).await?.as_deref() {
            Some("join" | "invite" | "ban") => Ok(()),
            _ => self.invite(room, &user.to_owned()).await,
        }
    }

    async fn membership(
        &self,
        room: &OwnedRoomId,
        user: &UserId,
    ) -> anyhow::Result<Option<String>> {
        let req = state::get_state_event_for_key::v3::Request::new(
            room.clone(),
            StateEventType::RoomMember,
            user.to_string(),
        );
        match self.client().send(req, None).await {
            Ok(r) => {
                let v: serde_json::Value = serde_json::from_str(r.event_or_content.get())?;
                let content = v.get("content").unwrap_or(&v);
                Ok(content["membership"].as_str().map(str::to_owned))
            }
            Err(e) if e.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e).context("cannot read a membership"),
        }
    }

    /// Joins each local agent the peer line pairs with someone, and publishes it; withdraws
    /// entries of ours that are no longer paired.
    async fn publish_directory(
        &self,
        ours: &HiveName,
        peer: &Peer,
        room: &OwnedRoomId,
    ) -> anyhow::Result<()> {
        let published = self.room_state(room).await?;
        // One agent that cannot join (banned, say) must not keep the others from being
        // published, nor the peering from standing: each is tried and its failure said (the
        // next repair tries again).
        for name in peer.agents.keys() {
            let Some(entry) = self.agents().get(name) else {
                continue;
            };
            let spec = entry.spec();
            let content = json!({
                "user_id": entry.user_id,
                "display_name": self.secrets().redact(&spec.display_name),
                "description": spec.description.as_deref().map(|d| self.secrets().redact(d)),
            });
            let one = async {
                if self.membership(room, &entry.user_id).await?.as_deref() != Some("join") {
                    self.invite_if_absent(room, &entry.user_id).await?;
                    self.client()
                        .send(
                            membership::join_room_by_id::v3::Request::new(room.clone()),
                            Some(&entry.user_id),
                        )
                        .await
                        .with_context(|| format!("{name} cannot join the peer room {room}"))?;
                }
                self.put_entry(room, &format!("{name}@{ours}"), &content, &published)
                    .await
            };
            if let Err(e) = one.await {
                tracing::warn!(peer = %peer.hive, agent = %name, error = %format!("{e:#}"), "cannot publish an agent in the peer room");
            }
        }
        // Entries of ours no longer paired (a line removed, an agent destroyed): withdrawn.
        for (key, _, sender) in &published {
            let Some(Ok(q)) = crate::agent_spec::QualifiedName::parse(key) else {
                continue;
            };
            if q.hive == *ours
                && sender.server_name() == self.cfg().server_name
                && (!peer.agents.contains_key(&q.agent) || self.agents().get(&q.agent).is_none())
            {
                self.put_entry(room, key, &json!({}), &published).await?;
            }
        }
        Ok(())
    }

    async fn put_entry(
        &self,
        room: &OwnedRoomId,
        key: &str,
        content: &serde_json::Value,
        published: &[(String, serde_json::Value, ruma::OwnedUserId)],
    ) -> anyhow::Result<()> {
        if published.iter().any(|(k, c, _)| k == key && c == content)
            || (content.as_object().is_some_and(|o| o.is_empty())
                && !published.iter().any(|(k, _, _)| k == key))
        {
            return Ok(());
        }
        let req = state::send_state_event::v3::Request::new_raw(
            room.clone(),
            StateEventType::from(AGENT_STATE),
            key.to_owned(),
            Raw::from_json(serde_json::value::to_raw_value(content)?),
        );
        self.client()
            .send(req, None)
            .await
            .with_context(|| format!("cannot publish {key} in the peer room"))?;
        Ok(())
    }

    /// Every directory entry in `room`: (state key, content, sender).
    async fn room_state(
        &self,
        room: &OwnedRoomId,
    ) -> anyhow::Result<Vec<(String, serde_json::Value, ruma::OwnedUserId)>> {
        let mut out = Vec::new();
        for v in self.full_state(room).await? {
            if v["type"] != AGENT_STATE {
                continue;
            }
            let (Some(key), Some(sender)) = (
                v["state_key"].as_str(),
                v["sender"].as_str().and_then(|s| UserId::parse(s).ok()),
            ) else {
                continue;
            };
            out.push((key.to_owned(), v["content"].clone(), sender));
        }
        Ok(out)
    }

    /// Reads the peer's directory from the room's state.
    pub(crate) async fn read_directory(
        &self,
        peer: &Peer,
        room: &OwnedRoomId,
    ) -> anyhow::Result<()> {
        for (key, content, sender) in self.room_state(room).await? {
            let e = decide::entry(peer, &sender, &key, &content);
            self.peering().apply(&peer.hive, e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_allows_exactly_the_two_servers_in_both_forms() {
        let s = |n: &str| ruma::ServerName::parse(n).unwrap();
        assert_eq!(
            server_acl(&s("localhost:8481"), &s("localhost:8482")),
            json!({ "allow": ["localhost", "localhost:8481", "localhost:8482"], "deny": [], "allow_ip_literals": false })
        );
        assert_eq!(
            server_acl(&s("a.example.org"), &s("b.example.org")),
            json!({ "allow": ["a.example.org", "b.example.org"], "deny": [], "allow_ip_literals": false })
        );
    }

    #[test]
    fn the_first_name_creates() {
        let h = |n: &str| HiveName::parse(n).unwrap();
        assert!(creates(&h("hive-a"), &h("hive-b")));
        assert!(!creates(&h("hive-b"), &h("hive-a")));
        assert_eq!(alias_local(&h("hive-b")), "peer-hive-b");
    }
}
