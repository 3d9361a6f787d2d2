//! The operator's console besides the rooms: the live status message in `#hive-c0re` and each
//! agent's presence. One task ([`Core::console_loop`]) does both, woken by [`Console::changed`]
//! wherever the hive changes (a message queued, a turn started or ended, a harness connected or
//! gone, an approval or question filed or decided, a peer probed), never by polling: its only
//! timers are the end of an edit gap, a turn growing old enough to show, a presence renewal and
//! a refresh every [`REFRESH`] (the day's cost starts again at midnight).
//!
//! - [`render`]: the message's text, a pure function of a [`render::Snapshot`].
//! - [`pace`]: when to edit and when to set a presence (pure rules, with their tables).
//! - `message`: posting, editing (`m.replace`) and pinning the message; its event id is kept in
//!   the store, so a restarted core edits the same message.
//! - `presence`: setting an agent's presence as the agent (identity assertion).
//! - `snapshot`: reading the hive into a snapshot.
//!
//! `[console] status_message` and `presence` (hive.toml) turn either off.

pub mod pace;
pub mod render;

mod message;
mod presence;
mod snapshot;

use std::collections::HashSet;
use std::time::Duration;

use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Core;

/// How often the status message is looked at even when nothing woke the task.
pub const REFRESH: Duration = Duration::from_secs(15 * 60);
/// The debug log line of each presence set (the bench counts them: `hive bench`'s console
/// section runs the core with `hyperhive::c0re::console=debug`).
pub const LOG_PRESENCE_SET: &str = "presence set";
/// The debug log line of each post or edit of the status message (counted likewise).
pub const LOG_STATUS_SENT: &str = "status message sent";

/// How long after a failed look or edit the task tries again.
const RETRY: Duration = Duration::from_secs(30);

/// What wakes the console task.
#[derive(Default)]
pub struct Console {
    changed: Notify,
    /// Agents that acted on the homeserver since the task last looked (see [`Console::acted`]).
    acted: std::sync::Mutex<HashSet<OwnedUserId>>,
    /// Events redacted in `#hive-c0re` since the task last looked (see [`Console::redacted`]).
    redacted: std::sync::Mutex<HashSet<String>>,
    /// Bumped by every [`Console::changed`] and [`Console::web_changed`]: the web console's
    /// live streams watch it (`c0re/web/live.rs`), each coalescing a burst into one render.
    tick: tokio::sync::watch::Sender<u64>,
}

/// The event a redaction in `#hive-c0re` takes out, if `ev` is one: `redacts` in its content
/// (room version 11), else at its top level (earlier versions).
pub fn redaction_target(ev: &super::routing::TimelineEvent) -> Option<&str> {
    if ev.kind != "m.room.redaction" {
        return None;
    }
    ev.content
        .get("redacts")
        .and_then(|v| v.as_str())
        .or(ev.redacts.as_deref())
}

impl Console {
    /// Something the status message or a presence shows may have changed. Cheap: a burst of
    /// calls wakes the task once.
    pub fn changed(&self) {
        self.changed.notify_one();
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Something only the web console shows changed (an agent room's messages): wakes its
    /// live streams, not the status message's task.
    pub fn web_changed(&self) {
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A watch of [`Console::changed`] and [`Console::web_changed`] for one web console stream.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// `user` (an agent) sent something as itself: a message, a typing notice. Synapse takes
    /// that for a person at a client and turns an `unavailable` presence back `online`
    /// (handlers/presence.py, `bump_presence_active_time`), so an agent in a turn has its
    /// `unavailable` set again.
    pub fn acted(&self, user: &UserId) {
        let mut acted = self.acted.lock().unwrap_or_else(|p| p.into_inner());
        if acted.insert(user.to_owned()) {
            self.changed.notify_one();
        }
    }

    /// `event` was redacted in `#hive-c0re`: if it is the status message, it is posted again
    /// (and pinned in its place) at the next look, not at the next start.
    pub fn redacted(&self, event: &str) {
        let mut r = self.redacted.lock().unwrap_or_else(|p| p.into_inner());
        r.insert(event.to_owned());
        self.changed.notify_one();
    }

    /// The events redacted since the last call.
    fn take_redacted(&self) -> HashSet<String> {
        std::mem::take(&mut *self.redacted.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The agents that acted since the last call.
    fn take_acted(&self) -> HashSet<OwnedUserId> {
        std::mem::take(&mut *self.acted.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The earlier of two deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Core {
    /// The console task: keeps the status message and the agents' presence up to date until
    /// the hive stops. With both switched off it only waits for the stop (a supervised task
    /// that returns is restarted).
    pub async fn console_loop(self) {
        let switches = self.cfg().console;
        if !switches.status_message && !switches.presence {
            self.cancel().cancelled().await;
            return;
        }
        let mut status = message::StatusBook::default();
        let mut book = presence::PresenceBook::default();
        let mut look_after = Instant::now();
        loop {
            let now = Instant::now();
            let mut wake = Some(now + REFRESH);
            if switches.presence {
                wake = earliest(wake, self.presence_pass(&mut book, now).await);
            }
            // Every wake may have changed what the message shows; a look is cheap next to an
            // edit, and [`pace::LOOK_GAP`] bounds them.
            if switches.status_message {
                if now < look_after {
                    wake = earliest(wake, Some(look_after));
                } else {
                    look_after = now + pace::LOOK_GAP;
                    match self.status_pass(&mut status, now).await {
                        Ok(None) => {}
                        Ok(Some(at)) => wake = earliest(wake, Some(at)),
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "the status message could not be updated; trying again");
                            // No look before the retry, whatever wakes the task meanwhile.
                            look_after = now + RETRY;
                            wake = earliest(wake, Some(look_after));
                        }
                    }
                }
            }
            let until = wake.unwrap_or(now + REFRESH);
            tokio::select! {
                _ = self.cancel().cancelled() => break,
                _ = self.console().changed.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        if switches.presence {
            self.all_offline(&book).await;
        }
    }

    /// One look at the hive for the status message: edits it if its text changed and the gap
    /// allows. `Some(at)`: it changed, edit at `at`.
    async fn status_pass(
        &self,
        book: &mut message::StatusBook,
        now: Instant,
    ) -> anyhow::Result<Option<Instant>> {
        book.forget_if_redacted(&self.console().take_redacted());
        let snap = {
            let core = self.clone();
            tokio::task::spawn_blocking(move || core.status_snapshot()).await??
        };
        let text = self.secrets().redact(&render::render(&snap));
        self.show_status(book, &text, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_redaction_in_the_control_room() {
        let ev = |kind: &str, content: serde_json::Value, redacts: Option<&str>| {
            serde_json::from_value::<super::super::routing::TimelineEvent>(json!({
                "event_id": "$r", "room_id": "!c:hs", "type": kind, "sender": "@op:hs",
                "content": content, "redacts": redacts,
            }))
            .expect("an event")
        };
        struct Case {
            name: &'static str,
            ev: super::super::routing::TimelineEvent,
            want: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "room version 11: in the content",
                ev: ev("m.room.redaction", json!({ "redacts": "$s" }), None),
                want: Some("$s"),
            },
            Case {
                name: "earlier versions: at the top level",
                ev: ev("m.room.redaction", json!({}), Some("$s")),
                want: Some("$s"),
            },
            Case {
                name: "a message naming redacts is no redaction",
                ev: ev(
                    "m.room.message",
                    json!({ "body": "x", "redacts": "$s" }),
                    None,
                ),
                want: None,
            },
        ];
        for c in cases {
            assert_eq!(redaction_target(&c.ev), c.want, "{}", c.name);
        }
    }
}
