//! A revive, all or nothing: a kept agent comes back on its last applied config (checked again
//! against hive.toml and its `allowed_recipients`), or, if it cannot be brought up, it is kept
//! again as it was (out of the registry, kept by the same destroy, its wanted state as before).

use anyhow::Context;

use super::grantable;
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::configrepo::ConfigRepo;
use crate::store::Approval;

impl Core {
    /// Revives a kept agent on its last applied config. Returns its deploy number and what to
    /// say.
    pub(super) async fn revive(&self, a: &Approval) -> anyhow::Result<(i64, String)> {
        let name = AgentName::parse(&a.agent)?;
        let kept = self
            .store()
            .kept_agent(name.as_str())?
            .with_context(|| format!("{name} is not kept"))?;
        anyhow::ensure!(
            self.agents().get(&name).is_none(),
            "{name} is running already"
        );
        let repo = ConfigRepo::new(self.data_dir(), &name);
        let spec = tokio::task::block_in_place(|| repo.load_current()).map_err(|e| {
            anyhow::anyhow!(
                "its last applied config does not load: {}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        // The hive's config as it is now decides what it may use.
        grantable(self.cfg(), &spec)?;
        for r in &spec.allowed_recipients {
            anyhow::ensure!(
                self.agents().get(r).is_some(),
                "allowed_recipients: {r} is not a running agent of this hive"
            );
        }
        let deploy = repo.current().map_or(0, |(n, _)| n as i64);
        let wanted_before = self.store().wanted(name.as_str())?;
        self.store().unkeep_agent(name.as_str())?;
        // Revived is running, whatever a manager's `stop` said before the destroy.
        self.store().set_wanted(
            name.as_str(),
            crate::store::Wanted::Running,
            &format!("revive #{}", a.id),
        )?;
        self.agents()
            .add(self.cfg().agent_user_id(&spec.name), spec);
        let up = if crate::failpoint::fails("revive-bring-up") {
            Err(anyhow::anyhow!("failpoint revive-bring-up"))
        } else {
            self.bring_up(&name).await
        };
        if let Err(e) = up {
            // All or nothing: it is kept again, as before the revive.
            let back = self.keep_again(&name, &kept, wanted_before).await;
            return Err(e.context(format!("{name} could not be brought up; {back}")));
        }
        // Its inbox's name and topic as its config has them (the topic said "kept"). It runs
        // now whatever the homeserver says: a failure is said, and repaired at the next start.
        let rooms = match self.refresh_agent(&name).await {
            Ok(()) => String::new(),
            Err(e) => format!(
                " (its inbox's name and topic could not be restored yet: {})",
                self.shown_path(&format!("{e:#}"))
            ),
        };
        Ok((
            deploy,
            format!(
                "🐝 **{name}** is revived on deploy/{deploy}: its identity rejoined its rooms and its harness starts{rooms}"
            ),
        ))
    }

    /// A revive that failed before the agent was up is undone: out of the registry (its tasks
    /// end), kept again by the same destroy, its wanted state as before, out of the rooms it
    /// may have rejoined. Returns what was done, as said in the thread.
    async fn keep_again(
        &self,
        name: &AgentName,
        kept: &crate::store::KeptAgent,
        wanted: crate::store::Wanted,
    ) -> String {
        let entry = self.agents().remove(name);
        let reason = format!(
            "{name} is kept (destroyed by request #{}): its revive failed",
            kept.approval_id
        );
        let store = self
            .store()
            .keep_agent(name.as_str(), kept.approval_id, &kept.sha, &reason)
            .and_then(|_| {
                self.store()
                    .set_wanted(name.as_str(), wanted, "a failed revive")
            });
        if let Err(e) = store {
            tracing::error!(agent = %name, error = %format!("{e:#}"), "could not keep the agent again after its revive failed");
            return format!(
                "and it could not be kept again ({e:#}): hive-c0re may start it at its next start"
            );
        }
        let user = entry.map_or_else(|| self.cfg().agent_user_id(name), |e| e.user_id.clone());
        let left = self.leave_and_mark(name, &user, kept.approval_id).await;
        format!("it stays kept ({left})")
    }
}
