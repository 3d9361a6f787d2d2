//! `hive.toml`: `RawConfig` (serde, every field optional) → `Config` (validated, typed).
//!
//! Every `HYPERHIVE_*` environment override is declared in [`env`]; nothing else reads the
//! environment for configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde::Deserialize;
use url::Url;

use crate::agent_spec::AgentName;

mod federation;
mod providers;
mod rates;
mod raw;
pub use rates::{BadRate, Kind, Rate, RateLimits};
mod forge;
mod validate;
mod web;
pub use federation::{DEFAULT_FEDERATION_PORT, Federation, HiveName, Peer};
pub use forge::{ForgeConfig, ForgeServer, RawForge, Route};
pub use providers::{
    Credential, MAX_KEY_FILE, Provider, ProviderKind, ProviderRefusal, RawProvider, check_base_url,
    is_provider_name, read_key_file,
};
pub use raw::*;
pub use validate::ConfigError;
pub use web::{RawWeb, WebConfig};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// Unsandboxed local children.
    Process,
    /// Local children, each in a bubblewrap sandbox.
    Bwrap,
    /// Each agent in a NixOS container of its own (`runtime/nixos_container.rs`), declared by
    /// the NixOS module (`nix/module.nix`).
    NixosContainer,
    External,
}

/// `[console]` of hive.toml: what the core shows the operator besides the rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSwitches {
    /// `console.status_message`: the pinned status message in `#hive-c0re`, edited in place.
    pub status_message: bool,
    /// `console.presence`: each agent's presence as its harness connects, thinks and stops.
    pub presence: bool,
    /// `console.typing`: an agent shows as typing while a long turn runs.
    pub typing: bool,
    /// `console.read_receipts`: an agent marks the messages it handled read.
    pub read_receipts: bool,
}

impl Default for ConsoleSwitches {
    fn default() -> Self {
        Self {
            status_message: true,
            presence: true,
            typing: true,
            read_receipts: true,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `hive.name`: names the space (any text), and, as a `HiveName`, this hive to its peers.
    pub hive_name: String,
    /// `hive.name` as a hive name, if it is one (always, when peers are declared).
    pub hive_id: Option<HiveName>,
    /// `[federation]`: the embedded homeserver's TLS listener (only with peers).
    pub federation: Option<Federation>,
    /// `[[peers]]`: the hives this one federates with; empty: nothing federates.
    pub peers: Vec<Peer>,
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
    /// `[runtime.resources]`: every agent's resource limits unless its `[resources]` says
    /// otherwise.
    pub resources: crate::agent_spec::resources::Resources,
    /// `[limits]`: the rates the core holds every agent to.
    pub rates: RateLimits,
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
    /// `[console]`: the live status message and the agents' presence.
    pub console: ConsoleSwitches,
    /// `[web]`: the operator's web console.
    pub web: WebConfig,
    /// `[forge]`: the forges the hive follows, and the routes of their items.
    pub forge: ForgeConfig,
    /// Where `hive.toml` came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
    /// The Claude Code CLI for `claude-code` agents: `HYPERHIVE_CLAUDE_CODE`, else the one
    /// `hive up` installed (absolute).
    pub claude_code: Option<PathBuf>,
}

impl Config {
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
            format!("#peer-.*:{server}$"),
            format!("#forge-.*:{server}$"),
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
            RuntimeKind::NixosContainer => {
                format!("nixos-container (each agent in a NixOS container); {opt_in}")
            }
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
        ) + self.describe_resources().as_str()
            + self.describe_federation().as_str()
            + self.describe_console().as_str()
            + self.web.describe().as_str()
            + self.forge.describe(&self.appservice_url).as_str()
    }

    /// Every agent's default resource limits in one line (`hive check`).
    pub fn describe_resources(&self) -> String {
        let r = self.resources;
        format!(
            "resources          per agent unless its [resources] says otherwise: memory {} MiB, cpu {}%, tasks {}\n",
            r.memory_bytes >> 20,
            r.cpu_percent,
            r.tasks
        )
    }

    /// The console switches in one line (`hive check`).
    pub fn describe_console(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "console            status message {}, presence {}\n",
            on(self.console.status_message),
            on(self.console.presence)
        )
    }

    /// Federation in a few lines (`hive check`): the listener and each peer, or that it is off.
    pub fn describe_federation(&self) -> String {
        if self.peers.is_empty() {
            return "federation         off (no [[peers]]): every room stays on this server\n"
                .into();
        }
        let mut out = match &self.federation {
            Some(f) => format!(
                "federation         TLS listener on port {} ({}), certificate {}\n",
                f.port,
                f.bind
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                f.tls_cert.display()
            ),
            None => "federation         by the external homeserver\n".into(),
        };
        for p in &self.peers {
            let pairs: Vec<String> = p
                .agents
                .iter()
                .map(|(l, r)| {
                    let r: Vec<&str> = r.iter().map(|n| n.as_str()).collect();
                    format!("{l} ↔ {}", r.join(" "))
                })
                .collect();
            out.push_str(&format!(
                "peer               {} at {} (its core {}): {}\n",
                p.hive,
                p.server_name,
                p.bot,
                if pairs.is_empty() {
                    "no agents".into()
                } else {
                    pairs.join(", ")
                }
            ));
        }
        out
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
            (
                "[runtime.resources]\nmemory = \"1Q\"",
                "runtime.resources.memory",
            ),
            ("[runtime.resources]\ncpu = \"1\"", "runtime.resources.cpu"),
            ("[runtime.resources]\ntasks = 1", "runtime.resources.tasks"),
        ];
        for (text, key) in cases {
            let errs = cfg(text).expect_err(text);
            assert!(errs.iter().any(|e| e.key == key), "{text}: {errs:?}");
        }
    }

    #[test]
    fn every_runtime_is_accepted() {
        for (text, kind) in [
            (
                "[runtime]\nkind = \"nixos-container\"",
                RuntimeKind::NixosContainer,
            ),
            ("[runtime]\nkind = \"process\"", RuntimeKind::Process),
            ("", RuntimeKind::Bwrap),
        ] {
            assert_eq!(cfg(text).expect(text).runtime, kind, "{text}");
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
        assert_eq!(c.resources, crate::agent_spec::resources::DEFAULT);
        let c = cfg("[runtime.resources]\nmemory = \"512M\"\ncpu = \"50%\"").unwrap();
        assert_eq!(
            (
                c.resources.memory_bytes,
                c.resources.cpu_percent,
                c.resources.tasks
            ),
            (512 << 20, 50, 512)
        );
        assert!(
            c.render().contains("memory 512 MiB, cpu 50%, tasks 512"),
            "{}",
            c.render()
        );
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
