//! `hive.toml` as serde reads it: every field optional, unknown fields refused. [`super::Config`]
//! is what the rest of the house sees; nothing else reads these.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use super::{Price, RawProvider, RuntimeKind};
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub hive: RawHive,
    #[serde(default)]
    pub homeserver: RawHomeserver,
    #[serde(default)]
    pub appservice: RawAppservice,
    #[serde(default)]
    pub operators: RawOperators,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub approvals: RawApprovals,
    #[serde(default)]
    pub secrets: RawSecrets,
    #[serde(default)]
    pub limits: RawLimits,
    /// Prices of models by name, to record what each model call costs.
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, Price>,
    /// Model servers agents may call, by name (`[providers.<name>]`, see `providers`).
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, RawProvider>,
    /// The embedded Synapse's TLS federation listener (`[federation]`, see `federation`).
    pub federation: Option<RawFederation>,
    /// The hives this one federates with (`[[peers]]`); none: nothing federates.
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    /// What the operator's console shows besides the rooms (`[console]`).
    #[serde(default)]
    pub console: RawConsole,
    /// The operator's web console (`[web]`, see `web`).
    #[serde(default)]
    pub web: super::RawWeb,
    /// The forges the hive follows (`[forge]`, see `forge`).
    #[serde(default)]
    pub forge: super::RawForge,
}

/// `[console]`: the live status message in `#hive-c0re` and the agents' presence (both on by
/// default; `hive bench` measures the homeserver floor with them off and on).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// One pinned message in `#hive-c0re`, edited in place as the hive changes (default true).
    pub status_message: Option<bool>,
    /// Each agent's presence: online, unavailable while it thinks, offline (default true).
    pub presence: Option<bool>,
    /// An agent shows as typing while a long turn runs (default true).
    pub typing: Option<bool>,
    /// An agent marks the messages it handled read (default true).
    pub read_receipts: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    /// Files whose contents are secrets: never posted to a room (besides every `api_key_file`).
    pub files: Option<Vec<PathBuf>>,
}

/// Per-agent limits the core enforces, whatever an agent's config says (`[limits]`). The
/// defaults are far above what a working agent does; they stop a runaway one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Messages (replies and `send_message`) per minute (default 120).
    pub messages_per_minute: Option<u32>,
    /// `ask_operator` questions per hour (default 30, at most 10 at once).
    pub questions_per_hour: Option<u32>,
    /// `remind` calls per hour (default 120, at most 60 at once).
    pub reminders_per_hour: Option<u32>,
    /// Forge writes (comments, labels, review requests, reviews) per hour (default 60, at
    /// most 20 at once).
    pub forge_writes_per_hour: Option<u32>,
    /// Model calls per agent per UTC day, a ceiling over the agent's own `limits` (default 2000).
    pub model_calls_per_day: Option<u64>,
    /// Model tokens per agent per UTC day, a ceiling likewise (default 20,000,000).
    pub model_tokens_per_day: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// Agents that may request config changes and spawns (default `["hm1nd"]`).
    pub managers: Option<Vec<String>>,
    /// Distinct operators whose ✓ a request needs (default 1).
    pub required: Option<u32>,
    /// Power level an approver needs in `#hive-approvals` (default 100).
    pub min_power_level: Option<i64>,
    /// Seconds before an unanswered request expires (default 86400).
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHive {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHomeserver {
    /// `true`: `hive up` installs and supervises a local Synapse. `false`: use `url`.
    pub embedded: Option<bool>,
    pub server_name: Option<String>,
    /// Client-server API base URL.
    pub url: Option<Url>,
    /// Port of the embedded Synapse's client listener (loopback only).
    pub port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppservice {
    pub id: Option<String>,
    /// Where hive-c0re listens for the homeserver's transactions.
    pub listen: Option<SocketAddr>,
    /// The URL the homeserver uses to reach `listen` (default `http://<listen>`).
    pub url: Option<Url>,
    /// Localpart of the appservice's own user (room creator, notices).
    pub sender_localpart: Option<String>,
    /// Prefix of every agent's localpart (`""`: agents are `@<name>:<server>`).
    pub agent_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperators {
    /// Matrix IDs of the operators. Default: `@operator:<server_name>`.
    pub users: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    /// Deliveries of one message before it is dead-lettered.
    pub max_attempts: Option<u32>,
    /// Seconds between heartbeats through `#hive-c0re`.
    pub heartbeat_secs: Option<u64>,
    /// Days the core keeps what it no longer needs: seen event ids, the bodies of delivered
    /// messages, delivered reminders, sent posts, a turn's recorded effects (default 30; the
    /// audit and model usage are kept for good).
    pub retention_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    /// `bwrap` (default): each agent a supervised local child in a bubblewrap sandbox.
    /// `process`: unsandboxed children. `external`: agents' harnesses are started by someone
    /// else (systemd, a debugger, `hive bench`) and connect to their socket.
    pub kind: Option<RuntimeKind>,
    /// Run agents that execute code of their own (a `command` brain, Claude Code with
    /// `builtin_tools`, declared MCP servers) without a sandbox when none can run. Off by
    /// default: such code could read whatever the hive's user can (docs/security.md).
    pub allow_unsandboxed: Option<bool>,
    /// First uid of the agents' own uids when the hive runs as root without a sandbox (each
    /// agent gets `uid_base + n`, recorded in the core's database; default: a block of 100 in
    /// 600000–999999 chosen by the data dir, so two hives on one host never share uids).
    pub uid_base: Option<u32>,
    /// Every agent's resource limits unless its agent.toml says otherwise (`[resources]`:
    /// `memory`, `cpu`, `tasks`; `agent_spec/resources.rs`).
    #[serde(default)]
    pub resources: crate::agent_spec::resources::RawResources,
}

/// `[federation]`: the embedded homeserver's TLS listener for other homeservers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFederation {
    /// The TLS port (default: the port in `homeserver.server_name`, else 8448).
    pub port: Option<u16>,
    /// Addresses the listener binds (default `["0.0.0.0"]`).
    pub bind: Option<Vec<std::net::IpAddr>>,
    /// The certificate chain (PEM) other homeservers verify: a real one in production.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// A CA file (PEM) to trust instead of the system's for peers' certificates (tests).
    pub ca: Option<PathBuf>,
}

/// `[[peers]]`: one remote hive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// The remote hive's name (its `hive.name`).
    pub hive: String,
    /// Its homeserver's server name (`hive-b.example.org`, `localhost:8483`).
    pub server_name: String,
    /// Which local agents may talk with which of its agents (default: none).
    #[serde(default)]
    pub agents: Vec<RawPeerAgents>,
    /// The localpart of its core's user (its `appservice.sender_localpart`; default `hive`).
    pub bot: Option<String>,
}

/// One line of a peer's `agents`: `{ local = "argus", remote = ["iris"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerAgents {
    pub local: String,
    #[serde(default)]
    pub remote: Vec<String>,
}
