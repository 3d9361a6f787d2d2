//! Timeline reconciliation after downtime: the homeserver held events back (the heartbeat did
//! not come back, or the core was down), so read each hive room's history backwards and accept
//! what the homeserver has but never pushed.
//!
//! Rules:
//! - the horizon is when the hive first started (`since_ms` in the store, recorded on the first
//!   reconciliation), but never before the retention horizon: event ids older than
//!   `retention_days - 1` days are pruned from the store, and such an event must not be taken
//!   for one the core missed ([`horizon_ms`]);
//! - a room is read newest first, a first page of [`FIRST_PAGE`] events and then pages of 100
//!   events, until an event older than the
//!   horizon or one the core has seen: everything before that is missing ([`scan_page`]);
//! - at most [`PAGES`] full pages per room (after the first): beyond that the operator is told that older events of
//!   the room were not read;
//! - missing events are accepted oldest first, exactly as if pushed.

use ruma::api::Direction;
use ruma::api::client::message::get_message_events;
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};

use super::super::Core;
use super::super::routing::TimelineEvent;
use crate::store::now_us;

/// Pages of history (100 events each) read per room when reconciling: 10,000 events.
pub const PAGES: usize = 100;

/// The first page read of each room is this small: in most rooms its newest event is one the
/// core has seen, and a start with a hundred rooms should not make the homeserver load and
/// serialise a hundred events of each (the pages after it are full ones, [`PAGES`] of them).
pub const FIRST_PAGE: u32 = 5;

/// The info line logged when a reconciliation is done, with `elapsed_ms` and `rooms`
/// (`hive bench` splits the start-up with it).
pub const LOG_RECONCILED: &str = "reconciled the rooms' timelines";

const DAY_MS: i64 = 86_400_000;

/// Events at or after this (ms since the epoch) are candidates for missing events.
/// `first_start_ms` is when the hive first started; `now_ms` the clock now.
pub fn horizon_ms(first_start_ms: i64, now_ms: i64, retention_days: u32) -> i64 {
    let kept_days = i64::from(retention_days.saturating_sub(1));
    first_start_ms.max(now_ms - kept_days * DAY_MS)
}

/// One page of a room's history, read newest first.
#[derive(Debug, Default)]
pub struct Scan {
    /// Events the core never received, newest first.
    pub missing: Vec<TimelineEvent>,
    /// The scan reached known history (an old or seen event, or the room's first event):
    /// no further page is needed.
    pub done: bool,
}

/// Scans one page (`chunk`, newest first) of a room's history: events at or after
/// `horizon_ms` that `seen` does not know are missing, up to the first that is old or seen.
/// `more` says whether the homeserver has an older page. An event the core does not route
/// (missing fields) is passed over.
pub fn scan_page<E>(
    chunk: &[Raw<ruma::events::AnyTimelineEvent>],
    more: bool,
    horizon_ms: i64,
    mut seen: impl FnMut(&str) -> Result<bool, E>,
) -> Result<Scan, E> {
    let mut scan = Scan::default();
    for raw in chunk {
        let Ok(ev) = raw.deserialize_as_unchecked::<TimelineEvent>() else {
            continue;
        };
        if ev.origin_server_ts < horizon_ms || seen(&ev.event_id)? {
            scan.done = true;
            return Ok(scan);
        }
        scan.missing.push(ev);
    }
    scan.done = !more;
    Ok(scan)
}

