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

/// The `!cancel` (or `!hive cancel`) a cancellation carries out: its event, and when the
/// operator sent it (the event's `origin_server_ts`, ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelCommand<'a> {
    pub event_id: &'a str,
    pub origin_ts: i64,
}

/// What [`Store::cancel_turn`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The turn is cancelled.
    Cancelled(CancelledTurn),
    /// The message is not in flight (the turn ended meanwhile): nothing changed.
    NotInFlight,
    /// The turn was handed out after the command was sent: the operator cannot have meant it
    /// (the turn they saw ended meanwhile, or the command waited for a restart of the core).
    StartedAfter,
    /// This command was carried out already (it is delivered again): it cancelled the turn of
    /// message `inbox_id` (`body`, unless pruned), and cancels nothing now.
    AlreadyDone { inbox_id: i64, body: String },
}

/// Whether a command sent at `origin_ts` (ms) may cancel a turn handed out at `delivered_us`
/// (µs): only one that started before it. A turn with no recorded start is not cancelled.
pub fn started_before(delivered_us: Option<i64>, origin_ts: i64) -> bool {
    delivered_us.is_some_and(|d| d < origin_ts.saturating_mul(1_000))
}

/// The `error` a cancelled row carries: who cancelled it.
pub fn cancelled_error(by: &str) -> String {
    format!("cancelled by {by}")
}

