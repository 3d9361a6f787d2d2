//! The newcomer's path, literally: a fresh clone, the README's first command, nothing else.
//!
//! A copy of the repository (every file git would put in a clone, plus uncommitted work, so
//! this tests the tree as it is) becomes a git work tree of its own, and the `cargo run … up`
//! line of README.md's first `sh` block runs in it as written: no `--data-dir`, no `--bots`, no
//! `HYPERHIVE_*` variables, the default `./.hive` and `./bots` and ports 8008/8009. Synapse is
//! installed from PyPI into the copy's `.hive` (and the Claude Code CLI from npm) as on a
//! newcomer's machine, inside a git work tree as in a clone. Paths that were made absolute by
//! the tests hid bugs on this path: a relative data dir once broke the very first start.
//!
//! Slow the first time: `cargo run --release` builds the whole project in release mode, into
//! `CARGO_TARGET_DIR` (default `~/.cache/hyperhive/target`, as in CI), so later runs only
//! rebuild hyperhive itself; the first start of the copy also installs Synapse. The second
//! start, in the same copy, must reuse everything (issue 15: it reinstalled Synapse each time).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::Operator;
use hyperhive::homeserver::OperatorCredentials;
use matrix_sdk::ruma::RoomAliasId;

/// A cold release build and a Synapse install fit in this.
const START: Duration = Duration::from_secs(25 * 60);
const READY_LINE: &str = "Log in from any Matrix client";
/// How hello's `help` answer begins (bots/hello/agent.toml).
const HELLO_HELP: &str = "I am **hello**";

/// The argv of the `cargo run … up` line in README.md's first ```sh block (comment stripped).
fn readme_up_command(readme: &str) -> Option<Vec<String>> {
    let mut lines = readme.lines();
    lines.find(|l| l.trim_start().starts_with("```sh"))?;
    lines
        .take_while(|l| !l.trim_start().starts_with("```"))
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| l.starts_with("cargo run") && format!("{l} ").contains(" up "))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
}

#[test]
fn the_readme_line_is_parsed() {
    let argv = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for (readme, want) in [
        (
            "# x\n```sh\ncargo run --release -- up   # run it\ncargo test\n```\n",
            argv(&["cargo", "run", "--release", "--", "up"]),
        ),
        (
            "```sh\ncargo build\ncargo run -- up --data-dir d\n```\n",
            argv(&["cargo", "run", "--", "up", "--data-dir", "d"]),
        ),
        // Only the first sh block counts; other fences and lines are not it.
        (
            "```\ncargo run -- up\n```\n```sh\ncargo test\n```\n```sh\ncargo run -- up\n```\n",
            None,
        ),
        ("```sh\ncargo run -- upgrade\n```\n", None),
        ("```sh\n# cargo run -- up\n```\n", None),
        ("no code at all", None),
    ] {
        assert_eq!(readme_up_command(readme), want, "{readme:?}");
    }
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let real =
        readme_up_command(&readme).expect("README.md's first sh block runs `cargo run … up`");
    assert_eq!(real[..2], ["cargo", "run"]);
    assert!(real.contains(&"up".to_owned()), "{real:?}");
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The repository as a clone would have it, plus uncommitted work, as a git work tree in `to`.
fn copy_repository(to: &Path) {
    let from = manifest_dir();
    let listed = git(
        &from,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    );
    let mut copied = 0;
    for name in listed.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::str::from_utf8(name).unwrap());
        let src = from.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&src) else {
            continue; // deleted in the work tree, not yet in the index
        };
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap(); // keeps the mode (executable scripts)
        }
        copied += 1;
    }
    assert!(
        copied > 10,
        "only {copied} files listed in {}",
        from.display()
    );
    git(to, &["init", "-q", "-b", "main"]);
    git(to, &["add", "-A"]);
    git(
        to,
        &[
            "-c",
            "user.name=first run",
            "-c",
            "user.email=first-run@localhost",
            "commit",
            "-q",
            "-m",
            "a fresh clone",
        ],
    );
}

/// Fails clearly if another program holds a default port (this test needs them).
fn ports_free() {
    for port in [8008, 8009, 8787] {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            panic!(
                "port {port} is in use ({e}): this test runs the hive on its default ports 8008, \
                 8009 and 8787; stop whatever holds them (another `hive up`?)"
            );
        }
    }
}

/// The clean environment of a newcomer's shell: no HYPERHIVE_*, no cargo test variables.
fn newcomer_env(cmd: &mut Command) {
    cmd.env_clear();
    for var in ["PATH", "HOME", "LANG", "RUSTUP_HOME", "CARGO_HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/hyperhive/target")
        });
    cmd.env("CARGO_TARGET_DIR", target);
}

/// `cargo run … up` running in the copy, its stderr in a file. Stopped when dropped.
struct Up {
    child: Option<Child>,
    log: PathBuf,
}

