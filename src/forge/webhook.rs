//! A webhook delivery: its signature checked in constant time, its delivery id, its payload
//! read into a typed [`ForgeEvent`]. (Issue 17, part A, fills in the parsing.)

use serde::{Deserialize, Serialize};

use super::{ItemKind, ItemRef};

/// What happened to a pull request or an issue, as the hive follows it: the payload of a
/// delivery read once into this, stored, and handed on (the raw payload is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeEvent {
    pub item: ItemRef,
    pub kind: ItemKind,
    pub action: Action,
    /// The forge login of who did it (the sender).
    pub actor: String,
    pub title: String,
    /// The item's web page.
    pub url: String,
    /// The forge login of the item's author.
    pub author: String,
    pub labels: Vec<String>,
    /// A pull request's head commit.
    pub head_sha: Option<String>,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    Opened,
    Reopened,
    Edited,
    Closed,
    Merged,
    /// New commits on a pull request's head.
    Pushed,
    Labeled,
    ReviewRequested {
        reviewer: String,
    },
    Commented {
        body: String,
        url: String,
    },
    Reviewed {
        verdict: Verdict,
        body: String,
    },
}

/// A review's outcome as the forge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    ChangesRequested,
    Commented,
}
