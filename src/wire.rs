//! The socket between an agent's harness and hive-c0re, what both sides share about it: the
//! protocol ([`protocol`]: newline-delimited JSON, one request, one response), the harness's
//! client ([`client`]), and where the sockets are ([`socket_path`], [`tools_socket_path`]).
//!
//! Used by the core (which serves the socket), the harness and its brains, and `hive mcp`; it
//! imports nothing of either side.

pub mod client;
pub mod protocol;

use std::path::{Path, PathBuf};

/// Where an agent's harness finds its socket, given the socket directory.
pub fn socket_path(socket_dir: &Path) -> PathBuf {
    socket_dir.join(protocol::SOCKET_NAME)
}

/// The tools-only socket (`hive mcp`) beside the agent's socket at `socket`.
pub fn tools_socket_path(socket: &Path) -> PathBuf {
    socket.with_file_name(protocol::TOOLS_SOCKET_NAME)
}
