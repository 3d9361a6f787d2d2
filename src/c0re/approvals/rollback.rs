//! A rollback: a request to run an earlier deploy's config again. It is filed as an ordinary
//! `apply_commit` request for a **new** commit whose tree is exactly that deploy's and whose
//! parent is the applied commit (`ConfigRepo::commit_tree_on_applied`), so it fast-forwards, is
//! snapshotted, diffed against what runs now and applied as the next deploy like any other
//! commit; the history only grows. Its summary and commit message say `rollback to deploy/<n>`,
//! which is what the request in `#hive-approvals` shows.
//!
//! Rules ([`pick_deploy`], [`check_trees`], pure):
//! - the deploy must exist (`deploy/<n>`, as `config_log` lists them);
//! - its files must differ from the applied ones (same tree: nothing to roll back);
//! - its config must still pass what hive.toml grants now (checked before the proposed branch
//!   moves, and again at filing and at apply, as for every request).
//!
//! The proposed branch moves to the rollback commit; proposed commits that were never applied
//! leave the proposed side, are kept reachable and are named in the answer. Used by the core
//! (`request_rollback`, managers only) and by `hive config rollback` (operators).

use anyhow::Context;

use super::filing::{Refusal, RequestRefused, check_summary, file_request, grantable};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::config::Config;
use crate::configrepo::ConfigRepo;
use crate::store::ApprovalKind;

/// A filed rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The request's id.
    pub id: i64,
    pub agent: AgentName,
    /// The deploy rolled back to, and its commit.
    pub deploy: u64,
    pub deploy_sha: String,
    /// The new commit filed (that deploy's tree on the applied commit), and its parent.
    pub sha: String,
    pub parent: String,
    /// Unapplied proposed commits the proposed branch no longer holds, newest first.
    pub abandoned: Vec<String>,
}

/// The commit of `deploy/<n>` among `deploys` (number, sha), or why there is none.
pub fn pick_deploy<'a>(
    agent: &AgentName,
    deploys: &'a [(u64, String)],
    n: u64,
) -> Result<&'a str, Refusal> {
    deploys
        .iter()
        .find(|(d, _)| *d == n)
        .map(|(_, sha)| sha.as_str())
        .ok_or_else(|| Refusal::UnknownDeploy {
            agent: agent.clone(),
            deploy: n,
            latest: deploys.iter().map(|(d, _)| *d).max().unwrap_or(0),
        })
}

/// Whether rolling back to deploy `n` (whose tree is `target`) changes anything: refused when
/// the applied tree is the same.
pub fn check_trees(agent: &AgentName, n: u64, target: &str, applied: &str) -> Result<(), Refusal> {
    if target == applied {
        return Err(Refusal::NothingToRollBack {
            agent: agent.clone(),
            deploy: n,
        });
    }
    Ok(())
}

/// The request's summary: `rollback to deploy/<n>`, then the requester's words if any.
pub fn rollback_summary(n: u64, summary: &str) -> String {
    match summary.trim() {
        "" => format!("rollback to deploy/{n}"),
        why => format!("rollback to deploy/{n}: {why}"),
    }
}

/// Files a rollback of `agent` to deploy `deploy` (module doc). The outer error is an internal
/// failure; the inner one a refusal, whose text the requester reads.
pub fn file_rollback(
    data_dir: &std::path::Path,
    cfg: &Config,
    requester: &str,
    agent: &str,
    deploy: u64,
    summary: &str,
) -> anyhow::Result<Result<Rollback, Refusal>> {
    let name = match AgentName::parse(agent) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.into())),
    };
    let summary = rollback_summary(deploy, summary);
    if let Err(e) = check_summary(&summary) {
        return Ok(Err(e));
    }
    let store = crate::store::Store::open(&data_dir.join("c0re.db"))?;
    if let Err(e) = super::kept::refuse_kept(&store, &name)? {
        return Ok(Err(e));
    }
    let repo = ConfigRepo::new(data_dir, &name);
    if !repo.exists() {
        return Ok(Err(Refusal::NotAnAgent(name)));
    }
    let deploys = repo.deploys()?;
    let target = match pick_deploy(&name, &deploys, deploy) {
        Ok(sha) => sha.to_owned(),
        Err(e) => return Ok(Err(e)),
    };
    let applied = repo
        .applied()?
        .with_context(|| format!("{name} has no applied config"))?;
    if let Err(e) = check_trees(
        &name,
        deploy,
        &repo.tree_of(&target)?,
        &repo.tree_of(&applied)?,
    ) {
        return Ok(Err(e));
    }
    // The old config as hive.toml grants things now, before anything moves.
    let files = match repo.read_commit(&target) {
        Ok(f) => f,
        Err(e) => return Ok(Err(Refusal::Unreadable(e))),
    };
    let spec = match repo.parse_spec(&files) {
        Ok(s) => s,
        Err(e) => return Ok(Err(Refusal::Invalid(e))),
    };
    if let Err(e) = grantable(cfg, &spec) {
        return Ok(Err(e));
    }
    let message = format!("{summary}\n\nThe files of deploy/{deploy} ({target}), again.");
    let made = repo.commit_tree_on_applied(&target, &message)?;
    let filed = file_request(
        data_dir,
        cfg,
        ApprovalKind::ApplyCommit,
        requester,
        name.as_str(),
        &made.sha,
        &summary,
    );
    if !matches!(filed, Ok(Ok(_))) {
        // Refused or failed: the proposed side is as the manager left it (the rollback commit
        // stays in the repo, unreferenced by the branch).
        if let Err(e) = repo.restore_proposed(&made) {
            tracing::warn!(agent = %name, error = %format!("{e:#}"), "could not put the proposed branch back after a refused rollback");
        }
    }
    Ok(filed?.map(|id| Rollback {
        id,
        agent: name,
        deploy,
        deploy_sha: target,
        sha: made.sha,
        parent: made.parent,
        abandoned: made.abandoned,
    }))
}

impl Core {
    /// Files a rollback of `agent` to deploy `deploy` for `requester` (an agent's name or a
    /// Matrix ID), counted against the requester's rate like every request.
    pub async fn request_rollback(
        &self,
        requester: &str,
        agent: &str,
        deploy: u64,
        summary: &str,
    ) -> Result<Rollback, RequestRefused> {
        self.request_rate(requester)?;
        let (who, what, why) = (requester.to_owned(), agent.to_owned(), summary.to_owned());
        self.file(
            &format!("{requester}'s rollback of **{agent}** to deploy/{deploy}"),
            move |data, cfg| file_rollback(data, cfg, &who, &what, deploy, &why),
        )
        .await
    }
}

#[cfg(test)]
mod tests;
