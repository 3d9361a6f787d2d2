//! An agent's message to a remote agent: checked ([`super::decide::outbound`]) and filtered for
//! secrets before anything leaves, then posted by the agent's own identity in the peer room,
//! mentioning the recipient and numbered in this hive's stream to that peer.

use ruma::{OwnedEventId, RoomId};
use serde_json::json;

use super::{PEER_KEY, decide};
use crate::agent_spec::{AgentName, QualifiedName};
use crate::c0re::Core;
use crate::c0re::outbound::{Refusal, message_content};
use crate::wire::protocol::ErrorCode;

impl Core {
    /// `send_message(to = "<agent>@<hive>")` from `from`, or (with `reply_to`) its answer to a
    /// message of `to`'s.
    pub(crate) async fn send_to_peer(
        &self,
        from: &AgentName,
        to: &QualifiedName,
        body: &str,
        txn_id: &str,
        reply_to: Option<&str>,
    ) -> Result<OwnedEventId, Refusal> {
        let internal = |message: String| Refusal {
            code: ErrorCode::Internal,
            message,
        };
        let entry = self
            .agents()
            .get(from)
            .ok_or_else(|| internal(format!("unknown agent {from}")))?;
        let remote = self.peering().remote(to);
        decide::outbound(
            &entry.spec(),
            to,
            &self.cfg().peers,
            remote.as_ref(),
            reply_to.is_some(),
        )?;
        let remote = remote.expect("outbound() refuses an unpublished recipient");
        let room = self.peering().room(&to.hive).ok_or_else(|| Refusal {
            code: ErrorCode::Homeserver,
            message: format!(
                "the room shared with {} is not set up yet (is it reachable?); try again later",
                to.hive
            ),
        })?;
        let epoch = self
            .store()
            .peer_epoch()
            .map_err(|e| internal(format!("{e:#}")))?;
        let mut content = message_content(
            body,
            Some((&remote.user_id, &to.to_string())),
            reply_to,
            false,
        );
        // Checked before a number is taken: a refused message leaves no gap.
        self.guard(from, &content).await?;
        let lock = self.peering().send_lock(&to.hive);
        let _one_at_a_time = lock.lock().await;
        // The number and the content are stored before the post: a number given out is never
        // a hole (the peering task posts what the homeserver has not taken).
        let (_seq, stored) = self
            .store()
            .reserve_peer_seq(
                to.hive.as_str(),
                txn_id,
                entry.user_id.as_str(),
                room.as_str(),
                |seq| {
                    content[PEER_KEY] = json!({
                        "epoch": epoch,
                        "seq": seq,
                        "from": from.as_str(),
                        "to": to.agent.as_str(),
                    });
                    content.to_string()
                },
            )
            .map_err(|e| internal(format!("{e:#}")))?;
        let content: serde_json::Value =
            serde_json::from_str(&stored).map_err(|e| internal(format!("stored post: {e}")))?;
        let event = match self
            .send_raw(&room, Some(&entry.user_id), txn_id, &content)
            .await
        {
            Ok(event) => event,
            Err(e) if crate::matrix::client::is_permanent(&e) => {
                // Refused for good (too large, forbidden): nothing was posted. Taken back while
                // it is the latest number; else it is owed and given up like any.
                if !self
                    .store()
                    .peer_unreserve(to.hive.as_str(), txn_id)
                    .map_err(|e| internal(format!("{e:#}")))?
                {
                    self.store()
                        .peer_abandon(to.hive.as_str(), txn_id)
                        .map_err(|e| internal(format!("{e:#}")))?;
                }
                return Err(Refusal {
                    code: ErrorCode::Homeserver,
                    message: format!("{e:#}"),
                });
            }
            Err(e) => {
                self.peering().wake();
                return Err(Refusal {
                    code: ErrorCode::Homeserver,
                    message: format!(
                        "{e:#}; the message is kept and will be posted when the homeserver takes it: do not send it again"
                    ),
                });
            }
        };
        self.store()
            .peer_posted(to.hive.as_str(), txn_id, event.as_str())
            .map_err(|e| internal(format!("{e:#}")))?;
        Ok(event)
    }

