//! Cross-hive streams: the numbers this hive gives the messages it posts to a peer, and the
//! release, once and in order, of a peer's numbered messages to this hive's agents.
//!
//! ```text
//! peer's message #n ──ingest──► n < next: a duplicate, dropped
//!                          └──► held ──while held has `next`──► inbox rows (or the refusal
//!                                                               notice, through the outbox)
//! ```
//!
//! A held message past a gap waits for the gap to fill (the peering task pages the peer room's
//! history back, which makes the homeserver backfill what federation missed).

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Enqueue, OutboxRow, Store, now_us};

/// Where a peer's message sits in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSeq {
    /// The peer's hive name.
    pub peer: String,
    pub epoch: String,
    pub seq: i64,
    /// The post that tells the sender why the message was refused (`agents` is empty then).
    pub refusal: Option<OutboxRow>,
}

/// A gap in a peer's stream: `next` has not arrived, `held` later ones have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGap {
    pub peer: String,
    pub epoch: String,
    pub next: i64,
    pub held: u64,
    /// The lowest number held (the gap is `next..first_held`).
    pub first_held: i64,
    /// When the oldest held message arrived.
    pub since_us: i64,
}

/// Messages of one peer held behind gaps, at most (over all its streams): past that a peer's
/// message is dropped and logged.
pub const MAX_HELD: i64 = 5_000;

/// A message sent this long before the store's first start predates it (clocks differ a
/// little between hives; a re-made data dir is older history than that).
pub const PREDATES_MARGIN_MS: i64 = 3_600_000;

/// A number this far past the next one to release is not held (a peer cannot make this hive
/// store without bound): it is dropped and logged.
pub const MAX_AHEAD: i64 = 10_000;

/// A message reserved for a peer that the homeserver has not taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unposted {
    pub peer: String,
    pub txn_id: String,
    /// The sending agent's user id.
    pub sender: String,
    pub room_id: String,
    /// The event content, JSON.
    pub content: String,
}

/// What `hive status` shows of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerStatus {
    pub peer: String,
    pub room_id: Option<String>,
    pub last_event_us: Option<i64>,
    pub probed_us: Option<i64>,
    pub reachable: Option<bool>,
    pub error: Option<String>,
    /// Messages of the peer's stream waiting for an earlier one.
    pub held: u64,
}

