//! The command line as a newcomer uses it: `hive up`, `hive status`, `hive check`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Operator, free_port, hive_command};
use hyperhive::homeserver::OperatorCredentials;

fn wait_for(path: &Path, child: &mut std::process::Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!(
                "hive up exited ({s}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process seen running, by its pid and its start time (field 22 of `/proc/<pid>/stat`), so
/// that a later process given the same pid is not taken for it.
struct Running {
    pid: i32,
    start: u64,
}

/// The state letter and start time of `pid`, or `None` when there is no such process.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the name in parentheses (which may hold spaces and parentheses): field 3 first.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

impl Running {
    /// The Synapse `hive up` runs, by the pid it wrote: checked to be Synapse, and running.
    fn synapse(data: &Path) -> Self {
        let text = std::fs::read_to_string(data.join("run/synapse.pid")).unwrap();
        let pid: i32 = text.trim().parse().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("synapse.app.homeserver"),
            "pid {pid} is not Synapse: {:?}",
            String::from_utf8_lossy(&cmdline)
        );
        let (state, start) = stat(pid).expect("Synapse runs");
        assert!(!matches!(state, 'Z' | 'X'), "Synapse is dead already");
        Self { pid, start }
    }

    /// Whether the process is gone: `kill(pid, 0)` says ESRCH, or its pid is another process's
    /// now, or it is a zombie (dead, not reaped yet by whoever inherited it: not this test,
    /// which never spawned it).
    fn gone(&self) -> bool {
        use nix::sys::signal::kill;
        match kill(nix::unistd::Pid::from_raw(self.pid), None) {
            Err(nix::errno::Errno::ESRCH) => true,
            Err(e) => panic!("kill({}, 0): {e}", self.pid),
            Ok(()) => match stat(self.pid) {
                None => true,
                Some((state, start)) => start != self.start || matches!(state, 'Z' | 'X'),
            },
        }
    }
}

/// A `hive up` that is killed if the test ends without stopping it (a failed assertion must
/// not leave a hive holding its ports).
struct Up(std::process::Child);

impl std::ops::Deref for Up {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Up {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = sigterm_and_wait(&mut self.0);
        }
    }
}

fn sigterm_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_exit(child)
}

