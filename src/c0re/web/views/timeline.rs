//! Each agent room's recent messages, for the agent page's `timeline` pane: a small cache per
//! room, read once from the homeserver (`/messages` backwards, the newest [`KEEP`], as the
//! hive's bot user) when the room's page is first opened, then kept up to date by the
//! transaction path ([`Core::accept`] calls [`Timelines::record`] for every event of an agent
//! room). A re-render (the live stream re-renders at each change of the hive) reads the cache
//! and never calls the homeserver: the homeserver pushes every event of these rooms to the
//! appservice anyway, and reconciliation feeds what it missed through the same path.
//!
//! What is kept (the rules of [`message_of`] and [`merge`]):
//! - only `m.room.message` events with a text body, edits (`m.replace`) left out;
//! - an `m.room.redaction` takes the event it redacts out (and wakes the stream: [`Change`]);
//! - at most one copy of an event (a transaction re-sent, a reconciled event, the first read
//!   overlapping what was pushed meanwhile);
//! - in the homeserver's order of `origin_server_ts` (ties keep arrival order), the newest
//!   [`KEEP`].
//!
//! The text is stored as the homeserver sent it; the secret filter is applied when a page reads
//! it (`read.rs`), as for everything else the console shows.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::OwnedRoomId;
use ruma::UInt;
use ruma::api::Direction;
use ruma::api::client::message::get_message_events;

use crate::c0re::Core;
use crate::c0re::routing::TimelineEvent;

/// Messages kept per room (and read at first).
pub const KEEP: usize = 50;

/// One message of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub event_id: String,
    pub sender: String,
    pub body: String,
    /// `origin_server_ts` (ms since the epoch).
    pub ts_ms: i64,
    /// `m.notice` (the core's and bots' notices) rather than `m.text`.
    pub notice: bool,
}

/// What a page reads of one room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomMessages {
    /// Oldest first.
    pub msgs: Vec<Msg>,
    /// Whether the room's history was read from the homeserver; if not, only what arrived
    /// since the core started is here.
    pub loaded: bool,
}

/// The cache: room id → its recent messages.
#[derive(Default)]
pub struct Timelines {
    rooms: Mutex<HashMap<String, Entry>>,
}

#[derive(Default)]
struct Entry {
    room: RoomMessages,
    /// When a read of its history in the background was last begun (µs).
    tried_us: Option<i64>,
}

/// How long after a background read of a room's history another may begin.
pub const RETRY_US: i64 = 30_000_000;

/// Whether a room's history is read in the background now: not read yet, and no read begun in
/// the last [`RETRY_US`] (a homeserver that is down is not asked at every re-render).
pub fn should_read(loaded: bool, tried_us: Option<i64>, now_us: i64) -> bool {
    !loaded && tried_us.is_none_or(|t| now_us - t >= RETRY_US)
}

/// The message `ev` is, if the timeline shows it (module doc).
pub fn message_of(ev: &TimelineEvent) -> Option<Msg> {
    if ev.kind != "m.room.message" {
        return None;
    }
    let edit = ev
        .content
        .pointer("/m.relates_to/rel_type")
        .and_then(|v| v.as_str())
        == Some("m.replace");
    if edit {
        return None;
    }
    Some(Msg {
        event_id: ev.event_id.clone(),
        sender: ev.sender.to_string(),
        body: ev.body()?.to_owned(),
        ts_ms: ev.origin_server_ts,
        notice: ev.content.get("msgtype").and_then(|v| v.as_str()) == Some("m.notice"),
    })
}

/// What an event of an agent room does to its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message to show.
    Add(Msg),
    /// A redaction: the event (by id) no longer shows.
    Redact(String),
}

/// What `ev` does to its room's timeline, if anything (module doc).
pub fn change_of(ev: &TimelineEvent) -> Option<Change> {
    if let Some(target) = crate::c0re::console::redaction_target(ev) {
        return Some(Change::Redact(target.to_owned()));
    }
    message_of(ev).map(Change::Add)
}

/// `msgs` with `change` done; whether it changed anything (a redaction of an event not kept
/// changes nothing).
pub fn apply(msgs: &mut Vec<Msg>, change: Change, keep: usize) -> bool {
    match change {
        Change::Add(m) => {
            *msgs = merge(std::mem::take(msgs), [m], keep);
            true
        }
        Change::Redact(id) => {
            let before = msgs.len();
            msgs.retain(|m| m.event_id != id);
            msgs.len() != before
        }
    }
}

