//! State behind the hive's tools: agents' notes and reminders.

use rusqlite::{OptionalExtension, params};

use super::{Store, now_us};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub id: i64,
    pub agent: String,
    pub text: String,
    pub due_us: i64,
}

impl Store {
    pub fn notes(&self, agent: &str) -> anyhow::Result<String> {
        Ok(self
            .lock()
            .query_row("SELECT text FROM notes WHERE agent = ?1", [agent], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or_default())
    }

    pub fn set_notes(&self, agent: &str, text: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO notes (agent, text, updated_us) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent) DO UPDATE SET text = excluded.text, updated_us = excluded.updated_us",
            params![agent, text, now_us()],
        )?;
        Ok(())
    }

    pub fn add_reminder(&self, agent: &str, text: &str, due_us: i64) -> anyhow::Result<i64> {
        let c = self.lock();
        c.execute(
            "INSERT INTO reminders (agent, text, due_us) VALUES (?1, ?2, ?3)",
            params![agent, text, due_us],
        )?;
        Ok(c.last_insert_rowid())
    }

    /// Reminders due now: each marked delivered together with the post that delivers it (one
    /// sqlite transaction), so a reminder is never marked done without its message owed. Returns
    /// how many were due.
    pub fn deliver_due_reminders(
        &self,
        post: impl Fn(&Reminder) -> Option<super::OutboxRow>,
    ) -> anyhow::Result<usize> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        let due: Vec<Reminder> = {
            let mut st = tx.prepare(
                "SELECT id, agent, text, due_us FROM reminders WHERE delivered = 0 AND due_us <= ?1 ORDER BY due_us",
            )?;
            st.query_map([now_us()], |r| {
                Ok(Reminder {
                    id: r.get(0)?,
                    agent: r.get(1)?,
                    text: r.get(2)?,
                    due_us: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?
        };
        for r in &due {
            tx.execute("UPDATE reminders SET delivered = 1 WHERE id = ?1", [r.id])?;
            // `None`: its agent is gone; nobody to remind.
            if let Some(row) = post(r) {
                super::outbox::insert(&tx, &row)?;
            }
        }
        tx.commit()?;
        Ok(due.len())
    }

    /// Reminders `agent` has set that are not delivered yet.
    pub fn pending_reminders(&self, agent: &str) -> anyhow::Result<usize> {
        Ok(self.lock().query_row(
            "SELECT COUNT(*) FROM reminders WHERE agent = ?1 AND delivered = 0",
            [agent],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }

    pub fn next_reminder(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.lock().query_row(
            "SELECT MIN(due_us) FROM reminders WHERE delivered = 0",
            [],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_and_reminders() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.notes("a").unwrap(), "");
        s.set_notes("a", "one").unwrap();
        s.set_notes("a", "two").unwrap();
        assert_eq!(s.notes("a").unwrap(), "two");
        let id = s.add_reminder("a", "look again", now_us() - 1).unwrap();
        s.add_reminder("a", "later", now_us() + 3_600_000_000)
            .unwrap();
        assert_eq!(s.pending_reminders("a").unwrap(), 2);
        let post = |r: &Reminder| {
            Some(crate::store::OutboxRow {
                txn_id: format!("hh-reminder-{}", r.id),
                room_key: "agent:a".into(),
                content: r.text.clone(),
            })
        };
        assert_eq!(s.deliver_due_reminders(post).unwrap(), 1);
        assert_eq!(s.deliver_due_reminders(post).unwrap(), 0, "once");
        let owed = s.due_posts(10).unwrap();
        assert_eq!(owed.len(), 1, "marked delivered together with its post");
        assert_eq!(owed[0].row.txn_id, format!("hh-reminder-{id}"));
        assert_eq!(s.pending_reminders("a").unwrap(), 1);
        assert!(s.next_reminder().unwrap().is_some());
    }
}

impl Store {
    /// The response recorded for one side effect of a turn (see `c0re/effects.rs`).
    pub fn tool_effect(
        &self,
        agent: &str,
        inbox_id: i64,
        key: &str,
        occurrence: u32,
    ) -> anyhow::Result<Option<String>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT response FROM tool_effects
                 WHERE agent = ?1 AND inbox_id = ?2 AND key = ?3 AND occurrence = ?4",
                params![agent, inbox_id, key, occurrence],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn record_tool_effect(
        &self,
        agent: &str,
        inbox_id: i64,
        key: &str,
        occurrence: u32,
        response: &str,
    ) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT OR IGNORE INTO tool_effects (agent, inbox_id, key, occurrence, response, ts_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![agent, inbox_id, key, occurrence, response, now_us()],
        )?;
        Ok(())
    }
}

/// Model calls, tokens and cost in some window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub calls: u64,
    /// Every token counted: input, output, cache reads and writes.
    pub tokens: u64,
    /// US dollars, for the calls whose model has a price.
    pub cost_usd: f64,
    /// Calls whose model had no price in hive.toml (their cost is not in `cost_usd`).
    pub unpriced_calls: u64,
}

/// One agent's usage on one UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayUsage {
    pub agent: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub turns: u64,
    pub tokens: crate::config::Tokens,
    pub usage: Usage,
}

impl Store {
    pub fn record_model_call(
        &self,
        agent: &str,
        inbox_id: i64,
        model: &str,
        tokens: &crate::config::Tokens,
        cost_usd: Option<f64>,
        ok: bool,
    ) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO model_calls (ts_us, agent, inbox_id, model, prompt_tokens, completion_tokens,
                                      cache_read_tokens, cache_write_tokens, cost_usd, ok)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                now_us(),
                agent,
                inbox_id,
                model,
                tokens.input as i64,
                tokens.output as i64,
                tokens.cache_read as i64,
                tokens.cache_write as i64,
                cost_usd,
                ok
            ],
        )?;
        Ok(())
    }

    /// Usage for one inbound message (one turn, across redeliveries).
    pub fn turn_usage(&self, agent: &str, inbox_id: i64) -> anyhow::Result<Usage> {
        self.usage_where("agent = ?1 AND inbox_id = ?2", params![agent, inbox_id])
    }

    /// Usage since `since_us` (the start of the UTC day for daily budgets).
    pub fn usage_since(&self, agent: &str, since_us: i64) -> anyhow::Result<Usage> {
        self.usage_where("agent = ?1 AND ts_us >= ?2", params![agent, since_us])
    }

    fn usage_where(&self, cond: &str, p: impl rusqlite::Params) -> anyhow::Result<Usage> {
        Ok(self.lock().query_row(
            &format!("SELECT {USAGE_COLUMNS} FROM model_calls WHERE {cond}"),
            p,
            |r| usage_of(r, 0),
        )?)
    }

    /// Usage per agent and UTC day since `since_us`, newest day first.
    pub fn usage_by_day(&self, since_us: i64) -> anyhow::Result<Vec<DayUsage>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT agent, date(ts_us / 1000000, 'unixepoch') AS day, COUNT(DISTINCT inbox_id),
                    COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),
                    COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0),
                    {USAGE_COLUMNS}
             FROM model_calls WHERE ts_us >= ?1 GROUP BY agent, day ORDER BY day DESC, agent"
        ))?;
        let rows = stmt.query_map(params![since_us], |r| {
            let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
            Ok(DayUsage {
                agent: r.get(0)?,
                day: r.get(1)?,
                turns: n(2)?,
                tokens: crate::config::Tokens {
                    input: n(3)?,
                    output: n(4)?,
                    cache_read: n(5)?,
                    cache_write: n(6)?,
                },
                usage: usage_of(r, 7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One turn's model use: the calls made for one inbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnUsage {
    pub agent: String,
    /// The inbound message (its queue id).
    pub inbox_id: i64,
    /// When its first model call was made.
    pub started_us: i64,
    pub models: String,
    pub usage: Usage,
}

impl Store {
    /// The newest `limit` turns that called a model (of `agent`, or of all), newest first.
    /// Every turn, with its duration and outcome, is [`Store::turn_stats`] (`hive usage --turns`).
    pub fn recent_turns(
        &self,
        agent: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<TurnUsage>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT agent, inbox_id, MIN(ts_us), GROUP_CONCAT(DISTINCT model), {USAGE_COLUMNS}
             FROM model_calls WHERE ?1 IS NULL OR agent = ?1
             GROUP BY agent, inbox_id ORDER BY MIN(ts_us) DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![agent, limit as i64], |r| {
            Ok(TurnUsage {
                agent: r.get(0)?,
                inbox_id: r.get(1)?,
                started_us: r.get(2)?,
                models: r.get(3)?,
                usage: usage_of(r, 4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The aggregate columns [`usage_of`] reads.
const USAGE_COLUMNS: &str = "COUNT(*),
    COALESCE(SUM(prompt_tokens + completion_tokens + cache_read_tokens + cache_write_tokens), 0),
    COALESCE(SUM(cost_usd), 0.0), COUNT(*) - COUNT(cost_usd)";

fn usage_of(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Usage> {
    Ok(Usage {
        calls: r.get::<_, i64>(at)? as u64,
        tokens: r.get::<_, i64>(at + 1)? as u64,
        cost_usd: r.get(at + 2)?,
        unpriced_calls: r.get::<_, i64>(at + 3)? as u64,
    })
}

impl Store {
    /// Every model call of `agent`, oldest first: its tokens as recorded and its cost (`None`
    /// when hive.toml had no price). What `hive bench` reads to show the prompt cache's share.
    pub fn model_calls_of(
        &self,
        agent: &str,
    ) -> anyhow::Result<Vec<(crate::config::Tokens, Option<f64>)>> {
        let db = self.lock();
        let mut stmt = db.prepare(
            "SELECT prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, cost_usd
             FROM model_calls WHERE agent = ?1 ORDER BY ts_us, rowid",
        )?;
        let rows = stmt.query_map(params![agent], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok((
                crate::config::Tokens {
                    input: n(0)?,
                    output: n(1)?,
                    cache_read: n(2)?,
                    cache_write: n(3)?,
                },
                r.get::<_, Option<f64>>(4)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
