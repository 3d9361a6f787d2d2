//! `[[schedules]]` in agent.toml: recurring prompts the core delivers into the agent's inbox.
//!
//! ```toml
//! [[schedules]]
//! name = "standup"            # [a-z][a-z0-9_-]{0,31}, unique in the file
//! cron = "0 9 * * 1-5"        # five fields, UTC; or:
//! # every = "30m"             # an interval: 90s, 30m, 2h, 1d, 1h30m (at least 1 minute)
//! prompt = "Post the standup summary."
//! ```
//!
//! Exactly one of `cron` and `every`. Times are UTC (no `timezone` key: a zone database would
//! cost more than it gives a hive whose operators read UTC in `!hive schedules`). A cron
//! expression is the standard five fields (no seconds, no year), parsed by `croner`; an
//! interval fires on a grid anchored where the schedule was first seen (or last fired).
//!
//! What is due when is `c0re/schedules/due.rs`; this module only parses and validates.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The shortest interval `every` may name (a schedule is a prompt, not a busy loop).
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest interval `every` may name (a year: beyond that it is not recurring).
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86_400);
/// The longest prompt, in bytes (it becomes one message body).
pub const MAX_PROMPT: usize = 16 * 1024;
/// The failpoint (docs/testing.md) that lowers [`MIN_INTERVAL`] to one second in debug builds,
/// so an integration test sees several fires without waiting minutes.
pub const SHORT_SCHEDULES: &str = "short-schedules";

/// One `[[schedules]]` table, as serde reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub name: String,
    pub cron: Option<String>,
    pub every: Option<String>,
    pub prompt: String,
}

/// A validated schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Plain and bounded: it names the schedule in the store, in txn ids and in `!hive fire`.
    pub name: String,
    pub when: When,
    /// The message body the agent receives at each fire.
    pub prompt: String,
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// A cron expression, UTC (its text kept for display; the parsed pattern is large, boxed).
    Cron {
        text: String,
        cron: Box<croner::Cron>,
    },
    /// Every so long, on a grid from the schedule's anchor.
    Every(Duration),
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            When::Cron { text, .. } => write!(f, "cron {text}"),
            When::Every(d) => write!(f, "every {}", format_interval(*d)),
        }
    }
}

impl When {
    /// The first fire strictly after `after_us` (µs since the epoch, UTC); `None` when there is
    /// none the calendar can reach (a cron that never matches again).
    pub fn next_after(&self, after_us: i64) -> Option<i64> {
        match self {
            When::Every(d) => after_us.checked_add(interval_us(*d)),
            When::Cron { cron, .. } => {
                let t = utc(after_us)?;
                cron.find_next_occurrence(&t, false)
                    .ok()
                    .map(|t| t.timestamp_micros())
            }
        }
    }

    /// The last fire at or before `now_us` on the grid that starts after `anchor_us`; `None`
    /// when no fire lies in `(anchor_us, now_us]`.
    pub fn last_at_or_before(&self, anchor_us: i64, now_us: i64) -> Option<i64> {
        if now_us <= anchor_us {
            return None;
        }
        match self {
            When::Every(d) => {
                let step = interval_us(*d);
                let k = (now_us - anchor_us) / step;
                (k > 0).then(|| anchor_us + k * step)
            }
            When::Cron { cron, .. } => {
                let t = utc(now_us)?;
                let prev = cron.find_previous_occurrence(&t, true).ok()?;
                let prev = prev.timestamp_micros();
                (prev > anchor_us).then_some(prev)
            }
        }
    }
}

fn utc(us: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(us)
}

fn interval_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).expect("an interval is at most MAX_INTERVAL")
}

/// Why a `[[schedules]]` entry is refused: the message of its `SpecError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0:?} is not a schedule name: lowercase [a-z][a-z0-9_-]{{0,31}}")]
    BadName(String),
    #[error("{0:?} is named twice")]
    Duplicate(String),
    #[error("{name:?}: give exactly one of cron and every")]
    NeedsOneWhen { name: String },
    #[error("{name:?}: cron {text:?} is not a valid cron expression (five fields, UTC): {reason}")]
    BadCron {
        name: String,
        text: String,
        reason: String,
    },
    #[error(
        "{name:?}: every {text:?} is not an interval: a number and a unit (s, m, h, d), e.g. 30m or 1h30m"
    )]
    BadInterval { name: String, text: String },
    #[error("{name:?}: every {text:?} is shorter than {}", format_interval(*floor))]
    TooShort {
        name: String,
        text: String,
        floor: Duration,
    },
    #[error("{name:?}: every {text:?} is longer than a year")]
    TooLong { name: String, text: String },
    #[error("{name:?}: the prompt is empty")]
    EmptyPrompt { name: String },
    #[error("{name:?}: the prompt is longer than {MAX_PROMPT} bytes")]
    LongPrompt { name: String },
}