/// Waits for `hive up` to exit (40 s at most).
fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "hive up did not stop within 40 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hive_up_runs_the_shipped_bots_and_restarts_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("hive.toml");
    std::fs::write(
        &config,
        format!(
            "[homeserver]\nport = {}\n[appservice]\nlisten = \"127.0.0.1:{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let bots = Path::new(env!("CARGO_MANIFEST_DIR")).join("bots");
    let log = dir.path().join("up.log");
    // The shipped lanes use Claude Code: the shared, cached CLI, not an install per run (the
    // newcomer's install is tests/first_run.rs).
    let cli = hyperhive::install::ensure_claude_code(common::venv().parent().unwrap())
        .await
        .unwrap();
    let up = || {
        let mut cmd = hive_command(dir.path());
        if let Some(cli) = &cli {
            cmd.env("HYPERHIVE_CLAUDE_CODE", cli);
        }
        // A process group of its own, as a shell's job is: the terminal's Ctrl-C goes to it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(["up", "--config"])
            .arg(&config)
            .env("HYPERHIVE_DATA_DIR", &data)
            .env("HYPERHIVE_BOTS_DIR", &bots)
            .env("HYPERHIVE_SYNAPSE_VENV", common::venv())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let pid = data.join("run").join("c0re.pid");
    let mut hive = Up(up());
    wait_for(&pid, &mut hive, &log);
    let synapse = Running::synapse(&data);
    // The hive sees what the test gave it and nothing of the runner's environment.
    let environ = std::fs::read(format!("/proc/{}/environ", hive.id())).unwrap();
    let mut names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            String::from_utf8_lossy(v)
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    let mut given = vec![
        "HOME",
        "HYPERHIVE_BOTS_DIR",
        "HYPERHIVE_DATA_DIR",
        "HYPERHIVE_SYNAPSE_VENV",
        "LANG",
        "PATH",
        "RUST_BACKTRACE",
    ];
    if cli.is_some() {
        given.push("HYPERHIVE_CLAUDE_CODE");
        given.sort();
    }
    assert_eq!(names, given, "the environment of hive up");

    let creds = OperatorCredentials::load(&data)
        .unwrap()
        .expect("operator.json written");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(OperatorCredentials::path(&data))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "operator.json is private");
    let tokens_before = std::fs::read(data.join("appservice/tokens.json")).unwrap();

    let op = Operator::login(&creds).await;
    let hello = op.join("agent-hello").await;
    op.send(&hello, "ping").await;
    op.wait_until(&hello, Duration::from_secs(30), "pong", |m| {
        m.iter()
            .any(|x| x.body == "pong" && x.sender == "@hello:localhost")
    })
    .await;

    let status = hive_command(dir.path())
        .args(["status", "--config"])
        .arg(&config)
        .env("HYPERHIVE_DATA_DIR", &data)
        .env("HYPERHIVE_BOTS_DIR", &bots)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("healthy")
            && text.contains("hello")
            && text.contains("#agent-hello:localhost")
            && text.contains("approvals          0 open"),
        "{text}"
    );
    let rooms_before = hyperhive::store::Store::open(&data.join("c0re.db"))
        .unwrap()
        .rooms()
        .unwrap();
    drop(op);

    assert_eq!(
        sigterm_and_wait(&mut hive).code(),
        Some(0),
        "hive up stops cleanly:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // Stopped by the hive before it exited: gone now, not merely told to go.
    assert!(
        synapse.gone(),
        "Synapse (pid {}) was stopped with the hive:\n{}",
        synapse.pid,
        std::fs::read_to_string(&log).unwrap()
    );

    // Again: same tokens, same operator, same rooms.
    let mut hive = Up(up());
    wait_for(&pid, &mut hive, &log);
    assert_eq!(
        std::fs::read(data.join("appservice/tokens.json")).unwrap(),
        tokens_before
    );
    assert_eq!(
        OperatorCredentials::load(&data).unwrap().unwrap().password,
        creds.password
    );
    let rooms_after = hyperhive::store::Store::open(&data.join("c0re.db"))
        .unwrap()
        .rooms()
        .unwrap();
    assert_eq!(rooms_before, rooms_after);
    let op = Operator::login(&creds).await;
    let hello = op.join("agent-hello").await;
    op.send(&hello, "ping").await;
    // After a homeserver restart Synapse may hold events for the appservice until new traffic
    // passes (docs/architecture.md): the heartbeat (60 s) and its reconcile recover them, so
    // the wait covers one heartbeat.
    op.wait_until(&hello, Duration::from_secs(90), "pong after restart", |m| {
        m.iter().filter(|x| x.body == "pong").count() >= 2
    })
    .await;
    let synapse = Running::synapse(&data);
    // Ctrl-C at the terminal: SIGINT to the whole foreground group, not to `hive up` alone.
    // Synapse (a group of its own) is stopped by the hive after the core, never killed first
    // by the signal (then the core's shutdown waited on a dead homeserver and Synapse was
    // restarted mid-shutdown).
    let before = std::fs::read_to_string(&log).unwrap().len();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(hive.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_exit(&mut hive);
    let said = std::fs::read_to_string(&log).unwrap()[before..].to_owned();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(synapse.gone(), "the second Synapse was stopped too");
    let core_stopped = said.find("hive-c0re stopped");
    let synapse_stopped = said.find("hive: stopping Synapse");
    assert!(
        core_stopped.is_some() && core_stopped < synapse_stopped,
        "the core stops before Synapse:\n{said}"
    );
    assert!(
        !said.contains("Synapse exited"),
        "Synapse was not killed by the Ctrl-C:\n{said}"
    );
}

#[test]
fn check_accepts_the_shipped_bots() {
    let home = tempfile::tempdir().unwrap();
    let bots = Path::new(env!("CARGO_MANIFEST_DIR")).join("bots");
    let out = hive_command(home.path())
        .args(["check", "--bots"])
        .arg(&bots)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "hm1nd", "argus", "triage", "iris", "damocles", "atlas", "hello",
    ] {
        assert!(
            text.contains(&format!("@{name}:localhost")),
            "{name} missing:\n{text}"
        );
    }
}

#[test]
fn check_rejects_hostile_names_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().join("bots");
    let ok = "[brain]\nkind = \"scripted\"\n";
    for (name, toml) in [
        ("Evil", ok),
        ("a.b", ok),
        ("hive", ok),
        ("\u{430}rgus", ok),
        (
            "good",
            "allowed_recipients = [\"../etc\"]\n[brain]\nkind = \"scripted\"\n",
        ),
        ("typo", "[brain]\nkind = \"scripted\"\nrulez = []\n"),
    ] {
        common::write_bot(&bots, name, toml);
    }
    std::os::unix::fs::symlink(dir.path(), bots.join("escape")).unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[delivery]\nmax_attempts = 0\n").unwrap();
    let out = hive_command(dir.path())
        .args(["check", "--bots"])
        .arg(&bots)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("delivery.max_attempts"), "{err}");

    let out = hive_command(dir.path())
        .args(["check", "--bots"])
        .arg(&bots)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        "\"Evil\" must start with a lowercase ascii letter",
        "\"a.b\" has a forbidden character '.'",
        "\"hive\" is reserved",
        "\"\u{430}rgus\" must start with a lowercase ascii letter",
        "allowed_recipients",
        "escape: name: bot directory must not be a symlink",
        "brain.rulez",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // Nothing was created for any of them.
    assert!(!dir.path().join(".hive").exists());
}

