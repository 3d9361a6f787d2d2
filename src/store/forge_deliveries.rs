//! Forge webhook deliveries (`forge_deliveries`, migration 019): each recorded once by its
//! server and delivery id, with the event read from its payload, `pending` until the `forge`
//! task posts it (`done`) or gives up on it (`failed`).
//!
//! - a replay (the same server and delivery id) changes nothing: one `INSERT … ON CONFLICT
//!   DO NOTHING`, so two racing copies cannot both be new;
//! - pending deliveries are taken oldest first;
//! - pruning forgets done and failed deliveries only; a pending one waits however long.

use rusqlite::{OptionalExtension, params};

use super::{Store, now_us};
use crate::forge::webhook::ForgeEvent;

/// What recording a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now, as row `id`.
    New(i64),
    /// The server sent this delivery id before: nothing changed.
    Duplicate,
}

/// A delivery the `forge` task has yet to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    pub id: i64,
    pub server: String,
    pub delivery_id: String,
    pub event_name: String,
    pub event: ForgeEvent,
}

impl Store {
    /// Records delivery `delivery_id` of `server` with its `event`, unless it was recorded
    /// before.
    pub fn record_delivery(
        &self,
        server: &str,
        delivery_id: &str,
        event_name: &str,
        event: &ForgeEvent,
    ) -> anyhow::Result<Recorded> {
        let json = serde_json::to_string(event)?;
        let conn = self.lock();
        let id: Option<i64> = conn
            .query_row(
                "INSERT INTO forge_deliveries (server, delivery_id, event_name, event_json, received_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (server, delivery_id) DO NOTHING
                 RETURNING id",
                params![server, delivery_id, event_name, json, now_us()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.map_or(Recorded::Duplicate, Recorded::New))
    }

    /// Up to `limit` pending deliveries, oldest first. A row whose event cannot be read back
    /// (written by another version) is marked `failed` with why, so it cannot stop the queue.
    pub fn pending_deliveries(&self, limit: usize) -> anyhow::Result<Vec<PendingDelivery>> {
        let conn = self.lock();
        let rows: Vec<(i64, String, String, String, String)> = conn
            .prepare(
                "SELECT id, server, delivery_id, event_name, event_json FROM forge_deliveries
                 WHERE state = 'pending' ORDER BY id LIMIT ?1",
            )?
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, server, delivery_id, event_name, json) in rows {
            match serde_json::from_str::<ForgeEvent>(&json) {
                Ok(event) => out.push(PendingDelivery {
                    id,
                    server,
                    delivery_id,
                    event_name,
                    event,
                }),
                Err(e) => {
                    tracing::warn!(server, delivery_id, error = %e, "a recorded forge delivery cannot be read back: failed");
                    conn.execute(
                        "UPDATE forge_deliveries SET state = 'failed', error = ?2, done_us = ?3
                         WHERE id = ?1",
                        params![id, format!("its event cannot be read back: {e}"), now_us()],
                    )?;
                }
            }
        }
        Ok(out)
    }

