//! Agent names: the only way a name reaches the filesystem or a Matrix ID.

use std::fmt;

use serde::Deserialize;

/// Longest agent name, in bytes (all ASCII).
pub const MAX_NAME_LEN: usize = 32;

/// Names the core keeps for itself: they can never be agents.
pub const RESERVED_NAMES: &[&str] = &["hive", "operator", "c0re", "core", "admin"];

/// A validated agent name: `[a-z][a-z0-9_-]{0,31}`.
///
/// This is the only way a name reaches the filesystem or a Matrix ID, so `..`, `/`, empty names,
/// upper case and unicode look-alikes can never be turned into paths or user IDs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("agent name is empty")]
    Empty,
    #[error("agent name {0:?} is longer than {MAX_NAME_LEN} bytes")]
    TooLong(String),
    #[error("agent name {0:?} must start with a lowercase ascii letter")]
    BadStart(String),
    #[error(
        "agent name {name:?} has a forbidden character {ch:?} (allowed: lowercase a-z, 0-9, '_' and '-')"
    )]
    BadChar { name: String, ch: char },
    #[error("agent name {0:?} is reserved for the hive itself")]
    Reserved(String),
}

impl AgentName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let first = name.chars().next().ok_or(NameError::Empty)?;
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(name.to_owned()));
        }
        if !first.is_ascii_lowercase() {
            return Err(NameError::BadStart(name.to_owned()));
        }
        if let Some(ch) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Err(NameError::BadChar {
                name: name.to_owned(),
                ch,
            });
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(NameError::Reserved(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgentName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AgentName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A hive's name (`hive.name` of a hive with peers, `peers[i].hive`): `[a-z][a-z0-9_-]{0,31}`,
/// so that it can name a room alias (`#peer-<hive>`) and qualify an agent (`argus@hive-b`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HiveName(String);

impl HiveName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "{name:?} is not a hive name ([a-z][a-z0-9_-], at most 32 bytes)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HiveName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent of another hive, `<agent>@<hive>` (`iris@hive-b`): how agents name remote agents in
/// `allowed_recipients`, `send_message` and `list_agents`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    pub agent: AgentName,
    pub hive: HiveName,
}

impl QualifiedName {
    /// `None` when `text` has no `@` (a local name, or a Matrix ID `@…`); `Some(Err)` when it
    /// has one but is not `<agent>@<hive>`.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let (agent, hive) = text.split_once('@')?;
        if agent.is_empty() {
            return None;
        }
        Some(
            AgentName::parse(agent)
                .map_err(|e| format!("{text:?}: {e}"))
                .and_then(|agent| {
                    let hive = HiveName::parse(hive).map_err(|e| format!("{text:?}: {e}"))?;
                    Ok(Self { agent, hive })
                }),
        )
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.agent, self.hive)
    }
}

/// One entry of `allowed_recipients`: an agent of this hive, or one of a peer (`iris@hive-b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Local(AgentName),
    Remote(QualifiedName),
}

impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match QualifiedName::parse(&s) {
            Some(q) => q.map(Recipient::Remote).map_err(serde::de::Error::custom),
            None => AgentName::parse(&s)
                .map(Recipient::Local)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Whether `name` is a model provider's name (declared in hive.toml `[providers.<name>]`,
/// named by `provider = "<name>"`): `[a-z][a-z0-9_-]{0,31}`.
pub fn is_provider_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}
