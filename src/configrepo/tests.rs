use super::changes::{hunks, parse_name_status, parse_numstat, request_order};
use super::*;

pub(super) fn file(path: &str, content: &str) -> ConfigFile {
    ConfigFile {
        path: path.into(),
        executable: false,
        content: content.as_bytes().to_vec(),
    }
}

pub(super) fn seeded() -> (tempfile::TempDir, ConfigRepo) {
    let tmp = tempfile::tempdir().unwrap();
    let bot = tmp.path().join("bots/echo");
    std::fs::create_dir_all(&bot).unwrap();
    std::fs::write(bot.join("agent.toml"), "[brain]\nkind = \"scripted\"\n").unwrap();
    std::fs::write(bot.join("prompt.md"), "v1").unwrap();
    let repo = ConfigRepo::new(&tmp.path().join("data"), &AgentName::parse("echo").unwrap());
    repo.seed(&bot).unwrap();
    (tmp, repo)
}

fn rev(repo: &ConfigRepo, what: &str) -> String {
    git_str(&repo.dirs.repo(), &["rev-parse", what]).unwrap()
}

/// A commit built by hand on top of the proposed tip, with entries `commit_proposed` would
/// never write (symlinks): what a hostile proposal could hold.
fn plumb(repo: &ConfigRepo, mode: &str, path: &str, content: &[u8]) -> String {
    let r = repo.dirs.repo();
    let oid = git_str_in(&r, &["hash-object", "-w", "--stdin"], content).unwrap();
    let index = TempIndex::new(&r);
    let tip = repo.proposed_tip().unwrap().unwrap();
    git_indexed(&r, Some(&index.0), &["read-tree", &tip], None).unwrap();
    let entry = format!("{mode},{oid},{path}");
    git_indexed(
        &r,
        Some(&index.0),
        &["update-index", "--add", "--cacheinfo", &entry],
        None,
    )
    .unwrap();
    let tree =
        String::from_utf8(git_indexed(&r, Some(&index.0), &["write-tree"], None).unwrap()).unwrap();
    let sha = git_str_in(&r, &["commit-tree", tree.trim(), "-p", &tip], b"by hand").unwrap();
    repo.reset_proposed(&sha).unwrap();
    sha
}

#[test]
fn seed_propose_snapshot_deploy() {
    let (_tmp, repo) = seeded();
    let (n, first) = repo.current().unwrap();
    assert_eq!(n, 1);
    assert_eq!(repo.applied().unwrap().as_deref(), Some(first.as_str()));
    assert_eq!(repo.load_current().unwrap().prompt.as_deref(), Some("v1"));

    let sha = repo
        .commit_proposed(&[file("prompt.md", "v2")], "prompt v2")
        .unwrap();
    assert_eq!(rev(&repo, &format!("{sha}^")), first);
    assert_eq!(rev(&repo, "refs/heads/proposed"), sha);
    assert_eq!(rev(&repo, &format!("{sha}^{{tree}}:agent.toml")).len(), 40);
    assert_eq!(
        git_str(&repo.dirs.repo(), &["log", "-1", "--format=%s", &sha]).unwrap(),
        "prompt v2"
    );
    repo.snapshot(&sha, "7").unwrap();
    assert_eq!(rev(&repo, "refs/tags/proposal/7"), sha);
    // Moving the proposed side afterwards changes nothing about proposal 7.
    repo.reset_proposed(&first).unwrap();
    repo.commit_proposed(&[file("prompt.md", "evil")], "evil")
        .unwrap();
    assert_eq!(rev(&repo, "refs/tags/proposal/7"), sha);
    let files = repo.read_commit(&sha).unwrap();
    assert_eq!(
        repo.parse_spec(&files).unwrap().prompt.as_deref(),
        Some("v2")
    );
    assert!(repo.diff(&sha).unwrap().contains("+v2"));
    assert!(repo.is_fast_forward(&sha).unwrap());
    repo.deploy(&sha, 2, &files).unwrap();
    assert_eq!(repo.current().unwrap(), (2, sha.clone()));
    assert_eq!(repo.load_current().unwrap().prompt.as_deref(), Some("v2"));
    // Deploying again (a crash mid-apply) is harmless.
    repo.deploy(&sha, 2, &files).unwrap();
    // The first commit does not fast-forward the second: refused.
    let old = repo.read_commit(&first).unwrap();
    assert!(!repo.is_fast_forward(&first).unwrap());
    let err = repo.deploy(&first, 3, &old).unwrap_err().to_string();
    assert!(err.contains("does not fast-forward"), "{err}");
    assert_eq!(repo.applied().unwrap().as_deref(), Some(sha.as_str()));
}

