//! The start-up path on a real Synapse: a fresh start with several agents makes every room,
//! membership and space link (as the operator's matrix-sdk client sees them); a warm start
//! (from what the store knows) still repairs what changed while the core was down: an agent
//! kicked from its inbox, a room unlinked from the space, the approvals room loosened, a new
//! agent added.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{Operator, TestHive, echo_bot, write_bot};
use hyperhive::agent_spec::AgentName;
use matrix_sdk::ruma::api::client::{alias, membership, state};
use matrix_sdk::ruma::events::StateEventType;
use matrix_sdk::ruma::{OwnedRoomId, RoomAliasId};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);

async fn room_of(op: &Operator, hive: &TestHive, local: &str) -> OwnedRoomId {
    let alias = RoomAliasId::parse(format!("#{local}:{}", hive.cfg.server_name)).unwrap();
    op.client
        .send(alias::get_alias::v3::Request::new(alias))
        .await
        .unwrap_or_else(|e| panic!("#{local} does not resolve: {e}"))
        .room_id
}

/// Each member's membership (`join`, `invite`, `leave` …).
async fn members(op: &Operator, room: &OwnedRoomId) -> HashMap<String, String> {
    let resp = op
        .client
        .send(membership::get_member_events::v3::Request::new(
            room.clone(),
        ))
        .await
        .unwrap();
    resp.chunk
        .iter()
        .filter_map(|raw| {
            let v: serde_json::Value = raw.deserialize_as_unchecked().unwrap();
            Some((
                v["state_key"].as_str()?.to_owned(),
                v["content"]["membership"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The rooms the space links (live `m.space.child` events).
async fn children(op: &Operator, space: &OwnedRoomId) -> HashSet<String> {
    let resp = op
        .client
        .send(state::get_state_events::v3::Request::new(space.clone()))
        .await
        .unwrap();
    resp.room_state
        .iter()
        .filter_map(|raw| {
            let v: serde_json::Value = raw.deserialize_as_unchecked().unwrap();
            let live = v["content"].as_object().is_some_and(|c| !c.is_empty());
            (v["type"] == "m.space.child" && live).then(|| v["state_key"].as_str().unwrap().into())
        })
        .collect()
}

async fn approvals_pl(op: &Operator, room: &OwnedRoomId) -> serde_json::Value {
    let raw = op
        .client
        .send(state::get_state_event_for_key::v3::Request::new(
            room.clone(),
            StateEventType::RoomPowerLevels,
            String::new(),
        ))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(raw.event_or_content.get()).unwrap();
    v.get("content").cloned().unwrap_or(v)
}

fn user(hive: &TestHive, name: &str) -> String {
    hive.cfg
        .agent_user_id(&AgentName::parse(name).unwrap())
        .to_string()
}

/// Polls `check` until it holds, or fails with `what` and the core's log.
async fn eventually<F, Fut>(hive: &TestHive, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} never held\n{}",
            hive.core_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_makes_every_room_and_a_warm_start_still_repairs() {
    let mut hive = TestHive::with_config(
        &[
            ("alpha", echo_bot(&[])),
            ("beta", echo_bot(&["alpha"])),
            ("gamma", echo_bot(&[])),
        ],
        "[runtime]\nkind = \"external\"\n",
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let op_id = hive.operator.user_id.clone();

    // Fresh: every room (the operator invited to each: joining proves it), its members, and
    // the space's links.
    let space = op.join("hive-space").await.room_id().to_owned();
    let mut rooms = HashMap::new();
    for local in [
        "hive-c0re",
        "hive-approvals",
        "hive-swarm",
        "agent-alpha",
        "agent-beta",
        "agent-gamma",
    ] {
        rooms.insert(local, op.join(local).await.room_id().to_owned());
    }
    let want: HashSet<String> = rooms.values().map(|r| r.to_string()).collect();
    assert_eq!(children(&op, &space).await, want);
    let expect = [
        ("hive-swarm", vec!["alpha", "beta", "gamma"]),
        ("agent-alpha", vec!["alpha", "beta"]),
        ("agent-beta", vec!["beta"]),
        ("agent-gamma", vec!["gamma"]),
        ("hive-c0re", vec![]),
        ("hive-approvals", vec![]),
    ];
    for (local, agents) in &expect {
        let m = members(&op, &rooms[local]).await;
        for a in agents {
            assert_eq!(
                m.get(&user(&hive, a)).map(String::as_str),
                Some("join"),
                "{a} in #{local}: {m:?}"
            );
        }
        for other in ["alpha", "beta", "gamma"] {
            if !agents.contains(&other) {
                assert!(
                    !m.contains_key(&user(&hive, other)),
                    "{other} in #{local}: {m:?}"
                );
            }
        }
        assert_eq!(
            m.get(&op_id).map(String::as_str),
            Some("join"),
            "the operator in #{local}"
        );
    }
    assert_eq!(
        members(&op, &space).await.get(&op_id).map(String::as_str),
        Some("join")
    );
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let marks = store.identity_marks().unwrap();
    assert_eq!(marks.len(), 3, "{marks:?}");
    assert_eq!(marks["beta"].user_id, user(&hive, "beta"));
    drop(store);

    // While the core is down: alpha is kicked from its inbox, gamma's inbox is unlinked from
    // the space, the approvals room is loosened, and a new agent appears.
    assert_eq!(hive.stop_core().code(), Some(0));
    let alpha_inbox = op.client.get_room(&rooms["agent-alpha"]).unwrap();
    alpha_inbox
        .kick_user(
            &matrix_sdk::ruma::UserId::parse(user(&hive, "alpha")).unwrap(),
            Some("test"),
        )
        .await
        .unwrap();
    let space_room = op.client.get_room(&space).unwrap();
    space_room
        .send_state_event_raw("m.space.child", rooms["agent-gamma"].as_str(), json!({}))
        .await
        .unwrap();
    let approvals = op.client.get_room(&rooms["hive-approvals"]).unwrap();
    let mut pl = approvals_pl(&op, &rooms["hive-approvals"]).await;
    pl["events"]["m.reaction"] = json!(0);
    approvals
        .send_state_event_raw("m.room.power_levels", "", pl)
        .await
        .unwrap();
    assert_eq!(
        members(&op, &rooms["agent-alpha"]).await[&user(&hive, "alpha")],
        "leave"
    );
    assert!(
        !children(&op, &space)
            .await
            .contains(rooms["agent-gamma"].as_str())
    );
    write_bot(&hive.bots, "delta", &echo_bot(&[]));

    // Warm: the store is trusted, and ready means the loop holds and the new inbox exists.
    hive.start_core();
    assert!(
        hive.core_log().contains("trusted=true"),
        "{}",
        hive.core_log()
    );
    let pl = approvals_pl(&op, &rooms["hive-approvals"]).await;
    assert_eq!(pl["events"]["m.reaction"], 100, "{pl}");
    let delta_inbox = op.join("agent-delta").await.room_id().to_owned();
    assert_eq!(
        members(&op, &delta_inbox)
            .await
            .get(&user(&hive, "delta"))
            .map(String::as_str),
        Some("join")
    );
    assert!(children(&op, &space).await.contains(delta_inbox.as_str()));

    // Then the repairs after ready.
    eventually(&hive, "alpha back in its inbox", || async {
        members(&op, &rooms["agent-alpha"])
            .await
            .get(&user(&hive, "alpha"))
            .map(String::as_str)
            == Some("join")
    })
    .await;
    eventually(&hive, "gamma's inbox linked again", || async {
        children(&op, &space)
            .await
            .contains(rooms["agent-gamma"].as_str())
    })
    .await;
    eventually(&hive, "delta in the swarm", || async {
        members(&op, &rooms["hive-swarm"])
            .await
            .get(&user(&hive, "delta"))
            .map(String::as_str)
            == Some("join")
    })
    .await;
    // Nothing was duplicated: the same rooms under the same aliases.
    assert_eq!(room_of(&op, &hive, "hive-space").await, space);
    assert_eq!(
        room_of(&op, &hive, "agent-alpha").await,
        rooms["agent-alpha"]
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}
