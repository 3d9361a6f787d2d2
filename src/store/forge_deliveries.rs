//! Forge webhook deliveries (`forge_deliveries`, migrations 019 and 020): each recorded once
//! by its server and delivery id, and once by its server and body, with the event read from
//! its payload, `pending` until the `forge` task posts it (`done`) or gives up on it
//! (`failed`).
//!
//! - a replay changes nothing: one `INSERT … ON CONFLICT DO NOTHING` over both unique keys
//!   (server + delivery id, server + body SHA-256), so two racing copies cannot both be new.
//!   The delivery id header is not covered by the signature: a captured signed body sent
//!   again under a fresh id is the same body, and is [`Recorded::Replayed`]. (Two genuine
//!   deliveries never share a body: Gitea's, Forgejo's and GitHub's payloads carry the item's
//!   `updated_at`.) A row recorded without a body digest ([`Store::record_delivery`]) is only
//!   deduplicated by its id;
//! - pending deliveries are taken oldest first;
//! - pruning ([`Store::prune_forge_deliveries`]) touches done and failed deliveries only (a
//!   pending one waits however long), in two steps: past `retention_days` what a delivery
//!   said (its event, its error) is forgotten, but its server, delivery id and body digest
//!   are kept for [`KEEP_IDS_DAYS`] (or `retention_days` if longer), so a replay of an old
//!   delivery is still refused; only then is the row deleted. A replay older than that is
//!   taken again; its signature still had to hold.

use rusqlite::{OptionalExtension, params};

use super::{Store, now_us};
use crate::forge::webhook::ForgeEvent;

/// How long a finished delivery's server, id and body digest are kept, in days: replays of it
/// are refused that long.
pub const KEEP_IDS_DAYS: i64 = 365;

