//! The hive's space and rooms: created idempotently by alias, repaired at every start.
//!
//! A restart never duplicates a room (the alias is looked up first; a lost race on creation
//! falls back to the alias) and always re-invites missing members.

use std::collections::HashMap;

use anyhow::Context;
use ruma::api::client::account::register;
use ruma::api::client::{alias, membership, profile, room, state};
use ruma::events::AnyInitialStateEvent;
use ruma::events::StateEventType;
use ruma::serde::Raw;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId};
use serde_json::json;

use super::Core;
use crate::agent_spec::AgentName;
use crate::matrix::MatrixError;

mod key;
mod map;
mod setup;
pub mod startup;
pub use key::{RoomKey, UnknownRoomKey};
pub use map::{RoomMap, Rooms};
pub(crate) use setup::{IN_FLIGHT, bounded};
pub use setup::{LOG_IDENTITIES, LOG_ROOMS};

/// One room the hive wants, and who belongs in it.
pub(crate) struct RoomPlan {
    pub(crate) key: RoomKey,
    pub(crate) alias_local: String,
    pub(crate) name: String,
    pub(crate) topic: String,
    pub(crate) space: bool,
    pub(crate) federate: bool,
    pub(crate) agents: Vec<AgentName>,
}

impl Core {
    /// Registers `name`'s virtual user (idempotent: an existing user is fine).
    pub async fn register_agent(&self, name: &AgentName) -> anyhow::Result<()> {
        self.register(name, false).await
    }

    /// Registers a spawned agent's identity, which must be new: an approved spawn never takes
    /// over an account that exists already (the agents' namespace covers every local user but
    /// the operators).
    pub async fn register_new_agent(&self, name: &AgentName) -> anyhow::Result<()> {
        self.register(name, true).await
    }

    async fn register(&self, name: &AgentName, must_be_new: bool) -> anyhow::Result<()> {
        let mut req = register::v3::Request::new();
        req.username = Some(format!("{}{}", self.cfg().agent_prefix, name));
        req.login_type = Some(register::LoginType::ApplicationService);
        req.inhibit_login = true;
        match self.client().send(req, None).await {
            Ok(_) => {
                tracing::info!(agent = %name, "registered agent identity");
                Ok(())
            }
            Err(e) if e.errcode() == Some("M_USER_IN_USE") && must_be_new => anyhow::bail!(
                "{} exists already on this homeserver: a spawn never takes over an account",
                self.cfg().agent_user_id(name)
            ),
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot register agent {name}")),
        }
    }

    /// Registers `name` and sets its profile from its spec.
    async fn set_up_identity(&self, name: &AgentName) -> anyhow::Result<()> {
        self.identity(name, true).await
    }

    /// Registers `name` (when `register`) and sets its profile from its spec; records both in
    /// the store, so that the next start need not do them again.
    async fn identity(&self, name: &AgentName, register: bool) -> anyhow::Result<()> {
        let entry = self.agents().get(name).context("no such agent")?;
        let mark = self.wanted_mark(name).context("no such agent")?;
        if register {
            self.register_agent(name).await?;
        }
        let spec = entry.spec();
        // The per-field profile endpoints are deprecated in favour of `set_profile_field`, which
        // needs Matrix 1.16; the classic ones work on every homeserver.
        #[allow(deprecated)]
        // Written by a manager and approved, but never a place for a secret.
        let req = profile::set_display_name::v3::Request::new(
            entry.user_id.clone(),
            Some(mark.display_name.clone()),
        );
        self.client()
            .send(req, Some(&entry.user_id))
            .await
            .with_context(|| format!("cannot set {name}'s display name"))?;
        if let Some(url) = &spec.avatar_url {
            #[allow(deprecated)]
            let req = profile::set_avatar_url::v3::Request::new(
                entry.user_id.clone(),
                Some(url.as_str().into()),
            );
            self.client()
                .send(req, Some(&entry.user_id))
                .await
                .with_context(|| format!("cannot set {name}'s avatar"))?;
        }
        self.store().set_identity_mark(name.as_str(), &mark)
    }

    /// The inbox of `name`: the agent and every agent allowed to write to it.
    fn inbox_plan(&self, name: &AgentName) -> anyhow::Result<RoomPlan> {
        let agents = self.agents().all();
        let entry = agents.get(name).context("no such agent")?;
        let mut members = vec![name.clone()];
        members.extend(
            agents
                .iter()
                .filter(|(n, e)| *n != name && e.spec().allowed_recipients.contains(name))
                .map(|(n, _)| n.clone()),
        );
        let spec = entry.spec();
        Ok(RoomPlan {
            key: RoomKey::Inbox(name.clone()),
            alias_local: format!("agent-{name}"),
            name: spec.display_name.clone(),
            topic: spec
                .description
                .clone()
                .unwrap_or_else(|| format!("{name}'s inbox: write here to talk to {name}")),
            space: false,
            federate: false,
            agents: members,
        })
    }

