//! Recurring schedules' fires (migration 014): per (agent, schedule), when the core first saw
//! it and its last scheduled fire. A fire is one conditional `UPDATE … WHERE last_fire_us IS
//! <the last fire the caller saw>` in the same sqlite transaction as the outbox post that
//! delivers it: two rounds that race fire once, and a fire is never recorded without its post
//! owed (nor owed without being recorded): a post whose txn id is already in the outbox rolls the
//! fire back, it never advances the record silently.
//!
//! [`Store::post_delivery`] says where a fire's post is on its way into the agent's queue, so a
//! schedule is not fired again while its last fire waits (`c0re/schedules/due.rs`).

use rusqlite::{OptionalExtension, params};

use super::{OutboxRow, Store};

/// Where a post the core owed an agent is (by its txn id): the facts the schedules task decides
/// on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// No post has that txn id (none was made, or it was pruned).
    Unknown,
    /// In the outbox: the homeserver has not taken it yet.
    Posting,
    /// The homeserver refused it for good.
    Refused,
    /// The homeserver took it; its event's row in the agent's queue, once the core has seen the
    /// event come back (`None`: not yet, or sent before migration 015 kept its event id).
    Sent(Option<Queued>),
}

/// The state of a message in an agent's queue (`inbox.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Waiting for the agent.
    Pending,
    /// Handed to the agent, its turn not finished.
    Inflight,
    /// Its turn finished.
    Done,
    /// Given up on (dead-lettered).
    Dead,
}

/// A fire's post was already in the outbox: its txn id is not unique to this fire.
#[derive(Debug, thiserror::Error)]
#[error("the outbox already holds a post with txn id {0:?}: fire not recorded")]
pub struct DuplicatePost(pub String);

fn queued(text: &str) -> rusqlite::Result<Queued> {
    match text {
        "pending" => Ok(Queued::Pending),
        "inflight" => Ok(Queued::Inflight),
        "done" => Ok(Queued::Done),
        "dead" => Ok(Queued::Dead),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("{other:?} is not an inbox state").into(),
        )),
    }
}

/// One schedule's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub schedule: String,
    /// When the core first saw the schedule: a new schedule's grid starts here.
    pub since_us: i64,
    /// The last scheduled fire.
    pub last_fire_us: Option<i64>,
    /// The last `!hive fire` of it (it does not move the grid).
    pub last_manual_us: Option<i64>,
}

