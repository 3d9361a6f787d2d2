//! Kept state: `destroy`, `revive` and `purge` requests (docs/approvals.md, "Kept state").
//!
//! - **destroy** (approved): the agent is recorded kept (`kept_agents`, the commit point; the
//!   messages queued for it become dead letters), it leaves the registry (its socket and
//!   supervisor end; the harness gets SIGTERM and finishes its turn), its identity leaves every
//!   room it is in, and its inbox's topic says it is kept. Its directory (config history, state,
//!   log) stays. A kept agent is not started at the next start, and whatever reaches it is
//!   refused (`send_message`: "… is kept") or dead-lettered (a message in its inbox).
//! - **revive** (approved): the agent comes back on its last applied config: in the registry,
//!   its identity rejoins its rooms, its harness starts.
//! - **purge** (approved, then confirmed): only a kept agent; after the ✓ the request waits in
//!   `confirming` until an operator replies `purge <name>` in its thread ([`confirm`]); then
//!   `<data>/agents/<name>` is removed and nothing else ([`purge`]).
//!
//! Filing checks the request with [`check_kept_request`] (pure, a table test below); the sha
//! recorded is the agent's applied config at filing.

use anyhow::Context;
use ruma::api::client::{membership, state};
use ruma::events::StateEventType;
use ruma::serde::Raw;
use ruma::{OwnedUserId, UserId};
use serde_json::json;

pub use super::refusal::{KeptRefusal, refuse_kept};
use super::refusal::{MAX_SUMMARY, Refusal, RequestRefused, grantable};
use super::text;
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::outbound;
use crate::c0re::rooms::RoomKey;
use crate::config::Config;
use crate::configrepo::ConfigRepo;
use crate::store::{Approval, ApprovalKind, NewApproval};

pub mod confirm;
pub mod purge;
mod revive;

/// A request about an agent's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptKind {
    Destroy,
    Revive,
    Purge,
}

impl KeptKind {
    pub fn approval_kind(self) -> ApprovalKind {
        match self {
            Self::Destroy => ApprovalKind::Destroy,
            Self::Revive => ApprovalKind::Revive,
            Self::Purge => ApprovalKind::Purge,
        }
    }

    pub fn of(kind: ApprovalKind) -> Option<Self> {
        match kind {
            ApprovalKind::Destroy => Some(Self::Destroy),
            ApprovalKind::Revive => Some(Self::Revive),
            ApprovalKind::Purge => Some(Self::Purge),
            ApprovalKind::ApplyCommit | ApprovalKind::InitConfig => None,
        }
    }

    /// The tool's name (and the CLI's verb).
    pub fn as_str(self) -> &'static str {
        self.approval_kind().as_str()
    }
}

/// What the hive knows about the agent a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptFacts {
    /// It has an applied config (its directory holds a config repo).
    pub has_config: bool,
    /// It is kept (destroyed).
    pub kept: bool,
    /// It is listed in `approvals.managers`.
    pub manager: bool,
    /// The hive's runtime is `external`: the core starts (and can stop) no harness.
    pub external: bool,
}

/// Whether `kind` may be asked for `name`:
/// - destroy: an agent of the hive (an applied config), not kept already, not a manager (the
///   hive's managers are the operator's choice, in hive.toml), not under the external runtime
///   (the core cannot stop a harness someone else started: it would run on, unrouted);
/// - revive: a kept agent;
/// - purge: a kept agent, never a running one (destroy it first).
pub fn check_kept_request(
    kind: KeptKind,
    name: &AgentName,
    f: KeptFacts,
) -> Result<(), KeptRefusal> {
    match kind {
        KeptKind::Destroy if !f.has_config => Err(KeptRefusal::NotAnAgent(name.clone())),
        KeptKind::Destroy if f.kept => Err(KeptRefusal::AlreadyKept(name.clone())),
        KeptKind::Destroy if f.manager => Err(KeptRefusal::Manager(name.clone())),
        KeptKind::Destroy if f.external => Err(KeptRefusal::External(name.clone())),
        KeptKind::Revive if !f.kept => Err(KeptRefusal::NotKept(name.clone(), "revived")),
        KeptKind::Purge if !f.kept => Err(KeptRefusal::NotKept(name.clone(), "purged")),
        _ => Ok(()),
    }
}