    fn swarm_plan(&self) -> RoomPlan {
        RoomPlan {
            key: RoomKey::Swarm,
            alias_local: "hive-swarm".into(),
            name: "SW4RM".into(),
            topic: format!("{}: broadcast to every agent", self.cfg().hive_name),
            space: false,
            federate: false,
            agents: self.agents().all().keys().cloned().collect(),
        }
    }

    /// The space's plan.
    fn space_plan(&self) -> RoomPlan {
        let hive = &self.cfg().hive_name;
        RoomPlan {
            key: RoomKey::Space,
            alias_local: "hive-space".into(),
            name: hive.to_string(),
            topic: format!("{hive}: the hive's rooms"),
            space: true,
            federate: false,
            agents: Vec::new(),
        }
    }

    /// Every room of the hive but the space: `#hive-c0re`, `#hive-approvals`, the swarm, each
    /// agent's inbox.
    fn room_plans(&self) -> anyhow::Result<Vec<RoomPlan>> {
        let hive = self.cfg().hive_name.clone();
        let mut plans = vec![
            RoomPlan {
                key: RoomKey::Control,
                alias_local: "hive-c0re".into(),
                name: "c0re".into(),
                topic: format!("{hive}: operator control. `!hive help` lists commands."),
                space: false,
                federate: false,
                agents: Vec::new(),
            },
            RoomPlan {
                key: RoomKey::Approvals,
                alias_local: "hive-approvals".into(),
                name: "Y3R C4LL (approvals)".into(),
                topic: format!("{hive}: requests that wait for an operator's ✓"),
                space: false,
                federate: false,
                agents: Vec::new(),
            },
            self.swarm_plan(),
        ];
        for name in self.agents().all().keys() {
            plans.push(self.inbox_plan(name)?);
        }
        Ok(plans)
    }

    /// Creates or repairs `plan`'s room and links it into the space.
    async fn ensure_linked(
        &self,
        space: &OwnedRoomId,
        plan: &RoomPlan,
    ) -> anyhow::Result<OwnedRoomId> {
        let (room, _) = self.ensure_room(plan).await?;
        self.link_child(space, &room).await?;
        Ok(room)
    }

    /// Links `room` into the space (idempotent: the same link again changes nothing).
    pub(crate) async fn link_child(
        &self,
        space: &OwnedRoomId,
        room: &OwnedRoomId,
    ) -> anyhow::Result<()> {
        let child = json!({ "via": [self.cfg().server_name.as_str()] });
        let req = state::send_state_event::v3::Request::new_raw(
            space.clone(),
            StateEventType::SpaceChild,
            room.to_string(),
            Raw::from_json(serde_json::value::to_raw_value(&child)?),
        );
        self.client()
            .send(req, None)
            .await
            .with_context(|| format!("cannot link {room} into the hive's space"))?;
        Ok(())
    }

    /// The content of `room`'s `m.room.power_levels`, from the homeserver.
    pub async fn power_levels(&self, room: &OwnedRoomId) -> anyhow::Result<serde_json::Value> {
        let req = state::get_state_event_for_key::v3::Request::new(
            room.clone(),
            StateEventType::RoomPowerLevels,
            String::new(),
        );
        let resp = self.client().send(req, None).await?;
        let pl: serde_json::Value = serde_json::from_str(resp.event_or_content.get())?;
        Ok(pl.get("content").cloned().unwrap_or(pl))
    }

    /// Repairs the approvals room's power levels (a room from an older hive, or one someone
    /// loosened): only operators may post, react, redact or invite; every configured operator
    /// is at 100. Other keys are kept.
    async fn lock_down(&self, room: &OwnedRoomId) -> anyhow::Result<()> {
        let pl = self.power_levels(room).await?;
        let Some(pl) = startup::locked_down(&pl, &self.cfg().operators) else {
            return Ok(());
        };
        tracing::warn!(%room, "repairing the approvals room's power levels");
        let req = state::send_state_event::v3::Request::new_raw(
            room.clone(),
            StateEventType::RoomPowerLevels,
            String::new(),
            Raw::from_json(serde_json::value::to_raw_value(&pl)?),
        );
        self.client().send(req, None).await?;
        Ok(())
    }

