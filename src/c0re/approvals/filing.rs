//! Filing a request: what is checked before an operator is asked (the requester's rate, the
//! agent's name, the summary's length, the commit's snapshot, that its agent.toml validates and
//! asks only for what hive.toml grants, that it fast-forwards the applied config), the row in
//! the store, and the request's message in `#hive-approvals`.
//!
//! A request is a row before it is a message: filing writes it `pending` and incomplete, checks
//! the snapshot, then completes it (or cancels it, refused); the approvals loop posts complete
//! requests only. A refusal is a [`Refusal`]: its text is what the requester reads.

use anyhow::Context;
use serde_json::json;

use super::text;
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::limits;
use crate::c0re::rooms::RoomKey;
use crate::config::Config;
use crate::configrepo::{ConfigFile, ConfigRepo, parse_sha};
use crate::store::{Approval, ApprovalKind, NewApproval};

pub use super::refusal::{MAX_SUMMARY, Refusal, RequestRefused, grantable, spawnable};
pub(super) use super::refusal::{check_question, check_summary};

impl Core {
    /// Files a request to apply commit `sha` to `agent`'s config: snapshots the commit into the
    /// core's repo (so the proposed side can no longer change it), validates it, and posts the
    /// request. `requester` is an agent name or a Matrix ID.
    pub async fn request_apply_commit(
        &self,
        requester: &str,
        agent: &str,
        sha: &str,
        summary: &str,
    ) -> Result<i64, RequestRefused> {
        self.request_rate(requester)?;
        let (who, what, commit, why) = (
            requester.to_owned(),
            agent.to_owned(),
            sha.to_owned(),
            summary.to_owned(),
        );
        self.file(
            &format!("{requester}'s request to apply `{sha}` to **{agent}**"),
            move |data, cfg| file_apply_commit(data, cfg, &who, &what, &commit, &why),
        )
        .await
    }

    /// A manager asks to spawn agent `name`: its config is seeded from the template on the
    /// proposed side, and the operators are asked.
    pub async fn request_init_config(
        &self,
        requester: &str,
        name: &str,
        summary: &str,
    ) -> Result<i64, RequestRefused> {
        self.request_init_config_from(requester, name, Vec::new(), summary)
            .await
    }

    /// [`Self::request_init_config`] with `files` (checked by the tool as `write_config` checks
    /// them) laid over the template.
    pub async fn request_init_config_from(
        &self,
        requester: &str,
        name: &str,
        files: Vec<ConfigFile>,
        summary: &str,
    ) -> Result<i64, RequestRefused> {
        self.request_rate(requester)?;
        if let Ok(n) = AgentName::parse(name)
            && self.agents().get(&n).is_some()
        {
            return Err(Refusal::AlreadyAnAgent(n).into());
        }
        let (who, what, why) = (requester.to_owned(), name.to_owned(), summary.to_owned());
        self.file(
            &format!("{requester}'s request to spawn `{name}`"),
            move |data, cfg| file_init_config(data, cfg, &who, &what, &why, &files),
        )
        .await
    }

    /// An agent's requests count against its question rate (they too land in front of the
    /// operators): a manager gone wrong cannot flood `#hive-approvals`.
    pub(super) fn request_rate(&self, requester: &str) -> Result<(), Refusal> {
        match AgentName::parse(requester) {
            Ok(agent) if self.agents().get(&agent).is_some() => {
                Ok(self.agents().rate(&agent, limits::Kind::Question)?)
            }
            _ => Ok(()),
        }
    }

