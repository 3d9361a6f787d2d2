//! Named, supervised tasks. Every long-running loop of the core (heartbeat, control, approvals,
//! outbox, prune, the control socket, each agent's socket and supervisor) runs under
//! [`supervised`]: when it ends or panics while the hive is not stopping, that is seen at once
//! (logged with the task's name), and [`after_exit`] decides what happens next:
//!
//! - The hive is stopping (its cancel token fired): the task is done, whatever it returned.
//! - Otherwise it is restarted after a backoff (250 ms, doubling, at most 10 s), as long as it
//!   has not been restarted [`RESTARTS`] times within [`WINDOW`]: the loops are idempotent over
//!   the durable store, so a restart picks up where the last one stopped.
//! - Past that budget a task of the hive ([`Scope::Hive`]) stops the hive loudly (the cancel
//!   token fires and `hive c0re` exits non-zero naming the task); a task of one agent
//!   ([`Scope::Agent`]) is given up on (logged as an error), and the rest of the hive goes on.
//! - A **critical** task ([`Tasks::spawn_critical`]: the approvals gate, the appservice
//!   endpoint) has no restart budget: its first end stops the hive. A restart could only hide a
//!   broken invariant where a wrong guess would approve something, and a new start recovers
//!   in the order the code was written for (in-flight signals put back, interrupted applies
//!   finished from git), so the gate fails closed.
//!
//! [`Tasks::shutdown`] waits for them after the cancel token fired, at most a timeout, and names
//! the ones that did not finish in time (they are aborted).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// Restarts allowed within [`WINDOW`] before a task is given up on.
pub const RESTARTS: usize = 5;
/// The window the restart budget counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How tasks are restarted: the first backoff (it doubles, at most 10 s) and the budget.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub first_backoff: Duration,
    pub restarts: usize,
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_millis(250),
            restarts: RESTARTS,
            window: WINDOW,
        }
    }
}

/// How one run of a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It returned `Ok` (a loop is not meant to, before the hive stops).
    Returned,
    /// It returned an error (its text).
    Failed(String),
    /// It panicked (the panic's text).
    Panicked(String),
}

/// What a task's end means for the hive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The hive cannot work without it: past its restart budget the hive stops.
    Hive,
    /// One agent's: past its budget that agent's task is given up on, the hive goes on.
    Agent,
}

/// What to do after a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The hive is stopping: nothing more.
    Done,
    /// Run it again after this long.
    Restart(Duration),
    /// Stop the whole hive: this task cannot be kept running.
    StopHive,
    /// Leave this (agent's) task stopped.
    GiveUp,
}

/// Decides what follows a task's end. `recent` is how many times it was restarted within the
/// last [`WINDOW`].
/// Every way of ending is treated alike: a loop is not meant to end before the hive stops.
pub fn after_exit(policy: &Policy, stopping: bool, scope: Scope, recent: usize) -> Next {
    if stopping {
        return Next::Done;
    }
    if recent >= policy.restarts {
        return match scope {
            Scope::Hive => Next::StopHive,
            Scope::Agent => Next::GiveUp,
        };
    }
    let exp = u32::try_from(recent).unwrap_or(u32::MAX).min(6);
    Next::Restart((policy.first_backoff * 2u32.pow(exp)).min(Duration::from_secs(10)))
}

/// The first task that stopped the hive, to be reported when it exits.
#[derive(Clone, Default)]
pub struct Fatal(Arc<Mutex<Option<String>>>);

impl Fatal {
    fn set(&self, why: String) {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
    }

