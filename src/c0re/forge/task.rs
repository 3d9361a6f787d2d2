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
//! keep their order; after [`MAX_ATTEMPTS`] such failures it is failed, so one delivery does
//! not hold the queue for ever. One that can never be posted (its server or repository no
//! longer followed, the homeserver refusing the room for good, a stored thread root that is no
//! event id) is failed and said in `#hive-c0re`.
//!
//! The server's `login` (the token's account, whose events tell nobody: the agents' own
//! writes echoed back) is `[[forge.servers]] login`, or else asked of the forge (`GET /user`)
//! at start and until it answers: a server's deliveries wait until its login is known (said
//! once in `#hive-c0re` when it is still not known after a minute), since without it an
//! agent's own comment would wake it again, and again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::route::render::{Files, Told, render_event, root_line, thread_line};
use super::route::{Facts, audience, route};
use super::thread::{BadRoot, thread_content};
use crate::c0re::Core;
use crate::c0re::rooms::RoomKey;
use crate::forge::ItemKind;
use crate::store::{OutboxRow, PendingDelivery};

/// Deliveries taken per round.
const BATCH: usize = 20;
/// Failures that may pass after which a delivery is failed all the same.
pub const MAX_ATTEMPTS: u32 = 10;
/// How long a server's login may stay unknown before `#hive-c0re` is told.
const LOGIN_PATIENCE: Duration = Duration::from_secs(60);

/// What the `forge` task keeps between rounds (in [`super::Forge`]).
#[derive(Debug, Default)]
pub struct Lanes {
    /// Each server's login, as the forge said it (`GET /user`).
    logins: HashMap<String, String>,
    /// Since when a server's login could not be learnt, and whether that was said.
    login_failing: HashMap<String, (Instant, bool)>,
    /// Each pending delivery's failures that may pass (by its row id).
    attempts: HashMap<i64, u32>,
}

/// How posting one delivery failed.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// It may pass: try again later.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// It never will: fail the delivery.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
    /// Its server's login is not known yet: it waits (not counted as an attempt).
    #[error("{0:#}")]
    Waiting(anyhow::Error),
}

impl PostError {
    /// A homeserver's refusal for good, or a stored root that is no event id, is permanent;
    /// anything else may pass.
    fn of(e: anyhow::Error) -> Self {
        if crate::matrix::client::is_permanent(&e) || e.downcast_ref::<BadRoot>().is_some() {
            PostError::Permanent(e)
        } else {
            PostError::Transient(e)
        }
    }
}

/// What to do with a delivery after a failure that may pass, its `attempts` counted: try again
/// or, past [`MAX_ATTEMPTS`], give up.
fn after_transient(attempts: u32) -> bool {
    attempts >= MAX_ATTEMPTS
}

