//! A turn cancelled by an operator (`!cancel`, `!hive cancel`): its message, and every message
//! the turn pulled (`recv`), are `done` at once, with the cancellation as their `error`, in one
//! sqlite transaction. They are never delivered again, not after a restart either (a restart
//! puts only `inflight` rows back). What the turn already did stays recorded
//! (`tool_effects`, the rooms).

use rusqlite::{OptionalExtension, params};

use super::{Store, now_us};

/// What a cancellation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledTurn {
    /// The turn's own message.
    pub id: i64,
    pub body: String,
    /// When the turn took it (µs since the epoch), if recorded.
    pub delivered_us: Option<i64>,
    /// Messages the turn had pulled, now done with it.
    pub pulled: usize,
}

/// The `error` a cancelled row carries: who cancelled it.
pub fn cancelled_error(by: &str) -> String {
    format!("cancelled by {by}")
}

impl Store {
    /// Ends the turn of message `id` as cancelled by `by` (a Matrix ID): the message, if it is
    /// still in flight, and what the turn pulled become `done` with `error = 'cancelled by
    /// <by>'`. `None` if the message is not in flight (the turn ended meanwhile): then nothing
    /// changes.
    pub fn cancel_turn(
        &self,
        id: i64,
        by: &str,
        model: &str,
    ) -> anyhow::Result<Option<CancelledTurn>> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let row: Option<(String, Option<i64>)> = tx
            .query_row(
                "SELECT body, delivered_us FROM inbox WHERE id = ?1 AND state = 'inflight'",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((body, delivered_us)) = row else {
            return Ok(None);
        };
        let (now, error) = (now_us(), cancelled_error(by));
        tx.execute(
            "UPDATE inbox SET state = 'done', done_us = ?2, error = ?3 WHERE id = ?1 AND state = 'inflight'",
            params![id, now, error],
        )?;
        let pulled = tx.execute(
            "UPDATE inbox SET state = 'done', done_us = ?2, error = ?3 WHERE turn_id = ?1 AND state = 'inflight'",
            params![id, now, error],
        )?;
        // The attempt's stats, with the rows: `hive usage --turns` shows it cancelled.
        tx.execute(
            "INSERT INTO turns (agent, inbox_id, attempt, started_us, ended_us, outcome, model)
             SELECT agent, id, attempts, COALESCE(delivered_us, ?2), ?2, ?3, ?4
             FROM inbox WHERE id = ?1",
            params![id, now, super::TurnOutcome::Cancelled.as_str(), model],
        )?;
        tx.commit()?;
        Ok(Some(CancelledTurn {
            id,
            body,
            delivered_us,
            pulled,
        }))
    }

    /// The `error` recorded on message `id` (a cancellation names who cancelled it).
    pub fn inbox_error(&self, id: i64) -> anyhow::Result<Option<String>> {
        let conn = self.lock();
        Ok(conn
            .query_row("SELECT error FROM inbox WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Enqueue;

    fn enqueue(s: &Store, event: &str, body: &str) {
        s.ingest(
            &[(event.to_owned(), "!r:hs".to_owned())],
            &[Enqueue {
                event_id: event.to_owned(),
                room_id: "!r:hs".into(),
                sender: "@op:hs".into(),
                body: body.into(),
                origin_ts: 0,
                agents: vec!["argus".into()],
                hive_event: None,
                peer: None,
            }],
            0,
        )
        .unwrap();
    }

    /// A cancelled turn is done with its reason and is not delivered again, not after a
    /// restart (`release_all_inflight`) either; a later message still is. A turn that is over
    /// is not cancelled.
    #[test]
    fn a_cancelled_turn_is_done_for_good() {
        let s = Store::open_in_memory().unwrap();
        enqueue(&s, "$a", "sleep");
        enqueue(&s, "$b", "next");
        let (item, _) = s.take_next("argus", 5).unwrap();
        let item = item.unwrap();
        let got = s.cancel_turn(item.id, "@op:hs", "m").unwrap().unwrap();
        assert_eq!(
            (got.id, got.body.as_str(), got.pulled),
            (item.id, "sleep", 0)
        );
        assert!(got.delivered_us.is_some());
        assert_eq!(
            s.inbox_error(item.id).unwrap().as_deref(),
            Some("cancelled by @op:hs")
        );
        assert_eq!(
            s.cancel_turn(item.id, "@op:hs", "m").unwrap(),
            None,
            "only once"
        );
        s.release(item.id).unwrap();
        s.release_all_inflight().unwrap();
        let (next, _) = s.take_next("argus", 5).unwrap();
        assert_eq!(next.unwrap().body, "next");
        s.ack(item.id).unwrap();
        let c = s.counts("argus").unwrap();
        assert_eq!((c.done, c.inflight, c.pending), (1, 1, 0));
    }

    /// What a turn pulled is cancelled with it; a pull stops before a control message, which
    /// stays pending for a turn of its own.
    #[test]
    fn pulled_messages_are_cancelled_with_the_turn_and_control_messages_are_not_pulled() {
        let s = Store::open_in_memory().unwrap();
        for (event, body) in [
            ("$t", "work"),
            ("$p", "more"),
            ("$c", " !compact "),
            ("$q", "later"),
        ] {
            enqueue(&s, event, body);
        }
        let turn = s.take_next("argus", 5).unwrap().0.unwrap();
        let limits = crate::store::PullLimits {
            max: 8,
            max_bytes: 1 << 20,
            max_attempts: 5,
        };
        let crate::store::Pull::Pulled { taken, waiting, .. } =
            s.pull_into_turn("argus", turn.id, 1, &limits).unwrap()
        else {
            panic!("the turn is in flight");
        };
        let bodies: Vec<&str> = taken.iter().map(|t| t.body.as_str()).collect();
        assert_eq!((bodies, waiting), (vec!["more"], 2));
        let got = s.cancel_turn(turn.id, "@op:hs", "m").unwrap().unwrap();
        assert_eq!(got.pulled, 1);
        assert_eq!(
            s.inbox_error(taken[0].id).unwrap().as_deref(),
            Some("cancelled by @op:hs")
        );
        s.release_all_inflight().unwrap();
        let next = s.take_next("argus", 5).unwrap().0.unwrap();
        assert_eq!(
            next.body, " !compact ",
            "the control message is next, in order"
        );
    }
}
