//! The hive's courtesy traffic to its homeserver, kept out of the way of real traffic: the
//! agents' read receipts and typing notices. Each costs Synapse a request (and an ephemeral
//! event pushed to every client and back to the appservice; a receipt also bumps the agent's
//! presence), and `hive bench`'s signals section measured them landing on the operator's next
//! message. So:
//!
//! - a read receipt is **coalesced**: one pending per agent and room, the latest event only
//!   (receipts are cumulative), and **deferred** to a quiet moment: sent once no message has
//!   arrived at the hive for [`Courtesy::Receipt`]'s quiet spell, and always within its longest
//!   wait, so a steady stream of messages delays it but never loses it;
//! - a typing notice is shown once its turn has run for a while *and* the hive has been quiet
//!   that long ([`Courtesy::TypingOn`]), and withdrawn a moment after its turn ends, once quiet
//!   ([`Courtesy::TypingOff`]): the operator's next message, sent as the reply arrives, goes
//!   first;
//! - `[console] typing` and `read_receipts` (hive.toml) turn either off.
//!
//! When is [`quiet_moment`], a pure rule; [`Core::signals_loop`] sends the receipts (and what is
//! still pending when the hive stops); the typing notices are timed in `agents/typing.rs`.
//! Nothing here blocks delivery to a harness: a turn's end only records its receipt.

use std::collections::HashMap;
use std::time::Duration;

use ruma::api::client::receipt;
use ruma::events::receipt::ReceiptThread;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Core;

/// The kinds of courtesy traffic, each with its own pace ([`Courtesy::pace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Courtesy {
    /// A read receipt on the last message an agent handled.
    Receipt,
    /// A typing notice for a turn that runs long.
    TypingOn,
    /// The typing notice withdrawn at the end of its turn.
    TypingOff,
}

impl Courtesy {
    /// `(quiet, longest)`: how long the hive must have had no message arriving (and how long
    /// since the signal was wanted) before it is sent, and the longest it waits for that.
    pub fn pace(self) -> (Duration, Duration) {
        match self {
            // Nobody waits on a receipt: it waits for a real lull, half a minute at most.
            Courtesy::Receipt => (Duration::from_secs(1), Duration::from_secs(30)),
            // Shorter turns never show as typing (the notice would be gone before any client
            // drew it); a busy hive shows a long turn within 2 s all the same.
            Courtesy::TypingOn => (Duration::from_millis(300), Duration::from_secs(2)),
            // The reply is in the room already; the notice goes a moment later, after the
            // operator's next message if one comes at once.
            Courtesy::TypingOff => (Duration::from_millis(250), Duration::from_secs(1)),
        }
    }
}

/// When to send a signal of `kind` wanted since `since`, the last message having arrived at
/// `last_arrival`: once the later of the two is `quiet` old, and never later than `longest`
/// after `since`. Called again after a wait: a message arriving meanwhile moves the moment.
pub fn quiet_moment(kind: Courtesy, since: Instant, last_arrival: Option<Instant>) -> Instant {
    let (quiet, longest) = kind.pace();
    let from = last_arrival.map_or(since, |a| a.max(since));
    (from + quiet).min(since + longest)
}

/// A read receipt waiting for its quiet moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReceipt {
    /// The inbox id of the message read (the latest wins).
    pub inbox_id: i64,
    pub event: OwnedEventId,
    /// When the first receipt still pending for this room was wanted (bounds the wait).
    pub since: Instant,
}

/// Folds a new receipt into the one pending for its room: the later message wins (receipts are
/// cumulative), the wait is counted from the first one (so coalescing never postpones it).
pub fn coalesce(
    pending: Option<PendingReceipt>,
    inbox_id: i64,
    event: OwnedEventId,
    now: Instant,
) -> PendingReceipt {
    match pending {
        Some(p) if p.inbox_id >= inbox_id => p,
        Some(p) => PendingReceipt {
            inbox_id,
            event,
            since: p.since,
        },
        None => PendingReceipt {
            inbox_id,
            event,
            since: now,
        },
    }
}

