//! The agents' side of hive-c0re: what an agent's harness reaches through its socket.
//!
//! - [`socket`]: the per-agent unix sockets (`c0re.sock` for the harness, `tools.sock` for
//!   `hive mcp`): bind, permissions, accept, frame limits, and the connection loops that read
//!   one request at a time and write its answer.
//! - [`session`]: one harness connection's requests, one function per request kind, each
//!   admitted first by a pure rule ([`session::admit`]).
//! - [`tools`]: the hive's tool catalog and each tool's execution under the caller's policy.
//! - [`effects`]: exactly once for a turn's side effects (a re-run turn gets the first answer).
//! - [`recv`]: a running turn pulls further messages from its inbox, delivered by that turn.
//! - `typing`: the typing notice and read receipt around a turn (a courtesy; failures logged).
//!
//! [`AgentState`] is what the store records about an agent's harness (shown by `hive status`
//! and `!hive status`).

pub mod config_tools;
pub mod effects;
pub mod kept_tools;
pub mod lifecycle;
pub mod listing;
pub mod logs;
pub mod memory_limit;
pub mod recv;
pub mod registry;
pub mod request_tools;
pub mod session;
pub mod socket;
pub mod supervisor;
pub mod tool_spec;
pub mod tools;
mod turn_stats;
mod typing;
mod wait;

pub use crate::store::{AgentState, UnknownState};

use crate::agent_spec::AgentName;
use crate::c0re::Core;

/// An agent's life: its socket served, its harness started and supervised.
impl Core {
    /// Serves `name`'s socket and, unless the runtime is external, starts and supervises its
    /// harness. Where the agent may have a uid of its own, it gets one (recorded in the store:
    /// the same uid at every start).
    pub fn start_agent(&self, name: &AgentName) {
        // Whether a manager stopped it (kept across restarts), before its socket or supervisor
        // runs: no tool call sees the default meanwhile.
        if let Some(entry) = self.agents().get(name) {
            match self.store().wanted(name.as_str()) {
                Ok(wanted) => entry.control.set_wanted(wanted),
                Err(e) => {
                    tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot read whether the agent was stopped; it is started")
                }
            }
        }
        let runtimes = self.agents().runtimes();
        if let (Some(rt), Some(entry)) = (&runtimes, self.agents().get(name))
            && rt.container.is_some()
        {
            // In a NixOS container the agent's root is its container's uid range: it reaches
            // its sockets through that uid's group, as an agent with a uid of its own does.
            entry.set_uid(crate::runtime::nixos_container::uid_base(name));
        } else if let (Some(rt), Some(entry)) = (&runtimes, self.agents().get(name))
            && rt.host.own_uids.is_ok()
        {
            let in_use = |uid: u32| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .is_some()
            };
            match self.store().agent_uid(
                name.as_str(),
                self.cfg()
                    .uid_base
                    .unwrap_or_else(|| crate::config::default_uid_base(self.data_dir())),
                in_use,
            ) {
                Ok(uid) => entry.set_uid(uid),
                Err(e) => {
                    tracing::error!(agent = %name, error = %format!("{e:#}"), "cannot allocate the agent's uid")
                }
            }
        }
        // The agent's tasks end with the hive, or when it leaves the registry (destroyed).
        let ends = self.cancel().child_token();
        if let Some(entry) = self.agents().get(name) {
            entry.tie_tasks(ends.clone());
        }
        let c = self.clone();
        let n = name.clone();
        self.agents().tasks().spawn(crate::c0re::tasks::supervised(
            format!("{name}'s socket"),
            crate::c0re::tasks::Scope::Agent,
            crate::c0re::tasks::Policy::default(),
            ends.clone(),
            crate::c0re::tasks::Fatal::default(),
            move || c.clone().serve_agent_socket(n.clone()),
        ));
        if let Some(rt) = runtimes {
            let c = self.clone();
            let n = name.clone();
            self.agents().tasks().spawn(crate::c0re::tasks::supervised(
                format!("{name}'s supervisor"),
                crate::c0re::tasks::Scope::Agent,
                crate::c0re::tasks::Policy::default(),
                ends.clone(),
                crate::c0re::tasks::Fatal::default(),
                move || {
                    let (c, rt, n) = (c.clone(), rt.clone(), n.clone());
                    async move {
                        supervisor::supervise(c, rt, n).await;
                        Ok(())
                    }
                },
            ));
        }
    }

    /// A spawned agent's first start: identity, rooms, socket, harness.
    pub async fn bring_up(&self, name: &AgentName) -> anyhow::Result<()> {
        self.set_up_new_agent(name).await?;
        self.start_agent(name);
        Ok(())
    }
}
