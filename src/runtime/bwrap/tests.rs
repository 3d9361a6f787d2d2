//! The sandbox's arguments as data: what is bound where and how, what is unshared, which
//! environment reaches the harness, and the paths refused. `sandbox` is fed a made-up host
//! (nothing here reads the machine), so each rule is checked by its own row.

use super::*;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;

use crate::agent_spec::AgentName;

/// One agent of a hive whose data dir is `/srv/hive` (as the core lays it out).
fn launch(name: &str) -> AgentLaunch {
    let dir = PathBuf::from("/srv/hive/agents").join(name);
    AgentLaunch {
        uid: None,
        bin: None,
        claude_code: None,
        name: AgentName::parse(name).unwrap(),
        spec_dir: dir.join("current"),
        socket_dir: dir.join("sock"),
        state_dir: dir.join("state"),
        log: dir.join("agent.log"),
        resources: crate::agent_spec::resources::DEFAULT,
    }
}

/// A merged-/usr host, the config generation resolved, `hive-agent` beside `hive`.
fn host() -> Host {
    Host {
        tops: vec![
            ("/bin", Top::Link("usr/bin".into())),
            ("/lib", Top::Link("usr/lib".into())),
            ("/lib64", Top::Dir),
        ],
        config: "/srv/hive/agents/jail/gen/3".into(),
        harness: "/opt/hyperhive/bin/hive-agent".into(),
        pre: Vec::new(),
        hive: "/opt/hyperhive/bin/hive".into(),
        claude: None,
    }
}

/// bwrap's options, read back: each with its values, then the command after `--`.
#[derive(Debug, Default)]
struct Parsed {
    /// `(option, values)` in order, for options with values (`--bind SRC DEST`, `--proc DEST`…).
    opts: Vec<(String, Vec<String>)>,
    /// Options without values (`--unshare-all`, `--die-with-parent`, …).
    flags: Vec<String>,
    command: Vec<String>,
    env: Vec<(String, Option<String>)>,
}