/// The shortest interval allowed here: [`MIN_INTERVAL`], or a second under the
/// [`SHORT_SCHEDULES`] failpoint in a debug build.
pub fn interval_floor() -> Duration {
    #[cfg(debug_assertions)]
    if std::env::var(crate::failpoint::ENV).is_ok_and(|v| v == SHORT_SCHEDULES) {
        return Duration::from_secs(1);
    }
    MIN_INTERVAL
}

/// Validates every `[[schedules]]` entry; each error is for the entry at its index.
pub fn validate(
    raw: &[RawSchedule],
    floor: Duration,
) -> Result<Vec<Schedule>, Vec<(usize, ScheduleError)>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        match one(r, floor) {
            Ok(s) if out.iter().any(|o: &Schedule| o.name == s.name) => {
                errors.push((i, ScheduleError::Duplicate(s.name)))
            }
            Ok(s) => out.push(s),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn one(r: &RawSchedule, floor: Duration) -> Result<Schedule, ScheduleError> {
    if !super::is_provider_name(&r.name) {
        return Err(ScheduleError::BadName(r.name.clone()));
    }
    let name = r.name.clone();
    let when = match (&r.cron, &r.every) {
        (Some(text), None) => When::Cron {
            cron: parse_cron(text)
                .map(Box::new)
                .map_err(|reason| ScheduleError::BadCron {
                    name: name.clone(),
                    text: text.clone(),
                    reason,
                })?,
            text: text.trim().to_owned(),
        },
        (None, Some(text)) => {
            let d = parse_interval(text).ok_or_else(|| ScheduleError::BadInterval {
                name: name.clone(),
                text: text.clone(),
            })?;
            if d < floor {
                return Err(ScheduleError::TooShort {
                    name,
                    text: text.clone(),
                    floor,
                });
            }
            if d > MAX_INTERVAL {
                return Err(ScheduleError::TooLong {
                    name,
                    text: text.clone(),
                });
            }
            When::Every(d)
        }
        _ => return Err(ScheduleError::NeedsOneWhen { name }),
    };
    if r.prompt.trim().is_empty() {
        return Err(ScheduleError::EmptyPrompt { name });
    }
    if r.prompt.len() > MAX_PROMPT {
        return Err(ScheduleError::LongPrompt { name });
    }
    Ok(Schedule {
        name,
        when,
        prompt: r.prompt.clone(),
    })
}

/// A standard five-field cron expression (no seconds, no year, no `@nicknames`).
fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    if text.contains('@') {
        return Err("nicknames (@daily, …) are not accepted: write the five fields".into());
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| e.to_string())
}

/// `90s`, `30m`, `2h`, `1d`, `1h30m`: one or more number-and-unit parts, no blanks.
fn parse_interval(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
    }
    (digits.is_empty() && !text.is_empty()).then(|| Duration::from_secs(total))
}

