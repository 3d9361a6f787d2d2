use super::*;

fn user(s: &str) -> OwnedUserId {
    OwnedUserId::try_from(s).expect("a valid user id")
}

fn room(s: &str) -> OwnedRoomId {
    OwnedRoomId::try_from(s).expect("a valid room id")
}

#[test]
fn the_store_is_trusted_only_while_the_space_is_the_same() {
    struct Case {
        name: &'static str,
        stored: Option<&'static str>,
        resolved: Option<&'static str>,
        want: bool,
    }
    let cases = [
        Case {
            name: "a fresh data dir",
            stored: None,
            resolved: None,
            want: false,
        },
        Case {
            name: "a fresh data dir on a homeserver that has the space",
            stored: None,
            resolved: Some("!s:hive.test"),
            want: false,
        },
        Case {
            name: "the same space",
            stored: Some("!s:hive.test"),
            resolved: Some("!s:hive.test"),
            want: true,
        },
        Case {
            name: "the homeserver's database was replaced: no space",
            stored: Some("!s:hive.test"),
            resolved: None,
            want: false,
        },
        Case {
            name: "the alias points at another space",
            stored: Some("!s:hive.test"),
            resolved: Some("!t:hive.test"),
            want: false,
        },
    ];
    for c in cases {
        let (s, r) = (c.stored.map(room), c.resolved.map(room));
        assert_eq!(trusted(s.as_deref(), r.as_deref()), c.want, "{}", c.name);
    }
}

