//! Reading and validating `hive.toml`: [`Config::load`] and [`Config::validate`], which reports
//! every error at once, each with its dotted key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ruma::{ServerName, UserId};
use url::Url;

use super::*;

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
        let resources = match crate::agent_spec::resources::validate(
            &raw.runtime.resources,
            "runtime.resources",
        ) {
            Ok(r) => r.over(crate::agent_spec::resources::DEFAULT),
            Err(refused) => {
                for (key, message) in refused {
                    errs.push(ConfigError {
                        key: key.into(),
                        message,
                    });
                }
                crate::agent_spec::resources::DEFAULT
            }
        };
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
        // Any text names a hive to its operators (its space's name); a hive with peers is also
        // addressed by that name, which must then be a hive name (`HiveName`).
        let hive_name = raw.hive.name.clone().unwrap_or_else(|| "hyperhive".into());
        let hive_id = match HiveName::parse(&hive_name) {
            Ok(h) => Some(h),
            Err(e) => {
                if !raw.peers.is_empty() {
                    err(
                        "hive.name",
                        format!("{e} (a hive with peers is addressed by it)"),
                    );
                }
                None
            }
        };
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
            use crate::config::{Rate, RateLimits};
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
                forge_writes: l
                    .forge_writes_per_hour
                    .map_or(d.forge_writes, |n| Rate::per_hour(n, n.min(20))),
            };
            for (key, rate) in [
                ("limits.messages_per_minute", &r.messages),
                ("limits.questions_per_hour", &r.questions),
                ("limits.reminders_per_hour", &r.reminders),
                ("limits.forge_writes_per_hour", &r.forge_writes),
            ] {
                if let Err(e) = rate.validate() {
                    err(key, e.to_string());
                }
            }
            r
        };
        let providers = providers::validate(
            raw.providers,
            |p| resolve_against(source.as_deref(), p),
            &mut errs,
        );
        let (federation, peers) = federation::validate(
            raw.federation,
            raw.peers,
            &federation::Own {
                server_name: server_name.as_deref(),
                hive: hive_id.as_ref(),
                embedded,
                homeserver_port: port,
                listen,
            },
            |p| resolve_against(source.as_deref(), p),
            &mut errs,
        );
        let web = web::validate(raw.web, listen, &mut errs);
        let forge = forge::validate(
            raw.forge,
            |p| resolve_against(source.as_deref(), p),
            &mut errs,
        );
        // Trust never crosses: an operator is never a user of a peer hive's server.
        for o in &operators {
            if let Some(p) = peers.iter().find(|p| p.server_name == o.server_name()) {
                errs.push(ConfigError {
                    key: "operators.users".into(),
                    message: format!(
                        "{o} is a user of {}, the server of peer hive {}: a peer's users are never this hive's operators",
                        p.server_name, p.hive
                    ),
                });
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Config {
            rates,
            model_calls_per_day: raw.limits.model_calls_per_day.unwrap_or(2000),
            model_tokens_per_day: raw.limits.model_tokens_per_day.unwrap_or(20_000_000),
            hive_name,
            hive_id,
            federation,
            peers,
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
            resources,
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
            console: crate::config::ConsoleSwitches {
                status_message: raw.console.status_message.unwrap_or(true),
                presence: raw.console.presence.unwrap_or(true),
                typing: raw.console.typing.unwrap_or(true),
                read_receipts: raw.console.read_receipts.unwrap_or(true),
            },
            web,
            forge,
            claude_code: std::env::var_os(env::CLAUDE_CODE)
                .map(PathBuf::from)
                .map(|p| std::path::absolute(&p).unwrap_or(p)),
            source,
        })
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
