//! The rules of a rollback, and a rollback filed against a real config repo and store.

use super::*;
use crate::configrepo::ConfigFile;

fn n(s: &str) -> AgentName {
    AgentName::parse(s).expect("a valid name")
}

#[test]
fn which_rollbacks_are_refused() {
    struct Case {
        name: &'static str,
        deploys: Vec<(u64, &'static str)>,
        n: u64,
        /// The tree of the deploy asked for, and the applied one.
        trees: (&'static str, &'static str),
        want: Result<&'static str, &'static str>,
    }
    let cases = [
        Case {
            name: "an earlier deploy with other files",
            deploys: vec![(1, "aaa"), (2, "bbb")],
            n: 1,
            trees: ("t1", "t2"),
            want: Ok("aaa"),
        },
        Case {
            name: "the applied deploy: nothing to roll back",
            deploys: vec![(1, "aaa"), (2, "bbb")],
            n: 2,
            trees: ("t2", "t2"),
            want: Err("deploy/2 has the same files as echo's applied config: nothing to roll back"),
        },
        Case {
            name: "an earlier deploy with the applied files (rolled back already)",
            deploys: vec![(1, "aaa"), (2, "bbb"), (3, "ccc")],
            n: 1,
            trees: ("t1", "t1"),
            want: Err("deploy/1 has the same files as echo's applied config: nothing to roll back"),
        },
        Case {
            name: "a deploy that never was",
            deploys: vec![(1, "aaa"), (2, "bbb")],
            n: 7,
            trees: ("", ""),
            want: Err("echo has no deploy/7; its latest is deploy/2 (config_log lists them)"),
        },
        Case {
            name: "deploy 0",
            deploys: vec![(1, "aaa")],
            n: 0,
            trees: ("", ""),
            want: Err("echo has no deploy/0; its latest is deploy/1 (config_log lists them)"),
        },
    ];
    for c in cases {
        let deploys: Vec<(u64, String)> =
            c.deploys.iter().map(|(d, s)| (*d, s.to_string())).collect();
        let got = pick_deploy(&n("echo"), &deploys, c.n)
            .and_then(|sha| check_trees(&n("echo"), c.n, c.trees.0, c.trees.1).map(|()| sha))
            .map_err(|e| e.to_string());
        assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
    }
}

#[test]
fn the_summary_says_it_is_a_rollback() {
    assert_eq!(rollback_summary(3, ""), "rollback to deploy/3");
    assert_eq!(rollback_summary(3, "  "), "rollback to deploy/3");
    assert_eq!(
        rollback_summary(1, " v2 broke it\n"),
        "rollback to deploy/1: v2 broke it"
    );
}

fn file(path: &str, content: &str) -> ConfigFile {
    ConfigFile {
        path: path.into(),
        executable: false,
        content: content.as_bytes().to_vec(),
    }
}

/// echo at deploy/2 (v2), its deploy/1 v1, in a data dir with a store.
fn hive() -> (tempfile::TempDir, std::path::PathBuf, Config, ConfigRepo) {
    let tmp = tempfile::tempdir().unwrap();
    let bot = tmp.path().join("bots/echo");
    std::fs::create_dir_all(&bot).unwrap();
    std::fs::write(bot.join("agent.toml"), "[brain]\nkind = \"scripted\"\n").unwrap();
    std::fs::write(bot.join("prompt.md"), "v1").unwrap();
    let data = tmp.path().join("data");
    let repo = ConfigRepo::new(&data, &n("echo"));
    repo.seed(&bot).unwrap();
    let v2 = repo
        .commit_proposed(&[file("prompt.md", "v2")], "v2")
        .unwrap();
    let files = repo.read_commit(&v2).unwrap();
    repo.deploy(&v2, 2, &files).unwrap();
    let cfg = Config::validate(toml::from_str("").unwrap(), None).unwrap();
    (tmp, data, cfg, repo)
}

#[test]
fn a_rollback_is_filed_as_a_commit_of_the_old_tree() {
    let (_tmp, data, cfg, repo) = hive();
    let v1 = repo.deploys().unwrap()[0].1.clone();
    let v2 = repo.applied().unwrap().unwrap();
    let unapplied = repo
        .commit_proposed(&[file("prompt.md", "wip")], "wip")
        .unwrap();

    let r = file_rollback(&data, &cfg, "hm1nd", "echo", 1, "v2 is broken")
        .unwrap()
        .expect("filed");
    assert_eq!((r.deploy, r.deploy_sha.as_str()), (1, v1.as_str()));
    assert_eq!(r.parent, v2);
    assert_eq!(r.abandoned, [unapplied]);
    assert_eq!(repo.tree_of(&r.sha).unwrap(), repo.tree_of(&v1).unwrap());
    assert_eq!(repo.proposed().unwrap(), Some(r.sha.clone()));
    assert!(repo.diff(&r.sha).unwrap().contains("+v1"));

    let store = crate::store::Store::open(&data.join("c0re.db")).unwrap();
    let a = store.approval(r.id).unwrap().expect("the request's row");
    assert_eq!(a.kind, ApprovalKind::ApplyCommit);
    assert_eq!(a.sha, r.sha);
    assert_eq!(a.summary, "rollback to deploy/1: v2 is broken");
    assert_eq!(a.requester, "hm1nd");
}

#[test]
fn refused_rollbacks_change_nothing() {
    let (_tmp, data, cfg, repo) = hive();
    let before = repo.proposed().unwrap();
    for (agent, deploy, want) in [
        ("echo", 2, "nothing to roll back"),
        ("echo", 9, "has no deploy/9"),
        ("nobody", 1, "not an agent"),
        ("..", 1, ".."),
        ("../echo", 1, "../echo"),
    ] {
        let got = file_rollback(&data, &cfg, "hm1nd", agent, deploy, "")
            .unwrap()
            .expect_err("refused");
        assert!(got.to_string().contains(want), "{agent} {deploy}: {got}");
    }
    assert_eq!(
        repo.proposed().unwrap(),
        before,
        "the proposed branch stayed"
    );
    let store = crate::store::Store::open(&data.join("c0re.db")).unwrap();
    assert!(store.approvals(10).unwrap().is_empty(), "no request filed");
}
