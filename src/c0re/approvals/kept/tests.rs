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
        external: false,
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
            name: "nor one whose harness someone else started (runtime external)",
            kind: KeptKind::Destroy,
            facts: KeptFacts {
                external: true,
                ..running
            },
            want: Err(KeptRefusal::External(echo.clone())),
        },
        Case {
            name: "under the external runtime a kept agent can still be purged",
            kind: KeptKind::Purge,
            facts: KeptFacts {
                external: true,
                ..kept
            },
            want: Ok(()),
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
                external: false,
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

fn n(s: &str) -> AgentName {
    AgentName::parse(s).expect("a valid name")
}

/// echo at deploy/1, in a data dir with a store.
fn hive() -> (tempfile::TempDir, std::path::PathBuf, Config, ConfigRepo) {
    let tmp = tempfile::tempdir().unwrap();
    let bot = tmp.path().join("bots/echo");
    std::fs::create_dir_all(&bot).unwrap();
    std::fs::write(bot.join("agent.toml"), "[brain]\nkind = \"scripted\"\n").unwrap();
    std::fs::write(bot.join("prompt.md"), "v1").unwrap();
    let data = tmp.path().join("data");
    let repo = ConfigRepo::new(&data, &n("echo"));
    repo.seed(&bot).unwrap();
    let cfg = Config::validate(toml::from_str("").unwrap(), None).unwrap();
    (tmp, data, cfg, repo)
}

fn store(data: &std::path::Path) -> crate::store::Store {
    crate::store::Store::open(&data.join("c0re.db")).unwrap()
}

/// While kept, no config request names it: no apply, no rollback, no spawn of its name.
#[test]
fn a_kept_name_takes_no_config_request() {
    let (_tmp, data, cfg, repo) = hive();
    let applied = repo.applied().unwrap().unwrap();
    let proposed = repo
        .commit_proposed(
            &[crate::configrepo::ConfigFile {
                path: "prompt.md".into(),
                executable: false,
                content: b"v2".to_vec(),
            }],
            "v2",
        )
        .unwrap();
    let s = store(&data);
    assert!(s.keep_agent("echo", 1, &applied, "kept").unwrap());
    assert!(s.keep_agent("ghost", 2, &applied, "kept").unwrap());
    let kept = |r: Result<i64, Refusal>, who: &str| {
        let e = r.expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!("{who} is kept (destroyed): revive it first"),
            "{e}"
        );
    };
    kept(
        super::super::filing::file_apply_commit(&data, &cfg, "hm1nd", "echo", &proposed, "v2")
            .unwrap(),
        "echo",
    );
    kept(
        super::super::rollback::file_rollback(&data, &cfg, "hm1nd", "echo", 1, "")
            .unwrap()
            .map(|r| r.id),
        "echo",
    );
    // A kept agent whose directory is gone (a purge that failed halfway).
    kept(
        super::super::filing::file_init_config(&data, &cfg, "hm1nd", "ghost", "again", &[])
            .unwrap(),
        "ghost",
    );
    assert!(s.approvals(10).unwrap().is_empty(), "no request filed");
}

/// A purge is filed on the kept row (its sha, tied to its destroy), even when the config repo
/// is gone; a kept agent whose directory is gone is purged already.
#[test]
fn a_half_done_purge_can_be_filed_again() {
    let (_tmp, data, cfg, repo) = hive();
    let applied = repo.applied().unwrap().unwrap();
    let s = store(&data);
    assert!(s.keep_agent("echo", 7, &applied, "kept").unwrap());
    std::fs::remove_dir_all(repo.dirs.repo()).unwrap();
    let id = file_kept(&data, &cfg, "@op:x", KeptKind::Purge, "echo", "again")
        .unwrap()
        .expect("filed");
    let a = s.approval(id).unwrap().expect("its row");
    assert_eq!(
        (a.kind, a.sha.as_str()),
        (ApprovalKind::Purge, applied.as_str())
    );
    // Tied to destroy #7: kept by another destroy since, its confirmation cancels it.
    s.vote(id, "$a", "@op:x", crate::store::Verdict::Approve, 1)
        .unwrap();
    assert!(s.ask_confirmation(id, 3_600_000_000).unwrap());
    s.unkeep_agent("echo").unwrap();
    s.keep_agent("echo", 8, &applied, "again").unwrap();
    assert!(matches!(
        s.confirm(id, "@op:x", "$c", 1).unwrap(),
        crate::store::Confirmation::Stale {
            filed_against: 7,
            ..
        }
    ));

    std::fs::remove_dir_all(&repo.dirs.root).unwrap();
    let e = file_kept(&data, &cfg, "@op:x", KeptKind::Purge, "echo", "")
        .unwrap()
        .expect_err("nothing left to purge");
    assert_eq!(
        e.to_string(),
        "echo's directory is gone already: it is purged, and no longer kept"
    );
    assert!(s.kept_agent("echo").unwrap().is_none(), "no longer kept");
}