/// Holds each fresh numbered message, then releases every peer stream it touched as far as it
/// runs without a gap. Returns the agents that got something and whether a refusal was queued.
pub(super) fn hold_and_release(
    tx: &Transaction<'_>,
    numbered: &[&Enqueue],
    received_us: i64,
) -> rusqlite::Result<(Vec<String>, bool)> {
    let mut streams: Vec<(String, String)> = Vec::new();
    {
        let mut hold = tx.prepare_cached(
            "INSERT OR IGNORE INTO peer_held (peer, epoch, seq, event_id, room_id, sender, body, origin_ts, agents, refusal, received_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let since_ms: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'since_ms'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .and_then(|v| v.parse().ok());
        for e in numbered {
            let Some(p) = &e.peer else { continue };
            if since_ms.is_some_and(|since| e.origin_ts < since - PREDATES_MARGIN_MS) {
                // Sent well before this data dir was made (history read back after a re-made
                // data dir): delivered to whoever had it then, not again. It still moves the
                // stream on, so what follows it does not wait for it.
                tx.execute(
                    "INSERT INTO peer_cursor (peer, epoch, next_seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (peer, epoch) DO UPDATE SET next_seq = MAX(next_seq, excluded.next_seq)",
                    params![p.peer, p.epoch, p.seq.saturating_add(1)],
                )?;
                touch(&mut streams, p);
                continue;
            }
            if !has_cursor(tx, &p.peer, &p.epoch)? && p.seq > MAX_AHEAD {
                // A stream long under way that this store never followed: joined where it is.
                tx.execute(
                    "INSERT INTO peer_cursor (peer, epoch, next_seq) VALUES (?1, ?2, ?3)",
                    params![p.peer, p.epoch, p.seq],
                )?;
            }
            let next = cursor(tx, &p.peer, &p.epoch)?;
            if p.seq >= next.saturating_add(MAX_AHEAD) {
                tracing::warn!(peer = %p.peer, seq = p.seq, event = %e.event_id, "dropped a peer's message numbered too far ahead");
                continue;
            }
            let held: i64 = tx.query_row(
                "SELECT COUNT(*) FROM peer_held WHERE peer = ?1",
                [&p.peer],
                |r| r.get(0),
            )?;
            // The next number itself is always taken: it releases at once (and it may be the
            // one everything held waits for).
            if held >= MAX_HELD && p.seq > next {
                tracing::warn!(peer = %p.peer, seq = p.seq, event = %e.event_id, "dropped a peer's message: too many already wait behind gaps");
                continue;
            }
            let refusal = p
                .refusal
                .as_ref()
                .map(|r| serde_json::json!([r.txn_id, r.room_key, r.content]).to_string());
            hold.execute(params![
                p.peer,
                p.epoch,
                p.seq,
                e.event_id,
                e.room_id,
                e.sender,
                e.body,
                e.origin_ts,
                serde_json::to_string(&e.agents).expect("strings serialise"),
                refusal,
                received_us
            ])?;
            touch(&mut streams, p);
        }
    }
    let mut woken = Vec::new();
    let mut refused = false;
    for (peer, epoch) in streams {
        let (w, r) = release(tx, &peer, &epoch, None)?;
        for a in w {
            if !woken.contains(&a) {
                woken.push(a);
            }
        }
        refused |= r;
    }
    Ok((woken, refused))
}

/// Releases `peer`'s stream `epoch` as far as it runs without a gap, starting from its cursor
/// or, to give up on a gap, from `skip_to`. Returns the agents that got something and whether
/// a refusal was queued.
fn release(
    tx: &Transaction<'_>,
    peer: &str,
    epoch: &str,
    skip_to: Option<i64>,
) -> rusqlite::Result<(Vec<String>, bool)> {
    let mut woken: Vec<String> = Vec::new();
    let mut refused = false;
    let mut next = cursor(tx, peer, epoch)?;
    if let Some(to) = skip_to {
        next = next.max(to);
    }
    // Numbers already released: duplicates (a re-sent event, a second copy).
    tx.execute(
        "DELETE FROM peer_held WHERE peer = ?1 AND epoch = ?2 AND seq < ?3",
        params![peer, epoch, next],
    )?;
    loop {
        let row = tx
            .query_row(
                "SELECT event_id, room_id, sender, body, origin_ts, agents, refusal, received_us
                 FROM peer_held WHERE peer = ?1 AND epoch = ?2 AND seq = ?3",
                params![peer, epoch, next],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                },
            )
            .optional()?;
        let Some((event_id, room_id, sender, body, origin_ts, agents, refusal, received_us)) = row
        else {
            break;
        };
        let agents: Vec<String> = serde_json::from_str(&agents).unwrap_or_default();
        for agent in &agents {
            let n = tx.execute(
                "INSERT OR IGNORE INTO inbox (agent, event_id, room_id, sender, body, origin_ts, enqueued_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![agent, event_id, room_id, sender, body, origin_ts, received_us],
            )?;
            if n == 1 && !woken.contains(agent) {
                woken.push(agent.clone());
            }
        }
        if let Some(r) = refusal
            .as_deref()
            .and_then(|r| serde_json::from_str::<(String, String, String)>(r).ok())
        {
            super::outbox::insert(
                tx,
                &OutboxRow {
                    txn_id: r.0,
                    room_key: r.1,
                    content: r.2,
                },
            )?;
            refused = true;
        }
        tx.execute(
            "DELETE FROM peer_held WHERE peer = ?1 AND epoch = ?2 AND seq = ?3",
            params![peer, epoch, next],
        )?;
        next += 1;
    }
    tx.execute(
        "INSERT INTO peer_cursor (peer, epoch, next_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (peer, epoch) DO UPDATE SET next_seq = excluded.next_seq",
        params![peer, epoch, next],
    )?;
    Ok((woken, refused))
}

