//! Each agent's presence, set by the core as the agent (`PUT /presence/{userId}/status` with
//! `?user_id=`): from what the core holds in memory (a harness connected, a turn in flight), no
//! store read. What to set, and when, is [`pace::presence_of`] and [`pace::presence_step`]; a
//! presence is set only when it changes (or falls due for renewal), so a burst of short turns
//! sets nothing.

use std::collections::HashMap;

use ruma::OwnedUserId;
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
    /// Each agent's Matrix user, kept so that one gone from the registry can be set offline.
    users: HashMap<AgentName, OwnedUserId>,
    /// After a failed PUT: no other PUT for that agent before then (see [`super::RETRY`]).
    retry_at: HashMap<AgentName, Instant>,
}

impl PresenceBook {
    /// Forgets `name` everywhere.
    fn forget(&mut self, name: &AgentName) {
        self.set.remove(name);
        self.turns.remove(name);
        self.ended.remove(name);
        self.acted.remove(name);
        self.users.remove(name);
        self.retry_at.remove(name);
    }
}

/// The agents the book knows that left the registry, and whether each must be set offline
/// first (its last presence set was not offline).
fn departed<'a>(
    known: impl Iterator<Item = &'a AgentName>,
    set: &HashMap<AgentName, (Wanted, Instant)>,
    present: impl Fn(&AgentName) -> bool,
) -> Vec<(AgentName, bool)> {
    let mut out: Vec<(AgentName, bool)> = known
        .filter(|n| !present(n))
        .map(|n| {
            let shown = set
                .get(n)
                .is_some_and(|(w, _)| w.presence != Presence::Offline);
            (n.clone(), shown)
        })
        .collect();
    out.sort();
    out.dedup();
    out
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
        let known: Vec<AgentName> = book
            .set
            .keys()
            .chain(book.users.keys())
            .chain(book.turns.keys())
            .chain(book.ended.keys())
            .cloned()
            .collect();
        for (name, shown) in departed(known.iter(), &book.set, |n| agents.contains_key(n)) {
            // Gone from the registry (destroyed, kept): shown offline now, not in 10 minutes.
            if shown && let Some(user) = book.users.get(&name).cloned() {
                let offline = Wanted {
                    presence: Presence::Offline,
                    status: None,
                };
                if let Err(e) = self.set_presence(&user, offline).await {
                    tracing::debug!(agent = %name, error = %format!("{e:#}"), "cannot set a departed agent offline");
                }
            }
            book.forget(&name);
        }
        for (name, entry) in agents {
            book.users.insert(name.clone(), entry.user_id.clone());
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
            let waiting = book.retry_at.get(&name).copied().filter(|at| now < *at);
            if put && let Some(at) = waiting {
                // The last PUT failed: no other before its retry.
                wake = earliest(wake, Some(at));
            } else if put {
                match self.set_presence(&entry.user_id, wanted).await {
                    Ok(()) => {
                        tracing::debug!(agent = %name, presence = ?wanted.presence, "{}", super::LOG_PRESENCE_SET);
                        book.acted.remove(&name);
                        book.retry_at.remove(&name);
                        book.set.insert(name.clone(), (wanted, now));
                        wake = earliest(wake, renew);
                    }
                    Err(e) => {
                        tracing::warn!(agent = %name, error = %format!("{e:#}"), "cannot set the agent's presence; trying again later");
                        book.retry_at.insert(name.clone(), now + super::RETRY);
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
            if let Some(user) = book.users.get(name)
                && let Err(e) = self.set_presence(user, offline).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_gone_from_the_registry() {
        let n = |s: &str| AgentName::parse(s).expect("a name");
        let at = Instant::now();
        let shown = |p| {
            (
                Wanted {
                    presence: p,
                    status: None,
                },
                at,
            )
        };
        struct Case {
            name: &'static str,
            known: Vec<AgentName>,
            set: Vec<(AgentName, Presence)>,
            present: Vec<AgentName>,
            want: Vec<(AgentName, bool)>,
        }
        let cases = [
            Case {
                name: "all still there: nothing departs",
                known: vec![n("echo")],
                set: vec![(n("echo"), Presence::Online)],
                present: vec![n("echo")],
                want: vec![],
            },
            Case {
                name: "gone while shown online: set offline, then forgotten",
                known: vec![n("echo"), n("argus")],
                set: vec![
                    (n("echo"), Presence::Online),
                    (n("argus"), Presence::Unavailable),
                ],
                present: vec![n("argus")],
                want: vec![(n("echo"), true)],
            },
            Case {
                name: "gone while offline: only forgotten",
                known: vec![n("echo")],
                set: vec![(n("echo"), Presence::Offline)],
                present: vec![],
                want: vec![(n("echo"), false)],
            },
            Case {
                name: "gone before any presence was set, known twice: once, not set",
                known: vec![n("echo"), n("echo")],
                set: vec![],
                present: vec![],
                want: vec![(n("echo"), false)],
            },
        ];
        for c in cases {
            let set: HashMap<AgentName, (Wanted, Instant)> =
                c.set.into_iter().map(|(k, p)| (k, shown(p))).collect();
            let got = departed(c.known.iter(), &set, |a| c.present.contains(a));
            assert_eq!(got, c.want, "{}", c.name);
        }
    }
}
