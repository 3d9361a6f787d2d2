//! The rules of `decide`, one named row each.

use super::*;
use crate::store::{ApprovalKind, ApprovalState, VoteOutcome};

fn user(s: &str) -> OwnedUserId {
    UserId::parse(s).expect("a valid user id")
}

fn name(s: &str) -> AgentName {
    AgentName::parse(s).expect("a valid agent name")
}

#[test]
fn who_may_vote() {
    struct Case {
        name: &'static str,
        agent: Option<&'static str>,
        local: bool,
        operator: bool,
        power: Option<i64>,
        want: Result<Standing, &'static str>,
    }
    let op = |power| Case {
        name: "",
        agent: None,
        local: true,
        operator: true,
        power,
        want: Ok(Standing::Approver),
    };
    let cases = [
        Case {
            name: "an operator at the threshold",
            ..op(Some(100))
        },
        Case {
            name: "an operator above it",
            ..op(Some(150))
        },
        Case {
            name: "an operator whose power level is not known yet",
            want: Ok(Standing::AskPowerLevel),
            ..op(None)
        },
        Case {
            name: "an operator below the threshold",
            want: Err("@alice:hs has power level 99 in the approvals room, below 100"),
            ..op(Some(99))
        },
        Case {
            name: "a local user who is not an operator",
            operator: false,
            want: Err("@alice:hs is not an operator"),
            ..op(Some(100))
        },
        Case {
            name: "a non-operator is refused before any power level is fetched",
            operator: false,
            want: Err("@alice:hs is not an operator"),
            ..op(None)
        },
        Case {
            name: "an operator's name on another server",
            local: false,
            want: Err("@alice:hs is on another server"),
            ..op(Some(100))
        },
        Case {
            name: "an agent, even one listed as an operator with full power",
            agent: Some("hm1nd"),
            want: Err("@alice:hs is an agent (hm1nd)"),
            ..op(Some(100))
        },
        Case {
            name: "an agent with no power level known",
            agent: Some("echo"),
            operator: false,
            want: Err("@alice:hs is an agent (echo)"),
            ..op(None)
        },
    ];
    let alice = user("@alice:hs");
    for c in cases {
        let got = standing(
            &Sender {
                user: &alice,
                agent: c.agent.map(name),
                local: c.local,
                operator: c.operator,
                power: c.power,
            },
            100,
        );
        match (&got, c.want) {
            (Standing::NotApprover(why), Err(text)) => {
                assert_eq!(why.to_string(), text, "{}", c.name)
            }
            (got, Ok(want)) => assert_eq!(*got, want, "{}", c.name),
            (got, Err(text)) => panic!("{}: {got:?}, not refused with {text:?}", c.name),
        }
    }
}

fn request() -> Approval {
    Approval {
        id: 7,
        kind: ApprovalKind::ApplyCommit,
        agent: "echo".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        requester: "hm1nd".into(),
        summary: "s".into(),
        state: ApprovalState::Pending,
        required: 1,
        created_us: 0,
        expires_us: 1,
        request_event: Some("$req".into()),
        decided_us: None,
        reason: None,
        deploy: None,
        complete: true,
        outcome_told: false,
    }
}

fn question() -> Question {
    Question {
        id: 3,
        agent: "echo".into(),
        question: "which?".into(),
        options: vec!["red".into(), "blue".into()],
        state: crate::store::QuestionState::Pending,
        expires_us: 1,
        request_event: Some("$q".into()),
        answer: None,
        answered_by: None,
    }
}