    /// Forgets done and failed deliveries finished before `before_us`; the number forgotten.
    pub fn prune_forge_deliveries(&self, before_us: i64) -> anyhow::Result<usize> {
        let conn = self.lock();
        Ok(conn.execute(
            "DELETE FROM forge_deliveries
             WHERE state IN ('done', 'failed') AND COALESCE(done_us, received_us) < ?1",
            [before_us],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::webhook::Action;
    use crate::forge::{ItemKind, ItemRef, RepoName};

    fn event(number: u64) -> ForgeEvent {
        ForgeEvent {
            item: ItemRef {
                repo: RepoName::parse("acme/widgets").expect("valid"),
                number,
            },
            kind: ItemKind::PullRequest,
            action: Action::Opened,
            actor: "alice".into(),
            title: "Fix".into(),
            url: "http://forge.test/acme/widgets/pulls/1".into(),
            author: "alice".into(),
            labels: vec!["bug".into()],
            head_sha: Some("abc".into()),
        }
    }

    fn count(s: &Store) -> i64 {
        s.lock()
            .query_row("SELECT COUNT(*) FROM forge_deliveries", [], |r| r.get(0))
            .expect("counted")
    }

    fn set_state(s: &Store, id: i64, state: &str, done_us: i64) {
        s.lock()
            .execute(
                "UPDATE forge_deliveries SET state = ?2, done_us = ?3 WHERE id = ?1",
                params![id, state, done_us],
            )
            .expect("updated");
    }

    #[test]
    fn a_duplicate_changes_nothing() {
        let s = Store::open_in_memory().expect("a store");
        let Recorded::New(id) = s
            .record_delivery("forgejo", "d-1", "pull_request", &event(1))
            .expect("recorded")
        else {
            panic!("the first is new");
        };
        // The same id again, with another event: a replay, not recorded.
        assert_eq!(
            s.record_delivery("forgejo", "d-1", "issues", &event(2))
                .expect("recorded"),
            Recorded::Duplicate
        );
        assert_eq!(count(&s), 1);
        let pending = s.pending_deliveries(10).expect("read");
        assert_eq!(
            pending,
            vec![PendingDelivery {
                id,
                server: "forgejo".into(),
                delivery_id: "d-1".into(),
                event_name: "pull_request".into(),
                event: event(1),
            }]
        );
        // The same id from another server is another delivery.
        assert!(matches!(
            s.record_delivery("github", "d-1", "pull_request", &event(1)),
            Ok(Recorded::New(_))
        ));
        assert_eq!(count(&s), 2);
    }

    #[test]
    fn pending_is_oldest_first_and_only_pending() {
        let s = Store::open_in_memory().expect("a store");
        let mut ids = Vec::new();
        for n in 1..=4 {
            match s
                .record_delivery("f", &format!("d-{n}"), "pull_request", &event(n))
                .expect("recorded")
            {
                Recorded::New(id) => ids.push(id),
                Recorded::Duplicate => panic!("each is new"),
            }
        }
        set_state(&s, ids[1], "done", now_us());
        let got: Vec<u64> = s
            .pending_deliveries(10)
            .expect("read")
            .into_iter()
            .map(|p| p.event.item.number)
            .collect();
        assert_eq!(got, vec![1, 3, 4]);
        let limited: Vec<u64> = s
            .pending_deliveries(2)
            .expect("read")
            .into_iter()
            .map(|p| p.event.item.number)
            .collect();
        assert_eq!(limited, vec![1, 3]);
    }

    #[test]
    fn an_unreadable_event_fails_instead_of_stopping_the_queue() {
        let s = Store::open_in_memory().expect("a store");
        s.record_delivery("f", "d-1", "pull_request", &event(1))
            .expect("recorded");
        s.record_delivery("f", "d-2", "pull_request", &event(2))
            .expect("recorded");
        s.lock()
            .execute(
                "UPDATE forge_deliveries SET event_json = '{}' WHERE delivery_id = 'd-1'",
                [],
            )
            .expect("updated");
        let got: Vec<String> = s
            .pending_deliveries(10)
            .expect("read")
            .into_iter()
            .map(|p| p.delivery_id)
            .collect();
        assert_eq!(got, vec!["d-2".to_owned()]);
        let (state, error): (String, Option<String>) = s
            .lock()
            .query_row(
                "SELECT state, error FROM forge_deliveries WHERE delivery_id = 'd-1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("read");
        assert_eq!(state, "failed");
        assert!(
            error.is_some_and(|e| e.contains("cannot be read back")),
            "why is recorded"
        );
    }

    #[test]
    fn prune_keeps_pending_and_recent() {
        let s = Store::open_in_memory().expect("a store");
        let mut ids = Vec::new();
        for n in 1..=4 {
            if let Recorded::New(id) = s
                .record_delivery("f", &format!("d-{n}"), "issues", &event(n))
                .expect("recorded")
            {
                ids.push(id);
            }
        }
        let now = now_us();
        set_state(&s, ids[0], "done", now - 10_000_000);
        set_state(&s, ids[1], "failed", now - 10_000_000);
        set_state(&s, ids[2], "done", now + 10_000_000);
        // ids[3] stays pending.
        assert_eq!(s.prune_forge_deliveries(now).expect("pruned"), 2);
        assert_eq!(count(&s), 2);
        let left: Vec<u64> = s
            .pending_deliveries(10)
            .expect("read")
            .into_iter()
            .map(|p| p.event.item.number)
            .collect();
        assert_eq!(left, vec![4], "the pending one is kept");
        // Far in the future: still only finished rows go.
        assert_eq!(
            s.prune_forge_deliveries(i64::MAX).expect("pruned"),
            1,
            "the recent done one"
        );
        assert_eq!(count(&s), 1);
    }
}
