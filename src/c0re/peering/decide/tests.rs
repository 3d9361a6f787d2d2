use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;

fn name(n: &str) -> AgentName {
    AgentName::parse(n).unwrap()
}

fn q(s: &str) -> QualifiedName {
    QualifiedName::parse(s).unwrap().unwrap()
}

fn user(u: &str) -> OwnedUserId {
    UserId::parse(u).unwrap()
}

/// hive-a's view of hive-b (server `b.test:8448`): iris may talk with argus.
fn peer_b() -> Peer {
    let mut agents = BTreeMap::new();
    agents.insert(name("iris"), vec![name("argus")]);
    agents.insert(name("nemo"), vec![]);
    Peer {
        hive: crate::agent_spec::HiveName::parse("hive-b").unwrap(),
        server_name: ruma::ServerName::parse("b.test:8448").unwrap(),
        agents,
        bot: user("@hive:b.test:8448"),
    }
}

fn argus_b() -> RemoteAgent {
    RemoteAgent {
        name: q("argus@hive-b"),
        user_id: user("@argus:b.test:8448"),
        display_name: "Argus".into(),
        description: None,
        paired: true,
    }
}

fn spec(n: &str, allowed: &[&str]) -> AgentSpec {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "allowed_recipients = [{}]\n[brain]\nkind = \"scripted\"\n",
        allowed.join(",")
    );
    let dir = Path::new("/nonexistent").join(n);
    AgentSpec::parse(name(n), &dir, &dir.join("agent.toml"), &text).unwrap()
}

#[test]
fn directory_entries_count_only_from_the_peer_about_the_peer() {
    struct Case {
        name: &'static str,
        sender: &'static str,
        key: &'static str,
        content: Value,
        want: Entry,
    }
    let good = json!({ "user_id": "@argus:b.test:8448", "display_name": "Argus" });
    let cases = [
        Case {
            name: "the peer's core publishes its agent",
            sender: "@hive:b.test:8448",
            key: "argus@hive-b",
            content: good.clone(),
            want: Entry::Set(argus_b()),
        },
        Case {
            name: "any user of the peer's server may (its hive answers for them)",
            sender: "@someone:b.test:8448",
            key: "argus@hive-b",
            content: good.clone(),
            want: Entry::Set(argus_b()),
        },
        Case {
            name: "our own entry, published by us",
            sender: "@hive:a.test",
            key: "iris@hive-a",
            content: json!({ "user_id": "@iris:a.test" }),
            want: Entry::Ignore,
        },
        Case {
            name: "the peer cannot publish an agent of ours",
            sender: "@hive:b.test:8448",
            key: "iris@hive-a",
            content: json!({ "user_id": "@iris:b.test:8448" }),
            want: Entry::Ignore,
        },
        Case {
            name: "the peer cannot point its agent at another server's user",
            sender: "@hive:b.test:8448",
            key: "argus@hive-b",
            content: json!({ "user_id": "@argus:a.test" }),
            want: Entry::Ignore,
        },
        Case {
            name: "a server with the same host but another port is not the peer",
            sender: "@hive:b.test:9999",
            key: "argus@hive-b",
            content: good.clone(),
            want: Entry::Ignore,
        },
        Case {
            name: "a key that is no qualified name",
            sender: "@hive:b.test:8448",
            key: "@argus:b.test:8448",
            content: good.clone(),
            want: Entry::Ignore,
        },
        Case {
            name: "a hostile name",
            sender: "@hive:b.test:8448",
            key: "../x@hive-b",
            content: good.clone(),
            want: Entry::Ignore,
        },
        Case {
            name: "no user id",
            sender: "@hive:b.test:8448",
            key: "argus@hive-b",
            content: json!({ "display_name": "Argus" }),
            want: Entry::Ignore,
        },
        Case {
            name: "an agent our peers line pairs with nobody of ours: kept, unpaired",
            sender: "@hive:b.test:8448",
            key: "zed@hive-b",
            content: json!({ "user_id": "@zed:b.test:8448" }),
            want: Entry::Set(RemoteAgent {
                name: q("zed@hive-b"),
                user_id: user("@zed:b.test:8448"),
                display_name: "zed".into(),
                description: None,
                paired: false,
            }),
        },
        Case {
            name: "emptied: withdrawn",
            sender: "@hive:b.test:8448",
            key: "argus@hive-b",
            content: json!({}),
            want: Entry::Remove(name("argus")),
        },
    ];
    for c in cases {
        assert_eq!(
            entry(&peer_b(), &user(c.sender), c.key, &c.content),
            c.want,
            "{}",
            c.name
        );
    }
    let long = json!({ "user_id": "@argus:b.test:8448", "description": "é".repeat(600) });
    let Entry::Set(a) = entry(&peer_b(), &user("@hive:b.test:8448"), "argus@hive-b", &long) else {
        panic!("a long description is cut, not refused")
    };
    assert!(a.description.unwrap().len() <= MAX_ENTRY_TEXT);
}

fn ev(sender: &str, content: Value) -> TimelineEvent {
    serde_json::from_value(json!({
        "type": "m.room.message",
        "event_id": "$e",
        "room_id": "!peer:a.test",
        "sender": sender,
        "content": content,
    }))
    .unwrap()
}

