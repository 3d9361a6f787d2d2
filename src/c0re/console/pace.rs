//! When the status message is edited and when an agent's presence is set: pure rules over
//! what was last sent, with their tables.
//!
//! The status message ([`edit_step`]):
//! - a text equal to the one last sent is never sent again;
//! - a changed text is sent at once if the last edit is at least [`EDIT_GAP`] old, else at the
//!   end of that gap (everything that changes meanwhile makes one edit);
//! - the hive is looked at no more often than every [`LOOK_GAP`] (a burst of messages wakes the
//!   task for each one; the store is read once).
//!
//! Presence ([`presence_of`], [`presence_step`]):
//! - a harness connected and waiting is `online`; in a turn that has run for [`THINK_AFTER`] it
//!   is `unavailable` ("running a turn"); a shorter turn changes nothing (like the typing
//!   notice: it would be gone before anyone saw it, and each one is homeserver work);
//! - an `unavailable` agent stays so until it has been out of a turn for [`ONLINE_AFTER`]: an
//!   agent working through its queue shows busy throughout, not two changes per message;
//! - no harness connected (stopped, crashed, starting, kept) is `offline`;
//! - a presence is set when it differs from the one last set, and set again every
//!   [`PRESENCE_RENEW`] while it is not `offline` (Synapse drops the presence of a user that
//!   never syncs, see synapse-config/homeserver.yaml); `offline` is never renewed;
//! - an `unavailable` agent that acted on the homeserver (its typing notice, a message) is set
//!   `unavailable` again [`REASSERT_AFTER`] later if it still is: Synapse turned it `online`
//!   (`bump_presence_active_time`). Not at once: a reply right before the turn ends would cost a
//!   change for nothing.

use std::time::Duration;

use tokio::time::Instant;

/// The least time between two edits of the status message.
pub const EDIT_GAP: Duration = Duration::from_secs(5);
/// The least time between two looks at the hive for the status message.
pub const LOOK_GAP: Duration = Duration::from_secs(1);
/// How long a turn runs before its agent shows as unavailable.
pub const THINK_AFTER: Duration = Duration::from_millis(300);
/// How long an unavailable agent is out of a turn before it shows online again.
pub const ONLINE_AFTER: Duration = Duration::from_secs(1);
/// How long after an unavailable agent acted its `unavailable` is set again.
pub const REASSERT_AFTER: Duration = Duration::from_secs(1);
/// How often a presence that is not offline is set again (below Synapse's idle timer, 5 min,
/// and the homeserver's `presence.sync_online_timeout`).
pub const PRESENCE_RENEW: Duration = Duration::from_secs(240);
/// The status text of an agent in a turn.
pub const THINKING: &str = "running a turn";

/// What to do about the status message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditStep {
    /// Nothing changed.
    Nothing,
    /// Send this text now.
    Now,
    /// It changed: send it at this instant (the gap since the last edit ends).
    At(Instant),
}

/// The rule for the status message: `last` is the text last sent and when.
pub fn edit_step(last: Option<(&str, Instant)>, text: &str, now: Instant) -> EditStep {
    match last {
        Some((sent, _)) if sent == text => EditStep::Nothing,
        Some((_, at)) if now < at + EDIT_GAP => EditStep::At(at + EDIT_GAP),
        _ => EditStep::Now,
    }
}

/// A Matrix presence, as the core sets it for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Online,
    Unavailable,
    Offline,
}

/// The presence wanted for an agent, and its status text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub presence: Presence,
    pub status: Option<&'static str>,
}

/// The presence an agent should show: `connected` (its harness is on `c0re.sock`), `turn_age`
/// how long its turn in flight has run, `idle_for` how long ago its last turn ended, `shown`
/// what it shows now. With it, when to look again (a turn not yet [`THINK_AFTER`] old, an
/// unavailable agent not yet [`ONLINE_AFTER`] out of its turn).
pub fn presence_of(
    connected: bool,
    turn_age: Option<Duration>,
    idle_for: Option<Duration>,
    shown: Option<Presence>,
) -> (Wanted, Option<Duration>) {
    let busy = Wanted {
        presence: Presence::Unavailable,
        status: Some(THINKING),
    };
    let plain = |presence| Wanted {
        presence,
        status: None,
    };
    let was_busy = shown == Some(Presence::Unavailable);
    match (connected, turn_age, idle_for) {
        (false, _, _) => (plain(Presence::Offline), None),
        (true, Some(age), _) if age >= THINK_AFTER || was_busy => (busy, None),
        (true, Some(age), _) => (plain(Presence::Online), Some(THINK_AFTER - age)),
        (true, None, Some(idle)) if was_busy && idle < ONLINE_AFTER => {
            (busy, Some(ONLINE_AFTER - idle))
        }
        (true, None, _) => (plain(Presence::Online), None),
    }
}

