//! The start-up path: every agent's identity, every room, the space, as few requests on the way
//! to ready as the store allows, a handful in flight at once (Synapse serialises the requests
//! of one room, so the work is spread across rooms and users, never within one room).
//!
//! In order (the decisions are in [`super::startup`]):
//! 1. the space's alias is resolved: the store is trusted when it still names that space;
//! 2. identities: registered and profiled only where the store has no mark of the same ones;
//! 3. rooms: the trusted store's rooms are used as they are; any other (a fresh data dir, a
//!    new agent's inbox) is found by alias or created with its members' invites in the
//!    `createRoom`, its agents then joined (no member read of a room just made);
//! 4. the space: created last, with every room as a child in its initial state; an existing
//!    space gets the links it lacks;
//! 5. the approvals room is locked down (unless just created so): THE LOOP FIRST, this holds
//!    before ready, so before any reaction can be routed, let alone acted on (the core's
//!    operator-only check needs nothing from the homeserver);
//! 6. every room is in the routing map before [`super::Rooms::set_ready`] lets a transaction
//!    in, and every inbox exists before an agent's harness is started.
//!
//! Deferred, after ready, on a warm start ([`Core::repair_rooms`]): the members of the rooms the
//! store knew (an agent or operator removed while the core was down) and the space's members
//! and child links. Why that is safe: routing is by room id and the core's own user is in every
//! room, so events reach the core whoever else is joined; an agent's post to a room it was
//! removed from fails and is retried by the outbox or reported to the agent; an operator
//! missing an invite only misses it for the seconds the repair takes; the space's children are
//! for people's clients, not for the core. Nothing deferred gates an approval.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use anyhow::Context;
use ruma::api::client::state;
use ruma::{OwnedRoomId, RoomAliasId};

use super::startup::{self, IdentityWork, RoomStart};
use super::{RoomKey, RoomMap, RoomPlan};
use crate::c0re::Core;
use crate::store::IdentityMark;

/// The info line (target `hyperhive::c0re::rooms`) logged when every identity is set up, with
/// `elapsed_ms` since set-up began: `hive bench` splits the start-up with it.
pub const LOG_IDENTITIES: &str = "start-up: identities ready";
/// The info line logged when every room is known (`elapsed_ms` since set-up began).
pub const LOG_ROOMS: &str = "start-up: rooms ready";

/// Requests start-up keeps in flight at once.
pub(crate) const IN_FLIGHT: usize = 8;

/// Runs `f` over `items`, at most `limit` at once; the results in the order they finished.
/// The first failure is returned (the others still running are dropped).
pub(crate) async fn bounded<T, R, F, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    f: F,
) -> anyhow::Result<Vec<R>>
where
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<R>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    for item in items {
        while set.len() >= limit.max(1) {
            if let Some(r) = set.join_next().await {
                out.push(r.context("a start-up task panicked")??);
            }
        }
        set.spawn(f(item));
    }
    while let Some(r) = set.join_next().await {
        out.push(r.context("a start-up task panicked")??);
    }
    Ok(out)
}

