//! When a schedule fires: pure functions over its rule, its record and the clock.
//!
//! Rules ([`due`]):
//! - the grid starts at the last scheduled fire, or, before the first, where the core first saw
//!   the schedule (`since`): a schedule newly added never fires for the past;
//! - nothing is due until the first fire after that start has come;
//! - once it has, exactly one fire is due: the latest one at or before now. After downtime
//!   across many fire times that is one replay, not a burst, and the grid goes on from it;
//! - a clock that went back (now before the last fire) makes nothing due until it catches up.
//!
//! [`next`] is when the loop must look again (and what `!hive schedules` shows).
//!
//! Rules ([`decide`]), on top of [`due`]: a fire that is due is *held* while the schedule's last
//! scheduled fire has not been handled: its post still in the outbox (the homeserver away), or
//! its message waiting in the agent's queue or in a turn now (an agent crash-looping, unable to
//! start, waiting for a grant or an approval; a turn longer than the interval). Held, the record
//! stays at the last fire, so once that one is handled the latest due fire is delivered, once:
//! at most one fire of a schedule is ever on its way, never a queue of paid turns. A last fire
//! that is done, dead, refused for good, unknown (pruned) or taken by the homeserver and not yet
//! seen back in the queue holds nothing.

use crate::agent_spec::schedule::When;
use crate::store::{Delivery, Queued};

/// What the schedules task does with one schedule now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due: look again at `next` (`None`: never).
    Wait { next: Option<i64> },
    /// Deliver the fire at this time and record it as the last fire.
    Fire(i64),
    /// The fire at `due` is due, but the last fire has not been handled: nothing now.
    Held { due: i64 },
}

/// Whether the last fire, where it is now, holds the next one back.
fn unhandled(last: Delivery) -> bool {
    match last {
        Delivery::Posting | Delivery::Sent(Some(Queued::Pending | Queued::Inflight)) => true,
        Delivery::Unknown
        | Delivery::Refused
        | Delivery::Sent(None | Some(Queued::Done | Queued::Dead)) => false,
    }
}

/// What to do with a schedule whose last scheduled fire is `last_fire_us`, where that fire's
/// post is `last` (`Delivery::Unknown` when there is none), at `now_us` (pure; rules above).
pub fn decide(
    when: &When,
    since_us: i64,
    last_fire_us: Option<i64>,
    last: Delivery,
    now_us: i64,
) -> Decision {
    match due(when, since_us, last_fire_us, now_us) {
        None => Decision::Wait {
            next: next(when, since_us, last_fire_us),
        },
        Some(fire) if unhandled(last) => Decision::Held { due: fire },
        Some(fire) => Decision::Fire(fire),
    }
}

/// The fire due now, if any: the one to deliver and record as the last fire.
pub fn due(when: &When, since_us: i64, last_fire_us: Option<i64>, now_us: i64) -> Option<i64> {
    let start = last_fire_us.unwrap_or(since_us);
    let first = when.next_after(start)?;
    if first > now_us {
        return None;
    }
    Some(
        when.last_at_or_before(start, now_us)
            .unwrap_or(first)
            .max(first),
    )
}

