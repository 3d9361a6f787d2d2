//! The outbox: posts the core owes and may not lose (a reminder due, an operator's answer, a
//! request's outcome, a crash report).
//!
//! ```text
//! pending ──homeserver took it──► sent
//!    │ ▲
//!    │ └── failed for now: attempts + 1, next_us = now + backoff
//!    └──refused for good (4xx)──► failed
//! ```
//!
//! A row is written in the same sqlite transaction as the change it reports (the reminder marked
//! delivered, the question answered), so the change and the duty to say it happen together; it
//! is marked `sent` only after the homeserver answered. Its txn id is deterministic: a re-send
//! after a crash is the same event to the homeserver.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, now_us};

/// A post to make: into the room the core knows as `room_key`, with `content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub txn_id: String,
    pub room_key: String,
    /// The event content, JSON.
    pub content: String,
}

/// A pending post, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub row: OutboxRow,
    pub attempts: u32,
}

/// Backoff after `attempts` failed sends: 1 s doubling, at most 5 minutes.
pub fn backoff_us(attempts: u32) -> i64 {
    let secs = 1i64 << attempts.min(9);
    secs.min(300) * 1_000_000
}

/// Inserts `row` inside the caller's transaction. A row with the same txn id is kept as it was
/// (the same duty recorded twice is one post). The rows inserted: 0 when the txn id was there.
pub(crate) fn insert(c: &Connection, row: &OutboxRow) -> rusqlite::Result<usize> {
    let now = now_us();
    c.execute(
        "INSERT OR IGNORE INTO outbox (txn_id, room_key, content, created_us, next_us)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![row.txn_id, row.room_key, row.content, now],
    )
}

impl Store {
    pub fn enqueue_post(&self, row: &OutboxRow) -> anyhow::Result<()> {
        insert(&self.lock(), row)?;
        Ok(())
    }

    /// Pending posts due now, oldest first.
    pub fn due_posts(&self, limit: usize) -> anyhow::Result<Vec<OutboxItem>> {
        let c = self.lock();
        let mut st = c.prepare(
            "SELECT id, txn_id, room_key, content, attempts FROM outbox
             WHERE state = 'pending' AND next_us <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![now_us(), limit as i64], |r| {
            Ok(OutboxItem {
                id: r.get(0)?,
                row: OutboxRow {
                    txn_id: r.get(1)?,
                    room_key: r.get(2)?,
                    content: r.get(3)?,
                },
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next pending post is due.
    pub fn next_post_due(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.lock().query_row(
            "SELECT MIN(next_us) FROM outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// The homeserver took post `id` as `event_id` (migration 015 keeps it: a scheduled fire's
    /// event is then found in the agent's queue).
    pub fn post_sent(&self, id: i64, event_id: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "UPDATE outbox SET state = 'sent', sent_us = ?2, event_id = ?3
             WHERE id = ?1 AND state = 'pending'",
            params![id, now_us(), event_id],
        )?;
        Ok(())
    }

    /// A send failed: try again after the backoff (`permanent`: never).
    pub fn post_failed(&self, id: i64, error: &str, permanent: bool) -> anyhow::Result<()> {
        let c = self.lock();
        let attempts: Option<u32> = c
            .query_row("SELECT attempts FROM outbox WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let attempts = attempts.unwrap_or(0) + 1;
        c.execute(
            "UPDATE outbox SET attempts = ?2, error = ?3, next_us = ?4,
                    state = CASE WHEN ?5 THEN 'failed' ELSE state END
             WHERE id = ?1 AND state = 'pending'",
            params![
                id,
                attempts,
                error,
                now_us() + backoff_us(attempts),
                permanent
            ],
        )?;
        Ok(())
    }

    /// Posts not sent yet (for `hive status`).
    pub fn pending_posts(&self) -> anyhow::Result<u64> {
        Ok(self.lock().query_row(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(txn: &str) -> OutboxRow {
        OutboxRow {
            txn_id: txn.into(),
            room_key: "agent:echo".into(),
            content: "{}".into(),
        }
    }

    #[test]
    fn sent_once_retried_after_failure_never_lost() {
        let s = Store::open_in_memory().unwrap();
        s.enqueue_post(&row("hh-a")).unwrap();
        s.enqueue_post(&row("hh-a")).unwrap();
        s.enqueue_post(&row("hh-b")).unwrap();
        let due = s.due_posts(10).unwrap();
        assert_eq!(due.len(), 2, "the same txn id is one post");
        // A failure keeps it, later; a permanent failure ends it.
        s.post_failed(due[0].id, "homeserver away", false).unwrap();
        assert_eq!(s.due_posts(10).unwrap().len(), 1, "backed off");
        assert_eq!(s.pending_posts().unwrap(), 2);
        s.post_sent(due[1].id, "$b").unwrap();
        assert!(
            s.next_post_due().unwrap().unwrap() > now_us(),
            "the failed one, later"
        );
        s.post_failed(due[0].id, "M_TOO_LARGE", true).unwrap();
        assert_eq!(s.pending_posts().unwrap(), 0);
        assert_eq!(s.next_post_due().unwrap(), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cases = [(1, 2), (2, 4), (5, 32), (8, 256), (9, 300), (40, 300)];
        for (attempts, secs) in cases {
            assert_eq!(backoff_us(attempts), secs * 1_000_000, "{attempts}");
        }
    }
}
