//! `bots/<name>/agent.toml`: parse and validate one declarative agent.
//!
//! `agent.toml` is data, never code. The core parses it with serde; unknown keys are errors
//! so that a typo (`alowed_recipients`) never silently widens or narrows a policy.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod forge;
mod name;
pub mod resources;
mod toml_keys;
use toml_keys::{key_at, unknown_field_offset};
pub mod schedule;
pub use name::{
    AgentName, HiveName, MAX_NAME_LEN, NameError, QualifiedName, RESERVED_NAMES, Recipient,
    is_provider_name,
};

/// The raw file, as serde reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentToml {
    /// Must equal the directory name when present.
    pub name: Option<AgentName>,
    pub display_name: Option<String>,
    /// An `mxc://` URI for the agent's avatar.
    pub avatar_url: Option<String>,
    /// What the agent does, one line: shown as its room's topic.
    pub description: Option<String>,
    /// Agents this one may message (the operator is always allowed): names of this hive's
    /// agents, and `<agent>@<hive>` for a peer's.
    #[serde(default)]
    pub allowed_recipients: Vec<Recipient>,
    pub brain: BrainSpec,
    /// Recurring prompts delivered into the agent's inbox (`schedule.rs`).
    #[serde(default)]
    pub schedules: Vec<schedule::RawSchedule>,
    /// Forge tools the agent may call, on which repositories (`[[forge.grant]]`, `forge.rs`).
    #[serde(default)]
    pub forge: forge::RawAgentForge,
    /// What the agent's sandbox may use (`[resources]`, `resources.rs`); unset keys take the
    /// hive's `[runtime.resources]`.
    #[serde(default)]
    pub resources: resources::RawResources,
}

/// Which brain thinks for the agent, and its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BrainSpec {
    /// Deterministic rules: for tests and demos, no network.
    Scripted {
        #[serde(default)]
        rules: Vec<ScriptRule>,
    },
    /// Runs an executable per message with the JSON protocol in docs/brains.md.
    Command {
        /// argv; the first element is the program. Relative paths resolve against the bot's dir.
        command: Vec<String>,
        #[serde(default = "default_command_timeout")]
        timeout_secs: u64,
    },
    /// The Claude Code CLI, headless, with the hive's tools over `hive mcp`. Its model calls go
    /// through a loopback proxy in the harness to hive-c0re, which adds the key.
    ClaudeCode {
        /// Default: the CLI's own default model.
        model: Option<String>,
        /// The hive.toml `[providers.<name>]` the core calls the model through, with its key
        /// (default: `anthropic`, if declared).
        provider: Option<String>,
        /// Claude Code's built-in tools the agent may use (default none), e.g. `["Read"]`.
        #[serde(default)]
        builtin_tools: Vec<String>,
        /// Agentic turns per message (`--max-turns`, default 8).
        max_turns: Option<u32>,
        #[serde(default)]
        limits: ModelLimits,
        /// More stdio MCP servers offered to the model beside the hive's own, by name.
        #[serde(default)]
        mcp_servers: std::collections::BTreeMap<String, McpServerSpec>,
    },
    /// The Anthropic Messages API with tools; model calls go through hive-c0re like `openai`.
    Anthropic {
        model: String,
        /// The hive.toml `[providers.<name>]` the core calls the model through, with its key
        /// (default: `anthropic`, if declared).
        provider: Option<String>,
        #[serde(default)]
        stream: bool,
        /// Past exchanges (message and final reply) given to the model (default 10; 0: none).
        history: Option<usize>,
        #[serde(default)]
        limits: ModelLimits,
        /// More stdio MCP servers offered to the model beside the hive's own, by name.
        #[serde(default)]
        mcp_servers: std::collections::BTreeMap<String, McpServerSpec>,
    },
    /// OpenAI-compatible chat completions with tools (OpenAI, ollama, llama.cpp, vLLM). The
    /// harness never holds the key: model calls go through hive-c0re (docs/brains.md).
    Openai {
        model: String,
        /// The hive.toml `[providers.<name>]` the core calls the model through, with its key
        /// (default: `openai`, if declared).
        provider: Option<String>,
        /// Ask for a streamed response (server-sent events), assembled by the core.
        #[serde(default)]
        stream: bool,
        /// Past exchanges (message and final reply) given to the model (default 10; 0: none).
        history: Option<usize>,
        #[serde(default)]
        limits: ModelLimits,
        /// More stdio MCP servers offered to the model beside the hive's own, by name.
        #[serde(default)]
        mcp_servers: std::collections::BTreeMap<String, McpServerSpec>,
    },
}

