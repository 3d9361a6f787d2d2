//! Runtimes run agents' harnesses. This release has `process` (supervised local children) and
//! `external` (someone else starts the harness; the core only serves its socket).

pub mod process;

use std::path::PathBuf;

use crate::agent_spec::AgentName;

/// Everything a runtime needs to start one agent's harness.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    pub name: AgentName,
    /// The bot's directory (`agent.toml`, `prompt.md`).
    pub spec_dir: PathBuf,
    /// The directory holding the agent's socket.
    pub socket_dir: PathBuf,
    /// The agent's only writable directory; survives restarts.
    pub state_dir: PathBuf,
    /// Where the harness's stderr goes.
    pub log: PathBuf,
}