#[test]
fn commits_replace_paths_on_the_proposed_tip() {
    let (_tmp, repo) = seeded();
    let applied = repo.applied().unwrap().unwrap();
    let mut tool = file("tools/bot.py", "print('hi')\n");
    tool.executable = true;
    let a = repo.commit_proposed(&[tool], "a tool").unwrap();
    let b = repo
        .commit_proposed(&[file("prompt.md", "v2"), file("tools/bot.py", "x\n")], "b")
        .unwrap();
    assert_eq!(rev(&repo, &format!("{a}^")), applied);
    assert_eq!(rev(&repo, &format!("{b}^")), a);
    let files = repo.read_commit(&b).unwrap();
    let got: Vec<(&str, bool, &[u8])> = files
        .iter()
        .map(|f| (f.path.as_str(), f.executable, f.content.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            ("agent.toml", false, &b"[brain]\nkind = \"scripted\"\n"[..]),
            ("prompt.md", false, b"v2"),
            // The mode is the new file's: replaced whole.
            ("tools/bot.py", false, b"x\n"),
        ]
    );
    assert!(repo.read_commit(&a).unwrap()[2].executable);
    // Nothing of this touched what runs.
    assert_eq!(repo.applied().unwrap().as_deref(), Some(applied.as_str()));
    // A file over the size limit is refused before anything is written.
    let big = ConfigFile {
        path: "big.md".into(),
        executable: false,
        content: vec![b'x'; (MAX_FILE + 1) as usize],
    };
    let err = repo.commit_proposed(&[big], "big").unwrap_err().to_string();
    assert!(err.contains("big.md is larger than"), "{err}");
    assert_eq!(rev(&repo, "refs/heads/proposed"), b);
    // No temporary index is left behind.
    let left: Vec<_> = std::fs::read_dir(repo.dirs.repo())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("hive-index"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn snapshots_only_commits_on_the_proposed_side() {
    let (_tmp, repo) = seeded();
    let first = repo.applied().unwrap().unwrap();
    let a = repo
        .commit_proposed(&[file("prompt.md", "a")], "a")
        .unwrap();
    let b = repo
        .commit_proposed(&[file("prompt.md", "b")], "b")
        .unwrap();
    // The tip and its ancestors are on the proposed side.
    repo.snapshot(&b, "1").unwrap();
    repo.snapshot(&a, "2").unwrap();
    repo.snapshot(&first, "3").unwrap();
    // A commit the branch was reset away from is not.
    repo.reset_proposed(&first).unwrap();
    let err = repo.snapshot(&b, "4").unwrap_err().to_string();
    assert!(err.contains("is not on echo's proposed side"), "{err}");
    // Neither is an object that is not a commit, nor a hostile id.
    let blob = rev(&repo, &format!("{a}:prompt.md"));
    let err = repo.snapshot(&blob, "5").unwrap_err().to_string();
    assert!(err.contains("is a blob, not a commit"), "{err}");
    for id in ["", "../x", "a b", "x/../../y"] {
        assert!(repo.snapshot(&first, id).is_err(), "{id:?}");
    }
    // reset_proposed moves only to a commit that exists.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    assert!(repo.reset_proposed(missing).is_err());
    assert!(repo.reset_proposed("applied").is_err());
    assert_eq!(rev(&repo, "refs/heads/proposed"), first);
}

#[test]
fn refuses_names_that_are_not_shas() {
    let (_tmp, repo) = seeded();
    for bad in [
        "main",
        "HEAD",
        "applied",
        "deploy/1",
        "--upload-pack=sh",
        "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
        "",
    ] {
        assert!(parse_sha(bad).is_err(), "{bad}");
        assert!(repo.snapshot(bad, "1").is_err(), "{bad}");
        assert!(repo.changes(bad).is_err(), "{bad}");
    }
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let err = repo.snapshot(missing, "1").unwrap_err().to_string();
    assert!(err.contains("is not in echo's config repo"), "{err}");
}

#[test]
fn refuses_symlinks_and_hostile_paths() {
    let (tmp, repo) = seeded();
    let secret = tmp.path().join("host-secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let sha = plumb(
        &repo,
        "120000",
        "agent.toml",
        secret.to_str().unwrap().as_bytes(),
    );
    repo.snapshot(&sha, "8").unwrap();
    let err = repo.read_commit(&sha).unwrap_err().to_string();
    assert!(err.contains("agent.toml is a symlink"), "{err}");

    for bad in [
        "../x",
        "/etc/passwd",
        "a/../../x",
        ".git/config",
        ".gitattributes",
        "",
        "a//b",
        "a\nb",
    ] {
        assert!(check_path(bad).is_err(), "{bad}");
        assert!(
            repo.commit_proposed(&[file(bad, "x")], "bad").is_err(),
            "{bad}"
        );
    }
    assert!(check_path("tools/bot.py").is_ok());

    // Where a traversal WOULD write: a generation is rendered in `gen/.<n>.tmp`, so `../x` and
    // `a/../../x` land in `gen/`, `../../x` in the agent's directory (outside the repo and
    // every generation), an absolute path anywhere. Rendering refuses each, writing nothing.
    let gens = repo.dirs.gens();
    let anywhere = tmp.path().join("anywhere");
    let anywhere_path = anywhere.to_str().unwrap().to_owned();
    for (bad, would) in [
        ("../x", gens.join("x")),
        ("a/../../x", gens.join("x")),
        ("../../x", repo.dirs.root.join("x")),
        (anywhere_path.as_str(), anywhere.clone()),
    ] {
        let rendered = repo.render(7, &[file("prompt.md", "ok"), file(bad, "planted")]);
        assert!(
            !would.exists(),
            "{bad:?} was written outside its generation, at {}",
            would.display()
        );
        let err = rendered.unwrap_err().to_string();
        assert!(
            err.contains("forbidden path component") || err.contains("not a relative path"),
            "{bad}: {err}"
        );
        assert!(
            !gens.join("7").exists(),
            "{bad}: a refused generation is not kept"
        );
    }
    // The control: the same render with good paths writes where expected.
    let good = repo
        .render(7, &[file("prompt.md", "ok"), file("tools/x", "fine")])
        .unwrap();
    assert_eq!(good, gens.join("7"));
    assert_eq!(
        std::fs::read_to_string(good.join("tools/x")).unwrap(),
        "fine"
    );
}

#[test]
fn refuses_binary_files() {
    let (_tmp, repo) = seeded();
    for (content, what) in [
        (&b"a\0b"[..], "a NUL"),
        (b"\xff\xfe", "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n", "a PNG header"),
    ] {
        let f = ConfigFile {
            path: "logo.png".into(),
            executable: false,
            content: content.to_vec(),
        };
        let sha = repo.commit_proposed(&[f], what).unwrap();
        let err = repo.read_commit(&sha).unwrap_err().to_string();
        assert_eq!(
            err, "logo.png is a binary file; config files must be text",
            "{what}"
        );
        let err = repo.changes(&sha).unwrap_err().to_string();
        assert!(err.contains("logo.png is a binary file"), "{what}: {err}");
    }
    // Text with tabs, CRLF and non-ASCII is text.
    let sha = repo
        .commit_proposed(&[file("notes.md", "a\tb\r\nünï ✅\n")], "text")
        .unwrap();
    let err = repo.read_commit(&sha).unwrap_err().to_string();
    assert!(
        err.contains("logo.png"),
        "the earlier binary is still there: {err}"
    );
}

#[test]
fn an_invalid_agent_toml_cannot_be_applied() {
    let (_tmp, repo) = seeded();
    let sha = repo
        .commit_proposed(
            &[file("agent.toml", "[brain]\nkind = \"telepathy\"\n")],
            "bad",
        )
        .unwrap();
    repo.snapshot(&sha, "9").unwrap();
    let files = repo.read_commit(&sha).unwrap();
    let err = repo.parse_spec(&files).unwrap_err().to_string();
    assert!(err.contains("brain"), "{err}");
}

#[test]
fn changes_list_agent_toml_first_then_by_path() {
    let (_tmp, repo) = seeded();
    repo.commit_proposed(&[file("prompt.md", "gone soon")], "p")
        .unwrap();
    let applied = repo.proposed_tip().unwrap().unwrap();
    let files = repo.read_commit(&applied).unwrap();
    repo.deploy(&applied, 2, &files).unwrap();
    // Delete prompt.md by hand (commit_proposed only adds and replaces).
    let r = repo.dirs.repo();
    let index = TempIndex::new(&r);
    git_indexed(&r, Some(&index.0), &["read-tree", &applied], None).unwrap();
    let remove = format!("0 {}\tprompt.md\n", "0".repeat(40));
    git_indexed(
        &r,
        Some(&index.0),
        &["update-index", "--index-info"],
        Some(remove.as_bytes()),
    )
    .unwrap();
    let tree =
        String::from_utf8(git_indexed(&r, Some(&index.0), &["write-tree"], None).unwrap()).unwrap();
    let del = git_str_in(&r, &["commit-tree", tree.trim(), "-p", &applied], b"del").unwrap();
    repo.reset_proposed(&del).unwrap();
    let sha = repo
        .commit_proposed(
            &[
                file("a.md", "one\ntwo\n"),
                file("agent.toml", "[brain]\nkind = \"scripted\"\n# new\n"),
                file("z/b.md", "b\n"),
            ],
            "many",
        )
        .unwrap();
    let changes = repo.changes(&sha).unwrap();
    let got: Vec<(&str, ChangeKind, usize, usize)> = changes
        .iter()
        .map(|c| (c.path.as_str(), c.status, c.added, c.removed))
        .collect();
    assert_eq!(
        got,
        [
            ("agent.toml", ChangeKind::Modified, 1, 0),
            ("a.md", ChangeKind::Added, 2, 0),
            ("prompt.md", ChangeKind::Deleted, 0, 1),
            ("z/b.md", ChangeKind::Added, 1, 0),
        ]
    );
    assert_eq!(
        changes[0].patch,
        "@@ -1,2 +1,3 @@\n [brain]\n kind = \"scripted\"\n+# new\n"
    );
    assert_eq!(changes[1].patch, "@@ -0,0 +1,2 @@\n+one\n+two\n");
    assert_eq!(
        changes[2].patch,
        "@@ -1 +0,0 @@\n-gone soon\n\\ No newline at end of file\n"
    );
}

#[test]
fn a_spawn_shows_every_file_from_the_empty_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let name = AgentName::parse("newbie").unwrap();
    let repo = ConfigRepo::new(tmp.path(), &name);
    let mut files = template(&name, "hm1nd", "a helper");
    files.push(file("a.md", "first\n"));
    repo.commit_proposed(&files[..1], "one").unwrap();
    let sha = repo.commit_proposed(&files[1..], "two").unwrap();
    assert!(!repo.exists());
    let changes = repo.changes(&sha).unwrap();
    let paths: Vec<(&str, ChangeKind)> = changes
        .iter()
        .map(|c| (c.path.as_str(), c.status))
        .collect();
    assert_eq!(
        paths,
        [
            ("agent.toml", ChangeKind::Added),
            ("a.md", ChangeKind::Added),
            ("prompt.md", ChangeKind::Added),
        ]
    );
    for c in &changes {
        assert_eq!(c.removed, 0, "{}", c.path);
        assert!(c.added > 0 && c.patch.starts_with("@@ -0,0 +1"), "{c:?}");
    }
    // The full diff (`hive approvals --diff`) shows every file too, not only the last commit.
    let diff = repo.diff(&sha).unwrap();
    assert!(
        diff.contains("+++ b/agent.toml") && diff.contains("+++ b/prompt.md"),
        "{diff}"
    );
}

#[test]
fn an_old_data_dir_starts_the_proposed_branch_at_applied() {
    let (_tmp, repo) = seeded();
    let applied = repo.applied().unwrap().unwrap();
    // Before the proposed branch, the proposed side was a work tree; it is never read.
    git(
        &repo.dirs.repo(),
        &["update-ref", "-d", "refs/heads/proposed"],
        None,
    )
    .unwrap();
    let old = repo.dirs.root.join("proposed");
    std::fs::create_dir_all(old.join(".git")).unwrap();
    std::fs::write(old.join("agent.toml"), "garbage").unwrap();
    let sha = repo
        .commit_proposed(&[file("prompt.md", "v2")], "v2")
        .unwrap();
    assert_eq!(rev(&repo, &format!("{sha}^")), applied);
    let files = repo.read_commit(&sha).unwrap();
    assert!(repo.parse_spec(&files).is_ok());
    repo.snapshot(&applied, "seed-again").unwrap();
}

/// A manager may write anything into an old `proposed/` work tree, its `.git/config` included:
/// signing programs, fsmonitor, filters, diff drivers, hooks. None of it ever runs.
#[test]
fn a_planted_work_tree_config_never_runs() {
    let (tmp, repo) = seeded();
    let marker = tmp.path().join("pwned");
    let script = tmp.path().join("evil.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$0 $*\" >> {}\nexit 1\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let wt = repo.dirs.root.join("proposed");
    let plain_git = |dir: &Path, args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "m")
            .env("GIT_AUTHOR_EMAIL", "m@x")
            .env("GIT_COMMITTER_NAME", "m")
            .env("GIT_COMMITTER_EMAIL", "m@x")
            .output()
            .unwrap()
    };
    assert!(
        plain_git(tmp.path(), &["init", "-q", wt.to_str().unwrap()])
            .status
            .success()
    );
    let s = script.display();
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(wt.join(".git/config"))
        .unwrap();
    write!(
        config,
        "[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = {s}\n[core]\n\tfsmonitor = {s}\n\thooksPath = {hooks}\n[filter \"evil\"]\n\tclean = {s}\n\tsmudge = {s}\n[diff \"evil\"]\n\ttextconv = {s}\n\tcommand = {s}\n",
        hooks = tmp.path().display()
    )
    .unwrap();
    std::fs::write(wt.join(".gitattributes"), "* filter=evil diff=evil\n").unwrap();
    std::fs::write(wt.join("agent.toml"), "[brain]\nkind = \"scripted\"\n").unwrap();
    std::fs::copy(&script, tmp.path().join("pre-commit")).unwrap();

    let sha = repo
        .commit_proposed(&[file("prompt.md", "v2")], "v2")
        .unwrap();
    repo.snapshot(&sha, "1").unwrap();
    let files = repo.read_commit(&sha).unwrap();
    repo.changes(&sha).unwrap();
    repo.diff(&sha).unwrap();
    repo.reset_proposed(&sha).unwrap();
    repo.deploy(&sha, 2, &files).unwrap();
    assert!(
        !marker.exists(),
        "{}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );

    // The trap is real: git run in that work tree, the old way, springs it.
    plain_git(&wt, &["add", "agent.toml"]);
    plain_git(&wt, &["commit", "-qm", "x"]);
    assert!(
        marker.exists(),
        "the planted config should have run in the control"
    );
}

#[test]
fn parses_git_diff_listings() {
    let kinds = parse_name_status(b"M\0agent.toml\0A\0a b.md\0D\0x\0T\0y\0").unwrap();
    assert_eq!(
        kinds,
        [
            ("agent.toml".to_owned(), ChangeKind::Modified),
            ("a b.md".to_owned(), ChangeKind::Added),
            ("x".to_owned(), ChangeKind::Deleted),
            ("y".to_owned(), ChangeKind::Modified),
        ]
    );
    assert!(parse_name_status(b"M\0").is_err());
    assert!(parse_name_status(b"R100\0a\0").is_err());
    assert_eq!(parse_name_status(b"").unwrap(), []);

    let counts = parse_numstat(b"3\t1\tagent.toml\0-\t-\tlogo.png\0").unwrap();
    assert_eq!(
        counts,
        [
            ("agent.toml".to_owned(), Some((3, 1))),
            ("logo.png".to_owned(), None),
        ]
    );
    assert!(parse_numstat(b"3\tagent.toml\0").is_err());
    assert!(parse_numstat(b"x\t1\tagent.toml\0").is_err());

    for (patch, want) in [
        (
            "diff --git a/x b/x\nindex 1..2\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
            "@@ -1 +1 @@\n-a\n+b\n",
        ),
        ("@@ -1 +1 @@\n-a\n", "@@ -1 +1 @@\n-a\n"),
        ("diff --git a/x b/x\nold mode 100644\nnew mode 100755\n", ""),
        ("", ""),
    ] {
        assert_eq!(hunks(patch), want, "{patch:?}");
    }
    let mut paths = vec!["b", "agent.toml", "a.md", "A", "z/agent.toml"];
    paths.sort_by(|a, b| request_order(a, b));
    assert_eq!(paths, ["agent.toml", "A", "a.md", "b", "z/agent.toml"]);
}
