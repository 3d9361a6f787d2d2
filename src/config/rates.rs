//! The rates an agent's actions are limited to (`[limits]` in hive.toml): plain data, validated
//! here; the token buckets that enforce them are hive-c0re's (`c0re::limits`).

use std::time::Duration;

/// Why a rate is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadRate {
    #[error("the count must be at least 1")]
    ZeroCount,
    #[error("the burst must be at least 1")]
    ZeroBurst,
    #[error("the period must be longer than zero")]
    ZeroPeriod,
}

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
    pub fn validate(&self) -> Result<(), BadRate> {
        if self.count == 0 {
            return Err(BadRate::ZeroCount);
        }
        if self.burst == 0 {
            return Err(BadRate::ZeroBurst);
        }
        if self.per.is_zero() {
            return Err(BadRate::ZeroPeriod);
        }
        Ok(())
    }

    /// Seconds for one token to come back. Degenerate rates are clamped (a zero count acts as
    /// one per period) so that nothing here divides by zero; [`Rate::validate`] refuses them.
    pub fn secs_per_token(&self) -> f64 {
        self.per.as_secs_f64() / f64::from(self.count.max(1))
    }

    pub fn burst_tokens(&self) -> f64 {
        f64::from(self.burst.max(1))
    }

    /// "minute", "hour", or the period in seconds.
    pub fn period(&self) -> String {
        match self.per.as_secs() {
            1 => "second".into(),
            60 => "minute".into(),
            3600 => "hour".into(),
            86400 => "day".into(),
            s => format!("{s} s"),
        }
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
    /// A forge tool that changes something on the forge (`forge_comment`, `forge_label`,
    /// `forge_request_review`, `forge_review`).
    ForgeWrite,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Message => "messages",
            Kind::Question => "questions to the operator",
            Kind::Reminder => "reminders",
            Kind::ForgeWrite => "forge writes",
        }
    }
}

/// Every limit of one agent. The defaults are far above what a working agent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub messages: Rate,
    pub questions: Rate,
    pub reminders: Rate,
    pub forge_writes: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            messages: Rate::per_minute(120, 120),
            questions: Rate::per_hour(30, 10),
            reminders: Rate::per_hour(120, 60),
            forge_writes: Rate::per_hour(60, 20),
        }
    }
}

impl RateLimits {
    pub fn of(&self, kind: Kind) -> &Rate {
        match kind {
            Kind::Message => &self.messages,
            Kind::Question => &self.questions,
            Kind::Reminder => &self.reminders,
            Kind::ForgeWrite => &self.forge_writes,
        }
    }
}