    /// A newly added agent (an approved spawn): its identity, its inbox, its place in the swarm
    /// and in the inboxes of the agents it may write to.
    pub async fn set_up_new_agent(&self, name: &AgentName) -> anyhow::Result<()> {
        self.set_up_identity(name).await?;
        let space = self
            .rooms()
            .get(&RoomKey::Space)
            .context("the hive's rooms are not set up")?;
        let plan = self.inbox_plan(name)?;
        let room = self.ensure_linked(&space, &plan).await?;
        self.rooms().add(plan.key.clone(), room);
        let swarm = self.swarm_plan();
        self.ensure_linked(&space, &swarm).await?;
        self.join_allowed_inboxes(&space, name).await
    }

    /// An approved config of `name` takes effect in the rooms at once: its display name and
    /// avatar, its inbox's name and topic, its membership of the inboxes it may now write to.
    /// (Inboxes it may no longer write to keep it as a member: the core refuses its messages
    /// there, membership only shows who may speak.)
    pub async fn refresh_agent(&self, name: &AgentName) -> anyhow::Result<()> {
        self.set_up_identity(name).await?;
        let space = self
            .rooms()
            .get(&RoomKey::Space)
            .context("the hive's rooms are not set up")?;
        let plan = self.inbox_plan(name)?;
        let room = self.ensure_linked(&space, &plan).await?;
        for (kind, content) in [
            (
                StateEventType::RoomName,
                json!({ "name": self.secrets().redact(&plan.name) }),
            ),
            (
                StateEventType::RoomTopic,
                json!({ "topic": self.secrets().redact(&plan.topic) }),
            ),
        ] {
            let req = state::send_state_event::v3::Request::new_raw(
                room.clone(),
                kind,
                String::new(),
                Raw::from_json(serde_json::value::to_raw_value(&content)?),
            );
            self.client()
                .send(req, None)
                .await
                .with_context(|| format!("cannot update {name}'s inbox"))?;
        }
        self.join_allowed_inboxes(&space, name).await
    }

    /// Makes `name` a member of the inboxes of every agent it may write to.
    async fn join_allowed_inboxes(
        &self,
        space: &OwnedRoomId,
        name: &AgentName,
    ) -> anyhow::Result<()> {
        let allowed = self
            .agents()
            .get(name)
            .context("no such agent")?
            .spec()
            .allowed_recipients
            .clone();
        for other in allowed {
            if self.agents().get(&other).is_some() {
                let plan = self.inbox_plan(&other)?;
                self.ensure_linked(space, &plan).await?;
            }
        }
        Ok(())
    }

    /// Finds `plan`'s room by alias (its members repaired) or creates it (its agents joined);
    /// records it in the store. Returns the room and whether it was created now.
    pub(crate) async fn ensure_room(&self, plan: &RoomPlan) -> anyhow::Result<(OwnedRoomId, bool)> {
        let alias: OwnedRoomAliasId = self.alias_of(plan)?;
        let (room_id, created) = match self.resolve_alias(&alias).await? {
            Some(id) => (id, false),
            None => match self.create_room(plan, &[]).await {
                Ok(id) => {
                    tracing::info!(alias = %alias, room_id = %id, "created room");
                    (id, true)
                }
                Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => (
                    self.resolve_alias(&alias)
                        .await?
                        .context("alias taken but does not resolve")?,
                    false,
                ),
                Err(e) => return Err(e).with_context(|| format!("cannot create {alias}")),
            },
        };
        if created {
            // Everyone was invited by the createRoom itself: the agents only join.
            let invited: HashMap<String, String> = self
                .planned_members(plan)
                .iter()
                .chain(&self.cfg().operators)
                .map(|u| (u.to_string(), "invite".to_owned()))
                .collect();
            self.apply_member_steps(&room_id, &invited, plan).await
        } else {
            self.repair_members(&room_id, plan).await
        }
        .with_context(|| format!("cannot repair members of {alias}"))?;
        self.store()
            .set_room(&plan.key.as_str(), alias.as_str(), room_id.as_str())?;
        Ok((room_id, created))
    }

    /// The user ids of `plan`'s agents that are agents of this hive.
    fn planned_members(&self, plan: &RoomPlan) -> Vec<OwnedUserId> {
        plan.agents
            .iter()
            .filter_map(|n| self.agents().get(n).map(|e| e.user_id.clone()))
            .collect()
    }

    pub(crate) async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> anyhow::Result<Option<OwnedRoomId>> {
        match self
            .client()
            .send(alias::get_alias::v3::Request::new(alias.to_owned()), None)
            .await
        {
            Ok(r) => Ok(Some(r.room_id)),
            Err(e) if e.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot resolve {alias}")),
        }
    }