/// Whether to set `wanted` now, given what was `last` set and when, and when the agent last
/// `acted` after that; with it, when to look again (a renewal, a re-assertion).
pub fn presence_step(
    last: Option<(Wanted, Instant)>,
    wanted: Wanted,
    acted: Option<Instant>,
    now: Instant,
) -> (bool, Option<Instant>) {
    let renew = |at: Instant| (wanted.presence != Presence::Offline).then_some(at + PRESENCE_RENEW);
    let reassert = acted
        .filter(|_| wanted.presence == Presence::Unavailable)
        .map(|t| t + REASSERT_AFTER);
    match last {
        Some((w, at)) if w == wanted && reassert.is_some_and(|r| r > now) => {
            (false, reassert.map(|r| r.min(at + PRESENCE_RENEW)))
        }
        Some((w, _)) if w == wanted && reassert.is_some() => (true, renew(now)),
        Some((w, at)) if w == wanted && now < at + PRESENCE_RENEW => (false, renew(at)),
        Some((w, _)) if w == wanted && wanted.presence == Presence::Offline => (false, None),
        _ => (true, renew(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_status_message_is_edited() {
        struct Case {
            name: &'static str,
            last: Option<(&'static str, u64)>,
            text: &'static str,
            now_ms: u64,
            want: fn(Instant) -> EditStep,
        }
        let cases = [
            Case {
                name: "nothing sent yet: now",
                last: None,
                text: "a",
                now_ms: 0,
                want: |_| EditStep::Now,
            },
            Case {
                name: "the same text: never",
                last: Some(("a", 0)),
                text: "a",
                now_ms: 60_000,
                want: |_| EditStep::Nothing,
            },
            Case {
                name: "changed, within the gap: at its end",
                last: Some(("a", 1_000)),
                text: "b",
                now_ms: 2_000,
                want: |t0| EditStep::At(t0 + Duration::from_millis(1_000) + EDIT_GAP),
            },
            Case {
                name: "changed, the gap over: now",
                last: Some(("a", 0)),
                text: "b",
                now_ms: 5_000,
                want: |_| EditStep::Now,
            },
        ];
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for c in cases {
            let last = c.last.map(|(t, ms)| (t, at(ms)));
            assert_eq!(
                edit_step(last, c.text, at(c.now_ms)),
                (c.want)(t0),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn a_burst_makes_few_edits() {
        // A change every 50 ms for 20 s, sent whenever the rule says: about one edit per gap.
        let t0 = Instant::now();
        let mut last: Option<(String, Instant)> = None;
        let mut due: Option<Instant> = None;
        let mut edits = 0;
        for i in 0..400u64 {
            let now = t0 + Duration::from_millis(i * 50);
            let text = format!("{i} queued");
            if due.is_some_and(|d| now < d) {
                continue;
            }
            match edit_step(last.as_ref().map(|(t, at)| (t.as_str(), *at)), &text, now) {
                EditStep::Nothing => {}
                EditStep::Now => {
                    edits += 1;
                    last = Some((text, now));
                    due = None;
                }
                EditStep::At(at) => due = Some(at),
            }
        }
        assert!((4..=5).contains(&edits), "{edits} edits in 20 s");
    }

    #[test]
    fn what_presence_an_agent_shows() {
        struct Case {
            name: &'static str,
            connected: bool,
            turn_ms: Option<u64>,
            idle_ms: Option<u64>,
            shown: Option<Presence>,
            want: Presence,
            again_ms: Option<u64>,
        }
        let cases = [
            Case {
                name: "connected and waiting: online",
                connected: true,
                turn_ms: None,
                idle_ms: None,
                shown: None,
                want: Presence::Online,
                again_ms: None,
            },
            Case {
                name: "a turn just begun: still online, look again when it is 300 ms old",
                connected: true,
                turn_ms: Some(100),
                idle_ms: None,
                shown: Some(Presence::Online),
                want: Presence::Online,
                again_ms: Some(200),
            },
            Case {
                name: "a turn of 300 ms: unavailable, running a turn",
                connected: true,
                turn_ms: Some(300),
                idle_ms: None,
                shown: Some(Presence::Online),
                want: Presence::Unavailable,
                again_ms: None,
            },
            Case {
                name: "the next turn of a busy agent: unavailable at once",
                connected: true,
                turn_ms: Some(10),
                idle_ms: Some(20),
                shown: Some(Presence::Unavailable),
                want: Presence::Unavailable,
                again_ms: None,
            },
            Case {
                name: "a busy agent just out of its turn: still unavailable, look again",
                connected: true,
                turn_ms: None,
                idle_ms: Some(400),
                shown: Some(Presence::Unavailable),
                want: Presence::Unavailable,
                again_ms: Some(600),
            },
            Case {
                name: "a busy agent out of its turn for a second: online",
                connected: true,
                turn_ms: None,
                idle_ms: Some(1_000),
                shown: Some(Presence::Unavailable),
                want: Presence::Online,
                again_ms: None,
            },
            Case {
                name: "no harness: offline",
                connected: false,
                turn_ms: None,
                idle_ms: None,
                shown: Some(Presence::Online),
                want: Presence::Offline,
                again_ms: None,
            },
            Case {
                name: "a turn whose harness left: offline",
                connected: false,
                turn_ms: Some(5_000),
                idle_ms: None,
                shown: Some(Presence::Unavailable),
                want: Presence::Offline,
                again_ms: None,
            },
        ];
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        for c in cases {
            let (w, again) = presence_of(c.connected, ms(c.turn_ms), ms(c.idle_ms), c.shown);
            assert_eq!(w.presence, c.want, "{}", c.name);
            let status = (c.want == Presence::Unavailable).then_some(THINKING);
            assert_eq!(w.status, status, "{}", c.name);
            assert_eq!(again, ms(c.again_ms), "{}", c.name);
        }
    }

    #[test]
    fn when_presence_is_set() {
        let online = Wanted {
            presence: Presence::Online,
            status: None,
        };
        let busy = Wanted {
            presence: Presence::Unavailable,
            status: Some(THINKING),
        };
        let offline = Wanted {
            presence: Presence::Offline,
            status: None,
        };
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        struct Case {
            name: &'static str,
            last: Option<(Wanted, Instant)>,
            wanted: Wanted,
            acted: Option<Instant>,
            now: Instant,
            want: (bool, Option<Instant>),
        }
        let cases = [
            Case {
                name: "never set: set, renewed later",
                last: None,
                wanted: online,
                acted: None,
                now: s(0),
                want: (true, Some(s(0) + PRESENCE_RENEW)),
            },
            Case {
                name: "never set, offline: set once, never renewed",
                last: None,
                wanted: offline,
                acted: None,
                now: s(0),
                want: (true, None),
            },
            Case {
                name: "unchanged (online: acting changes nothing): nothing until the renewal",
                last: Some((online, s(0))),
                wanted: online,
                acted: Some(s(5)),
                now: s(10),
                want: (false, Some(s(0) + PRESENCE_RENEW)),
            },
            Case {
                name: "unchanged, renewal due: set again",
                last: Some((online, s(0))),
                wanted: online,
                acted: None,
                now: s(0) + PRESENCE_RENEW,
                want: (true, Some(s(0) + PRESENCE_RENEW + PRESENCE_RENEW)),
            },
            Case {
                name: "changed: set at once",
                last: Some((online, s(0))),
                wanted: busy,
                acted: None,
                now: s(1),
                want: (true, Some(s(1) + PRESENCE_RENEW)),
            },
            Case {
                name: "offline stays offline: never renewed",
                last: Some((offline, s(0))),
                wanted: offline,
                acted: Some(s(1)),
                now: s(0) + PRESENCE_RENEW * 3,
                want: (false, None),
            },
            Case {
                name: "unavailable, the agent just acted: set again a second later",
                last: Some((busy, s(0))),
                wanted: busy,
                acted: Some(s(2)),
                now: s(2),
                want: (false, Some(s(2) + REASSERT_AFTER)),
            },
            Case {
                name: "unavailable, a second after it acted (Synapse made it online): set again",
                last: Some((busy, s(0))),
                wanted: busy,
                acted: Some(s(2)),
                now: s(2) + REASSERT_AFTER,
                want: (true, Some(s(2) + REASSERT_AFTER + PRESENCE_RENEW)),
            },
            Case {
                name: "unavailable, nothing done since: nothing",
                last: Some((busy, s(0))),
                wanted: busy,
                acted: None,
                now: s(1),
                want: (false, Some(s(0) + PRESENCE_RENEW)),
            },
        ];
        for c in cases {
            assert_eq!(
                presence_step(c.last, c.wanted, c.acted, c.now),
                c.want,
                "{}",
                c.name
            );
        }
    }
}
