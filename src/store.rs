//! hive-c0re's durable state: transaction dedupe, the delivery queue, room ids, agent state.
//!
//! One sqlite file in WAL mode. `synchronous = NORMAL` is durable against a process crash
//! (SIGKILL), which is the failure the delivery promise is about; numbered migrations are
//! applied in order and recorded in `user_version`.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

mod agent_state;
mod approvals;
mod cancel;
mod console;
mod forge_deliveries;
mod forge_threads;
mod kept;
mod lifecycle;
mod migrations;
use migrations::MIGRATIONS;
mod outbox;
mod peering;
mod questions;
mod recv;
mod schedules;
mod startup;
mod timing;
mod tools;
mod turns;
mod web;
mod web_session;
pub use agent_state::{AgentState, UnknownState};
pub use approvals::{
    Approval, ApprovalKind, ApprovalState, Audit, AuditEntry, Ballot, NewApproval, Verdict,
    VoteOutcome, reverts, tally,
};
pub use cancel::{CancelCommand, CancelOutcome, CancelledTurn, cancelled_error};
pub use console::StatusRecord;
pub use forge_deliveries::{PendingDelivery, Recorded};
pub use kept::{Confirmation, KeptAgent};
pub use lifecycle::{Crash, InflightTurn, UnknownWanted, Wanted};
pub use outbox::{OutboxItem, OutboxRow, backoff_us as outbox_backoff_us};
pub use peering::{PeerGap, PeerSeq, PeerStatus, Unposted};
pub use questions::{Question, QuestionState};
pub use recv::{Pull, PullLimits, PullStep, pull_step};
pub use schedules::{Delivery, DuplicatePost, Queued, ScheduleRow};
pub use startup::IdentityMark;
pub use tools::{DayUsage, Reminder, TurnUsage, Usage};
pub use turns::{AgentUsage, TurnOutcome, TurnStat, UnknownOutcome};
pub use web_session::{WebLink, WebSession};

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A timestamp in microseconds as UTC, `YYYY-MM-DD HH:MM:SSZ` (days to a civil date by Howard
/// Hinnant's algorithm; valid for every date the store can hold).
pub fn utc(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// An event routed to one or more agents, ready to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub body: String,
    pub origin_ts: i64,
    pub agents: Vec<String>,
    /// The core's own event (`org.hyperhive.event`), only for messages the core itself sent.
    pub hive_event: Option<String>,
    /// A peer's numbered message: released to `agents` in its stream's order
    /// (`store/peering.rs`), not at once.
    pub peer: Option<PeerSeq>,
}

/// One queued message for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub id: i64,
    pub agent: String,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub body: String,
    pub origin_ts: i64,
    pub attempts: u32,
    /// The core's own event, JSON (see [`Enqueue::hive_event`]).
    pub hive_event: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueCounts {
    pub pending: u64,
    pub inflight: u64,
    pub done: u64,
    pub dead: u64,
}

impl Store {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        // The core's database is the core's alone (sqlite gives its -wal and -shm files the
        // database file's mode).
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => std::fs::File::open(path),
                    _ => Err(e),
                })
                .with_context(|| format!("cannot create database {}", path.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        Self::init(conn).with_context(|| format!("cannot prepare database {}", path.display()))
    }

    pub fn open_in_memory() -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> anyhow::Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {name} failed"))?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave sqlite inconsistent (transactions roll
        // back on drop), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `seen` event ids and enqueues the routed ones, all in one transaction.
    /// Events already seen are skipped entirely. Returns the agents that got new messages.
    pub fn ingest(
        &self,
        seen: &[(String, String)],
        routed: &[Enqueue],
        received_us: i64,
    ) -> anyhow::Result<Vec<String>> {
        Ok(self.ingest_events(seen, routed, received_us)?.0)
    }

    /// [`Self::ingest`], also returning the event ids of `seen` that were seen before: nothing
    /// was recorded or routed for them.
    pub fn ingest_events(
        &self,
        seen: &[(String, String)],
        routed: &[Enqueue],
        received_us: i64,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut fresh = std::collections::HashSet::new();
        let mut seen_before = Vec::new();
        {
            let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO seen_events (event_id, room_id, received_us) VALUES (?1, ?2, ?3)")?;
            for (event_id, room_id) in seen {
                if ins.execute(params![event_id, room_id, received_us])? == 1 {
                    fresh.insert(event_id.as_str());
                } else {
                    seen_before.push(event_id.clone());
                }
            }
        }
        let mut woken = Vec::new();
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO inbox (agent, event_id, room_id, sender, body, origin_ts, enqueued_us, hive_event) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in routed
                .iter()
                .filter(|e| fresh.contains(e.event_id.as_str()) && e.peer.is_none())
            {
                for agent in &e.agents {
                    if ins.execute(params![
                        agent,
                        e.event_id,
                        e.room_id,
                        e.sender,
                        e.body,
                        e.origin_ts,
                        received_us,
                        e.hive_event
                    ])? == 1
                        && !woken.contains(agent)
                    {
                        woken.push(agent.clone());
                    }
                }
            }
        }
        // A peer's numbered message goes through its stream even if its event id was seen: its
        // number is its dedupe (store/peering.rs), so a read-back of history is never lost.
        let numbered: Vec<&Enqueue> = routed.iter().filter(|e| e.peer.is_some()).collect();
        if !numbered.is_empty() {
            let (released, _) = peering::hold_and_release(&tx, &numbered, received_us)?;
            for a in released {
                if !woken.contains(&a) {
                    woken.push(a);
                }
            }
        }
        tx.commit()?;
        Ok((woken, seen_before))
    }

    /// Whether an event id was already accepted.
    pub fn seen(&self, event_id: &str) -> anyhow::Result<bool> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT 1 FROM seen_events WHERE event_id = ?1",
                [event_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn received_us(&self, event_id: &str) -> anyhow::Result<Option<i64>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT received_us FROM seen_events WHERE event_id = ?1",
                [event_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The oldest undelivered message of `agent`, moved to `inflight` with one more attempt.
    /// Messages that already used `max_attempts` are dead-lettered and returned in `dead`.
    /// Nothing is taken for a kept agent: a message ingested between its destroy's commit point
    /// and its leaving the registry is never delivered to the departing harness.
    pub fn take_next(
        &self,
        agent: &str,
        max_attempts: u32,
    ) -> anyhow::Result<(Option<InboxItem>, Vec<InboxItem>)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut dead = Vec::new();
        let item = loop {
            let row = tx
                .query_row(
                    "SELECT id, agent, event_id, room_id, sender, body, origin_ts, attempts, hive_event
                     FROM inbox WHERE agent = ?1 AND state = 'pending'
                       AND NOT EXISTS (SELECT 1 FROM kept_agents WHERE name = ?1)
                     ORDER BY id LIMIT 1",
                    [agent],
                    |r| {
                        Ok(InboxItem {
                            id: r.get(0)?,
                            agent: r.get(1)?,
                            event_id: r.get(2)?,
                            room_id: r.get(3)?,
                            sender: r.get(4)?,
                            body: r.get(5)?,
                            origin_ts: r.get(6)?,
                            attempts: r.get(7)?,
                            hive_event: r.get(8)?,
                        })
                    },
                )
                .optional()?;
            let Some(mut item) = row else { break None };
            if item.attempts >= max_attempts {
                tx.execute(
                    "UPDATE inbox SET state = 'dead', done_us = ?2, error = ?3 WHERE id = ?1",
                    params![
                        item.id,
                        now_us(),
                        format!("no ack after {} deliveries", item.attempts)
                    ],
                )?;
                dead.push(item);
                continue;
            }
            item.attempts += 1;
            tx.execute(
                "UPDATE inbox SET state = 'inflight', attempts = ?2, delivered_us = ?3 WHERE id = ?1",
                params![item.id, item.attempts, now_us()],
            )?;
            break Some(item);
        };
        tx.commit()?;
        Ok((item, dead))
    }

    /// The harness finished the turn: the message is done, and the messages the turn pulled
    /// (`recv`) with it, in one transaction. Idempotent.
    pub fn ack(&self, id: i64) -> anyhow::Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let now = now_us();
        let acked = tx.execute(
            "UPDATE inbox SET state = 'done', done_us = ?2 WHERE id = ?1 AND state = 'inflight'",
            params![id, now],
        )? == 1;
        if acked {
            recv::pulled_done(&tx, id, now)?;
        }
        tx.commit()?;
        Ok(acked)
    }

    /// The turn failed for good (the brain refused it): dead-letter with the reason. What the
    /// turn pulled is pending again: a message is not dead for another one's failure.
    pub fn fail(&self, id: i64, reason: &str) -> anyhow::Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let failed = tx.execute(
            "UPDATE inbox SET state = 'dead', done_us = ?2, error = ?3 WHERE id = ?1 AND state = 'inflight'",
            params![id, now_us(), reason],
        )? == 1;
        recv::pulled_back(&tx, id)?;
        tx.commit()?;
        Ok(failed)
    }

    /// The harness went away mid-turn: the message goes back to the head of its queue, and
    /// what the turn pulled goes back with it.
    pub fn release(&self, id: i64) -> anyhow::Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE inbox SET state = 'pending' WHERE id = ?1 AND state = 'inflight'",
            [id],
        )?;
        recv::pulled_back(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    /// At start-up: every turn that was running when the core stopped is pending again.
    /// Puts queue `agent`'s in-flight messages back to pending: for a loop of the core's own
    /// (`!c0re`) that starts again after a panic, when no run of it can hold one any more.
    pub fn release_inflight(&self, agent: &str) -> anyhow::Result<usize> {
        let conn = self.lock();
        Ok(conn.execute(
            "UPDATE inbox SET state = 'pending', turn_id = NULL WHERE state = 'inflight' AND agent = ?1",
            [agent],
        )?)
    }

    pub fn release_all_inflight(&self) -> anyhow::Result<usize> {
        let conn = self.lock();
        Ok(conn.execute(
            "UPDATE inbox SET state = 'pending', turn_id = NULL WHERE state = 'inflight'",
            [],
        )?)
    }

    pub fn counts(&self, agent: &str) -> anyhow::Result<QueueCounts> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT state, COUNT(*) FROM inbox WHERE agent = ?1 GROUP BY state")?;
        let mut c = QueueCounts::default();
        let rows = stmt.query_map([agent], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            match state.as_str() {
                "pending" => c.pending = n,
                "inflight" => c.inflight = n,
                "done" => c.done = n,
                "dead" => c.dead = n,
                other => anyhow::bail!("unknown inbox state {other:?} in the database"),
            }
        }
        Ok(c)
    }

    pub fn has_pending(&self, agent: &str) -> anyhow::Result<bool> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT 1 FROM inbox WHERE agent = ?1 AND state = 'pending' LIMIT 1",
                [agent],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Whether a message later than `id` waits for `agent` in `room`.
    pub fn has_later_pending(&self, agent: &str, room: &str, id: i64) -> anyhow::Result<bool> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT 1 FROM inbox WHERE agent = ?1 AND state = 'pending' AND room_id = ?2 AND id > ?3 LIMIT 1",
                rusqlite::params![agent, room, id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn inbox_item(&self, id: i64) -> anyhow::Result<Option<(String, u32)>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT state, attempts FROM inbox WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn set_room(&self, key: &str, alias: &str, room_id: &str) -> anyhow::Result<()> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO rooms (key, alias, room_id) VALUES (?1, ?2, ?3) ON CONFLICT(key) DO UPDATE SET alias = ?2, room_id = ?3",
            params![key, alias, room_id],
        )?;
        Ok(())
    }

    pub fn rooms(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT key, alias, room_id FROM rooms ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_agent_state(
        &self,
        name: &str,
        state: AgentState,
        pid: Option<u32>,
    ) -> anyhow::Result<()> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO agents (name, state, pid, updated_us) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET state = ?2, pid = ?3, updated_us = ?4",
            params![name, state.as_str(), pid, now_us()],
        )?;
        Ok(())
    }

    /// Agent `name`'s own uid: the one recorded, else the next free one from `base` (recorded).
    /// `taken`: uids the system already uses (a user in /etc/passwd), skipped.
    pub fn agent_uid(
        &self,
        name: &str,
        base: u32,
        taken: impl Fn(u32) -> bool,
    ) -> anyhow::Result<u32> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let known: Option<u32> = tx
            .query_row("SELECT uid FROM agent_uids WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let uid = match known {
            Some(u) => u,
            None => {
                let max: Option<u32> =
                    tx.query_row("SELECT MAX(uid) FROM agent_uids", [], |r| r.get(0))?;
                let mut uid = max.map_or(base, |m| m.max(base - 1) + 1);
                while taken(uid) {
                    uid = uid.checked_add(1).context("no uid left")?;
                }
                tx.execute(
                    "INSERT INTO agent_uids (name, uid) VALUES (?1, ?2)",
                    params![name, uid],
                )?;
                uid
            }
        };
        tx.commit()?;
        Ok(uid)
    }

    pub fn agent_states(&self) -> anyhow::Result<Vec<(String, String, Option<u32>)>> {
        let conn = self.lock();
        // A kept agent shows as kept, whatever its harness said last.
        let mut stmt = conn.prepare(
            "SELECT a.name, CASE WHEN k.name IS NULL THEN a.state ELSE 'kept' END, a.pid
             FROM agents a LEFT JOIN kept_agents k ON k.name = a.name ORDER BY a.name",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records `notice` as the last brain problem posted for `agent`. Returns false when the same
    /// notice was already posted (so it is said once, not on every restart).
    pub fn set_brain_notice(&self, agent: &str, notice: Option<&str>) -> anyhow::Result<bool> {
        let conn = self.lock();
        let old: Option<Option<String>> = conn
            .query_row(
                "SELECT brain_notice FROM agents WHERE name = ?1",
                [agent],
                |r| r.get(0),
            )
            .optional()?;
        if old.as_ref().and_then(|o| o.as_deref()) == notice {
            return Ok(false);
        }
        conn.execute(
            "INSERT INTO agents (name, state, brain_notice, updated_us) VALUES (?1, 'unknown', ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET brain_notice = ?2",
            params![agent, notice, now_us()],
        )?;
        Ok(true)
    }

    /// Forgets what is older than `before_us` and no longer needed: seen event ids, the bodies
    /// of delivered messages (the rows stay, for the counts), delivered reminders, sent posts,
    /// recorded turn effects. The audit, usage, approvals and dead letters are kept. Returns the
    /// rows touched.
    pub fn prune(&self, before_us: i64) -> anyhow::Result<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut n = 0;
        for sql in [
            "DELETE FROM seen_events WHERE received_us < ?1",
            "UPDATE inbox SET body = '', hive_event = NULL
             WHERE state = 'done' AND done_us < ?1 AND (body != '' OR hive_event IS NOT NULL)",
            "DELETE FROM reminders WHERE delivered = 1 AND due_us < ?1",
            "DELETE FROM outbox WHERE state = 'sent' AND sent_us < ?1",
            // Only a finished message's: a message still waiting (an agent stopped for weeks)
            // must not re-run effects it already had.
            "DELETE FROM tool_effects WHERE ts_us < ?1
             AND inbox_id IN (SELECT id FROM inbox WHERE state IN ('done', 'dead'))",
            "DELETE FROM turns WHERE ended_us < ?1",
            "DELETE FROM cancels WHERE ts_us < ?1",
        ] {
            n += tx.execute(sql, [before_us])?;
        }
        tx.commit()?;
        Ok(n)
    }

    pub fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        let conn = self.lock();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let conn = self.lock();
        conn.execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2", params![key, value])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_521_599_000_000), "2026-11-24 11:59:59Z");
        assert_eq!(utc(-1_000_000), "1969-12-31 23:59:59Z");
    }

    fn ev(id: &str, agents: &[&str]) -> Enqueue {
        Enqueue {
            event_id: id.into(),
            room_id: "!r:x".into(),
            sender: "@op:x".into(),
            body: format!("body of {id}"),
            origin_ts: 1,
            agents: agents.iter().map(|s| s.to_string()).collect(),
            hive_event: None,
            peer: None,
        }
    }

    fn ingest(s: &Store, evs: &[Enqueue]) -> Vec<String> {
        let seen: Vec<_> = evs
            .iter()
            .map(|e| (e.event_id.clone(), e.room_id.clone()))
            .collect();
        s.ingest(&seen, evs, now_us()).unwrap()
    }

    #[test]
    fn dedupes_by_event_id_and_keeps_order() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(
            ingest(&s, &[ev("$1", &["a"]), ev("$2", &["a", "b"])]),
            vec!["a", "b"]
        );
        // The same events again (a replayed transaction, or a txn id reused after a restart),
        // named as seen before, beside a new one.
        let again = [ev("$1", &["a"]), ev("$3", &["c"]), ev("$2", &["a", "b"])];
        let seen: Vec<_> = again
            .iter()
            .map(|e| (e.event_id.clone(), e.room_id.clone()))
            .collect();
        assert_eq!(
            s.ingest_events(&seen, &again, now_us()).unwrap(),
            (vec!["c".to_owned()], vec!["$1".to_owned(), "$2".to_owned()])
        );
        assert!(ingest(&s, &[ev("$1", &["a"]), ev("$2", &["a", "b"])]).is_empty());
        let (first, _) = s.take_next("a", 3).unwrap();
        let first = first.unwrap();
        assert_eq!(first.event_id, "$1");
        assert_eq!(first.attempts, 1);
        // One turn at a time: nothing else is pending-and-older; the next take gives $2.
        assert!(s.ack(first.id).unwrap());
        assert!(!s.ack(first.id).unwrap(), "a second ack changes nothing");
        assert_eq!(s.take_next("a", 3).unwrap().0.unwrap().event_id, "$2");
        assert_eq!(
            s.counts("a").unwrap(),
            QueueCounts {
                pending: 0,
                inflight: 1,
                done: 1,
                dead: 0
            }
        );
        assert_eq!(s.counts("b").unwrap().pending, 1);
    }

    #[test]
    fn redelivers_then_dead_letters() {
        let s = Store::open_in_memory().unwrap();
        ingest(&s, &[ev("$1", &["a"]), ev("$2", &["a"])]);
        for attempt in 1..=2 {
            let item = s.take_next("a", 2).unwrap().0.unwrap();
            assert_eq!((item.event_id.as_str(), item.attempts), ("$1", attempt));
            s.release(item.id).unwrap();
        }
        let (next, dead) = s.take_next("a", 2).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event_id, "$1");
        assert_eq!(next.unwrap().event_id, "$2");
        assert_eq!(s.counts("a").unwrap().dead, 1);
    }

    #[test]
    fn delivery_times_of_messages_and_core_events() {
        let s = Store::open_in_memory().unwrap();
        let before = now_us();
        let mut crash = ev("$crash", &["m"]);
        crash.hive_event = Some(r#"{"kind":"container_crash","agent":"w"}"#.into());
        ingest(&s, &[ev("$plain", &["m"]), crash]);
        // Nothing is delivered yet.
        assert_eq!(s.delivered_us("$plain").unwrap(), None);
        assert_eq!(
            s.event_delivered_since("m", "container_crash", before)
                .unwrap(),
            None
        );
        let first = s.take_next("m", 3).unwrap().0.unwrap();
        assert_eq!(first.event_id, "$plain");
        assert!(s.delivered_us("$plain").unwrap().is_some());
        s.ack(first.id).unwrap();
        s.take_next("m", 3).unwrap().0.unwrap();
        let at = s
            .event_delivered_since("m", "container_crash", before)
            .unwrap()
            .expect("the crash report was delivered");
        assert!(at >= before);
        // Another kind, another agent, or a later start finds nothing.
        assert_eq!(
            s.event_delivered_since("m", "dead_letter", before).unwrap(),
            None
        );
        assert_eq!(
            s.event_delivered_since("x", "container_crash", before)
                .unwrap(),
            None
        );
        assert_eq!(
            s.event_delivered_since("m", "container_crash", now_us() + 1)
                .unwrap(),
            None
        );
    }

    #[test]
    fn restart_releases_inflight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c0re.db");
        {
            let s = Store::open(&path).unwrap();
            ingest(&s, &[ev("$1", &["a"])]);
            s.take_next("a", 3).unwrap().0.unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.release_all_inflight().unwrap(), 1);
        let again = s.take_next("a", 3).unwrap().0.unwrap();
        assert_eq!((again.event_id.as_str(), again.attempts), ("$1", 2));
        assert!(s.seen("$1").unwrap());
    }

    #[test]
    fn a_restarted_loop_gets_its_queue_back_in_order() {
        let s = Store::open_in_memory().unwrap();
        ingest(
            &s,
            &[ev("$x", &["!c0re"]), ev("$y", &["!c0re"]), ev("$z", &["a"])],
        );
        let first = s.take_next("!c0re", 3).unwrap().0.unwrap();
        assert_eq!(first.event_id, "$x");
        s.take_next("a", 3).unwrap().0.unwrap();
        // The run holding $x is gone: $x comes back first, and an agent's turn is untouched.
        assert_eq!(s.release_inflight("!c0re").unwrap(), 1);
        let again = s.take_next("!c0re", 3).unwrap().0.unwrap();
        assert_eq!((again.event_id.as_str(), again.attempts), ("$x", 2));
        assert_eq!(s.release_inflight("!c0re").unwrap(), 1);
        assert_eq!(s.counts("a").unwrap().inflight, 1);
    }

    #[test]
    fn agent_uids_are_stable_and_distinct() {
        let s = Store::open_in_memory().unwrap();
        let free = |_| false;
        assert_eq!(s.agent_uid("a", 600_000, free).unwrap(), 600_000);
        assert_eq!(s.agent_uid("b", 600_000, free).unwrap(), 600_001);
        assert_eq!(s.agent_uid("a", 600_000, free).unwrap(), 600_000, "stable");
        assert_eq!(
            s.agent_uid("c", 700_000, free).unwrap(),
            700_000,
            "a raised base"
        );
        // A uid the system uses is skipped.
        assert_eq!(
            s.agent_uid("d", 700_000, |u| u == 700_001).unwrap(),
            700_002
        );
    }

    #[test]
    fn prune_forgets_only_the_old_and_done() {
        let s = Store::open_in_memory().unwrap();
        ingest(&s, &[ev("$old", &["a"]), ev("$new", &["a"])]);
        let old = s.take_next("a", 3).unwrap().0.unwrap();
        s.ack(old.id).unwrap();
        let later = now_us() + 1_000_000;
        assert_eq!(
            s.prune(later).unwrap(),
            3,
            "two seen ids, one delivered body"
        );
        assert!(!s.seen("$old").unwrap());
        // The pending message is untouched, body and all; the counts are kept.
        let next = s.take_next("a", 3).unwrap().0.unwrap();
        assert_eq!(next.body, "body of $new");
        assert_eq!(s.counts("a").unwrap().done, 1);
        assert_eq!(s.prune(0).unwrap(), 0, "nothing before the epoch");
    }

    #[test]
    fn brain_notice_said_once() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.set_brain_notice("a", Some("no key")).unwrap());
        assert!(!s.set_brain_notice("a", Some("no key")).unwrap());
        assert!(s.set_brain_notice("a", None).unwrap());
        assert!(s.set_brain_notice("a", Some("no key")).unwrap());
    }
}