/// What recording a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now, as row `id`.
    New(i64),
    /// The server sent this delivery id before: nothing changed.
    Duplicate,
    /// The server sent this very body before, as delivery `as_delivery`: nothing changed.
    Replayed { as_delivery: String },
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
    /// Records delivery `delivery_id` of `server` with its `event`, without a body digest:
    /// deduplicated by its id only. For callers that have no raw body (fixtures, tests); the
    /// webhook records with [`Store::record_signed_delivery`].
    pub fn record_delivery(
        &self,
        server: &str,
        delivery_id: &str,
        event_name: &str,
        event: &ForgeEvent,
    ) -> anyhow::Result<Recorded> {
        self.insert_delivery(server, delivery_id, event_name, None, event)
    }

    /// Records delivery `delivery_id` of `server`, whose raw body's lowercase hex SHA-256 is
    /// `body_sha256`, with its `event`, unless that id or that body was recorded before.
    pub fn record_signed_delivery(
        &self,
        server: &str,
        delivery_id: &str,
        event_name: &str,
        body_sha256: &str,
        event: &ForgeEvent,
    ) -> anyhow::Result<Recorded> {
        self.insert_delivery(server, delivery_id, event_name, Some(body_sha256), event)
    }

    fn insert_delivery(
        &self,
        server: &str,
        delivery_id: &str,
        event_name: &str,
        body_sha256: Option<&str>,
        event: &ForgeEvent,
    ) -> anyhow::Result<Recorded> {
        let json = serde_json::to_string(event)?;
        let conn = self.lock();
        // No conflict target: DO NOTHING on either unique key.
        let id: Option<i64> = conn
            .query_row(
                "INSERT INTO forge_deliveries
                     (server, delivery_id, event_name, event_json, received_us, body_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO NOTHING
                 RETURNING id",
                params![server, delivery_id, event_name, json, now_us(), body_sha256],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = id {
            return Ok(Recorded::New(id));
        }
        // Which key held (under the same lock: nothing came between).
        let same_id: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM forge_deliveries WHERE server = ?1 AND delivery_id = ?2)",
            params![server, delivery_id],
            |r| r.get(0),
        )?;
        if same_id {
            return Ok(Recorded::Duplicate);
        }
        let as_delivery: Option<String> = conn
            .query_row(
                "SELECT delivery_id FROM forge_deliveries WHERE server = ?1 AND body_sha256 = ?2",
                params![server, body_sha256],
                |r| r.get(0),
            )
            .optional()?;
        as_delivery
            .map(|as_delivery| Recorded::Replayed { as_delivery })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "delivery {delivery_id} of {server} was neither recorded nor a duplicate"
                )
            })
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

    /// Prunes done and failed deliveries: forgets what those finished before `before_us`
    /// said (event and error), and deletes those finished before both `before_us` and
    /// [`KEEP_IDS_DAYS`] ago; the number of rows changed.
    pub fn prune_forge_deliveries(&self, before_us: i64) -> anyhow::Result<usize> {
        let ids_before_us = before_us.min(now_us() - KEEP_IDS_DAYS * 86_400_000_000);
        let conn = self.lock();
        let deleted = conn.execute(
            "DELETE FROM forge_deliveries
             WHERE state IN ('done', 'failed') AND COALESCE(done_us, received_us) < ?1",
            [ids_before_us],
        )?;
        let forgotten = conn.execute(
            "UPDATE forge_deliveries SET event_json = '', error = NULL
             WHERE state IN ('done', 'failed') AND COALESCE(done_us, received_us) < ?1
               AND (event_json != '' OR error IS NOT NULL)",
            [before_us],
        )?;
        Ok(forgotten + deleted)
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
                other => panic!("each is new: {other:?}"),
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

    fn event_json(s: &Store, delivery_id: &str) -> Option<String> {
        s.lock()
            .query_row(
                "SELECT event_json FROM forge_deliveries WHERE server = 'f' AND delivery_id = ?1",
                [delivery_id],
                |r| r.get(0),
            )
            .optional()
            .expect("read")
    }

    const DAY_US: i64 = 86_400_000_000;

    #[test]
    fn prune_forgets_payloads_keeps_ids_a_year_and_never_touches_pending() {
        let s = Store::open_in_memory().expect("a store");
        let mut ids = Vec::new();
        for n in 1..=5 {
            if let Recorded::New(id) = s
                .record_signed_delivery(
                    "f",
                    &format!("d-{n}"),
                    "issues",
                    &format!("sha-{n}"),
                    &event(n),
                )
                .expect("recorded")
            {
                ids.push(id);
            }
        }
        let now = now_us();
        set_state(&s, ids[0], "done", now - 10_000_000);
        set_state(&s, ids[1], "failed", now - 10_000_000);
        set_state(&s, ids[2], "done", now + 10_000_000);
        set_state(&s, ids[3], "done", now - (KEEP_IDS_DAYS + 1) * DAY_US);
        // ids[4] stays pending.
        assert_eq!(
            s.prune_forge_deliveries(now).expect("pruned"),
            3,
            "two forgotten, one deleted"
        );
        assert_eq!(count(&s), 4, "only the one older than a year is gone");
        assert_eq!(event_json(&s, "d-1").as_deref(), Some(""), "forgotten");
        assert_eq!(event_json(&s, "d-2").as_deref(), Some(""), "forgotten");
        assert_eq!(event_json(&s, "d-4"), None, "deleted");
        assert!(
            event_json(&s, "d-3").is_some_and(|j| !j.is_empty()),
            "the recent one is whole"
        );
        let left: Vec<u64> = s
            .pending_deliveries(10)
            .expect("read")
            .into_iter()
            .map(|p| p.event.item.number)
            .collect();
        assert_eq!(left, vec![5], "the pending one is kept");
        // Again: nothing left to change.
        assert_eq!(s.prune_forge_deliveries(now).expect("pruned"), 0);
        // Far in the future: the recent one is forgotten too, but no id younger than a year
        // goes, and the pending one is whole.
        assert_eq!(s.prune_forge_deliveries(i64::MAX).expect("pruned"), 1);
        assert_eq!(event_json(&s, "d-3").as_deref(), Some(""));
        assert_eq!(count(&s), 4);
        // A year on, a forgotten row goes.
        set_state(&s, ids[0], "done", now - (KEEP_IDS_DAYS + 1) * DAY_US);
        assert_eq!(s.prune_forge_deliveries(now).expect("pruned"), 1);
        assert_eq!(event_json(&s, "d-1"), None, "deleted");
        assert_eq!(count(&s), 3);
        assert_eq!(s.pending_deliveries(10).expect("read").len(), 1);
    }

    #[test]
    fn a_replay_is_refused_by_id_or_body_even_after_a_prune() {
        let s = Store::open_in_memory().expect("a store");
        let Recorded::New(id) = s
            .record_signed_delivery("f", "d-1", "pull_request", "aaaa", &event(1))
            .expect("recorded")
        else {
            panic!("the first is new");
        };
        struct Case {
            name: &'static str,
            server: &'static str,
            delivery_id: &'static str,
            digest: &'static str,
            want: Recorded,
        }
        let cases = [
            Case {
                name: "the same id, another body",
                server: "f",
                delivery_id: "d-1",
                digest: "bbbb",
                want: Recorded::Duplicate,
            },
            Case {
                name: "the same body under a fresh id",
                server: "f",
                delivery_id: "d-2",
                digest: "aaaa",
                want: Recorded::Replayed {
                    as_delivery: "d-1".into(),
                },
            },
            Case {
                name: "the same id and body",
                server: "f",
                delivery_id: "d-1",
                digest: "aaaa",
                want: Recorded::Duplicate,
            },
        ];
        let run = |after_prune: bool| {
            for c in &cases {
                let got = s
                    .record_signed_delivery(c.server, c.delivery_id, "issues", c.digest, &event(2))
                    .expect("recorded");
                assert_eq!(got, c.want, "{} (after a prune: {after_prune})", c.name);
            }
        };
        run(false);
        // The same body from another server is another delivery.
        assert!(matches!(
            s.record_signed_delivery("g", "d-1", "issues", "aaaa", &event(2)),
            Ok(Recorded::New(_))
        ));
        assert_eq!(count(&s), 2);
        // The first is done and its payload pruned: its id and body are still known.
        set_state(&s, id, "done", now_us() - 10 * DAY_US);
        assert_eq!(
            s.prune_forge_deliveries(now_us() - DAY_US).expect("pruned"),
            1
        );
        assert_eq!(event_json(&s, "d-1").as_deref(), Some(""));
        run(true);
        assert_eq!(count(&s), 2, "nothing more was recorded");
        let pending: Vec<(String, String)> = s
            .pending_deliveries(10)
            .expect("read")
            .into_iter()
            .map(|p| (p.server, p.delivery_id))
            .collect();
        assert_eq!(pending, vec![("g".to_owned(), "d-1".to_owned())]);
    }
}
