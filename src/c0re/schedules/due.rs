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

use crate::agent_spec::schedule::When;

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
