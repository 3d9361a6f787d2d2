//! Runtimes say how agents' harnesses start: `process` (a local child), `bwrap` (the same,
//! inside a bubblewrap sandbox) and `external` (someone else starts the harness; the core only
//! serves its socket). Where an agent runs is a pure decision ([`placement`]); its output goes
//! to a rotating log ([`log`]).
//!
//! A runtime builds a command and nothing more: it never imports the core. Supervision
//! (starting the child tied to the core, restart with backoff, crash reports, crash loops,
//! restart on a new config) is the core's, in `c0re/agents/supervisor.rs`, the same for every
//! runtime.

pub mod bwrap;
pub mod limits;
pub mod log;
pub mod nixos_container;
pub mod placement;
pub mod process;

use std::path::PathBuf;

use crate::agent_spec::AgentName;

/// Everything a runtime needs to start one agent's harness.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    /// Unsandboxed as root: the agent's own uid (and gid of the same number).
    pub uid: Option<u32>,
    /// Where the harness's programs are (`hive-agent`, `hive`, `claude`): beside the running
    /// `hive`, or copies in `<data>/bin` that an agent's own uid can reach.
    pub bin: Option<std::path::PathBuf>,
    /// The Claude Code CLI on the host (`Config::claude_code`), for `claude-code` brains.
    pub claude_code: Option<std::path::PathBuf>,
    pub name: AgentName,
    /// The bot's directory (`agent.toml`, `prompt.md`).
    pub spec_dir: PathBuf,
    /// The directory holding the agent's socket.
    pub socket_dir: PathBuf,
    /// The agent's only writable directory; survives restarts.
    pub state_dir: PathBuf,
    /// Where the harness's stderr goes.
    pub log: PathBuf,
    /// What the agent may use: its `[resources]` over the hive's `[runtime.resources]`.
    pub resources: crate::agent_spec::resources::Resources,
}

/// The ways this hive can start harnesses, and what the machine allows (found out at start).
pub struct Runtimes {
    pub host: placement::Host,
    /// Present when a sandbox can run (`runtime.kind = "bwrap"`).
    pub bwrap: Option<bwrap::Bwrap>,
    /// Present when NixOS containers can run (`runtime.kind = "nixos-container"`).
    pub container: Option<nixos_container::NixosContainer>,
    /// Copies of the harness's programs reachable by agents' own uids (`<data>/bin`), when
    /// agents can have them.
    pub bin: Option<std::path::PathBuf>,
}

/// How to start one agent's harness.
pub trait Runtime: Send + Sync {
    fn name(&self) -> &'static str;
    /// The command that starts `launch`'s harness (stdio and lifetime are the supervisor's).
    fn command(&self, launch: &AgentLaunch) -> anyhow::Result<tokio::process::Command>;
    /// What must run, in order, before the harness starts (each must succeed): data the
    /// supervisor executes, so a runtime decides and the supervisor acts. None by default.
    fn before_start(&self, _launch: &AgentLaunch) -> anyhow::Result<Vec<std::process::Command>> {
        Ok(Vec::new())
    }
    /// What must run, in order, once a harness has ended or been stopped (and before its files
    /// are prepared for the next start): a NixOS container is stopped, so nothing of the agent
    /// runs on while the core thinks it stopped, or while its state dir is re-owned. `gone`:
    /// the harness should be dead already (a crash, a cancelled turn, a failed start), so
    /// whatever is left is killed, not asked to finish. None by default.
    fn after_stop(&self, _launch: &AgentLaunch, _gone: bool) -> Vec<std::process::Command> {
        Vec::new()
    }
    /// How the harness ended, said for a person (a wrapper may encode a signal in its code).
    fn describe_exit(&self, status: std::process::ExitStatus) -> String {
        status.to_string()
    }
}
