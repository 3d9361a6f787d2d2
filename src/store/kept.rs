//! Kept agents (destroyed, their state on disk) and a purge's second confirmation.
//!
//! `kept_agents` has one row per destroyed agent: the core starts none of them, routes nothing
//! to them, and only a revive (the row deleted, the agent started again) or a purge (the row
//! deleted with the directory) ends it. A purge request, once approved, waits in `confirming`
//! for the operator's second confirmation ([`Store::ask_confirmation`], [`Store::confirm`]):
//! each step one conditional `UPDATE … WHERE state = <from>`, audited, so it happens once.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::ApprovalState;
use super::approvals::{approvals_count, get, insert_audit};
use super::{Audit, Store, now_us};

/// One kept agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAgent {
    pub name: String,
    pub since_us: i64,
    /// The destroy request that kept it.
    pub approval_id: i64,
    /// The config it ran when it was destroyed.
    pub sha: String,
}

fn kept_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeptAgent> {
    Ok(KeptAgent {
        name: r.get(0)?,
        since_us: r.get(1)?,
        approval_id: r.get(2)?,
        sha: r.get(3)?,
    })
}

impl Store {
    /// Records `name` as kept (destroy request `approval_id`, on config `sha`) and dead-letters
    /// every message still queued for it with `reason`, in one transaction. False if it was kept
    /// already (nothing changed).
    pub fn keep_agent(
        &self,
        name: &str,
        approval_id: i64,
        sha: &str,
        reason: &str,
    ) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_us();
        let new = tx.execute(
            "INSERT INTO kept_agents (name, since_us, approval_id, sha) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO NOTHING",
            params![name, now, approval_id, sha],
        )? == 1;
        if new {
            tx.execute(
                "UPDATE inbox SET state = 'dead', done_us = ?2, error = ?3
                 WHERE agent = ?1 AND state IN ('pending', 'inflight')",
                params![name, now, reason],
            )?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Every message queued for `name` (pending, or in flight) becomes a dead letter with
    /// `reason`. Returns how many.
    pub fn dead_letter_agent(&self, name: &str, reason: &str) -> anyhow::Result<usize> {
        Ok(self.lock().execute(
            "UPDATE inbox SET state = 'dead', done_us = ?2, error = ?3
             WHERE agent = ?1 AND state IN ('pending', 'inflight')",
            params![name, now_us(), reason],
        )?)
    }

    /// `name` is no longer kept (revived or purged). True if it was.
    pub fn unkeep_agent(&self, name: &str) -> anyhow::Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM kept_agents WHERE name = ?1", [name])?
            == 1)
    }

    /// Whether `name` is kept, and since when.
    pub fn kept_agent(&self, name: &str) -> anyhow::Result<Option<KeptAgent>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT name, since_us, approval_id, sha FROM kept_agents WHERE name = ?1",
                [name],
                kept_row,
            )
            .optional()?)
    }

    /// Every kept agent, by name.
    pub fn kept_agents(&self) -> anyhow::Result<Vec<KeptAgent>> {
        let c = self.lock();
        let mut st =
            c.prepare("SELECT name, since_us, approval_id, sha FROM kept_agents ORDER BY name")?;
        Ok(st.query_map([], kept_row)?.collect::<Result<_, _>>()?)
    }

    /// The uid recorded for `name`, if it was ever given one of its own (`Store::agent_uid`).
    pub fn recorded_uid(&self, name: &str) -> anyhow::Result<Option<u32>> {
        Ok(self
            .lock()
            .query_row("SELECT uid FROM agent_uids WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// A purge's agent has no harness state left to show (its directory is gone), nor a
    /// wanted state or a crash to remember: a new agent of that name starts afresh.
    pub fn forget_agent_state(&self, name: &str) -> anyhow::Result<()> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        tx.execute("DELETE FROM agents WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM agent_lifecycle WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    /// `approved` → `confirming` for request `id`: it now waits `ttl_us` for the second
    /// confirmation. True for exactly one caller.
    pub fn ask_confirmation(&self, id: i64, ttl_us: i64) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let asked = tx.execute(
            "UPDATE approvals SET state = 'confirming', expires_us = ?2
             WHERE id = ?1 AND state = 'approved'",
            params![id, now_us().saturating_add(ttl_us)],
        )? == 1;
        if asked {
            let a = get(&tx, id)?.expect("just updated");
            insert_audit(
                &tx,
                &Audit {
                    actor: "hive-c0re",
                    action: "ask-confirmation",
                    approval_id: Some(id),
                    agent: Some(&a.agent),
                    sha: Some(&a.sha),
                    outcome: "confirming",
                    detail: None,
                },
            )?;
        }
        tx.commit()?;
        Ok(asked)
    }

    /// Ties purge request `id` to the destroy it is filed against (`destroy_id`: the
    /// `kept_agents` row's approval_id at filing). Called before the request is completed.
    pub fn tie_purge(&self, id: i64, destroy_id: i64) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO purge_of (approval_id, destroy_id) VALUES (?1, ?2)",
            params![id, destroy_id],
        )?;
        Ok(())
    }

    /// The second confirmation of request `id` by operator `by` (event `event`), the hive's
    /// `required` count a floor as for a vote: `confirming` → `applying`, audited, once. In
    /// the same transaction, before anything starts:
    /// - its time is up: it expires;
    /// - its distinct ✓s (not withdrawn) are fewer than required: it goes back to `pending`;
    /// - (a purge) its agent is no longer kept by the destroy it was filed against (revived,
    ///   and maybe destroyed again since): it is cancelled.
    pub fn confirm(
        &self,
        id: i64,
        by: &str,
        event: &str,
        required: u32,
    ) -> anyhow::Result<Confirmation> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_us();
        let Some(a) = get(&tx, id)? else {
            return Ok(Confirmation::NotWaiting(None));
        };
        if a.state != ApprovalState::Confirming {
            return Ok(Confirmation::NotWaiting(Some(a.state)));
        }
        let tied: Option<i64> = tx
            .query_row(
                "SELECT destroy_id FROM purge_of WHERE approval_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let kept_by: Option<i64> = tx
            .query_row(
                "SELECT approval_id FROM kept_agents WHERE name = ?1",
                [&a.agent],
                |r| r.get(0),
            )
            .optional()?;
        let approvals = approvals_count(&tx, id)?;
        let required = a.required.max(required);
        let outcome = if a.expires_us <= now {
            Confirmation::NotWaiting(Some(ApprovalState::Expired))
        } else if approvals < required {
            Confirmation::Short {
                approvals,
                required,
            }
        } else if let Some(filed_against) = tied.filter(|d| kept_by != Some(*d)) {
            Confirmation::Stale {
                filed_against,
                kept_by,
            }
        } else {
            Confirmation::Confirmed
        };
        let (to, decided, reason, audit_outcome) = match outcome {
            Confirmation::NotWaiting(_) => ("expired", Some(now), Some("expired"), "expired"),
            Confirmation::Short { .. } => ("pending", None, None, "back to pending"),
            Confirmation::Stale { .. } => (
                "cancelled",
                Some(now),
                Some("its agent was revived after the destroy it was filed against"),
                "cancelled",
            ),
            Confirmation::Confirmed => ("applying", None, None, "applying"),
        };
        tx.execute(
            "UPDATE approvals SET state = ?2, decided_us = ?3, reason = COALESCE(?4, reason)
             WHERE id = ?1 AND state = 'confirming'",
            params![id, to, decided, reason],
        )?;
        insert_audit(
            &tx,
            &Audit {
                actor: by,
                action: "confirm",
                approval_id: Some(id),
                agent: Some(&a.agent),
                sha: Some(&a.sha),
                outcome: audit_outcome,
                detail: Some(event),
            },
        )?;
        tx.commit()?;
        Ok(outcome)
    }
}

