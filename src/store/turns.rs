//! Per-turn stats (table `turns`, migration 013): one row per attempt's end of a turn, how it
//! ended and how long it took, for every brain (a scripted or command brain's turns too, which
//! make no model calls). Tokens and cost come from `model_calls`: the calls of the same agent
//! and message made while that attempt ran.

use std::collections::BTreeMap;

use rusqlite::params;

use super::tools::Usage;
use super::{Store, now_us};

/// How one attempt at a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnOutcome {
    /// The harness acked the message: it is done.
    Done,
    /// The brain gave up on it (`fail`): it is dead-lettered.
    Failed,
    /// The harness went away mid-turn: the message is delivered again.
    Interrupted,
    /// An operator cancelled it (`!cancel`, `!hive cancel`): it counts as done, never again.
    Cancelled,
}

impl TurnOutcome {
    const ALL: [Self; 4] = [Self::Done, Self::Failed, Self::Interrupted, Self::Cancelled];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for TurnOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored outcome this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown turn outcome {0:?}")]
pub struct UnknownOutcome(pub String);

impl std::str::FromStr for TurnOutcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

/// One attempt at a turn, with the model use it made.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnStat {
    pub agent: String,
    /// The inbound message (its queue id).
    pub inbox_id: i64,
    pub attempt: u32,
    pub started_us: i64,
    pub ended_us: i64,
    pub outcome: TurnOutcome,
    /// The model the spec named (the brain's kind for brains without one).
    pub model: String,
    /// The model calls made while this attempt ran.
    pub usage: Usage,
}

impl TurnStat {
    /// How long it took, in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        (self.ended_us - self.started_us).max(0) / 1_000
    }
}

/// One agent's turns and model use since some time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentUsage {
    pub agent: String,
    /// Turns ended (every outcome).
    pub turns: u64,
    /// Of them, not done (failed or interrupted).
    pub unfinished: u64,
    /// Their time, summed, in milliseconds.
    pub busy_ms: i64,
    pub usage: Usage,
}

/// The model-use columns of the calls of turn `t` (aliased) made while it ran.
const ATTEMPT_USAGE: &str = "
    (SELECT COUNT(*) FROM model_calls m WHERE m.agent = t.agent AND m.inbox_id = t.inbox_id
        AND m.ts_us BETWEEN t.started_us AND t.ended_us),
    (SELECT COALESCE(SUM(prompt_tokens + completion_tokens + cache_read_tokens + cache_write_tokens), 0)
        FROM model_calls m WHERE m.agent = t.agent AND m.inbox_id = t.inbox_id
        AND m.ts_us BETWEEN t.started_us AND t.ended_us),
    (SELECT COALESCE(SUM(cost_usd), 0.0) FROM model_calls m WHERE m.agent = t.agent
        AND m.inbox_id = t.inbox_id AND m.ts_us BETWEEN t.started_us AND t.ended_us),
    (SELECT COUNT(*) - COUNT(cost_usd) FROM model_calls m WHERE m.agent = t.agent
        AND m.inbox_id = t.inbox_id AND m.ts_us BETWEEN t.started_us AND t.ended_us)";

impl Store {
    /// Records that an attempt at message `inbox_id` ended now with `outcome`; it started when
    /// the message was handed out (`inbox.delivered_us`, or now if the row is gone). Once per
    /// attempt: a second end of the same attempt (a cancelled turn's session ending too) is
    /// ignored, the first stays.
    pub fn record_turn(
        &self,
        agent: &str,
        inbox_id: i64,
        attempt: u32,
        outcome: TurnOutcome,
        model: &str,
    ) -> anyhow::Result<()> {
        let now = now_us();
        self.lock().execute(
            "INSERT OR IGNORE INTO turns (agent, inbox_id, attempt, started_us, ended_us, outcome, model)
             VALUES (?1, ?2, ?3,
                     COALESCE((SELECT delivered_us FROM inbox WHERE id = ?2), ?4), ?4, ?5, ?6)",
            params![agent, inbox_id, attempt, now, outcome.as_str(), model],
        )?;
        Ok(())
    }

