use super::*;

#[test]
fn mechanism_table() {
    let f = |systemd_running, systemd_run, root, user_manager| Facts {
        systemd_running,
        systemd_run,
        root,
        user_manager,
    };
    let scope = |user| Mechanism::SystemdScope { user };
    let cases = [
        (
            "systemd, root: a system scope",
            f(true, true, true, false),
            scope(false),
        ),
        (
            "root with a user manager too: the system's",
            f(true, true, true, true),
            scope(false),
        ),
        (
            "systemd, not root, a user manager",
            f(true, true, false, true),
            scope(true),
        ),
        (
            "systemd, not root, no user manager",
            f(true, true, false, false),
            Mechanism::Rlimits,
        ),
        (
            "no systemd-run",
            f(true, false, true, true),
            Mechanism::Rlimits,
        ),
        (
            "PID 1 is not systemd (this CI)",
            f(false, true, true, true),
            Mechanism::Rlimits,
        ),
        ("nothing", Facts::default(), Mechanism::Rlimits),
    ];
    for (name, facts, want) in cases {
        assert_eq!(mechanism(facts), want, "{name}");
    }
}

#[test]
fn scope_args_carry_every_limit() {
    let r = Resources {
        memory_bytes: 64 << 20,
        cpu_percent: 150,
        tasks: 100,
    };
    assert_eq!(
        scope_args(&r, true, "hyperhive-0011aabb-hog").join(" "),
        "--scope --quiet --collect --user --unit=hyperhive-0011aabb-hog -p MemoryHigh=67108864 -p MemoryMax=134217728 \
         -p MemorySwapMax=0 -p CPUQuota=150% -p TasksMax=100 --"
    );
    assert!(!scope_args(&r, false, "u").contains(&"--user".to_owned()));
    let a = unit_name("hog", Path::new("/var/lib/hyperhive/agents/hog/state"));
    let b = unit_name("hog", Path::new("/other/agents/hog/state"));
    assert!(
        a.starts_with("hyperhive-") && a.ends_with("-hog") && a != b,
        "{a} {b}"
    );
    assert_eq!(data_limit(64 << 20), 128 << 20);
}

#[test]
fn stat_lines_parse() {
    let page = 4096;
    let stat = |pid: i32, name: &str, ppid: i32, rss: i64| {
        format!(
            "{pid} ({name}) S {ppid} 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123 4096000 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        )
    };
    let cases = [
        (stat(12, "python3", 1, 10), Some((12, 1, 40960))),
        (stat(13, "a) (b c", 12, 2), Some((13, 12, 8192))),
        (stat(14, "zombie", 12, 0), Some((14, 12, 0))),
        ("garbage".to_owned(), None),
        ("15 (short) S 1".to_owned(), None),
    ];
    for (line, want) in cases {
        let got = parse_stat(&line, page).map(|p| (p.pid, p.ppid, p.rss_bytes));
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn tree_rss_sums_a_tree_and_nothing_else() {
    let p = |pid, ppid, mib: u64| ProcInfo {
        pid,
        ppid,
        rss_bytes: mib << 20,
    };
    // 10 (bwrap) → 11 (its init) → 12 (harness) → 13, 14 (brain, its child); 20 a stranger
    // under the same parent as 10; 15 under 12.
    let procs = [
        p(1, 0, 5),
        p(10, 1, 1),
        p(11, 10, 1),
        p(12, 11, 20),
        p(13, 12, 30),
        p(14, 13, 40),
        p(15, 12, 2),
        p(20, 1, 500),
    ];
    let cases = [
        ("the whole sandbox", 10, 94),
        ("a subtree", 13, 70),
        ("a leaf", 14, 40),
        ("a root gone: nothing", 99, 0),
    ];
    for (name, root, mib) in cases {
        assert_eq!(tree_rss(&procs, root), mib << 20, "{name}");
    }
    let mut t = tree(&procs, 12);
    t.sort();
    assert_eq!(t, [12, 13, 14, 15]);
    // A cycle (pid reuse mid-walk) ends.
    assert_eq!(tree(&[p(5, 6, 1), p(6, 5, 1)], 5).len(), 2);
}

/// The real /proc: this test process's tree holds itself, with some memory.
#[test]
fn this_process_has_a_tree_with_memory() {
    let me = std::process::id() as i32;
    let procs = read_procs();
    assert!(procs.iter().any(|p| p.pid == me));
    assert!(tree_rss(&procs, me) > 1 << 20);
}
