//! Applying an approved request, exactly once: the request is `applying` in the store before
//! anything changes; the config repo's `applied` ref is the commit point (`ConfigRepo::deploy`);
//! then the running agent gets its new spec and restarts after its in-flight turn, or a spawned
//! agent is brought up. A core that stopped mid-apply finishes it from git at its next start
//! (`recover_applying`), never twice.

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::configrepo::ConfigRepo;
use crate::store::{Approval, ApprovalKind, ApprovalState};

use super::filing::{grantable, spawnable};

impl Core {
    /// Applies an approval now in `applying`: renders and switches the new generation, moves
    /// `applied`, restarts the agent after its in-flight turn. A failure leaves the previous
    /// generation running and says why.
    pub(super) async fn apply(&self, a: Approval) {
        if a.kind.is_kept_state() {
            return self.apply_kept(a).await;
        }
        self.react(&a, "⏳").await;
        // A spawn's identity first: it must be a new account (nothing is applied otherwise).
        let fresh = match (a.kind, AgentName::parse(&a.agent)) {
            (ApprovalKind::InitConfig, Ok(name)) if self.agents().get(&name).is_none() => {
                match self.store().kept_agent(name.as_str()) {
                    Ok(None) => self.register_new_agent(&name).await,
                    Ok(Some(k)) => Err(anyhow::anyhow!(
                        "{name} is kept (destroyed by request #{}): a spawn cannot reuse its name; revive it or purge it",
                        k.approval_id
                    )),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        };
        let result = match fresh {
            Ok(()) => tokio::task::block_in_place(|| self.apply_config(&a)),
            Err(e) => Err(e),
        };
        match result {
            Ok(deploy) if a.kind == ApprovalKind::InitConfig => {
                self.record_apply(&a, Ok(deploy));
                self.tell_applied(&a, deploy);
                let name = AgentName::parse(&a.agent).expect("validated at request time");
                match self.bring_up(&name).await {
                    Ok(()) => {
                        self.react(&a, "✅").await;
                        self.thread(&a, &format!("✅ Spawned **{name}** (deploy/{deploy}): its room is #agent-{name}.")).await;
                        self.notice(
                            None,
                            &format!("🐣 **{name}** joined the hive (request #{}).", a.id),
                        )
                        .await;
                    }
                    Err(e) => {
                        let reason = format!("{e:#}");
                        self.react(&a, "❌").await;
                        self.thread(&a, &format!("⚠️ **{name}**'s config is applied but it could not be started: {reason}. It starts with the next start of hive-c0re.")).await;
                    }
                }
            }
            Ok(deploy) => {
                self.record_apply(&a, Ok(deploy));
                self.tell_applied(&a, deploy);
                if let Ok(name) = AgentName::parse(&a.agent)
                    && let Err(e) = self.refresh_agent(&name).await
                {
                    self.thread(
                        &a,
                        &format!("⚠️ Applied, but its profile and rooms could not be updated yet: {e:#}. They are repaired at the next start of hive-c0re."),
                    )
                    .await;
                }
                self.react(&a, "✅").await;
                self.thread(
                    &a,
                    &format!(
                        "✅ Applied `{}` to **{}** as deploy/{deploy}; it restarts after its current turn.",
                        a.sha, a.agent
                    ),
                )
                .await;
            }
            Err(e) => {
                let reason = format!("{e:#}");
                self.record_apply(&a, Err(&reason));
                self.react(&a, "❌").await;
                self.thread(
                    &a,
                    &format!(
                        "❌ Applying failed: {reason}. **{}** keeps its previous config.",
                        a.agent
                    ),
                )
                .await;
            }
        }
    }

    /// `applying` → `applied`/`failed` in the store. The config is already switched (or not):
    /// a store that cannot record it is said loudly; at the next start `recover_applying`
    /// finishes the record from git, which is the commit point.
    pub(super) fn record_apply(&self, a: &Approval, result: Result<i64, &str>) {
        if let Err(e) = self.store().finish_apply(a.id, result) {
            tracing::error!(id = a.id, error = %format!("{e:#}"), "could not record the end of an apply; it is finished at the next start");
        }
    }

    /// The managers learn that `a` took effect as `deploy` (a `config_applied` event; the
    /// same approval is one event, however often this runs).
    fn tell_applied(&self, a: &Approval, deploy: i64) {
        let Ok(agent) = AgentName::parse(&a.agent) else {
            return;
        };
        self.tell_managers(&crate::c0re::events::ManagerEvent::Applied {
            agent,
            sha: a.sha.clone(),
            deploy,
            approval_id: a.id,
            spawned: a.kind == ApprovalKind::InitConfig,
        });
    }

    fn apply_config(&self, a: &Approval) -> anyhow::Result<i64> {
        let name = AgentName::parse(&a.agent)?;
        let entry = self.agents().get(&name);
        match (a.kind, &entry) {
            (ApprovalKind::InitConfig, Some(_)) => anyhow::bail!("{name} already exists"),
            (ApprovalKind::ApplyCommit, None) => {
                anyhow::bail!("{name} is not an agent of this hive")
            }
            // Checked again with the hive's config as it is now; a kept name is not free.
            (ApprovalKind::InitConfig, None) => {
                spawnable(self.cfg(), &name)?;
                anyhow::ensure!(
                    self.store().kept_agent(name.as_str())?.is_none(),
                    "{name} is kept (destroyed): a spawn cannot reuse its name"
                );
            }
            (ApprovalKind::ApplyCommit, Some(_)) => {}
            (kind, _) => anyhow::bail!("a {kind} request applies no config"),
        }
        let repo = ConfigRepo::new(self.data_dir(), &name);
        let files = repo.read_commit(&a.sha).map_err(|e| anyhow::anyhow!(e))?;
        let spec = repo.parse_spec(&files).map_err(|e| anyhow::anyhow!(e))?;
        // The hive's config as it is now decides what an approved config may use.
        grantable(self.cfg(), &spec)?;
        for r in &spec.allowed_recipients {
            anyhow::ensure!(
                self.agents().get(r).is_some(),
                "allowed_recipients: {r} is not an agent of this hive"
            );
        }
        let n = repo.current().map_or(0, |(n, _)| n) + 1;
        crate::failpoint::exit_at("apply-before-commit");
        repo.deploy(&a.sha, n, &files)?;
        crate::failpoint::exit_at("apply-after-commit");
        let running = repo.load_current().map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        match entry {
            Some(entry) => {
                entry.set_spec(running);
                entry.restart.notify_one();
            }
            None => {
                self.agents()
                    .add(self.cfg().agent_user_id(&running.name), running);
            }
        }
        // Its schedules are the applied config's from now on.
        self.wake_schedules();
        Ok(n as i64)
    }

    /// At start: an approval found `applying` was interrupted. If its commit point was reached
    /// (`applied` moved), finish it; otherwise nothing changed: mark it failed. Never run twice.
    pub(super) async fn recover_applying(&self) -> anyhow::Result<()> {
        for a in self.store().approvals_in(ApprovalState::Applying)? {
            if a.kind.is_kept_state() {
                self.recover_kept(&a).await?;
                continue;
            }
            let name = AgentName::parse(&a.agent)?;
            let repo = ConfigRepo::new(self.data_dir(), &name);
            if repo.applied()?.as_deref() == Some(a.sha.as_str()) {
                let finished = tokio::task::block_in_place(|| -> anyhow::Result<i64> {
                    let n = match repo.current() {
                        Some((n, sha)) if sha == a.sha => n,
                        other => {
                            let n = other.map_or(0, |(n, _)| n) + 1;
                            let files = repo.read_commit(&a.sha).map_err(|e| anyhow::anyhow!(e))?;
                            repo.deploy(&a.sha, n, &files)?;
                            n
                        }
                    };
                    if let (Some(entry), Ok(spec)) = (self.agents().get(&name), repo.load_current())
                    {
                        entry.set_spec(spec);
                        self.wake_schedules();
                    }
                    Ok(n as i64)
                });
                match finished {
                    Ok(n) => {
                        self.store().finish_apply(a.id, Ok(n))?;
                        self.tell_applied(&a, n);
                        self.react(&a, "✅").await;
                        self.thread(
                            &a,
                            &format!(
                                "✅ Applied as deploy/{n} (finished after hive-c0re restarted)."
                            ),
                        )
                        .await;
                    }
                    Err(e) => {
                        let reason = format!("interrupted and could not be finished: {e:#}");
                        self.store().finish_apply(a.id, Err(&reason))?;
                        self.react(&a, "❌").await;
                        self.thread(&a, &format!("❌ {reason}")).await;
                    }
                }
            } else {
                let reason = "hive-c0re stopped before the apply took effect; nothing was changed";
                self.store().finish_apply(a.id, Err(reason))?;
                self.react(&a, "❌").await;
                self.thread(&a, &format!("❌ {reason}. Request it again to retry."))
                    .await;
            }
        }
        Ok(())
    }
}