/// `old` with `new` added: one copy of each event, in `ts_ms` order (ties keep arrival order),
/// the newest `keep`.
pub fn merge(old: Vec<Msg>, new: impl IntoIterator<Item = Msg>, keep: usize) -> Vec<Msg> {
    let mut all = old;
    for m in new {
        if !all.iter().any(|o| o.event_id == m.event_id) {
            all.push(m);
        }
    }
    all.sort_by_key(|m| m.ts_ms);
    let extra = all.len().saturating_sub(keep);
    all.drain(..extra);
    all
}

impl Timelines {
    /// Adds `ev` to its room's messages if it is one, or takes out the one it redacts
    /// ([`change_of`], [`apply`]). Whether the room's messages changed.
    pub fn record(&self, ev: &TimelineEvent) -> bool {
        let Some(change) = change_of(ev) else {
            return false;
        };
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = &mut rooms.entry(ev.room_id.clone()).or_default().room;
        apply(&mut room.msgs, change, KEEP)
    }

    /// Whether to read `room`'s history in the background now ([`should_read`]); if so, the
    /// attempt is recorded.
    pub fn claim_read(&self, room: &str, now_us: i64) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let e = rooms.entry(room.to_owned()).or_default();
        if !should_read(e.room.loaded, e.tried_us, now_us) {
            return false;
        }
        e.tried_us = Some(now_us);
        true
    }

    /// Whether `room`'s history was read already.
    pub fn is_loaded(&self, room: &str) -> bool {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .is_some_and(|e| e.room.loaded)
    }

    /// `room`'s history, as read from the homeserver: merged with what arrived meanwhile.
    pub(super) fn loaded(&self, room: &str, msgs: Vec<Msg>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let r = &mut rooms.entry(room.to_owned()).or_default().room;
        r.msgs = merge(std::mem::take(&mut r.msgs), msgs, KEEP);
        r.loaded = true;
    }

    /// What is known of `room` now.
    pub fn messages(&self, room: &str) -> RoomMessages {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .map(|e| e.room.clone())
            .unwrap_or_default()
    }
}

impl Core {
    /// Reads `room`'s newest [`KEEP`] events from the homeserver (as the hive's bot user) into
    /// the cache, unless that was done already. Events that do not parse are skipped and
    /// counted in the log.
    pub async fn load_timeline(&self, room: &OwnedRoomId) -> anyhow::Result<()> {
        if self.views().timelines().is_loaded(room.as_str()) {
            return Ok(());
        }
        let mut req = get_message_events::v3::Request::new(room.clone(), Direction::Backward);
        req.limit = UInt::from(u32::try_from(KEEP).expect("KEEP is small"));
        let resp = self.client().send(req, None).await?;
        let mut bad = 0usize;
        let msgs: Vec<Msg> = resp
            .chunk
            .iter()
            .filter_map(
                |raw| match raw.deserialize_as_unchecked::<TimelineEvent>() {
                    Ok(ev) => message_of(&ev),
                    Err(_) => {
                        bad += 1;
                        None
                    }
                },
            )
            .collect();
        if bad > 0 {
            tracing::warn!(room = %room, skipped = bad, "events of the room's timeline that do not parse are not shown");
        }
        self.views().timelines().loaded(room.as_str(), msgs);
        Ok(())
    }

