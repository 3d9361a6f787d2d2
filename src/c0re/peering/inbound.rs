//! A peer room's events, accepted: directory entries update what the peer publishes; a
//! peer's message becomes a numbered [`Enqueue`] (released in its stream's order by the store);
//! a refusal of ours reaches the agent it concerns.

use serde_json::json;

use super::decide::{self, Inbound};
use super::{AGENT_STATE, REFUSAL_KEY};
use crate::agent_spec::HiveName;
use crate::c0re::Core;
use crate::c0re::outbound::message_content;
use crate::c0re::rooms::RoomKey;
use crate::c0re::routing::TimelineEvent;
use crate::store::{Enqueue, OutboxRow, PeerSeq};

impl Core {
    /// What `ev`, in the room shared with `hive`, is for; `None`: nothing to enqueue.
    pub(crate) fn peer_event(
        &self,
        hive: &HiveName,
        ev: &TimelineEvent,
        received_us: i64,
    ) -> Option<Enqueue> {
        let peer = self.cfg().peers.iter().find(|p| p.hive == *hive)?;
        // When the peer sent it (never later than now): history read back is not news.
        let sent_us = ev.origin_server_ts.saturating_mul(1000).min(received_us);
        if ev.sender.server_name() == peer.server_name
            && let Err(e) = self.store().peer_event_seen(hive.as_str(), sent_us)
        {
            tracing::warn!(error = %format!("{e:#}"), "could not record a peer's event");
        }
        if ev.kind == AGENT_STATE
            && let Some(key) = &ev.state_key
        {
            self.peering()
                .apply(hive, decide::entry(peer, &ev.sender, key, &ev.content));
            return None;
        }
        let ours = self.hive_id().ok()?;
        let directory = self.peering().directory(hive);
        let decision = decide::inbound(
            ev,
            peer,
            &directory,
            |n| self.agents().get(n).is_some(),
            |u| self.cfg().agent_of(u),
            ours.as_str(),
        );
        let base = |agents: Vec<String>, body: String, peer_seq: Option<PeerSeq>| Enqueue {
            event_id: ev.event_id.clone(),
            room_id: ev.room_id.clone(),
            sender: ev.sender.to_string(),
            body,
            origin_ts: ev.origin_server_ts,
            agents,
            hive_event: None,
            peer: peer_seq,
        };
        match decision {
            Inbound::Ignore => None,
            Inbound::Stranger { sender } => {
                tracing::info!(peer = %hive, %sender, "a numbered message from a user the peer does not publish; reading its directory again");
                self.peering().directory_stale(hive, &ev.event_id);
                None
            }
            Inbound::Deliver { to, from, at } => {
                tracing::debug!(%from, %to, seq = at.seq, "a peer's message");
                Some(base(
                    vec![to.to_string()],
                    ev.body().unwrap_or_default().to_owned(),
                    Some(PeerSeq {
                        peer: hive.to_string(),
                        epoch: at.epoch,
                        seq: at.seq,
                        refusal: None,
                    }),
                ))
            }
            Inbound::Refuse { at, sender, reason } => {
                tracing::info!(%sender, %reason, "refused a peer's message");
                let text = format!("{ours} refused this message: {reason}");
                let mut content = message_content(
                    &text,
                    Some((&sender, sender.localpart())),
                    Some(&ev.event_id),
                    true,
                );
                content[REFUSAL_KEY] = json!({
                    "sender": sender,
                    "reason": reason,
                    "event_id": ev.event_id,
                });
                let refusal = OutboxRow {
                    txn_id: format!("hh-peer-refusal-{}", digest(&ev.event_id)),
                    room_key: RoomKey::Peer(hive.clone()).to_string(),
                    content: content.to_string(),
                };
                Some(base(
                    Vec::new(),
                    String::new(),
                    Some(PeerSeq {
                        peer: hive.to_string(),
                        epoch: at.epoch,
                        seq: at.seq,
                        refusal: Some(refusal),
                    }),
                ))
            }
            Inbound::Refused { agent, of, reason } => {
                // Only a refusal of a message this agent did send to this peer: the peer's
                // core cannot use refusals to write to our agents at will.
                let sender = self.cfg().agent_user_id(&agent);
                match self.store().peer_sender_of(hive.as_str(), &of) {
                    Ok(Some(s)) if s == sender.as_str() => Some(base(
                        vec![agent.to_string()],
                        format!("{hive} refused your message: {reason}"),
                        None,
                    )),
                    Ok(_) => {
                        tracing::warn!(peer = %hive, %agent, event = %of, "ignored a refusal of a message the agent did not send");
                        None
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot check a peer's refusal");
                        None
                    }
                }
            }
        }
    }
}

/// A short stable digest of `text` (hex), for transaction ids.
fn digest(text: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(text.as_bytes())
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}