impl Core {
    /// Registers every agent, sets profiles, finds or creates every room (the module's path),
    /// and leaves the repairs that can wait to a task of their own.
    pub async fn setup(&self) -> anyhow::Result<()> {
        let began = std::time::Instant::now();
        let elapsed_ms = || u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let space_plan = self.space_plan();
        let plans = self.room_plans()?;
        let stored = self.stored_rooms()?;
        let space_alias = self.alias_of(&space_plan)?;
        let resolved = self.resolve_alias(&space_alias).await?;
        let trusted = startup::trusted(
            stored.get(&RoomKey::Space).map(|r| &**r),
            resolved.as_deref(),
        );
        tracing::info!(
            trusted,
            rooms = stored.len(),
            "setting up the hive's identities and rooms"
        );
        self.set_up_identities(trusted).await?;
        tracing::info!(elapsed_ms = elapsed_ms(), "{LOG_IDENTITIES}");

        let (mut known, mut ensure) = (Vec::new(), Vec::new());
        for plan in plans {
            match startup::room_start(trusted, stored.get(&plan.key)) {
                RoomStart::Known(id) => known.push((plan, id)),
                RoomStart::Ensure => ensure.push(plan),
            }
        }
        let made = bounded(ensure, IN_FLIGHT, |plan| {
            let core = self.clone();
            async move {
                let (id, created) = core.ensure_room(&plan).await?;
                anyhow::Ok((plan, id, created))
            }
        })
        .await?;

        let mut map = RoomMap::default();
        for (plan, id) in &known {
            map.insert(plan.key.clone(), id.clone());
        }
        for (plan, id, _) in &made {
            map.insert(plan.key.clone(), id.clone());
        }
        let every_room: Vec<OwnedRoomId> = map.all().cloned().collect();
        let space = match resolved {
            Some(space) if trusted => {
                // Only rooms made now need a link at once; the rest is checked after ready.
                let new: Vec<OwnedRoomId> = made.iter().map(|(_, id, _)| id.clone()).collect();
                self.link_children(&space, &new).await?;
                space
            }
            Some(space) => {
                self.repair_members(&space, &space_plan).await?;
                self.link_missing_children(&space, &every_room).await?;
                space
            }
            None => self.create_space(&space_plan, &every_room).await?,
        };
        self.store().set_room(
            &RoomKey::Space.as_str(),
            space_alias.as_str(),
            space.as_str(),
        )?;
        map.insert(RoomKey::Space, space.clone());

        let approvals_created = made
            .iter()
            .any(|(plan, _, created)| plan.key == RoomKey::Approvals && *created);
        if !approvals_created {
            let approvals = map
                .get(&RoomKey::Approvals)
                .context("the approvals room is planned at every start")?
                .clone();
            self.lock_down(&approvals)
                .await
                .context("cannot lock down the approvals room")?;
        }
        self.known_peer_rooms(&mut map).await?;
        self.known_forge_rooms(&stored, &mut map);
        self.rooms().set(map);
        tracing::info!(elapsed_ms = elapsed_ms(), "{LOG_ROOMS}");
        if trusted {
            let core = self.clone();
            tokio::spawn(async move {
                let n = known.len();
                tokio::select! {
                    _ = core.cancel().cancelled() => {}
                    r = core.repair_rooms(known, space_plan, space) => match r {
                        Ok(()) => tracing::info!(rooms = n, "repaired the rooms the store knew"),
                        Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot repair the hive's rooms; the next start tries again"),
                    }
                }
            });
        }
        Ok(())
    }

    /// After ready: the members of the rooms the store knew, the space's members and links
    /// (the module doc says why this may wait).
    async fn repair_rooms(
        &self,
        known: Vec<(RoomPlan, OwnedRoomId)>,
        space_plan: RoomPlan,
        space: OwnedRoomId,
    ) -> anyhow::Result<()> {
        let rooms: Vec<OwnedRoomId> = self.rooms().snapshot().all().cloned().collect();
        bounded(known, IN_FLIGHT, |(plan, id)| {
            let core = self.clone();
            async move {
                core.repair_members(&id, &plan)
                    .await
                    .with_context(|| format!("cannot repair the members of {id}"))
            }
        })
        .await?;
        self.repair_members(&space, &space_plan).await?;
        let rooms: Vec<OwnedRoomId> = rooms.into_iter().filter(|r| *r != space).collect();
        self.link_missing_children(&space, &rooms).await
    }

    /// Every agent's identity and profile, where the store does not know them done already.
    async fn set_up_identities(&self, trusted: bool) -> anyhow::Result<()> {
        let marks = self.store().identity_marks()?;
        let work: Vec<_> = self
            .agents()
            .all()
            .keys()
            .filter_map(|name| {
                let want = self.wanted_mark(name)?;
                match startup::identity_work(trusted, marks.get(name.as_str()), &want) {
                    IdentityWork::Nothing => None,
                    w => Some((name.clone(), w)),
                }
            })
            .collect();
        tracing::info!(
            agents = work.len(),
            "registering identities and setting profiles"
        );
        bounded(work, IN_FLIGHT, |(name, w)| {
            let core = self.clone();
            async move { core.identity(&name, w == IdentityWork::Register).await }
        })
        .await?;
        Ok(())
    }

