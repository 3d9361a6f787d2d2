//! What the homeserver pushes, accepted: a transaction's (or timeline reconciliation's) events
//! are routed ([`super::routing`]), then recorded and enqueued in one sqlite transaction,
//! deduplicated by event id, and the agents that got something are woken. Nothing slow happens
//! here: the transaction handler answers as soon as this returns.

use std::collections::HashSet;

use ruma::UserId;

use super::routing::{self, RoomRole, SenderKind, TimelineEvent};
use super::{APPROVALS_QUEUE, CONTROL_QUEUE, Core, control};
use crate::agent_spec::AgentName;
use crate::store::Enqueue;

/// The last transactions answered, as (txn id, digest of the body): a re-sent transaction is
/// answered at once without touching sqlite. The body is part of the key because Synapse
/// restarts its txn ids after a restart (synapse#14556): a reused id with new events must go
/// through. Bounded: this is a shortcut, the event-id dedupe in sqlite is the guarantee.
#[derive(Default)]
pub(crate) struct RecentTxns {
    set: HashSet<(String, [u8; 20])>,
    order: std::collections::VecDeque<(String, [u8; 20])>,
}

impl RecentTxns {
    const CAPACITY: usize = 1024;

    pub(crate) fn key(txn_id: &str, body: &[u8]) -> (String, [u8; 20]) {
        use sha1::Digest;
        (txn_id.to_owned(), sha1::Sha1::digest(body).into())
    }

    /// Records `key`; false if it was already there.
    pub(crate) fn insert(&mut self, key: (String, [u8; 20])) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    pub(crate) fn contains(&self, key: &(String, [u8; 20])) -> bool {
        self.set.contains(key)
    }

    #[cfg(test)]
    pub(crate) fn remove(&mut self, key: &(String, [u8; 20])) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }
}

impl Core {
    /// Who `user` is to the hive (routing's [`SenderKind`]).
    pub(crate) fn sender_kind(&self, user: &UserId) -> SenderKind {
        if user == self.inner.bot {
            SenderKind::Bot
        } else if self.inner.cfg.is_operator(user) {
            // By whole user id, as configured (never a peer's user: `hive check` refuses that).
            SenderKind::Operator
        } else if user.server_name() != self.inner.cfg.server_name {
            SenderKind::Remote
        } else {
            match self.inner.cfg.agent_of(user) {
                Some(name) if self.agents().get(&name).is_some() => SenderKind::Agent(name),
                _ => SenderKind::Other,
            }
        }
    }