/// What a purge's second confirmation did ([`Store::confirm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// It is `applying` now: carry it out.
    Confirmed,
    /// It was not waiting for one (its state then, or now if it just expired; `None`: no such
    /// request).
    NotWaiting(Option<ApprovalState>),
    /// Its ✓s fell below the count: it is `pending` again.
    Short { approvals: u32, required: u32 },
    /// The agent is no longer kept by the destroy the purge was filed against (`kept_by`: the
    /// destroy that keeps it now, if any): it is cancelled.
    Stale {
        filed_against: i64,
        kept_by: Option<i64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ApprovalKind, ApprovalState, NewApproval, Verdict, VoteOutcome};

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
    const HOUR: i64 = 3_600_000_000;

    fn purge(s: &Store) -> i64 {
        purge_requiring(s, 1)
    }

    fn purge_requiring(s: &Store, required: u32) -> i64 {
        let id = s
            .create_approval(&NewApproval {
                kind: ApprovalKind::Purge,
                agent: "echo",
                sha: SHA,
                requester: "hm1nd",
                summary: "gone for good",
                required,
                ttl_us: HOUR,
            })
            .unwrap();
        assert!(s.complete_approval(id).unwrap());
        s.set_request_event(id, &format!("$req{id}")).unwrap();
        id
    }

    fn state(s: &Store, id: i64) -> ApprovalState {
        s.approval(id).unwrap().unwrap().state
    }

    #[test]
    fn a_purge_waits_for_its_second_confirmation_once() {
        let s = Store::open_in_memory().unwrap();
        let id = purge(&s);
        assert_eq!(ApprovalKind::Purge.as_str(), "purge");
        assert_eq!(
            s.confirm(id, "@op:x", "$c0", 1).unwrap(),
            Confirmation::NotWaiting(Some(ApprovalState::Pending)),
            "not approved yet"
        );
        assert_eq!(
            s.vote(id, "$r1", "@op:x", Verdict::Approve, 1).unwrap(),
            VoteOutcome::Approved
        );
        assert_eq!(
            s.confirm(id, "@op:x", "$c0", 1).unwrap(),
            Confirmation::NotWaiting(Some(ApprovalState::Approved)),
            "not asked yet"
        );
        assert!(s.ask_confirmation(id, HOUR).unwrap());
        assert!(!s.ask_confirmation(id, HOUR).unwrap(), "asked once");
        assert_eq!(state(&s, id), ApprovalState::Confirming);
        assert!(
            !s.start_apply(id).unwrap(),
            "a ✓ alone never starts a purge"
        );
        assert_eq!(
            s.confirm(id, "@op:x", "$c1", 1).unwrap(),
            Confirmation::Confirmed
        );
        assert_eq!(
            s.confirm(id, "@op:x", "$c2", 1).unwrap(),
            Confirmation::NotWaiting(Some(ApprovalState::Applying)),
            "confirmed once"
        );
        assert_eq!(state(&s, id), ApprovalState::Applying);
        let audit = s.audit_log(10).unwrap();
        assert!(
            audit.iter().any(|e| e.action == "confirm"
                && e.actor == "@op:x"
                && e.detail.as_deref() == Some("$c1")),
            "{audit:?}"
        );
    }

    #[test]
    fn a_confirmation_too_late_expires_and_a_redaction_cancels() {
        let s = Store::open_in_memory().unwrap();
        let id = purge(&s);
        s.vote(id, "$r1", "@op:x", Verdict::Approve, 1).unwrap();
        assert!(s.ask_confirmation(id, -1).unwrap());
        assert_eq!(
            s.confirm(id, "@op:x", "$c1", 1).unwrap(),
            Confirmation::NotWaiting(Some(ApprovalState::Expired))
        );
        assert_eq!(state(&s, id), ApprovalState::Expired);

        let id = purge(&s);
        s.vote(id, "$r2", "@op:x", Verdict::Approve, 1).unwrap();
        assert!(s.ask_confirmation(id, HOUR).unwrap());
        assert!(s.cancel_approval(id, "@op:x", "request redacted").unwrap());
        assert_eq!(
            s.confirm(id, "@op:x", "$c2", 1).unwrap(),
            Confirmation::NotWaiting(Some(ApprovalState::Cancelled))
        );
        assert_eq!(state(&s, id), ApprovalState::Cancelled);
    }

    /// The review's scenario: required = 2, A ✓, B ✓ (confirming); B withdraws and B ❌; A's
    /// `purge echo` must not apply it.
    #[test]
    fn a_withdrawn_approval_or_a_deny_stops_a_confirming_purge() {
        let s = Store::open_in_memory().unwrap();
        let id = purge_requiring(&s, 2);
        s.vote(id, "$a", "@a:x", Verdict::Approve, 2).unwrap();
        assert_eq!(
            s.vote(id, "$b", "@b:x", Verdict::Approve, 2).unwrap(),
            VoteOutcome::Approved
        );
        assert!(s.ask_confirmation(id, HOUR).unwrap());
        let (a, reverted) = s.withdraw_vote("$b", "@b:x", 2).unwrap().unwrap();
        assert!(reverted, "a withdrawn ✓ takes it back: {a:?}");
        assert_eq!(state(&s, id), ApprovalState::Pending);
        assert_eq!(
            s.vote(id, "$bx", "@b:x", Verdict::Deny, 2).unwrap(),
            VoteOutcome::Denied
        );
        assert_eq!(
            s.confirm(id, "@a:x", "$c", 2).unwrap(),
            Confirmation::NotWaiting(Some(ApprovalState::Denied))
        );
        assert_eq!(state(&s, id), ApprovalState::Denied);

        // A ❌ while confirming denies it.
        let id = purge_requiring(&s, 1);
        s.vote(id, "$a2", "@a:x", Verdict::Approve, 1).unwrap();
        assert!(s.ask_confirmation(id, HOUR).unwrap());
        assert_eq!(
            s.vote(id, "$b2", "@b:x", Verdict::Deny, 1).unwrap(),
            VoteOutcome::Denied
        );
        assert_eq!(state(&s, id), ApprovalState::Denied);
        assert!(!s.start_apply(id).unwrap());

        // The confirmation recounts the ✓s: the hive now asks for two.
        let id = purge_requiring(&s, 1);
        s.vote(id, "$a3", "@a:x", Verdict::Approve, 1).unwrap();
        assert!(s.ask_confirmation(id, HOUR).unwrap());
        assert_eq!(
            s.confirm(id, "@a:x", "$c3", 2).unwrap(),
            Confirmation::Short {
                approvals: 1,
                required: 2
            }
        );
        assert_eq!(state(&s, id), ApprovalState::Pending);
    }

    /// A purge is tied to the destroy it was filed against: revived and destroyed again since,
    /// its confirmation cancels it.
    #[test]
    fn a_purge_filed_against_an_earlier_destroy_is_cancelled() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.keep_agent("echo", 3, SHA, "kept").unwrap());
        let id = purge(&s);
        s.tie_purge(id, 3).unwrap();
        s.vote(id, "$a", "@a:x", Verdict::Approve, 1).unwrap();
        assert!(s.ask_confirmation(id, HOUR).unwrap());
        assert!(s.unkeep_agent("echo").unwrap(), "revived");
        assert!(s.keep_agent("echo", 9, SHA, "kept again").unwrap());
        assert_eq!(
            s.confirm(id, "@a:x", "$c", 1).unwrap(),
            Confirmation::Stale {
                filed_against: 3,
                kept_by: Some(9)
            }
        );
        assert_eq!(state(&s, id), ApprovalState::Cancelled);

        let id = purge(&s);
        s.tie_purge(id, 9).unwrap();
        s.vote(id, "$a2", "@a:x", Verdict::Approve, 1).unwrap();
        assert!(s.ask_confirmation(id, HOUR).unwrap());
        assert_eq!(
            s.confirm(id, "@a:x", "$c2", 1).unwrap(),
            Confirmation::Confirmed,
            "the destroy it names still keeps it"
        );
    }

    /// Migration 010 rebuilds the approvals table: a store from before keeps its requests and
    /// their votes (whose reference to the table holds).
    #[test]
    fn requests_and_votes_survive_the_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c0re.db");
        {
            let mut c = rusqlite::Connection::open(&path).unwrap();
            c.pragma_update(None, "foreign_keys", true).unwrap();
            let before = super::super::MIGRATIONS
                .iter()
                .position(|(n, _)| *n == "010_kept")
                .expect("migration 010 is listed");
            for (i, (_, sql)) in super::super::MIGRATIONS[..before].iter().enumerate() {
                let tx = c.transaction().unwrap();
                tx.execute_batch(sql).unwrap();
                tx.pragma_update(None, "user_version", i + 1).unwrap();
                tx.commit().unwrap();
            }
            c.execute_batch(
                "INSERT INTO approvals (kind, agent, sha, requester, summary, state, required,
                                        created_us, expires_us, request_event, complete)
                 VALUES ('apply_commit', 'echo', 'abc', 'hm1nd', 's', 'applied', 1, 1, 2, '$e', 1);
                 INSERT INTO approval_votes (reaction_event, approval_id, voter, verdict, ts_us)
                 VALUES ('$r', 1, '@op:x', 'approve', 3);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let a = s.approval(1).unwrap().expect("the request survives");
        assert_eq!(
            (a.kind, a.state),
            (ApprovalKind::ApplyCommit, ApprovalState::Applied)
        );
        assert_eq!(
            s.approval_by_request_event("$e").unwrap().map(|a| a.id),
            Some(1)
        );
        assert_eq!(s.approval_of_vote("$r").unwrap().map(|a| a.id), Some(1));
        let c = s.lock();
        let bad: i64 = c
            .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(bad, 0, "every vote still names its request");
        assert!(
            c.execute(
                "INSERT INTO approval_votes (reaction_event, approval_id, voter, verdict, ts_us)
                 VALUES ('$r2', 99, '@op:x', 'approve', 3)",
                [],
            )
            .is_err(),
            "the reference is enforced"
        );
    }

    #[test]
    fn keeping_an_agent_dead_letters_its_queue_and_shows_it_kept() {
        let s = Store::open_in_memory().unwrap();
        s.set_agent_state("echo", crate::store::AgentState::Running, Some(7))
            .unwrap();
        s.ingest(
            &[("$e1".into(), "!r".into())],
            &[crate::store::Enqueue {
                event_id: "$e1".into(),
                room_id: "!r".into(),
                sender: "@op:x".into(),
                body: "hello".into(),
                origin_ts: 0,
                agents: vec!["echo".into()],
                hive_event: None,
                peer: None,
            }],
            0,
        )
        .unwrap();
        assert!(s.keep_agent("echo", 3, SHA, "echo is kept").unwrap());
        assert!(!s.keep_agent("echo", 4, SHA, "again").unwrap(), "once");
        let k = s.kept_agent("echo").unwrap().expect("kept");
        assert_eq!((k.approval_id, k.sha.as_str()), (3, SHA));
        assert_eq!(s.kept_agents().unwrap().len(), 1);
        let (item, _) = s.take_next("echo", 5).unwrap();
        assert!(item.is_none(), "nothing is delivered to a kept agent");
        assert_eq!(
            s.agent_states().unwrap(),
            vec![("echo".to_owned(), "kept".to_owned(), Some(7))]
        );
        // A message ingested after the commit point is not delivered to the departing harness.
        s.ingest(
            &[("$e2".into(), "!r".into())],
            &[crate::store::Enqueue {
                event_id: "$e2".into(),
                room_id: "!r".into(),
                sender: "@op:x".into(),
                body: "too late".into(),
                origin_ts: 0,
                agents: vec!["echo".into()],
                hive_event: None,
                peer: None,
            }],
            0,
        )
        .unwrap();
        let (item, _) = s.take_next("echo", 5).unwrap();
        assert!(item.is_none(), "nor anything ingested after it was kept");
        assert!(s.unkeep_agent("echo").unwrap());
        assert!(!s.unkeep_agent("echo").unwrap());
        assert_eq!(s.agent_states().unwrap()[0].1, "running");
        s.forget_agent_state("echo").unwrap();
        assert!(s.agent_states().unwrap().is_empty());
        assert_eq!(s.recorded_uid("echo").unwrap(), None, "never given a uid");
        let uid = s.agent_uid("echo", 600_000, |_| false).unwrap();
        assert_eq!(s.recorded_uid("echo").unwrap(), Some(uid));
    }
}
