//! Approvals as a state machine in sqlite, and the audit trail.
//!
//! ```text
//! pending ──✓×required──► approved ──► applying ──► applied | failed
//!    │  ▲                    │
//!    │  └── ✓ withdrawn ─────┘        (redacting a ✓ before the action starts)
//!    ├──❌──► denied
//!    ├──ttl──► expired                (the core's clock)
//!    └──request redacted──► cancelled (also from approved)
//! ```
//!
//! Every transition is one `UPDATE … WHERE state = <from>` inside an immediate transaction, so it
//! happens once whatever arrives twice: a duplicated transaction, two operators at the same
//! moment, a ✓ after a ❌, a restart.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::{Store, now_us};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Applying,
    Applied,
    Failed,
    Denied,
    Expired,
    Cancelled,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "applying" => Self::Applying,
            "applied" => Self::Applied,
            "failed" => Self::Failed,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown approval state {other:?}").into(),
                ));
            }
        })
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: i64,
    pub kind: String,
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

impl ApprovalState {
    /// Whether nothing can happen to a request in this state any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Applied | Self::Failed | Self::Denied | Self::Expired | Self::Cancelled
        )
    }
}

const COLUMNS: &str = "id, kind, agent, sha, requester, summary, state, required, created_us, \
                       expires_us, request_event, decided_us, reason, deploy, complete, outcome_told";

fn row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        id: r.get(0)?,
        kind: r.get(1)?,
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
    pub kind: &'a str,
    pub agent: &'a str,
    pub sha: &'a str,
    pub requester: &'a str,
    pub summary: &'a str,
    pub required: u32,
    pub ttl_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

/// What one counted reaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// This reaction event was counted before (a duplicated transaction).
    Duplicate,
    /// The request is no longer open.
    Closed(ApprovalState),
    /// The request's time ran out (it is now `expired`).
    Expired,
    /// This operator's ✓ is already counted.
    AlreadyVoted,
    /// Counted; more approvals are needed.
    Counted { approvals: u32, required: u32 },
    /// The request is now `approved`.
    Approved,
    /// The request is now `denied`.
    Denied,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

