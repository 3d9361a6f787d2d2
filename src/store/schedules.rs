//! Recurring schedules' fires (migration 014): per (agent, schedule), when the core first saw
//! it and its last scheduled fire. A fire is one conditional `UPDATE … WHERE last_fire_us IS
//! <the last fire the caller saw>` in the same sqlite transaction as the outbox post that
//! delivers it: two rounds that race fire once, and a fire is never recorded without its post
//! owed (nor owed without being recorded).

use rusqlite::{OptionalExtension, params};

use super::{OutboxRow, Store};

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
    /// (or the record is gone), nothing was done.
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
        if changed == 1 {
            super::outbox::insert(&tx, post)?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Records a fire by hand (`!hive fire`) at `at_us` and owes `post` in the same
    /// transaction; the scheduled grid is left as it is.
    pub fn record_manual_fire(
        &self,
        agent: &str,
        schedule: &str,
        at_us: i64,
        post: &OutboxRow,
    ) -> anyhow::Result<()> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        tx.execute(
            "INSERT INTO schedules (agent, schedule, since_us, last_manual_us) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (agent, schedule) DO UPDATE SET last_manual_us = excluded.last_manual_us",
            params![agent, schedule, at_us],
        )?;
        super::outbox::insert(&tx, post)?;
        tx.commit()?;
        Ok(())
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
}