/// Files a destroy, revive or purge request for `agent`. A destroy's or a revive's sha is the
/// applied config now (an error reading it is said, not taken for "not an agent"); a purge's
/// is the kept row's (the config it ran when destroyed: a purge that failed halfway, its
/// config repo gone, can be filed again), and the purge is tied to the destroy that kept it
/// (`Store::tie_purge`). A kept agent whose directory is gone already is purged: it is no
/// longer kept, and the refusal says so. The outer error is an internal failure; the inner one
/// a refusal with its reason. Used by the core (a manager's tool) and by `hive kept` (the
/// operator).
pub fn file_kept(
    data_dir: &std::path::Path,
    cfg: &Config,
    requester: &str,
    kind: KeptKind,
    agent: &str,
    summary: &str,
) -> anyhow::Result<Result<i64, Refusal>> {
    let name = match AgentName::parse(agent) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.into())),
    };
    if summary.len() > MAX_SUMMARY {
        return Ok(Err(Refusal::Summary(summary.len())));
    }
    let store = crate::store::Store::open(&data_dir.join("c0re.db"))?;
    let kept = store.kept_agent(name.as_str())?;
    let applied = if kind == KeptKind::Purge {
        None
    } else {
        ConfigRepo::new(data_dir, &name)
            .applied()
            .with_context(|| format!("cannot read {name}'s applied config"))?
    };
    let facts = KeptFacts {
        has_config: applied.is_some(),
        kept: kept.is_some(),
        manager: cfg.managers.contains(&name),
        external: cfg.runtime == crate::config::RuntimeKind::External,
    };
    if let Err(e) = check_kept_request(kind, &name, facts) {
        return Ok(Err(e.into()));
    }
    let (sha, destroy_id) = match (kind, kept) {
        (KeptKind::Purge, Some(k)) => {
            let root = crate::configrepo::AgentDirs::new(data_dir, &name).root;
            if purge::Entry::of(&root).with_context(|| format!("cannot look at agents/{name}"))?
                == purge::Entry::Missing
            {
                store.unkeep_agent(name.as_str())?;
                store.forget_agent_state(name.as_str())?;
                return Ok(Err(KeptRefusal::AlreadyPurged(name).into()));
            }
            (k.sha, Some(k.approval_id))
        }
        _ => match applied {
            Some(sha) => (sha, None),
            None => return Ok(Err(KeptRefusal::NotAnAgent(name).into())),
        },
    };
    let id = store.create_approval(&NewApproval {
        kind: kind.approval_kind(),
        agent: name.as_str(),
        sha: &sha,
        requester,
        summary,
        required: cfg.approvals_required,
        ttl_us: (cfg.approval_ttl_secs as i64).saturating_mul(1_000_000),
    })?;
    if let Some(d) = destroy_id {
        store.tie_purge(id, d)?;
    }
    // Nothing to snapshot: the request is complete as filed.
    store.complete_approval(id)?;
    Ok(Ok(id))
}

impl Core {
    /// A manager (or the operator, by name) asks to destroy, revive or purge `agent`.
    pub async fn request_kept(
        &self,
        requester: &str,
        kind: KeptKind,
        agent: &str,
        summary: &str,
    ) -> Result<i64, RequestRefused> {
        self.request_rate(requester)?;
        let (who, what, why) = (requester.to_owned(), agent.to_owned(), summary.to_owned());
        self.file(
            &format!("{requester}'s request to {} `{agent}`", kind.as_str()),
            move |data, cfg| file_kept(data, cfg, &who, kind, &what, &why),
        )
        .await
    }