/// An interval as `every` would write it: `1h30m`, `45s`, `2d`.
pub fn format_interval(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= secs {
            out.push_str(&format!("{}{unit}", s / secs));
            s %= secs;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, cron: Option<&str>, every: Option<&str>, prompt: &str) -> RawSchedule {
        RawSchedule {
            name: name.into(),
            cron: cron.map(Into::into),
            every: every.map(Into::into),
            prompt: prompt.into(),
        }
    }

    #[test]
    fn schedules_validate() {
        struct Case {
            name: &'static str,
            raw: Vec<RawSchedule>,
            /// `Ok(whens)` or the error of the first refused entry.
            want: Result<Vec<&'static str>, ScheduleError>,
        }
        let n = |s: &str| s.to_owned();
        let cases = [
            Case {
                name: "a weekday cron",
                raw: vec![raw("standup", Some("0 9 * * 1-5"), None, "go")],
                want: Ok(vec!["cron 0 9 * * 1-5"]),
            },
            Case {
                name: "an interval",
                raw: vec![raw("poll", None, Some("30m"), "go")],
                want: Ok(vec!["every 30m"]),
            },
            Case {
                name: "a compound interval",
                raw: vec![raw("poll", None, Some("1h30m"), "go")],
                want: Ok(vec!["every 1h30m"]),
            },
            Case {
                name: "two schedules",
                raw: vec![
                    raw("a", None, Some("1d"), "go"),
                    raw("b", Some("*/15 * * * *"), None, "go"),
                ],
                want: Ok(vec!["every 1d", "cron */15 * * * *"]),
            },
            Case {
                name: "a name with a dot",
                raw: vec![raw("a.b", None, Some("1h"), "go")],
                want: Err(ScheduleError::BadName(n("a.b"))),
            },
            Case {
                name: "an empty name",
                raw: vec![raw("", None, Some("1h"), "go")],
                want: Err(ScheduleError::BadName(n(""))),
            },
            Case {
                name: "a name too long",
                raw: vec![raw(&"a".repeat(33), None, Some("1h"), "go")],
                want: Err(ScheduleError::BadName("a".repeat(33))),
            },
            Case {
                name: "a name twice",
                raw: vec![
                    raw("a", None, Some("1h"), "go"),
                    raw("a", None, Some("2h"), "go"),
                ],
                want: Err(ScheduleError::Duplicate(n("a"))),
            },
            Case {
                name: "both cron and every",
                raw: vec![raw("a", Some("* * * * *"), Some("1h"), "go")],
                want: Err(ScheduleError::NeedsOneWhen { name: n("a") }),
            },
            Case {
                name: "neither cron nor every",
                raw: vec![raw("a", None, None, "go")],
                want: Err(ScheduleError::NeedsOneWhen { name: n("a") }),
            },
            Case {
                name: "an interval under a minute",
                raw: vec![raw("a", None, Some("30s"), "go")],
                want: Err(ScheduleError::TooShort {
                    name: n("a"),
                    text: n("30s"),
                    floor: MIN_INTERVAL,
                }),
            },
            Case {
                name: "an interval of zero",
                raw: vec![raw("a", None, Some("0m"), "go")],
                want: Err(ScheduleError::TooShort {
                    name: n("a"),
                    text: n("0m"),
                    floor: MIN_INTERVAL,
                }),
            },
            Case {
                name: "an interval over a year",
                raw: vec![raw("a", None, Some("400d"), "go")],
                want: Err(ScheduleError::TooLong {
                    name: n("a"),
                    text: n("400d"),
                }),
            },
            Case {
                name: "an interval without a unit",
                raw: vec![raw("a", None, Some("30"), "go")],
                want: Err(ScheduleError::BadInterval {
                    name: n("a"),
                    text: n("30"),
                }),
            },
            Case {
                name: "an interval with a blank",
                raw: vec![raw("a", None, Some("30 m"), "go")],
                want: Err(ScheduleError::BadInterval {
                    name: n("a"),
                    text: n("30 m"),
                }),
            },
            Case {
                name: "an interval that overflows",
                raw: vec![raw("a", None, Some("999999999999999d"), "go")],
                want: Err(ScheduleError::BadInterval {
                    name: n("a"),
                    text: n("999999999999999d"),
                }),
            },
            Case {
                name: "an empty prompt",
                raw: vec![raw("a", None, Some("1h"), "  ")],
                want: Err(ScheduleError::EmptyPrompt { name: n("a") }),
            },
            Case {
                name: "a prompt too long",
                raw: vec![raw("a", None, Some("1h"), &"x".repeat(MAX_PROMPT + 1))],
                want: Err(ScheduleError::LongPrompt { name: n("a") }),
            },
        ];
        for c in cases {
            let got = validate(&c.raw, MIN_INTERVAL)
                .map(|v| v.iter().map(|s| s.when.to_string()).collect::<Vec<_>>())
                .map_err(|e| e[0].1.clone());
            let want = c
                .want
                .map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn bad_crons_are_refused() {
        for text in [
            "0 9 * *",
            "0 0 9 * * 1-5",
            "61 * * * *",
            "@daily",
            "every day",
            "",
        ] {
            let errs = validate(&[raw("a", Some(text), None, "go")], MIN_INTERVAL).expect_err(text);
            assert!(
                matches!(&errs[0].1, ScheduleError::BadCron { name, .. } if name == "a"),
                "{text}: {errs:?}"
            );
        }
    }

    #[test]
    fn fires_fall_on_the_grid() {
        const MIN: i64 = 60_000_000;
        // 2026-01-05 is a Monday; 00:00 UTC.
        let monday = 1_767_571_200_000_000;
        let every = When::Every(Duration::from_secs(600));
        assert_eq!(every.next_after(0), Some(10 * MIN));
        assert_eq!(every.last_at_or_before(0, 25 * MIN), Some(20 * MIN));
        assert_eq!(every.last_at_or_before(0, 9 * MIN), None);
        let s = validate(&[raw("a", Some("0 9 * * 1-5"), None, "go")], MIN_INTERVAL).unwrap();
        let cron = &s[0].when;
        assert_eq!(cron.next_after(monday), Some(monday + 9 * 60 * MIN));
        assert_eq!(
            cron.next_after(monday + 9 * 60 * MIN),
            Some(monday + 33 * 60 * MIN),
            "the next weekday"
        );
        assert_eq!(
            cron.last_at_or_before(monday, monday + 50 * 60 * MIN),
            Some(monday + 33 * 60 * MIN),
            "Tuesday's, not Monday's"
        );
        assert_eq!(cron.last_at_or_before(monday, monday + 60 * MIN), None);
    }

    #[test]
    fn intervals_print_as_written() {
        for (secs, text) in [(90, "1m30s"), (3600, "1h"), (5400, "1h30m"), (86_400, "1d")] {
            assert_eq!(format_interval(Duration::from_secs(secs)), text);
            assert_eq!(parse_interval(text), Some(Duration::from_secs(secs)));
        }
    }
}