impl Parsed {
    fn of(cmd: &tokio::process::Command) -> Self {
        let std = cmd.as_std();
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_str().unwrap().to_owned())
            .collect();
        let mut p = Parsed::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let n = match a.as_str() {
                "--" => {
                    p.command = it.by_ref().collect();
                    break;
                }
                "--unshare-all" | "--share-net" | "--die-with-parent" | "--new-session"
                | "--clearenv" | "--unshare-net" | "--unshare-user" => 0,
                "--hostname" | "--proc" | "--dev" | "--tmpfs" | "--remount-ro" | "--chdir"
                | "--cap-drop" | "--cap-add" | "--dir" | "--unsetenv" => 1,
                "--bind" | "--ro-bind" | "--ro-bind-try" | "--bind-try" | "--dev-bind"
                | "--dev-bind-try" | "--symlink" | "--setenv" => 2,
                other => panic!("an option the test does not know: {other} (classify it)"),
            };
            if n == 0 {
                p.flags.push(a);
            } else {
                let values = it.by_ref().take(n).collect();
                p.opts.push((a, values));
            }
        }
        p.env = std
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_str().unwrap().to_owned(),
                    v.map(|v| v.to_str().unwrap().to_owned()),
                )
            })
            .collect();
        p
    }

    /// Every `(option, source, destination)` that puts a host path in the sandbox.
    fn binds(&self) -> Vec<(&str, &str, &str)> {
        self.opts
            .iter()
            .filter(|(o, _)| o.contains("bind"))
            .map(|(o, v)| (o.as_str(), v[0].as_str(), v[1].as_str()))
            .collect()
    }

    fn values(&self, opt: &str) -> Vec<&[String]> {
        self.opts
            .iter()
            .filter(|(o, _)| o == opt)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    fn env(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn build(launch: &AgentLaunch, host: &Host) -> anyhow::Result<Parsed> {
    let mut cmd = tokio::process::Command::new("bwrap");
    sandbox(&mut cmd, launch, host)?;
    Ok(Parsed::of(&cmd))
}

#[test]
fn exactly_these_host_paths_are_bound_and_only_the_state_dir_is_writable() {
    let p = build(&launch("jail"), &host()).unwrap();
    let mut binds = p.binds();
    binds.sort();
    let mut want = vec![
        (
            "--bind",
            "/srv/hive/agents/jail/state",
            "/srv/hive/agents/jail/state",
        ),
        ("--ro-bind", "/lib64", "/lib64"),
        ("--ro-bind", "/opt/hyperhive/bin/hive", HIVE_IN_SANDBOX),
        (
            "--ro-bind",
            "/opt/hyperhive/bin/hive-agent",
            HARNESS_IN_SANDBOX,
        ),
        (
            "--ro-bind",
            "/srv/hive/agents/jail/gen/3",
            CONFIG_IN_SANDBOX,
        ),
        (
            "--ro-bind",
            "/srv/hive/agents/jail/sock",
            "/srv/hive/agents/jail/sock",
        ),
        ("--ro-bind", "/usr", "/usr"),
    ];
    want.extend(ETC.iter().map(|e| ("--ro-bind-try", *e, *e)));
    want.sort();
    assert_eq!(binds, want);
    // The merged-usr links are links, not binds; the rest is the sandbox's own.
    assert_eq!(
        p.values("--symlink"),
        [["usr/bin", "/bin"], ["usr/lib", "/lib"]]
    );
    for (opt, dest) in [("--proc", "/proc"), ("--dev", "/dev"), ("--tmpfs", "/tmp")] {
        assert_eq!(p.values(opt), [[dest]], "{opt}");
    }
    assert_eq!(p.values("--remount-ro"), [["/"]], "the root is read-only");
    assert_eq!(p.values("--chdir"), [["/srv/hive/agents/jail/state"]]);
    // No path bound that can reach the devices of the host, nothing writable but the state.
    assert!(binds.iter().all(|(o, ..)| !o.starts_with("--dev-bind")));
    let writable: Vec<_> = binds
        .iter()
        .filter(|(o, ..)| o.starts_with("--bind"))
        .collect();
    assert_eq!(writable.len(), 1, "{writable:?}");
}

#[test]
fn nothing_the_core_owns_is_in_the_sandbox() {
    let p = build(&launch("jail"), &host()).unwrap();
    // The agent's own files under the data dir: its state, its socket dir, its generation.
    let own = [
        "/srv/hive/agents/jail/state",
        "/srv/hive/agents/jail/sock",
        "/srv/hive/agents/jail/gen/3",
    ];
    for (opt, src, _) in p.binds() {
        let src = Path::new(src);
        if src.starts_with("/srv/hive") {
            assert!(
                own.iter().any(|o| src == Path::new(o)),
                "{opt} {} is the core's",
                src.display()
            );
        }
        // Nor any directory holding the data dir (which would hold all of it).
        assert!(
            !Path::new("/srv/hive").starts_with(src) || src == Path::new("/"),
            "{}",
            src.display()
        );
        assert_ne!(src, Path::new("/"), "the host's root");
    }
    // Named: the core's secrets and every other agent's directory.
    for core_owned in [
        "/srv/hive",
        "/srv/hive/operator.json",
        "/srv/hive/appservice",
        "/srv/hive/appservice/registration.yaml",
        "/srv/hive/appservice/tokens.json",
        "/srv/hive/c0re.db",
        "/srv/hive/synapse",
        "/srv/hive/run",
        "/srv/hive/agents",
        "/srv/hive/agents/jail",
        "/srv/hive/agents/jail/agent.log",
        "/srv/hive/agents/neighbour",
        "/srv/hive/agents/neighbour/state",
        "/srv/hive/agents/neighbour/sock",
        "/root",
        "/home",
        "/etc",
        "/etc/shadow",
    ] {
        assert!(
            p.binds().iter().all(|(_, src, _)| *src != core_owned),
            "{core_owned} is bound"
        );
    }
}

#[test]
fn every_namespace_is_unshared_and_every_capability_dropped() {
    let p = build(&launch("jail"), &host()).unwrap();
    for flag in ["--unshare-all", "--die-with-parent", "--new-session"] {
        assert!(p.flags.iter().any(|f| f == flag), "{flag}: {:?}", p.flags);
    }
    // No network: nothing shares it back (there is no setting that allows it).
    assert!(!p.flags.iter().any(|f| f == "--share-net"), "{:?}", p.flags);
    assert_eq!(p.values("--cap-drop"), [["ALL"]]);
    assert!(p.values("--cap-add").is_empty());
    assert_eq!(p.values("--hostname"), [["hive-jail"]]);
}

#[test]
fn the_harness_runs_inside_with_the_paths_it_sees_there() {
    let mut h = host();
    h.pre = vec!["agent"];
    let p = build(&launch("jail"), &h).unwrap();
    assert_eq!(
        p.command,
        [
            HARNESS_IN_SANDBOX,
            "agent",
            "--bot",
            CONFIG_IN_SANDBOX,
            "--name",
            "jail",
            "--socket",
            "/srv/hive/agents/jail/sock/c0re.sock",
            "--state",
            "/srv/hive/agents/jail/state",
        ]
    );
}

#[test]
fn the_environment_is_the_allow_listed_one() {
    let mut l = launch("jail");
    // A host path the core knows: never handed on as it is (it names nothing inside).
    l.claude_code = Some("/root/.cache/claude".into());
    for (cli, want) in [
        (None, None),
        (Some(PathBuf::from("/opt/claude")), Some(CLAUDE_IN_SANDBOX)),
    ] {
        let mut h = host();
        h.claude = cli.clone();
        let p = build(&l, &h).unwrap();
        let allowed = [
            "PATH",
            "HOME",
            "LANG",
            "RUST_LOG",
            crate::failpoint::ENV,
            crate::config::env::CLAUDE_CODE,
        ];
        for (k, v) in &p.env {
            assert!(
                allowed.contains(&k.as_str()) || v.is_none(),
                "{k} reaches the harness"
            );
        }
        assert_eq!(p.env("PATH"), Some(SANDBOX_PATH));
        assert_eq!(p.env("HOME"), Some("/srv/hive/agents/jail/state"));
        assert_eq!(p.env("LANG"), Some("C.UTF-8"));
        assert_eq!(p.env(crate::config::env::CLAUDE_CODE), want, "{cli:?}");
        let bound = p.binds().iter().any(|(_, _, d)| *d == CLAUDE_IN_SANDBOX);
        assert_eq!(bound, cli.is_some(), "{cli:?}");
    }
    // Cleared, not inherited: the core's own variables are not passed on (std shows a
    // cleared environment as `env -i` before the variables set).
    let mut cmd = tokio::process::Command::new("bwrap");
    sandbox(&mut cmd, &l, &host()).unwrap();
    let shown = format!("{:?}", cmd.as_std());
    assert!(shown.starts_with("env -i "), "{shown}");
}

/// A change that makes one of the sandbox's inputs hostile.
type Spoil = fn(&mut AgentLaunch, &mut Host);

#[test]
fn paths_that_are_not_plain_are_refused() {
    let cases: &[(&str, Spoil, &str)] = &[
        (
            "relative state",
            |l, _| l.state_dir = "agents/jail/state".into(),
            "agents/jail/state is not an absolute path",
        ),
        (
            "state through ..",
            |l, _| l.state_dir = "/srv/hive/agents/jail/../neighbour/state".into(),
            "is not a plain path",
        ),
        (
            "socket through ..",
            |l, _| l.socket_dir = "/srv/hive/agents/jail/sock/../..".into(),
            "is not a plain path",
        ),
        (
            "relative config",
            |_, h| h.config = "gen/3".into(),
            "gen/3 is not an absolute path",
        ),
        (
            "config with .",
            |_, h| h.config = "/srv/hive/./agents".into(),
            "is not a plain path",
        ),
        (
            "harness through ..",
            |_, h| h.harness = "/opt/../srv/hive/hive-agent".into(),
            "is not a plain path",
        ),
        (
            "cli through ..",
            |_, h| h.claude = Some("/opt/../root/claude".into()),
            "is not a plain path",
        ),
        (
            "state not UTF-8",
            |l, _| {
                use std::os::unix::ffi::OsStrExt;
                l.state_dir = PathBuf::from(OsStr::from_bytes(b"/srv/\xff/state"));
            },
            "is not UTF-8",
        ),
    ];
    for (case, spoil, why) in cases {
        let (mut l, mut h) = (launch("jail"), host());
        spoil(&mut l, &mut h);
        let err = build(&l, &h)
            .map(|_| ())
            .expect_err(&format!("{case} is refused"));
        assert!(format!("{err:#}").contains(why), "{case}: {err:#}");
    }
}

#[test]
fn hostile_agent_names_never_reach_the_sandbox() {
    // The name becomes the hostname and part of every path: it is an `AgentName` or nothing.
    for hostile in ["../x", "a b", "--share-net", "a/b", "", "Evil"] {
        assert!(AgentName::parse(hostile).is_err(), "{hostile:?}");
    }
}

#[test]
fn a_signal_inside_the_sandbox_is_named() {
    let b = Bwrap {
        bwrap: PathBuf::from("/usr/bin/bwrap"),
        limits: super::super::limits::Mechanism::Rlimits,
    };
    let code = |c: i32| std::process::ExitStatus::from_raw(c << 8);
    assert_eq!(b.describe_exit(code(137)), "signal: 9 (in its sandbox)");
    assert_eq!(b.describe_exit(code(1)), "exit status: 1");
    assert_eq!(
        b.describe_exit(std::process::ExitStatus::from_raw(9)),
        "signal: 9 (SIGKILL)"
    );
}
