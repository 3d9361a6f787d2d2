//! `[forge]` in `hive.toml`: the forges whose webhooks the hive takes, the repositories it
//! follows on each, and the routes that decide whose lane a pull request or issue is,
//! validated into [`ForgeConfig`] (docs/forge.md).
//!
//! Rules (each refusal names its key):
//! - `forge.servers[i].name` is `[a-z0-9][a-z0-9-]{0,31}` and unique: it is the last segment
//!   of the webhook's URL (`/_hyperhive/forge/<name>`).
//! - `url` is `http` or `https` with a host (the site for Gitea and Forgejo, whose API is under
//!   `/api/v1`; `https://api.github.com` for GitHub); `http` only to a loopback host, since the
//!   token crosses it.
//! - `token_file` and `webhook_secret_file` are paths (relative to hive.toml), read when the
//!   core starts; their contents are known secrets.
//! - a repository is followed on at most one server (a tool call names only the repository).
//! - `forge.review_agent`, `forge.triage_agent` and each route's `agent` are agent names.
//! - `forge.max_webhook_bytes` is 1 KiB to 25 MiB (GitHub's largest payload); default 1 MiB.

use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use super::ConfigError;
use crate::agent_spec::AgentName;
use crate::forge::{ForgeKind, RepoName};

/// The default cap on a webhook's body.
pub const DEFAULT_MAX_WEBHOOK_BYTES: usize = 1 << 20;
/// The largest cap allowed (GitHub caps payloads at 25 MB).
pub const MAX_WEBHOOK_BYTES: usize = 25 << 20;

/// `[forge]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForge {
    /// The agent that reads every pull request (argus).
    pub review_agent: Option<String>,
    /// The agent that reads each new issue and pull request and routes it (triage).
    pub triage_agent: Option<String>,
    /// The largest webhook body taken (default 1 MiB).
    pub max_webhook_bytes: Option<usize>,
    #[serde(default)]
    pub servers: Vec<RawForgeServer>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `[[forge.servers]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForgeServer {
    pub name: String,
    pub kind: ForgeKind,
    pub url: Url,
    pub token_file: PathBuf,
    pub webhook_secret_file: PathBuf,
    #[serde(default)]
    pub repos: Vec<String>,
}

/// `[[forge.routes]]` as written: every criterion given must hold (an empty one holds); the
/// first route that holds wins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Repositories it applies to (default: all).
    #[serde(default)]
    pub repos: Vec<String>,
    /// Any of these labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Any changed file matching any of these globs (`*` within a segment, `**` across).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Any of these forge logins as the item's author.
    #[serde(default)]
    pub authors: Vec<String>,
    /// The agent whose lane it is.
    pub agent: String,
    /// The forge login asked to review its pull requests.
    pub reviewer: Option<String>,
}

/// The validated `[forge]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgeConfig {
    pub review_agent: Option<AgentName>,
    pub triage_agent: Option<AgentName>,
    pub max_webhook_bytes: usize,
    pub servers: Vec<ForgeServer>,
    pub routes: Vec<Route>,
}

/// One forge the hive follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeServer {
    pub name: String,
    pub kind: ForgeKind,
    pub url: Url,
    pub token_file: PathBuf,
    pub webhook_secret_file: PathBuf,
    pub repos: Vec<RepoName>,
}

/// One validated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub repos: Vec<RepoName>,
    pub labels: Vec<String>,
    pub paths: Vec<String>,
    pub authors: Vec<String>,
    pub agent: AgentName,
    pub reviewer: Option<String>,
}

impl ForgeConfig {
    /// Whether any forge is configured.
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }

    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&ForgeServer> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The server that follows `repo` (names compared without case, as forges do).
    pub fn server_of(&self, repo: &RepoName) -> Option<&ForgeServer> {
        self.servers.iter().find(|s| s.follows(repo))
    }
}

