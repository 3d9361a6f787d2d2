//! Posts the core owes and may not lose, from the store's outbox (`store/outbox.rs`): core
//! events for agents (a reminder due, an operator's answer, a request's outcome, a crash
//! report). Each is recorded with the change it reports; this loop sends them in order and
//! marks each sent only after the homeserver took it, retrying with backoff.

use std::time::Duration;

use serde_json::json;

use super::Core;
use crate::store::OutboxRow;

/// Posts sent per round (a backlog after an outage drains in rounds, the loop stays responsive).
const BATCH: usize = 50;

/// The outbox's sender: what wakes it (the posts themselves are in the store).
#[derive(Default)]
pub struct Outbox {
    wake: tokio::sync::Notify,
}

impl Core {
    /// The post that hands `agent` a core event: a notice in its inbox (visible to the
    /// operator) whose `org.hyperhive.event` the agent receives as structured data. `None` when
    /// `agent` is not an agent of this hive.
    pub fn core_event(
        &self,
        agent: &str,
        kind: &str,
        text: &str,
        data: serde_json::Value,
        txn_id: &str,
    ) -> Option<OutboxRow> {
        let name = crate::agent_spec::AgentName::parse(agent).ok()?;
        self.agents().get(&name)?;
        let mut content = super::outbound::message_content(text, None, None, true);
        let mut event = data;
        event["kind"] = json!(kind);
        content[super::routing::HIVE_EVENT_KEY] = event;
        Some(OutboxRow {
            txn_id: txn_id.to_owned(),
            room_key: super::rooms::RoomKey::Inbox(name).to_string(),
            content: content.to_string(),
        })
    }

    /// Wakes the outbox loop: something was recorded to post.
    pub fn wake_outbox(&self) {
        self.outbox().wake.notify_one();
    }

    /// Sends what the outbox holds, until shutdown.
    pub async fn outbox_loop(self) {
        loop {
            if let Err(e) = self.send_due_posts().await {
                tracing::error!(error = %format!("{e:#}"), "outbox round failed");
            }
            let next = self.store().next_post_due().ok().flatten();
            let sleep = next.map_or(Duration::from_secs(3600), |t| {
                Duration::from_micros((t - crate::store::now_us()).max(0) as u64 + 1000)
            });
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = self.outbox().wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn send_due_posts(&self) -> anyhow::Result<()> {
        loop {
            let due = self.store().due_posts(BATCH)?;
            if due.is_empty() {
                return Ok(());
            }
            for post in &due {
                let key = match super::rooms::RoomKey::parse(&post.row.room_key) {
                    Ok(key) => key,
                    Err(e) => {
                        // Written by this core from a RoomKey: a row that does not parse is
                        // damaged, and said as such.
                        tracing::error!(id = post.id, error = %e, "an outbox post names no room");
                        self.store().post_failed(post.id, &e.to_string(), true)?;
                        continue;
                    }
                };
                let Some(room) = self.rooms().get(&key) else {
                    // Rooms are set up before this loop runs; a room that vanished (an agent
                    // removed by hand) cannot take the post.
                    self.store().post_failed(
                        post.id,
                        &format!("no room {}", post.row.room_key),
                        true,
                    )?;
                    continue;
                };
                let content: serde_json::Value = match serde_json::from_str(&post.row.content) {
                    Ok(c) => c,
                    Err(e) => {
                        // Written by the core: cannot happen, but never stall the rest on it.
                        tracing::error!(txn = %post.row.txn_id, error = %e, "an unreadable post in the outbox");
                        self.store()
                            .post_failed(post.id, &format!("unreadable: {e}"), true)?;
                        continue;
                    }
                };
                match self.send_raw(&room, None, &post.row.txn_id, &content).await {
                    Ok(event_id) => self.store().post_sent(post.id, event_id.as_str())?,
                    Err(e) => {
                        let permanent = crate::matrix::client::is_permanent(&e);
                        tracing::warn!(txn = %post.row.txn_id, attempt = post.attempts + 1, permanent, error = %format!("{e:#}"), "a post the core owes failed");
                        if permanent {
                            self.notice(
                                None,
                                &format!(
                                    "⚠️ The homeserver refused a message the core owed {}: {e:#}. It is kept in the outbox as failed.",
                                    post.row.room_key
                                ),
                            )
                            .await;
                        }
                        self.store()
                            .post_failed(post.id, &format!("{e:#}"), permanent)?;
                        if !permanent {
                            // The homeserver is away: the rest waits with this one.
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}
