//! The `forge` task: each recorded delivery posted in its item's thread and handed to the
//! agents it concerns, once.
//!
//! It runs once at start (the rooms of every followed repository are set up, the agents
//! `[forge]` names but the hive lacks are warned about) and again whenever ingress records a
//! delivery (`core.forge().wake`). Each round takes the oldest pending deliveries and, for
//! each, in order:
//! 1. the repository's room and the item's thread root (posted now, directly, with a
//!    deterministic txn id, and stored);
//! 2. for a pull request, the files it changes, at every event (a `paths` route must find the
//!    same owner for a comment as for the opening; the forge asked with the core's token; a
//!    forge that cannot be asked leaves it routed without them, and says so), except for the
//!    hive's own writes echoed back, which tell nobody;
//! 3. the route and the audience (`route.rs`, pure);
//! 4. the thread line and each told agent's core event as outbox rows, written in the same
//!    transaction that marks the delivery done ([`crate::store::Store::finish_delivery`]).
//!
//! A failure that may pass (the homeserver away, a 5xx) ends the round: the same delivery is
//! tried again next round, after a backoff (1 s doubling, at most 5 minutes), so deliveries
//! keep their order. One that can never be posted (its server or repository no longer
//! followed, the homeserver refusing the room for good) is failed and said in `#hive-c0re`.

use std::time::Duration;

use super::route::render::{Files, Told, render_event, root_line, thread_line};
use super::route::{Facts, audience, route};
use super::thread::thread_content;
use crate::c0re::Core;
use crate::c0re::rooms::RoomKey;
use crate::forge::ItemKind;
use crate::store::{OutboxRow, PendingDelivery};

/// Deliveries taken per round.
const BATCH: usize = 20;

/// How posting one delivery failed.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// It may pass: try again later.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// It never will: fail the delivery.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl PostError {
    /// A homeserver's refusal for good is permanent; anything else may pass.
    fn of(e: anyhow::Error) -> Self {
        if crate::matrix::client::is_permanent(&e) {
            PostError::Permanent(e)
        } else {
            PostError::Transient(e)
        }
    }
}

impl Core {
    /// Runs the `forge` task until shutdown (started only when `[forge]` names a server).
    pub async fn forge_loop(self) {
        for (key, agent) in self
            .cfg()
            .forge
            .unknown_agents(|a| self.agents().get(a).is_some())
        {
            tracing::warn!(key, %agent, "[forge] names an agent this hive does not have: nothing reaches it until it is spawned");
        }
        self.forge_rooms_at_start().await;
        let mut failures: u32 = 0;
        loop {
            let wait = match self.forge_round().await {
                Ok(()) => {
                    failures = 0;
                    Duration::from_secs(3600)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = Duration::from_micros(
                        crate::store::outbox_backoff_us(failures).unsigned_abs(),
                    );
                    tracing::warn!(error = %format!("{e:#}"), attempt = failures, retry_in_s = wait.as_secs(), "a forge delivery could not be posted; trying again");
                    wait
                }
            };
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = self.forge().wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Posts every pending delivery, oldest first; stops at the first that may pass.
    async fn forge_round(&self) -> anyhow::Result<()> {
        loop {
            let pending = self.store().pending_deliveries(BATCH)?;
            if pending.is_empty() {
                return Ok(());
            }
            for d in &pending {
                match self.post_delivery(d).await {
                    Ok(()) => {}
                    Err(PostError::Transient(e)) => {
                        return Err(
                            e.context(format!("delivery {} from {}", d.delivery_id, d.server))
                        );
                    }
                    Err(PostError::Permanent(e)) => {
                        let why = format!("{e:#}");
                        tracing::error!(server = d.server, delivery = d.delivery_id, error = %why, "a forge delivery can never be posted");
                        self.store().fail_delivery(d.id, &why)?;
                        self.notice(
                            None,
                            &format!(
                                "⚠️ A delivery from forge **{}** ({} {}) was not posted: {why}",
                                d.server, d.event_name, d.event.item
                            ),
                        )
                        .await;
                    }
                }
            }
        }
    }

    /// One delivery: thread, files, route, the line and the core events with `done`.
    async fn post_delivery(&self, d: &PendingDelivery) -> Result<(), PostError> {
        let forge = &self.cfg().forge;
        let ev = &d.event;
        let server = forge.server(&d.server).ok_or_else(|| {
            PostError::Permanent(anyhow::anyhow!(
                "{} is no longer one of [[forge.servers]]",
                d.server
            ))
        })?;
        if !server.follows(&ev.item.repo) {
            return Err(PostError::Permanent(anyhow::anyhow!(
                "{} does not follow {} any more",
                server.name,
                ev.item.repo
            )));
        }
        let (room, root) = self
            .forge_thread(&server.name, &ev.item, &root_line(ev))
            .await
            .map_err(PostError::of)?;
        // The hive's own writes echoed back tell nobody: the forge is not asked for them.
        let own = server
            .login
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(&ev.actor));
        let files = match ev.kind {
            ItemKind::PullRequest if !own => self.pr_file_names(ev).await,
            ItemKind::PullRequest | ItemKind::Issue => Files::NotRead,
        };
        let facts = Facts {
            repo: ev.item.repo.clone(),
            labels: ev.labels.clone(),
            author: ev.author.clone(),
            files: files.known().to_vec(),
        };
        let routed = route(&forge.routes, &facts);
        let told = audience(ev, routed.as_ref(), forge, server.login.as_deref());
        let key = RoomKey::forge(&ev.item.repo);
        let mut rows = vec![OutboxRow {
            txn_id: format!("hh-forge-line-{}-{}", server.name, d.delivery_id),
            room_key: key.to_string(),
            content: thread_content(
                &thread_line(ev, routed.as_ref(), &files),
                root.as_str(),
                true,
            )
            .to_string(),
        }];
        let facts = Told {
            server: &server.name,
            delivery: &d.delivery_id,
            event: ev,
            room_id: room.as_str(),
            thread_id: root.as_str(),
            routed: routed.as_ref(),
            files: &files,
        };
        for (agent, roles) in &told {
            let (text, data) = render_event(&facts, roles);
            let txn = format!("hh-forge-{}-{}-{agent}", server.name, d.delivery_id);
            match self.core_event(agent.as_str(), "forge", &text, data, &txn) {
                Some(row) => rows.push(row),
                None => {
                    tracing::warn!(%agent, item = %ev.item, "a forge event is for an agent this hive does not have")
                }
            }
        }
        self.store()
            .finish_delivery(d.id, &rows)
            .map_err(PostError::Transient)?;
        tracing::info!(server = server.name, delivery = d.delivery_id, item = %ev.item, told = told.len(), "posted a forge delivery");
        self.wake_outbox();
        Ok(())
    }

    /// The names of the files a pull request changes, or why they are not known.
    async fn pr_file_names(&self, ev: &crate::forge::webhook::ForgeEvent) -> Files {
        let asked = async {
            let client = self.forge_client(&ev.item.repo).await?;
            anyhow::Ok(client.pr_files(&ev.item).await?)
        };
        match asked.await {
            Ok(files) => Files::Known(files.into_iter().map(|f| f.filename).collect()),
            Err(e) => {
                let why = self.secrets().redact(&format!("{e:#}"));
                tracing::warn!(item = %ev.item, error = %why, "cannot read a pull request's files; routed without them");
                Files::Unknown(why)
            }
        }
    }
}
