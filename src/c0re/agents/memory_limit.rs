//! The core's memory watchdog beside a running harness (`runtime::limits::watchdog`), and the
//! report of a kill: in `#hive-c0re` and in the agent's room. The restart after it is the
//! supervisor's crash path (backoff, crash loop); the crash row in the store says why.

use std::process::ExitStatus;

use tokio::process::Child;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::rooms::RoomKey;

/// Waits for the harness to exit while the watchdog sums its tree's memory; `Some(bytes used)`
/// when the watchdog killed it for going over `limit`. The child is not waited for (reaped)
/// until the kill is done: a reaped pid could be reused, and the kill is root's SIGKILL.
pub async fn wait_watched(
    child: &mut Child,
    limit: u64,
) -> (std::io::Result<ExitStatus>, Option<u64>) {
    let Some(pid) = child.id() else {
        return (child.wait().await, None);
    };
    tokio::select! {
        s = child.wait() => (s, None),
        used = crate::runtime::limits::watchdog(pid, limit) => {
            let root = pid as i32;
            let _ = tokio::task::spawn_blocking(move || crate::runtime::limits::kill_tree(root)).await;
            (child.wait().await, Some(used))
        }
    }
}

/// The status recorded for the crash (`hive status`, the crash report).
pub fn status(used: u64, limit: u64) -> String {
    format!(
        "over its memory limit: used {} MiB of {} MiB",
        used >> 20,
        limit >> 20
    )
}

/// The report of a kill, once per kill.
pub fn text(name: &AgentName, used: u64, limit: u64) -> String {
    format!(
        "🧠 **{name}** used {} MiB, over its memory limit of {} MiB (`[resources] memory`): stopped. It starts again as after a crash (a crash loop stops it until a new config is approved).",
        used >> 20,
        limit >> 20
    )
}

pub async fn report(core: &Core, name: &AgentName, used: u64, limit: u64) {
    let text = text(name, used, limit);
    core.notice(None, &text).await;
    core.post_as_agent_or_notice(name, core.rooms().get(&RoomKey::Inbox(name.clone())), &text)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_agent_and_its_limit() {
        let name = AgentName::parse("hog").unwrap();
        let t = text(&name, 97 << 20, 64 << 20);
        assert!(
            t.starts_with("🧠 **hog** used 97 MiB, over its memory limit of 64 MiB"),
            "{t}"
        );
        assert_eq!(
            status(97 << 20, 64 << 20),
            "over its memory limit: used 97 MiB of 64 MiB"
        );
    }
}