/// An agent's user and a room: what a read receipt is kept by.
type RoomOf = (OwnedUserId, OwnedRoomId);

/// What the courtesy traffic knows: the last message's arrival and the receipts pending.
#[derive(Default)]
pub struct Signals {
    wake: Notify,
    state: std::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    last_arrival: Option<Instant>,
    receipts: HashMap<RoomOf, PendingReceipt>,
}

impl Signals {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message for an agent arrived (the core accepted it from the homeserver): courtesy
    /// traffic waits for the next quiet moment. Cheap, and wakes nothing.
    pub fn arrived(&self) {
        self.state().last_arrival = Some(Instant::now());
    }

    /// When the last message arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.state().last_arrival
    }

    /// `user` (an agent) has read up to `event` (inbox id `inbox_id`) in `room`: sent at the
    /// room's next quiet moment, with whatever it reads meanwhile folded in.
    pub fn read(&self, user: OwnedUserId, room: OwnedRoomId, inbox_id: i64, event: OwnedEventId) {
        let mut s = self.state();
        let key = (user, room);
        let next = coalesce(s.receipts.remove(&key), inbox_id, event, Instant::now());
        s.receipts.insert(key, next);
        drop(s);
        self.wake.notify_one();
    }

    /// The receipts due at `now` (taken out), and when the next one falls due.
    fn take_due(&self, now: Instant) -> (Vec<(RoomOf, PendingReceipt)>, Option<Instant>) {
        let mut s = self.state();
        let last = s.last_arrival;
        let mut next: Option<Instant> = None;
        let due_keys: Vec<_> = s
            .receipts
            .iter()
            .filter_map(|(k, p)| {
                let at = quiet_moment(Courtesy::Receipt, p.since, last);
                if at <= now {
                    Some(k.clone())
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    None
                }
            })
            .collect();
        let due = due_keys
            .into_iter()
            .filter_map(|k| s.receipts.remove(&k).map(|p| (k, p)))
            .collect();
        (due, next)
    }

    /// Everything still pending (the hive stops).
    fn take_all(&self) -> Vec<(RoomOf, PendingReceipt)> {
        self.state().receipts.drain().collect()
    }
}

