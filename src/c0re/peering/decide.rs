//! What crosses between hives, decided over data (docs/federation.md, "What crosses"): which
//! directory entries of a peer room count, what a peer's message is for, and whether an agent's
//! message may leave for a peer. Each is a pure function with its table of cases below.

use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use super::{PEER_KEY, REFUSAL_KEY, RemoteAgent};
use crate::agent_spec::{AgentName, AgentSpec, QualifiedName};
use crate::c0re::outbound::Refusal;
use crate::c0re::routing::TimelineEvent;
use crate::config::Peer;
use crate::wire::protocol::ErrorCode;

/// The highest stream number taken (2^53, JSON's exact integers): higher ones are nothing, so
/// no arithmetic on a number can overflow.
pub const MAX_SEQ: i64 = 1 << 53;

/// Longest description or display name taken from a peer's directory entry, in bytes.
pub const MAX_ENTRY_TEXT: usize = 512;

/// A directory entry (`org.hyperhive.agent` state) in a peer room, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The peer publishes this agent.
    Set(RemoteAgent),
    /// The peer withdrew it (empty content).
    Remove(AgentName),
    /// Not the peer's to say (our own entry, a third server, another hive's name) or malformed.
    Ignore,
}

/// Judges a directory entry with `state_key` and `content` sent by `sender` in `peer`'s room.
///
/// An entry counts only if its sender is on the peer's server and its key names an agent of
/// the peer's hive (`<agent>@<peer hive>`), whose `user_id` is on the peer's server too. So a
/// peer can never publish an agent of ours, of a third hive, or one living on another server.
pub fn entry(peer: &Peer, sender: &UserId, state_key: &str, content: &Value) -> Entry {
    if sender.server_name() != peer.server_name {
        return Entry::Ignore;
    }
    let Some(Ok(name)) = QualifiedName::parse(state_key) else {
        return Entry::Ignore;
    };
    if name.hive != peer.hive {
        return Entry::Ignore;
    }
    if content.as_object().is_none_or(|o| o.is_empty()) {
        return Entry::Remove(name.agent);
    }
    // Whether our peers line pairs it with one of ours: only those are listed to our agents
    // (the others are kept, bounded, to refuse their messages in order).
    let paired = peer.agents.values().any(|r| r.contains(&name.agent));
    let Some(user_id) = content
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(|u| UserId::parse(u).ok())
    else {
        return Entry::Ignore;
    };
    if user_id.server_name() != peer.server_name {
        return Entry::Ignore;
    }
    let text = |key: &str| {
        content
            .get(key)
            .and_then(Value::as_str)
            .map(|s| truncate(s, MAX_ENTRY_TEXT))
    };
    Entry::Set(RemoteAgent {
        display_name: text("display_name").unwrap_or_else(|| name.agent.to_string()),
        description: text("description"),
        name,
        user_id,
        paired,
    })
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A peer's message, numbered in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    pub epoch: String,
    pub seq: i64,
}

/// What a peer room event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A remote agent's message for a local agent that takes messages from it.
    Deliver {
        to: AgentName,
        from: QualifiedName,
        at: Numbered,
    },
    /// A numbered message this hive refuses: it still takes its place in the stream, and the
    /// sender is told `reason`.
    Refuse {
        at: Numbered,
        sender: OwnedUserId,
        reason: String,
    },
    /// The peer refused a message of ours, `of` (an event id): `agent`, who the refusal says
    /// sent it, is told once the store confirms `agent` did.
    Refused {
        agent: AgentName,
        of: String,
        reason: String,
    },
    /// A numbered message from a user of the peer the directory does not know: it takes no
    /// place in the stream (only published agents' messages do, so nobody else on the peer's
    /// server can take a number from them), and the directory is read again: an agent
    /// published while this hive was away is known then, and its message is read back.
    Stranger { sender: OwnedUserId },
    /// Nothing for anyone: our own events, the peer's humans, state, malformed messages.
    Ignore,
}

