//! Reading the approvals and the audit trail: no transition happens here (they are all in
//! [`super`], each a conditional `UPDATE`).

use rusqlite::OptionalExtension;

use super::{Approval, ApprovalState, Audit, AuditEntry, COLUMNS, get, insert_audit, row};
use crate::store::Store;

impl Store {
    pub fn approval(&self, id: i64) -> anyhow::Result<Option<Approval>> {
        Ok(get(&self.lock(), id)?)
    }

    pub fn approval_by_request_event(&self, event_id: &str) -> anyhow::Result<Option<Approval>> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM approvals WHERE request_event = ?1"),
                [event_id],
                row,
            )
            .optional()?)
    }

    /// The request a counted reaction was on.
    pub fn approval_of_vote(&self, reaction_event: &str) -> anyhow::Result<Option<Approval>> {
        let c = self.lock();
        let id: Option<i64> = c
            .query_row(
                "SELECT approval_id FROM approval_votes WHERE reaction_event = ?1",
                [reaction_event],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match id {
            Some(id) => get(&c, id)?,
            None => None,
        })
    }

    /// The newest `limit` requests, newest first.
    pub fn approvals(&self, limit: usize) -> anyhow::Result<Vec<Approval>> {
        let c = self.lock();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals ORDER BY id DESC LIMIT ?1"
        ))?;
        let v = st
            .query_map([limit as i64], row)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Every request about `agent`, oldest first.
    pub fn approvals_of(&self, agent: &str) -> anyhow::Result<Vec<Approval>> {
        let c = self.lock();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE agent = ?1 ORDER BY id"
        ))?;
        let v = st.query_map([agent], row)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Who approved request `id` and has not withdrawn it, in the order they voted.
    pub fn approvers(&self, id: i64) -> anyhow::Result<Vec<String>> {
        let c = self.lock();
        let mut st = c.prepare(
            "SELECT voter FROM approval_votes
             WHERE approval_id = ?1 AND verdict = 'approve' AND withdrawn = 0 ORDER BY ts_us",
        )?;
        let v = st
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn approvals_in(&self, state: ApprovalState) -> anyhow::Result<Vec<Approval>> {
        let c = self.lock();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE state = ?1 ORDER BY id"
        ))?;
        let v = st
            .query_map([state.as_str()], row)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Requests that ended and whose requester was not told yet.
    pub fn untold_outcomes(&self) -> anyhow::Result<Vec<Approval>> {
        let c = self.lock();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE outcome_told = 0
             AND state IN ('applied', 'failed', 'denied', 'expired', 'cancelled') ORDER BY id"
        ))?;
        let v = st.query_map([], row)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Complete pending requests whose message is not posted yet (filed by the CLI, or the core
    /// stopped between filing and posting).
    pub fn unposted_approvals(&self) -> anyhow::Result<Vec<Approval>> {
        let c = self.lock();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE request_event IS NULL AND state = 'pending'
             AND complete = 1 ORDER BY id"
        ))?;
        let v = st.query_map([], row)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// When the next pending request expires.
    pub fn next_expiry(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.lock().query_row(
            "SELECT MIN(expires_us) FROM approvals WHERE state IN ('pending', 'confirming')",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn audit(&self, a: &Audit<'_>) -> anyhow::Result<()> {
        insert_audit(&self.lock(), a)?;
        Ok(())
    }

    /// The audit trail, oldest first (the last `limit` entries).
    pub fn audit_log(&self, limit: usize) -> anyhow::Result<Vec<AuditEntry>> {
        let c = self.lock();
        let mut st = c.prepare(
            "SELECT ts_us, actor, action, approval_id, agent, sha, outcome, detail FROM
             (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
        )?;
        let v = st
            .query_map([limit as i64], |r| {
                Ok(AuditEntry {
                    ts_us: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    approval_id: r.get(3)?,
                    agent: r.get(4)?,
                    sha: r.get(5)?,
                    outcome: r.get(6)?,
                    detail: r.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }
}