    /// Posts every reserved message to a peer the homeserver has not taken yet, with its own
    /// txn id (the homeserver answers one it already has with the same event). Returns how many
    /// are still owed.
    pub(crate) async fn post_unposted(&self) -> usize {
        let owed = match self.store().peer_unposted() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the messages owed to peers");
                return 0;
            }
        };
        let mut left = 0;
        for crate::store::Unposted {
            peer,
            txn_id: txn,
            sender,
            room_id: room,
            content,
        } in owed
        {
            let Some(hive) = crate::agent_spec::HiveName::parse(&peer)
                .ok()
                .filter(|h| self.cfg().peers.iter().any(|p| p.hive == *h))
            else {
                continue; // no longer a peer: nothing to post it to
            };
            let (Ok(stored_room), Ok(sender), Ok(content)) = (
                RoomId::parse(&room),
                ruma::UserId::parse(&sender),
                serde_json::from_str::<serde_json::Value>(&content),
            ) else {
                tracing::error!(%peer, %txn, "a stored post to a peer does not parse; given up");
                if let Err(e) = self.store().peer_abandon(&peer, &txn) {
                    tracing::error!(error = %format!("{e:#}"), "cannot give up a post to a peer");
                }
                continue;
            };
            // The room shared with the peer now (it may have been made anew since).
            let room = self.peering().room(&hive).unwrap_or(stored_room);
            let lock = self.peering().send_lock(&hive);
            let _one_at_a_time = lock.lock().await;
            // The agent's own re-send may have posted it meanwhile.
            if !self.store().peer_owed(&peer, &txn).unwrap_or(true) {
                continue;
            }
            match self.send_raw(&room, Some(&sender), &txn, &content).await {
                Ok(event) => {
                    tracing::info!(%peer, %txn, %event, "posted a message owed to a peer");
                    if let Err(e) = self.store().peer_posted(&peer, &txn, event.as_str()) {
                        tracing::error!(error = %format!("{e:#}"), "cannot record a post to a peer");
                    }
                }
                Err(e) if crate::matrix::client::is_permanent(&e) => {
                    tracing::error!(%peer, %txn, error = %format!("{e:#}"), "the homeserver refuses a message owed to a peer for good; given up");
                    if let Err(e) = self.store().peer_abandon(&peer, &txn) {
                        tracing::error!(error = %format!("{e:#}"), "cannot give up a post to a peer");
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, %txn, error = %format!("{e:#}"), "a message owed to a peer is not posted yet");
                    left += 1;
                    // The rest wait for the next round: one homeserver that is away is enough.
                    break;
                }
            }
        }
        left
    }

    /// The peer whose room `room` is, if it is one.
    pub(crate) fn peer_of_room(&self, room: &RoomId) -> Option<crate::agent_spec::HiveName> {
        match self.rooms().snapshot().role(room.as_str()) {
            crate::c0re::routing::RoomRole::Peer(h) => Some(h),
            _ => None,
        }
    }

    /// A reply of `from` in the peer room of `hive` to a message `sender` wrote there: to that
    /// remote agent, through the same checks as any message to it.
    pub(crate) async fn reply_to_peer(
        &self,
        from: &AgentName,
        hive: &crate::agent_spec::HiveName,
        reply_to: &str,
        sender: &str,
        body: &str,
        txn_id: &str,
    ) -> Result<OwnedEventId, Refusal> {
        let to = self
            .peering()
            .directory(hive)
            .into_iter()
            .find(|a| a.user_id.as_str() == sender)
            .map(|a| a.name)
            .ok_or_else(|| Refusal {
                code: ErrorCode::UnknownRecipient,
                message: format!(
                    "{sender} is not an agent {hive} publishes: in the room shared with {hive}, only its agents can be answered"
                ),
            })?;
        self.send_to_peer(from, &to, body, txn_id, Some(reply_to))
            .await
    }
}

impl Core {
    /// Peers' agents as `list_agents` shows them to `agent` (after this hive's own): named
    /// `<agent>@<hive>`, with whether `agent` may message each.
    pub(crate) fn remote_listed(&self, agent: &AgentName) -> Vec<serde_json::Value> {
        let me = self.agents().get(agent).map(|e| e.spec());
        self.peering()
            .all_remote()
            .into_iter()
            .map(|r| {
                let may = me.as_ref().is_some_and(|m| {
                    decide::outbound(m, &r.name, &self.cfg().peers, Some(&r), false).is_ok()
                });
                json!({
                    "name": r.name.to_string(),
                    "hive": r.name.hive.as_str(),
                    "display_name": r.display_name,
                    "description": r.description,
                    "may_message": may,
                    "state": "remote",
                })
            })
            .collect()
    }
}
