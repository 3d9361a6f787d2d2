//! The approvals state machine against an in-memory store.

use super::*;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn file(store: &Store, required: u32, ttl_us: i64) -> i64 {
    let id = store
        .create_approval(&NewApproval {
            kind: ApprovalKind::ApplyCommit,
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
            kind: ApprovalKind::ApplyCommit,
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
            kind: ApprovalKind::ApplyCommit,
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
