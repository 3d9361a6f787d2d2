//! Which kept-state requests may be filed.

use super::*;

#[test]
fn kept_request_table() {
    struct Case {
        name: &'static str,
        kind: KeptKind,
        facts: KeptFacts,
        want: Result<(), KeptRefusal>,
    }
    let echo = AgentName::parse("echo").unwrap();
    let running = KeptFacts {
        has_config: true,
        kept: false,
        manager: false,
    };
    let kept = KeptFacts {
        kept: true,
        ..running
    };
    let cases = [
        Case {
            name: "a running agent can be destroyed",
            kind: KeptKind::Destroy,
            facts: running,
            want: Ok(()),
        },
        Case {
            name: "an unknown one cannot",
            kind: KeptKind::Destroy,
            facts: KeptFacts {
                has_config: false,
                ..running
            },
            want: Err(KeptRefusal::NotAnAgent(echo.clone())),
        },
        Case {
            name: "nor a kept one again",
            kind: KeptKind::Destroy,
            facts: kept,
            want: Err(KeptRefusal::AlreadyKept(echo.clone())),
        },
        Case {
            name: "nor a manager",
            kind: KeptKind::Destroy,
            facts: KeptFacts {
                manager: true,
                ..running
            },
            want: Err(KeptRefusal::Manager(echo.clone())),
        },
        Case {
            name: "a kept agent can be revived",
            kind: KeptKind::Revive,
            facts: kept,
            want: Ok(()),
        },
        Case {
            name: "a running one cannot",
            kind: KeptKind::Revive,
            facts: running,
            want: Err(KeptRefusal::NotKept(echo.clone(), "revived")),
        },
        Case {
            name: "a kept agent can be purged",
            kind: KeptKind::Purge,
            facts: kept,
            want: Ok(()),
        },
        Case {
            name: "only a kept one: never a running agent",
            kind: KeptKind::Purge,
            facts: running,
            want: Err(KeptRefusal::NotKept(echo.clone(), "purged")),
        },
        Case {
            name: "nor an unknown one",
            kind: KeptKind::Purge,
            facts: KeptFacts {
                has_config: false,
                kept: false,
                manager: false,
            },
            want: Err(KeptRefusal::NotKept(echo.clone(), "purged")),
        },
    ];
    for c in cases {
        assert_eq!(
            check_kept_request(c.kind, &echo, c.facts),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn kinds_keep_their_stored_names() {
    for (kind, stored) in [
        (KeptKind::Destroy, "destroy"),
        (KeptKind::Revive, "revive"),
        (KeptKind::Purge, "purge"),
    ] {
        assert_eq!(kind.as_str(), stored);
        assert_eq!(KeptKind::of(kind.approval_kind()), Some(kind));
        assert!(kind.approval_kind().is_kept_state());
    }
    assert_eq!(KeptKind::of(ApprovalKind::ApplyCommit), None);
    assert!(!ApprovalKind::InitConfig.is_kept_state());
}
