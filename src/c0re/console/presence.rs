//! Each agent's presence, set by the core as the agent (`PUT /presence/{userId}/status` with
//! `?user_id=`): from what the core holds in memory (a harness connected, a turn in flight), no
//! store read. What to set, and when, is [`pace::presence_of`] and [`pace::presence_step`]; a
//! presence is set only when it changes (or falls due for renewal), so a burst of short turns
//! sets nothing.

use std::collections::HashMap;

use ruma::api::client::presence::set_presence;
use ruma::presence::PresenceState;
use tokio::time::Instant;

use super::earliest;
use super::pace::{self, Presence, Wanted};
use crate::agent_spec::AgentName;
use crate::c0re::Core;

/// What the console task set for each agent, and the turns it saw begin.
#[derive(Default)]
pub(super) struct PresenceBook {
    /// The presence last set and when.
    set: HashMap<AgentName, (Wanted, Instant)>,
    /// The turn in flight (its inbox id) and when this task first saw it.
    turns: HashMap<AgentName, (i64, Instant)>,
    /// When this task saw each agent's last turn end.
    ended: HashMap<AgentName, Instant>,
    /// When each agent last acted on the homeserver since its presence was set.
    acted: HashMap<AgentName, Instant>,
}

fn state_of(p: Presence) -> PresenceState {
    match p {
        Presence::Online => PresenceState::Online,
        Presence::Unavailable => PresenceState::Unavailable,
        Presence::Offline => PresenceState::Offline,
    }
}

impl Core {
    /// Sets every agent's presence that changed (or is due for renewal). Returns when to look
    /// again (a turn about to be old enough to show, a renewal).
    pub(super) async fn presence_pass(
        &self,
        book: &mut PresenceBook,
        now: Instant,
    ) -> Option<Instant> {
        let mut wake = None;
        let acted = self.console().take_acted();
        let agents = self.agents().all();
        book.set.retain(|n, _| agents.contains_key(n));
        for (name, entry) in agents {
            let connected = *entry.connected.lock().unwrap_or_else(|p| p.into_inner());
            let turn = entry
                .turn
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|t| t.inbox_id);
            let age = match turn {
                Some(id) => {
                    let seen = book.turns.entry(name.clone()).or_insert((id, now));
                    if seen.0 != id {
                        *seen = (id, now);
                    }
                    Some(now - seen.1)
                }
                None => {
                    if book.turns.remove(&name).is_some() {
                        book.ended.insert(name.clone(), now);
                    }
                    None
                }
            };
            if acted.contains(&entry.user_id) {
                book.acted.insert(name.clone(), now);
            }
            let last = book.set.get(&name).copied();
            let idle = book.ended.get(&name).map(|t| now - *t);
            let (wanted, again) =
                pace::presence_of(connected, age, idle, last.map(|(w, _)| w.presence));
            wake = earliest(wake, again.map(|d| now + d));
            let (put, renew) =
                pace::presence_step(last, wanted, book.acted.get(&name).copied(), now);
            if put {
                match self.set_presence(&entry.user_id, wanted).await {
                    Ok(()) => {
                        tracing::debug!(agent = %name, presence = ?wanted.presence, "presence set");
                        book.acted.remove(&name);
                        book.set.insert(name.clone(), (wanted, now));
                        wake = earliest(wake, renew);
                    }
                    Err(e) => {
                        tracing::warn!(agent = %name, error = %format!("{e:#}"), "cannot set the agent's presence; trying again later");
                        wake = earliest(wake, Some(now + super::RETRY));
                    }
                }
            } else {
                wake = earliest(wake, renew);
            }
        }
        wake
    }

    /// The hive stops: every agent shown present goes offline.
    pub(super) async fn all_offline(&self, book: &PresenceBook) {
        let offline = Wanted {
            presence: Presence::Offline,
            status: None,
        };
        for (name, (w, _)) in &book.set {
            if w.presence == Presence::Offline {
                continue;
            }
            if let Some(entry) = self.agents().get(name)
                && let Err(e) = self.set_presence(&entry.user_id, offline).await
            {
                tracing::debug!(agent = %name, error = %format!("{e:#}"), "cannot set the agent offline");
            }
        }
    }

    async fn set_presence(&self, user: &ruma::UserId, w: Wanted) -> anyhow::Result<()> {
        let mut req = set_presence::v3::Request::new(user.to_owned(), state_of(w.presence));
        req.status_msg = w.status.map(|s| self.secrets().redact(s));
        self.client().send(req, Some(user)).await?;
        Ok(())
    }
}