    /// The identity mark `name`'s spec wants (its display name as sent: redacted).
    pub(super) fn wanted_mark(&self, name: &crate::agent_spec::AgentName) -> Option<IdentityMark> {
        let entry = self.agents().get(name)?;
        let spec = entry.spec();
        Some(IdentityMark {
            user_id: entry.user_id.to_string(),
            display_name: self.secrets().redact(&spec.display_name),
            avatar_url: spec.avatar_url.clone(),
        })
    }

    /// The rooms the store recorded, by key (a key no longer readable is logged and skipped:
    /// that room is then found by its alias).
    fn stored_rooms(&self) -> anyhow::Result<HashMap<RoomKey, OwnedRoomId>> {
        let mut out = HashMap::new();
        for (key, _alias, room) in self.store().rooms()? {
            match (RoomKey::parse(&key), OwnedRoomId::try_from(room.as_str())) {
                (Ok(k), Ok(id)) => {
                    out.insert(k, id);
                }
                (k, id) => {
                    tracing::warn!(
                        key,
                        room,
                        key_ok = k.is_ok(),
                        room_ok = id.is_ok(),
                        "a stored room cannot be read; it is looked up by alias"
                    )
                }
            }
        }
        Ok(out)
    }

    pub(super) fn alias_of(&self, plan: &RoomPlan) -> anyhow::Result<ruma::OwnedRoomAliasId> {
        Ok(RoomAliasId::parse(format!(
            "#{}:{}",
            plan.alias_local,
            self.cfg().server_name
        ))?)
    }

    /// The space, created with `children` linked in its initial state (one request, not one
    /// per room); a lost race falls back to the alias and links what is missing.
    async fn create_space(
        &self,
        plan: &RoomPlan,
        children: &[OwnedRoomId],
    ) -> anyhow::Result<OwnedRoomId> {
        let alias = self.alias_of(plan)?;
        match self.create_room(plan, children).await {
            Ok(id) => {
                tracing::info!(alias = %alias, room_id = %id, children = children.len(), "created the space");
                Ok(id)
            }
            Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {
                let id = self
                    .resolve_alias(&alias)
                    .await?
                    .context("alias taken but does not resolve")?;
                self.repair_members(&id, plan).await?;
                self.link_missing_children(&id, children).await?;
                Ok(id)
            }
            Err(e) => Err(e).with_context(|| format!("cannot create {alias}")),
        }
    }

    /// Links the rooms of `rooms` that the space has no live link to.
    async fn link_missing_children(
        &self,
        space: &OwnedRoomId,
        rooms: &[OwnedRoomId],
    ) -> anyhow::Result<()> {
        let resp = self
            .client()
            .send(
                state::get_state_events::v3::Request::new(space.clone()),
                None,
            )
            .await
            .with_context(|| format!("cannot read the state of the space {space}"))?;
        let mut linked = HashSet::new();
        for raw in resp.room_state {
            let v: serde_json::Value = raw.deserialize_as_unchecked()?;
            let live = v["content"].as_object().is_some_and(|c| !c.is_empty());
            if v["type"] == "m.space.child"
                && live
                && let Some(key) = v["state_key"].as_str()
            {
                linked.insert(key.to_owned());
            }
        }
        let missing = startup::missing_children(&linked, rooms);
        if !missing.is_empty() {
            tracing::warn!(rooms = missing.len(), "linking rooms into the space");
        }
        self.link_children(space, &missing).await
    }

    /// Links each of `rooms` into the space (one state event each, in the space's one room).
    async fn link_children(
        &self,
        space: &OwnedRoomId,
        rooms: &[OwnedRoomId],
    ) -> anyhow::Result<()> {
        for room in rooms {
            self.link_child(space, room).await?;
        }
        Ok(())
    }
}