    /// Why the hive was stopped by one of its tasks, if it was.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs `task` (made afresh by `make` for every run) until the hive stops, restarting it as
/// [`after_exit`] decides. Each run is its own tokio task, so a panic ends that run only and is
/// seen here; dropping this future aborts the run in progress.
pub async fn supervised<F, Fut>(
    name: String,
    scope: Scope,
    policy: Policy,
    cancel: CancellationToken,
    fatal: Fatal,
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        let run = AbortOnDropHandle::new(tokio::spawn(make()));
        let exit = match run.await {
            Ok(Ok(())) => Exit::Returned,
            Ok(Err(e)) => Exit::Failed(format!("{e:#}")),
            Err(e) if e.is_panic() => Exit::Panicked(panic_text(e.into_panic())),
            Err(e) => Exit::Failed(e.to_string()),
        };
        let now = Instant::now();
        restarts.retain(|t| now.duration_since(*t) < policy.window);
        let next = after_exit(&policy, cancel.is_cancelled(), scope, restarts.len());
        match (&next, &exit) {
            (Next::Done, Exit::Returned) => {}
            (Next::Done, _) => {
                tracing::warn!(task = %name, exit = ?exit, "task ended while the hive stopped")
            }
            _ => tracing::error!(task = %name, exit = ?exit, next = ?next, "task ended"),
        }
        match next {
            Next::Done | Next::GiveUp => return,
            Next::StopHive => {
                fatal.set(if policy.restarts == 0 {
                    format!("the {name} task, which may not restart, ended ({exit:?})")
                } else {
                    format!(
                        "the {name} task ended {} times in {} s (last: {exit:?})",
                        policy.restarts + 1,
                        policy.window.as_secs()
                    )
                });
                cancel.cancel();
                return;
            }
            Next::Restart(after) => {
                restarts.push(now);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(after) => {}
                }
            }
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without text".to_owned())
}

/// The core's own loops, each named and supervised.
pub struct Tasks {
    set: JoinSet<()>,
    names: Vec<String>,
    /// The tasks not finished yet, by name.
    running: Arc<Mutex<BTreeSet<String>>>,
    cancel: CancellationToken,
    fatal: Fatal,
    policy: Policy,
}

impl Tasks {
    pub fn new(cancel: CancellationToken, fatal: Fatal) -> Self {
        Self::with_policy(cancel, fatal, Policy::default())
    }

    pub fn with_policy(cancel: CancellationToken, fatal: Fatal, policy: Policy) -> Self {
        Self {
            set: JoinSet::new(),
            names: Vec::new(),
            running: Arc::default(),
            cancel,
            fatal,
            policy,
        }
    }

    /// Starts `name` under [`supervised`] with [`Scope::Hive`].
    pub fn spawn<F, Fut>(&mut self, name: &str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.start(name, self.policy, make);
    }

    /// Starts `name` with no restart budget: its first end (an error, a panic, or returning
    /// before the hive stops) stops the hive.
    pub fn spawn_critical<F, Fut>(&mut self, name: &str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let policy = Policy {
            restarts: 0,
            ..self.policy
        };
        self.start(name, policy, make);
    }

    fn start<F, Fut>(&mut self, name: &str, policy: Policy, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.to_owned();
        self.names.push(name.clone());
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone());
        let running = self.running.clone();
        let run = supervised(
            name.clone(),
            Scope::Hive,
            policy,
            self.cancel.clone(),
            self.fatal.clone(),
            make,
        );
        self.set.spawn(async move {
            run.await;
            running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        });
    }

