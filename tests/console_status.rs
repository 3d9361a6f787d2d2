//! The live status message and presence, end to end on a real Synapse with a matrix-sdk
//! operator: the core posts one status message in `#hive-c0re`, pins it, and edits it in place
//! (`m.replace` of the same original) as echo's state changes; a burst of 20 messages makes far
//! fewer edits; after a core restart the same message is edited (no second one); redacted while
//! the core runs, a new one is posted and pinned in its place. echo's presence
//! as the operator sees it: online, unavailable while its slow command brain thinks (status
//! "running a turn"), online again, offline when the core stops.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestHive;
use matrix_sdk::Room;
use matrix_sdk::ruma::api::client::state::get_state_event_for_key;
use matrix_sdk::ruma::events::StateEventType;
use matrix_sdk::ruma::events::presence::PresenceEvent;
use matrix_sdk::ruma::events::room::message::{OriginalSyncRoomMessageEvent, Relation};
use matrix_sdk::ruma::presence::PresenceState;

const WAIT: Duration = Duration::from_secs(60);
const HEADER: &str = "**🐝 Hive status**";

/// echo's brain: eight seconds for a message that says `slow` (longer than the 5 s between two
/// edits, so that one edit shows the turn), half a second for `burst …` (a burst of 20 keeps its
/// queue changing for 10 s), at once otherwise.
const ECHO: &str = r#"[brain]
kind = "command"
command = ["sh", "-c", '''in=$(cat); case "$in" in *slow*) sleep 8;; *burst*) sleep 0.5;; esac; echo '{"reply":"done"}' ''']
"#;

/// A message the core posted in `#hive-c0re`: the status message or an edit of it.
#[derive(Debug, Clone)]
struct Status {
    event_id: String,
    /// The original this edits (`m.replace`); `None`: an original.
    edits: Option<String>,
    /// The text it shows (an edit's `m.new_content`).
    text: String,
}

/// What the operator saw: the status messages and echo's presence changes, in order.
struct Watch {
    /// The test hive's directory: its logs are printed when a wait times out.
    dir: std::path::PathBuf,
    statuses: Mutex<Vec<Status>>,
    presence: Mutex<Vec<(PresenceState, Option<String>)>>,
}

impl Watch {
    fn originals(&self) -> Vec<Status> {
        let s = self.statuses.lock().unwrap();
        s.iter().filter(|s| s.edits.is_none()).cloned().collect()
    }

    fn edits(&self) -> Vec<Status> {
        let s = self.statuses.lock().unwrap();
        s.iter().filter(|s| s.edits.is_some()).cloned().collect()
    }

    /// The text the status message shows now (its latest edit, else the original).
    fn latest(&self) -> Option<String> {
        self.statuses.lock().unwrap().last().map(|s| s.text.clone())
    }