    /// Runs a filing (git and sqlite: off the async workers), then wakes the approvals loop, or
    /// says in `#hive-c0re` why `what` was refused.
    pub(super) async fn file<T: Send + 'static>(
        &self,
        what: &str,
        filing: impl FnOnce(&std::path::Path, &Config) -> anyhow::Result<Result<T, Refusal>>
        + Send
        + 'static,
    ) -> Result<T, RequestRefused> {
        let (data, cfg) = (self.data_dir().to_owned(), self.cfg().clone());
        let filed = tokio::task::spawn_blocking(move || filing(&data, &cfg))
            .await
            .map_err(|e| RequestRefused::Failed(e.into()))?
            .map_err(RequestRefused::Failed)?;
        match filed {
            Ok(id) => {
                self.wake_approvals();
                Ok(id)
            }
            Err(reason) => {
                self.notice(None, &format!("🚫 {what} was refused: {reason}"))
                    .await;
                Err(reason.into())
            }
        }
    }

    /// A request the homeserver refused to show (too large, forbidden): it fails alone, and
    /// says so where the operator and its requester look.
    pub(super) async fn refuse_posting(
        &self,
        a: &Approval,
        e: &anyhow::Error,
    ) -> anyhow::Result<()> {
        let reason = format!("it could not be posted in #hive-approvals: {e:#}");
        tracing::error!(id = a.id, %reason, "request refused");
        self.store().cancel_approval(a.id, "hive-c0re", &reason)?;
        self.notice(
            None,
            &format!(
                "🚫 Request #{} ({} `{}` for **{}**) was cancelled: {reason}. `hive approvals --diff {}` shows it.",
                a.id, a.kind, a.sha, a.agent, a.id
            ),
        )
        .await;
        Ok(())
    }

    /// Posts the request message and records its event id. The text is rendered from the
    /// snapshot (`text::render`: agent text as text, every file's stat, agent.toml first,
    /// bounded); a request whose changes cannot be shown is not posted (the error fails it).
    pub(super) async fn post_request(&self, a: &Approval) -> anyhow::Result<()> {
        if a.kind.is_kept_state() {
            return self.post_kept_request(a).await;
        }
        let room = self
            .rooms()
            .get(&RoomKey::Approvals)
            .context("no approvals room")?;
        let name = AgentName::parse(&a.agent)?;
        let repo = ConfigRepo::new(self.data_dir(), &name);
        let changes = match tokio::task::block_in_place(|| repo.changes(&a.sha)) {
            Ok(c) => c,
            Err(e) => {
                // Never a request without what it changes: it fails, said where it shows.
                self.refuse_posting(a, &e.context("its changes cannot be shown"))
                    .await?;
                return Ok(());
            }
        };
        let rendered = text::render(&text::RequestView {
            id: a.id,
            spawn: a.kind == ApprovalKind::InitConfig,
            requester: &a.requester,
            agent: &a.agent,
            summary: &a.summary,
            sha: &a.sha,
            required: a.required.max(self.cfg().approvals_required),
            expires_us: a.expires_us,
            changes: &changes,
        });
        // Rendered already, as text: never through the Markdown renderer.
        let mut content = json!({
            "msgtype": "m.text",
            "body": rendered.body,
            "format": "org.matrix.custom.html",
            "formatted_body": rendered.html,
        });
        // The operators are notified (`mentions.rs`).
        crate::c0re::mentions::mention_operators(&mut content, &self.cfg().operators);
        // What the operator approves must be what is applied: a request the secret filter would
        // have to redact is not shown redacted, it is not posted at all.
        if let Some(label) = self.secrets().find_in_content(&content) {
            let e = anyhow::anyhow!(
                "it shows {label}; a config must not carry a secret (`hive approvals --diff {}` shows it to you)",
                a.id
            );
            self.refuse_posting(a, &e).await?;
            return Ok(());
        }
        let txn = format!("hh-approval-{}", a.id);
        let ev = self.send_raw(&room, None, &txn, &content).await?;
        self.store().set_request_event(a.id, ev.as_str())?;
        Ok(())
    }
}

/// Files an apply-commit request in the database, after snapshotting and validating the commit.
/// The outer error is an internal failure; the inner one a refusal with its reason. Used by the
/// core (requests from agents) and by `hive config propose` (requests from humans).
pub fn file_apply_commit(
    data_dir: &std::path::Path,
    cfg: &Config,
    requester: &str,
    agent: &str,
    sha: &str,
    summary: &str,
) -> anyhow::Result<Result<i64, Refusal>> {
    file_request(
        data_dir,
        cfg,
        ApprovalKind::ApplyCommit,
        requester,
        agent,
        sha,
        summary,
    )
}

