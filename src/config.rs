//! `hive.toml`: `RawConfig` (serde, every field optional) → `Config` (validated, typed).
//!
//! Every `HYPERHIVE_*` environment override is declared in [`env`]; nothing else reads the
//! environment for configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde::Deserialize;
use url::Url;

use crate::agent_spec::AgentName;

mod providers;
pub use providers::{
    Credential, MAX_KEY_FILE, Provider, ProviderKind, ProviderRefusal, RawProvider, check_base_url,
    is_provider_name, read_bounded, read_key_file,
};

/// The environment variables hyperhive reads, in one place.
pub mod env {
    /// The hive's data directory (default `./.hive`).
    pub const DATA_DIR: &str = "HYPERHIVE_DATA_DIR";
    /// The directory holding `bots/<name>/agent.toml` (default `./bots`).
    pub const BOTS_DIR: &str = "HYPERHIVE_BOTS_DIR";
    /// Path of `hive.toml` (default `./hive.toml` if it exists, else built-in defaults).
    pub const CONFIG: &str = "HYPERHIVE_CONFIG";
    /// Where to keep the Synapse venv (default `<data dir>/synapse/venv`); tests share one.
    pub const SYNAPSE_VENV: &str = "HYPERHIVE_SYNAPSE_VENV";
    /// A Python interpreter to create the Synapse venv with (default `python3`).
    pub const PYTHON: &str = "HYPERHIVE_PYTHON";
    /// The Claude Code CLI for `claude-code` brains (default: `claude` on PATH).
    pub const CLAUDE_CODE: &str = "HYPERHIVE_CLAUDE_CODE";
}

/// Synapse version the project is tested with; `hive up` installs exactly this one.
pub const SYNAPSE_VERSION: &str = "1.163.2";

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
}

/// What a model costs, in US dollars per million tokens (`[prices."<model>"]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input (prompt) tokens not read from a cache.
    pub input: f64,
    /// Output (completion) tokens.
    pub output: f64,
    /// Input tokens read from the provider's prompt cache (default: `input`).
    pub cache_read: Option<f64>,
    /// Input tokens written to the prompt cache (Anthropic; default: `input`).
    pub cache_write: Option<f64>,
}

/// The tokens of one model call, as the provider counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input not read from (or written to) a cache.
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Tokens {
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }
}

impl Price {
    /// The cost of `t`, in US dollars.
    pub fn cost(&self, t: &Tokens) -> f64 {
        (t.input as f64 * self.input
            + t.output as f64 * self.output
            + t.cache_read as f64 * self.cache_read.unwrap_or(self.input)
            + t.cache_write as f64 * self.cache_write.unwrap_or(self.input))
            / 1_000_000.0
    }
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// Unsandboxed local children.
    Process,
    /// Local children, each in a bubblewrap sandbox.
    Bwrap,
    External,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub hive_name: String,
    pub embedded: bool,
    pub server_name: OwnedServerName,
    pub homeserver_url: Url,
    pub homeserver_port: u16,
    pub appservice_id: String,
    pub listen: SocketAddr,
    pub appservice_url: Url,
    pub sender_localpart: String,
    pub agent_prefix: String,
    pub operators: Vec<OwnedUserId>,
    pub max_attempts: u32,
    pub heartbeat_secs: u64,
    /// `delivery.retention_days`.
    pub retention_days: u32,
    pub runtime: RuntimeKind,
    /// `runtime.allow_unsandboxed`: agents running code of their own may run without a sandbox.
    pub allow_unsandboxed: bool,
    /// `runtime.uid_base`; `None`: [`default_uid_base`] of the data dir.
    pub uid_base: Option<u32>,
    /// `[limits]`: the rates the core holds every agent to.
    pub rates: crate::c0re::limits::RateLimits,
    /// `limits.model_calls_per_day` and `limits.model_tokens_per_day`.
    pub model_calls_per_day: u64,
    pub model_tokens_per_day: u64,
    pub managers: Vec<AgentName>,
    pub approvals_required: u32,
    pub approver_min_power_level: i64,
    pub approval_ttl_secs: u64,
    /// Files holding secrets the filter guards (`secrets.files`).
    pub secret_files: Vec<PathBuf>,
    /// Model prices by model name (`[prices."<model>"]`).
    pub prices: std::collections::BTreeMap<String, Price>,
    /// Model servers by name (`[providers.<name>]`): the only hosts and keys model calls use.
    pub providers: std::collections::BTreeMap<String, Provider>,
    /// Where `hive.toml` came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
    /// The Claude Code CLI for `claude-code` agents: `HYPERHIVE_CLAUDE_CODE`, else the one
    /// `hive up` installed (absolute).
    pub claude_code: Option<PathBuf>,
}