fn numbered(to: &str, seq: i64) -> Value {
    json!({ "msgtype": "m.text", "body": "hi", PEER_KEY: { "epoch": "e1", "seq": seq, "from": "argus", "to": to } })
}

#[test]
fn a_peers_events_are_delivered_refused_or_ignored() {
    struct Case {
        name: &'static str,
        event: TimelineEvent,
        want: Inbound,
    }
    let at = |seq| Numbered {
        epoch: "e1".into(),
        seq,
    };
    let refuse = |seq, reason: &str| Inbound::Refuse {
        at: at(seq),
        sender: user("@argus:b.test:8448"),
        reason: reason.into(),
    };
    let cases = vec![
        Case {
            name: "a paired remote agent to a local one",
            event: ev("@argus:b.test:8448", numbered("iris", 1)),
            want: Inbound::Deliver {
                to: name("iris"),
                from: q("argus@hive-b"),
                at: at(1),
            },
        },
        Case {
            name: "a local agent that does not take messages from it",
            event: ev("@argus:b.test:8448", numbered("nemo", 2)),
            want: refuse(
                2,
                "nemo@hive-a takes no messages from argus@hive-b: hive-a's hive.toml does not pair them (peers, hive = \"hive-b\", agents)",
            ),
        },
        Case {
            name: "a local agent with no peer line",
            event: ev("@argus:b.test:8448", numbered("echo", 3)),
            want: refuse(
                3,
                "echo@hive-a takes no messages from argus@hive-b: hive-a's hive.toml does not pair them (peers, hive = \"hive-b\", agents)",
            ),
        },
        Case {
            name: "no such local agent: the same answer as an unpaired one",
            event: ev("@argus:b.test:8448", numbered("ghost", 4)),
            want: refuse(
                4,
                "ghost@hive-a takes no messages from argus@hive-b: hive-a's hive.toml does not pair them (peers, hive = \"hive-b\", agents)",
            ),
        },
        Case {
            name: "a hostile recipient name, quoted",
            event: ev("@argus:b.test:8448", numbered("../etc", 5)),
            want: refuse(
                5,
                "\"../etc\"@hive-a takes no messages from argus@hive-b: hive-a's hive.toml does not pair them (peers, hive = \"hive-b\", agents)",
            ),
        },
        Case {
            name: "a sender the peer does not publish",
            event: ev("@mallory:b.test:8448", numbered("iris", 6)),
            want: Inbound::Stranger {
                sender: user("@mallory:b.test:8448"),
            },
        },
        Case {
            name: "an agent the peer publishes but we pair with nobody: refused in its place",
            event: ev("@zed:b.test:8448", numbered("iris", 10)),
            want: Inbound::Refuse {
                at: at(10),
                sender: user("@zed:b.test:8448"),
                reason: "iris@hive-a takes no messages from zed@hive-b: hive-a's hive.toml does not pair them (peers, hive = \"hive-b\", agents)".into(),
            },
        },
        Case {
            name: "a number past 2^53 is nothing",
            event: ev("@argus:b.test:8448", numbered("iris", i64::MAX)),
            want: Inbound::Ignore,
        },
        Case {
            name: "our own agent's message in the room",
            event: ev("@iris:a.test", numbered("argus", 1)),
            want: Inbound::Ignore,
        },
        Case {
            name: "a third server's user (the ACL keeps it out; the core does too)",
            event: ev("@argus:c.test", numbered("iris", 1)),
            want: Inbound::Ignore,
        },
        Case {
            name: "a user with the peer agent's localpart on another port",
            event: ev("@argus:b.test:9999", numbered("iris", 1)),
            want: Inbound::Ignore,
        },
        Case {
            name: "a human of the peer writing in the room",
            event: ev(
                "@operator:b.test:8448",
                json!({ "msgtype": "m.text", "body": "@iris:a.test hello" }),
            ),
            want: Inbound::Ignore,
        },
        Case {
            name: "no number",
            event: ev(
                "@argus:b.test:8448",
                json!({ "msgtype": "m.text", "body": "hi", PEER_KEY: { "to": "iris" } }),
            ),
            want: Inbound::Ignore,
        },
        Case {
            name: "number zero",
            event: ev("@argus:b.test:8448", numbered("iris", 0)),
            want: Inbound::Ignore,
        },
        Case {
            name: "an edit is never a new message",
            event: ev("@argus:b.test:8448", {
                let mut c = numbered("iris", 7);
                c["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": "$x" });
                c
            }),
            want: Inbound::Ignore,
        },
        Case {
            name: "the peer's core refuses one of ours",
            event: ev(
                "@hive:b.test:8448",
                json!({ "msgtype": "m.notice", "body": "refused", REFUSAL_KEY: { "sender": "@iris:a.test", "reason": "no", "event_id": "$mine" } }),
            ),
            want: Inbound::Refused {
                agent: name("iris"),
                of: "$mine".into(),
                reason: "no".into(),
            },
        },
        Case {
            name: "a refusal naming no event",
            event: ev(
                "@hive:b.test:8448",
                json!({ "msgtype": "m.notice", "body": "refused", REFUSAL_KEY: { "sender": "@iris:a.test", "reason": "no" } }),
            ),
            want: Inbound::Ignore,
        },
        Case {
            name: "a recipient name past the limit is cut in the reason",
            event: ev("@argus:b.test:8448", numbered(&"x".repeat(5000), 9)),
            want: refuse(
                9,
                &format!(
                    "{:?}@hive-a takes no messages from argus@hive-b: hive-a's hive.toml does not pair them (peers, hive = \"hive-b\", agents)",
                    "x".repeat(32)
                ),
            ),
        },
        Case {
            name: "a refusal from anyone but the peer's core",
            event: ev(
                "@argus:b.test:8448",
                json!({ "msgtype": "m.notice", "body": "refused", REFUSAL_KEY: { "sender": "@iris:a.test", "reason": "no", "event_id": "$mine" } }),
            ),
            want: Inbound::Ignore,
        },
        Case {
            name: "a refusal for an agent with no peer line (the peer cannot write to any agent so)",
            event: ev(
                "@hive:b.test:8448",
                json!({ "msgtype": "m.notice", "body": "refused", REFUSAL_KEY: { "sender": "@echo:a.test", "reason": "no", "event_id": "$mine" } }),
            ),
            want: Inbound::Ignore,
        },
    ];
    let zed = RemoteAgent {
        name: q("zed@hive-b"),
        user_id: user("@zed:b.test:8448"),
        display_name: "zed".into(),
        description: None,
        paired: false,
    };
    let directory = [argus_b(), zed];
    let local = |n: &AgentName| ["iris", "nemo", "echo"].contains(&n.as_str());
    let agent_of = |u: &UserId| {
        (u.server_name() == "a.test")
            .then(|| AgentName::parse(u.localpart()).ok())
            .flatten()
    };
    for c in cases {
        assert_eq!(
            inbound(&c.event, &peer_b(), &directory, local, agent_of, "hive-a"),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn an_agent_may_message_a_remote_agent_only_when_both_rules_pair_them() {
    struct Case {
        name: &'static str,
        from: AgentSpec,
        to: &'static str,
        published: bool,
        reply: bool,
        want: Result<(), ErrorCode>,
    }
    // From hive-a's side: peer_b() pairs iris (local) with argus (remote).
    let cases = [
        Case {
            name: "paired and listed",
            from: spec("iris", &["argus@hive-b"]),
            to: "argus@hive-b",
            published: true,
            reply: false,
            want: Ok(()),
        },
        Case {
            name: "paired but not in allowed_recipients",
            from: spec("iris", &[]),
            to: "argus@hive-b",
            published: true,
            reply: false,
            want: Err(ErrorCode::NotAllowed),
        },
        Case {
            name: "a reply needs no allowed_recipients entry",
            from: spec("iris", &[]),
            to: "argus@hive-b",
            published: true,
            reply: true,
            want: Ok(()),
        },
        Case {
            name: "listed but the peer line does not pair them",
            from: spec("nemo", &["argus@hive-b"]),
            to: "argus@hive-b",
            published: true,
            reply: false,
            want: Err(ErrorCode::NotAllowed),
        },
        Case {
            name: "a reply still needs the peer line",
            from: spec("nemo", &[]),
            to: "argus@hive-b",
            published: true,
            reply: true,
            want: Err(ErrorCode::NotAllowed),
        },
        Case {
            name: "not published by the peer",
            from: spec("iris", &["argus@hive-b"]),
            to: "argus@hive-b",
            published: false,
            reply: false,
            want: Err(ErrorCode::UnknownRecipient),
        },
        Case {
            name: "no such peer",
            from: spec("iris", &["argus@hive-z"]),
            to: "argus@hive-z",
            published: true,
            reply: false,
            want: Err(ErrorCode::UnknownRecipient),
        },
    ];
    for c in cases {
        let remote = argus_b();
        let got = outbound(
            &c.from,
            &q(c.to),
            &[peer_b()],
            c.published.then_some(&remote),
            c.reply,
        );
        assert_eq!(got.map_err(|r| r.code), c.want, "{}", c.name);
    }
}

#[test]
fn hive_check_names_remote_recipients_hive_toml_does_not_back() {
    struct Case {
        name: &'static str,
        from: AgentSpec,
        want: Vec<&'static str>,
    }
    let cases = [
        Case {
            name: "paired",
            from: spec("iris", &["argus@hive-b"]),
            want: vec![],
        },
        Case {
            name: "no such peer",
            from: spec("iris", &["argus@hive-z"]),
            want: vec!["argus@hive-z: hive-z is not a declared peer"],
        },
        Case {
            name: "not paired",
            from: spec("nemo", &["argus@hive-b"]),
            want: vec!["argus@hive-b: the peers line for hive-b does not pair nemo with argus"],
        },
        Case {
            name: "local recipients are not its business",
            from: spec("iris", &["echo"]),
            want: vec![],
        },
    ];
    for c in cases {
        assert_eq!(unbacked(&c.from, &[peer_b()]), c.want, "{}", c.name);
    }
}