/// Seeds a new agent's proposed config from the built-in template with `files` laid over it
/// (none: the template alone), validated as `write_config` validates, and files an
/// `init_config` request for it. Used by the core for a manager's `request_init_config`.
pub fn file_init_config(
    data_dir: &std::path::Path,
    cfg: &Config,
    requester: &str,
    name: &str,
    summary: &str,
    files: &[ConfigFile],
) -> anyhow::Result<Result<i64, Refusal>> {
    let name = match AgentName::parse(name) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.into())),
    };
    if let Err(e) = check_summary(summary).and_then(|()| spawnable(cfg, &name)) {
        return Ok(Err(e));
    }
    let store = crate::store::Store::open(&data_dir.join("c0re.db"))?;
    if let Err(e) = super::refusal::refuse_kept(&store, &name)? {
        return Ok(Err(e));
    }
    let repo = ConfigRepo::new(data_dir, &name);
    if repo.exists() {
        return Ok(Err(Refusal::AlreadyAnAgent(name)));
    }
    let tree = super::spawn_files::seed_tree(
        crate::configrepo::template(&name, requester, summary),
        files,
    );
    let sha = match super::spawn_files::commit_seed(
        cfg,
        &repo,
        &tree,
        &super::spawn_files::seed_message(&name, summary, !files.is_empty()),
    )? {
        Ok(sha) => sha,
        Err(refused) => return Ok(Err(refused)),
    };
    file_request(
        data_dir,
        cfg,
        ApprovalKind::InitConfig,
        requester,
        name.as_str(),
        &sha,
        summary,
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn file_request(
    data_dir: &std::path::Path,
    cfg: &Config,
    kind: ApprovalKind,
    requester: &str,
    agent: &str,
    sha: &str,
    summary: &str,
) -> anyhow::Result<Result<i64, Refusal>> {
    let name = match AgentName::parse(agent) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.into())),
    };
    if let Err(e) = check_summary(summary) {
        return Ok(Err(e));
    }
    let sha = match parse_sha(sha) {
        Ok(s) => s,
        Err(e) => return Ok(Err(Refusal::Sha(e))),
    };
    let repo = ConfigRepo::new(data_dir, &name);
    if kind == ApprovalKind::ApplyCommit && !repo.exists() {
        return Ok(Err(Refusal::NotAnAgent(name)));
    }
    let store = crate::store::Store::open(&data_dir.join("c0re.db"))?;
    if let Err(e) = super::refusal::refuse_kept(&store, &name)? {
        return Ok(Err(e));
    }
    let id = store.create_approval(&NewApproval {
        kind,
        agent: name.as_str(),
        sha: &sha,
        requester,
        summary,
        required: cfg.approvals_required,
        ttl_us: (cfg.approval_ttl_secs as i64).saturating_mul(1_000_000),
    })?;
    match check_commit(cfg, &repo, &sha, &id.to_string()) {
        Ok(()) => {
            // Only now can the request be posted: its snapshot and its config exist.
            store.complete_approval(id)?;
            Ok(Ok(id))
        }
        Err(reason) => {
            store.cancel_approval(id, "hive-c0re", &format!("refused: {reason}"))?;
            Ok(Err(reason))
        }
    }
}

/// Snapshots commit `sha` for request `id` and checks what it would apply: its agent.toml
/// validates and asks only for what hive.toml grants, it is not applied already, and it
/// fast-forwards the applied config.
fn check_commit(cfg: &Config, repo: &ConfigRepo, sha: &str, id: &str) -> Result<(), Refusal> {
    repo.snapshot(sha, id).map_err(Refusal::Snapshot)?;
    let files = repo.read_commit(sha).map_err(Refusal::Unreadable)?;
    let spec = repo.parse_spec(&files).map_err(Refusal::Invalid)?;
    grantable(cfg, &spec)?;
    if repo.applied().ok().flatten().as_deref() == Some(sha) {
        return Err(Refusal::AlreadyApplied(sha.to_owned()));
    }
    if !repo.is_fast_forward(sha).map_err(Refusal::History)? {
        return Err(Refusal::NotFastForward {
            sha: sha.to_owned(),
            // Only for the message: no applied config (or none readable) names nothing.
            applied: repo.applied().ok().flatten().unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
