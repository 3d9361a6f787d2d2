//! The typing notice and the read receipt around a turn: a courtesy to the people in the room.
//! Shown once a turn has run for a while and the hive is quiet (`signals.rs`,
//! [`Courtesy::TypingOn`]), refreshed while it runs; withdrawn a moment after it ends
//! ([`Courtesy::TypingOff`]). The receipt is handed to the signals task, which coalesces and
//! defers it. `[console] typing` and `read_receipts` turn either off. Every failure here is only
//! logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ruma::api::client::typing;
use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId};

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::signals::{Courtesy, quiet_moment};
use crate::store::InboxItem;

/// How long one typing notice lasts, and how often it is renewed while the turn runs.
const TYPING_FOR: Duration = Duration::from_secs(30);
const TYPING_RENEW: Duration = Duration::from_secs(25);

/// The typing notice of the turn in flight (and its receipt to come).
pub(super) struct Typing {
    /// The notice's task; `None` with `[console] typing = false`.
    handle: Option<tokio::task::JoinHandle<()>>,
    /// Whether a typing notice was sent (so one must be withdrawn).
    shown: Arc<AtomicBool>,
    room: String,
}

/// What to tell the room when a turn's typing ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterTurn {
    /// Withdraw the typing notice (one was shown).
    pub typing_off: bool,
    /// Mark this event read.
    pub receipt: Option<OwnedEventId>,
}

/// The rule for the end of a turn's typing: a notice shown is withdrawn; a message handled
/// (`done`, its event id) is marked read unless a later message of the same room is already
/// waiting (`later_pending`: its receipt will cover this one, receipts are cumulative); an event
/// id that does not parse gets no receipt.
pub fn after_turn(shown: bool, done: Option<&str>, later_pending: bool) -> AfterTurn {
    AfterTurn {
        typing_off: shown,
        receipt: done
            .filter(|_| !later_pending)
            .and_then(|e| EventId::parse(e).ok()),
    }
}

/// Sleeps until `kind`'s quiet moment, counted from `since` (a message arriving meanwhile moves
/// it, see [`quiet_moment`]).
async fn until_quiet(core: &Core, kind: Courtesy, since: tokio::time::Instant) {
    loop {
        let at = quiet_moment(kind, since, core.signals().last_arrival());
        if tokio::time::Instant::now() >= at {
            return;
        }
        tokio::time::sleep_until(at).await;
    }
}

impl Typing {
    /// Starts the typing notice for `item`'s turn (at its quiet moment). `None` when the room
    /// or the agent is unknown, or the room is shared with a peer hive: no notice and no
    /// receipt there (each would cross federation, and queue ahead of the agents' next message
    /// on the way to the peer: `hive bench`'s cross-hive hop).
    pub(super) fn start(core: &Core, name: &AgentName, item: &InboxItem) -> Option<Typing> {
        let room = RoomId::parse(&item.room_id).ok()?;
        if core.peer_of_room(&room).is_some() {
            return None;
        }
        let user = core.agents().get(name).map(|e| e.user_id.clone())?;
        let shown = Arc::new(AtomicBool::new(false));
        let handle = core.cfg().console.typing.then(|| {
            let core = core.clone();
            let flag = shown.clone();
            let since = tokio::time::Instant::now();
            tokio::spawn(async move {
                until_quiet(&core, Courtesy::TypingOn, since).await;
                loop {
                    let state = typing::create_typing_event::v3::Typing::Yes(
                        typing::create_typing_event::v3::TypingInfo::new(TYPING_FOR),
                    );
                    let req = typing::create_typing_event::v3::Request::new(
                        user.clone(),
                        room.clone(),
                        state,
                    );
                    flag.store(true, Ordering::SeqCst);
                    if let Err(e) = core.client().send(req, Some(&user)).await {
                        tracing::debug!(error = %e, "typing notice failed");
                    }
                    core.console().acted(&user);
                    tokio::time::sleep(TYPING_RENEW).await;
                }
            })
        });
        Some(Typing {
            handle,
            shown,
            room: item.room_id.clone(),
        })
    }

