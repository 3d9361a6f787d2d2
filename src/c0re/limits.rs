//! Per-agent rate limits: no agent can starve the hive by flooding rooms, the operator or the
//! reminder queue. The defaults are far above what a working agent does; they stop loops.
//!
//! A [`Bucket`] is a token bucket as a pure state machine over an [`Instant`] the caller passes
//! in (tests use fake time): it holds at most `burst` tokens, refills `count` tokens every
//! `per`, and each action takes one. A [`Limiter`] keeps one bucket per (key, [`Kind`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Reminders an agent may have pending at once (`remind` is refused beyond this).
pub const MAX_PENDING_REMINDERS: usize = 200;
/// Longest reminder text, in bytes.
pub const MAX_REMINDER_TEXT: usize = 4000;

/// `count` actions per `per`, with bursts of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}

impl Rate {
    pub const fn per_minute(count: u32, burst: u32) -> Self {
        Self {
            count,
            per: Duration::from_secs(60),
            burst,
        }
    }

    pub const fn per_hour(count: u32, burst: u32) -> Self {
        Self {
            count,
            per: Duration::from_secs(3600),
            burst,
        }
    }

    /// Why this rate is unusable, if it is (for config validation): a zero count, burst or
    /// period would refuse everything or nothing.
    pub fn validate(&self) -> Result<(), String> {
        if self.count == 0 {
            return Err("the count must be at least 1".into());
        }
        if self.burst == 0 {
            return Err("the burst must be at least 1".into());
        }
        if self.per.is_zero() {
            return Err("the period must be longer than zero".into());
        }
        Ok(())
    }

    /// Seconds for one token to come back. Degenerate rates are clamped (a zero count acts as
    /// one per period) so that nothing here divides by zero; [`Rate::validate`] refuses them.
    fn secs_per_token(&self) -> f64 {
        self.per.as_secs_f64() / f64::from(self.count.max(1))
    }

    fn burst(&self) -> f64 {
        f64::from(self.burst.max(1))
    }

    /// "minute", "hour", or the period in seconds.
    fn period(&self) -> String {
        match self.per.as_secs() {
            1 => "second".into(),
            60 => "minute".into(),
            3600 => "hour".into(),
            86400 => "day".into(),
            s => format!("{s} s"),
        }
    }
}

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
            tokens: rate.burst(),
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
        b.tokens + EPSILON >= rate.burst()
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.at) else {
            return;
        };
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() / rate.secs_per_token()).min(rate.burst());
        self.at = now;
    }
}

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `send_message` and replies.
    Message,
    /// `ask_operator`.
    Question,
    /// `remind`.
    Reminder,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Message => "messages",
            Kind::Question => "questions to the operator",
            Kind::Reminder => "reminders",
        }
    }
}

/// Every limit of one agent. The defaults are far above what a working agent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub messages: Rate,
    pub questions: Rate,
    pub reminders: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            messages: Rate::per_minute(120, 120),
            questions: Rate::per_hour(30, 10),
            reminders: Rate::per_hour(120, 60),
        }
    }
}

impl RateLimits {
    pub fn of(&self, kind: Kind) -> &Rate {
        match kind {
            Kind::Message => &self.messages,
            Kind::Question => &self.questions,
            Kind::Reminder => &self.reminders,
        }
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

/// Whether an agent with `pending` reminders may set one more with `text`.
pub fn check_reminder(pending: usize, text: &str) -> Result<(), String> {
    if pending >= MAX_PENDING_REMINDERS {
        return Err(format!(
            "{pending} reminders are pending, the most allowed is {MAX_PENDING_REMINDERS}"
        ));
    }
    if text.len() > MAX_REMINDER_TEXT {
        return Err(format!(
            "the reminder text is {} bytes, the most allowed is {MAX_REMINDER_TEXT}",
            text.len()
        ));
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
        for kind in [Kind::Message, Kind::Question, Kind::Reminder] {
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
        let e = check_reminder(0, &long).expect_err("too long");
        assert!(e.contains("4001 bytes") && e.contains("4000"), "{e}");
    }
}