    async fn until(&self, what: &str, pred: impl Fn(&Watch) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !pred(self) {
            assert!(
                Instant::now() < deadline,
                "never saw {what}; statuses {:#?}; presence {:?}\n{}",
                self.statuses.lock().unwrap(),
                self.presence.lock().unwrap(),
                common::logs_tail(&self.dir)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether echo's presence went through `states` in this order (others between allowed).
    fn went_through(&self, states: &[PresenceState]) -> bool {
        let seen = self.presence.lock().unwrap();
        let mut want = states.iter().peekable();
        for (p, _) in seen.iter() {
            if want.peek().is_some_and(|w| *w == p) {
                want.next();
            }
        }
        want.peek().is_none()
    }
}

/// Records the core's status messages (only they start with [`HEADER`]) and echo's presence;
/// registered before the operator joins, so that what the join's sync brings is seen too.
fn watch(hive: &TestHive, op: &common::Operator, echo: String) -> Arc<Watch> {
    let bot = format!("@{}:{}", hive.cfg.sender_localpart, hive.cfg.server_name);
    let w = Arc::new(Watch {
        dir: hive.dir.path().to_owned(),
        statuses: Mutex::default(),
        presence: Mutex::default(),
    });
    let w1 = w.clone();
    op.client
        .add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
            let (w, bot) = (w1.clone(), bot.clone());
            async move {
                if ev.sender.as_str() != bot {
                    return;
                }
                let (edits, text) = match &ev.content.relates_to {
                    Some(Relation::Replacement(r)) => (
                        Some(r.event_id.to_string()),
                        r.new_content.msgtype.body().to_owned(),
                    ),
                    _ => (None, ev.content.body().to_owned()),
                };
                if !text.starts_with(HEADER) {
                    return;
                }
                w.statuses.lock().unwrap().push(Status {
                    event_id: ev.event_id.to_string(),
                    edits,
                    text,
                });
            }
        });
    let w2 = w.clone();
    op.client.add_event_handler(move |ev: PresenceEvent| {
        let (w, echo) = (w2.clone(), echo.clone());
        async move {
            if ev.sender.as_str() == echo {
                w.presence
                    .lock()
                    .unwrap()
                    .push((ev.content.presence, ev.content.status_msg));
            }
        }
    });
    w
}

/// The pinned events of `room`.
async fn pinned(op: &common::Operator, room: &Room) -> Vec<String> {
    let req = get_state_event_for_key::v3::Request::new(
        room.room_id().to_owned(),
        StateEventType::RoomPinnedEvents,
        String::new(),
    );
    let resp = op.client.send(req).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(resp.event_or_content.get()).unwrap();
    let v = v.get("content").cloned().unwrap_or(v);
    v["pinned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

/// The line of `agent` in a status text.
fn line<'a>(text: &'a str, agent: &str) -> &'a str {
    let start = format!("- **{agent}**: ");
    text.lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no line for {agent} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_message_is_edited_in_place_and_presence_follows_the_agent() {
    let mut hive = TestHive::new(&[("echo", ECHO.to_owned())]).await;
    hive.start_core();
    let op = hive.operator().await;
    let echo = format!("@{}echo:{}", hive.cfg.agent_prefix, hive.cfg.server_name);
    let w = watch(&hive, &op, echo);
    let c0re = op.join("hive-c0re").await;
    let inbox = op.join("agent-echo").await;

    // The status message exists, shows echo idle (an edit once its harness connected, unless
    // it was posted after), and is pinned.
    w.until("echo idle in the status message", |w| {
        w.latest()
            .is_some_and(|t| line(&t, "echo").starts_with("- **echo**: idle"))
    })
    .await;
    // The operator may have joined after the original was posted: its id is the edits' target.
    let original = match w.originals().first() {
        Some(o) => o.event_id.clone(),
        None => w.edits()[0].edits.clone().unwrap(),
    };
    assert!(
        w.edits()
            .iter()
            .all(|e| e.edits.as_deref() == Some(&original)),
        "every edit replaces the one status message"
    );
    assert_eq!(pinned(&op, &c0re).await.first(), Some(&original), "pinned");
    w.until("echo online", |w| w.went_through(&[PresenceState::Online]))
        .await;

    // A slow turn: unavailable (running a turn) while it thinks, the message says thinking,
    // then online again and idle.
    let edits_before = w.edits().len();
    op.send(&inbox, "slow").await;
    w.until("echo unavailable while it thinks", |w| {
        w.went_through(&[PresenceState::Online, PresenceState::Unavailable])
    })
    .await;
    let status_msg = w
        .presence
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| *p == PresenceState::Unavailable)
        .and_then(|(_, m)| m.clone());
    assert_eq!(status_msg.as_deref(), Some("running a turn"));
    w.until("thinking in the status message", |w| {
        w.latest()
            .is_some_and(|t| line(&t, "echo").contains("thinking since"))
    })
    .await;
    // Its typing notice made Synapse turn it online (`bump_presence_active_time`): the core
    // set it unavailable again, and so it stays for the rest of the turn.
    w.until("echo unavailable mid-turn, after its typing notice", |w| {
        w.presence
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(p, _)| *p == PresenceState::Unavailable)
    })
    .await;
    w.until("echo online after its turn", |w| {
        w.went_through(&[
            PresenceState::Online,
            PresenceState::Unavailable,
            PresenceState::Online,
        ])
    })
    .await;
    w.until("echo idle again, its last turn shown", |w| {
        w.latest().is_some_and(|t| {
            let l = line(&t, "echo");
            l.starts_with("- **echo**: idle") && l.contains("last turn")
        })
    })
    .await;
    assert!(
        w.edits().len() > edits_before,
        "the turn edited the message"
    );

