//! Operators' answers to agents' questions (`ask_operator`): pending → answered | expired, once.

use rusqlite::{OptionalExtension, Row, params};

use super::{Store, now_us};

/// Where a question is: open, or closed once (answered, or expired unanswered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionState {
    Pending,
    Answered,
    Expired,
}

impl QuestionState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Answered => "answered",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        [Self::Pending, Self::Answered, Self::Expired]
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| bad_column(4, format!("unknown question state {s:?}")))
    }
}

impl std::fmt::Display for QuestionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored value that does not parse: an error, never a default.
fn bad_column(i: usize, why: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, why.into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: i64,
    pub agent: String,
    pub question: String,
    pub options: Vec<String>,
    pub state: QuestionState,
    pub expires_us: i64,
    pub request_event: Option<String>,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
}

const COLUMNS: &str =
    "id, agent, question, options, state, expires_us, request_event, answer, answered_by";

fn row(r: &Row<'_>) -> rusqlite::Result<Question> {
    let options: String = r.get(3)?;
    Ok(Question {
        id: r.get(0)?,
        agent: r.get(1)?,
        question: r.get(2)?,
        options: serde_json::from_str(&options)
            .map_err(|e| bad_column(3, format!("options {options:?}: {e}")))?,
        state: QuestionState::parse(&r.get::<_, String>(4)?)?,
        expires_us: r.get(5)?,
        request_event: r.get(6)?,
        answer: r.get(7)?,
        answered_by: r.get(8)?,
    })
}

