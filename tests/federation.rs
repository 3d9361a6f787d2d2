//! Two hives on two real Synapses on loopback federate; a third, not a peer, cannot get in.
//!
//! hive-a and hive-b declare each other; hive-c declares hive-a, which does not declare it.
//! Each homeserver is `localhost:<port>` with a TLS federation listener whose certificate a CA
//! made for the test signed (tests/common/federation.rs).
mod common;

use std::time::{Duration, Instant};

use common::federation::{FedId, TestCa};
use common::{Operator, TestHive, scripted};
use matrix_sdk::Room;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::api::client::state::get_state_event_for_key;
use matrix_sdk::ruma::events::StateEventType;
use matrix_sdk::ruma::{
    OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomOrAliasId, ServerName,
};

const WAIT: Duration = Duration::from_secs(60);

/// The content of `room`'s `type` state event (key ""), as `op`'s homeserver has it.
async fn state(op: &Operator, room: &OwnedRoomId, ty: StateEventType) -> serde_json::Value {
    let r = op
        .client
        .send(get_state_event_for_key::v3::Request::new(
            room.clone(),
            ty,
            String::new(),
        ))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(r.event_or_content.get()).unwrap();
    v.get("content").cloned().unwrap_or(v)
}

/// Joins `room` through `via`, retrying while the invite or the room's state is on its way.
async fn join_via(op: &Operator, room: &OwnedRoomId, via: &str) -> Room {
    let via: OwnedServerName = ServerName::parse(via).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match op
            .client
            .join_room_by_id_or_alias(<&RoomOrAliasId>::from(&**room), std::slice::from_ref(&via))
            .await
        {
            Ok(r) => return r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("join of {room} via {via} not yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cannot join {room} via {via}: {e}"),
        }
    }
}