#[test]
fn an_identity_is_redone_only_when_it_changed_or_is_unknown() {
    struct Case {
        name: &'static str,
        trusted: bool,
        marked: Option<IdentityMark>,
        want: IdentityWork,
    }
    let want = IdentityMark {
        user_id: "@echo:hive.test".into(),
        display_name: "Echo".into(),
        avatar_url: Some("mxc://hive.test/a".into()),
    };
    let cases = [
        Case {
            name: "never registered",
            trusted: true,
            marked: None,
            want: IdentityWork::Register,
        },
        Case {
            name: "done, and unchanged",
            trusted: true,
            marked: Some(want.clone()),
            want: IdentityWork::Nothing,
        },
        Case {
            name: "the display name changed",
            trusted: true,
            marked: Some(IdentityMark {
                display_name: "Old".into(),
                ..want.clone()
            }),
            want: IdentityWork::Profile,
        },
        Case {
            name: "the avatar was removed",
            trusted: true,
            marked: Some(IdentityMark {
                avatar_url: None,
                ..want.clone()
            }),
            want: IdentityWork::Profile,
        },
        Case {
            name: "another user (the agent prefix changed)",
            trusted: true,
            marked: Some(IdentityMark {
                user_id: "@bot_echo:hive.test".into(),
                ..want.clone()
            }),
            want: IdentityWork::Register,
        },
        Case {
            name: "marked, but the homeserver is not the one the store knew",
            trusted: false,
            marked: Some(want.clone()),
            want: IdentityWork::Register,
        },
    ];
    for c in cases {
        assert_eq!(
            identity_work(c.trusted, c.marked.as_ref(), &want),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn a_known_room_is_used_at_once_only_from_a_trusted_store() {
    struct Case {
        name: &'static str,
        trusted: bool,
        stored: Option<&'static str>,
        want: RoomStart,
    }
    let cases = [
        Case {
            name: "known",
            trusted: true,
            stored: Some("!a:hive.test"),
            want: RoomStart::Known(room("!a:hive.test")),
        },
        Case {
            name: "a new agent's inbox",
            trusted: true,
            stored: None,
            want: RoomStart::Ensure,
        },
        Case {
            name: "stored, but the store is not trusted",
            trusted: false,
            stored: Some("!a:hive.test"),
            want: RoomStart::Ensure,
        },
    ];
    for c in cases {
        let stored = c.stored.map(room);
        assert_eq!(room_start(c.trusted, stored.as_ref()), c.want, "{}", c.name);
    }
}

#[test]
fn members_are_invited_and_joined_as_needed() {
    struct Case {
        name: &'static str,
        state: &'static [(&'static str, &'static str)],
        want: Vec<MemberStep>,
    }
    let (op, a, b) = (
        user("@op:hive.test"),
        user("@a:hive.test"),
        user("@b:hive.test"),
    );
    let cases = [
        Case {
            name: "an empty room: everyone invited, the agents joined",
            state: &[],
            want: vec![
                MemberStep::Invite(op.clone()),
                MemberStep::Invite(a.clone()),
                MemberStep::Join(a.clone()),
                MemberStep::Invite(b.clone()),
                MemberStep::Join(b.clone()),
            ],
        },
        Case {
            name: "a room just created with the invites: the agents only join",
            state: &[
                ("@op:hive.test", "invite"),
                ("@a:hive.test", "invite"),
                ("@b:hive.test", "invite"),
            ],
            want: vec![MemberStep::Join(a.clone()), MemberStep::Join(b.clone())],
        },
        Case {
            name: "all in: nothing to do",
            state: &[
                ("@op:hive.test", "join"),
                ("@a:hive.test", "join"),
                ("@b:hive.test", "join"),
            ],
            want: vec![],
        },
        Case {
            name: "an agent that left (or was kicked) comes back",
            state: &[
                ("@op:hive.test", "join"),
                ("@a:hive.test", "leave"),
                ("@b:hive.test", "join"),
            ],
            want: vec![MemberStep::Invite(a.clone()), MemberStep::Join(a.clone())],
        },
        Case {
            name: "the banned stay banned",
            state: &[
                ("@op:hive.test", "ban"),
                ("@a:hive.test", "ban"),
                ("@b:hive.test", "join"),
            ],
            want: vec![],
        },
        Case {
            name: "an operator who left is invited again, never joined",
            state: &[
                ("@op:hive.test", "leave"),
                ("@a:hive.test", "join"),
                ("@b:hive.test", "join"),
            ],
            want: vec![MemberStep::Invite(op.clone())],
        },
    ];
    for c in cases {
        let state: HashMap<String, String> = c
            .state
            .iter()
            .map(|(u, m)| ((*u).to_owned(), (*m).to_owned()))
            .collect();
        assert_eq!(
            member_steps(&state, std::slice::from_ref(&op), &[a.clone(), b.clone()]),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn the_space_links_only_what_it_lacks() {
    let rooms = [room("!a:hive.test"), room("!b:hive.test")];
    struct Case {
        name: &'static str,
        linked: &'static [&'static str],
        want: Vec<OwnedRoomId>,
    }
    let cases = [
        Case {
            name: "a new space",
            linked: &[],
            want: rooms.to_vec(),
        },
        Case {
            name: "one link removed",
            linked: &["!a:hive.test"],
            want: vec![room("!b:hive.test")],
        },
        Case {
            name: "all linked (and one room no longer the hive's)",
            linked: &["!a:hive.test", "!b:hive.test", "!gone:hive.test"],
            want: vec![],
        },
    ];
    for c in cases {
        let linked: HashSet<String> = c.linked.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(missing_children(&linked, &rooms), c.want, "{}", c.name);
    }
}

#[test]
fn the_approvals_room_is_locked_down_keeping_other_keys() {
    let op = user("@op:hive.test");
    let tight = json!({
        "users": { "@core:hive.test": 100, "@op:hive.test": 100 },
        "users_default": 0,
        "events_default": 100, "state_default": 100, "redact": 100,
        "invite": 100, "kick": 100, "ban": 100,
        "events": { "m.reaction": 100, "m.room.redaction": 100, "m.room.name": 50 },
        "notifications": { "room": 50 },
    });
    struct Case {
        name: &'static str,
        pl: serde_json::Value,
        want: Option<serde_json::Value>,
    }
    let mut loosened = tight.clone();
    loosened["events"]["m.reaction"] = json!(0);
    loosened["events_default"] = json!(0);
    let mut no_op = tight.clone();
    no_op["users"]
        .as_object_mut()
        .expect("an object")
        .remove("@op:hive.test");
    let cases = [
        Case {
            name: "already locked down",
            pl: tight.clone(),
            want: None,
        },
        Case {
            name: "loosened: reactions and posts open",
            pl: loosened,
            want: Some(tight.clone()),
        },
        Case {
            name: "an operator lost their level",
            pl: no_op,
            want: Some(tight.clone()),
        },
        Case {
            name: "nothing at all",
            pl: json!({}),
            want: Some(json!({
                "users": { "@op:hive.test": 100 },
                "users_default": 0,
                "events_default": 100, "state_default": 100, "redact": 100,
                "invite": 100, "kick": 100, "ban": 100,
                "events": { "m.reaction": 100, "m.room.redaction": 100 },
            })),
        },
    ];
    for c in cases {
        assert_eq!(
            locked_down(&c.pl, std::slice::from_ref(&op)),
            c.want,
            "{}",
            c.name
        );
    }
}
