//! [`RoomKey`]: a room the core knows by the part it plays, and its stored form.

use crate::agent_spec::{AgentName, HiveName};
use crate::c0re::routing::RoomRole;

/// A room the core knows by the part it plays. Its string form ([`RoomKey::as_str`]) is the key
/// written to sqlite (`rooms.key`, `outbox.room_key`): `space`, `c0re`, `approvals`, `swarm`,
/// `agent:<name>`, `peer:<hive>`, `forge:<owner>/<repo>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomKey {
    /// The hive's space, holding every other room.
    Space,
    /// `#hive-c0re`: notices, heartbeats, `!hive` commands.
    Control,
    /// `#hive-approvals`: requests that wait for an operator.
    Approvals,
    /// `#hive-swarm`: a human's message there reaches every agent.
    Swarm,
    /// An agent's inbox.
    Inbox(AgentName),
    /// The room shared with a peer hive (`#peer-<hive>`, federated).
    Peer(HiveName),
    /// A followed repository's room (`#forge-<owner>-<repo>`): one thread per pull request or
    /// issue. The name is lowercased (forges compare names without case): make it with
    /// [`RoomKey::forge`].
    Forge(crate::forge::RepoName),
}

/// A stored room key that names no room the hive has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a room key (space, c0re, approvals, swarm, agent:<name>, peer:<hive> or forge:<owner>/<repo>)"
)]
pub struct UnknownRoomKey(String);

impl RoomKey {
    /// The stored form.
    pub fn as_str(&self) -> std::borrow::Cow<'static, str> {
        match self {
            RoomKey::Space => "space".into(),
            RoomKey::Control => "c0re".into(),
            RoomKey::Approvals => "approvals".into(),
            RoomKey::Swarm => "swarm".into(),
            RoomKey::Inbox(name) => format!("agent:{name}").into(),
            RoomKey::Peer(hive) => format!("peer:{hive}").into(),
            RoomKey::Forge(repo) => format!("forge:{repo}").into(),
        }
    }

    /// The room of `repo`, by its lowercased name (`Acme/Widgets` and `acme/widgets` are one).
    pub fn forge(repo: &crate::forge::RepoName) -> Self {
        let lower = repo.to_string().to_ascii_lowercase();
        RoomKey::Forge(
            crate::forge::RepoName::parse(&lower)
                .expect("a valid repository name lowercased is a valid repository name"),
        )
    }

    /// Reads a stored key back.
    pub fn parse(key: &str) -> Result<Self, UnknownRoomKey> {
        match key {
            "space" => Ok(RoomKey::Space),
            "c0re" => Ok(RoomKey::Control),
            "approvals" => Ok(RoomKey::Approvals),
            "swarm" => Ok(RoomKey::Swarm),
            _ => key
                .strip_prefix("agent:")
                .and_then(|n| AgentName::parse(n).ok())
                .map(RoomKey::Inbox)
                .or_else(|| {
                    key.strip_prefix("peer:")
                        .and_then(|h| HiveName::parse(h).ok())
                        .map(RoomKey::Peer)
                })
                .or_else(|| {
                    // Stored lowercased: any other form is not this hive's.
                    key.strip_prefix("forge:")
                        .filter(|r| !r.bytes().any(|b| b.is_ascii_uppercase()))
                        .and_then(|r| crate::forge::RepoName::parse(r).ok())
                        .map(RoomKey::Forge)
                })
                .ok_or_else(|| UnknownRoomKey(key.to_owned())),
        }
    }

    /// The role the room plays in routing.
    pub fn role(&self) -> RoomRole {
        match self {
            RoomKey::Space => RoomRole::Space,
            RoomKey::Control => RoomRole::Control,
            RoomKey::Approvals => RoomRole::Approvals,
            RoomKey::Swarm => RoomRole::Swarm,
            RoomKey::Inbox(name) => RoomRole::Inbox(name.clone()),
            RoomKey::Peer(hive) => RoomRole::Peer(hive.clone()),
            RoomKey::Forge(repo) => RoomRole::Forge(repo.clone()),
        }
    }
}

impl std::fmt::Display for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_keep_their_stored_form() {
        struct Case {
            name: &'static str,
            stored: &'static str,
            want: Result<RoomKey, ()>,
            role: Option<RoomRole>,
        }
        let echo = AgentName::parse("echo").expect("a valid name");
        let cases = [
            Case {
                name: "space",
                stored: "space",
                want: Ok(RoomKey::Space),
                role: Some(RoomRole::Space),
            },
            Case {
                name: "control",
                stored: "c0re",
                want: Ok(RoomKey::Control),
                role: Some(RoomRole::Control),
            },
            Case {
                name: "approvals",
                stored: "approvals",
                want: Ok(RoomKey::Approvals),
                role: Some(RoomRole::Approvals),
            },
            Case {
                name: "swarm",
                stored: "swarm",
                want: Ok(RoomKey::Swarm),
                role: Some(RoomRole::Swarm),
            },
            Case {
                name: "an inbox",
                stored: "agent:echo",
                want: Ok(RoomKey::Inbox(echo.clone())),
                role: Some(RoomRole::Inbox(echo.clone())),
            },
            Case {
                name: "a peer room",
                stored: "peer:hive-b",
                want: Ok(RoomKey::Peer(HiveName::parse("hive-b").unwrap())),
                role: Some(RoomRole::Peer(HiveName::parse("hive-b").unwrap())),
            },
            Case {
                name: "a repository's room",
                stored: "forge:acme/widgets.rs",
                want: Ok(RoomKey::forge(
                    &crate::forge::RepoName::parse("Acme/Widgets.rs").unwrap(),
                )),
                role: Some(RoomRole::Forge(
                    crate::forge::RepoName::parse("acme/widgets.rs").unwrap(),
                )),
            },
            Case {
                name: "a repository's room is stored lowercased",
                stored: "forge:Acme/widgets",
                want: Err(()),
                role: None,
            },
            Case {
                name: "a repository's room of no valid repository",
                stored: "forge:acme/../x",
                want: Err(()),
                role: None,
            },
            Case {
                name: "a repository's room without an owner",
                stored: "forge:widgets",
                want: Err(()),
                role: None,
            },
            Case {
                name: "a peer room of no valid hive name",
                stored: "peer:Hive B",
                want: Err(()),
                role: None,
            },
            Case {
                name: "an inbox of no valid name",
                stored: "agent:Not A Name",
                want: Err(()),
                role: None,
            },
            Case {
                name: "an inbox without a name",
                stored: "agent:",
                want: Err(()),
                role: None,
            },
            Case {
                name: "the alias is not the key",
                stored: "hive-c0re",
                want: Err(()),
                role: None,
            },
            Case {
                name: "keys are case-sensitive",
                stored: "Swarm",
                want: Err(()),
                role: None,
            },
            Case {
                name: "empty",
                stored: "",
                want: Err(()),
                role: None,
            },
        ];
        for c in cases {
            let got = RoomKey::parse(c.stored);
            match (&got, &c.want) {
                (Ok(key), Ok(want)) => {
                    assert_eq!(key, want, "{}", c.name);
                    assert_eq!(key.to_string(), c.stored, "{}: round trip", c.name);
                    assert_eq!(Some(key.role()), c.role, "{}", c.name);
                }
                (Err(e), Err(())) => {
                    assert!(
                        e.to_string().contains(&format!("{:?}", c.stored)),
                        "{}",
                        c.name
                    )
                }
                _ => panic!("{}: got {got:?}, want {:?}", c.name, c.want),
            }
        }
    }
}
