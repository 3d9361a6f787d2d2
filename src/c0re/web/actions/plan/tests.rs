use super::*;

fn name(n: &str) -> AgentName {
    AgentName::parse(n).unwrap()
}

fn fields(option: Option<&str>, text: Option<&str>, why: Option<&str>) -> Fields {
    Fields {
        option: option.map(Into::into),
        text: text.map(Into::into),
        why: why.map(Into::into),
    }
}

#[test]
fn a_form_is_read_into_an_act() {
    struct Case {
        name: &'static str,
        verb: &'static str,
        target: &'static str,
        fields: Fields,
        want: Result<Act, Refused>,
    }
    let none = Fields::default;
    let cases = [
        Case {
            name: "approve a request",
            verb: "approve",
            target: "7",
            fields: none(),
            want: Ok(Act::Vote {
                id: 7,
                verdict: Verdict::Approve,
            }),
        },
        Case {
            name: "deny a request",
            verb: "deny",
            target: "7",
            fields: none(),
            want: Ok(Act::Vote {
                id: 7,
                verdict: Verdict::Deny,
            }),
        },
        Case {
            name: "an id that is no number",
            verb: "approve",
            target: "7;DROP",
            fields: none(),
            want: Err(Refused::BadId("7;DROP".into())),
        },
        Case {
            name: "a negative id",
            verb: "deny",
            target: "-1",
            fields: none(),
            want: Err(Refused::BadId("-1".into())),
        },
        Case {
            name: "a zero id",
            verb: "purge",
            target: "0",
            fields: none(),
            want: Err(Refused::BadId("0".into())),
        },
        Case {
            name: "a signed id",
            verb: "purge",
            target: "+3",
            fields: none(),
            want: Err(Refused::BadId("+3".into())),
        },
        Case {
            name: "answer with an option",
            verb: "answer",
            target: "3",
            fields: fields(Some("2"), Some("ignored"), None),
            want: Ok(Act::Answer {
                id: 3,
                answer: Answer::Option(2),
            }),
        },
        Case {
            name: "answer with text (an empty option is none)",
            verb: "answer",
            target: "3",
            fields: fields(Some(""), Some("  later, please "), None),
            want: Ok(Act::Answer {
                id: 3,
                answer: Answer::Text("later, please".into()),
            }),
        },
        Case {
            name: "answer with option 0",
            verb: "answer",
            target: "3",
            fields: fields(Some("0"), None, None),
            want: Err(Refused::BadOption("0".into())),
        },
        Case {
            name: "answer with nothing",
            verb: "answer",
            target: "3",
            fields: fields(None, Some("   "), None),
            want: Err(Refused::Empty),
        },
        Case {
            name: "say to an agent",
            verb: "say",
            target: "argus",
            fields: fields(None, Some("hello"), None),
            want: Ok(Act::Say {
                agent: name("argus"),
                text: "hello".into(),
            }),
        },
        Case {
            name: "say nothing",
            verb: "say",
            target: "argus",
            fields: none(),
            want: Err(Refused::Empty),
        },
        Case {
            name: "a path in the agent's place",
            verb: "say",
            target: "../etc",
            fields: fields(None, Some("hi"), None),
            want: Err(Refused::BadAgent("../etc".into())),
        },
        Case {
            name: "stop",
            verb: "stop",
            target: "argus",
            fields: none(),
            want: Ok(Act::Command {
                command: Command::Stop,
                agent: name("argus"),
            }),
        },
        Case {
            name: "cancel",
            verb: "cancel",
            target: "argus",
            fields: none(),
            want: Ok(Act::Command {
                command: Command::Cancel,
                agent: name("argus"),
            }),
        },
        Case {
            name: "a command for an upper-case name",
            verb: "restart",
            target: "Argus",
            fields: none(),
            want: Err(Refused::BadAgent("Argus".into())),
        },
        Case {
            name: "new session",
            verb: "new-session",
            target: "argus",
            fields: none(),
            want: Ok(Act::Turn {
                turn: Turn::NewSession,
                agent: name("argus"),
            }),
        },
        Case {
            name: "destroy with a reason",
            verb: "destroy",
            target: "argus",
            fields: fields(None, None, Some(" done with it ")),
            want: Ok(Act::Destroy {
                agent: name("argus"),
                why: Some("done with it".into()),
            }),
        },
        Case {
            name: "destroy without one",
            verb: "destroy",
            target: "argus",
            fields: fields(None, None, Some("")),
            want: Ok(Act::Destroy {
                agent: name("argus"),
                why: None,
            }),
        },
        Case {
            name: "a verb the console does not have",
            verb: "revive",
            target: "argus",
            fields: none(),
            want: Err(Refused::UnknownVerb("revive".into())),
        },
    ];
    for c in cases {
        assert_eq!(parse(c.verb, c.target, &c.fields), c.want, "{}", c.name);
    }
}