    /// Reads `room`'s history in a task of its own if it is time to ([`Timelines::claim_read`]),
    /// and wakes the live stream when it is in (a page whose stream connected to a core that
    /// never read the room: one started since the page was opened). Called from a blocking
    /// thread of the runtime; outside one, nothing is read.
    pub fn read_history_later(&self, room: OwnedRoomId) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self
            .views()
            .timelines()
            .claim_read(room.as_str(), crate::store::now_us())
        {
            return;
        }
        let core = self.clone();
        rt.spawn(async move {
            match core.load_timeline(&room).await {
                Ok(()) => core.console().web_changed(),
                Err(e) => {
                    tracing::warn!(room = %room, error = %format!("{e:#}"), "cannot read the agent room's history; trying again later");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(id: &str, ts: i64) -> Msg {
        Msg {
            event_id: id.into(),
            sender: "@op:hs".into(),
            body: id.into(),
            ts_ms: ts,
            notice: false,
        }
    }

    fn ids(v: &[Msg]) -> Vec<&str> {
        v.iter().map(|m| m.event_id.as_str()).collect()
    }

    #[test]
    fn what_the_timeline_keeps() {
        struct Case {
            name: &'static str,
            old: Vec<Msg>,
            new: Vec<Msg>,
            keep: usize,
            want: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "a new message goes last",
                old: vec![msg("$a", 1)],
                new: vec![msg("$b", 2)],
                keep: 10,
                want: vec!["$a", "$b"],
            },
            Case {
                name: "an event seen twice is kept once",
                old: vec![msg("$a", 1), msg("$b", 2)],
                new: vec![msg("$a", 1)],
                keep: 10,
                want: vec!["$a", "$b"],
            },
            Case {
                name: "the first read, older than what was pushed meanwhile, goes before it",
                old: vec![msg("$pushed", 9)],
                new: vec![msg("$x", 3), msg("$y", 4), msg("$pushed", 9)],
                keep: 10,
                want: vec!["$x", "$y", "$pushed"],
            },
            Case {
                name: "ties keep arrival order",
                old: vec![msg("$a", 5)],
                new: vec![msg("$b", 5)],
                keep: 10,
                want: vec!["$a", "$b"],
            },
            Case {
                name: "only the newest are kept",
                old: vec![msg("$a", 1), msg("$b", 2)],
                new: vec![msg("$c", 3)],
                keep: 2,
                want: vec!["$b", "$c"],
            },
        ];
        for c in cases {
            let got = merge(c.old, c.new, c.keep);
            assert_eq!(ids(&got), c.want, "{}", c.name);
        }
    }

    #[test]
    fn when_a_history_is_read_in_the_background() {
        struct Case {
            name: &'static str,
            loaded: bool,
            tried_us: Option<i64>,
            want: bool,
        }
        let now = 100_000_000;
        let cases = [
            Case {
                name: "never read, never tried",
                loaded: false,
                tried_us: None,
                want: true,
            },
            Case {
                name: "read already",
                loaded: true,
                tried_us: None,
                want: false,
            },
            Case {
                name: "a read begun a moment ago",
                loaded: false,
                tried_us: Some(now - 1_000_000),
                want: false,
            },
            Case {
                name: "a read that failed long enough ago",
                loaded: false,
                tried_us: Some(now - RETRY_US),
                want: true,
            },
        ];
        for c in cases {
            assert_eq!(should_read(c.loaded, c.tried_us, now), c.want, "{}", c.name);
        }
        let t = Timelines::default();
        assert!(t.claim_read("!r:hs", now), "the first claim");
        assert!(!t.claim_read("!r:hs", now + 1), "not again at once");
        assert!(t.claim_read("!r:hs", now + RETRY_US), "after the retry gap");
    }

    #[test]
    fn which_events_are_messages() {
        let ev = |kind: &str, content: serde_json::Value| {
            serde_json::from_value::<TimelineEvent>(json!({
                "event_id": "$e", "room_id": "!r:hs", "type": kind, "sender": "@op:hs",
                "origin_server_ts": 7, "content": content,
            }))
            .expect("an event")
        };
        struct Case {
            name: &'static str,
            ev: TimelineEvent,
            want: Option<(&'static str, bool)>,
        }
        let cases = [
            Case {
                name: "a text message",
                ev: ev("m.room.message", json!({"msgtype": "m.text", "body": "hi"})),
                want: Some(("hi", false)),
            },
            Case {
                name: "a notice",
                ev: ev(
                    "m.room.message",
                    json!({"msgtype": "m.notice", "body": "n"}),
                ),
                want: Some(("n", true)),
            },
            Case {
                name: "an edit is left out",
                ev: ev(
                    "m.room.message",
                    json!({"body": "* hi", "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}),
                ),
                want: None,
            },
            Case {
                name: "a reaction is no message",
                ev: ev("m.reaction", json!({"m.relates_to": {"key": "✅"}})),
                want: None,
            },
            Case {
                name: "a message without a body",
                ev: ev("m.room.message", json!({"msgtype": "m.text"})),
                want: None,
            },
        ];
        for c in cases {
            let got = message_of(&c.ev);
            assert_eq!(
                got.as_ref().map(|m| (m.body.as_str(), m.notice)),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn what_an_event_does_to_the_timeline() {
        let ev =
            |v: serde_json::Value| serde_json::from_value::<TimelineEvent>(v).expect("an event");
        struct Case {
            name: &'static str,
            ev: TimelineEvent,
            want: Option<Change>,
        }
        let cases = [
            Case {
                name: "a message is added",
                ev: ev(json!({
                    "event_id": "$m", "room_id": "!r:hs", "type": "m.room.message",
                    "sender": "@op:hs", "origin_server_ts": 7,
                    "content": {"msgtype": "m.text", "body": "hi"},
                })),
                want: Some(Change::Add(Msg {
                    event_id: "$m".into(),
                    sender: "@op:hs".into(),
                    body: "hi".into(),
                    ts_ms: 7,
                    notice: false,
                })),
            },
            Case {
                name: "a redaction (room version 11: in its content)",
                ev: ev(json!({
                    "event_id": "$x", "room_id": "!r:hs", "type": "m.room.redaction",
                    "sender": "@op:hs", "origin_server_ts": 8, "content": {"redacts": "$m"},
                })),
                want: Some(Change::Redact("$m".into())),
            },
            Case {
                name: "a redaction (earlier versions: at its top level)",
                ev: ev(json!({
                    "event_id": "$x", "room_id": "!r:hs", "type": "m.room.redaction",
                    "sender": "@op:hs", "origin_server_ts": 8, "redacts": "$m", "content": {},
                })),
                want: Some(Change::Redact("$m".into())),
            },
            Case {
                name: "a reaction does nothing",
                ev: ev(json!({
                    "event_id": "$r", "room_id": "!r:hs", "type": "m.reaction",
                    "sender": "@op:hs", "origin_server_ts": 9,
                    "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$m", "key": "✅"}},
                })),
                want: None,
            },
        ];
        for c in cases {
            assert_eq!(change_of(&c.ev), c.want, "{}", c.name);
        }
    }

    #[test]
    fn a_redaction_takes_its_message_out() {
        let mut msgs = vec![msg("$a", 1), msg("$b", 2), msg("$c", 3)];
        assert!(apply(&mut msgs, Change::Redact("$b".into()), KEEP));
        assert_eq!(ids(&msgs), vec!["$a", "$c"]);
        assert!(
            !apply(&mut msgs, Change::Redact("$gone".into()), KEEP),
            "a redaction of an event not kept changes nothing"
        );
        assert_eq!(ids(&msgs), vec!["$a", "$c"]);
        // Through the cache, as the transaction path records it.
        let t = Timelines::default();
        t.loaded("!r:hs", vec![msg("$a", 1), msg("$b", 2)]);
        let redaction = serde_json::from_value::<TimelineEvent>(json!({
            "event_id": "$x", "room_id": "!r:hs", "type": "m.room.redaction",
            "sender": "@op:hs", "origin_server_ts": 8, "content": {"redacts": "$a"},
        }))
        .expect("an event");
        assert!(t.record(&redaction), "the room's messages changed");
        assert_eq!(ids(&t.messages("!r:hs").msgs), vec!["$b"]);
    }

    #[test]
    fn recorded_messages_are_found_by_room() {
        let t = Timelines::default();
        let ev = serde_json::from_value::<TimelineEvent>(json!({
            "event_id": "$e", "room_id": "!r:hs", "type": "m.room.message", "sender": "@op:hs",
            "origin_server_ts": 7, "content": {"msgtype": "m.text", "body": "hello"},
        }))
        .expect("an event");
        assert!(t.record(&ev));
        assert!(t.record(&ev), "a message again is still one (kept once)");
        let got = t.messages("!r:hs");
        assert_eq!(ids(&got.msgs), vec!["$e"]);
        assert!(!got.loaded, "its history was not read");
        assert!(t.messages("!other:hs").msgs.is_empty());
        t.loaded("!r:hs", vec![msg("$old", 1)]);
        let got = t.messages("!r:hs");
        assert!(got.loaded && t.is_loaded("!r:hs"));
        assert_eq!(ids(&got.msgs), vec!["$old", "$e"]);
    }
}
