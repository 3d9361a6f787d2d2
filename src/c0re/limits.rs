//! Per-agent rate limits: no agent can starve the hive by flooding rooms, the operator or the
//! reminder queue. The defaults are far above what a working agent does; they stop loops.
//!
//! A [`Bucket`] is a token bucket as a pure state machine over an [`Instant`] the caller passes
//! in (tests use fake time): it holds at most `burst` tokens, refills `count` tokens every
//! `per`, and each action takes one. A [`Limiter`] keeps one bucket per (key, [`Kind`]).
//!
//! Budgets, decided here as pure functions over what was used: [`check_reminder`] (pending
//! reminders and their size) and a model brain's [`check_budget`] (calls, tokens and dollars per
//! message and per day, under the hive's ceilings: [`under_ceilings`]); the store's usage is read
//! around them by the caller.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::config::{BadRate, Kind, Rate, RateLimits};
use crate::wire::protocol::DEFAULT_CALLS_PER_MESSAGE;

use crate::agent_spec::ModelLimits;
use crate::store::Usage;

/// Reminders an agent may have pending at once (`remind` is refused beyond this).
pub const MAX_PENDING_REMINDERS: usize = 200;
/// Longest reminder text, in bytes.
pub const MAX_REMINDER_TEXT: usize = 4000;

/// Rounding slack: a token that is 1 - 1e-9 full is a token (float sums of refills).
const EPSILON: f64 = 1e-9;

/// A token bucket. Holds no clock: every call is given `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket with a full burst available.
    pub fn full(rate: &Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst_tokens(),
            at: now,
        }
    }

    /// Takes one token, or says how long until one is back (rounded up to the millisecond:
    /// waiting that long always suffices). A `now` earlier than the last call (clocks passed
    /// in out of order) refills nothing; a zero period never refuses.
    pub fn take(&mut self, rate: &Rate, now: Instant) -> Result<(), Duration> {
        if rate.per.is_zero() {
            return Ok(());
        }
        self.refill(rate, now);
        if self.tokens + EPSILON >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let wait = (1.0 - self.tokens) * rate.secs_per_token();
        let millis = (wait * 1000.0).ceil();
        Err(Duration::from_millis(if millis.is_finite() {
            millis as u64
        } else {
            u64::MAX
        }))
    }

    /// Whether the bucket has refilled completely by `now` (it can then be forgotten: a new
    /// full bucket is the same thing).
    pub fn is_full(&self, rate: &Rate, now: Instant) -> bool {
        let mut b = self.clone();
        b.refill(rate, now);
        b.tokens + EPSILON >= rate.burst_tokens()
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.at) else {
            return;
        };
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() / rate.secs_per_token()).min(rate.burst_tokens());
        self.at = now;
    }
}

/// An action refused by a rate limit: what, under which limit, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "rate limit: at most {} {} per {}; try again in {} s",
    .rate.count, .kind.noun(), .rate.period(), retry_secs(*.retry_after)
)]
pub struct Refused {
    pub kind: Kind,
    pub rate: Rate,
    pub retry_after: Duration,
}

/// Whole seconds to wait, rounded up, at least 1 (a person reads this).
fn retry_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// One bucket per (key, kind). Keys are agents, a bounded set; full buckets are dropped when
/// the map grows past [`Limiter::PRUNE_AT`], so even unbounded keys cannot grow it forever.
pub struct Limiter<K> {
    rates: RateLimits,
    buckets: Mutex<HashMap<(K, Kind), Bucket>>,
}

impl<K: Eq + Hash> Limiter<K> {
    const PRUNE_AT: usize = 4096;