impl ForgeServer {
    /// Whether this server follows `repo` (without case).
    pub fn follows(&self, repo: &RepoName) -> bool {
        self.repos
            .iter()
            .any(|r| r.to_string().eq_ignore_ascii_case(&repo.to_string()))
    }
}

fn server_name_ok(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

pub(super) fn validate(
    raw: RawForge,
    resolve: impl Fn(PathBuf) -> PathBuf,
    errs: &mut Vec<ConfigError>,
) -> ForgeConfig {
    let mut err = |key: String, message: String| {
        errs.push(ConfigError {
            key: key.into(),
            message,
        })
    };
    let agent =
        |key: String, s: &str, err: &mut dyn FnMut(String, String)| match AgentName::parse(s) {
            Ok(n) => Some(n),
            Err(e) => {
                err(key, format!("{s:?} is not an agent name: {e}"));
                None
            }
        };
    let review_agent = raw
        .review_agent
        .as_deref()
        .and_then(|s| agent("forge.review_agent".into(), s, &mut err));
    let triage_agent = raw
        .triage_agent
        .as_deref()
        .and_then(|s| agent("forge.triage_agent".into(), s, &mut err));
    let max_webhook_bytes = raw.max_webhook_bytes.unwrap_or(DEFAULT_MAX_WEBHOOK_BYTES);
    if !(1024..=MAX_WEBHOOK_BYTES).contains(&max_webhook_bytes) {
        err(
            "forge.max_webhook_bytes".into(),
            format!("{max_webhook_bytes} is not 1024 to {MAX_WEBHOOK_BYTES}"),
        );
    }
    let mut servers: Vec<ForgeServer> = Vec::new();
    for (i, s) in raw.servers.into_iter().enumerate() {
        let key = |k: &str| format!("forge.servers[{i}].{k}");
        if !server_name_ok(&s.name) {
            err(
                key("name"),
                format!("{:?} is not [a-z0-9][a-z0-9-]{{0,31}}", s.name),
            );
        } else if servers.iter().any(|o| o.name == s.name) {
            err(key("name"), format!("{:?} is named twice", s.name));
        }
        if !matches!(s.url.scheme(), "http" | "https") || s.url.host().is_none() {
            err(
                key("url"),
                format!("{} is not an http(s) URL with a host", s.url),
            );
        } else if s.url.scheme() == "http" && !is_loopback(&s.url) {
            err(
                key("url"),
                format!(
                    "{} is http to a host that is not loopback: the forge token would cross the network in clear text",
                    s.url
                ),
            );
        }
        let mut repos = Vec::new();
        for (j, r) in s.repos.iter().enumerate() {
            match RepoName::parse(r) {
                Ok(r) if servers.iter().any(|o| o.follows(&r)) || repos.contains(&r) => err(
                    format!("forge.servers[{i}].repos[{j}]"),
                    format!("{r} is followed twice: a repository belongs to one server"),
                ),
                Ok(r) => repos.push(r),
                Err(e) => err(format!("forge.servers[{i}].repos[{j}]"), e.to_string()),
            }
        }
        servers.push(ForgeServer {
            name: s.name,
            kind: s.kind,
            url: s.url,
            token_file: resolve(s.token_file),
            webhook_secret_file: resolve(s.webhook_secret_file),
            repos,
        });
    }
    let mut routes = Vec::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        let repos = r
            .repos
            .iter()
            .enumerate()
            .filter_map(|(j, s)| match RepoName::parse(s) {
                Ok(n) => Some(n),
                Err(e) => {
                    err(format!("forge.routes[{i}].repos[{j}]"), e.to_string());
                    None
                }
            })
            .collect();
        if let Some(a) = agent(format!("forge.routes[{i}].agent"), &r.agent, &mut err) {
            routes.push(Route {
                repos,
                labels: r.labels,
                paths: r.paths,
                authors: r.authors,
                agent: a,
                reviewer: r.reviewer,
            });
        }
    }
    ForgeConfig {
        review_agent,
        triage_agent,
        max_webhook_bytes,
        servers,
        routes,
    }
}
