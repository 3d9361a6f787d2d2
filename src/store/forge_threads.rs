//! The forge lanes' threads and the end of a delivery (docs/forge.md).
//!
//! ```text
//! forge_deliveries: pending ──posted, agents told (one transaction)──► done
//!                      └──────cannot ever be posted──────────────────► failed
//! ```
//!
//! A delivery is marked done in the same sqlite transaction as the outbox rows that post its
//! thread line and tell its agents ([`Store::finish_delivery`]), so either all of it is owed
//! or none is: a crash before the commit posts it again next round (the same txn ids, so the
//! homeserver and the outbox take each once). Each transition is one conditional `UPDATE …
//! WHERE state = 'pending'`: a second finish changes nothing and owes nothing.

use rusqlite::{OptionalExtension, params};

use super::{OutboxRow, Store, now_us};
use crate::forge::ItemRef;

/// The stored form of a repository in `forge_threads`: `owner/name`, lowercased.
fn repo_key(item: &ItemRef) -> String {
    item.repo.to_string().to_ascii_lowercase()
}

impl Store {
    /// The thread of `item` on `server`: its room and its root event.
    pub fn forge_thread(
        &self,
        server: &str,
        item: &ItemRef,
    ) -> anyhow::Result<Option<(String, String)>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT room_id, root_event_id FROM forge_threads
                 WHERE server = ?1 AND repo = ?2 AND number = ?3",
                params![server, repo_key(item), item.number as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Records the thread of `item` (a thread made again, in a room made again, replaces it).
    pub fn set_forge_thread(
        &self,
        server: &str,
        item: &ItemRef,
        room_id: &str,
        root_event_id: &str,
    ) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO forge_threads (server, repo, number, room_id, root_event_id, created_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (server, repo, number) DO UPDATE SET room_id = ?4, root_event_id = ?5",
            params![
                server,
                repo_key(item),
                item.number as i64,
                room_id,
                root_event_id,
                now_us()
            ],
        )?;
        Ok(())
    }

    /// Delivery `id` is posted: marked done with the posts it owes (its thread line, its
    /// agents' core events), in one transaction. A delivery no longer pending owes nothing.
    /// Returns whether it was pending.
    pub fn finish_delivery(&self, id: i64, rows: &[OutboxRow]) -> anyhow::Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        let done = tx.execute(
            "UPDATE forge_deliveries SET state = 'done', done_us = ?2, error = NULL
             WHERE id = ?1 AND state = 'pending'",
            params![id, now_us()],
        )? == 1;
        if done {
            for row in rows {
                super::outbox::insert(&tx, row)?;
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// Delivery `id` can never be posted: marked failed with `error`. Returns whether it was
    /// pending.
    pub fn fail_delivery(&self, id: i64, error: &str) -> anyhow::Result<bool> {
        Ok(self.lock().execute(
            "UPDATE forge_deliveries SET state = 'failed', done_us = ?2, error = ?3
             WHERE id = ?1 AND state = 'pending'",
            params![id, now_us(), error],
        )? == 1)
    }

    /// Delivery `id`'s state and error (for tests and `hive status`).
    pub fn delivery_state(&self, id: i64) -> anyhow::Result<Option<(String, Option<String>)>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT state, error FROM forge_deliveries WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::webhook::{Action, ForgeEvent};
    use crate::forge::{ItemKind, RepoName};

    fn item(repo: &str, number: u64) -> ItemRef {
        ItemRef {
            repo: RepoName::parse(repo).unwrap(),
            number,
        }
    }

    fn event(number: u64) -> ForgeEvent {
        ForgeEvent {
            item: item("acme/widgets", number),
            kind: ItemKind::PullRequest,
            action: Action::Opened,
            actor: "alice".into(),
            title: "t".into(),
            url: "u".into(),
            author: "alice".into(),
            labels: vec![],
            head_sha: None,
        }
    }

    fn row(txn: &str) -> OutboxRow {
        OutboxRow {
            txn_id: txn.into(),
            room_key: "forge:acme/widgets".into(),
            content: "{}".into(),
        }
    }

    #[test]
    fn a_thread_is_found_again_without_case() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(
            s.forge_thread("local", &item("acme/widgets", 5)).unwrap(),
            None
        );
        s.set_forge_thread("local", &item("Acme/Widgets", 5), "!r:hs", "$root")
            .unwrap();
        let want = Some(("!r:hs".to_owned(), "$root".to_owned()));
        assert_eq!(
            s.forge_thread("local", &item("acme/widgets", 5)).unwrap(),
            want
        );
        assert_eq!(
            s.forge_thread("other", &item("acme/widgets", 5)).unwrap(),
            None
        );
        assert_eq!(
            s.forge_thread("local", &item("acme/widgets", 6)).unwrap(),
            None
        );
        // Made again (its room was made again): the new one is kept.
        s.set_forge_thread("local", &item("acme/widgets", 5), "!r2:hs", "$root2")
            .unwrap();
        assert_eq!(
            s.forge_thread("local", &item("acme/widgets", 5)).unwrap(),
            Some(("!r2:hs".to_owned(), "$root2".to_owned()))
        );
    }

    #[test]
    fn a_delivery_ends_once_with_what_it_owes() {
        use super::super::forge_deliveries::Recorded;
        let s = Store::open_in_memory().unwrap();
        let Recorded::New(a) = s
            .record_delivery("local", "d-a", "pull_request", &event(1))
            .unwrap()
        else {
            panic!("a new delivery")
        };
        let Recorded::New(b) = s
            .record_delivery("local", "d-b", "pull_request", &event(2))
            .unwrap()
        else {
            panic!("a new delivery")
        };
        assert_eq!(s.pending_deliveries(10).unwrap().len(), 2);
        assert!(
            s.finish_delivery(a, &[row("hh-a-1"), row("hh-a-2")])
                .unwrap()
        );
        assert_eq!(s.pending_posts().unwrap(), 2, "the posts it owes, with it");
        assert!(
            !s.finish_delivery(a, &[row("hh-a-3")]).unwrap(),
            "a second finish owes nothing"
        );
        assert_eq!(s.pending_posts().unwrap(), 2);
        assert_eq!(s.delivery_state(a).unwrap(), Some(("done".into(), None)));
        assert!(s.fail_delivery(b, "the room cannot be made").unwrap());
        assert!(!s.fail_delivery(b, "again").unwrap());
        assert!(
            !s.finish_delivery(b, &[row("hh-b")]).unwrap(),
            "failed stays failed"
        );
        assert_eq!(
            s.delivery_state(b).unwrap(),
            Some(("failed".into(), Some("the room cannot be made".into())))
        );
        assert_eq!(s.pending_posts().unwrap(), 2);
        assert!(s.pending_deliveries(10).unwrap().is_empty());
    }
}