/// Notes that `p`'s stream was touched (it is released after the batch).
fn touch(streams: &mut Vec<(String, String)>, p: &PeerSeq) {
    let key = (p.peer.clone(), p.epoch.clone());
    if !streams.contains(&key) {
        streams.push(key);
    }
}

/// Whether this store has released anything of `peer`'s stream `epoch`.
fn has_cursor(tx: &Transaction<'_>, peer: &str, epoch: &str) -> rusqlite::Result<bool> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM peer_cursor WHERE peer = ?1 AND epoch = ?2",
            params![peer, epoch],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The next number of `peer`'s stream `epoch` to release (1 for a new stream).
fn cursor(tx: &Transaction<'_>, peer: &str, epoch: &str) -> rusqlite::Result<i64> {
    Ok(tx
        .query_row(
            "SELECT next_seq FROM peer_cursor WHERE peer = ?1 AND epoch = ?2",
            params![peer, epoch],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(1))
}

impl Store {
    /// This data dir's epoch, made on first use.
    pub fn peer_epoch(&self) -> anyhow::Result<String> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO peer_epoch (id, epoch) VALUES (1, ?1)",
            [crate::proc::random_secret(16)],
        )?;
        Ok(
            conn.query_row("SELECT epoch FROM peer_epoch WHERE id = 1", [], |r| {
                r.get(0)
            })?,
        )
    }

    /// Reserves the number for a message to `peer` posted with `txn_id` by `sender` into
    /// `room_id`, with its content (`make(seq)`), before it is posted: one that was reserved
    /// before (a re-send) gets its number and content back. The caller posts the content and
    /// then [`Store::peer_posted`]s, one message at a time per peer.
    pub fn reserve_peer_seq(
        &self,
        peer: &str,
        txn_id: &str,
        sender: &str,
        room_id: &str,
        make: impl FnOnce(i64) -> String,
    ) -> anyhow::Result<(i64, String)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if let Some(found) = tx
            .query_row(
                "SELECT seq, content FROM peer_sent WHERE peer = ?1 AND txn_id = ?2",
                params![peer, txn_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        {
            return Ok(found);
        }
        let seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM peer_sent WHERE peer = ?1",
            [peer],
            |r| r.get(0),
        )?;
        let content = make(seq);
        tx.execute(
            "INSERT INTO peer_sent (peer, seq, txn_id, sender, room_id, content, reserved_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![peer, seq, txn_id, sender, room_id, content, now_us()],
        )?;
        tx.commit()?;
        Ok((seq, content))
    }

    /// Takes back the reservation of `txn_id` for `peer` after the homeserver refused its post
    /// for good, if it is still the stream's latest number (then no hole is left); returns
    /// whether it was taken back.
    pub fn peer_unreserve(&self, peer: &str, txn_id: &str) -> anyhow::Result<bool> {
        let n = self.lock().execute(
            "DELETE FROM peer_sent WHERE peer = ?1 AND txn_id = ?2 AND event_id IS NULL
             AND seq = (SELECT MAX(seq) FROM peer_sent WHERE peer = ?1)",
            params![peer, txn_id],
        )?;
        Ok(n == 1)
    }

    /// Gives up a reserved message the homeserver refuses for good: it is marked posted as
    /// nothing (`event_id` empty), and the peer's core gives its number up in time.
    pub fn peer_abandon(&self, peer: &str, txn_id: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "UPDATE peer_sent SET event_id = '', sent_us = ?3 WHERE peer = ?1 AND txn_id = ?2 AND event_id IS NULL",
            params![peer, txn_id, now_us()],
        )?;
        Ok(())
    }

    /// Whether the message reserved with `txn_id` for `peer` is still owed.
    pub fn peer_owed(&self, peer: &str, txn_id: &str) -> anyhow::Result<bool> {
        Ok(self
            .lock()
            .query_row(
                "SELECT 1 FROM peer_sent WHERE peer = ?1 AND txn_id = ?2 AND event_id IS NULL",
                params![peer, txn_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records that the message reserved with `txn_id` for `peer` was posted as `event_id`.
    pub fn peer_posted(&self, peer: &str, txn_id: &str, event_id: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "UPDATE peer_sent SET event_id = ?3, sent_us = ?4 WHERE peer = ?1 AND txn_id = ?2",
            params![peer, txn_id, event_id, now_us()],
        )?;
        Ok(())
    }

    /// Reserved messages the homeserver has not taken yet (a post that failed, or a core that
    /// died before it heard back), oldest first.
    pub fn peer_unposted(&self) -> anyhow::Result<Vec<Unposted>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT peer, txn_id, sender, room_id, content FROM peer_sent WHERE event_id IS NULL
             ORDER BY peer, seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Unposted {
                peer: r.get(0)?,
                txn_id: r.get(1)?,
                sender: r.get(2)?,
                room_id: r.get(3)?,
                content: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who sent the message this hive posted to `peer` as `event_id`, if it did.
    pub fn peer_sender_of(&self, peer: &str, event_id: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT sender FROM peer_sent WHERE peer = ?1 AND event_id = ?2",
                params![peer, event_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every peer stream with a message held behind a gap.
    pub fn peer_gaps(&self) -> anyhow::Result<Vec<PeerGap>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT h.peer, h.epoch, COALESCE(c.next_seq, 1), COUNT(*), MIN(h.seq), MIN(h.received_us)
             FROM peer_held h LEFT JOIN peer_cursor c ON c.peer = h.peer AND c.epoch = h.epoch
             GROUP BY h.peer, h.epoch",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PeerGap {
                peer: r.get(0)?,
                epoch: r.get(1)?,
                next: r.get(2)?,
                held: r.get(3)?,
                first_held: r.get(4)?,
                since_us: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Gives up on `gap`: its missing numbers are skipped and what was held behind it is
    /// released. Returns the agents that got something and whether a refusal was queued.
    pub fn skip_gap(&self, gap: &PeerGap) -> anyhow::Result<(Vec<String>, bool)> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        // The lowest held now (one may have arrived since `gap` was read).
        let first: Option<i64> = tx.query_row(
            "SELECT MIN(seq) FROM peer_held WHERE peer = ?1 AND epoch = ?2",
            params![gap.peer, gap.epoch],
            |r| r.get(0),
        )?;
        let Some(first) = first else {
            return Ok((Vec::new(), false));
        };
        let out = release(&tx, &gap.peer, &gap.epoch, Some(first))?;
        tx.commit()?;
        Ok(out)
    }

    /// The peer room of `peer`, as set up.
    pub fn set_peer_room(&self, peer: &str, room_id: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO peer_status (peer, room_id) VALUES (?1, ?2)
             ON CONFLICT (peer) DO UPDATE SET room_id = excluded.room_id",
            params![peer, room_id],
        )?;
        Ok(())
    }

    /// An event from `peer`'s server arrived at `us`.
    pub fn peer_event_seen(&self, peer: &str, us: i64) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO peer_status (peer, last_event_us) VALUES (?1, ?2)
             ON CONFLICT (peer) DO UPDATE SET last_event_us = MAX(COALESCE(last_event_us, 0), excluded.last_event_us)",
            params![peer, us],
        )?;
        Ok(())
    }

    /// The outcome of probing `peer` (`error` when it did not answer).
    pub fn peer_probed(&self, peer: &str, error: Option<&str>) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO peer_status (peer, probed_us, reachable, error) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (peer) DO UPDATE SET probed_us = excluded.probed_us,
                 reachable = excluded.reachable, error = excluded.error",
            params![peer, now_us(), error.is_none(), error],
        )?;
        Ok(())
    }

    /// What is known of `peer` (defaults when nothing is).
    pub fn peer_status(&self, peer: &str) -> anyhow::Result<PeerStatus> {
        let conn = self.lock();
        let mut st = conn
            .query_row(
                "SELECT room_id, last_event_us, probed_us, reachable, error FROM peer_status WHERE peer = ?1",
                [peer],
                |r| {
                    Ok(PeerStatus {
                        peer: peer.to_owned(),
                        room_id: r.get(0)?,
                        last_event_us: r.get(1)?,
                        probed_us: r.get(2)?,
                        reachable: r.get(3)?,
                        error: r.get(4)?,
                        held: 0,
                    })
                },
            )
            .optional()?
            .unwrap_or_else(|| PeerStatus {
                peer: peer.to_owned(),
                ..PeerStatus::default()
            });
        st.held = conn.query_row(
            "SELECT COUNT(*) FROM peer_held WHERE peer = ?1",
            [peer],
            |r| r.get(0),
        )?;
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event: &str, peer: &str, epoch: &str, seq: i64, agent: &str) -> Enqueue {
        Enqueue {
            event_id: event.into(),
            room_id: "!peer:a".into(),
            sender: "@argus:b".into(),
            body: format!("body of {event}"),
            origin_ts: 1,
            agents: if agent.is_empty() {
                Vec::new()
            } else {
                vec![agent.into()]
            },
            hive_event: None,
            peer: Some(PeerSeq {
                peer: peer.into(),
                epoch: epoch.into(),
                seq,
                refusal: agent.is_empty().then(|| OutboxRow {
                    txn_id: format!("refuse-{event}"),
                    room_key: format!("peer:{peer}"),
                    content: "{}".into(),
                }),
            }),
        }
    }

    fn ingest(s: &Store, evs: &[Enqueue]) -> Vec<String> {
        let seen: Vec<(String, String)> = evs
            .iter()
            .map(|e| (e.event_id.clone(), e.room_id.clone()))
            .collect();
        s.ingest(&seen, evs, now_us()).unwrap()
    }

    fn queued(s: &Store, agent: &str) -> Vec<String> {
        let conn = s.lock();
        let mut stmt = conn
            .prepare("SELECT event_id FROM inbox WHERE agent = ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([agent], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_peer_stream_is_released_once_and_in_order() {
        let s = Store::open_in_memory().unwrap();
        // 2 and 3 arrive before 1: held, nobody woken.
        assert!(
            ingest(
                &s,
                &[
                    msg("$2", "b", "e1", 2, "iris"),
                    msg("$3", "b", "e1", 3, "iris")
                ]
            )
            .is_empty()
        );
        assert!(queued(&s, "iris").is_empty());
        let gaps = s.peer_gaps().unwrap();
        assert_eq!(gaps.len(), 1);
        let g = &gaps[0];
        assert_eq!(
            (
                g.peer.as_str(),
                g.epoch.as_str(),
                g.next,
                g.held,
                g.first_held
            ),
            ("b", "e1", 1, 2, 2)
        );
        assert_eq!(s.peer_status("b").unwrap().held, 2);
        // 1 fills the gap: 1, 2, 3 in that order.
        assert_eq!(
            ingest(&s, &[msg("$1", "b", "e1", 1, "iris")]),
            vec!["iris".to_owned()]
        );
        assert_eq!(queued(&s, "iris"), ["$1", "$2", "$3"]);
        assert!(s.peer_gaps().unwrap().is_empty());
        // A second copy of 2 under another event id is a duplicate: dropped.
        ingest(&s, &[msg("$2bis", "b", "e1", 2, "iris")]);
        assert_eq!(queued(&s, "iris"), ["$1", "$2", "$3"]);
        assert!(s.peer_gaps().unwrap().is_empty());
        // The same event again (read back, or pushed twice) is a duplicate by its number.
        ingest(&s, &[msg("$3", "b", "e1", 3, "iris")]);
        assert_eq!(queued(&s, "iris").len(), 3);
        // A refused message takes its place in the stream and queues its notice.
        ingest(
            &s,
            &[msg("$5", "b", "e1", 5, "iris"), msg("$4", "b", "e1", 4, "")],
        );
        assert_eq!(queued(&s, "iris"), ["$1", "$2", "$3", "$5"]);
        assert_eq!(s.pending_posts().unwrap(), 1);
        // A new epoch (the peer's data dir made anew) starts from 1; another peer is its own
        // stream.
        ingest(
            &s,
            &[
                msg("$n1", "b", "e2", 1, "iris"),
                msg("$c1", "c", "e1", 1, "iris"),
            ],
        );
        assert_eq!(queued(&s, "iris"), ["$1", "$2", "$3", "$5", "$n1", "$c1"]);
    }

    #[test]
    fn a_message_seen_before_still_takes_its_place() {
        let s = Store::open_in_memory().unwrap();
        // $2 was seen once as nothing (its room not yet known as the peer room).
        s.ingest(&[("$2".into(), "!peer:a".into())], &[], now_us())
            .unwrap();
        ingest(&s, &[msg("$1", "b", "e1", 1, "iris")]);
        ingest(&s, &[msg("$2", "b", "e1", 2, "iris")]);
        assert_eq!(queued(&s, "iris"), ["$1", "$2"]);
    }

    #[test]
    fn a_gap_given_up_releases_what_waited_behind_it() {
        let s = Store::open_in_memory().unwrap();
        ingest(&s, &[msg("$1", "b", "e1", 1, "iris")]);
        ingest(
            &s,
            &[
                msg("$4", "b", "e1", 4, "iris"),
                msg("$5", "b", "e1", 5, "iris"),
            ],
        );
        let gap = s.peer_gaps().unwrap().remove(0);
        assert_eq!((gap.next, gap.first_held), (2, 4));
        let (woken, refused) = s.skip_gap(&gap).unwrap();
        assert_eq!((woken, refused), (vec!["iris".to_owned()], false));
        assert_eq!(queued(&s, "iris"), ["$1", "$4", "$5"]);
        assert!(s.peer_gaps().unwrap().is_empty());
        // 2 and 3 arriving now are too late: dropped, not delivered out of order.
        ingest(
            &s,
            &[
                msg("$2", "b", "e1", 2, "iris"),
                msg("$6", "b", "e1", 6, "iris"),
            ],
        );
        assert_eq!(queued(&s, "iris"), ["$1", "$4", "$5", "$6"]);
    }

    #[test]
    fn a_number_far_ahead_is_not_held() {
        let s = Store::open_in_memory().unwrap();
        ingest(&s, &[msg("$1", "b", "e1", 1, "iris")]);
        ingest(&s, &[msg("$far", "b", "e1", 2 + MAX_AHEAD, "iris")]);
        assert!(s.peer_gaps().unwrap().is_empty(), "nothing held");
        ingest(&s, &[msg("$near", "b", "e1", MAX_AHEAD, "iris")]);
        assert_eq!(
            s.peer_gaps().unwrap().len(),
            1,
            "just inside the window: held"
        );
    }

    #[test]
    fn a_new_store_joins_a_stream_where_it_is_and_replays_no_history() {
        let s = Store::open_in_memory().unwrap();
        let since = 10 * PREDATES_MARGIN_MS;
        s.set_meta("since_ms", &since.to_string()).unwrap();
        let at = |m: &mut Enqueue, ts: i64| m.origin_ts = ts;
        // A stream long under way (a re-made data dir on this side): joined at its number.
        let mut n = msg("$n", "b", "e1", MAX_AHEAD + 7, "iris");
        at(&mut n, since);
        ingest(&s, &[n]);
        assert_eq!(queued(&s, "iris"), ["$n"]);
        // A short stream's history from well before this data dir (read back from the room):
        // not delivered again, but it moves the stream on, so the next one does not wait.
        let (mut h1, mut h2) = (
            msg("$h1", "b", "e2", 1, "iris"),
            msg("$h2", "b", "e2", 2, "iris"),
        );
        at(&mut h1, since - PREDATES_MARGIN_MS - 1);
        at(&mut h2, since - PREDATES_MARGIN_MS - 1);
        ingest(&s, &[h1, h2]);
        let mut h3 = msg("$h3", "b", "e2", 3, "iris");
        at(&mut h3, since);
        ingest(&s, &[h3]);
        assert_eq!(queued(&s, "iris"), ["$n", "$h3"]);
        assert!(
            s.peer_gaps().unwrap().is_empty(),
            "nothing waits for the history"
        );
        // Within the margin (a peer's clock a little behind): delivered.
        let mut h4 = msg("$h4", "b", "e2", 4, "iris");
        at(&mut h4, since - 60_000);
        ingest(&s, &[h4]);
        assert_eq!(queued(&s, "iris"), ["$n", "$h3", "$h4"]);
    }

    #[test]
    fn the_next_number_is_taken_even_when_the_held_are_many() {
        let s = Store::open_in_memory().unwrap();
        ingest(&s, &[msg("$1", "b", "e1", 1, "iris")]);
        // Fill the held table to its cap behind a gap at 2.
        let held: Vec<Enqueue> = (0..MAX_HELD)
            .map(|i| msg(&format!("$h{i}"), "b", "e1", 3 + i, "iris"))
            .collect();
        ingest(&s, &held);
        assert_eq!(s.peer_status("b").unwrap().held, MAX_HELD as u64);
        ingest(&s, &[msg("$over", "b", "e1", 3 + MAX_HELD, "iris")]);
        assert_eq!(
            s.peer_status("b").unwrap().held,
            MAX_HELD as u64,
            "past the cap: dropped"
        );
        // 2 arrives: taken, and everything behind it released in order.
        ingest(&s, &[msg("$2", "b", "e1", 2, "iris")]);
        let q = queued(&s, "iris");
        assert_eq!(q.len(), 2 + MAX_HELD as usize);
        assert_eq!(&q[..3], ["$1", "$2", "$h0"]);
        assert!(s.peer_gaps().unwrap().is_empty());
    }

    #[test]
    fn a_number_is_reserved_with_its_content_before_the_post() {
        let s = Store::open_in_memory().unwrap();
        let reserve = |txn: &str| {
            s.reserve_peer_seq("b", txn, "@x:a", "!r:a", |seq| format!("content {seq}"))
                .unwrap()
        };
        assert_eq!(reserve("t1"), (1, "content 1".into()));
        // The core died before it heard back: another sender gets the next number, and the
        // re-send of t1 gets its own number and content back (the homeserver's txn cache
        // answers it with the first event).
        assert_eq!(reserve("t2"), (2, "content 2".into()));
        assert_eq!(reserve("t1"), (1, "content 1".into()));
        let unposted: Vec<String> = s
            .peer_unposted()
            .unwrap()
            .into_iter()
            .map(|r| r.txn_id)
            .collect();
        assert_eq!(unposted, ["t1", "t2"], "both are owed, in order");
        s.peer_posted("b", "t1", "$1").unwrap();
        assert_eq!(s.peer_unposted().unwrap().len(), 1);
        assert_eq!(
            s.peer_sender_of("b", "$1").unwrap().as_deref(),
            Some("@x:a")
        );
        assert_eq!(s.peer_sender_of("c", "$1").unwrap(), None, "per peer");
        assert_eq!(
            s.reserve_peer_seq("c", "t2", "@x:a", "!r:a", |seq| seq.to_string())
                .unwrap()
                .0,
            1,
            "each peer has its own stream"
        );
        // A refused post is taken back only while it is the latest number.
        assert!(!s.peer_unreserve("b", "t1").unwrap(), "t1 was posted");
        s.reserve_peer_seq("b", "t3", "@x:a", "!r:a", |seq| seq.to_string())
            .unwrap();
        assert!(
            !s.peer_unreserve("b", "t2").unwrap(),
            "t3 came after t2: t2 stays, no hole"
        );
        assert!(s.peer_unreserve("b", "t3").unwrap());
        assert_eq!(
            s.reserve_peer_seq("b", "t4", "@x:a", "!r:a", |seq| seq.to_string())
                .unwrap()
                .0,
            3,
            "the number taken back is given again"
        );
        assert!(s.peer_owed("b", "t2").unwrap());
        s.peer_abandon("b", "t2").unwrap();
        assert!(!s.peer_owed("b", "t2").unwrap());
        let e = s.peer_epoch().unwrap();
        assert_eq!(s.peer_epoch().unwrap(), e, "the epoch is made once");
    }
}
