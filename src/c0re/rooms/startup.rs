//! Start-up's decisions, as pure functions over what the store and the homeserver said: what is
//! already done and can be skipped, and what must be repaired.
//!
//! Rules:
//! - the store is trusted only when the space's alias still resolves to the space it recorded
//!   (a homeserver whose database was replaced has none of the recorded rooms or users):
//!   [`trusted`];
//! - an agent's identity is registered again only when the store has no mark of it, the mark
//!   names another user, or the store is not trusted; its profile is set again only when the
//!   wanted one differs from the one last set ([`identity_work`]);
//! - a room the trusted store knows is used at once, and repaired after the hive is ready; any
//!   other room is found by alias or created before it ([`room_start`]);
//! - members: an operator who is neither joined, invited nor banned is invited; an agent who is
//!   not joined is invited (unless already invited) and joined; a banned user stays banned
//!   ([`member_steps`]);
//! - the space links every room it lacks a live `m.space.child` of ([`missing_children`]);
//! - the approvals room: only operators may post, react, redact, invite, kick or ban, every
//!   configured operator is at 100, other keys are kept ([`locked_down`]).

use std::collections::{HashMap, HashSet};

use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use serde_json::json;

use crate::store::IdentityMark;

/// Whether the rooms and identities the store recorded are still the homeserver's: the space
/// the store knows is the one its alias resolves to.
pub fn trusted(stored_space: Option<&RoomId>, resolved_space: Option<&RoomId>) -> bool {
    matches!((stored_space, resolved_space), (Some(s), Some(r)) if s == r)
}

/// What an agent's identity needs at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityWork {
    /// Registered, and the profile is the one wanted.
    Nothing,
    /// Registered; the profile changed since it was last set.
    Profile,
    /// Register (idempotent: an existing user is fine) and set the profile.
    Register,
}

/// See the module's rules.
pub fn identity_work(
    trusted: bool,
    marked: Option<&IdentityMark>,
    want: &IdentityMark,
) -> IdentityWork {
    match marked {
        Some(m) if trusted && m.user_id == want.user_id => {
            if m.display_name == want.display_name && m.avatar_url == want.avatar_url {
                IdentityWork::Nothing
            } else {
                IdentityWork::Profile
            }
        }
        _ => IdentityWork::Register,
    }
}

/// How start-up comes by one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomStart {
    /// The trusted store knows it: used at once, repaired after the hive is ready.
    Known(OwnedRoomId),
    /// Found by alias or created (and repaired) before the hive is ready.
    Ensure,
}

/// See the module's rules.
pub fn room_start(trusted: bool, stored: Option<&OwnedRoomId>) -> RoomStart {
    match stored {
        Some(id) if trusted => RoomStart::Known(id.clone()),
        _ => RoomStart::Ensure,
    }
}

/// One membership request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberStep {
    /// The core invites the user.
    Invite(OwnedUserId),
    /// The agent joins (as itself).
    Join(OwnedUserId),
}

/// The requests that make `operators` and `agents` members of a room whose memberships are
/// `state` (user id → `join`, `invite`, `leave`, `ban` …), in order.
pub fn member_steps(
    state: &HashMap<String, String>,
    operators: &[OwnedUserId],
    agents: &[OwnedUserId],
) -> Vec<MemberStep> {
    let of = |u: &OwnedUserId| state.get(u.as_str()).map(String::as_str);
    let mut steps = Vec::new();
    for op in operators {
        if !matches!(of(op), Some("join" | "invite" | "ban")) {
            steps.push(MemberStep::Invite(op.clone()));
        }
    }
    for agent in agents {
        match of(agent) {
            Some("join" | "ban") => {}
            Some("invite") => steps.push(MemberStep::Join(agent.clone())),
            _ => {
                steps.push(MemberStep::Invite(agent.clone()));
                steps.push(MemberStep::Join(agent.clone()));
            }
        }
    }
    steps
}

/// The rooms of `rooms` the space has no live child link to; `linked` holds the state keys of
/// its `m.space.child` events whose content is not empty (an emptied one is a removed link).
pub fn missing_children(linked: &HashSet<String>, rooms: &[OwnedRoomId]) -> Vec<OwnedRoomId> {
    rooms
        .iter()
        .filter(|r| !linked.contains(r.as_str()))
        .cloned()
        .collect()
}

/// The approvals room's power levels locked down (see the module's rules), or `None` when
/// `pl` already is.
pub fn locked_down(pl: &serde_json::Value, operators: &[OwnedUserId]) -> Option<serde_json::Value> {
    let mut pl = pl.clone();
    let before = pl.clone();
    for key in [
        "events_default",
        "state_default",
        "redact",
        "invite",
        "kick",
        "ban",
    ] {
        pl[key] = json!(100);
    }
    pl["users_default"] = json!(0);
    if !pl["events"].is_object() {
        pl["events"] = json!({});
    }
    pl["events"]["m.reaction"] = json!(100);
    pl["events"]["m.room.redaction"] = json!(100);
    if !pl["users"].is_object() {
        pl["users"] = json!({});
    }
    for op in operators {
        pl["users"][op.as_str()] = json!(100);
    }
    (pl != before).then_some(pl)
}

#[cfg(test)]
mod tests;