    /// Posts a kept-state request (`text::render_kept`) and records its event id.
    pub(super) async fn post_kept_request(&self, a: &Approval) -> anyhow::Result<()> {
        let room = self
            .rooms()
            .get(&RoomKey::Approvals)
            .context("no approvals room")?;
        let rendered = text::render_kept(&text::KeptView {
            id: a.id,
            kind: a.kind,
            requester: &a.requester,
            agent: &a.agent,
            summary: &a.summary,
            sha: &a.sha,
            required: a.required.max(self.cfg().approvals_required),
            expires_us: a.expires_us,
        });
        let mut content = json!({
            "msgtype": "m.text",
            "body": rendered.body,
            "format": "org.matrix.custom.html",
            "formatted_body": rendered.html,
        });
        // The operators are notified (`mentions.rs`).
        crate::c0re::mentions::mention_operators(&mut content, &self.cfg().operators);
        if let Some(label) = self.secrets().find_in_content(&content) {
            let e = anyhow::anyhow!("its summary shows {label}");
            return self.refuse_posting(a, &e).await;
        }
        let ev = self
            .send_raw(&room, None, &format!("hh-approval-{}", a.id), &content)
            .await?;
        self.store().set_request_event(a.id, ev.as_str())?;
        Ok(())
    }

    /// Carries out an approved (or, for a purge, confirmed) kept-state request, now `applying`.
    pub(super) async fn apply_kept(&self, a: Approval) {
        self.react(&a, "⏳").await;
        let result = match KeptKind::of(a.kind) {
            Some(KeptKind::Destroy) => self.destroy(&a).await,
            Some(KeptKind::Revive) => self.revive(&a).await,
            Some(KeptKind::Purge) => self.purge(&a).await,
            None => Err(anyhow::anyhow!("{} is not a kept-state request", a.kind)),
        };
        match result {
            Ok((deploy, said)) => {
                self.record_apply(&a, Ok(deploy));
                self.react(&a, "✅").await;
                self.thread(&a, &said).await;
                self.notice(None, &format!("{said} (request #{})", a.id))
                    .await;
            }
            Err(e) => {
                // Said without the data dir's path, as a purge's error is.
                let reason = self.shown_path(&format!("{e:#}"));
                self.record_apply(&a, Err(&reason));
                self.react(&a, "❌").await;
                self.thread(&a, &format!("❌ {} failed: {reason}", a.kind))
                    .await;
            }
        }
    }

    /// Destroys a running agent (module doc). Returns its deploy number and what to say.
    async fn destroy(&self, a: &Approval) -> anyhow::Result<(i64, String)> {
        let name = AgentName::parse(&a.agent)?;
        let entry = self
            .agents()
            .get(&name)
            .with_context(|| format!("{name} is not a running agent of this hive"))?;
        anyhow::ensure!(
            !self.cfg().managers.contains(&name),
            "{name} is a manager (approvals.managers)"
        );
        if self.cfg().runtime == crate::config::RuntimeKind::External {
            return Err(KeptRefusal::External(name).into());
        }
        let repo = ConfigRepo::new(self.data_dir(), &name);
        let deploy = repo.current().map_or(0, |(n, _)| n as i64);
        let sha = repo.applied()?.unwrap_or_else(|| a.sha.clone());
        let reason = format!(
            "{name} was destroyed (request #{}): it is kept and reads nothing until it is revived",
            a.id
        );
        anyhow::ensure!(
            self.store()
                .keep_agent(name.as_str(), a.id, &sha, &reason)?,
            "{name} is kept already"
        );
        // Out of the registry: nothing routes to it, its socket and supervisor end; the
        // restart lets the supervisor stop the harness after its turn, then end.
        self.agents().remove(&name);
        entry.restart.notify_one();
        let left = self.leave_and_mark(&name, &entry.user_id, a.id).await;
        Ok((
            deploy,
            format!(
                "🗄️ **{name}** is destroyed: stopped, {left}; its state and config history are kept (revive brings it back, purge removes them)"
            ),
        ))
    }