/// One validation error, with the key it concerns.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The dotted key (`delivery.max_attempts`, `providers.<name>.base_url`).
    pub key: std::borrow::Cow<'static, str>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Reads `path` (if any) and validates it; every error is reported, each with its key.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (raw, source) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                let raw: RawConfig =
                    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e))?;
                (raw, Some(p.to_owned()))
            }
            None => (RawConfig::default(), None),
        };
        Self::validate(raw, source).map_err(|errs| {
            let list: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
            anyhow::anyhow!(
                "{} is invalid:\n{}",
                path.map_or("the built-in configuration".into(), |p| p
                    .display()
                    .to_string()),
                list.join("\n")
            )
        })
    }

    pub fn validate(raw: RawConfig, source: Option<PathBuf>) -> Result<Self, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut err = |key: &'static str, message: String| {
            errs.push(ConfigError {
                key: key.into(),
                message,
            })
        };

        let embedded = raw.homeserver.embedded.unwrap_or(true);
        let server_name_str = raw
            .homeserver
            .server_name
            .unwrap_or_else(|| "localhost".into());
        let server_name = match ServerName::parse(&server_name_str) {
            Ok(s) => Some(s),
            Err(e) => {
                err(
                    "homeserver.server_name",
                    format!("{server_name_str:?} is not a server name: {e}"),
                );
                None
            }
        };
        let port = raw.homeserver.port.unwrap_or(8008);
        let homeserver_url = match (raw.homeserver.url, embedded) {
            (Some(u), _) => u,
            (None, true) => {
                Url::parse(&format!("http://127.0.0.1:{port}/")).expect("a valid literal url")
            }
            (None, false) => {
                err(
                    "homeserver.url",
                    "required when homeserver.embedded = false".into(),
                );
                Url::parse("http://127.0.0.1/").expect("a valid literal url")
            }
        };
        if !matches!(homeserver_url.scheme(), "http" | "https") {
            err(
                "homeserver.url",
                format!("{homeserver_url} is not an http(s) URL"),
            );
        } else if homeserver_url.scheme() == "http" && !is_loopback_url(&homeserver_url) {
            // The as_token travels in every request: never in clear over a network.
            err(
                "homeserver.url",
                format!("{homeserver_url} is plain http to a host that is not loopback: use https"),
            );
        }
        if raw
            .runtime
            .uid_base
            .is_some_and(|b| !(1000..=u32::MAX - 1_000_000).contains(&b))
        {
            err(
                "runtime.uid_base",
                "must leave room for the agents above it and stay clear of system uids (>= 1000)"
                    .into(),
            );
        }
        let appservice_id = raw.appservice.id.unwrap_or_else(|| "hyperhive".into());
        if appservice_id.is_empty()
            || !appservice_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            err(
                "appservice.id",
                format!(
                    "{appservice_id:?} must be non-empty ascii letters, digits, '_', '-' or '.'"
                ),
            );
        }
        let listen = raw
            .appservice
            .listen
            .unwrap_or_else(|| "127.0.0.1:8009".parse().expect("a valid literal address"));
        let appservice_url = raw.appservice.url.unwrap_or_else(|| {
            Url::parse(&format!("http://{listen}/")).expect("a socket address makes a valid url")
        });
        let sender_localpart = raw
            .appservice
            .sender_localpart
            .unwrap_or_else(|| "hive".into());
        if !is_localpart(&sender_localpart) {
            err(
                "appservice.sender_localpart",
                format!("{sender_localpart:?} is not a valid localpart"),
            );
        }
        let agent_prefix = raw.appservice.agent_prefix.unwrap_or_default();
        if !agent_prefix.is_empty() && !is_localpart(&agent_prefix) {
            err(
                "appservice.agent_prefix",
                format!("{agent_prefix:?} may only hold a-z, 0-9, '_', '-', '.', '='"),
            );
        }
        let mut operators = Vec::new();
        let listed = raw
            .operators
            .users
            .unwrap_or_else(|| vec![format!("@operator:{server_name_str}")]);
        if listed.is_empty() {
            err(
                "operators.users",
                "at least one operator is required".into(),
            );
        }
        for u in listed {
            match UserId::parse(&u) {
                Ok(id) => {
                    if id.localpart() == sender_localpart
                        && Some(id.server_name()) == server_name.as_deref()
                    {
                        err(
                            "operators.users",
                            format!("{u} is the appservice's own user"),
                        );
                    }
                    operators.push(id);
                }
                Err(e) => err(
                    "operators.users",
                    format!("{u:?} is not a Matrix user ID: {e}"),
                ),
            }
        }
        let max_attempts = raw.delivery.max_attempts.unwrap_or(3);
        if max_attempts == 0 {
            err("delivery.max_attempts", "must be at least 1".into());
        }
        let retention_days = raw.delivery.retention_days.unwrap_or(30);
        if retention_days < 2 {
            // Shorter, and a homeserver outage could replay events whose ids are forgotten.
            err("delivery.retention_days", "must be at least 2".into());
        }
        let heartbeat_secs = raw.delivery.heartbeat_secs.unwrap_or(60);
        if heartbeat_secs == 0 {
            err("delivery.heartbeat_secs", "must be at least 1".into());
        }
        let hive_name = raw.hive.name.unwrap_or_else(|| "hyperhive".into());
        let mut managers = Vec::new();
        for m in raw
            .approvals
            .managers
            .unwrap_or_else(|| vec!["hm1nd".into()])
        {
            match AgentName::parse(&m) {
                Ok(n) => managers.push(n),
                Err(e) => err("approvals.managers", e.to_string()),
            }
        }
        let approvals_required = raw.approvals.required.unwrap_or(1);
        if approvals_required == 0 {
            err("approvals.required", "must be at least 1".into());
        } else if approvals_required as usize > operators.len() {
            err(
                "approvals.required",
                format!(
                    "{approvals_required} approvals can never be reached with {} operator(s)",
                    operators.len()
                ),
            );
        }
        let approval_ttl_secs = raw.approvals.ttl_secs.unwrap_or(86_400);
        if approval_ttl_secs == 0 {
            err("approvals.ttl_secs", "must be at least 1".into());
        }
        for (model, p) in &raw.prices {
            let all = [Some(p.input), Some(p.output), p.cache_read, p.cache_write];
            if all.into_iter().flatten().any(|v| !v.is_finite() || v < 0.0) {
                err(
                    "prices",
                    format!("[prices.{model:?}]: prices are US dollars per million tokens, >= 0"),
                );
            }
        }
        let rates = {
            use crate::c0re::limits::{Rate, RateLimits};
            let d = RateLimits::default();
            let l = &raw.limits;
            let r = RateLimits {
                messages: l
                    .messages_per_minute
                    .map_or(d.messages, |n| Rate::per_minute(n, n)),
                questions: l
                    .questions_per_hour
                    .map_or(d.questions, |n| Rate::per_hour(n, n.min(10))),
                reminders: l
                    .reminders_per_hour
                    .map_or(d.reminders, |n| Rate::per_hour(n, n.min(60))),
            };
            for (key, rate) in [
                ("limits.messages_per_minute", &r.messages),
                ("limits.questions_per_hour", &r.questions),
                ("limits.reminders_per_hour", &r.reminders),
            ] {
                if let Err(e) = rate.validate() {
                    err(key, e);
                }
            }
            r
        };
        let providers = providers::validate(
            raw.providers,
            |p| resolve_against(source.as_deref(), p),
            &mut errs,
        );
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Config {
            rates,
            model_calls_per_day: raw.limits.model_calls_per_day.unwrap_or(2000),
            model_tokens_per_day: raw.limits.model_tokens_per_day.unwrap_or(20_000_000),
            hive_name,
            embedded,
            server_name: server_name.expect("checked above").to_owned(),
            homeserver_url,
            homeserver_port: port,
            appservice_id,
            listen,
            appservice_url,
            sender_localpart,
            agent_prefix,
            operators,
            max_attempts,
            heartbeat_secs,
            retention_days,
            runtime: raw.runtime.kind.unwrap_or(RuntimeKind::Bwrap),
            allow_unsandboxed: raw.runtime.allow_unsandboxed.unwrap_or(false),
            uid_base: raw.runtime.uid_base,
            managers,
            approvals_required,
            approver_min_power_level: raw.approvals.min_power_level.unwrap_or(100),
            approval_ttl_secs,
            // Relative paths in hive.toml are relative to the file itself.
            secret_files: raw
                .secrets
                .files
                .unwrap_or_default()
                .into_iter()
                .map(|p| resolve_against(source.as_deref(), p))
                .collect(),
            prices: raw.prices,
            providers,
            claude_code: std::env::var_os(env::CLAUDE_CODE)
                .map(PathBuf::from)
                .map(|p| std::path::absolute(&p).unwrap_or(p)),
            source,
        })
    }

    /// `hive.toml` to use: `--config`/`HYPERHIVE_CONFIG`, else `./hive.toml` if present
    /// (absolute either way).
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        explicit.map(Path::to_owned).or_else(|| {
            let p = PathBuf::from("hive.toml");
            p.is_file().then(|| std::path::absolute(&p).unwrap_or(p))
        })
    }

    /// The price of `model`: its own `[prices]` entry, else the longest entry it extends with a
    /// dated or tagged suffix (`claude-sonnet-4-5` prices `claude-sonnet-4-5-20250929`).
    pub fn price_of(&self, model: &str) -> Option<&Price> {
        self.prices.get(model).or_else(|| {
            self.prices
                .iter()
                .filter(|(k, _)| {
                    model
                        .strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.starts_with(['-', '@', ':']) && rest.len() > 1)
                })
                .max_by_key(|(k, _)| k.len())
                .map(|(_, p)| p)
        })
    }

    pub fn bot_user_id(&self) -> OwnedUserId {
        UserId::parse(format!("@{}:{}", self.sender_localpart, self.server_name))
            .expect("validated localpart and server name")
    }

    pub fn agent_user_id(&self, name: &AgentName) -> OwnedUserId {
        UserId::parse(format!(
            "@{}{}:{}",
            self.agent_prefix, name, self.server_name
        ))
        .expect("agent names and the prefix are valid localpart characters")
    }

    /// The agent a local user ID belongs to, if it is in the agents' namespace.
    pub fn agent_of(&self, user: &UserId) -> Option<AgentName> {
        if user.server_name() != self.server_name || self.is_operator(user) {
            return None;
        }
        let rest = user.localpart().strip_prefix(self.agent_prefix.as_str())?;
        AgentName::parse(rest).ok()
    }

    pub fn is_operator(&self, user: &UserId) -> bool {
        self.operators.iter().any(|o| o == user)
    }

    /// The exclusive user namespace regex for the registration: every valid agent localpart on
    /// this server, except the configured local operators.
    pub fn user_namespace_regex(&self) -> String {
        let server = regex_escape(self.server_name.as_str());
        let carve: Vec<String> = self
            .operators
            .iter()
            .filter(|o| o.server_name() == self.server_name)
            .map(|o| regex_escape(o.localpart()))
            .collect();
        let lookahead = if carve.is_empty() {
            String::new()
        } else {
            format!("(?!(?:{}):)", carve.join("|"))
        };
        format!(
            "@{lookahead}{}[a-z][a-z0-9_-]{{0,31}}:{server}$",
            regex_escape(&self.agent_prefix)
        )
    }

    pub fn alias_namespace_regexes(&self) -> Vec<String> {
        let server = regex_escape(self.server_name.as_str());
        vec![
            format!("#hive-.*:{server}$"),
            format!("#agent-.*:{server}$"),
        ]
    }

    /// Where agents run, in one line (`hive check`, `hive status`).
    pub fn describe_runtime(&self) -> String {
        let opt_in = if self.allow_unsandboxed {
            "runtime.allow_unsandboxed = true: agents running code of their own run even without a sandbox"
        } else {
            "agents running code of their own are refused where no sandbox can run"
        };
        match self.runtime {
            RuntimeKind::Bwrap => format!("bwrap (every agent sandboxed); {opt_in}"),
            RuntimeKind::Process => format!("process (agents unsandboxed); {opt_in}"),
            RuntimeKind::External => "external (harnesses started by someone else)".into(),
        }
    }

    /// A printable rendering of the resolved configuration (`hive check`).
    pub fn render(&self) -> String {
        let ops: Vec<String> = self.operators.iter().map(|o| o.to_string()).collect();
        format!(
            "config file        {}\nhive name          {}\nhomeserver         {} ({})\nserver name        {}\nappservice         id {} listening on {} (homeserver reaches it at {})\nbot user           {}\nagent namespace    {}\noperators          {}\ndelivery           max_attempts {}, heartbeat every {} s\nruntime            {}\n",
            self.source
                .as_ref()
                .map_or("(built-in defaults)".into(), |p| p.display().to_string()),
            self.hive_name,
            self.homeserver_url,
            if self.embedded {
                "embedded Synapse, started by `hive up`"
            } else {
                "external"
            },
            self.server_name,
            self.appservice_id,
            self.listen,
            self.appservice_url,
            self.bot_user_id(),
            self.user_namespace_regex(),
            ops.join(", "),
            self.max_attempts,
            self.heartbeat_secs,
            self.describe_runtime(),
        )
    }
}