/// A stdio MCP server an agent declares (it runs inside the agent's runtime, like its brain).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerSpec {
    /// argv; a first element with a `/` is relative to the bot's directory.
    pub command: Vec<String>,
    /// Environment for the server (visible in the config and its diffs: no secrets here).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

impl McpServerSpec {
    /// The program and its arguments; a program with a `/` is relative to the bot's directory,
    /// others are looked up on `PATH`.
    pub fn argv(&self, bot_dir: &Path) -> Option<(PathBuf, &[String])> {
        let (first, args) = self.command.split_first()?;
        let program = if first.contains('/') {
            bot_dir.join(first)
        } else {
            PathBuf::from(first)
        };
        Some((program, args))
    }
}

/// Budgets of a model-backed agent, enforced by hive-c0re.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimits {
    /// Model calls per inbound message (default 8).
    pub calls_per_message: Option<u64>,
    /// Tokens (prompt + completion) per inbound message.
    pub tokens_per_message: Option<u64>,
    /// Model calls per day (UTC).
    pub calls_per_day: Option<u64>,
    /// Tokens per day (UTC).
    pub tokens_per_day: Option<u64>,
    /// US dollars per inbound message, priced by hive.toml's `[prices]`.
    pub usd_per_message: Option<f64>,
    /// US dollars per day (UTC), priced by hive.toml's `[prices]`.
    pub usd_per_day: Option<f64>,
}

fn default_command_timeout() -> u64 {
    120
}

impl BrainSpec {
    /// The MCP servers a model-backed agent declares (`None` for scripted and command brains).
    pub fn mcp_servers(&self) -> Option<&std::collections::BTreeMap<String, McpServerSpec>> {
        match self {
            BrainSpec::ClaudeCode { mcp_servers, .. }
            | BrainSpec::Anthropic { mcp_servers, .. }
            | BrainSpec::Openai { mcp_servers, .. } => Some(mcp_servers),
            BrainSpec::Scripted { .. } | BrainSpec::Command { .. } => None,
        }
    }

    /// The budgets of a model-backed agent.
    pub fn limits(&self) -> Option<&ModelLimits> {
        match self {
            BrainSpec::ClaudeCode { limits, .. }
            | BrainSpec::Anthropic { limits, .. }
            | BrainSpec::Openai { limits, .. } => Some(limits),
            BrainSpec::Scripted { .. } | BrainSpec::Command { .. } => None,
        }
    }

    /// Past exchanges an in-process model brain keeps (`None`: the default).
    pub fn history(&self) -> Option<usize> {
        match self {
            BrainSpec::Anthropic { history, .. } | BrainSpec::Openai { history, .. } => *history,
            _ => None,
        }
    }

    /// The hive.toml provider a model brain names (`None`: its API's default, or no model).
    pub fn provider(&self) -> Option<&str> {
        match self {
            BrainSpec::ClaudeCode { provider, .. }
            | BrainSpec::Anthropic { provider, .. }
            | BrainSpec::Openai { provider, .. } => provider.as_deref(),
            BrainSpec::Scripted { .. } | BrainSpec::Command { .. } => None,
        }
    }