fn user(op: &Operator) -> OwnedUserId {
    op.client.user_id().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_federate_and_a_stranger_cannot_get_in() {
    let (a_id, b_id, c_id) = (
        FedId::new("hive-a"),
        FedId::new("hive-b"),
        FedId::new("hive-c"),
    );
    let ca = TestCa::new(&["hive-a", "hive-b", "hive-c"]).await;
    let bots_a = [("argus", scripted("argus"))];
    let bots_b = [("iris", scripted("iris"))];
    let peers_a = [(
        &b_id,
        "agents = [{ local = \"argus\", remote = [\"iris\"] }]",
    )];
    let peers_b = [(
        &a_id,
        "agents = [{ local = \"iris\", remote = [\"argus\"] }]",
    )];
    let peers_c = [(&a_id, "")];
    let (mut a, mut b, mut c) = tokio::join!(
        TestHive::federated(&bots_a, &a_id, &peers_a, &ca, ""),
        TestHive::federated(&bots_b, &b_id, &peers_b, &ca, ""),
        TestHive::federated(&[], &c_id, &peers_c, &ca, ""),
    );
    // The rendered homeserver.yaml lets in exactly the declared peers.
    let yaml = std::fs::read_to_string(a.data.join("synapse").join("homeserver.yaml")).unwrap();
    assert!(
        yaml.contains(&format!(
            "federation_domain_whitelist: [\"{}\"]\n",
            b_id.server_name()
        )),
        "{yaml}"
    );
    a.start_core();
    b.start_core();
    c.start_core();
    let (op_a, op_b, op_c) = (a.operator().await, b.operator().await, c.operator().await);
    assert_eq!(
        user(&op_a).as_str(),
        format!("@operator:{}", a_id.server_name())
    );

    // The core works with a port in its server name: argus answers in its inbox.
    let inbox = op_a.join("agent-argus").await;
    op_a.send(&inbox, "ping").await;
    let argus = format!("@argus:{}", a_id.server_name());
    op_a.wait_until(&inbox, WAIT, "argus's answer", |m| {
        m.iter()
            .any(|x| x.sender == argus && x.body == "argus: ping")
    })
    .await;

    // A's operator makes a federated room (public join rule: only the server allow-list can keep
    // anyone out) and invites B's operator, who joins through A's server.
    let mut req = create_room::v3::Request::new();
    req.name = Some("a-b".into());
    req.preset = Some(create_room::v3::RoomPreset::PublicChat);
    req.invite = vec![user(&op_b)];
    let room_a = op_a.client.create_room(req).await.unwrap();
    let room_id = room_a.room_id().to_owned();
    let room_b = join_via(&op_b, &room_id, &a_id.server_name()).await;
    op_a.send(&room_a, "hello from a").await;
    op_b.wait_until(&room_b, WAIT, "A's message on B", |m| {
        m.iter()
            .any(|x| x.body == "hello from a" && x.sender == user(&op_a).as_str())
    })
    .await;
    op_b.send(&room_b, "hello from b").await;
    op_a.wait_until(&room_a, WAIT, "B's message on A", |m| {
        m.iter()
            .any(|x| x.body == "hello from b" && x.sender == user(&op_b).as_str())
    })
    .await;

    // C is no peer of A: it cannot join (C's side would federate; A's allow-list refuses it),
    // A cannot invite it, and nothing it sends gets in.
    let via_a = vec![ServerName::parse(a_id.server_name()).unwrap()];
    let joined = op_c
        .client
        .join_room_by_id_or_alias(<&RoomOrAliasId>::from(&*room_id), &via_a)
        .await;
    let e = format!("{:?}", joined.expect_err("C joined A's room"));
    assert!(
        e.contains("Federation denied"),
        "C refused for another reason: {e}"
    );
    // A refused C's join itself (inbound, by its allow-list), before A ever tried to reach C.
    let log = std::fs::read_to_string(a.data.join("synapse").join("homeserver.log")).unwrap();
    assert!(
        log.contains(&format!("Federation denied with {}", c_id.server_name())),
        "A's homeserver did not refuse C's join by its allow-list:\n{}",
        log.lines()
            .filter(|l| l.contains("ederation"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let invited = room_a.invite_user_by_id(&user(&op_c)).await;
    let e = format!("{:?}", invited.expect_err("A invited C's operator"));
    assert!(
        e.contains("Federation denied"),
        "the invite failed for another reason: {e}"
    );
    // (C cannot send into the room either: it never joined, so its own server refuses it;
    // that proves nothing of A's and is not asserted.)

    // The hive's own rooms stay on its server: created unfederated, and a peer's operator cannot
    // join one even through its alias.
    for alias in [
        "hive-c0re",
        "hive-approvals",
        "hive-swarm",
        "hive-space",
        "agent-argus",
    ] {
        let room = op_a.join(alias).await;
        let create = state(
            &op_a,
            &room.room_id().to_owned(),
            StateEventType::RoomCreate,
        )
        .await;
        assert_eq!(
            create["m.federate"],
            serde_json::json!(false),
            "#{alias}: {create}"
        );
    }
    let c0re = RoomAliasId::parse(format!("#hive-c0re:{}", a_id.server_name())).unwrap();
    let refused = op_b
        .client
        .join_room_by_id_or_alias(<&RoomOrAliasId>::from(&*c0re), &[])
        .await;
    let e = format!(
        "{:?}",
        refused.expect_err("B's operator joined A's #hive-c0re")
    );
    assert!(
        e.contains("unfederatable"),
        "refused for another reason: {e}"
    );

    // Last: nothing from C ever reached the room, on either peer; its member list on A holds
    // nobody from C.
    op_b.send(&room_b, "last from b").await;
    op_a.wait_until(&room_a, WAIT, "B's last message", |m| {
        m.iter().any(|x| x.body == "last from b")
    })
    .await;
    for (op, room) in [(&op_a, &room_a), (&op_b, &room_b)] {
        assert_eq!(op.count(room, "hello from c"), 0);
    }
    let members = room_a
        .members(matrix_sdk::RoomMemberships::all())
        .await
        .unwrap();
    assert!(
        members
            .iter()
            .all(|m| m.user_id().server_name().as_str() != c_id.server_name()),
        "{:?}",
        members
            .iter()
            .map(|m| m.user_id().to_string())
            .collect::<Vec<_>>()
    );
    drop((op_a, op_b, op_c));
    for h in [&mut a, &mut b, &mut c] {
        h.stop_core();
    }
}
