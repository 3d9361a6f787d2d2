//! Approvals as a state machine in sqlite, and the audit trail.
//!
//! ```text
//! pending ──✓×required──► approved ──► applying ──► applied | failed
//!    │  ▲                    │
//!    │  └── ✓ withdrawn ─────┘        (redacting a ✓ before the action starts)
//!    ├──❌──► denied
//!    ├──ttl──► expired                (the core's clock)
//!    └──request redacted──► cancelled (also from approved)
//!
//! a purge, once approved (store/kept.rs):
//! approved ──► confirming ──operator's `purge <name>` in the thread──► applying
//!                  ├──ttl──► expired
//!                  └──request redacted──► cancelled
//! ```
//!
//! Every transition is one `UPDATE … WHERE state = <from>` inside an immediate transaction, so it
//! happens once whatever arrives twice: a duplicated transaction, two operators at the same
//! moment, a ✓ after a ❌, a restart.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::{Store, now_us};

mod queries;
mod rules;

pub use rules::{ApprovalKind, ApprovalState, Ballot, Verdict, VoteOutcome, reverts, tally};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: i64,
    pub kind: ApprovalKind,
    pub agent: String,
    pub sha: String,
    pub requester: String,
    pub summary: String,
    pub state: ApprovalState,
    pub required: u32,
    pub created_us: i64,
    pub expires_us: i64,
    pub request_event: Option<String>,
    pub decided_us: Option<i64>,
    pub reason: Option<String>,
    pub deploy: Option<i64>,
    /// Filing finished (snapshot taken, config validated): only complete requests are posted.
    pub complete: bool,
    /// The requesting agent was told how the request ended (or nobody needs telling).
    pub outcome_told: bool,
}

const COLUMNS: &str = "id, kind, agent, sha, requester, summary, state, required, created_us, \
                       expires_us, request_event, decided_us, reason, deploy, complete, outcome_told";

fn row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        id: r.get(0)?,
        kind: ApprovalKind::parse(&r.get::<_, String>(1)?)?,
        agent: r.get(2)?,
        sha: r.get(3)?,
        requester: r.get(4)?,
        summary: r.get(5)?,
        state: ApprovalState::parse(&r.get::<_, String>(6)?)?,
        required: r.get(7)?,
        created_us: r.get(8)?,
        expires_us: r.get(9)?,
        request_event: r.get(10)?,
        decided_us: r.get(11)?,
        reason: r.get(12)?,
        deploy: r.get(13)?,
        complete: r.get(14)?,
        outcome_told: r.get(15)?,
    })
}

pub struct NewApproval<'a> {
    pub kind: ApprovalKind,
    pub agent: &'a str,
    pub sha: &'a str,
    pub requester: &'a str,
    pub summary: &'a str,
    pub required: u32,
    pub ttl_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub ts_us: i64,
    pub actor: String,
    pub action: String,
    pub approval_id: Option<i64>,
    pub agent: Option<String>,
    pub sha: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// One line of the audit trail, as recorded.
pub struct Audit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub approval_id: Option<i64>,
    pub agent: Option<&'a str>,
    pub sha: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
}

pub(super) fn insert_audit(c: &rusqlite::Connection, a: &Audit<'_>) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO audit (ts_us, actor, action, approval_id, agent, sha, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            now_us(),
            a.actor,
            a.action,
            a.approval_id,
            a.agent,
            a.sha,
            a.outcome,
            a.detail
        ],
    )?;
    Ok(())
}

pub(super) fn get(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<Option<Approval>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
}

