//! How a turn ends on a connection: `ack`, `fail`, or the harness gone mid-turn. An operator's
//! cancel (turn_control/cancel.rs) ends a turn too, first: it marks the message done and
//! records the attempt `cancelled`, then kills the harness. What the session does after that
//! changes nothing and says nothing: an `ack` or `fail` that reaches the store second finds
//! the message no longer in flight (no second stats row, no dead-letter notice), and the
//! connection that goes with the kill neither puts the message back nor claims it will be
//! delivered again.

use ruma::RoomId;

use super::super::wait;
use super::{Session, bad_request, not_in_flight};
use crate::store::TurnOutcome;
use crate::wire::protocol::Response;

impl Session {
    /// `ack` (`failure` `None`) or `fail`: the turn of message `id` is over, for good.
    pub(super) async fn finish(
        &mut self,
        id: i64,
        failure: Option<String>,
    ) -> anyhow::Result<Response> {
        let Some(item) = self.inflight.take_if(|i| i.id == id) else {
            return Ok(bad_request(not_in_flight(id))
                .response()
                .expect("a refusal has a response"));
        };
        if item.attempts == 1 && failure.is_none() {
            // Tests: the turn's reply is posted, its ack not yet recorded.
            crate::failpoint::exit_at("c0re-before-ack");
        }
        if let Some(entry) = self.core.agents().get(&self.name) {
            // Waits for a cancel that holds it: then the store says the turn is over already.
            *entry.turn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        match &failure {
            None if self.core.store().ack(id)? => {
                self.core.record_turn(&self.name, &item, TurnOutcome::Done);
                // A successful turn clears a brain problem once reported.
                self.core
                    .store()
                    .set_brain_notice(self.name.as_str(), None)?;
            }
            Some(reason) if self.core.store().fail(id, reason)? => {
                self.core
                    .record_turn(&self.name, &item, TurnOutcome::Failed);
                self.core.dead_letter_notice(&item).await;
                let room = RoomId::parse(&item.room_id).ok();
                let text = format!("⚠️ {} could not handle this message: {reason}", self.name);
                self.core
                    .post_as_agent_or_notice(&self.name, room, &text)
                    .await;
            }
            _ => {
                tracing::info!(agent = %self.name, id, "the turn ended after it was cancelled; its end changes nothing");
            }
        }
        self.core.console().changed();
        let read = self.core.read_up_to(item);
        self.stop_typing(Some(&read)).await;
        Ok(Response::Done)
    }

    /// The connection is gone: the turn's message (if any) goes back to the queue, its typing
    /// notice is withdrawn. A cancelled turn's message stays done: nothing is recorded for it
    /// here (the cancel did), nothing put back.
    pub(in crate::c0re::agents) async fn leave(&mut self) {
        if let Some(entry) = self.core.agents().get(&self.name) {
            // After this no cancel can start on the turn: the store's state below is final.
            *entry.turn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if let Some(item) = self.inflight.take() {
            match self.core.store().is_inflight(item.id) {
                Ok(false) => {
                    tracing::info!(agent = %self.name, event_id = %item.event_id, "harness gone after its turn was cancelled");
                }
                in_flight => {
                    if let Err(e) = in_flight {
                        tracing::error!(agent = %self.name, id = item.id, error = %format!("{e:#}"), "cannot read the message's state; putting it back");
                    }
                    tracing::warn!(agent = %self.name, event_id = %item.event_id, "harness left mid-turn; the message will be delivered again");
                    self.core
                        .record_turn(&self.name, &item, TurnOutcome::Interrupted);
                    wait::release_until_done(&self.core, &self.name, item.id).await;
                }
            }
        }
        self.core.console().changed();
        self.stop_typing(None).await;
    }
}