    /// The names of the tasks started, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// After the cancel token fired: waits for every task, at most `timeout`; the ones still
    /// running then are aborted, and the error says how many.
    pub async fn shutdown(mut self, timeout: Duration) -> anyhow::Result<()> {
        let waited = tokio::time::timeout(timeout, async {
            while self.set.join_next().await.is_some() {}
        })
        .await;
        if waited.is_err() {
            let left: Vec<String> = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            self.set.abort_all();
            anyhow::bail!(
                "{} of the core's tasks ({}) did not stop within {} s; aborted",
                left.len(),
                left.join(", "),
                timeout.as_secs()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_exit_table() {
        struct Case {
            name: &'static str,
            stopping: bool,
            scope: Scope,
            recent: usize,
            want: Next,
        }
        let ms = Duration::from_millis;
        let cases = [
            Case {
                name: "a loop that returns while the hive stops is done",
                stopping: true,
                scope: Scope::Hive,
                recent: 0,
                want: Next::Done,
            },
            Case {
                name: "past the budget, a stopping hive is still just done",
                stopping: true,
                scope: Scope::Hive,
                recent: RESTARTS,
                want: Next::Done,
            },
            Case {
                name: "a first end restarts soon",
                stopping: false,
                scope: Scope::Hive,
                recent: 0,
                want: Next::Restart(ms(250)),
            },
            Case {
                name: "a second end waits longer",
                stopping: false,
                scope: Scope::Hive,
                recent: 1,
                want: Next::Restart(ms(500)),
            },
            Case {
                name: "backoff doubles",
                stopping: false,
                scope: Scope::Agent,
                recent: 4,
                want: Next::Restart(ms(4000)),
            },
            Case {
                name: "past the budget a hive task stops the hive",
                stopping: false,
                scope: Scope::Hive,
                recent: RESTARTS,
                want: Next::StopHive,
            },
            Case {
                name: "past the budget an agent's task is given up on",
                stopping: false,
                scope: Scope::Agent,
                recent: RESTARTS + 3,
                want: Next::GiveUp,
            },
        ];
        for c in cases {
            assert_eq!(
                after_exit(&Policy::default(), c.stopping, c.scope, c.recent),
                c.want,
                "{}",
                c.name
            );
        }
        for recent in 0..RESTARTS {
            if let Next::Restart(d) = after_exit(&Policy::default(), false, Scope::Hive, recent) {
                assert!(d <= Duration::from_secs(10), "backoff is capped");
            }
        }
    }

    /// Restarts within milliseconds, so the test is quick (no timing is asserted).
    const QUICK: Policy = Policy {
        first_backoff: Duration::from_millis(1),
        restarts: RESTARTS,
        window: WINDOW,
    };

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_then_stops_the_hive() {
        let cancel = CancellationToken::new();
        let fatal = Fatal::default();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = runs.clone();
        let mut tasks = Tasks::with_policy(cancel.clone(), fatal.clone(), QUICK);
        tasks.spawn("exploding", move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                panic!("boom");
            }
        });
        tokio::time::timeout(Duration::from_secs(600), cancel.cancelled())
            .await
            .expect("the hive was stopped");
        tasks.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            RESTARTS + 1,
            "restarted up to its budget"
        );
        let why = fatal.get().expect("the reason is kept");
        assert!(why.contains("exploding") && why.contains("boom"), "{why}");
    }

    #[tokio::test]
    async fn shutdown_times_out_on_a_task_that_ignores_the_cancel() {
        let cancel = CancellationToken::new();
        let mut tasks = Tasks::with_policy(cancel.clone(), Fatal::default(), QUICK);
        tasks.spawn("stubborn", || async {
            std::future::pending::<()>().await;
            Ok(())
        });
        tasks.spawn("polite", {
            let c = cancel.clone();
            move || {
                let c = c.clone();
                async move {
                    c.cancelled().await;
                    Ok(())
                }
            }
        });
        assert_eq!(tasks.names(), ["stubborn", "polite"]);
        cancel.cancel();
        let err = tasks
            .shutdown(Duration::from_millis(200))
            .await
            .expect_err("one task did not stop");
        assert!(
            err.to_string().contains("1 of the core's tasks (stubborn)"),
            "names only the task still running: {err}"
        );
    }

    #[tokio::test]
    async fn a_critical_task_stops_the_hive_at_its_first_end() {
        let cancel = CancellationToken::new();
        let fatal = Fatal::default();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = runs.clone();
        let mut tasks = Tasks::with_policy(cancel.clone(), fatal.clone(), QUICK);
        tasks.spawn_critical("gate", move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                anyhow::bail!("an invariant broke")
            }
        });
        tokio::time::timeout(Duration::from_secs(600), cancel.cancelled())
            .await
            .expect("the hive was stopped");
        tasks.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "never restarted"
        );
        let why = fatal.get().expect("the reason is kept");
        assert!(
            why.contains("gate") && why.contains("an invariant broke"),
            "{why}"
        );
    }
}
