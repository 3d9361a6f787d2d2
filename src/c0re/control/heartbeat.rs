//! The heartbeat: an invisible event the core sends itself through `#hive-c0re` every
//! `heartbeat_secs`. The homeserver pushes it back in a transaction; when it does not come
//! back within [`GRACE`], the homeserver is holding events back and timelines are reconciled.

use std::time::Duration;

use ruma::OwnedTransactionId;
use ruma::events::MessageLikeEventType;
use ruma::serde::Raw;
use serde_json::json;

use super::super::Core;
use super::super::rooms::RoomKey;
use crate::store::now_us;

/// A custom, invisible event the core sends itself through `#hive-c0re`.
pub const HEARTBEAT_TYPE: &str = "org.hyperhive.heartbeat";

/// How long a heartbeat may take to come back before the core reconciles timelines.
pub const GRACE: Duration = Duration::from_secs(10);

/// What became of one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The control room is not known yet (rooms are being set up).
    NoRoom,
    /// The homeserver refused or could not be reached: nothing to wait for.
    NotSent,
    /// It came back in a transaction within [`GRACE`].
    Returned,
    /// It was sent and did not come back within [`GRACE`].
    Overdue,
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The homeserver pushes what it has: wait for the next beat.
    Wait,
    /// The homeserver holds events back: read the timelines for what it never pushed.
    Reconcile,
}

/// Is the homeserver pushing? Only a heartbeat that was sent and never came back says it is
/// not: one that could not be sent says nothing about what the homeserver holds back (the
/// next beat tries again), and one that came back proves the transactions flow.
pub fn after(beat: Beat) -> Next {
    match beat {
        Beat::Overdue => Next::Reconcile,
        Beat::NoRoom | Beat::NotSent | Beat::Returned => Next::Wait,
    }
}

impl Core {
    /// Periodic heartbeat through `#hive-c0re`, until shutdown; reconciles timelines when one
    /// does not come back (see [`after`]).
    pub async fn heartbeat_loop(self) {
        let every = Duration::from_secs(self.cfg().heartbeat_secs);
        loop {
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let Some(beat) = self.beat().await else {
                return;
            };
            if after(beat) == Next::Reconcile {
                tracing::warn!("heartbeat did not come back; reconciling timelines");
                if let Err(e) = self.reconcile(crate::store::now_us()).await {
                    tracing::warn!(error = %format!("{e:#}"), "reconciliation failed");
                }
            }
        }
    }

    /// Sends one heartbeat and waits for it; `None` on shutdown.
    async fn beat(&self) -> Option<Beat> {
        let Some(room) = self.rooms().get(&RoomKey::Control) else {
            return Some(Beat::NoRoom);
        };
        let arrived = self.control().heartbeat.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let txn = format!("hh-heartbeat-{}", now_us());
        let req = ruma::api::client::message::send_message_event::v3::Request::new_raw(
            room,
            OwnedTransactionId::from(txn),
            MessageLikeEventType::from(HEARTBEAT_TYPE),
            Raw::from_json(
                serde_json::value::to_raw_value(&json!({ "ts": now_us() / 1000 }))
                    .expect("json serialises"),
            ),
        );
        if let Err(e) = self.client().send(req, None).await {
            tracing::warn!(error = %e, "heartbeat could not be sent");
            return Some(Beat::NotSent);
        }
        tokio::select! {
            _ = self.cancel().cancelled() => None,
            _ = &mut arrived => Some(Beat::Returned),
            _ = tokio::time::sleep(GRACE) => Some(Beat::Overdue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_overdue_beat_reconciles() {
        struct Case {
            name: &'static str,
            beat: Beat,
            want: Next,
        }
        let cases = [
            Case {
                name: "came back",
                beat: Beat::Returned,
                want: Next::Wait,
            },
            Case {
                name: "overdue",
                beat: Beat::Overdue,
                want: Next::Reconcile,
            },
            Case {
                name: "not sent",
                beat: Beat::NotSent,
                want: Next::Wait,
            },
            Case {
                name: "no room yet",
                beat: Beat::NoRoom,
                want: Next::Wait,
            },
        ];
        for c in cases {
            assert_eq!(after(c.beat), c.want, "{}", c.name);
        }
    }
}