    /// The kept agent's identity leaves every room it is in, and its inbox's topic says it is
    /// kept. Returns what was done, as said in the thread (a failure is said, not hidden: the
    /// agent is kept whatever the homeserver answers).
    async fn leave_and_mark(&self, name: &AgentName, user: &OwnedUserId, id: i64) -> String {
        if let Some(inbox) = self.rooms().get(&RoomKey::Inbox(name.clone())) {
            let topic = json!({ "topic": format!("{name} is kept (destroyed by request #{id}): nothing written here is read until it is revived.") });
            let req = state::send_state_event::v3::Request::new_raw(
                inbox,
                StateEventType::RoomTopic,
                String::new(),
                Raw::from_json(serde_json::value::to_raw_value(&topic).expect("json serialises")),
            );
            if let Err(e) = self.client().send(req, None).await {
                tracing::warn!(agent = %name, error = %e, "could not mark the kept agent's inbox");
            }
        }
        match self.leave_rooms(user).await {
            Ok(n) => format!("its identity left {n} rooms"),
            Err(e) => {
                tracing::error!(agent = %name, error = %format!("{e:#}"), "a kept agent could not leave its rooms");
                format!(
                    "but its identity could not leave its rooms ({})",
                    self.shown_path(&format!("{e:#}"))
                )
            }
        }
    }

    /// `user` (an agent's identity, asserted by the appservice) leaves every room it has
    /// joined (the core joins agents right after inviting them). Returns how many it left.
    async fn leave_rooms(&self, user: &UserId) -> anyhow::Result<usize> {
        let joined = self
            .client()
            .send(membership::joined_rooms::v3::Request::new(), Some(user))
            .await
            .context("cannot list its rooms")?;
        let mut left = 0;
        for room in joined.joined_rooms {
            self.client()
                .send(
                    membership::leave_room::v3::Request::new(room.clone()),
                    Some(user),
                )
                .await
                .with_context(|| format!("cannot leave {room}"))?;
            left += 1;
        }
        Ok(left)
    }

    /// Purges a kept agent's directory (`purge::purge_agent_dir`). Returns its last deploy
    /// number and what to say.
    async fn purge(&self, a: &Approval) -> anyhow::Result<(i64, String)> {
        let name = AgentName::parse(&a.agent)?;
        anyhow::ensure!(
            self.store().kept_agent(name.as_str())?.is_some(),
            "{name} is not kept: only a destroyed agent can be purged"
        );
        anyhow::ensure!(
            self.agents().get(&name).is_none(),
            "{name} is running: destroy it first"
        );
        let deploy = ConfigRepo::new(self.data_dir(), &name)
            .current()
            .map_or(0, |(n, _)| n as i64);
        // Nothing of its own uid may still run (and write) while its directory is removed.
        if let Some(rt) = self.agents().runtimes()
            && rt.host.own_uids.is_ok()
            && let Some(uid) = self.store().recorded_uid(name.as_str())?
        {
            crate::proc::kill_all_of_uid(uid).await;
        }
        let data = self.data_dir().to_owned();
        let said =
            match tokio::task::block_in_place(|| purge::purge_agent_dir(&data, name.as_str())) {
                Ok(_) => format!("🧹 **{name}**'s kept state is purged: agents/{name} is removed"),
                // Gone already (removed by hand, or by a purge that stopped after the removal):
                // purged all the same.
                Err(purge::PurgeError::Refused(purge::PurgeRefused::Missing(_))) => {
                    format!("🧹 **{name}**'s kept state is purged: agents/{name} was gone already")
                }
                Err(e) => anyhow::bail!(self.shown_path(&e.to_string())),
            };
        self.store().unkeep_agent(name.as_str())?;
        self.store().forget_agent_state(name.as_str())?;
        Ok((deploy, said))
    }