impl Core {
    /// Reads recent history of every hive room and accepts what the homeserver has but the core
    /// never received (the rules above). Returns how many events were accepted.
    ///
    /// `known_before_us`: only an event the core received before this time is known history (a
    /// scan stops there). At start-up that is the process's start: the check runs beside the
    /// agents, whose replies (received since) are newer than what was missed while the core was
    /// down, and must not end a room's scan before it; an event received since is passed over,
    /// not accepted twice. One reconciliation runs at a time.
    pub async fn reconcile(&self, known_before_us: i64) -> anyhow::Result<usize> {
        let _one = self.inner.reconciling.lock().await;
        let began = std::time::Instant::now();
        let first_start_ms: i64 = match self.store().meta("since_ms")? {
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("stored since_ms {v:?} is not a number: {e}"))?,
            None => {
                let now = now_us() / 1000;
                self.store().set_meta("since_ms", &now.to_string())?;
                now
            }
        };
        let horizon = horizon_ms(first_start_ms, now_us() / 1000, self.cfg().retention_days);
        let mut accepted = 0;
        let rooms: Vec<OwnedRoomId> = self.rooms().snapshot().all().cloned().collect();
        // Read a handful of rooms at once (a start-up waits on this), accept room by room.
        // One room that cannot be read does not cost the others theirs.
        let read = crate::c0re::rooms::bounded(rooms, crate::c0re::rooms::IN_FLIGHT, |room| {
            let core = self.clone();
            async move {
                let read = core.missing_in(&room, horizon, known_before_us).await;
                anyhow::Ok((room, read))
            }
        })
        .await?;
        let mut failed = 0;
        for (room, read) in read {
            let (mut missing, complete) = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(room = %room, error = %format!("{e:#}"), "cannot read the room's timeline");
                    failed += 1;
                    continue;
                }
            };
            if !complete {
                tracing::error!(room = %room, read = missing.len(), "reconcile stopped before reaching known history");
                self.notice(
                    None,
                    &format!(
                        "⚠️ Catching up on {room} after an outage, I read the newest {} events the homeserver had not pushed and stopped there: older ones in that room were not delivered.",
                        missing.len()
                    ),
                )
                .await;
            }
            if !missing.is_empty() {
                missing.reverse();
                tracing::warn!(room = %room, events = missing.len(), "accepting events the homeserver never pushed");
                accepted += missing.len();
                self.accept(&missing, now_us())?;
            }
        }
        tracing::info!(
            elapsed_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            accepted,
            failed,
            "{LOG_RECONCILED}"
        );
        if failed > 0 && failed == self.rooms().snapshot().all().count() {
            anyhow::bail!("no room's timeline could be read");
        }
        Ok(accepted)
    }

    /// The events of `room` since `horizon` the core never received, newest first, and whether
    /// the read reached known history within [`PAGES`] pages.
    async fn missing_in(
        &self,
        room: &OwnedRoomId,
        horizon: i64,
        known_before_us: i64,
    ) -> anyhow::Result<(Vec<TimelineEvent>, bool)> {
        let known = |id: &str| -> anyhow::Result<bool> {
            Ok(self
                .store()
                .received_us(id)?
                .is_some_and(|t| t < known_before_us))
        };
        let since = |id: &str| -> anyhow::Result<bool> {
            Ok(self
                .store()
                .received_us(id)?
                .is_some_and(|t| t >= known_before_us))
        };
        let mut missing = Vec::new();
        let mut from: Option<String> = None;
        for page in 0..=PAGES {
            let mut req = get_message_events::v3::Request::new(room.clone(), Direction::Backward);
            req.from = from.take();
            req.limit = UInt::from(if page == 0 { FIRST_PAGE } else { 100 });
            let resp = self.client().send(req, None).await?;
            let more = resp.end.is_some() && !resp.chunk.is_empty();
            let scan = scan_page(&resp.chunk, more, horizon, known)?;
            for ev in scan.missing {
                if !since(&ev.event_id)? {
                    missing.push(ev);
                }
            }
            if scan.done {
                return Ok((missing, true));
            }
            from = resp.end;
        }
        Ok((missing, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_horizon_is_the_first_start_within_retention() {
        struct Case {
            name: &'static str,
            first_start_ms: i64,
            now_ms: i64,
            retention_days: u32,
            want: i64,
        }
        let now = 100 * DAY_MS;
        let cases = [
            Case {
                name: "a young hive reads back to its first start",
                first_start_ms: now - DAY_MS,
                now_ms: now,
                retention_days: 30,
                want: now - DAY_MS,
            },
            Case {
                name: "an old hive reads back a day less than it keeps",
                first_start_ms: 0,
                now_ms: now,
                retention_days: 30,
                want: now - 29 * DAY_MS,
            },
            Case {
                name: "one day of retention: nothing before now",
                first_start_ms: 0,
                now_ms: now,
                retention_days: 1,
                want: now,
            },
            Case {
                name: "zero days saturates like one",
                first_start_ms: 0,
                now_ms: now,
                retention_days: 0,
                want: now,
            },
            Case {
                name: "a first start in the future (clock moved back) stands",
                first_start_ms: now + 5,
                now_ms: now,
                retention_days: 30,
                want: now + 5,
            },
        ];
        for c in cases {
            assert_eq!(
                horizon_ms(c.first_start_ms, c.now_ms, c.retention_days),
                c.want,
                "{}",
                c.name
            );
        }
    }

    fn raw(id: &str, ts: i64) -> Raw<ruma::events::AnyTimelineEvent> {
        let v = json!({
            "type": "m.room.message", "event_id": id, "room_id": "!r:hs",
            "sender": "@op:hs", "origin_server_ts": ts, "content": { "body": id },
        });
        Raw::from_json(serde_json::value::to_raw_value(&v).unwrap())
    }

    fn junk() -> Raw<ruma::events::AnyTimelineEvent> {
        Raw::from_json(serde_json::value::to_raw_value(&json!({ "type": "x" })).unwrap())
    }

    #[test]
    fn a_page_is_missing_up_to_known_history() {
        struct Case {
            name: &'static str,
            chunk: Vec<Raw<ruma::events::AnyTimelineEvent>>,
            more: bool,
            seen: &'static [&'static str],
            want_missing: &'static [&'static str],
            want_done: bool,
        }
        let cases = [
            Case {
                name: "all new, more to read",
                chunk: vec![raw("$3", 30), raw("$2", 20)],
                more: true,
                seen: &[],
                want_missing: &["$3", "$2"],
                want_done: false,
            },
            Case {
                name: "all new, the room's start",
                chunk: vec![raw("$3", 30), raw("$2", 20)],
                more: false,
                seen: &[],
                want_missing: &["$3", "$2"],
                want_done: true,
            },
            Case {
                name: "stops at a seen event",
                chunk: vec![raw("$3", 30), raw("$2", 20), raw("$1", 15)],
                more: true,
                seen: &["$2"],
                want_missing: &["$3"],
                want_done: true,
            },
            Case {
                name: "stops at the horizon",
                chunk: vec![raw("$3", 30), raw("$old", 9), raw("$1", 30)],
                more: true,
                seen: &[],
                want_missing: &["$3"],
                want_done: true,
            },
            Case {
                name: "the horizon itself is in",
                chunk: vec![raw("$h", 10)],
                more: true,
                seen: &[],
                want_missing: &["$h"],
                want_done: false,
            },
            Case {
                name: "events the core does not route are passed over",
                chunk: vec![junk(), raw("$2", 20), junk()],
                more: true,
                seen: &[],
                want_missing: &["$2"],
                want_done: false,
            },
            Case {
                name: "an empty last page",
                chunk: vec![],
                more: false,
                seen: &[],
                want_missing: &[],
                want_done: true,
            },
            Case {
                name: "the newest is seen: nothing missing",
                chunk: vec![raw("$3", 30)],
                more: true,
                seen: &["$3"],
                want_missing: &[],
                want_done: true,
            },
        ];
        for c in cases {
            let scan = scan_page(&c.chunk, c.more, 10, |id| {
                Ok::<_, std::convert::Infallible>(c.seen.contains(&id))
            })
            .unwrap();
            let ids: Vec<&str> = scan.missing.iter().map(|e| e.event_id.as_str()).collect();
            assert_eq!(ids, c.want_missing, "{}", c.name);
            assert_eq!(scan.done, c.want_done, "{}", c.name);
        }
    }

    #[test]
    fn a_failing_lookup_is_an_error() {
        let r = scan_page(&[raw("$1", 20)], true, 10, |_| Err("store down"));
        assert_eq!(r.err(), Some("store down"));
    }
}