    /// Accepts events from the homeserver (a transaction, or timeline reconciliation): routes
    /// them, then records and enqueues them in one sqlite transaction, deduplicated by event id.
    /// Wakes the agents that got something. Nothing slow happens here.
    pub fn accept(&self, events: &[TimelineEvent], received_us: i64) -> anyhow::Result<()> {
        let rooms = self.rooms().snapshot();
        let agent_ids = self.agents().ids();
        let mut seen = Vec::with_capacity(events.len());
        let mut routed = Vec::new();
        let mut in_agent_rooms = false;
        for ev in events {
            seen.push((ev.event_id.clone(), ev.room_id.clone()));
            if ev.kind == control::HEARTBEAT_TYPE && ev.sender == self.inner.bot {
                self.control().heartbeat_seen();
                continue;
            }
            let role = rooms.role(&ev.room_id);
            if let RoomRole::Peer(hive) = &role {
                // What crosses from a peer is decided apart (peering/decide.rs): never routed
                // like a local room, never a command, never an approval.
                routed.extend(self.peer_event(hive, ev, received_us));
                continue;
            }
            if let RoomRole::Inbox(_) = &role {
                // The web console's agent page shows the room's messages as they happen
                // (inbox and replies: an agent's reply is routed nowhere, so nothing else wakes it).
                in_agent_rooms |= self.views().timelines().record(ev);
            }
            if role == RoomRole::Control
                && let Some(target) = super::console::redaction_target(ev)
            {
                // The status message may be gone: the console task looks.
                self.console().redacted(target);
            }
            if role == RoomRole::Approvals && ev.kind == "m.room.power_levels" {
                // Before any reaction behind it is judged.
                self.approvals().power_levels_changed();
            }
            let sender = self.sender_kind(&ev.sender);
            let mut targets: Vec<String> = routing::route(ev, &role, &sender, &agent_ids)
                .iter()
                .map(|a| a.to_string())
                .collect();
            // An operator's `!cancel`/`!model` in an inbox is for the core, not the agent.
            super::turn_control::retarget(ev.body(), &role, &sender, &mut targets);
            if routing::control_command(ev, &role, &sender).is_some() {
                targets.push(CONTROL_QUEUE.to_owned());
            }
            if sender != SenderKind::Bot
                && let Some(signal) = routing::approval_signal(ev, &role)
            {
                routed.push(Enqueue {
                    event_id: ev.event_id.clone(),
                    room_id: ev.room_id.clone(),
                    sender: ev.sender.to_string(),
                    body: signal.to_string(),
                    origin_ts: ev.origin_server_ts,
                    agents: vec![APPROVALS_QUEUE.to_owned()],
                    hive_event: None,
                    peer: None,
                });
            }
            if !targets.is_empty() {
                // Only the core's own messages carry a core event to the agent.
                let hive_event = (sender == SenderKind::Bot)
                    .then(|| ev.content.get(routing::HIVE_EVENT_KEY))
                    .flatten()
                    .map(|e| e.to_string());
                routed.push(Enqueue {
                    event_id: ev.event_id.clone(),
                    room_id: ev.room_id.clone(),
                    sender: ev.sender.to_string(),
                    body: ev.body().unwrap_or_default().to_owned(),
                    origin_ts: ev.origin_server_ts,
                    agents: targets,
                    hive_event,
                    peer: None,
                });
            }
        }
        let numbered = routed.iter().any(|e| e.peer.is_some());
        let (woken, seen_before) = self
            .inner
            .store
            .ingest_events(&seen, &routed, received_us)?;
        for e in routed.iter().filter(|e| e.agents == [APPROVALS_QUEUE]) {
            // Said, so a replayed reaction is told apart from one the vote refused.
            if seen_before.contains(&e.event_id) {
                tracing::info!(event_id = %e.event_id, "an approval signal seen before: dropped by its event id, not voted again");
            }
        }
        if !routed.is_empty() {
            // Courtesy traffic (receipts, typing) waits for a quiet moment (`signals.rs`).
            self.signals().arrived();
        }
        if numbered {
            // A refusal may be queued; a gap may have opened (the peering task fills it).
            self.wake_outbox();
            self.peering().wake();
        }
        if in_agent_rooms {
            // Only the web console's agent page shows an agent room's messages.
            self.console().web_changed();
        }
        self.wake_queues(woken);
        Ok(())
    }

    /// Wakes each queue that got something: an agent, the control loop or the approvals gate.
    pub(crate) fn wake_queues(&self, woken: Vec<String>) {
        if !woken.is_empty() {
            self.console().changed();
        }
        for name in woken {
            if name == CONTROL_QUEUE {
                self.control().command_queued();
            } else if name == APPROVALS_QUEUE {
                self.approvals().wake();
            } else if let Some(a) = AgentName::parse(&name)
                .ok()
                .and_then(|n| self.agents().get(&n))
            {
                a.notify.notify_one();
            } else {
                // Not an agent of the hive now: if it is kept, what reached it is a dead letter.
                if let Err(e) = self.dead_letter_kept(&name) {
                    tracing::error!(agent = %name, error = %format!("{e:#}"), "could not dead-letter a message for a kept agent");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecentTxns;

    #[test]
    fn recent_txns_key_on_id_and_body() {
        let mut r = RecentTxns::default();
        assert!(r.insert(RecentTxns::key("1", b"a")));
        assert!(
            !r.insert(RecentTxns::key("1", b"a")),
            "a re-send is recognised"
        );
        assert!(
            r.insert(RecentTxns::key("1", b"b")),
            "a reused id with new events is not"
        );
        r.remove(&RecentTxns::key("1", b"a"));
        assert!(
            r.insert(RecentTxns::key("1", b"a")),
            "a forgotten txn is accepted again"
        );
        for i in 0..RecentTxns::CAPACITY {
            r.insert(RecentTxns::key(&i.to_string(), b"x"));
        }
        assert!(r.set.len() <= RecentTxns::CAPACITY && r.order.len() == r.set.len());
        assert!(
            r.insert(RecentTxns::key("1", b"b")),
            "old entries are evicted"
        );
    }
}