pub(super) fn approvals_count(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<u32> {
    c.query_row(
        "SELECT COUNT(DISTINCT voter) FROM approval_votes
         WHERE approval_id = ?1 AND verdict = 'approve' AND withdrawn = 0",
        [id],
        |r| r.get(0),
    )
}

impl Store {
    /// Files a request (state `pending`, not complete: it is not posted until
    /// [`Store::complete_approval`]) and audits it. Returns its id.
    pub fn create_approval(&self, new: &NewApproval<'_>) -> anyhow::Result<i64> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_us();
        tx.execute(
            "INSERT INTO approvals (kind, agent, sha, requester, summary, required, created_us,
                                    expires_us, complete, outcome_told)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, 0)",
            params![
                new.kind.as_str(),
                new.agent,
                new.sha,
                new.requester,
                new.summary,
                new.required,
                now,
                now.saturating_add(new.ttl_us)
            ],
        )?;
        let id = tx.last_insert_rowid();
        insert_audit(
            &tx,
            &Audit {
                actor: new.requester,
                action: new.kind.as_str(),
                approval_id: Some(id),
                agent: Some(new.agent),
                sha: Some(new.sha),
                outcome: "requested",
                detail: Some(new.summary),
            },
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Filing is done (the commit is snapshotted and valid): the request may be posted.
    pub fn complete_approval(&self, id: i64) -> anyhow::Result<bool> {
        Ok(self.lock().execute(
            "UPDATE approvals SET complete = 1 WHERE id = ?1 AND complete = 0 AND state = 'pending'",
            [id],
        )? == 1)
    }

    /// Cancels requests whose filing never finished (the filer died mid-way) and that are older
    /// than `age_us`; returns them.
    pub fn cancel_stale_filings(&self, age_us: i64) -> anyhow::Result<Vec<Approval>> {
        let stale: Vec<Approval> = {
            let c = self.lock();
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE complete = 0 AND state = 'pending' AND created_us < ?1"
            ))?;
            st.query_map([now_us() - age_us], row)?
                .collect::<Result<_, _>>()?
        };
        for a in &stale {
            self.cancel_approval(a.id, "hive-c0re", "its filing never finished")?;
        }
        Ok(stale)
    }

    /// Records that request `id`'s requester is told (with the post that tells it, in the same
    /// transaction; `None`: nobody to tell). True once.
    pub fn tell_outcome(&self, id: i64, post: Option<&super::OutboxRow>) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let first = tx.execute(
            "UPDATE approvals SET outcome_told = 1 WHERE id = ?1 AND outcome_told = 0",
            [id],
        )? == 1;
        if first && let Some(p) = post {
            super::outbox::insert(&tx, p)?;
        }
        tx.commit()?;
        Ok(first)
    }

    pub fn set_request_event(&self, id: i64, event_id: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "UPDATE approvals SET request_event = ?2 WHERE id = ?1 AND request_event IS NULL",
            params![id, event_id],
        )?;
        Ok(())
    }

    /// Counts one operator reaction. The caller has checked who the voter is. `required` is the
    /// hive's configured number of approvals: a request needs at least that many, whatever was
    /// recorded when it was filed (a filer's own `--config` can never lower it). The facts are
    /// read and the transition written in one immediate transaction; what they mean is
    /// [`tally`]'s.
    pub fn vote(
        &self,
        approval_id: i64,
        reaction_event: &str,
        voter: &str,
        verdict: Verdict,
        required: u32,
    ) -> anyhow::Result<VoteOutcome> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let seen: bool = tx
            .query_row(
                "SELECT 1 FROM approval_votes WHERE reaction_event = ?1",
                [reaction_event],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if seen {
            return Ok(VoteOutcome::Duplicate);
        }
        let a =
            get(&tx, approval_id)?.ok_or_else(|| anyhow::anyhow!("no approval {approval_id}"))?;
        let already_approved: bool = tx
            .query_row(
                "SELECT 1 FROM approval_votes WHERE approval_id = ?1 AND voter = ?2
                 AND verdict = 'approve' AND withdrawn = 0",
                params![a.id, voter],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let now = now_us();
        let outcome = tally(&Ballot {
            duplicate: false,
            state: a.state,
            expires_us: a.expires_us,
            now_us: now,
            verdict,
            already_approved,
            approvals: approvals_count(&tx, a.id)?,
            filed_required: a.required,
            hive_required: required,
        });
        match &outcome {
            VoteOutcome::Duplicate | VoteOutcome::Closed(_) | VoteOutcome::AlreadyVoted => {
                return Ok(outcome);
            }
            VoteOutcome::Expired => {
                tx.execute(
                    "UPDATE approvals SET state = 'expired', decided_us = ?2, reason = 'expired'
                     WHERE id = ?1 AND state IN ('pending', 'confirming')",
                    params![a.id, now],
                )?;
                tx.commit()?;
                return Ok(outcome);
            }
            VoteOutcome::Counted { .. } | VoteOutcome::Approved | VoteOutcome::Denied => {}
        }
        tx.execute(
            "INSERT INTO approval_votes (reaction_event, approval_id, voter, verdict, ts_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![reaction_event, a.id, voter, verdict.as_str(), now],
        )?;
        match &outcome {
            VoteOutcome::Denied => {
                tx.execute(
                    "UPDATE approvals SET state = 'denied', decided_us = ?2, reason = ?3
                     WHERE id = ?1 AND state IN ('pending', 'confirming')",
                    params![a.id, now, format!("denied by {voter}")],
                )?;
            }
            VoteOutcome::Approved => {
                tx.execute(
                    "UPDATE approvals SET state = 'approved', decided_us = ?2
                     WHERE id = ?1 AND state = 'pending'",
                    params![a.id, now],
                )?;
            }
            _ => {}
        }
        insert_audit(
            &tx,
            &Audit {
                actor: voter,
                action: verdict.as_str(),
                approval_id: Some(a.id),
                agent: Some(&a.agent),
                sha: Some(&a.sha),
                outcome: match &outcome {
                    VoteOutcome::Approved => "approved",
                    VoteOutcome::Denied => "denied",
                    _ => "counted",
                },
                detail: Some(reaction_event),
            },
        )?;
        tx.commit()?;
        Ok(outcome)
    }

    /// A counted reaction was redacted. Before the action starts, a withdrawn ✓ takes an
    /// `approved` (or `confirming`) request back to `pending` if it no longer has enough approvals
    /// ([`reverts`]). Returns the request and whether it went back.
    pub fn withdraw_vote(
        &self,
        reaction_event: &str,
        by: &str,
        required: u32,
    ) -> anyhow::Result<Option<(Approval, bool)>> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let vote: Option<(i64, String)> = tx
            .query_row(
                "SELECT approval_id, verdict FROM approval_votes
                 WHERE reaction_event = ?1 AND withdrawn = 0",
                [reaction_event],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, verdict)) = vote else {
            return Ok(None);
        };
        let verdict = Verdict::parse(&verdict)?;
        tx.execute(
            "UPDATE approval_votes SET withdrawn = 1 WHERE reaction_event = ?1",
            [reaction_event],
        )?;
        let a = get(&tx, id)?.ok_or_else(|| anyhow::anyhow!("vote without approval {id}"))?;
        let mut reverted = false;
        if reverts(
            verdict,
            a.state,
            approvals_count(&tx, id)?,
            a.required.max(required),
        ) {
            reverted = tx.execute(
                "UPDATE approvals SET state = 'pending', decided_us = NULL
                 WHERE id = ?1 AND state IN ('approved', 'confirming')",
                [id],
            )? == 1;
        }
        insert_audit(
            &tx,
            &Audit {
                actor: by,
                action: "withdraw",
                approval_id: Some(id),
                agent: Some(&a.agent),
                sha: Some(&a.sha),
                outcome: if reverted { "back to pending" } else { "noted" },
                detail: Some(reaction_event),
            },
        )?;
        tx.commit()?;
        let a = get(&c, id)?.expect("just read");
        Ok(Some((a, reverted)))
    }

    /// Cancels a request that has not started (its message was redacted). True if it was open.
    pub fn cancel_approval(&self, id: i64, by: &str, reason: &str) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE approvals SET state = 'cancelled', decided_us = ?2, reason = ?3
             WHERE id = ?1 AND state IN ('pending', 'approved', 'confirming')",
            params![id, now_us(), reason],
        )?;
        if n == 1 {
            let a = get(&tx, id)?.expect("just updated");
            insert_audit(
                &tx,
                &Audit {
                    actor: by,
                    action: "cancel",
                    approval_id: Some(id),
                    agent: Some(&a.agent),
                    sha: Some(&a.sha),
                    outcome: "cancelled",
                    detail: Some(reason),
                },
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// `approved` → `applying`: true for exactly one caller.
    pub fn start_apply(&self, id: i64) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let started = tx.execute(
            "UPDATE approvals SET state = 'applying' WHERE id = ?1 AND state = 'approved'",
            [id],
        )? == 1;
        if started {
            let a = get(&tx, id)?.expect("just updated");
            insert_audit(
                &tx,
                &Audit {
                    actor: "hive-c0re",
                    action: "apply-start",
                    approval_id: Some(id),
                    agent: Some(&a.agent),
                    sha: Some(&a.sha),
                    outcome: "applying",
                    detail: None,
                },
            )?;
        }
        tx.commit()?;
        Ok(started)
    }

    /// `applying` → `applied` (with the deploy number) or `failed` (with the reason); audited.
    pub fn finish_apply(&self, id: i64, result: Result<i64, &str>) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_us();
        let n = match result {
            Ok(deploy) => tx.execute(
                "UPDATE approvals SET state = 'applied', deploy = ?2, decided_us = ?3
                 WHERE id = ?1 AND state = 'applying'",
                params![id, deploy, now],
            )?,
            Err(reason) => tx.execute(
                "UPDATE approvals SET state = 'failed', reason = ?2, decided_us = ?3
                 WHERE id = ?1 AND state = 'applying'",
                params![id, reason, now],
            )?,
        };
        if n == 1 {
            let a = get(&tx, id)?.expect("just updated");
            let deploy = result.ok().map(|d| format!("deploy/{d}"));
            insert_audit(
                &tx,
                &Audit {
                    actor: "hive-c0re",
                    action: "apply",
                    approval_id: Some(id),
                    agent: Some(&a.agent),
                    sha: Some(&a.sha),
                    outcome: a.state.as_str(),
                    detail: deploy.as_deref().or(result.err()),
                },
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Expires every pending request past its time (the core's clock); returns them.
    pub fn expire_due(&self) -> anyhow::Result<Vec<Approval>> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_us();
        let due: Vec<Approval> = {
            let mut st = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE state IN ('pending', 'confirming')
                 AND expires_us <= ?1"
            ))?;
            st.query_map([now], row)?.collect::<Result<_, _>>()?
        };
        for a in &due {
            tx.execute(
                "UPDATE approvals SET state = 'expired', decided_us = ?2, reason = 'expired'
                 WHERE id = ?1 AND state IN ('pending', 'confirming')",
                params![a.id, now],
            )?;
            insert_audit(
                &tx,
                &Audit {
                    actor: "hive-c0re",
                    action: "expire",
                    approval_id: Some(a.id),
                    agent: Some(&a.agent),
                    sha: Some(&a.sha),
                    outcome: "expired",
                    detail: None,
                },
            )?;
        }
        tx.commit()?;
        Ok(due)
    }
}

#[cfg(test)]
mod tests;
