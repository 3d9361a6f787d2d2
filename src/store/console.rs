//! What the status message reads from the store besides the queue counts: when an agent's last
//! turn ended, and the status message's own record (its event id and the text last sent, kept
//! in `meta` so that a restarted core edits the same message).

use rusqlite::OptionalExtension;

use super::Store;

/// The `meta` key of the status message's event id.
const STATUS_EVENT: &str = "console.status_event";
/// The `meta` key of the text the status message last showed.
const STATUS_TEXT: &str = "console.status_text";
/// The `meta` key of how many status messages were posted and recorded: the next post's
/// transaction id, stable until a post is recorded (a post whose answer was lost, sent again,
/// is the same post to the homeserver, not a second message).
const STATUS_POSTS: &str = "console.status_posts";

/// The status message as last sent: its event and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub room_id: String,
    pub event_id: String,
    pub text: String,
}

impl Store {
    /// When `agent`'s latest handled message was done (µs), if any.
    pub fn last_turn_us(&self, agent: &str) -> anyhow::Result<Option<i64>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT done_us FROM inbox WHERE agent = ?1 AND state = 'done'
             ORDER BY id DESC LIMIT 1",
        )?;
        Ok(st
            .query_row([agent], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten())
    }

    /// The status message as last sent, if one was.
    pub fn status_record(&self) -> anyhow::Result<Option<StatusRecord>> {
        let (Some(at), text) = (self.meta(STATUS_EVENT)?, self.meta(STATUS_TEXT)?) else {
            return Ok(None);
        };
        // Stored as `<room id> <event id>`: neither holds a space.
        let Some((room_id, event_id)) = at.split_once(' ') else {
            anyhow::bail!("the status message's record {at:?} names no room and event");
        };
        Ok(Some(StatusRecord {
            room_id: room_id.to_owned(),
            event_id: event_id.to_owned(),
            text: text.unwrap_or_default(),
        }))
    }

    /// How many status messages were posted and recorded (see [`Store::record_status_post`]).
    pub fn status_posts(&self) -> anyhow::Result<u64> {
        let Some(n) = self.meta(STATUS_POSTS)? else {
            return Ok(0);
        };
        n.parse()
            .map_err(|e| anyhow::anyhow!("the status posts count {n:?}: {e}"))
    }

    /// Records the status message as sent (an edit of it).
    pub fn set_status_record(&self, rec: &StatusRecord) -> anyhow::Result<()> {
        self.write_status_record(rec, false)
    }

    /// Records a newly posted status message, and counts the post (the next post takes a new
    /// transaction id), in one transaction.
    pub fn record_status_post(&self, rec: &StatusRecord) -> anyhow::Result<()> {
        self.write_status_record(rec, true)
    }

    fn write_status_record(&self, rec: &StatusRecord, posted: bool) -> anyhow::Result<()> {
        let posts = if posted {
            Some((self.status_posts()? + 1).to_string())
        } else {
            None
        };
        let conn = self.lock();
        let tx = conn.unchecked_transaction()?;
        let mut rows = vec![
            (STATUS_EVENT, format!("{} {}", rec.room_id, rec.event_id)),
            (STATUS_TEXT, rec.text.clone()),
        ];
        if let Some(n) = posts {
            rows.push((STATUS_POSTS, n));
        }
        for (k, v) in rows {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = ?2",
                rusqlite::params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_record_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("c0re.db");
        let rec = StatusRecord {
            room_id: "!c:hs".into(),
            event_id: "$s:hs".into(),
            text: "**🐝 Hive status**\n\n- **echo**: idle".into(),
        };
        {
            let s = Store::open(&path).expect("open");
            assert_eq!(s.status_record().expect("read"), None, "nothing yet");
            assert_eq!(s.status_posts().expect("read"), 0, "nothing posted yet");
            s.record_status_post(&rec).expect("write");
            assert_eq!(s.status_posts().expect("read"), 1, "a post counted");
            let edited = StatusRecord {
                text: "changed".into(),
                ..rec.clone()
            };
            s.set_status_record(&edited).expect("an edit");
            assert_eq!(s.status_posts().expect("read"), 1, "an edit is not a post");
        }
        let s = Store::open(&path).expect("reopen");
        assert_eq!(
            s.status_record().expect("read"),
            Some(StatusRecord {
                text: "changed".into(),
                ..rec
            })
        );
    }

    #[test]
    fn the_last_turn_is_the_latest_done() {
        let s = Store::open_in_memory().expect("open");
        assert_eq!(s.last_turn_us("echo").expect("read"), None, "no turn yet");
        for ev in ["$a", "$b"] {
            s.ingest(
                &[(ev.to_owned(), "!r:hs".to_owned())],
                &[crate::store::Enqueue {
                    event_id: ev.into(),
                    room_id: "!r:hs".into(),
                    sender: "@op:hs".into(),
                    body: "hi".into(),
                    origin_ts: 0,
                    agents: vec!["echo".into()],
                    hive_event: None,
                    peer: None,
                }],
                1,
            )
            .expect("ingest");
        }
        let (first, _) = s.take_next("echo", 3).expect("take");
        let first = first.expect("a message");
        let (second, _) = s.take_next("echo", 3).expect("take");
        let second = second.expect("a second message");
        assert_eq!(
            s.last_turn_us("echo").expect("read"),
            None,
            "turns in flight are not done"
        );
        // Acked out of order: the latest message (by id) is done first.
        s.ack(second.id).expect("ack");
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.ack(first.id).expect("ack");
        let done_of = |id: i64| -> Option<i64> {
            s.lock()
                .query_row("SELECT done_us FROM inbox WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .expect("the row")
        };
        let (first_done, second_done) = (done_of(first.id), done_of(second.id));
        assert_ne!(first_done, second_done, "acked at different times");
        assert_eq!(
            s.last_turn_us("echo").expect("read"),
            second_done,
            "the latest message's turn, not the latest ack"
        );
    }
}