fn insert_audit(c: &rusqlite::Connection, a: &Audit<'_>) -> rusqlite::Result<()> {
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

fn get(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<Option<Approval>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
}

fn approvals_count(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<u32> {
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
                new.kind,
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
                action: new.kind,
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

    pub fn set_request_event(&self, id: i64, event_id: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "UPDATE approvals SET request_event = ?2 WHERE id = ?1 AND request_event IS NULL",
            params![id, event_id],
        )?;
        Ok(())
    }

    /// Counts one operator reaction. The caller has checked who the voter is. `required` is the
    /// hive's configured number of approvals: a request needs at least that many, whatever was
    /// recorded when it was filed (a filer's own `--config` can never lower it).
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
        if a.state != ApprovalState::Pending {
            return Ok(VoteOutcome::Closed(a.state));
        }
        let now = now_us();
        if now >= a.expires_us {
            tx.execute(
                "UPDATE approvals SET state = 'expired', decided_us = ?2, reason = 'expired'
                 WHERE id = ?1 AND state = 'pending'",
                params![a.id, now],
            )?;
            tx.commit()?;
            return Ok(VoteOutcome::Expired);
        }
        let verdict_str = match verdict {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        };
        if verdict == Verdict::Approve {
            let already: bool = tx
                .query_row(
                    "SELECT 1 FROM approval_votes WHERE approval_id = ?1 AND voter = ?2
                     AND verdict = 'approve' AND withdrawn = 0",
                    params![a.id, voter],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if already {
                return Ok(VoteOutcome::AlreadyVoted);
            }
        }
        tx.execute(
            "INSERT INTO approval_votes (reaction_event, approval_id, voter, verdict, ts_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![reaction_event, a.id, voter, verdict_str, now],
        )?;
        let outcome = match verdict {
            Verdict::Deny => {
                tx.execute(
                    "UPDATE approvals SET state = 'denied', decided_us = ?2, reason = ?3
                     WHERE id = ?1 AND state = 'pending'",
                    params![a.id, now, format!("denied by {voter}")],
                )?;
                VoteOutcome::Denied
            }
            Verdict::Approve => {
                let n = approvals_count(&tx, a.id)?;
                let required = a.required.max(required);
                if n >= required {
                    tx.execute(
                        "UPDATE approvals SET state = 'approved', decided_us = ?2
                         WHERE id = ?1 AND state = 'pending'",
                        params![a.id, now],
                    )?;
                    VoteOutcome::Approved
                } else {
                    VoteOutcome::Counted {
                        approvals: n,
                        required,
                    }
                }
            }
        };
        insert_audit(
            &tx,
            &Audit {
                actor: voter,
                action: verdict_str,
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
    /// `approved` request back to `pending` if it no longer has enough approvals. Returns the
    /// request and whether it went back.
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
        tx.execute(
            "UPDATE approval_votes SET withdrawn = 1 WHERE reaction_event = ?1",
            [reaction_event],
        )?;
        let a = get(&tx, id)?.ok_or_else(|| anyhow::anyhow!("vote without approval {id}"))?;
        let mut reverted = false;
        if verdict == "approve"
            && a.state == ApprovalState::Approved
            && approvals_count(&tx, id)? < a.required.max(required)
        {
            reverted = tx.execute(
                "UPDATE approvals SET state = 'pending', decided_us = NULL
                 WHERE id = ?1 AND state = 'approved'",
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
             WHERE id = ?1 AND state IN ('pending', 'approved')",
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
                "SELECT {COLUMNS} FROM approvals WHERE state = 'pending' AND expires_us <= ?1"
            ))?;
            st.query_map([now], row)?.collect::<Result<_, _>>()?
        };
        for a in &due {
            tx.execute(
                "UPDATE approvals SET state = 'expired', decided_us = ?2, reason = 'expired'
                 WHERE id = ?1 AND state = 'pending'",
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

    /// When the next pending request expires.
    pub fn next_expiry(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.lock().query_row(
            "SELECT MIN(expires_us) FROM approvals WHERE state = 'pending'",
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

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn file(store: &Store, required: u32, ttl_us: i64) -> i64 {
        let id = store
            .create_approval(&NewApproval {
                kind: "apply_commit",
                agent: "echo",
                sha: SHA,
                requester: "hm1nd",
                summary: "make it better",
                required,
                ttl_us,
            })
            .unwrap();
        assert!(store.complete_approval(id).unwrap());
        store.set_request_event(id, &format!("$req{id}")).unwrap();
        id
    }

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn one_approval_applies_once() {
        let s = Store::open_in_memory().unwrap();
        let id = file(&s, 1, HOUR);
        assert_eq!(
            s.vote(id, "$r1", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Approved
        );
        // The same reaction again (duplicated transaction), a second operator, a ❌ after ✓.
        assert_eq!(
            s.vote(id, "$r1", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Duplicate
        );
        assert_eq!(
            s.vote(id, "$r2", "@op2:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Closed(ApprovalState::Approved)
        );
        assert_eq!(
            s.vote(id, "$r3", "@op2:x", Verdict::Deny, 1).unwrap(),
            VoteOutcome::Closed(ApprovalState::Approved)
        );
        assert!(s.start_apply(id).unwrap());
        assert!(!s.start_apply(id).unwrap(), "the apply starts once");
        assert!(s.finish_apply(id, Ok(2)).unwrap());
        assert!(!s.finish_apply(id, Err("again")).unwrap());
        let a = s.approval(id).unwrap().unwrap();
        assert_eq!((a.state, a.deploy), (ApprovalState::Applied, Some(2)));
        let log = s.audit_log(100).unwrap();
        let outcomes: Vec<&str> = log.iter().map(|e| e.outcome.as_str()).collect();
        assert_eq!(outcomes, ["requested", "approved", "applying", "applied"]);
    }

    #[test]
    fn deny_wins_and_approve_after_deny_is_ignored() {
        let s = Store::open_in_memory().unwrap();
        let id = file(&s, 1, HOUR);
        assert_eq!(
            s.vote(id, "$d", "@op:x", Verdict::Deny, 1).unwrap(),
            VoteOutcome::Denied
        );
        assert_eq!(
            s.vote(id, "$a", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Closed(ApprovalState::Denied)
        );
        assert!(!s.start_apply(id).unwrap());
    }

    #[test]
    fn m_of_n_and_withdrawal() {
        let s = Store::open_in_memory().unwrap();
        let id = file(&s, 2, HOUR);
        assert_eq!(
            s.vote(id, "$a1", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Counted {
                approvals: 1,
                required: 2
            }
        );
        // The same operator reacting twice (✅ then ✓) counts once.
        assert_eq!(
            s.vote(id, "$a1b", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::AlreadyVoted
        );
        assert_eq!(
            s.vote(id, "$a2", "@op2:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Approved
        );
        // A ✓ redacted before the action starts withdraws it.
        let (a, reverted) = s.withdraw_vote("$a2", "@op2:x", 1).unwrap().unwrap();
        assert!(reverted);
        assert_eq!(a.state, ApprovalState::Pending);
        assert!(!s.start_apply(id).unwrap());
        assert!(
            s.withdraw_vote("$a2", "@op2:x", 1).unwrap().is_none(),
            "once"
        );
        assert_eq!(
            s.vote(id, "$a3", "@op2:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Approved
        );
        assert!(s.start_apply(id).unwrap());
        // Once applying, a withdrawal changes nothing.
        let (a, reverted) = s.withdraw_vote("$a3", "@op2:x", 1).unwrap().unwrap();
        assert!(!reverted);
        assert_eq!(a.state, ApprovalState::Applying);
    }

    #[test]
    fn the_hives_required_count_is_a_floor() {
        let s = Store::open_in_memory().unwrap();
        // Filed with required = 1 (a filer's own config), decided with the hive's 2.
        let id = file(&s, 1, HOUR);
        assert_eq!(
            s.vote(id, "$a1", "@op:x", Verdict::Approve, 2).unwrap(),
            VoteOutcome::Counted {
                approvals: 1,
                required: 2
            }
        );
        assert_eq!(
            s.vote(id, "$a2", "@op2:x", Verdict::Approve, 2).unwrap(),
            VoteOutcome::Approved
        );
        let (a, reverted) = s.withdraw_vote("$a2", "@op2:x", 2).unwrap().unwrap();
        assert!(reverted, "below the hive's count again: {a:?}");
    }

    #[test]
    fn incomplete_requests_are_not_posted_and_outcomes_are_told_once() {
        let s = Store::open_in_memory().unwrap();
        let id = s
            .create_approval(&NewApproval {
                kind: "apply_commit",
                agent: "echo",
                sha: SHA,
                requester: "hm1nd",
                summary: "s",
                required: 1,
                ttl_us: HOUR,
            })
            .unwrap();
        assert!(s.unposted_approvals().unwrap().is_empty(), "not complete");
        assert!(
            s.cancel_stale_filings(HOUR).unwrap().is_empty(),
            "still young"
        );
        assert!(s.complete_approval(id).unwrap());
        assert_eq!(s.unposted_approvals().unwrap().len(), 1);
        let stale = s
            .create_approval(&NewApproval {
                kind: "apply_commit",
                agent: "echo",
                sha: SHA,
                requester: "hm1nd",
                summary: "s",
                required: 1,
                ttl_us: HOUR,
            })
            .unwrap();
        let cancelled = s.cancel_stale_filings(-1).unwrap();
        assert_eq!(cancelled.iter().map(|a| a.id).collect::<Vec<_>>(), [stale]);
        assert!(s.untold_outcomes().unwrap().iter().any(|a| a.id == stale));
        let post = crate::store::OutboxRow {
            txn_id: "hh-outcome".into(),
            room_key: "agent:hm1nd".into(),
            content: "{}".into(),
        };
        assert!(s.tell_outcome(stale, Some(&post)).unwrap());
        assert!(!s.tell_outcome(stale, Some(&post)).unwrap(), "once");
        assert!(s.untold_outcomes().unwrap().is_empty());
        assert_eq!(s.due_posts(10).unwrap().len(), 1);
    }

    #[test]
    fn expiry_and_cancel() {
        let s = Store::open_in_memory().unwrap();
        let gone = file(&s, 1, -1);
        assert_eq!(
            s.vote(gone, "$x", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Expired
        );
        let later = file(&s, 1, -1);
        let expired = s.expire_due().unwrap();
        assert_eq!(
            expired.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![later]
        );
        let id = file(&s, 1, HOUR);
        assert!(s.next_expiry().unwrap().is_some());
        assert!(s.cancel_approval(id, "@op:x", "request redacted").unwrap());
        assert!(!s.cancel_approval(id, "@op:x", "again").unwrap());
        assert_eq!(
            s.vote(id, "$y", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Closed(ApprovalState::Cancelled)
        );
    }
}