    /// `text` without the data dir's path.
    fn shown_path(&self, text: &str) -> String {
        text.replace(&self.data_dir().display().to_string(), "<data dir>")
    }

    /// At start: a kept-state request found `applying` was interrupted. Its commit point (the
    /// `kept_agents` row; for a purge, the directory gone) says whether it took effect: then it
    /// is finished, else it failed and nothing changed.
    pub(super) async fn recover_kept(&self, a: &Approval) -> anyhow::Result<()> {
        let name = AgentName::parse(&a.agent)?;
        let kept = self.store().kept_agent(name.as_str())?.is_some();
        let gone =
            purge::Entry::of(&crate::configrepo::AgentDirs::new(self.data_dir(), &name).root)?
                == purge::Entry::Missing;
        let done = match KeptKind::of(a.kind) {
            Some(KeptKind::Destroy) => kept,
            Some(KeptKind::Revive) => !kept,
            Some(KeptKind::Purge) => gone,
            None => false,
        };
        if done {
            if a.kind == ApprovalKind::Purge {
                self.store().unkeep_agent(name.as_str())?;
                self.store().forget_agent_state(name.as_str())?;
            }
            if a.kind == ApprovalKind::Destroy {
                let user = self.cfg().agent_user_id(&name);
                let left = self.leave_and_mark(&name, &user, a.id).await;
                tracing::info!(agent = %name, %left, "finished an interrupted destroy");
            }
            self.store().finish_apply(a.id, Ok(0))?;
            self.react(a, "✅").await;
            self.thread(
                a,
                &format!(
                    "✅ {} of **{name}** finished after hive-c0re restarted.",
                    a.kind
                ),
            )
            .await;
        } else {
            let reason = if a.kind == ApprovalKind::Purge {
                "hive-c0re stopped during the purge; the directory may be partly removed and the agent stays kept: purge it again"
            } else {
                "hive-c0re stopped before it took effect; nothing was changed"
            };
            self.store().finish_apply(a.id, Err(reason))?;
            self.react(a, "❌").await;
            self.thread(a, &format!("❌ {reason}.")).await;
        }
        Ok(())
    }

    /// At start: kept agents leave the registry before anything is set up, so none is started,
    /// given rooms or routed to. Returns them.
    pub fn drop_kept_agents(&self) -> anyhow::Result<Vec<AgentName>> {
        let mut dropped = Vec::new();
        for k in self.store().kept_agents()? {
            let name = AgentName::parse(&k.name)
                .with_context(|| format!("kept_agents holds {:?}", k.name))?;
            if self.agents().remove(&name).is_some() {
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// A `send_message` refused because its recipient is no agent: if the recipient is kept,
    /// the refusal says so.
    pub fn kept_recipient(&self, to: &str, refused: outbound::Refusal) -> outbound::Refusal {
        let kept = AgentName::parse(to.trim())
            .ok()
            .filter(|_| refused.code == crate::wire::protocol::ErrorCode::UnknownRecipient)
            .and_then(|n| self.store().kept_agent(n.as_str()).ok().flatten());
        match kept {
            Some(k) => outbound::Refusal {
                code: refused.code,
                message: format!(
                    "{} is kept (destroyed by request #{}): it reads nothing until an operator revives it",
                    k.name, k.approval_id
                ),
            },
            None => refused,
        }
    }

    /// Messages that reached a kept agent's queue (its inbox room still exists) are dead
    /// letters at once, with the reason.
    pub fn dead_letter_kept(&self, name: &str) -> anyhow::Result<()> {
        if let Some(k) = self.store().kept_agent(name)? {
            let reason = format!(
                "{name} is kept (destroyed by request #{}): nothing is delivered until it is revived",
                k.approval_id
            );
            self.store().dead_letter_agent(name, &reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