#[test]
fn check_refuses_a_dollar_budget_without_a_price() {
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().join("bots");
    common::write_bot(
        &bots,
        "thrifty",
        "[brain]\nkind = \"openai\"\nmodel = \"qwen2.5:7b\"\n[brain.limits]\nusd_per_day = 1.0\n",
    );
    let config = dir.path().join("hive.toml");
    let check = || {
        hive_command(dir.path())
            .args(["check", "--bots"])
            .arg(&bots)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    std::fs::write(&config, "").unwrap();
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("thrifty: brain.limits: dollar budgets need a price: hive.toml has no [prices.\"qwen2.5:7b\"]"),
        "{err}"
    );
    std::fs::write(
        &config,
        "[prices.\"qwen2.5:7b\"]\ninput = 0.0\noutput = 0.0\n",
    )
    .unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_refuses_undeclared_providers_and_unreadable_keys() {
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().join("bots");
    common::write_bot(
        &bots,
        "stray",
        "[brain]\nkind = \"openai\"\nmodel = \"m\"\nprovider = \"nowhere\"\n",
    );
    common::write_bot(
        &bots,
        "mixed",
        "[brain]\nkind = \"anthropic\"\nmodel = \"m\"\nprovider = \"local\"\n",
    );
    common::write_bot(&bots, "quiet", "[brain]\nkind = \"claude-code\"\n");
    let config = dir.path().join("hive.toml");
    std::fs::write(
        &config,
        "[providers.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:11434/v1\"\n\
         [providers.paid]\nkind = \"openai\"\napi_key_file = \"keys/missing.key\"\nmodels = [\"gpt-x\"]\n",
    )
    .unwrap();
    let check = || {
        hive_command(dir.path())
            .args(["check", "--bots"])
            .arg(&bots)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let missing = dir.path().join("keys/missing.key");
    for needle in [
        "error: stray: brain.provider \"nowhere\" is not declared in hive.toml".to_owned(),
        "error: mixed: brain.provider \"local\" speaks openai, but this anthropic brain needs a provider of kind = \"anthropic\"".to_owned(),
        format!("error: providers.paid.api_key_file: cannot read {}", missing.display()),
        "warning: quiet: no [providers.anthropic] in hive.toml: it cannot think until one is declared".to_owned(),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
    // The resolved providers are listed, key files made absolute.
    assert!(
        text.contains("local        openai    http://127.0.0.1:11434/v1  no key  models: any"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "paid         openai    https://api.openai.com/v1  api key {}  models: gpt-x",
            missing.display()
        )),
        "{text}"
    );
    // An agent.toml that still names a host and a key is told where they went.
    let legacy = dir.path().join("legacy");
    common::write_bot(
        &legacy,
        "old",
        "[brain]\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
    );
    let out = hive_command(dir.path())
        .args(["check", "--bots"])
        .arg(&legacy)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("old/agent.toml: brain.base_url: moved to hive.toml: declare [providers.<name>] with base_url and api_key_file and name it here with provider = \"<name>\""),
        "{err}"
    );
}

/// What a timed-out wait of the harness prints: the end of the core's log and of each agent's,
/// not their beginnings.
#[test]
fn a_timed_out_wait_shows_the_tail_of_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let core: String = (0..100).map(|i| format!("core line {i}\n")).collect();
    std::fs::write(dir.path().join("c0re.log"), core).unwrap();
    let agent = dir.path().join("data/agents/hello");
    std::fs::create_dir_all(&agent).unwrap();
    let lines: String = (0..50).map(|i| format!("agent line {i}\n")).collect();
    std::fs::write(agent.join("agent.log"), lines).unwrap();
    let tail = common::logs_tail(dir.path());
    assert!(
        tail.contains("core line 99") && tail.contains("core line 40"),
        "{tail}"
    );
    assert!(
        !tail.contains("core line 39\n"),
        "only the last 60 lines: {tail}"
    );
    assert!(
        tail.contains("agent line 49") && !tail.contains("agent line 29\n"),
        "{tail}"
    );
    assert!(
        tail.contains("data/agents/hello/agent.log"),
        "names the file: {tail}"
    );
}