impl Store {
    /// The records of `agent`'s schedules `names` (its current spec's), in that order: a name
    /// seen for the first time is recorded as new at `now_us`; records of names no longer in the
    /// spec are forgotten (a schedule removed and added again is new).
    pub fn schedule_rows(
        &self,
        agent: &str,
        names: &[&str],
        now_us: i64,
    ) -> anyhow::Result<Vec<ScheduleRow>> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        let mut rows = Vec::with_capacity(names.len());
        {
            let known: Vec<String> = tx
                .prepare("SELECT schedule FROM schedules WHERE agent = ?1")?
                .query_map([agent], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for gone in known.iter().filter(|k| !names.contains(&k.as_str())) {
                tx.execute(
                    "DELETE FROM schedules WHERE agent = ?1 AND schedule = ?2",
                    params![agent, gone],
                )?;
            }
            let mut select = tx.prepare(
                "SELECT since_us, last_fire_us, last_manual_us FROM schedules
                 WHERE agent = ?1 AND schedule = ?2",
            )?;
            for name in names {
                tx.execute(
                    "INSERT OR IGNORE INTO schedules (agent, schedule, since_us) VALUES (?1, ?2, ?3)",
                    params![agent, name, now_us],
                )?;
                rows.push(select.query_row(params![agent, name], |r| {
                    Ok(ScheduleRow {
                        schedule: (*name).to_owned(),
                        since_us: r.get(0)?,
                        last_fire_us: r.get(1)?,
                        last_manual_us: r.get(2)?,
                    })
                })?);
            }
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Records the scheduled fire at `fire_us` of `agent`'s `schedule` if its last fire is still
    /// `previous`, and owes `post` in the same transaction. False: another round fired it first
    /// (or the record is gone), nothing was done. A post whose txn id the outbox already holds
    /// is an error ([`DuplicatePost`]) and nothing is recorded: a fire is never counted unsaid.
    pub fn record_fire(
        &self,
        agent: &str,
        schedule: &str,
        previous: Option<i64>,
        fire_us: i64,
        post: &OutboxRow,
    ) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        let changed = tx.execute(
            "UPDATE schedules SET last_fire_us = ?4
             WHERE agent = ?1 AND schedule = ?2 AND last_fire_us IS ?3",
            params![agent, schedule, previous, fire_us],
        )?;
        if changed == 1 && super::outbox::insert(&tx, post)? == 0 {
            // Dropping `tx` rolls the update back.
            return Err(DuplicatePost(post.txn_id.clone()).into());
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Records a fire by hand (`!hive fire`) at `at_us` and owes `post` in the same
    /// transaction; the scheduled grid is left as it is. False: `post`'s txn id (the command's)
    /// was already in the outbox, the command was redelivered: nothing is done again.
    pub fn record_manual_fire(
        &self,
        agent: &str,
        schedule: &str,
        at_us: i64,
        post: &OutboxRow,
    ) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        if super::outbox::insert(&tx, post)? == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO schedules (agent, schedule, since_us, last_manual_us) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (agent, schedule) DO UPDATE SET last_manual_us = excluded.last_manual_us",
            params![agent, schedule, at_us],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Where the post `txn_id` for `agent` is: in the outbox, refused, or taken and (once its
    /// event came back) in `agent`'s queue.
    pub fn post_delivery(&self, agent: &str, txn_id: &str) -> anyhow::Result<Delivery> {
        let c = self.lock();
        let post: Option<(String, Option<String>)> = c
            .query_row(
                "SELECT state, event_id FROM outbox WHERE txn_id = ?1",
                [txn_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((state, event_id)) = post else {
            return Ok(Delivery::Unknown);
        };
        Ok(match (state.as_str(), event_id) {
            ("pending", _) => Delivery::Posting,
            ("failed", _) => Delivery::Refused,
            (_, None) => Delivery::Sent(None),
            (_, Some(event_id)) => Delivery::Sent(
                c.query_row(
                    "SELECT state FROM inbox WHERE agent = ?1 AND event_id = ?2",
                    params![agent, event_id],
                    |r| queued(&r.get::<_, String>(0)?),
                )
                .optional()?,
            ),
        })
    }

    /// `agent`'s record of `schedule`, if there is one.
    pub fn schedule_row(&self, agent: &str, schedule: &str) -> anyhow::Result<Option<ScheduleRow>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT since_us, last_fire_us, last_manual_us FROM schedules
                 WHERE agent = ?1 AND schedule = ?2",
                params![agent, schedule],
                |r| {
                    Ok(ScheduleRow {
                        schedule: schedule.to_owned(),
                        since_us: r.get(0)?,
                        last_fire_us: r.get(1)?,
                        last_manual_us: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(txn: &str) -> OutboxRow {
        OutboxRow {
            txn_id: txn.into(),
            room_key: "agent:echo".into(),
            content: "{}".into(),
        }
    }

    #[test]
    fn a_fire_is_recorded_once_with_its_post() {
        let s = Store::open_in_memory().unwrap();
        let rows = s.schedule_rows("echo", &["a", "b"], 100).unwrap();
        assert_eq!(rows[0].since_us, 100);
        assert_eq!(rows[1].last_fire_us, None);
        // Seen again later: still first seen at 100.
        let rows = s.schedule_rows("echo", &["a", "b"], 500).unwrap();
        assert_eq!(rows[0].since_us, 100);
        assert!(s.record_fire("echo", "a", None, 160, &post("t1")).unwrap());
        assert!(
            !s.record_fire("echo", "a", None, 160, &post("t1b")).unwrap(),
            "a race loses"
        );
        assert_eq!(s.due_posts(10).unwrap().len(), 1, "one post owed");
        assert!(
            s.record_fire("echo", "a", Some(160), 220, &post("t2"))
                .unwrap()
        );
        assert_eq!(
            s.schedule_row("echo", "a").unwrap().unwrap().last_fire_us,
            Some(220)
        );
        // By hand: the grid stays.
        s.record_manual_fire("echo", "a", 300, &post("t3")).unwrap();
        let a = s.schedule_row("echo", "a").unwrap().unwrap();
        assert_eq!((a.last_fire_us, a.last_manual_us), (Some(220), Some(300)));
        assert_eq!(s.due_posts(10).unwrap().len(), 3);
        // Removed from the spec: forgotten; added again: new.
        let rows = s.schedule_rows("echo", &["b"], 900).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(s.schedule_row("echo", "a").unwrap(), None);
        let rows = s.schedule_rows("echo", &["a"], 1000).unwrap();
        assert_eq!((rows[0].since_us, rows[0].last_fire_us), (1000, None));
        assert_eq!(s.schedule_rows("other", &[], 0).unwrap(), vec![]);
    }

    #[test]
    fn a_fire_whose_post_is_already_owed_is_not_recorded() {
        let s = Store::open_in_memory().unwrap();
        s.schedule_rows("echo", &["a"], 100).unwrap();
        s.enqueue_post(&post("taken")).unwrap();
        let err = s
            .record_fire("echo", "a", None, 160, &post("taken"))
            .expect_err("a txn id already in the outbox");
        assert!(err.downcast_ref::<DuplicatePost>().is_some(), "{err:#}");
        assert_eq!(
            s.schedule_row("echo", "a").unwrap().unwrap().last_fire_us,
            None,
            "rolled back: the fire is not counted"
        );
        assert_eq!(s.due_posts(10).unwrap().len(), 1);
    }

    #[test]
    fn a_redelivered_manual_fire_is_one_post() {
        let s = Store::open_in_memory().unwrap();
        assert!(
            s.record_manual_fire("echo", "a", 300, &post("cmd"))
                .unwrap()
        );
        assert!(
            !s.record_manual_fire("echo", "a", 400, &post("cmd"))
                .unwrap(),
            "the same command again"
        );
        assert_eq!(s.due_posts(10).unwrap().len(), 1);
        assert_eq!(
            s.schedule_row("echo", "a").unwrap().unwrap().last_manual_us,
            Some(300),
            "the first time stays"
        );
    }

    #[test]
    fn where_a_post_is() {
        let s = Store::open_in_memory().unwrap();
        let delivery = |txn| s.post_delivery("echo", txn).unwrap();
        assert_eq!(delivery("none"), Delivery::Unknown);
        for txn in ["p", "f", "s", "old"] {
            s.enqueue_post(&post(txn)).unwrap();
        }
        assert_eq!(delivery("p"), Delivery::Posting);
        let id = |txn: &str| {
            s.due_posts(10)
                .unwrap()
                .into_iter()
                .find(|p| p.row.txn_id == txn)
                .unwrap()
                .id
        };
        s.post_failed(id("f"), "M_FORBIDDEN", true).unwrap();
        assert_eq!(delivery("f"), Delivery::Refused);
        s.post_sent(id("s"), "$fire").unwrap();
        assert_eq!(delivery("s"), Delivery::Sent(None), "not seen back yet");
        // Sent before migration 015: no event id kept.
        s.post_sent(id("old"), "$x").unwrap();
        s.lock()
            .execute("UPDATE outbox SET event_id = NULL WHERE txn_id = 'old'", [])
            .unwrap();
        assert_eq!(delivery("old"), Delivery::Sent(None));
        let ev = crate::store::Enqueue {
            event_id: "$fire".into(),
            room_id: "!r:x".into(),
            sender: "@hive:x".into(),
            body: "schedule a: p".into(),
            origin_ts: 1,
            agents: vec!["other".into(), "echo".into()],
            hive_event: None,
            peer: None,
        };
        s.ingest(&[("$fire".into(), "!r:x".into())], &[ev], 1)
            .unwrap();
        // Another agent's row of the same event is not this agent's.
        let (other, _) = s.take_next("other", 3).unwrap();
        assert!(s.ack(other.expect("queued").id).unwrap());
        assert_eq!(delivery("s"), Delivery::Sent(Some(Queued::Pending)));
        let (item, _) = s.take_next("echo", 3).unwrap();
        let item = item.expect("queued");
        assert_eq!(delivery("s"), Delivery::Sent(Some(Queued::Inflight)));
        assert!(s.ack(item.id).unwrap());
        assert_eq!(delivery("s"), Delivery::Sent(Some(Queued::Done)));
    }
}
