//! Messages a running turn pulls from its own agent's queue (the `recv` tool): they are
//! delivered by that turn, exactly once across crashes.
//!
//! ```text
//! pending ──pull_into_turn(turn)──► inflight, turn_id = turn, attempts + 1
//!                                      │
//!      ┌───────────────────────────────┤
//!      │ ack(turn): done, in the same   │ release(turn), fail(turn), a restart
//!      ▼ transaction as the turn's own  ▼ (release_all_inflight): pending, turn_id NULL
//!    done                             pending (delivered again, in order)
//!      │                                ▲
//!      └── put_back(turn, taken): the ───┘ answer carrying them was never written (its
//!          caller hung up), so exactly the rows that pull took, inflight or done, go back
//! ```
//!
//! A pull is one transaction: the turn's own message must still be in flight (a turn that is
//! over pulls nothing), and the rows taken are marked with it. Which rows are taken is
//! [`pull_step`]'s decision, the same order and the same dead-lettering as [`Store::take_next`]:
//! the oldest pending first, and a message that already used `max_attempts` deliveries is
//! dead-lettered instead of delivered again (pulled deliveries count as attempts: a message that
//! crashes every turn that pulls it ends as a dead letter, as one that crashes its own turn).
//! Every message in an agent's queue was routed to it (`c0re/routing.rs` at ingest), so a pull
//! never sees what the agent would not get as a turn.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{InboxItem, Store, now_us};

/// How much one pull may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// Messages, at most.
    pub max: usize,
    /// Bytes of bodies and event data, at most (the first message is taken whatever its size: a
    /// Matrix event is at most 64 KiB).
    pub max_bytes: usize,
    /// Deliveries a message may have; one that used them is dead-lettered.
    pub max_attempts: u32,
}

/// What a pull does with the next oldest pending message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStep {
    /// Deliver it in this turn.
    Take,
    /// It used its deliveries: dead-letter it and look at the next.
    DeadLetter,
    /// Leave it and everything after it for later.
    Stop,
}

/// The rule for one pending message (`attempts` deliveries so far, `size` bytes), after
/// `taken` messages of `bytes` bytes were taken: stop at `max` messages; dead-letter a message
/// out of attempts; stop before the bytes would pass `max_bytes` (unless nothing was taken yet);
/// else take it. A pure function; the table is in the tests.
pub fn pull_step(
    limits: &PullLimits,
    taken: usize,
    bytes: usize,
    attempts: u32,
    size: usize,
) -> PullStep {
    if taken >= limits.max {
        PullStep::Stop
    } else if attempts >= limits.max_attempts {
        PullStep::DeadLetter
    } else if taken > 0 && bytes.saturating_add(size) > limits.max_bytes {
        PullStep::Stop
    } else {
        PullStep::Take
    }
}

/// What a pull found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    /// The turn's own message is not in flight (the turn ended, or it is no turn): nothing taken.
    TurnOver,
    /// The messages now part of the turn (oldest first), those dead-lettered on the way, and how
    /// many stay pending.
    Pulled {
        taken: Vec<InboxItem>,
        dead: Vec<InboxItem>,
        waiting: u64,
    },
}

/// Pending rows looked at beyond `max` in one pull (dead letters on the way are skipped).
const SLACK: usize = 32;

fn item(r: &Row<'_>) -> rusqlite::Result<InboxItem> {
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
}

