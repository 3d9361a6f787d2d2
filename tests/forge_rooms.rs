//! The forge lanes' rooms and threads, end to end on a real Synapse: a delivery recorded for a
//! followed repository becomes `#forge-acme-widgets` (the operator invited), the item's thread
//! (its root and the hive's line, routed by `[[forge.routes]]`), and a `forge:` core event in
//! the routed agent's inbox; the delivery is then done in the store. (The webhook's own checks
//! and the forge tools are `tests/forge.rs` and `tests/forge_webhooks.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::{TestHive, echo_bot};
use hyperhive::forge::webhook::{Action, ForgeEvent};
use hyperhive::forge::{ItemKind, ItemRef, RepoName};
use hyperhive::store::{Recorded, Store};
use ruma::RoomAliasId;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_becomes_a_room_a_thread_and_a_core_event() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    let hook = secrets.path().join("hook");
    std::fs::write(&token, "forge-token-0123456789abcdef\n").unwrap();
    std::fs::write(&hook, "hook-secret-0123456789abcdef\n").unwrap();
    // Nothing listens on the forge's port: the files cannot be read, the label routes it.
    let forge = format!(
        "[forge]\n\
         [[forge.servers]]\nname = \"local\"\nkind = \"forgejo\"\nurl = \"http://127.0.0.1:{}\"\n\
         token_file = \"{}\"\nwebhook_secret_file = \"{}\"\nlogin = \"hive-bot\"\nrepos = [\"acme/widgets\"]\n\
         [[forge.routes]]\nlabels = [\"frontend\"]\nagent = \"iris\"\nreviewer = \"bob\"\n",
        common::free_port(),
        token.display(),
        hook.display()
    );
    let iris = format!(
        "{}[[forge.grant]]\nrepos = [\"acme/*\"]\ntools = [\"forge_discuss\"]\n",
        echo_bot(&[])
    );
    let mut hive = TestHive::with_config(&[("iris", iris), ("echo", echo_bot(&[]))], &forge).await;

    let store = Store::open(&hive.data.join("c0re.db")).unwrap();
    let event = ForgeEvent {
        item: ItemRef {
            repo: RepoName::parse("Acme/Widgets").unwrap(),
            number: 5,
        },
        kind: ItemKind::PullRequest,
        action: Action::Opened,
        actor: "alice".into(),
        title: "Fix the parser".into(),
        url: "http://forge.test/Acme/Widgets/pulls/5".into(),
        author: "alice".into(),
        labels: vec!["frontend".into()],
        head_sha: Some("abc123".into()),
    };
    let Recorded::New(id) = store
        .record_delivery("local", "d-5-opened", "pull_request", &event)
        .unwrap()
    else {
        panic!("a new delivery")
    };
    // The hive's own account's echo of its writes wakes nobody and says nothing to agents.
    let own = ForgeEvent {
        actor: "hive-bot".into(),
        action: Action::Labeled,
        ..event.clone()
    };
    let Recorded::New(own_id) = store
        .record_delivery("local", "d-5-own", "pull_request", &own)
        .unwrap()
    else {
        panic!("a new delivery")
    };

    hive.start_core();
    let op = hive.operator().await;
    let inbox = op.join("agent-iris").await;
    let echo_inbox = op.join("agent-echo").await;
    let server = op.client.user_id().unwrap().server_name().to_owned();
    let alias = RoomAliasId::parse(format!("#forge-acme-widgets:{server}")).unwrap();
    let deadline = Instant::now() + WAIT;
    let room = loop {
        match op
            .client
            .join_room_by_id_or_alias((&*alias).into(), &[])
            .await
        {
            Ok(room) => break room,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the forge room is not there yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no {alias}: {e}\n{}", hive.core_log()),
        }
    };
    let msgs = op
        .wait_until(&room, WAIT, "the thread's root and its line", |m| {
            m.iter().any(|x| {
                x.body.starts_with(
                    "alice opened — route: iris, reviewer bob (route 1: label frontend",
                )
            })
        })
        .await;
    let root = msgs
        .iter()
        .find(|x| {
            x.body
                == "**pull request Acme/Widgets#5**: Fix the parser — http://forge.test/Acme/Widgets/pulls/5"
        })
        .unwrap_or_else(|| panic!("no root in {msgs:?}"));
    let line = msgs
        .iter()
        .find(|x| x.body.starts_with("alice opened"))
        .expect("the line");
    assert!(
        line.body.contains("routed without the files"),
        "the forge could not be asked: {}",
        line.body
    );
    let relation = thread_root_of(&room, &line.event_id).await;
    assert_eq!(
        relation.as_deref(),
        Some(root.event_id.as_str()),
        "the line is in the root's thread"
    );
    assert_eq!(
        room.name().as_deref(),
        Some("forge: acme/widgets"),
        "the room's name"
    );

    let told = op
        .wait_until(&inbox, WAIT, "iris's core event", |m| {
            m.iter().any(|x| {
                x.body
                    .starts_with("forge: pull request Acme/Widgets#5 opened by alice")
            })
        })
        .await;
    let ev = told
        .iter()
        .find(|x| x.body.starts_with("forge: "))
        .expect("the core event");
    let lines: Vec<&str> = ev.body.lines().collect();
    assert_eq!(lines[1], "roles: owner");
    assert!(
        lines[2].starts_with("route: iris, reviewer bob (route 1: label frontend"),
        "{}",
        lines[2]
    );
    assert!(lines[3].starts_with("files: not known"), "{}", lines[3]);
    assert_eq!(
        *lines.last().unwrap(),
        "Act with the forge tools on repo Acme/Widgets, number 5; say what you did in its thread with forge_discuss."
    );
    // Once, and only to iris: echo has no part in it, and the own account's event told nobody.
    assert_eq!(
        told.iter()
            .filter(|x| x.body.starts_with("forge: "))
            .count(),
        1,
        "{told:?}"
    );
    let deadline = Instant::now() + WAIT;
    while store.delivery_state(own_id).unwrap().map(|(s, _)| s) != Some("done".into()) {
        assert!(
            Instant::now() < deadline,
            "the own account's delivery is never done"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.delivery_state(id).unwrap(),
        Some(("done".into(), None))
    );
    // Done in the same transaction as its outbox rows: the opened one has its line, the own
    // account's echo none (the agent said it in the thread already).
    let db = rusqlite::Connection::open(hive.data.join("c0re.db")).unwrap();
    let lines: Vec<String> = db
        .prepare("SELECT txn_id FROM outbox WHERE txn_id LIKE 'hh-forge-line-%' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        lines,
        ["hh-forge-line-local-d-5-opened"],
        "no bot line for the own echo"
    );
    let echo_msgs = op
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.room == echo_inbox.room_id() && m.body.starts_with("forge: "))
        .count();
    assert_eq!(echo_msgs, 0, "echo is told nothing");

    // The operator's message in the room that mentions iris reaches iris, who answers there.
    op.send(&room, &format!("@iris:{server} please look at #5"))
        .await;
    op.wait_until(&room, WAIT, "iris's answer in the forge room", |m| {
        m.iter().any(|x| {
            x.sender == format!("@iris:{server}")
                && x.body.contains("iris heard:")
                && x.body.contains("please look at #5")
        })
    })
    .await;
    hive.stop_core();
}

/// The thread a message is in (`m.relates_to.event_id` of an `m.thread` relation), read back
/// from the homeserver.
async fn thread_root_of(room: &matrix_sdk::Room, event: &ruma::OwnedEventId) -> Option<String> {
    let ev = room.event(event, None).await.unwrap();
    let raw: serde_json::Value = ev.raw().deserialize_as_unchecked().unwrap();
    let rel = raw.pointer("/content/m.relates_to")?;
    (rel["rel_type"] == "m.thread").then(|| rel["event_id"].as_str().map(str::to_owned))?
}
