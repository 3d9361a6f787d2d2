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

/// The core's log lines about peering, for a failure's reader.
fn peer_lines(h: &TestHive) -> String {
    std::fs::read_to_string(h.dir.path().join("c0re.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("peer") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scripted agent: `rules` are `[[brain.rules]]` bodies, tried in order.
fn bot(allowed: &[&str], rules: &[&str]) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    let mut t = format!(
        "allowed_recipients = [{}]\n[brain]\nkind = \"scripted\"\n",
        allowed.join(", ")
    );
    for r in rules {
        t.push_str(&format!("[[brain.rules]]\n{r}\n"));
    }
    t
}

/// What the operator of a hive sees of one agent: the messages it sent the operator (its
/// inbox, `send_to = "operator"`), in order.
fn told(msgs: &[common::Seen], agent: &str, prefix: &str) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.sender.starts_with(&format!("@{agent}:")) && m.body.contains(prefix))
        .map(|m| m.body.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_talk_across_hives_once_in_order_and_trust_never_crosses() {
    let (a_id, b_id) = (FedId::new("hive-a"), FedId::new("hive-b"));
    let ca = TestCa::new(&["hive-a", "hive-b"]).await;
    // hive-a: argus may talk with iris and nemo (A's side); echo is published but pairs nobody.
    // hive-b: iris may talk with argus and echo (B's side); nemo is published, pairs nobody.
    let heard = "send_to = \"operator\"\nsend = \"{agent} heard: {body}\"";
    let bots_a = [
        (
            "argus",
            bot(
                &["iris@hive-b", "nemo@hive-b"],
                &[
                    &format!("contains = \"refused your message\"\n{heard}"),
                    &format!("contains = \"iris got\"\n{heard}"),
                    "prefix = \"to iris \"\nsend_to = \"iris@hive-b\"\nsend = \"{rest}\"",
                    "prefix = \"to nemo \"\nsend_to = \"nemo@hive-b\"\nsend = \"{rest}\"",
                    "reply = \"argus: {body}\"",
                ],
            ),
        ),
        ("echo", bot(&[], &[heard])),
        ("hm1nd", bot(&[], &["silent = true"])),
    ];
    let bots_b = [
        (
            "iris",
            bot(
                &["echo@hive-a"],
                &[
                    &format!("contains = \"refused your message\"\n{heard}"),
                    "prefix = \"to echo \"\nsend_to = \"echo@hive-a\"\nsend = \"{rest}\"",
                    "reply = \"iris got {body}\"",
                ],
            ),
        ),
        (
            "nemo",
            bot(
                &["argus@hive-a"],
                &["prefix = \"to argus \"\nsend_to = \"argus@hive-a\"\nsend = \"{rest}\""],
            ),
        ),
    ];
    let peers_a = [(
        &b_id,
        "agents = [{ local = \"argus\", remote = [\"iris\", \"nemo\"] }, { local = \"echo\" }]",
    )];
    let peers_b = [(
        &a_id,
        "agents = [{ local = \"iris\", remote = [\"argus\", \"echo\"] }, { local = \"nemo\" }]",
    )];
    let (mut a, mut b) = tokio::join!(
        TestHive::federated(&bots_a, &a_id, &peers_a, &ca, ""),
        TestHive::federated(&bots_b, &b_id, &peers_b, &ca, ""),
    );
    a.start_core();
    b.start_core();
    let (op_a, op_b) = (a.operator().await, b.operator().await);
    let argus_inbox = op_a.join("agent-argus").await;
    let iris_inbox = op_b.join("agent-iris").await;
    let nemo_inbox = op_b.join("agent-nemo").await;

    // argus@hive-a → iris@hive-b, and iris's answer back. Until both hives have set the peering
    // up, argus is refused (the scripted brain says so); the operator asks again.
    let deadline = Instant::now() + WAIT;
    loop {
        op_a.send(&argus_inbox, "to iris hello").await;
        let got = op_a
            .wait_until(&argus_inbox, WAIT, "argus's try", |m| {
                told(m, "argus", "heard: ").len() == 1
                    || m.iter()
                        .filter(|x| x.body.contains("could not send"))
                        .count()
                        > 0
            })
            .await;
        if told(&got, "argus", "heard: ").len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the peering never came up: {:?}\n--- hive-a ---\n{}\n--- hive-b ---\n{}",
            got.iter().map(|m| &m.body).collect::<Vec<_>>(),
            peer_lines(&a),
            peer_lines(&b)
        );
        // Forget the refusals seen so far and try again.
        op_a.seen
            .lock()
            .unwrap()
            .retain(|x| !x.body.contains("could not send"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let got = op_a.wait_until(&argus_inbox, WAIT, "", |_| true).await;
    let back = told(&got, "argus", "heard: ");
    assert!(
        back[0].contains("iris got") && back[0].contains("hello"),
        "{back:?}"
    );

    // list_agents shows what hive-b publishes, qualified, and whether argus may write to each
    // (by hive-a's rules: hive-b's are checked on arrival).
    let mut argus_tools = common::hello_socket(&a, "argus", "tools.sock", WAIT).await;
    let (text, err) =
        common::call_tool(&mut argus_tools, "list_agents", serde_json::json!({})).await;
    assert!(!err, "{text}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let remote = |name: &str| {
        listed
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {text}"))
            .clone()
    };
    assert_eq!(remote("iris@hive-b")["state"], "remote");
    assert_eq!(remote("iris@hive-b")["hive"], "hive-b");
    assert_eq!(remote("iris@hive-b")["may_message"], true);
    assert_eq!(remote("nemo@hive-b")["may_message"], true);
    let mut echo_tools = common::hello_socket(&a, "echo", "tools.sock", WAIT).await;
    let (text, _) = common::call_tool(&mut echo_tools, "list_agents", serde_json::json!({})).await;
    let echo_view: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(
        echo_view
            .iter()
            .any(|a| a["name"] == "iris@hive-b" && a["may_message"] == false),
        "echo is paired with nobody: {text}"
    );
    drop((argus_tools, echo_tools));

    // `!hive status` shows the peer, probed as it answers.
    let control_a = op_a.join("hive-c0re").await;
    let b_line = format!("hive-b ({}): ", b_id.server_name());
    op_a.send(&control_a, "!hive status").await;
    op_a.wait_until(
        &control_a,
        WAIT,
        "!hive status with hive-b reachable",
        |m| {
            m.iter().any(|x| {
                x.body.contains(&format!("{b_line}reachable")) && x.body.contains("room set up")
            })
        },
    )
    .await;

    // The message crossed in the peer room, posted by argus's own identity and mentioning iris:
    // both operators see it there.
    let peer_a = op_a.join("peer-hive-b").await;
    let peer_b = op_b.join("peer-hive-a").await;
    assert_eq!(peer_a.room_id(), peer_b.room_id(), "one room, two aliases");
    let argus_id = format!("@argus:{}", a_id.server_name());
    let iris_id = format!("@iris:{}", b_id.server_name());
    op_b.wait_until(&peer_b, WAIT, "argus's message in the peer room", |m| {
        m.iter()
            .any(|x| x.sender == argus_id && x.body.contains("hello"))
    })
    .await;
    op_a.wait_until(&peer_a, WAIT, "iris's answer in the peer room", |m| {
        m.iter()
            .any(|x| x.sender == iris_id && x.body.contains("iris got"))
    })
    .await;
    // The room lets in exactly the two servers.
    let acl = state(
        &op_a,
        &peer_a.room_id().to_owned(),
        StateEventType::RoomServerAcl,
    )
    .await;
    assert_eq!(acl["allow_ip_literals"], serde_json::json!(false));
    let allow: Vec<&str> = acl["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for s in [a_id.server_name(), b_id.server_name()] {
        assert!(allow.contains(&s.as_str()), "{allow:?}");
    }

    // Refused pairs, each way: B refuses argus → nemo (B's line does not pair them) and tells
    // argus why; A refuses iris → echo and tells iris; nemo → argus is refused on B before it
    // leaves (B's line pairs nemo with nobody).
    op_a.send(&argus_inbox, "to nemo psst").await;
    op_a.wait_until(&argus_inbox, WAIT, "argus told of B's refusal", |m| {
        told(m, "argus", "refused your message")
            .iter()
            .any(|b| b.contains("nemo@hive-b takes no messages from argus@hive-a"))
    })
    .await;
    op_b.send(&iris_inbox, "to echo psst").await;
    op_b.wait_until(&iris_inbox, WAIT, "iris told of A's refusal", |m| {
        told(m, "iris", "refused your message")
            .iter()
            .any(|b| b.contains("echo@hive-a takes no messages from iris@hive-b"))
    })
    .await;
    op_b.send(&nemo_inbox, "to argus psst").await;
    op_b.wait_until(&nemo_inbox, WAIT, "nemo refused at home", |m| {
        m.iter().any(|x| {
            x.body.contains("could not send that to argus@hive-a")
                && x.body.contains("does not pair them")
        })
    })
    .await;
    let echo_inbox = op_a.join("agent-echo").await;

    // Trust never crosses. A request waits on hive-a: B's operator (the same localpart as A's)
    // cannot reach the approvals room, a ✅ it sends elsewhere does nothing, nor does `!hive`.
    let mut hm1nd = common::hello_socket(&a, "hm1nd", "tools.sock", WAIT).await;
    let (text, err) = common::call_tool(
        &mut hm1nd,
        "destroy",
        serde_json::json!({ "agent": "echo", "summary": "not needed" }),
    )
    .await;
    assert!(!err && text.contains("approval #1"), "{text}");
    let approvals_a = op_a.join("hive-approvals").await;
    let req = common::request_message(&op_a, &approvals_a, 1, WAIT).await;
    assert_eq!(user(&op_b).localpart(), user(&op_a).localpart());
    let alias = RoomAliasId::parse(format!("#hive-approvals:{}", a_id.server_name())).unwrap();
    let refused = op_b
        .client
        .join_room_by_id_or_alias(<&RoomOrAliasId>::from(&*alias), &[])
        .await;
    assert!(refused.is_err(), "B's operator joined A's approvals room");
    {
        // A reaction to the request's event from another room (the homeserver may refuse it:
        // either way it must change nothing).
        use matrix_sdk::ruma::events::reaction::ReactionEventContent;
        use matrix_sdk::ruma::events::relation::Annotation;
        let r = peer_b
            .send(ReactionEventContent::new(Annotation::new(
                req.event_id.clone(),
                "✅".into(),
            )))
            .await;
        eprintln!(
            "B's ✅ in the peer room: {:?}",
            r.map(|r| r.response.event_id)
        );
    }
    op_b.send(&peer_b, "!hive status").await;
    op_b.send(&peer_b, &format!("{argus_id} hello from B's operator"))
        .await;
    // A marker after them: once argus's answer to it is back, A's core has seen them all.
    op_a.send(&argus_inbox, "to iris marker").await;
    op_a.wait_until(&argus_inbox, WAIT, "the marker's answer", |m| {
        told(m, "argus", "heard: ")
            .iter()
            .any(|b| b.contains("marker"))
    })
    .await;
    let store_a = hyperhive::store::Store::open(&a.data.join("c0re.db")).unwrap();
    let r = store_a.approval(1).unwrap().unwrap();
    assert_eq!(
        r.state,
        hyperhive::store::ApprovalState::Pending,
        "a remote ✅ changed the request"
    );
    let peer_msgs = op_b.wait_until(&peer_b, WAIT, "", |_| true).await;
    assert!(
        !peer_msgs.iter().any(|m| m.body.contains("| agent |")),
        "A's core answered a remote `!hive`"
    );
    assert!(
        !op_a
            .wait_until(&argus_inbox, WAIT, "", |_| true)
            .await
            .iter()
            .any(|m| m.body.contains("hello from B's operator")),
        "B's operator reached argus"
    );
    drop(echo_inbox);

    // hive-b goes away (core and homeserver) while argus sends; hive-a's homeserver restarts
    // too, so it catches up with only its newest event (Synapse's catch-up) and hive-b's core
    // must fetch the rest. Then everything is delivered once, in order.
    b.stop_core();
    b.stop_synapse().await;
    op_a.send(&control_a, "!hive status").await;
    op_a.wait_until(
        &control_a,
        WAIT,
        "!hive status with hive-b unreachable",
        |m| {
            m.iter()
                .any(|x| x.body.contains(&format!("{b_line}unreachable")))
        },
    )
    .await;
    let n = 14;
    for i in 1..=n {
        op_a.send(&argus_inbox, &format!("to iris m{i:02}")).await;
    }
    // argus has sent them all (its queue is empty) before the restart.
    let deadline = Instant::now() + WAIT;
    while store_a.counts("argus").unwrap().pending + store_a.counts("argus").unwrap().inflight > 0 {
        assert!(Instant::now() < deadline, "argus did not send");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.crash_and_restart_synapse().await;
    b.start_synapse().await;
    b.start_core();
    // A's operator logs in again (its client's sync ended with the homeserver).
    drop(op_a);
    let op_a = a.operator().await;
    let argus_inbox = op_a.join("agent-argus").await;
    let got = op_a
        .wait_until(
            &argus_inbox,
            Duration::from_secs(180),
            "every answer back",
            |m| {
                told(m, "argus", "heard: ")
                    .iter()
                    .filter(|b| b.ends_with(&format!("m{n:02}")))
                    .count()
                    >= 1
            },
        )
        .await;
    // The answers to m01..m14, by their last word.
    let numbered = |msgs: &[common::Seen]| -> Vec<String> {
        told(msgs, "argus", "heard: ")
            .into_iter()
            .filter_map(|b| b.split_whitespace().last().map(str::to_owned))
            .filter(|w| {
                w.len() == 3 && w.starts_with('m') && w[1..].chars().all(|c| c.is_ascii_digit())
            })
            .collect()
    };
    let want: Vec<String> = (1..=n).map(|i| format!("m{i:02}")).collect();
    assert_eq!(numbered(&got), want, "delivered once each, in order");
    // Nothing more arrives later (no duplicates on the way).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = op_a.wait_until(&argus_inbox, WAIT, "", |_| true).await;
    assert_eq!(numbered(&again), want, "a duplicate arrived late");
    // And the path this part claims ran: Synapse's catch-up brought the newest events, hive-b's
    // core held them behind the gap and paged back for the rest.
    let lines = peer_lines(&b);
    assert!(
        lines.contains("filling a gap in a peer's stream peer=hive-a"),
        "no gap was filled; Synapse delivered everything itself this time:\n{lines}"
    );

    // `hive status` shows the peer.
    let out = a.hive(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("peers") && text.contains("hive-b (localhost:"),
        "{text}"
    );
    drop((op_a, op_b));
    a.stop_core();
    b.stop_core();
}