impl Core {
    /// The receipts' task: sends each pending read receipt at its quiet moment, and what is
    /// still pending when the hive stops. Failures are only logged (a receipt is a courtesy).
    pub async fn signals_loop(self) {
        loop {
            let (due, next) = self.signals().take_due(Instant::now());
            for ((user, room), p) in due {
                self.send_receipt(&user, room, p.event).await;
            }
            let until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = self.cancel().cancelled() => break,
                _ = self.signals().wake.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        for ((user, room), p) in self.signals().take_all() {
            self.send_receipt(&user, room, p.event).await;
        }
    }

    async fn send_receipt(&self, user: &ruma::UserId, room: OwnedRoomId, event: OwnedEventId) {
        let mut req = receipt::create_receipt::v3::Request::new(
            room,
            receipt::create_receipt::v3::ReceiptType::Read,
            event,
        );
        req.thread = ReceiptThread::Unthreaded;
        match self.client().send(req, Some(user)).await {
            // Synapse's receipt handler bumps the agent's presence (handlers/receipts.py).
            Ok(_) => self.console().acted(user),
            Err(e) => tracing::debug!(error = %e, "read receipt failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_courtesy_traffic_is_sent() {
        struct Case {
            name: &'static str,
            kind: Courtesy,
            /// ms after t0.
            since: u64,
            last_arrival: Option<u64>,
            want: u64,
        }
        let cases = [
            Case {
                name: "a receipt, nothing arrived since: one quiet second after",
                kind: Courtesy::Receipt,
                since: 100,
                last_arrival: Some(0),
                want: 1_100,
            },
            Case {
                name: "a receipt, a message arrived after it: a quiet second after that",
                kind: Courtesy::Receipt,
                since: 100,
                last_arrival: Some(900),
                want: 1_900,
            },
            Case {
                name: "a receipt in a steady stream: at most 30 s late",
                kind: Courtesy::Receipt,
                since: 100,
                last_arrival: Some(29_900),
                want: 30_100,
            },
            Case {
                name: "a receipt, no message ever arrived: from its own time",
                kind: Courtesy::Receipt,
                since: 100,
                last_arrival: None,
                want: 1_100,
            },
            Case {
                name: "typing, the turn's own message the last to arrive: 300 ms into the turn",
                kind: Courtesy::TypingOn,
                since: 10,
                last_arrival: Some(0),
                want: 310,
            },
            Case {
                name: "typing while others' messages arrive: after them",
                kind: Courtesy::TypingOn,
                since: 0,
                last_arrival: Some(500),
                want: 800,
            },
            Case {
                name: "typing in a busy hive: 2 s into the turn at most",
                kind: Courtesy::TypingOn,
                since: 0,
                last_arrival: Some(1_900),
                want: 2_000,
            },
            Case {
                name: "typing off, the next message came at once: after it",
                kind: Courtesy::TypingOff,
                since: 0,
                last_arrival: Some(30),
                want: 280,
            },
            Case {
                name: "typing off, quiet: a quarter second after the turn",
                kind: Courtesy::TypingOff,
                since: 1_000,
                last_arrival: Some(0),
                want: 1_250,
            },
            Case {
                name: "typing off in a busy hive: 1 s after the turn at most",
                kind: Courtesy::TypingOff,
                since: 0,
                last_arrival: Some(5_000),
                want: 1_000,
            },
        ];
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for c in cases {
            assert_eq!(
                quiet_moment(c.kind, at(c.since), c.last_arrival.map(at)),
                at(c.want),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn receipts_coalesce() {
        let t0 = Instant::now();
        let ev = |e: &str| OwnedEventId::try_from(e).expect("an event id");
        let p = |id: i64, e: &str, ms: u64| PendingReceipt {
            inbox_id: id,
            event: ev(e),
            since: t0 + Duration::from_millis(ms),
        };
        struct Case {
            name: &'static str,
            pending: Option<PendingReceipt>,
            new: (i64, &'static str),
            want: PendingReceipt,
        }
        let cases = [
            Case {
                name: "none pending: this one, from now",
                pending: None,
                new: (5, "$e:hs"),
                want: p(5, "$e:hs", 700),
            },
            Case {
                name: "a later message: replaces it, the wait still from the first",
                pending: Some(p(4, "$d:hs", 100)),
                new: (5, "$e:hs"),
                want: p(5, "$e:hs", 100),
            },
            Case {
                name: "an earlier message (handled out of order): the later stays",
                pending: Some(p(6, "$f:hs", 100)),
                new: (5, "$e:hs"),
                want: p(6, "$f:hs", 100),
            },
        ];
        for c in cases {
            let got = coalesce(
                c.pending,
                c.new.0,
                ev(c.new.1),
                t0 + Duration::from_millis(700),
            );
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn a_pending_receipt_falls_due_and_is_taken_once() {
        let s = Signals::default();
        let user = OwnedUserId::try_from("@echo:hs").expect("a user");
        let room = OwnedRoomId::try_from("!r:hs").expect("a room");
        let ev = |e: &str| OwnedEventId::try_from(e).expect("an event id");
        s.read(user.clone(), room.clone(), 1, ev("$a:hs"));
        s.read(user.clone(), room.clone(), 2, ev("$b:hs"));
        let now = Instant::now();
        let (due, next) = s.take_due(now);
        assert!(due.is_empty(), "not quiet long enough yet");
        let next = next.expect("a receipt pending");
        let (due, after) = s.take_due(next + Duration::from_millis(1));
        assert_eq!(due.len(), 1, "one per room");
        assert_eq!(due[0].1.event, ev("$b:hs"), "the latest event");
        assert_eq!(after, None);
        assert!(s.take_all().is_empty(), "taken once");
    }
}
