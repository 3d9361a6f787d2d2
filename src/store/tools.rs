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

    /// Reminders due now, marked delivered (each is handed out once).
    pub fn take_due_reminders(&self) -> anyhow::Result<Vec<Reminder>> {
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
        }
        tx.commit()?;
        Ok(due)
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
        let due = s.take_due_reminders().unwrap();
        assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
        assert!(s.take_due_reminders().unwrap().is_empty(), "once");
        assert!(s.next_reminder().unwrap().is_some());
    }
}