    pub fn new(rates: RateLimits) -> Self {
        Self {
            rates,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rates(&self) -> &RateLimits {
        &self.rates
    }

    /// Counts one `kind` action by `key` at `now`, or refuses it.
    pub fn check(&self, key: K, kind: Kind, now: Instant) -> Result<(), Refused> {
        let rate = *self.rates.of(kind);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= Self::PRUNE_AT {
            let rates = self.rates;
            buckets.retain(|(_, k), b| !b.is_full(rates.of(*k), now));
        }
        buckets
            .entry((key, kind))
            .or_insert_with(|| Bucket::full(&rate, now))
            .take(&rate, now)
            .map_err(|retry_after| Refused {
                kind,
                rate,
                retry_after,
            })
    }
}

/// Why one more reminder is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReminderRefused {
    #[error("{pending} reminders are pending, the most allowed is {MAX_PENDING_REMINDERS}")]
    TooMany { pending: usize },
    #[error("the reminder text is {len} bytes, the most allowed is {MAX_REMINDER_TEXT}")]
    TooLong { len: usize },
}

/// Whether an agent with `pending` reminders may set one more with `text`.
pub fn check_reminder(pending: usize, text: &str) -> Result<(), ReminderRefused> {
    if pending >= MAX_PENDING_REMINDERS {
        return Err(ReminderRefused::TooMany { pending });
    }
    if text.len() > MAX_REMINDER_TEXT {
        return Err(ReminderRefused::TooLong { len: text.len() });
    }
    Ok(())
}

/// An agent's model limits under the hive's daily ceilings (`[limits]` model_calls_per_day and
/// model_tokens_per_day): the smaller of the two, the hive's where the agent sets none. Whatever
/// an (approved) agent config asks, the hive's ceilings hold.
pub fn under_ceilings(agent: &ModelLimits, calls_per_day: u64, tokens_per_day: u64) -> ModelLimits {
    ModelLimits {
        calls_per_day: Some(
            agent
                .calls_per_day
                .map_or(calls_per_day, |n| n.min(calls_per_day)),
        ),
        tokens_per_day: Some(
            agent
                .tokens_per_day
                .map_or(tokens_per_day, |n| n.min(tokens_per_day)),
        ),
        ..agent.clone()
    }
}

/// Which model budget one more call would exceed (the text follows "over budget: ").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverBudget {
    #[error("{used} model calls for this message (limit {limit})")]
    CallsPerMessage { used: u64, limit: u64 },
    #[error("{used} tokens for this message (limit {limit})")]
    TokensPerMessage { used: u64, limit: u64 },
    #[error("{used} model calls today (limit {limit})")]
    CallsPerDay { used: u64, limit: u64 },
    #[error("{used} tokens today (limit {limit})")]
    TokensPerDay { used: u64, limit: u64 },
    #[error("${used:.4} for this message (limit ${limit})")]
    UsdPerMessage { used: f64, limit: f64 },
    #[error("${used:.4} today (limit ${limit})")]
    UsdPerDay { used: f64, limit: f64 },
}