    /// The newest `limit` attempts (of `agent`, or of all), newest first.
    pub fn turn_stats(&self, agent: Option<&str>, limit: usize) -> anyhow::Result<Vec<TurnStat>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT agent, inbox_id, attempt, started_us, ended_us, outcome, model, {ATTEMPT_USAGE}
             FROM turns t WHERE ?1 IS NULL OR agent = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![agent, limit as i64], |r| {
            let outcome: String = r.get(5)?;
            Ok(TurnStat {
                agent: r.get(0)?,
                inbox_id: r.get(1)?,
                attempt: r.get(2)?,
                started_us: r.get(3)?,
                ended_us: r.get(4)?,
                outcome: outcome.parse().map_err(|e: UnknownOutcome| {
                    rusqlite::types::FromSqlError::Other(Box::new(e))
                })?,
                model: r.get(6)?,
                usage: Usage {
                    calls: r.get::<_, i64>(7)? as u64,
                    tokens: r.get::<_, i64>(8)? as u64,
                    cost_usd: r.get(9)?,
                    unpriced_calls: r.get::<_, i64>(10)? as u64,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Each agent's turns (ended since `since_us`) and model calls (made since then), by name.
    /// An agent with either shows.
    pub fn usage_per_agent(&self, since_us: i64) -> anyhow::Result<Vec<AgentUsage>> {
        let conn = self.lock();
        let mut by: BTreeMap<String, AgentUsage> = BTreeMap::new();
        let mut turns = conn.prepare(
            "SELECT agent, COUNT(*), COALESCE(SUM(outcome != 'done'), 0),
                    COALESCE(SUM(MAX(ended_us - started_us, 0)), 0) / 1000
             FROM turns WHERE ended_us >= ?1 GROUP BY agent",
        )?;
        let rows = turns.query_map([since_us], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (agent, n, unfinished, busy_ms) = row?;
            let a = by.entry(agent.clone()).or_default();
            a.agent = agent;
            a.turns = n;
            a.unfinished = unfinished;
            a.busy_ms = busy_ms;
        }
        let mut calls = conn.prepare(
            "SELECT agent, COUNT(*),
                    COALESCE(SUM(prompt_tokens + completion_tokens + cache_read_tokens + cache_write_tokens), 0),
                    COALESCE(SUM(cost_usd), 0.0), COUNT(*) - COUNT(cost_usd)
             FROM model_calls WHERE ts_us >= ?1 GROUP BY agent",
        )?;
        let rows = calls.query_map([since_us], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Usage {
                    calls: r.get::<_, i64>(1)? as u64,
                    tokens: r.get::<_, i64>(2)? as u64,
                    cost_usd: r.get(3)?,
                    unpriced_calls: r.get::<_, i64>(4)? as u64,
                },
            ))
        })?;
        for row in rows {
            let (agent, usage) = row?;
            let a = by.entry(agent.clone()).or_default();
            a.agent = agent;
            a.usage = usage;
        }
        Ok(by.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Enqueue;

    #[test]
    fn outcomes_round_trip_and_unknown_ones_are_errors() {
        for o in TurnOutcome::ALL {
            assert_eq!(o.as_str().parse::<TurnOutcome>(), Ok(o));
        }
        assert_eq!(
            "exploded".parse::<TurnOutcome>(),
            Err(UnknownOutcome("exploded".into()))
        );
    }

    fn queued(s: &Store, event: &str) -> i64 {
        s.ingest(
            &[(event.into(), "!r:x".into())],
            &[Enqueue {
                event_id: event.into(),
                room_id: "!r:x".into(),
                sender: "@op:x".into(),
                body: "hi".into(),
                origin_ts: 1,
                agents: vec!["a".into()],
                hive_event: None,
                peer: None,
            }],
            1,
        )
        .expect("ingest");
        s.take_next("a", 3).expect("take").0.expect("queued").id
    }

    #[test]
    fn a_turn_is_timed_from_its_handing_out_and_counts_its_own_calls() {
        let s = Store::open_in_memory().unwrap();
        let id = queued(&s, "$one");
        let tokens = crate::config::Tokens {
            input: 10,
            output: 5,
            cache_read: 0,
            cache_write: 0,
        };
        s.record_model_call("a", id, "m1", &tokens, Some(0.25), true)
            .unwrap();
        s.record_turn("a", id, 1, TurnOutcome::Interrupted, "m1")
            .unwrap();
        // The second attempt makes no call: the first attempt's is not counted again.
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.lock()
            .execute(
                "UPDATE inbox SET delivered_us = ?2 WHERE id = ?1",
                params![id, now_us()],
            )
            .unwrap();
        s.record_turn("a", id, 2, TurnOutcome::Done, "m1").unwrap();
        let got = s.turn_stats(None, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].attempt, got[0].outcome), (2, TurnOutcome::Done));
        assert_eq!(got[0].usage.calls, 0, "{got:?}");
        assert_eq!((got[1].attempt, got[1].usage.calls), (1, 1));
        assert_eq!(got[1].usage.tokens, 15);
        assert!(
            got.iter()
                .all(|t| t.ended_us >= t.started_us && t.model == "m1")
        );
        assert!(s.turn_stats(Some("b"), 10).unwrap().is_empty());

        let per = s.usage_per_agent(0).unwrap();
        assert_eq!(per.len(), 1);
        assert_eq!((per[0].turns, per[0].unfinished), (2, 1));
        assert_eq!((per[0].usage.calls, per[0].usage.cost_usd), (1, 0.25));
        assert!(s.usage_per_agent(now_us() + 1_000_000).unwrap().is_empty());

        // Pruned with the rest.
        assert!(s.prune(now_us() + 1_000_000).unwrap() >= 2);
        assert!(s.turn_stats(None, 10).unwrap().is_empty());
    }
}