    // A burst of 20 messages: its queue shows 19, 18, … 0 over 10 s, one edit per gap (5 s):
    // a few edits, not one per change.
    let before = w.edits().len();
    for i in 0..20 {
        op.send(&inbox, &format!("burst {i}")).await;
    }
    op.wait_until(&inbox, WAIT, "20 replies", |seen| {
        seen.iter().filter(|s| s.body.ends_with("done")).count() >= 21
    })
    .await;
    w.until("the burst's end in the status message", |w| {
        w.latest().is_some_and(|t| {
            let l = line(&t, "echo");
            l.starts_with("- **echo**: idle") && !l.contains("queued")
        })
    })
    .await;
    // Whatever was still due is sent within one gap.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let burst_edits = w.edits().len() - before;
    eprintln!("{burst_edits} edits for a burst of 20 messages");
    assert!(
        (1..=5).contains(&burst_edits),
        "{burst_edits} edits for a burst of 20 messages"
    );
    // Never an edit that changes nothing.
    let texts: Vec<String> = w
        .statuses
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.text.clone())
        .collect();
    for pair in texts.windows(2) {
        assert_ne!(pair[0], pair[1], "an edit that changed nothing");
    }

    // The core stops: echo goes offline. It starts again: the same message is edited.
    assert!(hive.stop_core().success());
    w.until("echo offline when the core stopped", |w| {
        w.presence
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(p, _)| *p == PresenceState::Offline)
    })
    .await;
    let edits_before_restart = w.edits().len();
    hive.start_core();
    op.send(&inbox, "slow").await;
    w.until("an edit after the restart", |w| {
        w.edits().len() > edits_before_restart
            && w.latest()
                .is_some_and(|t| line(&t, "echo").contains("thinking since"))
    })
    .await;
    assert!(
        w.edits()
            .iter()
            .all(|e| e.edits.as_deref() == Some(&original)),
        "after the restart the same message is edited"
    );
    assert!(
        w.originals().iter().all(|o| o.event_id == original),
        "no second status message: {:#?}",
        w.originals()
    );
    assert_eq!(
        pinned(&op, &c0re).await,
        vec![original.clone()],
        "still pinned, once"
    );
    w.until("echo online again after the restart", |w| {
        let p = w.presence.lock().unwrap();
        p.iter()
            .rev()
            .take_while(|(s, _)| *s != PresenceState::Offline)
            .any(|(s, _)| *s == PresenceState::Online)
    })
    .await;

    // The operator redacts the status message while the core runs: a new one is posted and
    // pinned in its place, without a restart.
    let gone = matrix_sdk::ruma::OwnedEventId::try_from(original.as_str()).unwrap();
    c0re.redact(&gone, Some("test"), None).await.unwrap();
    op.send(&inbox, "after the redaction").await;
    w.until("a new status message after the redaction", |w| {
        w.originals().iter().any(|o| o.event_id != original)
    })
    .await;
    let new = w
        .originals()
        .into_iter()
        .find(|o| o.event_id != original)
        .unwrap()
        .event_id;
    let deadline = Instant::now() + WAIT;
    loop {
        let p = pinned(&op, &c0re).await;
        if p == vec![new.clone()] {
            break;
        }
        assert!(Instant::now() < deadline, "the new one pinned alone: {p:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
