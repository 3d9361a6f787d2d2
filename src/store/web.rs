//! What the web console reads from the store besides what the Matrix console reads: the body
//! of the message a turn is handling (the swarm table says what an agent is thinking about).

use rusqlite::OptionalExtension;

use super::Store;

impl Store {
    /// The body of inbox row `id`, if there is one.
    pub fn inbox_body(&self, id: i64) -> anyhow::Result<Option<String>> {
        Ok(self
            .lock()
            .query_row("SELECT body FROM inbox WHERE id = ?1", [id], |r| r.get(0))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Enqueue, Store};

    #[test]
    fn a_rows_body_is_read_by_its_id() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Store::open(&dir.path().join("c0re.db")).expect("a store");
        let ev = Enqueue {
            event_id: "$e".into(),
            room_id: "!r:hs".into(),
            sender: "@op:hs".into(),
            body: "summarise the week".into(),
            origin_ts: 1,
            agents: vec!["echo".into()],
            hive_event: None,
            peer: None,
        };
        store
            .ingest(&[("$e".into(), "!r:hs".into())], &[ev], 1)
            .expect("enqueued");
        let id = store
            .take_next("echo", 5)
            .expect("read")
            .0
            .expect("one row")
            .id;
        assert_eq!(
            store.inbox_body(id).expect("read").as_deref(),
            Some("summarise the week")
        );
        assert_eq!(store.inbox_body(id + 100).expect("read"), None);
    }
}