/// The first of a hive's agent uids when hive.toml sets none: a block of 100 in 600000–999999
/// chosen by the data dir, so two hives on one host (or two test hives at once) do not share
/// uids (each kills its agents' leftover processes by uid before a start).
pub fn default_uid_base(data_dir: &Path) -> u32 {
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data_dir.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    600_000 + (h % 4000) as u32 * 100
}

/// Whether `url`'s host is this machine's loopback (127.0.0.0/8, ::1, `localhost`).
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A path written in hive.toml, made absolute: relative to the file's directory (or to the
/// working directory for the built-in defaults).
fn resolve_against(config_file: Option<&Path>, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        return p;
    }
    let base = config_file
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_default();
    let joined = base.join(&p);
    std::path::absolute(&joined).unwrap_or(joined)
}

fn is_localpart(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.=/+".contains(c))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Refuses to go on when `listen` is not loopback and the URL is plain http (the hs_token would
/// cross a network in clear text).
pub fn check_transport(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.listen.ip().is_loopback() && cfg.appservice_url.scheme() == "http" {
        bail!(
            "appservice.listen {} is not loopback: put TLS in front of it and set appservice.url to https",
            cfg.listen
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::validate(toml::from_str(text).expect("test toml parses"), None)
    }

    #[test]
    fn defaults() {
        let c = cfg("").unwrap();
        assert_eq!(c.server_name.as_str(), "localhost");
        assert_eq!(c.operators[0].as_str(), "@operator:localhost");
        assert_eq!(c.homeserver_url.as_str(), "http://127.0.0.1:8008/");
        assert_eq!(
            c.user_namespace_regex(),
            "@(?!(?:operator):)[a-z][a-z0-9_-]{0,31}:localhost$"
        );
    }

    #[test]
    fn errors_name_keys() {
        let cases = [
            (
                "[homeserver]\nserver_name = \"bad name!\"",
                "homeserver.server_name",
            ),
            ("[homeserver]\nembedded = false", "homeserver.url"),
            ("[operators]\nusers = [\"nope\"]", "operators.users"),
            ("[operators]\nusers = []", "operators.users"),
            ("[delivery]\nmax_attempts = 0", "delivery.max_attempts"),
            (
                "[appservice]\nsender_localpart = \"Hive Bot\"",
                "appservice.sender_localpart",
            ),
            ("[appservice]\nid = \"a b\"", "appservice.id"),
            ("[prices.m]\ninput = -1.0\noutput = 2.0", "prices"),
            (
                "[homeserver]\nembedded = false\nurl = \"http://matrix.example.org/\"",
                "homeserver.url",
            ),
            ("[runtime]\nuid_base = 0", "runtime.uid_base"),
        ];
        for (text, key) in cases {
            let errs = cfg(text).expect_err(text);
            assert!(errs.iter().any(|e| e.key == key), "{text}: {errs:?}");
        }
    }

    #[test]
    fn the_homeserver_is_loopback_or_https() {
        for (url, ok) in [
            ("http://127.0.0.1:8008/", true),
            ("http://127.0.0.5/", true),
            ("http://[::1]:8008/", true),
            ("http://localhost:8008/", true),
            ("https://matrix.example.org/", true),
            ("http://matrix.example.org/", false),
            ("http://10.0.0.1:8008/", false),
            ("http://localhost.example.org/", false),
        ] {
            let r = cfg(&format!(
                "[homeserver]\nembedded = false\nurl = \"{url}\"\n"
            ));
            assert_eq!(r.is_ok(), ok, "{url}: {r:?}");
        }
    }

    #[test]
    fn default_uid_bases_differ_by_data_dir() {
        let a = default_uid_base(Path::new("/srv/hive-a/.hive"));
        let b = default_uid_base(Path::new("/srv/hive-b/.hive"));
        assert_ne!(a, b);
        for base in [a, b] {
            assert!(
                (600_000..1_000_000).contains(&base) && base % 100 == 0,
                "{base}"
            );
        }
        assert_eq!(
            a,
            default_uid_base(Path::new("/srv/hive-a/.hive")),
            "stable"
        );
    }

    #[test]
    fn sandboxed_by_default() {
        let c = cfg("").unwrap();
        assert_eq!(c.runtime, RuntimeKind::Bwrap);
        assert!(!c.allow_unsandboxed);
    }

    #[test]
    fn prices() {
        let c =
            cfg("[prices.\"claude-x\"]\ninput = 3.0\noutput = 15.0\ncache_read = 0.3\n").unwrap();
        let p = &c.prices["claude-x"];
        let t = Tokens {
            input: 1_000,
            output: 2_000,
            cache_read: 10_000,
            cache_write: 1_000,
        };
        // 1000×3 + 2000×15 + 10000×0.3 + 1000×3 (cache writes default to the input price)
        assert!((p.cost(&t) - 0.039).abs() < 1e-12, "{}", p.cost(&t));
        assert_eq!(c.price_of("claude-x"), Some(p));
        assert_eq!(c.price_of("claude-x-20250929"), Some(p), "a dated id");
        assert_eq!(c.price_of("claude-xl"), None);
        assert_eq!(c.price_of("claude-x-"), None);
        assert_eq!(t.total(), 14_000);
        let missing = toml::from_str::<RawConfig>("[prices.m]\ninput = 1.0\n").unwrap_err();
        assert!(missing.message().contains("output"), "{missing}");
    }

    #[test]
    fn agent_identity() {
        let c = cfg("[appservice]\nagent_prefix = \"hh_\"").unwrap();
        let n = AgentName::parse("argus").unwrap();
        let id = c.agent_user_id(&n);
        assert_eq!(id.as_str(), "@hh_argus:localhost");
        assert_eq!(c.agent_of(&id), Some(n));
        assert_eq!(
            c.agent_of(UserId::parse("@argus:localhost").unwrap().as_ref()),
            None
        );
        assert_eq!(
            c.agent_of(UserId::parse("@hh_argus:elsewhere").unwrap().as_ref()),
            None
        );
        let d = cfg("").unwrap();
        assert_eq!(
            d.agent_of(UserId::parse("@operator:localhost").unwrap().as_ref()),
            None
        );
        assert_eq!(
            d.agent_of(UserId::parse("@hive:localhost").unwrap().as_ref()),
            None
        );
    }
}