/// Whether one more model call stays within `limits`, given what this message (`turn`) and
/// today (`day`, UTC) used so far. A budget is spent once the usage reaches it: the call that
/// would start beyond it is refused. Checked in this order: calls, then tokens for the message
/// (calls default to [`DEFAULT_CALLS_PER_MESSAGE`]); calls, then tokens today; dollars for the
/// message, then today (only priced calls count in dollars).
pub fn check_budget(limits: &ModelLimits, turn: Usage, day: Usage) -> Result<(), OverBudget> {
    let per_msg = limits
        .calls_per_message
        .unwrap_or(DEFAULT_CALLS_PER_MESSAGE);
    if turn.calls >= per_msg {
        return Err(OverBudget::CallsPerMessage {
            used: turn.calls,
            limit: per_msg,
        });
    }
    if let Some(limit) = limits.tokens_per_message
        && turn.tokens >= limit
    {
        return Err(OverBudget::TokensPerMessage {
            used: turn.tokens,
            limit,
        });
    }
    if let Some(limit) = limits.calls_per_day
        && day.calls >= limit
    {
        return Err(OverBudget::CallsPerDay {
            used: day.calls,
            limit,
        });
    }
    if let Some(limit) = limits.tokens_per_day
        && day.tokens >= limit
    {
        return Err(OverBudget::TokensPerDay {
            used: day.tokens,
            limit,
        });
    }
    if let Some(limit) = limits.usd_per_message
        && turn.cost_usd >= limit
    {
        return Err(OverBudget::UsdPerMessage {
            used: turn.cost_usd,
            limit,
        });
    }
    if let Some(limit) = limits.usd_per_day
        && day.cost_usd >= limit
    {
        return Err(OverBudget::UsdPerDay {
            used: day.cost_usd,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Takes at each offset (from t0) in turn; the results, as retry-after in ms (0 = taken).
    fn run(rate: Rate, at_ms: &[u64]) -> Vec<u64> {
        let t0 = Instant::now();
        let mut b = Bucket::full(&rate, t0);
        at_ms
            .iter()
            .map(|ms| match b.take(&rate, t0 + Duration::from_millis(*ms)) {
                Ok(()) => 0,
                Err(d) => d.as_millis() as u64,
            })
            .collect()
    }

    #[test]
    fn buckets_over_fake_time() {
        let per_sec = Rate {
            count: 1,
            per: S,
            burst: 3,
        };
        let cases: &[(&str, Rate, &[u64], &[u64])] = &[
            (
                "burst then refused",
                per_sec,
                &[0, 0, 0, 0],
                &[0, 0, 0, 1000],
            ),
            (
                "refills one per second",
                per_sec,
                &[0, 0, 0, 1000, 1000],
                &[0, 0, 0, 0, 1000],
            ),
            (
                "half a token: half the wait",
                per_sec,
                &[0, 0, 0, 500],
                &[0, 0, 0, 500],
            ),
            (
                "refill caps at burst",
                per_sec,
                &[0, 0, 0, 100_000, 100_000, 100_000, 100_000],
                &[0, 0, 0, 0, 0, 0, 1000],
            ),
            (
                "waiting retry_after suffices",
                per_sec,
                &[0, 0, 0, 0, 1000],
                &[0, 0, 0, 1000, 0],
            ),
            (
                "a refusal takes nothing",
                per_sec,
                &[0, 0, 0, 0, 0, 1000],
                &[0, 0, 0, 1000, 1000, 0],
            ),
            (
                "60 per minute",
                Rate::per_minute(60, 60),
                &[0; 61],
                &[[0; 60].as_slice(), &[1000]].concat(),
            ),
            (
                "30 per hour: 2 min a token",
                Rate::per_hour(30, 1),
                &[0, 0, 60_000],
                &[0, 120_000, 60_000],
            ),
            (
                "time going backwards refills nothing",
                per_sec,
                &[5000, 5000, 5000, 0, 4000],
                &[0, 0, 0, 1000, 1000],
            ),
        ];
        for (what, rate, at, want) in cases {
            assert_eq!(run(*rate, at), *want, "{what}");
        }
    }

    #[test]
    fn degenerate_rates_never_panic() {
        let t0 = Instant::now();
        for rate in [
            Rate {
                count: 0,
                per: S,
                burst: 0,
            },
            Rate {
                count: u32::MAX,
                per: Duration::MAX,
                burst: u32::MAX,
            },
            Rate {
                count: 1,
                per: Duration::MAX,
                burst: 1,
            },
            Rate {
                count: 1,
                per: Duration::ZERO,
                burst: 0,
            },
        ] {
            let mut b = Bucket::full(&rate, t0);
            for i in 0..3 {
                let _ = b.take(&rate, t0 + Duration::from_secs(i));
            }
        }
        let unlimited = Rate {
            count: 1,
            per: Duration::ZERO,
            burst: 1,
        };
        let mut b = Bucket::full(&unlimited, t0);
        assert!((0..100).all(|_| b.take(&unlimited, t0).is_ok()));
        let once = Rate {
            count: 1,
            per: Duration::MAX,
            burst: 1,
        };
        let mut b = Bucket::full(&once, t0);
        assert_eq!(b.take(&once, t0), Ok(()));
        assert!(b.take(&once, t0 + Duration::from_secs(86400)).is_err());
    }

    #[test]
    fn validation() {
        let cases = [
            (Rate::per_minute(1, 1), true),
            (Rate::per_minute(0, 1), false),
            (Rate::per_minute(1, 0), false),
            (
                Rate {
                    count: 1,
                    per: Duration::ZERO,
                    burst: 1,
                },
                false,
            ),
        ];
        for (rate, ok) in cases {
            assert_eq!(rate.validate().is_ok(), ok, "{rate:?}");
        }
        for kind in [
            Kind::Message,
            Kind::Question,
            Kind::Reminder,
            Kind::ForgeWrite,
        ] {
            assert_eq!(
                RateLimits::default().of(kind).validate(),
                Ok(()),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn keys_and_kinds_are_independent() {
        let rates = RateLimits {
            messages: Rate::per_minute(2, 2),
            questions: Rate::per_hour(1, 1),
            reminders: Rate::per_hour(60, 1),
            forge_writes: Rate::per_hour(60, 20),
        };
        let l = Limiter::new(rates);
        let t = Instant::now();
        assert!(l.check("a", Kind::Message, t).is_ok());
        assert!(l.check("a", Kind::Message, t).is_ok());
        let refused = l
            .check("a", Kind::Message, t)
            .expect_err("a's third message");
        assert_eq!(refused.kind, Kind::Message);
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        // Another agent, and another kind of the same agent, are untouched.
        assert!(l.check("b", Kind::Message, t).is_ok());
        assert!(l.check("a", Kind::Question, t).is_ok());
        assert!(l.check("a", Kind::Reminder, t).is_ok());
        let q = l
            .check("a", Kind::Question, t)
            .expect_err("a's second question");
        assert_eq!(q.retry_after, Duration::from_secs(3600));
        let r = l
            .check("a", Kind::Reminder, t)
            .expect_err("a's second reminder");
        assert_eq!(r.retry_after, Duration::from_secs(60));
        // Half a minute later a has one message again, b has its second still.
        let later = t + Duration::from_secs(30);
        assert!(l.check("a", Kind::Message, later).is_ok());
        assert!(l.check("a", Kind::Message, later).is_err());
        assert!(l.check("b", Kind::Message, later).is_ok());
    }

    #[test]
    fn full_buckets_are_pruned_past_the_threshold() {
        let l = Limiter::new(RateLimits::default());
        let t = Instant::now();
        for k in 0..Limiter::<u32>::PRUNE_AT as u32 {
            l.check(k, Kind::Message, t).expect("first message");
        }
        // An hour later every bucket is full again: the next check prunes them all.
        l.check(u32::MAX, Kind::Message, t + Duration::from_secs(3600))
            .expect("first message");
        assert_eq!(l.buckets.lock().expect("not poisoned").len(), 1);
    }

    #[test]
    fn refusals_say_the_limit_and_the_wait() {
        let cases = [
            (
                Kind::Message,
                Rate::per_minute(60, 60),
                Duration::from_millis(11_200),
                "rate limit: at most 60 messages per minute; try again in 12 s",
            ),
            (
                Kind::Question,
                Rate::per_hour(30, 10),
                Duration::from_secs(120),
                "rate limit: at most 30 questions to the operator per hour; try again in 120 s",
            ),
            (
                Kind::Reminder,
                Rate {
                    count: 5,
                    per: Duration::from_secs(90),
                    burst: 5,
                },
                Duration::from_millis(1),
                "rate limit: at most 5 reminders per 90 s; try again in 1 s",
            ),
        ];
        for (kind, rate, retry_after, want) in cases {
            let r = Refused {
                kind,
                rate,
                retry_after,
            };
            assert_eq!(r.to_string(), want);
        }
    }

    #[test]
    fn reminders_are_bounded() {
        let long = "x".repeat(MAX_REMINDER_TEXT + 1);
        let cases = [
            (0, "check the build", true),
            (MAX_PENDING_REMINDERS - 1, "x", true),
            (MAX_PENDING_REMINDERS, "x", false),
            (0, &long[1..], true),
            (0, long.as_str(), false),
        ];
        for (pending, text, ok) in cases {
            assert_eq!(
                check_reminder(pending, text).is_ok(),
                ok,
                "{pending} {}",
                text.len()
            );
        }
        let e = check_reminder(0, &long).expect_err("too long").to_string();
        assert!(e.contains("4001 bytes") && e.contains("4000"), "{e}");
        let e = check_reminder(MAX_PENDING_REMINDERS, "x")
            .expect_err("too many")
            .to_string();
        assert_eq!(e, "200 reminders are pending, the most allowed is 200");
    }

    fn usage(calls: u64, tokens: u64, cost_usd: f64) -> Usage {
        Usage {
            calls,
            tokens,
            cost_usd,
            ..Default::default()
        }
    }

    #[test]
    fn budgets() {
        struct Case {
            name: &'static str,
            limits: ModelLimits,
            turn: Usage,
            day: Usage,
            want: Result<(), &'static str>,
        }
        let counted = ModelLimits {
            calls_per_message: Some(2),
            tokens_per_message: Some(100),
            calls_per_day: Some(10),
            tokens_per_day: Some(1000),
            ..Default::default()
        };
        let dollars = ModelLimits {
            usd_per_message: Some(0.5),
            usd_per_day: Some(2.0),
            ..Default::default()
        };
        let cases = [
            Case {
                name: "no limits: the default 8 calls a message, nothing else",
                limits: ModelLimits::default(),
                turn: usage(7, 10_000_000, 100.0),
                day: usage(100_000, 0, 0.0),
                want: Ok(()),
            },
            Case {
                name: "no limits: the ninth call of a message",
                limits: ModelLimits::default(),
                turn: usage(8, 0, 0.0),
                day: usage(0, 0, 0.0),
                want: Err("8 model calls for this message (limit 8)"),
            },
            Case {
                name: "just under every counted limit",
                limits: counted.clone(),
                turn: usage(1, 99, 0.0),
                day: usage(9, 999, 0.0),
                want: Ok(()),
            },
            Case {
                name: "calls for the message reached",
                limits: counted.clone(),
                turn: usage(2, 0, 0.0),
                day: usage(0, 0, 0.0),
                want: Err("2 model calls for this message (limit 2)"),
            },
            Case {
                name: "tokens for the message reached",
                limits: counted.clone(),
                turn: usage(0, 100, 0.0),
                day: usage(0, 0, 0.0),
                want: Err("100 tokens for this message (limit 100)"),
            },
            Case {
                name: "calls today reached",
                limits: counted.clone(),
                turn: usage(0, 0, 0.0),
                day: usage(10, 0, 0.0),
                want: Err("10 model calls today (limit 10)"),
            },
            Case {
                name: "tokens today reached",
                limits: counted.clone(),
                turn: usage(0, 0, 0.0),
                day: usage(0, 1000, 0.0),
                want: Err("1000 tokens today (limit 1000)"),
            },
            Case {
                name: "the message's budget is said before the day's",
                limits: counted.clone(),
                turn: usage(2, 100, 0.0),
                day: usage(10, 1000, 0.0),
                want: Err("2 model calls for this message (limit 2)"),
            },
            Case {
                name: "just under the dollars",
                limits: dollars.clone(),
                turn: usage(0, 0, 0.49),
                day: usage(0, 0, 1.99),
                want: Ok(()),
            },
            Case {
                name: "dollars for the message reached",
                limits: dollars.clone(),
                turn: usage(0, 0, 0.5),
                day: usage(0, 0, 0.5),
                want: Err("$0.5000 for this message (limit $0.5)"),
            },
            Case {
                name: "dollars today reached",
                limits: dollars.clone(),
                turn: usage(0, 0, 0.0),
                day: usage(0, 0, 2.0),
                want: Err("$2.0000 today (limit $2)"),
            },
        ];
        for c in cases {
            let got = check_budget(&c.limits, c.turn, c.day).map_err(|e| e.to_string());
            assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
        }
    }

    #[test]
    fn the_hive_ceilings_hold() {
        struct Case {
            name: &'static str,
            agent: (Option<u64>, Option<u64>),
            want: (Option<u64>, Option<u64>),
        }
        let cases = [
            Case {
                name: "no limits of its own: the hive's",
                agent: (None, None),
                want: (Some(2000), Some(20_000_000)),
            },
            Case {
                name: "tighter limits of its own stay",
                agent: (Some(10), Some(1000)),
                want: (Some(10), Some(1000)),
            },
            Case {
                name: "looser limits of its own are cut to the hive's",
                agent: (Some(5000), Some(u64::MAX)),
                want: (Some(2000), Some(20_000_000)),
            },
        ];
        for c in cases {
            let agent = ModelLimits {
                calls_per_day: c.agent.0,
                tokens_per_day: c.agent.1,
                calls_per_message: Some(3),
                usd_per_day: Some(1.0),
                ..Default::default()
            };
            let got = under_ceilings(&agent, 2000, 20_000_000);
            assert_eq!(
                (got.calls_per_day, got.tokens_per_day),
                c.want,
                "{}",
                c.name
            );
            assert_eq!(
                (got.calls_per_message, got.usd_per_day),
                (Some(3), Some(1.0)),
                "{}: the rest is the agent's",
                c.name
            );
        }
    }
}
