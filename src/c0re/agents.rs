//! The agents' side of hive-c0re: what an agent's harness reaches through its socket.
//!
//! - [`socket`]: the per-agent unix sockets (`c0re.sock` for the harness, `tools.sock` for
//!   `hive mcp`): bind, permissions, accept, frame limits, and the connection loops that read
//!   one request at a time and write its answer.
//! - [`session`]: one harness connection's requests, one function per request kind, each
//!   admitted first by a pure rule ([`session::admit`]).
//! - [`tools`]: the hive's tool catalog and each tool's execution under the caller's policy.
//! - [`effects`]: exactly once for a turn's side effects (a re-run turn gets the first answer).
//! - `typing`: the typing notice and read receipt around a turn (a courtesy; failures logged).
//!
//! [`AgentState`] is what the store records about an agent's harness (shown by `hive status`
//! and `!hive status`).

pub mod effects;
pub mod session;
pub mod socket;
pub mod supervisor;
pub mod tools;
mod typing;
mod wait;

pub use crate::store::{AgentState, UnknownState};