impl Up {
    fn start(repo: &Path, argv: &[String], log: PathBuf) -> Self {
        ports_free();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(repo);
        newcomer_env(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            log,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `line` in stderr; fails if the process exits first.
    fn wait_for(&mut self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(line) {
                return;
            }
            let child = self.child.as_mut().expect("running");
            if let Some(s) = child.try_wait().unwrap() {
                panic!(
                    "`cargo run … up` exited ({s}) before {line:?}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} within {} s:\n{}",
                timeout.as_secs(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGTERM (Ctrl-C's twin) and the exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = sigterm_and_wait(&mut child, Duration::from_secs(60));
        status.unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hive up did not stop within 60 s of SIGTERM:\n{}",
                self.stderr()
            )
        })
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed test must not leave a hive on the default ports.
        if let Some(mut child) = self.child.take()
            && sigterm_and_wait(&mut child, Duration::from_secs(30)).is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sigterm_and_wait(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    if let Some(s) = child.try_wait().unwrap() {
        return Some(s);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Processes (other than this test) whose command line or working directory is inside `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    let inside = |s: &str| s == dir || s.contains(&format!("{dir}/"));
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if inside(cmdline.trim()) || inside(&cwd) {
            found.push(format!("{pid}: {} (in {cwd})", cmdline.trim()));
        }
    }
    found
}

/// Polls until no process is left inside `dir` (30 s), else fails naming them.
fn nothing_left_in(dir: &Path, run: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = processes_in(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{run}: processes left behind after hive up exited:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Logs in as the operator of the copy's hive, says `help` in `#agent-hello` and waits for
/// hello's answer (a new one: the room may hold an earlier run's).
async fn hello_answers(repo: &Path, up: &Up) {
    let creds = OperatorCredentials::load(&repo.join(".hive"))
        .unwrap()
        .expect(".hive/operator.json is written before the ready line");
    let op = Operator::login(&creds).await;
    // The rooms appear once hive-c0re is up, which may be well after the ready line: the
    // agents wait for the Claude Code install (minutes on a slow registry connection).
    let alias = RoomAliasId::parse("#agent-hello:localhost").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15 * 60);
    let room = loop {
        match op
            .client
            .join_room_by_id_or_alias((&*alias).into(), &[])
            .await
        {
            Ok(room) => break room,
            Err(e) => assert!(
                Instant::now() < deadline,
                "cannot join {alias}: {e}\n{}",
                up.stderr()
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let answers = |m: &[common::Seen]| {
        m.iter()
            .filter(|x| x.sender == "@hello:localhost" && x.body.starts_with(HELLO_HELP))
            .count()
    };
    let before = answers(&op.seen.lock().unwrap().clone());
    op.send(&room, "help").await;
    op.wait_until(&room, Duration::from_secs(180), "hello's help", |m| {
        answers(m) > before
    })
    .await;
}

/// The line before the web console's link (README: what `hive up` prints).
const CONSOLE_LINK: &str = "        console     ";

/// Follows the console link `hive up` printed, as a browser would: it shows a log-in button,
/// whose post logs in once (a session cookie, then the main page with hello's row), and is
/// refused the second time.
async fn console_link_logs_in(up: &mut Up) {
    up.wait_for(CONSOLE_LINK, START);
    let text = up.stderr();
    let link = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(CONSOLE_LINK))
        .expect("the console line carries a link")
        .trim()
        .to_owned();
    assert!(
        link.starts_with("http://127.0.0.1:8787/login?token="),
        "the default console address: {link}"
    );
    let http = common::no_redirect_client();
    let shown = http.get(&link).send().await.unwrap();
    assert_eq!(shown.status(), 200, "the link shows a log-in button");
    let button = shown.text().await.unwrap();
    assert!(button.contains("id=\"login\""), "{button}");
    let login = common::post_login(&http, &link).await;
    assert_eq!(login.status(), 303, "the button logs in once");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("the login sets the session cookie")
        .to_owned();
    assert!(cookie.starts_with("hive_session="), "{cookie}");
    let page = http
        .get("http://127.0.0.1:8787/")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(
        body.contains("id=\"agent-hello\""),
        "the main page lists hello:\n{body}"
    );
    let again = common::post_login(&http, &link).await;
    assert_eq!(again.status(), 403, "the link works once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_command_runs_the_hive_from_a_fresh_clone() {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let argv =
        readme_up_command(&readme).expect("README.md's first sh block runs `cargo run … up`");
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("hyperhive");
    copy_repository(&repo);

    let started = Instant::now();
    let mut up = Up::start(&repo, &argv, tmp.path().join("first.log"));
    up.wait_for(READY_LINE, START);
    eprintln!("first run ready in {} s", started.elapsed().as_secs());
    assert!(
        up.stderr().contains("installing Synapse"),
        "a fresh clone installs Synapse into ./.hive:\n{}",
        up.stderr()
    );
    hello_answers(&repo, &up).await;
    console_link_logs_in(&mut up).await;
    assert_eq!(up.stop().code(), Some(0), "first run:\n{}", up.stderr());
    nothing_left_in(tmp.path(), "first run");

    let started = Instant::now();
    let mut up = Up::start(&repo, &argv, tmp.path().join("second.log"));
    up.wait_for(READY_LINE, START);
    eprintln!("second run ready in {} s", started.elapsed().as_secs());
    for again in ["installing Synapse", "installing Claude Code"] {
        assert!(
            !up.stderr().contains(again),
            "the second run reuses what the first installed, yet says {again:?}:\n{}",
            up.stderr()
        );
    }
    hello_answers(&repo, &up).await;
    assert_eq!(up.stop().code(), Some(0), "second run:\n{}", up.stderr());
    nothing_left_in(tmp.path(), "second run");
}