    /// Creates `plan`'s room with its operators and agents invited; a space gets `children`
    /// linked in its initial state.
    async fn create_room(
        &self,
        plan: &RoomPlan,
        children: &[OwnedRoomId],
    ) -> Result<OwnedRoomId, MatrixError> {
        let mut users = serde_json::Map::new();
        for op in &self.cfg().operators {
            users.insert(op.to_string(), json!(100));
        }
        let mut req = room::create_room::v3::Request::new();
        req.room_alias_name = Some(plan.alias_local.clone());
        req.name = Some(self.secrets().redact(&plan.name));
        req.topic = Some(self.secrets().redact(&plan.topic));
        req.preset = Some(room::create_room::v3::RoomPreset::PrivateChat);
        req.invite = self.cfg().operators.clone();
        req.invite.extend(self.planned_members(plan));
        let via = json!([self.cfg().server_name.as_str()]);
        req.initial_state = children
            .iter()
            .map(|room| {
                let ev = json!({
                    "type": "m.space.child",
                    "state_key": room.as_str(),
                    "content": { "via": via },
                });
                Raw::<AnyInitialStateEvent>::from_json(
                    serde_json::value::to_raw_value(&ev).expect("json serialises"),
                )
            })
            .collect();
        let mut creation = serde_json::Map::new();
        if plan.space {
            creation.insert("type".into(), json!("m.space"));
        }
        if !plan.federate {
            creation.insert("m.federate".into(), json!(false));
        }
        req.creation_content = Some(Raw::from_json(
            serde_json::value::to_raw_value(&creation).expect("json map serialises"),
        ));
        // Room version 12: the creator (the bot) must not appear in the users map.
        let pl = if plan.key == RoomKey::Approvals {
            // Only operators may post, react or redact here; the core's allow-list is checked
            // as well (power levels alone have been lost in federated rooms).
            json!({
                "users": users,
                "users_default": 0,
                "events_default": 100,
                "state_default": 100,
                "redact": 100,
                "invite": 100,
                "kick": 100,
                "ban": 100,
                "events": { "m.reaction": 100, "m.room.redaction": 100 },
            })
        } else {
            json!({ "users": users })
        };
        req.power_level_content_override = Some(Raw::from_json(
            serde_json::value::to_raw_value(&pl).expect("json serialises"),
        ));
        Ok(self.client().send(req, None).await?.room_id)
    }

    /// Invites every operator and planned agent who is not in the room (or invited), and joins
    /// the agents. Banned users stay banned.
    async fn repair_members(&self, room: &OwnedRoomId, plan: &RoomPlan) -> anyhow::Result<()> {
        let members = self
            .client()
            .send(
                membership::get_member_events::v3::Request::new(room.clone()),
                None,
            )
            .await?;
        let mut state: HashMap<String, String> = HashMap::new();
        for raw in members.chunk {
            let v: serde_json::Value = raw.deserialize_as_unchecked()?;
            if let (Some(user), Some(m)) = (
                v["state_key"].as_str(),
                v.pointer("/content/membership").and_then(|m| m.as_str()),
            ) {
                state.insert(user.to_owned(), m.to_owned());
            }
        }
        self.apply_member_steps(room, &state, plan).await
    }

    /// The invites and joins [`startup::member_steps`] finds missing in `room`, in order.
    async fn apply_member_steps(
        &self,
        room: &OwnedRoomId,
        state: &HashMap<String, String>,
        plan: &RoomPlan,
    ) -> anyhow::Result<()> {
        let agents = self.planned_members(plan);
        for step in startup::member_steps(state, &self.cfg().operators, &agents) {
            match step {
                startup::MemberStep::Invite(user) => self.invite(room, &user).await?,
                startup::MemberStep::Join(user) => {
                    self.client()
                        .send(
                            membership::join_room_by_id::v3::Request::new(room.clone()),
                            Some(&user),
                        )
                        .await
                        .with_context(|| format!("{user} cannot join {room}"))?;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn invite(
        &self,
        room: &OwnedRoomId,
        user: &OwnedUserId,
    ) -> anyhow::Result<()> {
        let recipient = membership::invite_user::v3::InvitationRecipient::UserId(
            membership::invite_user::v3::InviteUserId::new(user.clone()),
        );
        match self
            .client()
            .send(
                membership::invite_user::v3::Request::new(room.clone(), recipient),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            // Already in the room: another start got there first.
            Err(e) if e.status() == Some(403) && e.to_string().contains("already in the room") => {
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("cannot invite {user} to {room}")),
        }
    }
}