impl super::Forge {
    /// The task's state, locked (never held across an await).
    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let servers: Vec<String> = self
            .cfg()
            .forge
            .servers
            .iter()
            .map(|s| s.name.clone())
            .collect();
        for server in servers {
            if let Err(e) = self.forge_login(&server).await {
                tracing::warn!(server, error = %format!("{e:#}"), "cannot learn the forge login of the token yet; its deliveries wait");
            }
        }
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
                let failed = match self.post_delivery(d).await {
                    Ok(()) => None,
                    Err(PostError::Waiting(e)) => {
                        return Err(
                            e.context(format!("delivery {} from {}", d.delivery_id, d.server))
                        );
                    }
                    Err(PostError::Transient(e)) => {
                        let attempts = {
                            let mut lanes = self.forge().lanes();
                            let n = lanes.attempts.entry(d.id).or_insert(0);
                            *n += 1;
                            *n
                        };
                        if !after_transient(attempts) {
                            return Err(e.context(format!(
                                "delivery {} from {} (attempt {attempts} of {MAX_ATTEMPTS})",
                                d.delivery_id, d.server
                            )));
                        }
                        Some(e.context(format!("given up after {attempts} attempts")))
                    }
                    Err(PostError::Permanent(e)) => Some(e),
                };
                self.forge().lanes().attempts.remove(&d.id);
                if let Some(e) = failed {
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
        let login = self
            .forge_login(&server.name)
            .await
            .map_err(PostError::Waiting)?;
        let (room, root) = self
            .forge_thread(&server.name, &ev.item, &root_line(ev))
            .await
            .map_err(PostError::of)?;
        // The hive's own writes echoed back tell nobody and get no line of the bot's (the
        // agent said it in the thread already): the forge is not asked for them.
        let own = login.eq_ignore_ascii_case(&ev.actor);
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
        let told = audience(ev, routed.as_ref(), forge, &login);
        let key = RoomKey::forge(&ev.item.repo);
        let mut rows = Vec::new();
        if !own {
            rows.push(OutboxRow {
                txn_id: format!("hh-forge-line-{}-{}", server.name, d.delivery_id),
                room_key: key.to_string(),
                content: thread_content(
                    &thread_line(ev, routed.as_ref(), &files),
                    root.as_str(),
                    true,
                )
                .to_string(),
            });
        }
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

    /// The forge login of `server`'s token: `[[forge.servers]] login`, else what the forge
    /// said (`GET /user`, asked now when not known yet). Still unknown a minute after the first
    /// failure, it is said once in `#hive-c0re`.
    async fn forge_login(&self, server: &str) -> anyhow::Result<String> {
        let Some(s) = self.cfg().forge.server(server) else {
            anyhow::bail!("{server} is not one of [[forge.servers]]");
        };
        if let Some(l) = &s.login {
            return Ok(l.clone());
        }
        if let Some(l) = self.forge().lanes().logins.get(server) {
            return Ok(l.clone());
        }
        let asked = async {
            let repo = s.repos.first().with_context(|| {
                format!("forge server {server} follows no repository to ask its login with")
            })?;
            let client = self.forge_client(repo).await?;
            anyhow::Ok(client.whoami().await?)
        };
        match asked.await {
            Ok(login) => {
                tracing::info!(server, login, "learnt the forge login of the token");
                let mut lanes = self.forge().lanes();
                lanes.login_failing.remove(server);
                lanes.logins.insert(server.to_owned(), login.clone());
                Ok(login)
            }
            Err(e) => {
                let why = self.secrets().redact(&format!("{e:#}"));
                let say = {
                    let mut lanes = self.forge().lanes();
                    let (since, said) = lanes
                        .login_failing
                        .entry(server.to_owned())
                        .or_insert((Instant::now(), false));
                    let say = !*said && since.elapsed() >= LOGIN_PATIENCE;
                    *said |= say;
                    say
                };
                if say {
                    self.notice(
                        None,
                        &format!(
                            "⚠️ The login of forge **{server}**'s token is still not known, so its deliveries wait (set `login` in its [[forge.servers]] or mend the token): {why}"
                        ),
                    )
                    .await;
                }
                Err(anyhow::anyhow!(
                    "the login of forge {server}'s token is not known yet: {why}"
                ))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_given_up_after_its_attempts() {
        struct Case {
            name: &'static str,
            attempts: u32,
            give_up: bool,
        }
        let cases = [
            Case {
                name: "the first failure: again",
                attempts: 1,
                give_up: false,
            },
            Case {
                name: "one short: again",
                attempts: MAX_ATTEMPTS - 1,
                give_up: false,
            },
            Case {
                name: "the last: given up",
                attempts: MAX_ATTEMPTS,
                give_up: true,
            },
        ];
        for c in cases {
            assert_eq!(after_transient(c.attempts), c.give_up, "{}", c.name);
        }
    }

    #[test]
    fn what_is_permanent() {
        struct Case {
            name: &'static str,
            error: anyhow::Error,
            permanent: bool,
        }
        let cases = [
            Case {
                name: "a stored root that is no event id",
                error: anyhow::Error::new(BadRoot {
                    item: "acme/widgets#5".into(),
                    root: "nope".into(),
                })
                .context("cannot post"),
                permanent: true,
            },
            Case {
                name: "anything else may pass",
                error: anyhow::anyhow!("connection refused"),
                permanent: false,
            },
        ];
        for c in cases {
            let got = matches!(PostError::of(c.error), PostError::Permanent(_));
            assert_eq!(got, c.permanent, "{}", c.name);
        }
    }
}