/// Judges an event in `peer`'s room. `directory` is what the peer publishes, `local` says
/// whether a name is an agent of this hive, `our_hive` names this hive in refusals, and
/// `agent_of` maps a local user to its agent.
///
/// Rules:
/// - only a message (with a body, not an edit) from a user on the peer's server is for anyone:
///   our own users' events, a third server's, and state are ignored here;
/// - a refusal (`org.hyperhive.peer_refusal`) counts only from the peer's core user, only for a
///   local agent the peer line pairs with someone of that hive, and only naming the refused
///   event (the caller checks that agent sent it);
/// - a numbered message (`org.hyperhive.peer`, epoch and seq ≥ 1) from a user the peer does
///   not publish is a [`Inbound::Stranger`]'s; from a published agent it is delivered to its
///   `to` when the peer line lets `to` talk with it, otherwise refused and the sender told why. Without a valid number it is ignored (it
///   could not be ordered, and answering it could loop);
/// - anything else (a human of the peer writing in the room) is ignored.
pub fn inbound(
    ev: &TimelineEvent,
    peer: &Peer,
    directory: &[RemoteAgent],
    local: impl Fn(&AgentName) -> bool,
    agent_of: impl Fn(&UserId) -> Option<AgentName>,
    our_hive: &str,
) -> Inbound {
    let is_message = ev.kind == "m.room.message"
        && ev.state_key.is_none()
        && ev.body().is_some()
        && ev
            .content
            .pointer("/m.relates_to/rel_type")
            .and_then(Value::as_str)
            != Some("m.replace");
    if !is_message || ev.sender.server_name() != peer.server_name {
        return Inbound::Ignore;
    }
    if let Some(r) = ev.content.get(REFUSAL_KEY) {
        if ev.sender != peer.bot {
            return Inbound::Ignore;
        }
        let agent = r
            .get("sender")
            .and_then(Value::as_str)
            .and_then(|u| UserId::parse(u).ok())
            .and_then(|u| agent_of(&u));
        let reason = r.get("reason").and_then(Value::as_str).map_or_else(
            || "no reason given".to_owned(),
            |s| truncate(s, MAX_ENTRY_TEXT),
        );
        let of = r.get("event_id").and_then(Value::as_str);
        return match (agent, of) {
            (Some(agent), Some(of)) if local(&agent) && peer.agents.contains_key(&agent) => {
                Inbound::Refused {
                    agent,
                    of: of.to_owned(),
                    reason,
                }
            }
            _ => Inbound::Ignore,
        };
    }
    let Some(p) = ev.content.get(PEER_KEY) else {
        return Inbound::Ignore;
    };
    let (Some(epoch), Some(seq)) = (
        p.get("epoch").and_then(Value::as_str),
        p.get("seq").and_then(Value::as_i64),
    ) else {
        return Inbound::Ignore;
    };
    if !(1..=MAX_SEQ).contains(&seq) || epoch.is_empty() || epoch.len() > 64 {
        return Inbound::Ignore;
    }
    let at = Numbered {
        epoch: epoch.to_owned(),
        seq,
    };
    let refuse = |reason: String| Inbound::Refuse {
        at: at.clone(),
        sender: ev.sender.clone(),
        reason,
    };
    let Some(from) = directory.iter().find(|a| a.user_id == ev.sender) else {
        return Inbound::Stranger {
            sender: ev.sender.clone(),
        };
    };
    let raw_to = p.get("to").and_then(Value::as_str).unwrap_or_default();
    // One answer whether or not the agent exists: a peer learns nothing of our unpaired agents.
    let not_paired = |to: &str| {
        format!(
            "{to}@{our_hive} takes no messages from {}: {our_hive}'s hive.toml does not pair them (peers, hive = \"{}\", agents)",
            from.name, peer.hive
        )
    };
    let Ok(to) = AgentName::parse(raw_to) else {
        return refuse(not_paired(&format!(
            "{:?}",
            truncate(raw_to, crate::agent_spec::MAX_NAME_LEN)
        )));
    };
    if !local(&to) || !peer.allows(&to, &from.name.agent) {
        return refuse(not_paired(to.as_str()));
    }
    Inbound::Deliver {
        to,
        from: from.name.clone(),
        at,
    }
}

/// Whether agent `from` may send to remote agent `to`. `remote` is `to`'s directory entry, if
/// its hive publishes it; a `reply` answers a message `to` sent (then `allowed_recipients`
/// need not list it: replying is always allowed, as it is within a hive).
///
/// Rules: the hive must be a declared peer; the peer must publish the agent; the peer line must
/// pair the two; and, unless replying, the sender's `allowed_recipients` must list `to`.
pub fn outbound(
    from: &AgentSpec,
    to: &QualifiedName,
    peers: &[Peer],
    remote: Option<&RemoteAgent>,
    reply: bool,
) -> Result<(), Refusal> {
    let refuse = |code, message: String| Err(Refusal { code, message });
    let Some(peer) = peers.iter().find(|p| p.hive == to.hive) else {
        return refuse(
            ErrorCode::UnknownRecipient,
            format!(
                "{} is not a peer of this hive (hive.toml [[peers]])",
                to.hive
            ),
        );
    };
    if !peer.allows(&from.name, &to.agent) {
        return refuse(
            ErrorCode::NotAllowed,
            format!(
                "{} may not talk with {to}: the hive's peers line for {} does not pair them",
                from.name, to.hive
            ),
        );
    }
    if remote.is_none() {
        return refuse(
            ErrorCode::UnknownRecipient,
            format!(
                "{} publishes no agent {} (yet): list_agents shows the ones it does",
                to.hive, to.agent
            ),
        );
    }
    if !reply && !from.remote_recipients.contains(to) {
        return refuse(
            ErrorCode::NotAllowed,
            format!(
                "{} may not message {to}: not in its allowed_recipients",
                from.name
            ),
        );
    }
    Ok(())
}

/// The `<agent>@<hive>` entries of `from`'s `allowed_recipients` that hive.toml does not back
/// (no such peer, or its line does not pair them): each would be refused at send. For
/// `hive check`.
pub fn unbacked(from: &AgentSpec, peers: &[Peer]) -> Vec<String> {
    from.remote_recipients
        .iter()
        .filter_map(|q| match peers.iter().find(|p| p.hive == q.hive) {
            None => Some(format!("{q}: {} is not a declared peer", q.hive)),
            Some(p) if !p.allows(&from.name, &q.agent) => Some(format!(
                "{q}: the peers line for {} does not pair {} with {}",
                q.hive, from.name, q.agent
            )),
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
