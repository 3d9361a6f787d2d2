//! Webhook deliveries, recorded once (issue 17, part A owns this file).
//!
//! NOTE FOR THE INTEGRATOR: this is part B's stand-in, written to the contract's signatures
//! so that the `forge` task compiles and is tested before part A is merged. Take part A's
//! file in its place.

use rusqlite::params;

use super::{Store, now_us};
use crate::forge::webhook::ForgeEvent;

/// Whether a delivery was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New(i64),
    Duplicate,
}

/// A delivery the `forge` task has not posted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    pub id: i64,
    pub server: String,
    pub delivery_id: String,
    pub event_name: String,
    pub event: ForgeEvent,
}

impl Store {
    /// Records a delivery once per server and delivery id.
    pub fn record_delivery(
        &self,
        server: &str,
        delivery_id: &str,
        event_name: &str,
        event: &ForgeEvent,
    ) -> anyhow::Result<Recorded> {
        let json = serde_json::to_string(event)?;
        let c = self.lock();
        let n = c.execute(
            "INSERT OR IGNORE INTO forge_deliveries (server, delivery_id, event_name, event_json, received_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![server, delivery_id, event_name, json, now_us()],
        )?;
        Ok(if n == 1 {
            Recorded::New(c.last_insert_rowid())
        } else {
            Recorded::Duplicate
        })
    }

    /// Pending deliveries, oldest first.
    pub fn pending_deliveries(&self, limit: usize) -> anyhow::Result<Vec<PendingDelivery>> {
        let c = self.lock();
        let mut st = c.prepare(
            "SELECT id, server, delivery_id, event_name, event_json FROM forge_deliveries
             WHERE state = 'pending' ORDER BY id LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, server, delivery_id, event_name, json) = row?;
            let event = serde_json::from_str(&json)
                .map_err(|e| anyhow::anyhow!("forge delivery {id} holds no readable event: {e}"))?;
            out.push(PendingDelivery {
                id,
                server,
                delivery_id,
                event_name,
                event,
            });
        }
        Ok(out)
    }
}
