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

/// Whether `name` is a model provider's name (declared in hive.toml `[providers.<name>]`,
/// named by `provider = "<name>"`): `[a-z][a-z0-9_-]{0,31}`.
pub fn is_provider_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}
