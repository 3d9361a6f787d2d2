//! Failpoints for tests, in debug builds only (release builds compile them to nothing):
//! `HYPERHIVE_FAILPOINT=<name>` makes the process exit at that point, the way a crash or SIGKILL
//! would; `HYPERHIVE_FAILPOINT=<name>:<n>` makes the first `n` passes through [`fails`] fail,
//! the way a homeserver blip would. Tests use them to prove what a crash or an outage at that
//! exact point does.

/// The environment variable naming the failpoint.
pub const ENV: &str = "HYPERHIVE_FAILPOINT";

#[cfg(debug_assertions)]
fn armed(name: &str) -> Option<Option<u32>> {
    let v = std::env::var(ENV).ok()?;
    match v.split_once(':') {
        Some((n, times)) if n == name => Some(times.parse().ok()),
        None if v == name => Some(None),
        _ => None,
    }
}

/// Exits the process here when `name` is armed (no count).
pub fn exit_at(name: &str) {
    #[cfg(debug_assertions)]
    if armed(name) == Some(None) {
        eprintln!("failpoint {name}: exiting");
        std::process::exit(101);
    }
    // Release builds: no failpoints, and `name` is unused.
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// True for the first `n` calls when `name:<n>` is armed.
pub fn fails(name: &str) -> bool {
    #[cfg(debug_assertions)]
    if let Some(Some(times)) = armed(name) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static CALLS: AtomicU32 = AtomicU32::new(0);
        return CALLS.fetch_add(1, Ordering::SeqCst) < times;
    }
    // Release builds: no failpoints, and `name` is unused.
    #[cfg(not(debug_assertions))]
    let _ = name;
    false
}
