//! Children that die with the process that started them.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not the process: a
//! child forked from a tokio worker that later becomes a blocking-pool thread (after
//! `block_in_place`), or from a `spawn_blocking` thread, is killed when that idle thread ends
//! (after 10 s by default), which is a spurious kill. So every child that must die with us is
//! forked from one thread that lives as long as the process: the spawner thread here.

use std::sync::OnceLock;
use std::sync::mpsc;

use nix::sys::signal::Signal;
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

/// Spawns `cmd` so that it dies with this process, and only then: from the spawner thread,
/// with `PR_SET_PDEATHSIG`. Must be called inside a tokio runtime.
pub async fn spawn(mut cmd: Command) -> std::io::Result<Child> {
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
                spawn(cmd).await.unwrap()
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
}