/// What a case expects: `Outcome` without its borrowed request and question (which are the
/// fixtures whenever they are named).
#[derive(Debug, PartialEq, Eq)]
enum Want {
    NeedsStanding,
    Nothing,
    Report(Action, bool, &'static str),
    Answer(&'static str),
    Vote(Verdict),
    Cancel,
    Withdraw(&'static str),
    Confirm,
}

fn want_of(o: &Outcome<'_>) -> (Want, Option<String>) {
    match o {
        Outcome::NeedsStanding => (Want::NeedsStanding, None),
        Outcome::Nothing => (Want::Nothing, None),
        Outcome::Report {
            action,
            request,
            what,
        } => (
            Want::Report(*action, request.is_some(), ""),
            Some(what.clone()),
        ),
        Outcome::Answer { answer, .. } => (Want::Answer(""), Some(answer.clone())),
        Outcome::Vote { verdict, .. } => (Want::Vote(*verdict), None),
        Outcome::Cancel { .. } => (Want::Cancel, None),
        Outcome::Confirm { .. } => (Want::Confirm, None),
        Outcome::Withdraw { reaction } => (Want::Withdraw(""), Some((*reaction).to_owned())),
    }
}

#[test]
fn power_levels() {
    struct Case {
        name: &'static str,
        content: serde_json::Value,
        user: &'static str,
        want: i64,
    }
    let cases = [
        Case {
            name: "a listed user",
            content: serde_json::json!({"users": {"@op:hs": 100}, "users_default": 10}),
            user: "@op:hs",
            want: 100,
        },
        Case {
            name: "an unlisted user has the default",
            content: serde_json::json!({"users": {"@op:hs": 100}, "users_default": 10}),
            user: "@bob:hs",
            want: 10,
        },
        Case {
            name: "no default is 0",
            content: serde_json::json!({"users": {}}),
            user: "@bob:hs",
            want: 0,
        },
        Case {
            name: "a level that is no integer falls back to the default",
            content: serde_json::json!({"users": {"@op:hs": "100"}, "users_default": 5}),
            user: "@op:hs",
            want: 5,
        },
        Case {
            name: "an empty content gives nobody power",
            content: serde_json::json!({}),
            user: "@op:hs",
            want: 0,
        },
        Case {
            name: "a user id with a slash or tilde is looked up as written",
            content: serde_json::json!({"users": {"@a/b~c:hs": 100}}),
            user: "@a/b~c:hs",
            want: 100,
        },
    ];
    for c in cases {
        let pl = PowerLevels::from_content(&c.content);
        assert_eq!(pl.of(&user(c.user)), c.want, "{}", c.name);
    }
}

#[test]
fn what_a_signal_means() {
    struct Case {
        name: &'static str,
        signal: ApprovalSignal,
        /// The signal is about the request fixture / the question fixture.
        on_request: bool,
        on_question: bool,
        sender_is_requester: bool,
        approver: Option<Result<(), NotApprover>>,
        want: Want,
    }
    let react = |key: &str, target: &str| ApprovalSignal::Reaction {
        target: target.into(),
        key: key.into(),
    };
    let alice = user("@alice:hs");
    let not_op = || {
        Some(Err(NotApprover::NotOperator {
            user: alice.clone(),
        }))
    };
    let agent = || {
        Some(Err(NotApprover::Agent {
            user: user("@hm1nd:hs"),
            agent: name("hm1nd"),
        }))
    };
    let low = || {
        Some(Err(NotApprover::LowPower {
            user: alice.clone(),
            level: 50,
            min: 100,
        }))
    };
    let on_req = |signal, approver, want| Case {
        name: "",
        signal,
        on_request: true,
        on_question: false,
        sender_is_requester: false,
        approver,
        want,
    };
    let cases = [
        Case {
            name: "an operator's ✓ is a vote",
            ..on_req(
                react("✓", "$req"),
                Some(Ok(())),
                Want::Vote(Verdict::Approve),
            )
        },
        Case {
            name: "an operator's ✅ is a vote",
            ..on_req(
                react("✅", "$req"),
                Some(Ok(())),
                Want::Vote(Verdict::Approve),
            )
        },
        Case {
            name: "✔️ with its variation selector approves too",
            ..on_req(
                react("✔\u{FE0F}", "$req"),
                Some(Ok(())),
                Want::Vote(Verdict::Approve),
            )
        },
        Case {
            name: "an operator's ❌ denies",
            ..on_req(react("❌", "$req"), Some(Ok(())), Want::Vote(Verdict::Deny))
        },
        Case {
            name: "a ✅ asks for the sender's standing before anything",
            ..on_req(react("✅", "$req"), None, Want::NeedsStanding)
        },
        Case {
            name: "another emoji means nothing, and costs no power-level fetch",
            ..on_req(react("👍", "$req"), None, Want::Nothing)
        },
        Case {
            name: "another emoji from a non-operator is not even reported",
            ..on_req(react("🎉", "$req"), not_op(), Want::Nothing)
        },
        Case {
            name: "a non-operator's ✅ is reported",
            ..on_req(
                react("✅", "$req"),
                not_op(),
                Want::Report(
                    Action::Approve,
                    true,
                    "reacted ✅ to request #7: ignored, @alice:hs is not an operator",
                ),
            )
        },
        Case {
            name: "an operator below the power level is reported",
            ..on_req(
                react("✅", "$req"),
                low(),
                Want::Report(
                    Action::Approve,
                    true,
                    "reacted ✅ to request #7: ignored, @alice:hs has power level 50 in the approvals room, below 100",
                ),
            )
        },
        Case {
            name: "the requesting agent approving itself is named",
            sender_is_requester: true,
            ..on_req(
                react("✅", "$req"),
                agent(),
                Want::Report(
                    Action::Approve,
                    true,
                    "reacted ✅ to request #7: ignored, @hm1nd:hs is an agent (hm1nd), the requester itself",
                ),
            )
        },
        Case {
            name: "an agent's ❌ is reported as a deny",
            ..on_req(
                react("❌", "$req"),
                agent(),
                Want::Report(
                    Action::Deny,
                    true,
                    "reacted ❌ to request #7: ignored, @hm1nd:hs is an agent (hm1nd)",
                ),
            )
        },
        Case {
            name: "a ✅ on an event that is no request is reported without asking who",
            on_request: false,
            ..on_req(
                react("✅", "$other"),
                None,
                Want::Report(
                    Action::Approve,
                    false,
                    "reacted ✅ to $other, which is not an approval request; nothing done",
                ),
            )
        },
        Case {
            name: "an operator's redaction of a request cancels it",
            ..on_req(
                ApprovalSignal::Redaction {
                    redacts: "$req".into(),
                },
                Some(Ok(())),
                Want::Cancel,
            )
        },
        Case {
            name: "a redaction of a request asks who first",
            ..on_req(
                ApprovalSignal::Redaction {
                    redacts: "$req".into(),
                },
                None,
                Want::NeedsStanding,
            )
        },
        Case {
            name: "a non-operator's redaction of a request is reported",
            ..on_req(
                ApprovalSignal::Redaction {
                    redacts: "$req".into(),
                },
                not_op(),
                Want::Report(
                    Action::Cancel,
                    true,
                    "redacted request #7: ignored, @alice:hs is not an operator",
                ),
            )
        },
        Case {
            name: "a redacted vote is withdrawn (only its sender or a moderator could redact it)",
            on_request: false,
            ..on_req(
                ApprovalSignal::Redaction {
                    redacts: "$vote".into(),
                },
                None,
                Want::Withdraw("$vote"),
            )
        },
        Case {
            name: "an operator's keycap answers a question",
            on_request: false,
            on_question: true,
            ..on_req(
                react("2\u{FE0F}\u{20E3}", "$q"),
                Some(Ok(())),
                Want::Answer("blue"),
            )
        },
        Case {
            name: "a keycap past the options means nothing",
            on_request: false,
            on_question: true,
            ..on_req(react("3\u{FE0F}\u{20E3}", "$q"), None, Want::Nothing)
        },
        Case {
            name: "a ✅ on a question means nothing",
            on_request: false,
            on_question: true,
            ..on_req(react("✅", "$q"), Some(Ok(())), Want::Nothing)
        },
        Case {
            name: "a non-operator's keycap on a question is reported",
            on_request: false,
            on_question: true,
            ..on_req(
                react("1\u{20E3}", "$q"),
                not_op(),
                Want::Report(
                    Action::Answer,
                    false,
                    "reacted 1\u{20E3} to question #3: ignored, @alice:hs is not an operator",
                ),
            )
        },
        Case {
            name: "an operator's reply in a question's thread answers it, trimmed",
            on_request: false,
            on_question: true,
            ..on_req(
                ApprovalSignal::Reply {
                    target: "$q".into(),
                    body: "  green \n".into(),
                },
                Some(Ok(())),
                Want::Answer("green"),
            )
        },
        Case {
            name: "an empty reply answers nothing",
            on_request: false,
            on_question: true,
            ..on_req(
                ApprovalSignal::Reply {
                    target: "$q".into(),
                    body: "  ".into(),
                },
                Some(Ok(())),
                Want::Nothing,
            )
        },
        Case {
            name: "a non-operator's reply is reported",
            on_request: false,
            on_question: true,
            ..on_req(
                ApprovalSignal::Reply {
                    target: "$q".into(),
                    body: "me".into(),
                },
                not_op(),
                Want::Report(
                    Action::Answer,
                    false,
                    "answered question #3: ignored, @alice:hs is not an operator",
                ),
            )
        },
        Case {
            name: "a reply elsewhere means nothing",
            on_request: false,
            ..on_req(
                ApprovalSignal::Reply {
                    target: "$x".into(),
                    body: "hi".into(),
                },
                None,
                Want::Nothing,
            )
        },
    ];
    let (a, q) = (request(), question());
    for c in cases {
        let facts = Facts {
            signal: &c.signal,
            sender: &alice,
            question: c.on_question.then_some(&q),
            request: c.on_request.then_some(&a),
            sender_is_requester: c.sender_is_requester,
            approver: c.approver,
        };
        let got = decide(&facts);
        let (kind, text) = want_of(&got);
        match c.want {
            Want::Report(action, with_request, what) => {
                assert_eq!(kind, Want::Report(action, with_request, ""), "{}", c.name);
                assert_eq!(text.as_deref(), Some(what), "{}", c.name);
            }
            Want::Answer(answer) => {
                assert_eq!(kind, Want::Answer(""), "{}", c.name);
                assert_eq!(text.as_deref(), Some(answer), "{}", c.name);
                assert!(matches!(got, Outcome::Answer { question, .. } if question.id == q.id));
            }
            Want::Withdraw(reaction) => {
                assert_eq!(kind, Want::Withdraw(""), "{}", c.name);
                assert_eq!(text.as_deref(), Some(reaction), "{}", c.name);
            }
            want => assert_eq!(kind, want, "{}", c.name),
        }
        if let Outcome::Vote { request, .. } | Outcome::Cancel { request } = got {
            assert_eq!(request.id, a.id, "{}", c.name);
        }
    }
}

#[test]
fn when_a_request_is_decided_or_expires() {
    struct Case {
        name: &'static str,
        ballot: Ballot,
        want: VoteOutcome,
    }
    let open = Ballot {
        duplicate: false,
        state: ApprovalState::Pending,
        expires_us: 100,
        now_us: 50,
        verdict: Verdict::Approve,
        already_approved: false,
        approvals: 0,
        filed_required: 1,
        hive_required: 1,
    };
    let cases = [
        Case {
            name: "one ✓ of one approves",
            ballot: open,
            want: VoteOutcome::Approved,
        },
        Case {
            name: "the first ✓ of two is counted",
            ballot: Ballot {
                filed_required: 2,
                hive_required: 2,
                ..open
            },
            want: VoteOutcome::Counted {
                approvals: 1,
                required: 2,
            },
        },
        Case {
            name: "the second ✓ of two approves",
            ballot: Ballot {
                approvals: 1,
                filed_required: 2,
                hive_required: 2,
                ..open
            },
            want: VoteOutcome::Approved,
        },
        Case {
            name: "the hive's count is a floor under the filed one",
            ballot: Ballot {
                filed_required: 1,
                hive_required: 2,
                ..open
            },
            want: VoteOutcome::Counted {
                approvals: 1,
                required: 2,
            },
        },
        Case {
            name: "a filed count above the hive's still holds",
            ballot: Ballot {
                approvals: 1,
                filed_required: 3,
                hive_required: 1,
                ..open
            },
            want: VoteOutcome::Counted {
                approvals: 2,
                required: 3,
            },
        },
        Case {
            name: "an operator's second ✓ counts once",
            ballot: Ballot {
                already_approved: true,
                approvals: 1,
                filed_required: 2,
                ..open
            },
            want: VoteOutcome::AlreadyVoted,
        },
        Case {
            name: "a ❌ denies at once, even with ✓s counted",
            ballot: Ballot {
                verdict: Verdict::Deny,
                approvals: 1,
                already_approved: true,
                filed_required: 2,
                ..open
            },
            want: VoteOutcome::Denied,
        },
        Case {
            name: "not expired one microsecond before its time",
            ballot: Ballot { now_us: 99, ..open },
            want: VoteOutcome::Approved,
        },
        Case {
            name: "expired at its time",
            ballot: Ballot {
                now_us: 100,
                ..open
            },
            want: VoteOutcome::Expired,
        },
        Case {
            name: "a ❌ after the time expires it too",
            ballot: Ballot {
                now_us: 101,
                verdict: Verdict::Deny,
                ..open
            },
            want: VoteOutcome::Expired,
        },
        Case {
            name: "a request approved already is closed to more votes",
            ballot: Ballot {
                state: ApprovalState::Approved,
                ..open
            },
            want: VoteOutcome::Closed(ApprovalState::Approved),
        },
        Case {
            name: "a denied request is closed, even past its time",
            ballot: Ballot {
                state: ApprovalState::Denied,
                now_us: 1000,
                ..open
            },
            want: VoteOutcome::Closed(ApprovalState::Denied),
        },
        Case {
            name: "an approver's ❌ denies a purge waiting for its confirmation",
            ballot: Ballot {
                state: ApprovalState::Confirming,
                verdict: Verdict::Deny,
                ..open
            },
            want: VoteOutcome::Denied,
        },
        Case {
            name: "a ✓ to a confirming purge is closed (it is approved)",
            ballot: Ballot {
                state: ApprovalState::Confirming,
                ..open
            },
            want: VoteOutcome::Closed(ApprovalState::Confirming),
        },
        Case {
            name: "a ❌ to a confirming purge past its time expires it",
            ballot: Ballot {
                state: ApprovalState::Confirming,
                verdict: Verdict::Deny,
                now_us: 100,
                ..open
            },
            want: VoteOutcome::Expired,
        },
        Case {
            name: "a ❌ once applying is closed",
            ballot: Ballot {
                state: ApprovalState::Applying,
                verdict: Verdict::Deny,
                ..open
            },
            want: VoteOutcome::Closed(ApprovalState::Applying),
        },
        Case {
            name: "a reaction counted before is a duplicate, whatever else",
            ballot: Ballot {
                duplicate: true,
                state: ApprovalState::Cancelled,
                now_us: 1000,
                ..open
            },
            want: VoteOutcome::Duplicate,
        },
    ];
    for c in cases {
        assert_eq!(tally(&c.ballot), c.want, "{}", c.name);
    }
}

#[test]
fn when_a_withdrawn_vote_reverts() {
    struct Case {
        name: &'static str,
        verdict: Verdict,
        state: ApprovalState,
        remaining: u32,
        required: u32,
        want: bool,
    }
    let cases = [
        Case {
            name: "a ✓ withdrawn below the count, before the apply",
            verdict: Verdict::Approve,
            state: ApprovalState::Approved,
            remaining: 0,
            required: 1,
            want: true,
        },
        Case {
            name: "enough ✓s left",
            verdict: Verdict::Approve,
            state: ApprovalState::Approved,
            remaining: 2,
            required: 2,
            want: false,
        },
        Case {
            name: "the apply has started",
            verdict: Verdict::Approve,
            state: ApprovalState::Applying,
            remaining: 0,
            required: 1,
            want: false,
        },
        Case {
            name: "a ✓ withdrawn while still pending changes nothing",
            verdict: Verdict::Approve,
            state: ApprovalState::Pending,
            remaining: 0,
            required: 2,
            want: false,
        },
        Case {
            name: "a ✓ withdrawn below the count while a purge waits for its confirmation",
            verdict: Verdict::Approve,
            state: ApprovalState::Confirming,
            remaining: 1,
            required: 2,
            want: true,
        },
        Case {
            name: "a confirming purge with enough ✓s left stays",
            verdict: Verdict::Approve,
            state: ApprovalState::Confirming,
            remaining: 2,
            required: 2,
            want: false,
        },
        Case {
            name: "a withdrawn ❌ does not reopen a denied request",
            verdict: Verdict::Deny,
            state: ApprovalState::Denied,
            remaining: 0,
            required: 1,
            want: false,
        },
    ];
    for c in cases {
        assert_eq!(
            reverts(c.verdict, c.state, c.remaining, c.required),
            c.want,
            "{}",
            c.name
        );
    }
}