impl Store {
    /// Which delivery of message `turn` is running as a turn of `agent` (`None`: no such turn
    /// in flight). A pull names it, so a pull that outlived its attempt cannot reach the next.
    pub fn turn_attempt(&self, agent: &str, turn: i64) -> anyhow::Result<Option<u32>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT attempts FROM inbox WHERE id = ?1 AND agent = ?2 AND state = 'inflight' AND turn_id IS NULL",
                params![turn, agent],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Moves `agent`'s oldest pending messages into the turn handling delivery `attempt` of
    /// message `turn`, under `limits` ([`pull_step`]), in one transaction. [`Pull::TurnOver`]
    /// when that is not a turn of `agent` in flight (it ended, or a later delivery runs now), or
    /// `agent` is kept (destroyed: it takes nothing more, as `take_next` gives it nothing).
    pub fn pull_into_turn(
        &self,
        agent: &str,
        turn: i64,
        attempt: u32,
        limits: &PullLimits,
    ) -> anyhow::Result<Pull> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let live = tx
            .query_row(
                "SELECT 1 FROM inbox WHERE id = ?1 AND agent = ?2 AND state = 'inflight' AND turn_id IS NULL AND attempts = ?3
                   AND NOT EXISTS (SELECT 1 FROM kept_agents WHERE name = ?2)",
                params![turn, agent, attempt],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !live {
            return Ok(Pull::TurnOver);
        }
        let candidates: Vec<InboxItem> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, agent, event_id, room_id, sender, body, origin_ts, attempts, hive_event
                 FROM inbox WHERE agent = ?1 AND state = 'pending' ORDER BY id LIMIT ?2",
            )?;
            let limit = i64::try_from(limits.max.saturating_add(SLACK)).unwrap_or(i64::MAX);
            stmt.query_map(params![agent, limit], item)?
                .collect::<Result<_, _>>()?
        };
        let now = now_us();
        let (mut taken, mut dead, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for mut c in candidates {
            // What may be an operator's control message (`!compact`) is handled as its own
            // turn, in order, never read by a model: a pull stops before it.
            if crate::wire::protocol::Control::of_body(&c.body).is_some() {
                break;
            }
            let size = c.body.len() + c.hive_event.as_ref().map_or(0, String::len);
            match pull_step(limits, taken.len(), bytes, c.attempts, size) {
                PullStep::Stop => break,
                PullStep::DeadLetter => {
                    tx.execute(
                        "UPDATE inbox SET state = 'dead', done_us = ?2, error = ?3 WHERE id = ?1 AND state = 'pending'",
                        params![c.id, now, format!("no ack after {} deliveries", c.attempts)],
                    )?;
                    dead.push(c);
                }
                PullStep::Take => {
                    c.attempts += 1;
                    tx.execute(
                        "UPDATE inbox SET state = 'inflight', attempts = ?2, delivered_us = ?3, turn_id = ?4
                         WHERE id = ?1 AND state = 'pending'",
                        params![c.id, c.attempts, now, turn],
                    )?;
                    bytes += size;
                    taken.push(c);
                }
            }
        }
        let waiting = tx.query_row(
            "SELECT COUNT(*) FROM inbox WHERE agent = ?1 AND state = 'pending'",
            [agent],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(Pull::Pulled {
            taken,
            dead,
            waiting,
        })
    }

    /// The newest message the finished turn of `turn` pulled from `room`, if any (for its read
    /// receipt: the turn read up to it).
    pub fn last_pulled_done(&self, turn: i64, room: &str) -> anyhow::Result<Option<InboxItem>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT id, agent, event_id, room_id, sender, body, origin_ts, attempts, hive_event
                 FROM inbox WHERE turn_id = ?1 AND room_id = ?2 AND state = 'done'
                 ORDER BY id DESC LIMIT 1",
                params![turn, room],
                item,
            )
            .optional()?)
    }

    /// A `recv` answer that never reached its caller (its connection broke before the answer
    /// was written): exactly the rows that pull took (`taken`, as [`Pull::Pulled`] gave them)
    /// are pending again, `turn_id` NULL, in one transaction, whatever became of the turn
    /// meanwhile: an ack that came first marked them done with it, but no brain saw them. A row
    /// is matched by the delivery the pull made (`turn_id` and `attempts`), so a put-back that
    /// comes late cannot take a row a later pull or turn holds. Their attempts stay counted, as
    /// [`Store::release`] leaves them. Returns how many went back.
    pub fn put_back(&self, turn: i64, taken: &[InboxItem]) -> anyhow::Result<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut back = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE inbox SET state = 'pending', turn_id = NULL, done_us = NULL
                 WHERE id = ?1 AND turn_id = ?2 AND attempts = ?3 AND state IN ('inflight', 'done')",
            )?;
            for t in taken {
                back += stmt.execute(params![t.id, turn, t.attempts])?;
            }
        }
        tx.commit()?;
        Ok(back)
    }

    /// The ids of the messages the turn handling `turn` pulled and still holds, oldest first.
    pub fn pulled_by(&self, turn: i64) -> anyhow::Result<Vec<i64>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM inbox WHERE turn_id = ?1 AND state = 'inflight' ORDER BY id",
        )?;
        let ids = stmt.query_map([turn], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }
}

/// Within the transaction that acks `turn`: what it pulled is done with it.
pub(super) fn pulled_done(tx: &Transaction<'_>, turn: i64, now: i64) -> rusqlite::Result<usize> {
    tx.execute(
        "UPDATE inbox SET state = 'done', done_us = ?2 WHERE turn_id = ?1 AND state = 'inflight'",
        params![turn, now],
    )
}

/// Within the transaction that ends `turn` without an ack: what it pulled is pending again,
/// free for any later turn.
pub(super) fn pulled_back(tx: &Transaction<'_>, turn: i64) -> rusqlite::Result<usize> {
    tx.execute(
        "UPDATE inbox SET state = 'pending', turn_id = NULL WHERE turn_id = ?1 AND state = 'inflight'",
        [turn],
    )
}

#[cfg(test)]
mod tests;
