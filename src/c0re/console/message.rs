//! The status message itself: posted once, pinned, then edited in place (`m.replace`, the new
//! text in `m.new_content`). Its room, event id and text are kept in the store: a restarted core
//! reads them back, checks the message is still there (not redacted, readable) and pinned, and
//! edits it; only a message that is gone, or in a room that is no longer `#hive-c0re`, is posted
//! again (and pinned in place of the old one).

use anyhow::Context;
use ruma::api::client::{room::get_room_event, state};
use ruma::events::StateEventType;
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::pace::{self, EditStep};
use crate::c0re::Core;
use crate::c0re::rooms::RoomKey;
use crate::matrix::markdown;
use crate::store::StatusRecord;

/// What the console task knows of the status message in this run.
#[derive(Default)]
pub(super) struct StatusBook {
    /// The message as recorded (read from the store on the first pass).
    record: Option<StatusRecord>,
    /// Whether this run checked the recorded message (still there, pinned).
    checked: bool,
    /// The text last sent and when, in this run.
    last: Option<(String, Instant)>,
    /// A recorded message found gone in `#hive-c0re`: unpinned when the new one is pinned.
    replaced: Option<String>,
    /// A post this run made whose record failed to write: the next edit records it as a
    /// post (counting it, so the next post takes a new txn id).
    post_unrecorded: bool,
}

impl StatusBook {
    /// The recorded message was redacted (one of `redacted`): forgotten, so the next pass
    /// checks it again (read back redacted: a new one is posted and pinned in its place).
    pub(super) fn forget_if_redacted(&mut self, redacted: &std::collections::HashSet<String>) {
        let hit = self
            .record
            .as_ref()
            .is_some_and(|r| redacted.contains(&r.event_id));
        if hit {
            *self = StatusBook::default();
        }
    }
}

/// The content of the status message showing `text` (a notice that mentions nobody).
pub fn content(text: &str) -> Value {
    let mut c = json!({ "msgtype": "m.notice", "body": text, "m.mentions": {} });
    if let Some(html) = markdown::to_html(text) {
        c["format"] = json!("org.matrix.custom.html");
        c["formatted_body"] = json!(html);
    }
    c
}

/// The content of an edit of `original` to `text`: the new content in `m.new_content`, a
/// fallback (`* …`) for clients that do not know edits.
pub fn edit_content(original: &str, text: &str) -> Value {
    let new = content(text);
    let mut c = new.clone();
    c["body"] = json!(format!("* {text}"));
    if let Some(html) = new.get("formatted_body").and_then(Value::as_str) {
        c["formatted_body"] = json!(format!("* {html}"));
    }
    c["m.new_content"] = new;
    c["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": original });
    c
}

/// The pinned list with `ours` first, `old` (a status message replaced) taken out, the rest
/// kept in order. `None` when nothing changes.
pub fn pinned_with(pinned: &[String], ours: &str, old: Option<&str>) -> Option<Vec<String>> {
    let rest: Vec<String> = pinned
        .iter()
        .filter(|p| p.as_str() != ours && Some(p.as_str()) != old)
        .cloned()
        .collect();
    let mut want = vec![ours.to_owned()];
    want.extend(rest);
    (want != pinned).then_some(want)
}

/// Whether an event read back from the homeserver is gone: redacted, or not a message.
pub fn is_gone(event: &Value) -> bool {
    let redacted = event
        .pointer("/unsigned/redacted_because")
        .is_some_and(|v| !v.is_null());
    let body = event.pointer("/content/body").and_then(Value::as_str);
    redacted || body.is_none()
}

/// Whether a failed read-back of the recorded message means it is gone (post a new one): only
/// the homeserver saying `M_NOT_FOUND`. Any other error (a 401/403 while Synapse restarts, a
/// 5xx, no answer) is retried: posting again on it would orphan the pinned message.
pub fn gone_on_error(errcode: Option<&str>) -> bool {
    errcode == Some("M_NOT_FOUND")
}

/// The transaction id of the status message's post number `posts` (counted in the store):
/// the same until that post is recorded, so a post sent again after a lost answer is
/// deduplicated by the homeserver instead of posting a second message.
pub fn post_txn(posts: u64) -> String {
    format!("hh-status-post-{posts}")
}

