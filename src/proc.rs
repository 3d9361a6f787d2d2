//! Child processes, one copy of each thing the house does with them: start a child that dies
//! with its parent ([`spawn_tied`], [`die_with_parent`]), stop one (SIGTERM, a grace period,
//! SIGKILL: [`stop`]), kill whatever a uid left running ([`kill_all_of_uid`]), the scrubbed
//! environment every child of the hive starts from ([`scrub_env`], [`harness_child`]), and the
//! random secrets and ids the house hands out ([`random_secret`], [`uuid_v4`]).
//!
//! A leaf: it imports nothing of the crate, and every `pre_exec` (the only `unsafe` of the
//! house) is here.
//!
//! ## Dying with the parent
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not the process: a
//! child forked from a tokio worker that later becomes a blocking-pool thread (after
//! `block_in_place`), or from a `spawn_blocking` thread, is killed when that idle thread ends
//! (after 10 s by default), which is a spurious kill. So in a multi-threaded process (the core)
//! every child that must die with it is forked from one thread that lives as long as the
//! process: the spawner thread of [`spawn_tied`]. The harness runs on one thread, which lives as
//! long as it does, so its children ([`harness_child`]) are forked straight from it.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::distr::{Alphanumeric, SampleString};
use tokio::process::{Child, Command};

type Job = (
    Command,
    tokio::runtime::Handle,
    tokio::sync::oneshot::Sender<std::io::Result<Child>>,
);

/// The spawner thread: one per process, started on first use, never exits (a process-wide
/// resource, as the signal it serves is).
fn spawner() -> &'static std::sync::Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hive-spawner".into())
            .spawn(move || {
                for (mut cmd, handle, reply) in rx {
                    // tokio::process registers the child with the runtime it is spawned in.
                    let _runtime = handle.enter();
                    // Fire and forget: an asker that has gone away drops the child with the
                    // message (its `kill_on_drop` then ends it); nobody is left to tell.
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("the OS can start one thread");
        std::sync::Mutex::new(tx)
    })
}

/// Asks the kernel to SIGTERM the child when the thread forking it exits.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd
}

/// Limits the child's data segment (`RLIMIT_DATA`, soft and hard) to `bytes`: allocations past
/// it fail (malloc returns NULL, Python raises MemoryError); inherited by all it starts.
pub fn limit_data(cmd: &mut Command, bytes: u64) -> &mut Command {
    // SAFETY: setrlimit(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            use nix::sys::resource::{Resource, setrlimit};
            setrlimit(Resource::RLIMIT_DATA, bytes, bytes).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd
}

/// Spawns `cmd` so that it dies with this process, and only then: from the spawner thread,
/// with `PR_SET_PDEATHSIG`. Must be called inside a tokio runtime.
pub async fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    die_with_parent(&mut cmd);
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = (cmd, tokio::runtime::Handle::current(), reply);
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(job)
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// Asks a child to stop (SIGTERM), then kills it (SIGKILL) once `grace` has passed.
pub async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        // Fire and forget: the only failure is a child that is already gone (ESRCH).
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!("child did not stop in time; killing it");
        if let Err(e) = child.kill().await {
            tracing::warn!(error = %e, "could not kill the child");
        }
    }
}

/// Kills every process of `uid` (what an agent left running: a detached child could otherwise
/// race the core's walk over its files). `kill(-1)` sent as that uid reaches exactly its
/// processes.
pub async fn kill_all_of_uid(uid: u32) {
    let mut cmd = Command::new("true");
    cmd.uid(uid).gid(uid).stdin(std::process::Stdio::null());
    // SAFETY: kill(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // Fire and forget: ESRCH means that uid had nothing running.
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            Ok(())
        });
    }
    // Fire and forget: either way the processes got the signal; the helper itself may be among
    // them (and then reports a kill).
    let _ = cmd.status().await;
}

/// `PATH` for a child on this host: this process's own, else `/usr/bin:/bin`.
pub fn host_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into())
}

/// The environment every child of the hive starts from: cleared (no token or key of its
/// parent leaks into it), then only `PATH`, `HOME` and `LANG` (`C.UTF-8`). Callers add what
/// the child needs on top.
pub fn scrub_env<'c>(cmd: &'c mut Command, path: &OsStr, home: &Path) -> &'c mut Command {
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
}