    /// Stops the notice without a word to the room (a newer turn replaces it).
    pub(super) fn abort(self) {
        if let Some(h) = self.handle {
            h.abort();
        }
    }

    /// Ends the turn's typing notice (if one was shown, a moment later); with `done`, also
    /// marks the message read (see [`after_turn`]) at the room's next quiet moment.
    pub(super) async fn stop(self, core: &Core, name: &AgentName, done: Option<&InboxItem>) {
        if let Some(h) = &self.handle {
            h.abort();
        }
        let Some(user) = core.agents().get(name).map(|e| e.user_id.clone()) else {
            return;
        };
        let shown = self.shown.load(Ordering::SeqCst);
        let later_pending = match done {
            Some(item) => core
                .store()
                .has_later_pending(name.as_str(), &item.room_id, item.id)
                .unwrap_or_else(|e| {
                    tracing::warn!(agent = %name, error = %format!("{e:#}"), "cannot tell whether a later message waits; marking this one read");
                    false
                }),
            None => false,
        };
        let AfterTurn {
            typing_off,
            receipt,
        } = after_turn(shown, done.map(|i| i.event_id.as_str()), later_pending);
        let Ok(room) = RoomId::parse(&self.room) else {
            return;
        };
        if let (Some(event), Some(item)) = (receipt, done)
            && core.cfg().console.read_receipts
        {
            core.signals()
                .read(user.clone(), room.clone(), item.id, event);
        }
        if typing_off {
            tokio::spawn(typing_off_later(core.clone(), user, room));
        }
    }
}

/// Withdraws `user`'s typing notice in `room` at its quiet moment.
async fn typing_off_later(core: Core, user: OwnedUserId, room: ruma::OwnedRoomId) {
    until_quiet(&core, Courtesy::TypingOff, tokio::time::Instant::now()).await;
    let req = typing::create_typing_event::v3::Request::new(
        user.clone(),
        room,
        typing::create_typing_event::v3::Typing::No,
    );
    match core.client().send(req, Some(&user)).await {
        // Synapse takes a typing notice for activity: presence back online.
        Ok(_) => core.console().acted(&user),
        Err(e) => tracing::debug!(error = %e, "typing off failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_turn_leaves_behind() {
        struct Case {
            name: &'static str,
            shown: bool,
            done: Option<&'static str>,
            later_pending: bool,
            want: AfterTurn,
        }
        let ev = |e: &str| Some(EventId::parse(e).expect("a valid event id"));
        let cases = [
            Case {
                name: "a short turn that was never shown, handled: only the receipt",
                shown: false,
                done: Some("$a:hs"),
                later_pending: false,
                want: AfterTurn {
                    typing_off: false,
                    receipt: ev("$a:hs"),
                },
            },
            Case {
                name: "a shown turn, handled: withdrawn and read",
                shown: true,
                done: Some("$a:hs"),
                later_pending: false,
                want: AfterTurn {
                    typing_off: true,
                    receipt: ev("$a:hs"),
                },
            },
            Case {
                name: "a later message waits: its receipt will cover this one",
                shown: true,
                done: Some("$a:hs"),
                later_pending: true,
                want: AfterTurn {
                    typing_off: true,
                    receipt: None,
                },
            },
            Case {
                name: "the harness left mid-turn: nothing is read",
                shown: true,
                done: None,
                later_pending: false,
                want: AfterTurn {
                    typing_off: true,
                    receipt: None,
                },
            },
            Case {
                name: "nothing shown, nothing handled: nothing to say",
                shown: false,
                done: None,
                later_pending: false,
                want: AfterTurn {
                    typing_off: false,
                    receipt: None,
                },
            },
            Case {
                name: "an event id that does not parse gets no receipt",
                shown: false,
                done: Some("not an event id"),
                later_pending: false,
                want: AfterTurn {
                    typing_off: false,
                    receipt: None,
                },
            },
        ];
        for c in cases {
            assert_eq!(
                after_turn(c.shown, c.done, c.later_pending),
                c.want,
                "{}",
                c.name
            );
        }
    }
}