impl Core {
    /// Sends `text` as the status message if [`pace::edit_step`] says so now; `Some(at)`: it
    /// is due at `at`.
    pub(super) async fn show_status(
        &self,
        book: &mut StatusBook,
        text: &str,
        now: Instant,
    ) -> anyhow::Result<Option<Instant>> {
        let room = self
            .rooms()
            .get(&RoomKey::Control)
            .context("#hive-c0re is not set up yet")?;
        if !book.checked {
            self.check_recorded(book, &room).await?;
        }
        let last = book.last.as_ref().map(|(t, at)| (t.as_str(), *at));
        match pace::edit_step(last, text, now) {
            EditStep::Nothing => return Ok(None),
            EditStep::At(at) => return Ok(Some(at)),
            EditStep::Now => {}
        }
        let old = book.record.take();
        let rec = match old.as_ref() {
            Some(rec) => {
                let txn = format!("hh-status-{}", crate::c0re::registration::random_secret(12));
                let body = edit_content(&rec.event_id, text);
                self.send_raw(&room, None, &txn, &body)
                    .await
                    .context("cannot edit the status message")
                    .inspect_err(|_| book.record = old.clone())?;
                StatusRecord {
                    text: text.to_owned(),
                    ..rec.clone()
                }
            }
            None => {
                let txn = post_txn(self.store().status_posts()?);
                let id = self
                    .send_raw(&room, None, &txn, &content(text))
                    .await
                    .context("cannot post the status message")?;
                StatusRecord {
                    room_id: room.to_string(),
                    event_id: id.to_string(),
                    text: text.to_owned(),
                }
            }
        };
        tracing::debug!(event_id = %rec.event_id, edit = old.is_some(), "{}", super::LOG_STATUS_SENT);
        book.record = Some(rec.clone());
        book.last = Some((text.to_owned(), now));
        if old.is_some() {
            if book.post_unrecorded {
                self.store().record_status_post(&rec)?;
                book.post_unrecorded = false;
            } else {
                self.store().set_status_record(&rec)?;
            }
            return Ok(None);
        }
        // A new message is pinned before its record is written: a failed write then leaves a
        // pinned message this run edits (`book.record`), and the next post (same txn id, the
        // count not bumped) is deduplicated to it. A failed pin is retried at the next start.
        let replaced = book.replaced.take();
        match EventId::parse(&rec.event_id) {
            Ok(ours) => {
                if let Err(e) = self.pin(&room, &ours, replaced.as_deref()).await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot pin the status message");
                }
            }
            Err(e) => {
                tracing::warn!(event_id = %rec.event_id, error = %e, "cannot pin the status message")
            }
        }
        self.store()
            .record_status_post(&rec)
            .inspect_err(|_| book.post_unrecorded = true)?;
        Ok(None)
    }

    /// The first pass of a run: the recorded message is kept if it is still there in
    /// `#hive-c0re` (and pinned again if someone unpinned it); otherwise it is forgotten and a
    /// new one will be posted, pinned in its place.
    async fn check_recorded(
        &self,
        book: &mut StatusBook,
        room: &OwnedRoomId,
    ) -> anyhow::Result<()> {
        let rec = self.store().status_record()?;
        let Some(rec) = rec else {
            book.checked = true;
            return Ok(());
        };
        let event = EventId::parse(&rec.event_id)
            .with_context(|| format!("the recorded status message {:?}", rec.event_id))?;
        let alive = if rec.room_id == room.as_str() {
            let req = get_room_event::v3::Request::new(room.clone(), event.clone());
            match self.client().send(req, None).await {
                Ok(resp) => {
                    let v: Value = serde_json::from_str(resp.event.json().get())?;
                    !is_gone(&v)
                }
                // Gone for good: post a new one. Anything else is retried.
                Err(e) if gone_on_error(e.errcode()) => false,
                Err(e) => return Err(e).context("cannot read the status message back"),
            }
        } else {
            false
        };
        if alive {
            // A failed pin (the bot lost the power to pin) must not stop the edits.
            if let Err(e) = self.pin(room, &event, None).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot pin the status message");
            }
            // The text it shows: an edit is made only when the hive's differs. A clock younger
            // than the gap cannot go back that far: the edit then waits out the gap.
            let now = Instant::now();
            let sent = now.checked_sub(pace::EDIT_GAP).unwrap_or(now);
            book.last = Some((rec.text.clone(), sent));
            book.record = Some(rec);
        } else {
            tracing::info!(event_id = %rec.event_id, "the status message is gone; posting a new one");
            book.replaced = (rec.room_id == room.as_str()).then_some(rec.event_id);
        }
        book.checked = true;
        Ok(())
    }

    /// Pins `ours` first in `room`'s `m.room.pinned_events`, taking out `old`.
    async fn pin(
        &self,
        room: &RoomId,
        ours: &OwnedEventId,
        old: Option<&str>,
    ) -> anyhow::Result<()> {
        let req = state::get_state_event_for_key::v3::Request::new(
            room.to_owned(),
            StateEventType::RoomPinnedEvents,
            String::new(),
        );
        let pinned: Vec<String> = match self.client().send(req, None).await {
            Ok(resp) => {
                let v: Value = serde_json::from_str(resp.event_or_content.get())?;
                let list = v.get("content").unwrap_or(&v).get("pinned");
                list.and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Err(e) if e.errcode() == Some("M_NOT_FOUND") => Vec::new(),
            Err(e) => return Err(e).context("cannot read the pinned events"),
        };
        let Some(want) = pinned_with(&pinned, ours.as_str(), old) else {
            return Ok(());
        };
        let req = state::send_state_event::v3::Request::new_raw(
            room.to_owned(),
            StateEventType::RoomPinnedEvents,
            String::new(),
            Raw::from_json(serde_json::value::to_raw_value(&json!({ "pinned": want }))?),
        );
        self.client()
            .send(req, None)
            .await
            .context("cannot pin the status message")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_replaces_the_original() {
        let c = edit_content("$orig", "**a**");
        assert_eq!(c["m.relates_to"]["rel_type"], "m.replace");
        assert_eq!(c["m.relates_to"]["event_id"], "$orig");
        assert_eq!(c["m.new_content"]["body"], "**a**");
        assert_eq!(
            c["m.new_content"]["formatted_body"],
            "<p><strong>a</strong></p>"
        );
        assert_eq!(c["m.new_content"]["msgtype"], "m.notice");
        assert_eq!(c["body"], "* **a**");
        assert!(
            c["m.new_content"].get("m.relates_to").is_none(),
            "the new content is a plain message"
        );
    }

    #[test]
    fn pinning_the_status_message() {
        struct Case {
            name: &'static str,
            pinned: &'static [&'static str],
            old: Option<&'static str>,
            want: Option<&'static [&'static str]>,
        }
        let cases = [
            Case {
                name: "nothing pinned yet",
                pinned: &[],
                old: None,
                want: Some(&["$s"]),
            },
            Case {
                name: "already first: nothing to do",
                pinned: &["$s", "$x"],
                old: None,
                want: None,
            },
            Case {
                name: "others' pins are kept, ours goes first",
                pinned: &["$x", "$s", "$y"],
                old: None,
                want: Some(&["$s", "$x", "$y"]),
            },
            Case {
                name: "a replaced status message is unpinned",
                pinned: &["$old", "$x"],
                old: Some("$old"),
                want: Some(&["$s", "$x"]),
            },
        ];
        for c in cases {
            let pinned: Vec<String> = c.pinned.iter().map(|s| s.to_string()).collect();
            let want = c
                .want
                .map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(pinned_with(&pinned, "$s", c.old), want, "{}", c.name);
        }
    }

    #[test]
    fn a_failed_read_back() {
        struct Case {
            name: &'static str,
            errcode: Option<&'static str>,
            gone: bool,
        }
        let cases = [
            Case {
                name: "not found: gone, post a new one",
                errcode: Some("M_NOT_FOUND"),
                gone: true,
            },
            Case {
                name: "forbidden (a restart, a lost membership): retried",
                errcode: Some("M_FORBIDDEN"),
                gone: false,
            },
            Case {
                name: "unknown token during a restart: retried",
                errcode: Some("M_UNKNOWN_TOKEN"),
                gone: false,
            },
            Case {
                name: "no answer, or a 5xx without errcode: retried",
                errcode: None,
                gone: false,
            },
        ];
        for c in cases {
            assert_eq!(gone_on_error(c.errcode), c.gone, "{}", c.name);
        }
    }

    #[test]
    fn a_post_keeps_its_txn_id_until_recorded() {
        assert_eq!(post_txn(0), post_txn(0), "the same post, sent again");
        assert_ne!(post_txn(0), post_txn(1), "the next post is a new one");
    }

    #[test]
    fn a_message_read_back() {
        struct Case {
            name: &'static str,
            event: Value,
            gone: bool,
        }
        let cases = [
            Case {
                name: "a message",
                event: json!({ "content": { "body": "x", "msgtype": "m.notice" }, "unsigned": {} }),
                gone: false,
            },
            Case {
                name: "redacted: its content emptied",
                event: json!({ "content": {}, "unsigned": { "redacted_because": { "type": "m.room.redaction" } } }),
                gone: true,
            },
            Case {
                name: "no body",
                event: json!({ "content": {} }),
                gone: true,
            },
        ];
        for c in cases {
            assert_eq!(is_gone(&c.event), c.gone, "{}", c.name);
        }
    }
}