/// Everything a harness starts (command brains, the Claude Code CLI, declared MCP servers):
/// the scrubbed environment with `HOME` the agent's state dir and this host's `PATH`, and
/// SIGTERM if the harness dies (PR_SET_PDEATHSIG, forked straight from the harness's one
/// thread, which lives as long as it does, so the signal means the harness is gone).
pub fn harness_child<'c>(cmd: &'c mut Command, home: &Path) -> &'c mut Command {
    scrub_env(die_with_parent(cmd), &host_path(), home)
}

/// A random alphanumeric string of `len` characters (tokens, passwords, transaction ids).
pub fn random_secret(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// A random (version 4) UUID, as its canonical lowercase text.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        // A zombie still answers kill(0): read its state instead.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                let state = s.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z') && !state.starts_with('X')
            })
            .unwrap_or(false)
    }

    /// The hazard is real: a child whose forking thread ends is killed, though its process
    /// lives on. Through the spawner, it is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_child_outlives_the_thread_that_asked_for_it() {
        // Forked straight from a short-lived thread: killed when that thread exits.
        let handle = tokio::runtime::Handle::current();
        let naive = std::thread::spawn(move || {
            let _g = handle.enter();
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            die_with_parent(&mut cmd);
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap();
        let naive_pid = naive.id().unwrap() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(naive_pid) {
            assert!(
                Instant::now() < deadline,
                "PR_SET_PDEATHSIG did not fire on the thread's exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Asked for from a short-lived thread, forked by the spawner: alive after that thread
        // (and a grace period for the signal) is gone.
        let handle = tokio::runtime::Handle::current();
        let mut tied = std::thread::spawn(move || {
            handle.block_on(async {
                let mut cmd = Command::new("sleep");
                cmd.arg("30").kill_on_drop(true);
                spawn_tied(cmd).await.unwrap()
            })
        })
        .join()
        .unwrap();
        let pid = tied.id().unwrap() as i32;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            alive(pid),
            "the spawner's child died with the asking thread"
        );
        tied.kill().await.unwrap();
    }

    /// A scrubbed child sees PATH, HOME and LANG, and nothing of its parent's environment.
    #[tokio::test]
    async fn a_scrubbed_child_sees_only_what_it_is_given() {
        // The test runner's own environment is large (cargo sets CARGO_*): none of it passes.
        assert!(std::env::vars_os().count() > 4);
        let home = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("env");
        harness_child(&mut cmd, home.path()).env("EXTRA", "1");
        let out = cmd.output().await.unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut seen: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_once('=').map_or(l, |(k, _)| k).to_owned())
            .collect();
        seen.sort();
        assert_eq!(seen, ["EXTRA", "HOME", "LANG", "PATH"]);
    }

    /// SIGTERM stops a child that heeds it; one that ignores it is killed after the grace.
    #[tokio::test]
    async fn stop_terms_then_kills() {
        struct Case {
            name: &'static str,
            script: &'static str,
            want_signal: i32,
        }
        let cases = [
            Case {
                name: "heeds SIGTERM",
                script: "sleep 30",
                want_signal: 15,
            },
            Case {
                name: "ignores SIGTERM",
                script: "trap '' TERM; echo ready; sleep 30",
                want_signal: 9,
            },
        ];
        for case in cases {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", case.script])
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd.spawn().unwrap();
            if case.want_signal == 9 {
                // Wait until the trap is set.
                use tokio::io::AsyncBufReadExt;
                let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
                let mut line = String::new();
                out.read_line(&mut line).await.unwrap();
            }
            stop(&mut child, Duration::from_millis(300)).await;
            let status = child.wait().await.unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(case.want_signal), "{}", case.name);
        }
    }

    #[test]
    fn secrets_and_ids_have_their_shape() {
        let s = random_secret(48);
        assert_eq!(s.len(), 48);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        assert_ne!(random_secret(32), random_secret(32));
        let u = uuid_v4();
        let parts: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "variant: {u}");
    }
}
