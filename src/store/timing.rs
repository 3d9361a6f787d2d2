//! When messages reached their harness, as `hive bench` reads it back (the inbox's
//! `delivered_us`): one clock for every figure of a run.

use rusqlite::{OptionalExtension, params};

use super::Store;

impl Store {
    /// When message `event_id` was first handed to its agent's harness (`hive bench`).
    pub fn delivered_us(&self, event_id: &str) -> anyhow::Result<Option<i64>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT delivered_us FROM inbox WHERE event_id = ?1 AND delivered_us IS NOT NULL",
                [event_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// When the first core event of `kind` queued for `agent` at or after `since_us` was handed
    /// to its harness, once it was (`hive bench`).
    pub fn event_delivered_since(
        &self,
        agent: &str,
        kind: &str,
        since_us: i64,
    ) -> anyhow::Result<Option<i64>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT delivered_us FROM inbox
                 WHERE agent = ?1 AND enqueued_us >= ?2 AND delivered_us IS NOT NULL
                   AND json_extract(hive_event, '$.kind') = ?3
                 ORDER BY id LIMIT 1",
                params![agent, since_us, kind],
                |r| r.get(0),
            )
            .optional()?)
    }
}
