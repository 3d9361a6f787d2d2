//! hyperhive: a Matrix-native framework for a swarm of LLM agents.
//!
//! See `docs/architecture.md` for the map of this crate.
#![recursion_limit = "256"]

pub mod agent_spec;
pub mod brain;
pub mod c0re;
pub mod cli;
pub mod commands;
pub mod config;
pub mod configrepo;
pub mod failpoint;
pub mod forge;
pub mod fsutil;
pub mod harness;
pub mod homeserver;
pub mod install;
pub mod logging;
pub mod matrix;
pub mod mcp;
pub mod proc;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod wire;