/// The next fire after the record (at or before now if one is due and not yet delivered).
pub fn next(when: &When, since_us: i64, last_fire_us: Option<i64>) -> Option<i64> {
    when.next_after(last_fire_us.unwrap_or(since_us))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agent_spec::schedule::{MIN_INTERVAL, RawSchedule, validate};

    const MIN: i64 = 60_000_000;
    const HOUR: i64 = 60 * MIN;
    /// 2026-01-05 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_767_571_200_000_000;

    fn cron(text: &str) -> When {
        let raw = RawSchedule {
            name: "s".into(),
            cron: Some(text.into()),
            every: None,
            prompt: "p".into(),
        };
        validate(&[raw], MIN_INTERVAL).expect("a valid cron")[0]
            .when
            .clone()
    }

    #[test]
    fn what_is_due() {
        struct Case {
            name: &'static str,
            when: When,
            since: i64,
            last: Option<i64>,
            now: i64,
            want: Option<i64>,
        }
        let every_10m = When::Every(Duration::from_secs(600));
        let nine_weekdays = cron("0 9 * * 1-5");
        let cases = [
            Case {
                name: "never fired, first fire not yet come",
                when: every_10m.clone(),
                since: MONDAY,
                last: None,
                now: MONDAY + 9 * MIN,
                want: None,
            },
            Case {
                name: "never fired, first fire come",
                when: every_10m.clone(),
                since: MONDAY,
                last: None,
                now: MONDAY + 10 * MIN + 3,
                want: Some(MONDAY + 10 * MIN),
            },
            Case {
                name: "on time",
                when: every_10m.clone(),
                since: MONDAY,
                last: Some(MONDAY + 10 * MIN),
                now: MONDAY + 20 * MIN,
                want: Some(MONDAY + 20 * MIN),
            },
            Case {
                name: "just before the next",
                when: every_10m.clone(),
                since: MONDAY,
                last: Some(MONDAY + 10 * MIN),
                now: MONDAY + 20 * MIN - 1,
                want: None,
            },
            Case {
                name: "missed one: replayed",
                when: every_10m.clone(),
                since: MONDAY,
                last: Some(MONDAY + 10 * MIN),
                now: MONDAY + 25 * MIN,
                want: Some(MONDAY + 20 * MIN),
            },
            Case {
                name: "missed many: only the latest, once",
                when: every_10m.clone(),
                since: MONDAY,
                last: Some(MONDAY + 10 * MIN),
                now: MONDAY + 5 * HOUR + 7 * MIN,
                want: Some(MONDAY + 5 * HOUR),
            },
            Case {
                name: "clock went back before the last fire",
                when: every_10m.clone(),
                since: MONDAY,
                last: Some(MONDAY + HOUR),
                now: MONDAY + 30 * MIN,
                want: None,
            },
            Case {
                name: "a cron newly added does not fire for the past",
                when: nine_weekdays.clone(),
                since: MONDAY + 10 * HOUR,
                last: None,
                now: MONDAY + 11 * HOUR,
                want: None,
            },
            Case {
                name: "a cron on time",
                when: nine_weekdays.clone(),
                since: MONDAY,
                last: None,
                now: MONDAY + 9 * HOUR + 2,
                want: Some(MONDAY + 9 * HOUR),
            },
            Case {
                name: "a cron down over a weekend: Friday's, once",
                when: nine_weekdays.clone(),
                since: MONDAY,
                last: Some(MONDAY + 9 * HOUR),
                // Sunday 2026-01-11 12:00.
                now: MONDAY + 6 * 24 * HOUR + 12 * HOUR,
                want: Some(MONDAY + 4 * 24 * HOUR + 9 * HOUR),
            },
            Case {
                name: "a cron whose clock went back",
                when: nine_weekdays.clone(),
                since: MONDAY,
                last: Some(MONDAY + 24 * HOUR + 9 * HOUR),
                now: MONDAY + 9 * HOUR + 30 * MIN,
                want: None,
            },
        ];
        for c in cases {
            assert_eq!(due(&c.when, c.since, c.last, c.now), c.want, "{}", c.name);
            if let Some(fire) = c.want {
                assert_eq!(
                    due(&c.when, c.since, Some(fire), c.now),
                    None,
                    "{}: once recorded, nothing more is due",
                    c.name
                );
            }
        }
    }

    #[test]
    fn a_fire_waits_for_the_last_one() {
        struct Case {
            name: &'static str,
            last_fire: Option<i64>,
            last: Delivery,
            now: i64,
            want: Decision,
        }
        let every_10m = When::Every(Duration::from_secs(600));
        let l = Some(MONDAY + 10 * MIN);
        let (due_now, later) = (MONDAY + 20 * MIN + 5, MONDAY + 5 * HOUR + 7 * MIN);
        let sent = |q| Delivery::Sent(Some(q));
        let cases = [
            Case {
                name: "never fired: nothing to wait for",
                last_fire: None,
                last: Delivery::Unknown,
                now: MONDAY + 10 * MIN,
                want: Decision::Fire(MONDAY + 10 * MIN),
            },
            Case {
                name: "the last one handled",
                last_fire: l,
                last: sent(Queued::Done),
                now: due_now,
                want: Decision::Fire(MONDAY + 20 * MIN),
            },
            Case {
                name: "the homeserver away: the last post still in the outbox",
                last_fire: l,
                last: Delivery::Posting,
                now: due_now,
                want: Decision::Held {
                    due: MONDAY + 20 * MIN,
                },
            },
            Case {
                name: "the agent not running: the last one waits in its queue",
                last_fire: l,
                last: sent(Queued::Pending),
                now: due_now,
                want: Decision::Held {
                    due: MONDAY + 20 * MIN,
                },
            },
            Case {
                name: "a turn longer than the interval: the last one in a turn",
                last_fire: l,
                last: sent(Queued::Inflight),
                now: due_now,
                want: Decision::Held {
                    due: MONDAY + 20 * MIN,
                },
            },
            Case {
                name: "held all night, then handled: the latest, once",
                last_fire: l,
                last: sent(Queued::Done),
                now: later,
                want: Decision::Fire(MONDAY + 5 * HOUR),
            },
            Case {
                name: "the last one dead-lettered",
                last_fire: l,
                last: sent(Queued::Dead),
                now: due_now,
                want: Decision::Fire(MONDAY + 20 * MIN),
            },
            Case {
                name: "the last one refused for good",
                last_fire: l,
                last: Delivery::Refused,
                now: due_now,
                want: Decision::Fire(MONDAY + 20 * MIN),
            },
            Case {
                name: "the last one taken, not seen back yet",
                last_fire: l,
                last: Delivery::Sent(None),
                now: due_now,
                want: Decision::Fire(MONDAY + 20 * MIN),
            },
            Case {
                name: "the last one pruned",
                last_fire: l,
                last: Delivery::Unknown,
                now: due_now,
                want: Decision::Fire(MONDAY + 20 * MIN),
            },
            Case {
                name: "nothing due: waits for the next, whatever the last one",
                last_fire: l,
                last: sent(Queued::Pending),
                now: MONDAY + 15 * MIN,
                want: Decision::Wait {
                    next: Some(MONDAY + 20 * MIN),
                },
            },
        ];
        for c in cases {
            assert_eq!(
                decide(&every_10m, MONDAY, c.last_fire, c.last, c.now),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn the_next_fire() {
        let every = When::Every(Duration::from_secs(600));
        assert_eq!(next(&every, MONDAY, None), Some(MONDAY + 10 * MIN));
        assert_eq!(
            next(&every, MONDAY, Some(MONDAY + 5 * HOUR)),
            Some(MONDAY + 5 * HOUR + 10 * MIN)
        );
        assert_eq!(
            next(&cron("30 8 * * *"), MONDAY + 9 * HOUR, None),
            Some(MONDAY + 24 * HOUR + 8 * HOUR + 30 * MIN)
        );
    }
}