/// What the command `event_id` did, if it was carried out already.
fn carried_out(
    conn: &rusqlite::Connection,
    event_id: &str,
) -> rusqlite::Result<Option<CancelOutcome>> {
    let done: Option<(i64, Option<String>)> = conn
        .query_row(
            "SELECT c.inbox_id, i.body FROM cancels c LEFT JOIN inbox i ON i.id = c.inbox_id
             WHERE c.command_event = ?1",
            [event_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(done.map(|(inbox_id, body)| CancelOutcome::AlreadyDone {
        inbox_id,
        body: body.unwrap_or_default(),
    }))
}

impl Store {
    /// Carries out `command`, from `by` (a Matrix ID), on the turn of message `id`: if the
    /// message is still in flight and was handed out before the command was sent, it and what
    /// the turn pulled become `done` with `error = 'cancelled by <by>'`, the attempt is recorded
    /// `cancelled` (with `model`), and the command is remembered, all in one transaction.
    /// Otherwise nothing changes ([`CancelOutcome`] says why).
    pub fn cancel_turn(
        &self,
        id: i64,
        by: &str,
        model: &str,
        command: CancelCommand<'_>,
    ) -> anyhow::Result<CancelOutcome> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if let Some(done) = carried_out(&tx, command.event_id)? {
            return Ok(done);
        }
        let row: Option<(String, Option<i64>)> = tx
            .query_row(
                "SELECT body, delivered_us FROM inbox WHERE id = ?1 AND state = 'inflight'",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((body, delivered_us)) = row else {
            return Ok(CancelOutcome::NotInFlight);
        };
        if !started_before(delivered_us, command.origin_ts) {
            return Ok(CancelOutcome::StartedAfter);
        }
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
            "INSERT OR IGNORE INTO turns (agent, inbox_id, attempt, started_us, ended_us, outcome, model)
             SELECT agent, id, attempts, COALESCE(delivered_us, ?2), ?2, ?3, ?4
             FROM inbox WHERE id = ?1",
            params![id, now, super::TurnOutcome::Cancelled.as_str(), model],
        )?;
        tx.execute(
            "INSERT INTO cancels (command_event, inbox_id, ts_us) VALUES (?1, ?2, ?3)",
            params![command.event_id, id, now],
        )?;
        tx.commit()?;
        Ok(CancelOutcome::Cancelled(CancelledTurn {
            id,
            body,
            delivered_us,
            pulled,
        }))
    }

    /// [`CancelOutcome::AlreadyDone`] if the command `event_id` was carried out already.
    pub fn cancel_done(&self, event_id: &str) -> anyhow::Result<Option<CancelOutcome>> {
        Ok(carried_out(&self.lock(), event_id)?)
    }

    /// Whether message `id` is in flight (a turn handles it, not cancelled, acked or failed).
    pub fn is_inflight(&self, id: i64) -> anyhow::Result<bool> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT 1 FROM inbox WHERE id = ?1 AND state = 'inflight'",
                [id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
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
    use crate::store::{Enqueue, TurnOutcome};

    /// A command sent after every turn of a test started.
    fn later(event_id: &str) -> CancelCommand<'_> {
        CancelCommand {
            event_id,
            origin_ts: now_us() / 1_000 + 60_000,
        }
    }

    fn cancelled(o: CancelOutcome) -> CancelledTurn {
        match o {
            CancelOutcome::Cancelled(t) => t,
            other => panic!("not cancelled: {other:?}"),
        }
    }

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
        let got = cancelled(s.cancel_turn(item.id, "@op:hs", "m", later("$x")).unwrap());
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
            s.cancel_turn(item.id, "@op:hs", "m", later("$y")).unwrap(),
            CancelOutcome::NotInFlight,
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
        let got = cancelled(s.cancel_turn(turn.id, "@op:hs", "m", later("$x")).unwrap());
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

    #[test]
    fn only_a_turn_started_before_the_command_is_its_to_cancel() {
        struct Case {
            name: &'static str,
            delivered_us: Option<i64>,
            origin_ts: i64,
            want: bool,
        }
        let cases = [
            Case {
                name: "the turn the operator saw",
                delivered_us: Some(1_000_000),
                origin_ts: 1_500,
                want: true,
            },
            Case {
                name: "a turn handed out after the command",
                delivered_us: Some(2_000_000),
                origin_ts: 1_500,
                want: false,
            },
            Case {
                name: "handed out in the command's very millisecond",
                delivered_us: Some(1_500_000),
                origin_ts: 1_500,
                want: false,
            },
            Case {
                name: "no recorded start",
                delivered_us: None,
                origin_ts: 1_500,
                want: false,
            },
        ];
        for c in cases {
            assert_eq!(
                started_before(c.delivered_us, c.origin_ts),
                c.want,
                "{}",
                c.name
            );
        }
    }

    /// A command sent before the running turn started cancels nothing (the turn it meant
    /// ended; or it waited for a restart); a command carried out already, delivered again,
    /// cancels nothing either, and says which turn it cancelled.
    #[test]
    fn a_cancel_stops_only_the_turn_it_was_sent_for_and_only_once() {
        let s = Store::open_in_memory().unwrap();
        enqueue(&s, "$a", "first");
        enqueue(&s, "$b", "second");
        let sent_before = CancelCommand {
            event_id: "$early",
            origin_ts: now_us() / 1_000 - 1_000,
        };
        let a = s.take_next("argus", 5).unwrap().0.unwrap();
        assert_eq!(
            s.cancel_turn(a.id, "@op:hs", "m", sent_before).unwrap(),
            CancelOutcome::StartedAfter
        );
        assert!(s.is_inflight(a.id).unwrap(), "the turn runs on");
        cancelled(s.cancel_turn(a.id, "@op:hs", "m", later("$cmd")).unwrap());
        assert!(!s.is_inflight(a.id).unwrap());
        let b = s.take_next("argus", 5).unwrap().0.unwrap();
        assert_eq!(
            s.cancel_turn(b.id, "@op:hs", "m", later("$cmd")).unwrap(),
            CancelOutcome::AlreadyDone {
                inbox_id: a.id,
                body: "first".into()
            },
            "the same command again"
        );
        assert!(s.is_inflight(b.id).unwrap(), "the next turn runs on");
        assert!(
            matches!(s.cancel_done("$cmd").unwrap(), Some(CancelOutcome::AlreadyDone { inbox_id, .. }) if inbox_id == a.id)
        );
        assert_eq!(s.cancel_done("$other").unwrap(), None);
        assert_eq!(s.inbox_error(b.id).unwrap(), None);
    }

    /// A cancelled attempt is one `turns` row, `cancelled`, even when the session that saw its
    /// harness go records it too.
    #[test]
    fn a_cancelled_attempt_is_recorded_once() {
        let s = Store::open_in_memory().unwrap();
        enqueue(&s, "$a", "work");
        let a = s.take_next("argus", 5).unwrap().0.unwrap();
        cancelled(s.cancel_turn(a.id, "@op:hs", "m", later("$cmd")).unwrap());
        // An ack or fail that reaches the store after the cancel changes nothing, and says so
        // (the session then records and announces nothing).
        assert!(!s.ack(a.id).unwrap(), "ack after the cancel");
        assert!(!s.fail(a.id, "boom").unwrap(), "fail after the cancel");
        assert_eq!(
            s.inbox_error(a.id).unwrap().as_deref(),
            Some("cancelled by @op:hs")
        );
        assert_eq!(s.counts("argus").unwrap().dead, 0);
        s.record_turn("argus", a.id, a.attempts, TurnOutcome::Interrupted, "m")
            .unwrap();
        s.record_turn("argus", a.id, a.attempts, TurnOutcome::Done, "m")
            .unwrap();
        let got = s.turn_stats(Some("argus"), 10).unwrap();
        let outcomes: Vec<_> = got.iter().map(|t| (t.inbox_id, t.outcome)).collect();
        assert_eq!(outcomes, vec![(a.id, TurnOutcome::Cancelled)]);
    }

    /// A database from before 016 with an attempt recorded twice keeps its first row, and
    /// records it once from then on.
    #[test]
    fn migration_016_keeps_the_first_row_of_an_attempt() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let before = crate::store::MIGRATIONS
            .iter()
            .position(|(name, _)| *name == "016_turns_once")
            .expect("016 is listed");
        for (_, sql) in &crate::store::MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before).unwrap();
        for outcome in ["cancelled", "interrupted"] {
            conn.execute(
                "INSERT INTO turns (agent, inbox_id, attempt, started_us, ended_us, outcome, model)
                 VALUES ('argus', 7, 1, 0, 1, ?1, 'm')",
                [outcome],
            )
            .unwrap();
        }
        let s = Store::init(conn).unwrap();
        s.record_turn("argus", 7, 1, TurnOutcome::Done, "m")
            .unwrap();
        let got: Vec<_> = s
            .turn_stats(None, 10)
            .unwrap()
            .into_iter()
            .map(|t| t.outcome)
            .collect();
        assert_eq!(got, vec![TurnOutcome::Cancelled]);
    }
}