impl Store {
    pub fn create_question(
        &self,
        agent: &str,
        question: &str,
        options: &[String],
        ttl_us: i64,
    ) -> anyhow::Result<i64> {
        let c = self.lock();
        let now = now_us();
        c.execute(
            "INSERT INTO questions (agent, question, options, created_us, expires_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                agent,
                question,
                serde_json::to_string(options)?,
                now,
                now.saturating_add(ttl_us)
            ],
        )?;
        Ok(c.last_insert_rowid())
    }

    pub fn unposted_questions(&self) -> anyhow::Result<Vec<Question>> {
        let c = self.lock();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM questions WHERE request_event IS NULL AND state = 'pending' ORDER BY id"
        ))?;
        let v = st.query_map([], row)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Every question still waiting for an answer, oldest first (the status message and
    /// `!hive approvals` list them).
    pub fn open_questions(&self) -> anyhow::Result<Vec<Question>> {
        let c = self.lock();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM questions WHERE state = 'pending' ORDER BY id"
        ))?;
        let v = st.query_map([], row)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn set_question_event(&self, id: i64, event_id: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "UPDATE questions SET request_event = ?2 WHERE id = ?1 AND request_event IS NULL",
            params![id, event_id],
        )?;
        Ok(())
    }

    pub fn question_by_event(&self, event_id: &str) -> anyhow::Result<Option<Question>> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM questions WHERE request_event = ?1"),
                [event_id],
                row,
            )
            .optional()?)
    }

    /// Records the answer if the question is still open (and not past its time), together with
    /// the post that tells the asking agent (one transaction): true once.
    pub fn answer_question(
        &self,
        id: i64,
        answer: &str,
        by: &str,
        tell: Option<&super::OutboxRow>,
    ) -> anyhow::Result<bool> {
        let now = now_us();
        let mut c = self.lock();
        let tx = c.transaction()?;
        let answered = tx.execute(
            "UPDATE questions SET state = 'answered', answer = ?2, answered_by = ?3, decided_us = ?4
             WHERE id = ?1 AND state = 'pending' AND expires_us > ?4",
            params![id, answer, by, now],
        )? == 1;
        if answered && let Some(row) = tell {
            super::outbox::insert(&tx, row)?;
        }
        tx.commit()?;
        Ok(answered)
    }

    /// Closes an open question as `state` (`Expired`) with the post that tells its agent.
    pub fn close_question(
        &self,
        id: i64,
        state: QuestionState,
        tell: Option<&super::OutboxRow>,
    ) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        let closed = tx.execute(
            "UPDATE questions SET state = ?2, decided_us = ?3 WHERE id = ?1 AND state = 'pending'",
            params![id, state.as_str(), now_us()],
        )? == 1;
        if closed && let Some(row) = tell {
            super::outbox::insert(&tx, row)?;
        }
        tx.commit()?;
        Ok(closed)
    }

    /// Expires every open question past its time, each with the post that tells its agent (one
    /// transaction); returns them.
    pub fn expire_questions(
        &self,
        tell: impl Fn(&Question) -> Option<super::OutboxRow>,
    ) -> anyhow::Result<Vec<Question>> {
        let mut c = self.lock();
        let c = c.transaction()?;
        let now = now_us();
        let due: Vec<Question> = {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM questions WHERE state = 'pending' AND expires_us <= ?1"
            ))?;
            st.query_map([now], row)?.collect::<Result<_, _>>()?
        };
        for q in &due {
            c.execute(
                "UPDATE questions SET state = 'expired', decided_us = ?2 WHERE id = ?1 AND state = 'pending'",
                params![q.id, now],
            )?;
            if let Some(row) = tell(q) {
                super::outbox::insert(&c, &row)?;
            }
        }
        c.commit()?;
        Ok(due)
    }

    pub fn next_question_expiry(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.lock().query_row(
            "SELECT MIN(expires_us) FROM questions WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_once_and_never_after_expiry() {
        let s = Store::open_in_memory().unwrap();
        let id = s
            .create_question(
                "argus",
                "ship it?",
                &["yes".into(), "no".into()],
                3_600_000_000,
            )
            .unwrap();
        s.set_question_event(id, "$q").unwrap();
        let q = s.question_by_event("$q").unwrap().unwrap();
        assert_eq!(q.options, ["yes", "no"]);
        let tell = |txn: &str| crate::store::OutboxRow {
            txn_id: txn.into(),
            room_key: "agent:argus".into(),
            content: "{}".into(),
        };
        assert!(
            s.answer_question(id, "yes", "@op:x", Some(&tell("a1")))
                .unwrap()
        );
        assert!(
            !s.answer_question(id, "no", "@op:x", Some(&tell("a2")))
                .unwrap(),
            "answered once"
        );
        let late = s.create_question("argus", "late?", &[], -1).unwrap();
        assert!(!s.answer_question(late, "yes", "@op:x", None).unwrap());
        assert_eq!(s.expire_questions(|_| Some(tell("e1"))).unwrap().len(), 1);
        let owed: Vec<String> = s
            .due_posts(10)
            .unwrap()
            .into_iter()
            .map(|p| p.row.txn_id)
            .collect();
        assert_eq!(
            owed,
            ["a1", "e1"],
            "each change together with its post, once"
        );
    }

    #[test]
    fn a_stored_question_that_does_not_parse_is_an_error() {
        let s = Store::open_in_memory().unwrap();
        let id = s
            .create_question("argus", "ok?", &[], 3_600_000_000)
            .unwrap();
        s.set_question_event(id, "$q").unwrap();
        let q = s.question_by_event("$q").unwrap().expect("stored");
        assert_eq!(q.state, QuestionState::Pending);
        // (The schema's CHECK already keeps an unknown state out.)
        for (column, value) in [("options", "not json"), ("options", "{\"a\": 1}")] {
            s.lock()
                .execute(
                    &format!("UPDATE questions SET {column} = ?1 WHERE id = ?2"),
                    params![value, id],
                )
                .unwrap();
            let e = s.question_by_event("$q").expect_err(column);
            assert!(format!("{e:#}").contains("options \""), "{value}: {e:#}");
            s.lock()
                .execute(
                    "UPDATE questions SET state = 'pending', options = '[]' WHERE id = ?1",
                    [id],
                )
                .unwrap();
        }
    }
}
