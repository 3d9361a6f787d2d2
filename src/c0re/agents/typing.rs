//! The typing notice and the read receipt around a turn: a courtesy to the people in the room.
//! Shown once a turn has run for [`TYPING_AFTER`] and refreshed while it runs; withdrawn when it
//! ends. Every failure here is only logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ruma::api::client::{receipt, typing};
use ruma::events::receipt::ReceiptThread;
use ruma::{EventId, OwnedEventId, RoomId};

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::store::InboxItem;

/// How long a turn runs before its agent shows as typing. Shorter turns never show it: the
/// notice would be gone before any client drew it, and each one is homeserver work (and an
/// ephemeral event pushed back to the appservice).
const TYPING_AFTER: Duration = Duration::from_millis(300);
/// How long one typing notice lasts, and how often it is renewed while the turn runs.
const TYPING_FOR: Duration = Duration::from_secs(30);
const TYPING_RENEW: Duration = Duration::from_secs(25);

/// The typing notice of the turn in flight.
pub(super) struct Typing {
    handle: tokio::task::JoinHandle<()>,
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

impl Typing {
    /// Starts the typing notice for `item`'s turn (after [`TYPING_AFTER`]). `None` when the
    /// room or the agent is unknown, or the room is shared with a peer hive: no notice and no
    /// receipt there (each would cross federation, and queue ahead of the agents' next message
    /// on the way to the peer: `hive bench`'s cross-hive hop).
    pub(super) fn start(core: &Core, name: &AgentName, item: &InboxItem) -> Option<Typing> {
        let room = RoomId::parse(&item.room_id).ok()?;
        if core.peer_of_room(&room).is_some() {
            return None;
        }
        let user = core.agents().get(name).map(|e| e.user_id.clone())?;
        let core = core.clone();
        let shown = Arc::new(AtomicBool::new(false));
        let flag = shown.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(TYPING_AFTER).await;
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
        });
        Some(Typing {
            handle,
            shown,
            room: item.room_id.clone(),
        })
    }

    /// Stops the notice without a word to the room (a newer turn replaces it).
    pub(super) fn abort(self) {
        self.handle.abort();
    }

    /// Ends the turn's typing notice (if one was shown); with `done`, also marks the message
    /// read (see [`after_turn`]).
    pub(super) async fn stop(self, core: &Core, name: &AgentName, done: Option<&InboxItem>) {
        self.handle.abort();
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
        if !typing_off && receipt.is_none() {
            return;
        }
        let Ok(room) = RoomId::parse(&self.room) else {
            return;
        };
        let core = core.clone();
        tokio::spawn(async move {
            if typing_off {
                let req = typing::create_typing_event::v3::Request::new(
                    user.clone(),
                    room.clone(),
                    typing::create_typing_event::v3::Typing::No,
                );
                match core.client().send(req, Some(&user)).await {
                    // Synapse takes a typing notice for activity: presence back online.
                    Ok(_) => core.console().acted(&user),
                    Err(e) => tracing::debug!(error = %e, "typing off failed"),
                }
            }
            if let Some(event) = receipt {
                let mut req = receipt::create_receipt::v3::Request::new(
                    room,
                    receipt::create_receipt::v3::ReceiptType::Read,
                    event,
                );
                req.thread = ReceiptThread::Unthreaded;
                match core.client().send(req, Some(&user)).await {
                    // A read receipt too (handlers/receipts.py bumps presence).
                    Ok(_) => core.console().acted(&user),
                    Err(e) => tracing::debug!(error = %e, "read receipt failed"),
                }
            }
        });
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