    /// The model the config names (`claude-code` may leave it to the CLI).
    pub fn model(&self) -> Option<&str> {
        match self {
            BrainSpec::ClaudeCode { model, .. } => model.as_deref(),
            BrainSpec::Anthropic { model, .. } | BrainSpec::Openai { model, .. } => Some(model),
            BrainSpec::Scripted { .. } | BrainSpec::Command { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            BrainSpec::Scripted { .. } => "scripted",
            BrainSpec::Command { .. } => "command",
            BrainSpec::ClaudeCode { .. } => "claude-code",
            BrainSpec::Anthropic { .. } => "anthropic",
            BrainSpec::Openai { .. } => "openai",
        }
    }
}

/// One scripted rule: the first rule whose matcher fits the message runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRule {
    /// Case-insensitive exact match of the whole (trimmed) message.
    pub equals: Option<String>,
    /// Case-insensitive prefix; the rest of the message is `{rest}` in templates.
    pub prefix: Option<String>,
    /// Case-insensitive substring.
    pub contains: Option<String>,
    /// Reply in the room the message came from. Templates: {body} {rest} {sender} {agent}.
    pub reply: Option<String>,
    /// Send a message to another agent (by name) or `operator`.
    pub send_to: Option<String>,
    pub send: Option<String>,
    /// Take this turn without answering (benchmarks, quiet agents).
    #[serde(default)]
    pub silent: bool,
}

/// A validated agent: what the rest of the hive uses.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: AgentName,
    pub dir: PathBuf,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub description: Option<String>,
    /// The local entries of `allowed_recipients`.
    pub allowed_recipients: Vec<AgentName>,
    /// The `<agent>@<hive>` entries of `allowed_recipients`: agents of peers (the peer's line in
    /// hive.toml must allow the pair as well).
    pub remote_recipients: Vec<QualifiedName>,
    pub brain: BrainSpec,
    pub prompt: Option<String>,
    /// Recurring prompts, validated (`[[schedules]]`).
    pub schedules: Vec<schedule::Schedule>,
    /// Forge tools granted, by repository (`[[forge.grant]]`).
    pub forge_grants: Vec<forge::ForgeGrant>,
    /// `[resources]`, validated; [`resources::AgentResources::over`] the hive's defaults.
    pub resources: resources::AgentResources,
}

/// An error in one bot's files, with the key it concerns.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {key}: {message}")]
pub struct SpecError {
    pub path: PathBuf,
    pub key: String,
    pub message: String,
}

impl SpecError {
    fn new(path: &Path, key: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl AgentSpec {
    /// Parses `dir/agent.toml` (and `dir/prompt.md` if present). `dir`'s last component is the name.
    pub fn load(dir: &Path) -> Result<Self, Vec<SpecError>> {
        let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let name = AgentName::parse(dir_name)
            .map_err(|e| vec![SpecError::new(dir, "name", e.to_string())])?;
        // The directory must be a real directory, not a symlink that points out of bots/.
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(vec![SpecError::new(
                    dir,
                    "name",
                    "bot directory must not be a symlink",
                )]);
            }
            Err(e) => return Err(vec![SpecError::new(dir, "name", e.to_string())]),
            Ok(_) => {}
        }
        Self::load_as(name, dir)
    }