#[test]
fn fields_come_from_the_urlencoded_body() {
    let f = Fields::from_urlencoded(b"csrf=abc&text=hi+there%21&option=2&text=again&extra=1");
    assert_eq!(f, fields(Some("2"), Some("again"), None));
    assert_eq!(Fields::from_urlencoded(b""), Fields::default());
}

fn room(r: &str) -> OwnedRoomId {
    OwnedRoomId::try_from(r).unwrap()
}

fn approval(id: i64, kind: ApprovalKind, state: ApprovalState, event: Option<&str>) -> Approval {
    Approval {
        id,
        kind,
        agent: "argus".into(),
        sha: "abc".into(),
        requester: "manager".into(),
        summary: "s".into(),
        state,
        required: 1,
        created_us: 0,
        expires_us: 1,
        request_event: event.map(Into::into),
        decided_us: None,
        reason: None,
        deploy: None,
        complete: true,
        outcome_told: false,
    }
}

fn question(state: QuestionState, options: &[&str], event: Option<&str>) -> Question {
    Question {
        id: 3,
        agent: "argus".into(),
        question: "which?".into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        state,
        expires_us: 1,
        request_event: event.map(Into::into),
        answer: None,
        answered_by: None,
    }
}

#[test]
fn each_act_is_sent_as_the_core_counts_it() {
    use ApprovalKind::{ApplyCommit, Purge};
    use ApprovalState::{Applied, Confirming, Denied, Pending};
    let ap = room("!ap:x");
    let ctl = room("!ctl:x");
    let inbox = room("!in:x");
    let pending = approval(7, ApplyCommit, Pending, Some("$req"));
    let unposted = approval(7, ApplyCommit, Pending, None);
    let applied = approval(7, ApplyCommit, Applied, Some("$req"));
    let denied = approval(7, ApplyCommit, Denied, Some("$req"));
    let confirming = approval(8, Purge, Confirming, Some("$purge"));
    let purge_pending = approval(8, Purge, Pending, Some("$purge"));
    let q_open = question(QuestionState::Pending, &["yes", "no"], Some("$q"));
    let q_done = question(QuestionState::Answered, &["yes", "no"], Some("$q"));
    let q_unposted = question(QuestionState::Pending, &["yes"], None);
    let rooms = Facts {
        approvals_room: Some(ap.clone()),
        control_room: Some(ctl.clone()),
        inbox: Some(inbox.clone()),
        agent_known: true,
        ..Facts::default()
    };
    fn with<'a>(a: &'a Approval, rooms: &Facts<'a>) -> Facts<'a> {
        Facts {
            approval: Some(a),
            ..rooms.clone()
        }
    }
    let with_a = |a| with(a, &rooms);
    let vote = |verdict| Act::Vote { id: 7, verdict };
    let react = |room: &OwnedRoomId, event: &str, key: &str| {
        Ok(Plan::React {
            room: room.clone(),
            event: event.into(),
            key: key.into(),
        })
    };
    struct Case<'a> {
        name: &'static str,
        act: Act,
        facts: Facts<'a>,
        want: Result<Plan, Refused>,
    }
    let cases = [
        Case {
            name: "approve: ✅ on the request's event",
            act: vote(Verdict::Approve),
            facts: with_a(&pending),
            want: react(&ap, "$req", "✅"),
        },
        Case {
            name: "deny: ❌ on it",
            act: vote(Verdict::Deny),
            facts: with_a(&pending),
            want: react(&ap, "$req", "❌"),
        },
        Case {
            name: "a request that does not exist",
            act: vote(Verdict::Approve),
            facts: rooms.clone(),
            want: Err(Refused::NoRequest(7)),
        },
        Case {
            name: "approve an applied request",
            act: vote(Verdict::Approve),
            facts: with_a(&applied),
            want: Err(Refused::Closed {
                id: 7,
                state: Applied,
                verb: "approve",
            }),
        },
        Case {
            name: "deny a denied request",
            act: vote(Verdict::Deny),
            facts: with_a(&denied),
            want: Err(Refused::Closed {
                id: 7,
                state: Denied,
                verb: "deny",
            }),
        },
        Case {
            name: "a request not posted yet",
            act: vote(Verdict::Approve),
            facts: with_a(&unposted),
            want: Err(Refused::NotPosted("request #7".into())),
        },
        Case {
            name: "approve a purge waiting for its confirmation",
            act: Act::Vote {
                id: 8,
                verdict: Verdict::Approve,
            },
            facts: with_a(&confirming),
            want: Err(Refused::Confirming(8)),
        },
        Case {
            name: "deny a purge waiting for its confirmation",
            act: Act::Vote {
                id: 8,
                verdict: Verdict::Deny,
            },
            facts: with_a(&confirming),
            want: react(&ap, "$purge", "❌"),
        },
        Case {
            name: "purge: the phrase in the request's thread",
            act: Act::Purge { id: 8 },
            facts: with_a(&confirming),
            want: Ok(Plan::Reply {
                room: ap.clone(),
                root: "$purge".into(),
                body: "purge argus".into(),
            }),
        },
        Case {
            name: "purge before its ✅",
            act: Act::Purge { id: 8 },
            facts: with_a(&purge_pending),
            want: Err(Refused::NotConfirming {
                id: 8,
                state: Pending,
            }),
        },
        Case {
            name: "purge on a request that is no purge",
            act: Act::Purge { id: 7 },
            facts: with_a(&pending),
            want: Err(Refused::NotAPurge {
                id: 7,
                kind: ApplyCommit,
            }),
        },
        Case {
            name: "answer option 2: its keycap on the question",
            act: Act::Answer {
                id: 3,
                answer: Answer::Option(2),
            },
            facts: Facts {
                question: Some(&q_open),
                ..rooms.clone()
            },
            want: react(&ap, "$q", "2\u{FE0F}\u{20E3}"),
        },
        Case {
            name: "answer an option the question lacks",
            act: Act::Answer {
                id: 3,
                answer: Answer::Option(3),
            },
            facts: Facts {
                question: Some(&q_open),
                ..rooms.clone()
            },
            want: Err(Refused::NoOption {
                id: 3,
                option: 3,
                count: 2,
            }),
        },
        Case {
            name: "answer in words: a reply in its thread",
            act: Act::Answer {
                id: 3,
                answer: Answer::Text("neither".into()),
            },
            facts: Facts {
                question: Some(&q_open),
                ..rooms.clone()
            },
            want: Ok(Plan::Reply {
                room: ap.clone(),
                root: "$q".into(),
                body: "neither".into(),
            }),
        },
        Case {
            name: "answer an answered question",
            act: Act::Answer {
                id: 3,
                answer: Answer::Option(1),
            },
            facts: Facts {
                question: Some(&q_done),
                ..rooms.clone()
            },
            want: Err(Refused::QuestionClosed {
                id: 3,
                state: QuestionState::Answered,
            }),
        },
        Case {
            name: "answer a question not posted yet",
            act: Act::Answer {
                id: 3,
                answer: Answer::Option(1),
            },
            facts: Facts {
                question: Some(&q_unposted),
                ..rooms.clone()
            },
            want: Err(Refused::NotPosted("question #3".into())),
        },
        Case {
            name: "answer a question that is not open",
            act: Act::Answer {
                id: 3,
                answer: Answer::Option(1),
            },
            facts: rooms.clone(),
            want: Err(Refused::NoQuestion(3)),
        },
        Case {
            name: "say: a message in the inbox",
            act: Act::Say {
                agent: name("argus"),
                text: "hi".into(),
            },
            facts: rooms.clone(),
            want: Ok(Plan::Message {
                room: inbox.clone(),
                body: "hi".into(),
                command: false,
            }),
        },
        Case {
            name: "say to an agent the hive does not have",
            act: Act::Say {
                agent: name("ghost"),
                text: "hi".into(),
            },
            facts: Facts {
                agent_known: false,
                ..rooms.clone()
            },
            want: Err(Refused::UnknownAgent(name("ghost"))),
        },
        Case {
            name: "compact: the line in the inbox",
            act: Act::Turn {
                turn: Turn::Compact,
                agent: name("argus"),
            },
            facts: rooms.clone(),
            want: Ok(Plan::Message {
                room: inbox.clone(),
                body: "!compact".into(),
                command: false,
            }),
        },
        Case {
            name: "stop: a !hive command in #hive-c0re",
            act: Act::Command {
                command: Command::Stop,
                agent: name("argus"),
            },
            facts: rooms.clone(),
            want: Ok(Plan::Message {
                room: ctl.clone(),
                body: "!hive stop argus".into(),
                command: true,
            }),
        },
        Case {
            name: "a command before the rooms are known",
            act: Act::Command {
                command: Command::Cancel,
                agent: name("argus"),
            },
            facts: Facts::default(),
            want: Err(Refused::NoRoom("#hive-c0re")),
        },
        Case {
            name: "destroy: a request filed, its summary the reason or a default",
            act: Act::Destroy {
                agent: name("argus"),
                why: None,
            },
            facts: Facts::default(),
            want: Ok(Plan::FileDestroy {
                agent: name("argus"),
                summary: "destroy argus".into(),
            }),
        },
    ];
    for c in cases {
        assert_eq!(plan(&c.act, &c.facts), c.want, "{}", c.name);
    }
}

#[test]
fn a_double_click_is_sent_once() {
    let t0 = Instant::now();
    let approve = Act::Vote {
        id: 7,
        verdict: Verdict::Approve,
    };
    let deny = Act::Vote {
        id: 7,
        verdict: Verdict::Deny,
    };
    struct Case {
        name: &'static str,
        act: Act,
        after: Duration,
        want: bool,
    }
    // One history, in order.
    let cases = [
        Case {
            name: "the first approve",
            act: approve.clone(),
            after: Duration::ZERO,
            want: true,
        },
        Case {
            name: "the second click, at once",
            act: approve.clone(),
            after: Duration::from_millis(300),
            want: false,
        },
        Case {
            name: "another act on the same request",
            act: deny.clone(),
            after: Duration::from_millis(400),
            want: true,
        },
        Case {
            name: "the same approve, after the window",
            act: approve.clone(),
            after: WINDOW + Duration::from_millis(1),
            want: true,
        },
    ];
    let mut recent = VecDeque::new();
    for c in cases {
        assert_eq!(
            first_in_window(&mut recent, &c.act, t0 + c.after),
            c.want,
            "{}",
            c.name
        );
    }
}