    /// Parses `dir/agent.toml` (and `dir/prompt.md`) as agent `name`, wherever `dir` is (a
    /// rendered config generation).
    pub fn load_as(name: AgentName, dir: &Path) -> Result<Self, Vec<SpecError>> {
        let file = dir.join("agent.toml");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| vec![SpecError::new(&file, "-", format!("cannot read: {e}"))])?;
        Self::parse(name, dir, &file, &text)
    }

    pub fn parse(
        name: AgentName,
        dir: &Path,
        file: &Path,
        text: &str,
    ) -> Result<Self, Vec<SpecError>> {
        if let Some(errors) = moved_keys(file, text) {
            return Err(errors);
        }
        let raw: AgentToml = toml::from_str(text).map_err(|e| {
            let key = unknown_field_offset(text, e.message())
                .or_else(|| e.span().map(|s| s.start))
                .map_or_else(|| "-".into(), |offset| key_at(text, offset));
            vec![SpecError::new(file, &key, e.message().to_owned())]
        })?;
        let mut errors = Vec::new();
        if let Some(declared) = &raw.name
            && declared != &name
        {
            errors.push(SpecError::new(
                file,
                "name",
                format!("says {declared:?} but the directory is {name:?}"),
            ));
        }
        if raw
            .allowed_recipients
            .contains(&Recipient::Local(name.clone()))
        {
            errors.push(SpecError::new(
                file,
                "allowed_recipients",
                "an agent cannot list itself",
            ));
        }
        if let Some(url) = &raw.avatar_url
            && !url.starts_with("mxc://")
        {
            errors.push(SpecError::new(
                file,
                "avatar_url",
                format!("{url:?} is not an mxc:// URI"),
            ));
        }
        match &raw.brain {
            BrainSpec::Scripted { rules } => {
                for (i, r) in rules.iter().enumerate() {
                    let key = format!("brain.rules[{i}]");
                    let matchers = [&r.equals, &r.prefix, &r.contains]
                        .iter()
                        .filter(|m| m.is_some())
                        .count();
                    if matchers > 1 {
                        errors.push(SpecError::new(
                            file,
                            &key,
                            "use at most one of equals, prefix, contains",
                        ));
                    }
                    if r.send_to.is_some() != r.send.is_some() {
                        errors.push(SpecError::new(file, &key, "send_to and send go together"));
                    }
                    if r.reply.is_none() && r.send.is_none() && !r.silent {
                        errors.push(SpecError::new(
                            file,
                            &key,
                            "a rule needs reply, send or silent = true",
                        ));
                    }
                }
            }
            BrainSpec::Command {
                command,
                timeout_secs,
            } => {
                if command.is_empty() {
                    errors.push(SpecError::new(file, "brain.command", "must name a program"));
                }
                if *timeout_secs == 0 {
                    errors.push(SpecError::new(
                        file,
                        "brain.timeout_secs",
                        "must be at least 1",
                    ));
                }
            }
            BrainSpec::ClaudeCode { builtin_tools, .. } => {
                for t in builtin_tools {
                    if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
                        errors.push(SpecError::new(
                            file,
                            "brain.builtin_tools",
                            format!("{t:?} is not a Claude Code tool name"),
                        ));
                    }
                }
            }
            _ => {}
        }
        if let Some(p) = raw.brain.provider()
            && !is_provider_name(p)
        {
            errors.push(SpecError::new(
                file,
                "brain.provider",
                format!("{p:?} is not a provider name: lowercase [a-z][a-z0-9_-]{{0,31}}"),
            ));
        }
        for (name, server) in raw.brain.mcp_servers().into_iter().flatten() {
            let key = format!("brain.mcp_servers.{name}");
            // `__` separates server and tool in `mcp__<server>__<tool>`.
            if name == "hive" || name.contains("__") || AgentName::parse(name).is_err() {
                errors.push(SpecError::new(
                    file,
                    &key,
                    "a server name is lowercase [a-z][a-z0-9_-]{0,31}, without `__`, and not `hive`",
                ));
            }
            if server.command.is_empty() {
                errors.push(SpecError::new(file, &key, "command must name a program"));
            }
        }
        let schedules = match schedule::validate(&raw.schedules, schedule::interval_floor()) {
            Ok(s) => s,
            Err(refused) => {
                for (i, e) in refused {
                    errors.push(SpecError::new(
                        file,
                        &format!("schedules[{i}]"),
                        e.to_string(),
                    ));
                }
                Vec::new()
            }
        };
        let forge_grants = match forge::validate(&raw.forge) {
            Ok(g) => g,
            Err(refused) => {
                for (key, message) in refused {
                    errors.push(SpecError::new(file, &key, message));
                }
                Vec::new()
            }
        };
        let resources = match resources::validate(&raw.resources, "resources") {
            Ok(r) => r,
            Err(refused) => {
                for (key, message) in refused {
                    errors.push(SpecError::new(file, &key, message));
                }
                Default::default()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let prompt_path = dir.join("prompt.md");
        let prompt = match std::fs::read_to_string(&prompt_path) {
            Ok(p) => Some(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(vec![SpecError::new(
                    &prompt_path,
                    "-",
                    format!("cannot read: {e}"),
                )]);
            }
        };
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for r in raw.allowed_recipients {
            match r {
                Recipient::Local(n) if !local.contains(&n) => local.push(n),
                Recipient::Remote(q) if !remote.contains(&q) => remote.push(q),
                _ => {}
            }
        }
        Ok(Self {
            display_name: raw.display_name.unwrap_or_else(|| name.to_string()),
            name,
            dir: dir.to_owned(),
            avatar_url: raw.avatar_url,
            description: raw.description,
            allowed_recipients: local,
            remote_recipients: remote,
            brain: raw.brain,
            prompt,
            schedules,
            forge_grants,
            resources,
        })
    }
}

/// Keys of `[brain]` that moved to hive.toml's `[providers.<name>]` (an approved agent.toml
/// may no longer choose a host or a key file), each with what to declare there instead.
const MOVED_TO_PROVIDERS: &[(&str, &str)] = &[
    ("base_url", "api_key_file"),
    ("api_key_file", "api_key_file"),
    ("oauth_token_file", "oauth_token_file"),
];

/// An error for each moved key in `text`'s `[brain]`, saying where it went (`None`: none there,
/// or the text is not TOML, which the typed parse reports).
fn moved_keys(file: &Path, text: &str) -> Option<Vec<SpecError>> {
    let table: toml::Table = text.parse().ok()?;
    let brain = table.get("brain")?.as_table()?;
    let errors: Vec<SpecError> = MOVED_TO_PROVIDERS
        .iter()
        .filter(|(key, _)| brain.contains_key(*key))
        .map(|(key, secret)| {
            SpecError::new(
                file,
                &format!("brain.{key}"),
                format!(
                    "moved to hive.toml: declare [providers.<name>] with base_url and {secret} and name it here with provider = \"<name>\""
                ),
            )
        })
        .collect();
    (!errors.is_empty()).then_some(errors)
}

/// All agents under `bots_dir`, sorted by name; every error from every bot is returned.
pub fn load_all(bots_dir: &Path) -> Result<Vec<AgentSpec>, Vec<SpecError>> {
    let entries = std::fs::read_dir(bots_dir).map_err(|e| {
        vec![SpecError::new(
            bots_dir,
            "-",
            format!("cannot read bots directory: {e}"),
        )]
    })?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(SpecError::new(bots_dir, "-", e.to_string()));
                continue;
            }
        };
        let path = entry.path();
        if path.is_dir() || path.is_symlink() {
            dirs.push(path);
        }
    }
    dirs.sort();
    let mut specs = Vec::new();
    for dir in dirs {
        match AgentSpec::load(&dir) {
            Ok(s) => specs.push(s),
            Err(mut e) => errors.append(&mut e),
        }
    }
    let names: Vec<&AgentName> = specs.iter().map(|s| &s.name).collect();
    for spec in &specs {
        for r in &spec.allowed_recipients {
            if !names.contains(&r) {
                errors.push(SpecError::new(
                    &spec.dir.join("agent.toml"),
                    "allowed_recipients",
                    format!("{r:?} is not an agent in {}", bots_dir.display()),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let ok = [
            "a",
            "argus",
            "hm1nd",
            "front_end-2",
            "abcdefghijklmnopqrstuvwxyz012345",
        ];
        for n in ok {
            assert_eq!(
                AgentName::parse(n).map(|a| a.to_string()),
                Ok(n.to_owned()),
                "{n}"
            );
        }
        let bad: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("..", NameError::BadStart("..".into())),
            ("../etc", NameError::BadStart("../etc".into())),
            (
                "a/b",
                NameError::BadChar {
                    name: "a/b".into(),
                    ch: '/',
                },
            ),
            ("/abs", NameError::BadStart("/abs".into())),
            ("Argus", NameError::BadStart("Argus".into())),
            ("1abc", NameError::BadStart("1abc".into())),
            (
                "ar.gus",
                NameError::BadChar {
                    name: "ar.gus".into(),
                    ch: '.',
                },
            ),
            (
                "a b",
                NameError::BadChar {
                    name: "a b".into(),
                    ch: ' ',
                },
            ),
            (
                "a\0",
                NameError::BadChar {
                    name: "a\0".into(),
                    ch: '\0',
                },
            ),
            // Cyrillic 'а' (U+0430) looks like 'a'.
            ("\u{430}rgus", NameError::BadStart("\u{430}rgus".into())),
            (
                "arg\u{fb01}",
                NameError::BadChar {
                    name: "arg\u{fb01}".into(),
                    ch: '\u{fb01}',
                },
            ),
            (
                "abcdefghijklmnopqrstuvwxyz0123456",
                NameError::TooLong("abcdefghijklmnopqrstuvwxyz0123456".into()),
            ),
            ("hive", NameError::Reserved("hive".into())),
            ("operator", NameError::Reserved("operator".into())),
        ];
        for (n, want) in bad {
            assert_eq!(AgentName::parse(n).as_ref(), Err(want), "{n:?}");
        }
    }

    fn parse(text: &str) -> Result<AgentSpec, Vec<SpecError>> {
        let dir = Path::new("/nonexistent/bots/echo");
        AgentSpec::parse(
            AgentName::parse("echo").unwrap(),
            dir,
            &dir.join("agent.toml"),
            text,
        )
    }

    #[test]
    fn spec_errors_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("[brain]\nkind = \"scripted\"\nalowed = 1\n", "brain.alowed"),
            (
                "allowed_recipients = [\"../x\"]\n[brain]\nkind = \"scripted\"\n",
                "allowed_recipients",
            ),
            (
                "allowed_recipients = [\"echo\"]\n[brain]\nkind = \"scripted\"\n",
                "allowed_recipients",
            ),
            ("[brain]\nkind = \"telepathy\"\n", "brain.kind"),
            (
                "[resources]\nmemory = \"64\"\n[brain]\nkind = \"scripted\"\n",
                "resources.memory",
            ),
            (
                "[resources]\nswap = \"1G\"\n[brain]\nkind = \"scripted\"\n",
                "resources.swap",
            ),
            ("name = \"other\"\n[brain]\nkind = \"scripted\"\n", "name"),
            (
                "[brain]\nkind = \"command\"\ncommand = []\n",
                "brain.command",
            ),
            (
                "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nequals = \"x\"\n",
                "brain.rules[0]",
            ),
            (
                "avatar_url = \"http://x\"\n[brain]\nkind = \"scripted\"\n",
                "avatar_url",
            ),
            (
                "[brain]\nkind = \"openai\"\nmodel = \"m\"\n[brain.mcp_servers.a__b]\ncommand = [\"x\"]\n",
                "brain.mcp_servers.a__b",
            ),
            (
                "[brain]\nkind = \"anthropic\"\nmodel = \"m\"\n[brain.mcp_servers.hive]\ncommand = [\"x\"]\n",
                "brain.mcp_servers.hive",
            ),
            (
                "[brain]\nkind = \"openai\"\nmodel = \"m\"\n[brain.mcp_servers.ok]\ncommand = []\n",
                "brain.mcp_servers.ok",
            ),
        ];
        for (text, key) in cases {
            let errs = parse(text).expect_err(text);
            assert!(
                errs.iter().any(|e| e.key == *key),
                "{text:?}: want key {key}, got {errs:?}"
            );
        }
    }

    #[test]
    fn provider_keys_moved_to_hive_toml() {
        for brain in ["openai", "anthropic", "claude-code"] {
            for key in ["base_url", "api_key_file", "oauth_token_file"] {
                let text = format!("[brain]\nkind = \"{brain}\"\nmodel = \"m\"\n{key} = \"x\"\n");
                let errs = parse(&text).expect_err(&text);
                let e = errs
                    .iter()
                    .find(|e| e.key == format!("brain.{key}"))
                    .unwrap_or_else(|| panic!("{text}: {errs:?}"));
                assert!(
                    e.message.starts_with(
                        "moved to hive.toml: declare [providers.<name>] with base_url and "
                    ) && e
                        .message
                        .ends_with("and name it here with provider = \"<name>\""),
                    "{}",
                    e.message
                );
            }
        }
        let errs = parse(
            "[brain]\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1/v1?\"\n",
        )
        .unwrap_err();
        assert_eq!(
            errs[0].message,
            "moved to hive.toml: declare [providers.<name>] with base_url and api_key_file and name it here with provider = \"<name>\""
        );
    }

    #[test]
    fn provider_names() {
        let s = parse("[brain]\nkind = \"openai\"\nmodel = \"m\"\nprovider = \"local-ollama\"\n")
            .unwrap();
        assert_eq!(s.brain.provider(), Some("local-ollama"));
        let s = parse("[brain]\nkind = \"claude-code\"\n").unwrap();
        assert_eq!(s.brain.provider(), None);
        for bad in [
            "",
            "Big",
            "a.b",
            "../x",
            "1st",
            "abcdefghijklmnopqrstuvwxyz0123456",
        ] {
            let text =
                format!("[brain]\nkind = \"anthropic\"\nmodel = \"m\"\nprovider = {bad:?}\n");
            let errs = parse(&text).expect_err(&text);
            assert!(
                errs.iter().any(|e| e.key == "brain.provider"),
                "{text}: {errs:?}"
            );
        }
        let errs = parse("[brain]\nkind = \"scripted\"\nprovider = \"x\"\n").unwrap_err();
        assert!(errs.iter().any(|e| e.key == "brain.provider"), "{errs:?}");
    }

    #[test]
    fn schedules_are_read_and_errors_name_the_schedule() {
        let s = parse(
            "[brain]\nkind = \"scripted\"\n[[schedules]]\nname = \"standup\"\ncron = \"0 9 * * 1-5\"\nprompt = \"Standup.\"\n[[schedules]]\nname = \"poll\"\nevery = \"30m\"\nprompt = \"Look.\"\n",
        )
        .unwrap();
        let names: Vec<&str> = s.schedules.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["standup", "poll"]);
        let errs = parse(
            "[brain]\nkind = \"scripted\"\n[[schedules]]\nname = \"ok\"\nevery = \"1h\"\nprompt = \"x\"\n[[schedules]]\nname = \"nightly\"\ncron = \"0 25 * * *\"\nprompt = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].key, "schedules[1]");
        assert!(
            errs[0]
                .message
                .starts_with("\"nightly\": cron \"0 25 * * *\""),
            "{}",
            errs[0].message
        );
        let errs = parse(
            "[brain]\nkind = \"scripted\"\n[[schedules]]\nname = \"x\"\nevery = \"1h\"\nprompt = \"x\"\nwhen = \"now\"\n",
        )
        .unwrap_err();
        assert!(errs[0].message.contains("unknown field `when`"), "{errs:?}");
    }

    #[test]
    fn valid_spec() {
        let s = parse(
            "display_name = \"Echo\"\nallowed_recipients = [\"argus\"]\n[brain]\nkind = \"scripted\"\n[[brain.rules]]\nprefix = \"say \"\nreply = \"{rest}\"\n",
        )
        .unwrap();
        assert_eq!(s.display_name, "Echo");
        assert_eq!(s.allowed_recipients[0].as_str(), "argus");
        assert_eq!(s.brain.kind(), "scripted");
    }
}
