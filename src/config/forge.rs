//! `[forge]` in `hive.toml`: the forges whose webhooks the hive takes, the repositories it
//! follows on each, and the routes that decide whose lane a pull request or issue is,
//! validated into [`ForgeConfig`] (docs/forge.md).
//!
//! Rules (each refusal names its key):
//! - `forge.servers[i].name` is `[a-z0-9][a-z0-9-]{0,31}` and unique: it is the last segment
//!   of the webhook's URL (`/_hyperhive/forge/<name>`).
//! - `url` is `http` or `https` with a host (the site for Gitea and Forgejo, whose API is under
//!   `/api/v1`; `https://api.github.com` for GitHub); `http` only to a loopback host, since the
//!   token crosses it; no user or password, query or fragment in it (it is also the root of
//!   the web pages shown in rooms).
//! - `token_file` and `webhook_secret_file` are paths (relative to hive.toml), read when the
//!   core starts; their contents are known secrets.
//! - a repository is followed on at most one server (a tool call names only the repository),
//!   and no two followed repositories share a room alias (`acme-web/app` and `acme/web-app`
//!   are both `#forge-acme-web-app`).
//! - `login` (optional) is the forge account of the token, a forge login: events whose actor
//!   it is (the agents' own writes echoed back) wake nobody, so nothing loops.
//! - `forge.review_agent`, `forge.triage_agent` and each route's `agent` are agent names
//!   (whether they are agents of this hive is warned about when the core starts, not refused:
//!   an agent may be spawned later).
//! - a route's `reviewer` and each of its `authors` is a forge login `[A-Za-z0-9._-]{1,64}`,
//!   perhaps with GitHub's `[bot]` after it (an App's account: `dependabot[bot]`);
//!   each of its `paths` is a glob that is neither empty nor absolute (`/x`): paths are
//!   relative to the repository's root.
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
    /// Whether a review with only 🟢 may approve on the forge (default false: it comments).
    /// Off, the hive's account never counts toward a branch's required approvals.
    pub review_may_approve: Option<bool>,
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
    /// The forge account of the token (its own writes come back as webhooks: they wake nobody).
    pub login: Option<String>,
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
    pub review_may_approve: bool,
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
    /// The forge account of the token, when given.
    pub login: Option<String>,
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

    /// The forges in one line (`hive check`): servers, repositories, routes and where each
    /// server's webhooks go (`<appservice url>/_hyperhive/forge/<name>`).
    pub fn describe(&self, appservice_url: &Url) -> String {
        if !self.enabled() {
            return "forge              off (no [[forge.servers]])\n".into();
        }
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("{}, {}", s.name, s.kind))
            .collect();
        let repos: usize = self.servers.iter().map(|s| s.repos.len()).sum();
        let base = appservice_url.as_str().trim_end_matches('/');
        let hooks: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("{base}/_hyperhive/forge/{}", s.name))
            .collect();
        format!(
            "forge              {} ({}), {}, {}; webhooks at {}\n",
            plural(self.servers.len(), "server", "servers"),
            servers.join("; "),
            plural(repos, "repository", "repositories"),
            plural(self.routes.len(), "route", "routes"),
            hooks.join(", ")
        )
    }

    /// The agents `[forge]` names that `known` does not know, each with its key: warned about
    /// when the core starts (an agent may be spawned later, so it is not a config error).
    pub fn unknown_agents(&self, known: impl Fn(&AgentName) -> bool) -> Vec<(String, AgentName)> {
        let mut out = Vec::new();
        let named = [
            ("forge.review_agent".to_owned(), self.review_agent.as_ref()),
            ("forge.triage_agent".to_owned(), self.triage_agent.as_ref()),
        ]
        .into_iter()
        .chain(
            self.routes
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("forge.routes[{i}].agent"), Some(&r.agent))),
        );
        for (key, agent) in named {
            if let Some(a) = agent
                && !known(a)
            {
                out.push((key, a.clone()));
            }
        }
        out
    }
}

/// Whether `s` is a forge login as Gitea and GitHub allow them (narrowed to what is safe in a
/// URL's path and a Matrix message): `[A-Za-z0-9._-]{1,64}`, with an optional `[bot]` after
/// it (a GitHub App's account, `dependabot[bot]`).
pub fn login_ok(s: &str) -> bool {
    let base = s.strip_suffix("[bot]").unwrap_or(s);
    (1..=64).contains(&base.len())
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a server's `url` is refused, if it is (the module's rules).
fn url_refusal(url: &Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        Some(format!("{url} is not an http(s) URL with a host"))
    } else if url.scheme() == "http" && !is_loopback(url) {
        Some(format!(
            "{url} is http to a host that is not loopback: the forge token would cross the network in clear text"
        ))
    } else if !url.username().is_empty() || url.password().is_some() {
        Some(format!(
            "{} holds a user or password: the token is in token_file",
            url.host_str().unwrap_or("the URL")
        ))
    } else if url.query().is_some() || url.fragment().is_some() {
        Some(format!(
            "{url} has a query or a fragment: give the site alone"
        ))
    } else {
        None
    }
}

/// Why a route's path glob is refused, if it is: empty, or absolute (paths in a pull request
/// are relative to the repository's root, so `/src` would never match).
fn glob_refusal(g: &str) -> Option<&'static str> {
    if g.trim().is_empty() {
        Some("is empty")
    } else if g.starts_with('/') {
        Some("is absolute: paths are relative to the repository's root")
    } else {
        None
    }
}

impl ForgeServer {
    /// Whether this server follows `repo` (without case).
    pub fn follows(&self, repo: &RepoName) -> bool {
        self.repos.iter().any(|r| same_repo(r, repo))
    }
}

/// Whether `a` and `b` name one repository (forges compare names without case).
fn same_repo(a: &RepoName, b: &RepoName) -> bool {
    a.to_string().eq_ignore_ascii_case(&b.to_string())
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
        if let Some(why) = url_refusal(&s.url) {
            err(key("url"), why);
        }
        if let Some(l) = &s.login
            && !login_ok(l)
        {
            err(
                key("login"),
                format!(
                    "{l:?} is not a forge login ([A-Za-z0-9._-], 1 to 64 characters, perhaps [bot] after)"
                ),
            );
        }
        let mut repos = Vec::new();
        for (j, r) in s.repos.iter().enumerate() {
            match RepoName::parse(r) {
                Ok(r)
                    if servers.iter().any(|o| o.follows(&r))
                        || repos.iter().any(|o: &RepoName| same_repo(o, &r)) =>
                {
                    err(
                        format!("forge.servers[{i}].repos[{j}]"),
                        format!("{r} is followed twice: a repository belongs to one server"),
                    )
                }
                Ok(r) => match servers
                    .iter()
                    .flat_map(|o| o.repos.iter())
                    .chain(repos.iter())
                    .find(|o| o.alias_localpart() == r.alias_localpart())
                {
                    Some(o) => err(
                        format!("forge.servers[{i}].repos[{j}]"),
                        format!(
                            "{r} would share the room #{} with {o}: follow one of them",
                            r.alias_localpart()
                        ),
                    ),
                    None => repos.push(r),
                },
                Err(e) => err(format!("forge.servers[{i}].repos[{j}]"), e.to_string()),
            }
        }
        servers.push(ForgeServer {
            name: s.name,
            kind: s.kind,
            url: s.url,
            token_file: resolve(s.token_file),
            webhook_secret_file: resolve(s.webhook_secret_file),
            login: s.login,
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
        for (j, a) in r.authors.iter().enumerate() {
            if !login_ok(a) {
                err(
                    format!("forge.routes[{i}].authors[{j}]"),
                    format!(
                        "{a:?} is not a forge login ([A-Za-z0-9._-], 1 to 64 characters, perhaps [bot] after)"
                    ),
                );
            }
        }
        if let Some(l) = &r.reviewer
            && !login_ok(l)
        {
            err(
                format!("forge.routes[{i}].reviewer"),
                format!(
                    "{l:?} is not a forge login ([A-Za-z0-9._-], 1 to 64 characters, perhaps [bot] after)"
                ),
            );
        }
        for (j, g) in r.paths.iter().enumerate() {
            if let Some(why) = glob_refusal(g) {
                err(
                    format!("forge.routes[{i}].paths[{j}]"),
                    format!("{g:?} {why}"),
                );
            }
        }
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
        review_may_approve: raw.review_may_approve.unwrap_or(false),
        servers,
        routes,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn cfg(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::validate(toml::from_str(text).expect("test toml parses"), None)
    }

    const SERVER: &str = "[[forge.servers]]\nname = \"local\"\nkind = \"forgejo\"\nurl = \"http://127.0.0.1:3000\"\ntoken_file = \"t\"\nwebhook_secret_file = \"w\"\nrepos = [\"acme/widgets\", \"acme/gadgets\"]\n";

    #[test]
    fn refusals_name_their_key() {
        struct Case {
            name: &'static str,
            toml: String,
            key: &'static str,
        }
        let route = |body: &str| format!("{SERVER}[[forge.routes]]\nagent = \"iris\"\n{body}");
        let cases = [
            Case {
                name: "a login with a space",
                toml: SERVER.replace("repos =", "login = \"hive bot\"\nrepos ="),
                key: "forge.servers[0].login",
            },
            Case {
                name: "a login too long",
                toml: SERVER.replace(
                    "repos =",
                    &format!("login = \"{}\"\nrepos =", "a".repeat(65)),
                ),
                key: "forge.servers[0].login",
            },
            Case {
                name: "a login with a suffix that is not [bot]",
                toml: SERVER.replace("repos =", "login = \"hive[admin]\"\nrepos ="),
                key: "forge.servers[0].login",
            },
            Case {
                name: "[bot] alone is no login",
                toml: route("authors = [\"[bot]\"]\n"),
                key: "forge.routes[0].authors[0]",
            },
            Case {
                name: "a url with a user and password",
                toml: SERVER.replace("http://127.0.0.1", "http://hive:pw@127.0.0.1"),
                key: "forge.servers[0].url",
            },
            Case {
                name: "a url with a query",
                toml: SERVER.replace(":3000", ":3000/?x=1"),
                key: "forge.servers[0].url",
            },
            Case {
                name: "a url with a fragment",
                toml: SERVER.replace(":3000", ":3000/#top"),
                key: "forge.servers[0].url",
            },
            Case {
                name: "two repositories with one room alias",
                toml: SERVER.replace("acme/gadgets", "acme-web/app\", \"acme/web-app"),
                key: "forge.servers[0].repos[2]",
            },
            Case {
                name: "a server name with upper case",
                toml: SERVER.replace("\"local\"", "\"Local\""),
                key: "forge.servers[0].name",
            },
            Case {
                name: "http to a host that is not loopback",
                toml: SERVER.replace("127.0.0.1", "forge.example.org"),
                key: "forge.servers[0].url",
            },
            Case {
                name: "a repository that is no owner/name",
                toml: SERVER.replace("acme/gadgets", "gadgets"),
                key: "forge.servers[0].repos[1]",
            },
            Case {
                name: "a repository followed twice",
                toml: SERVER.replace("acme/gadgets", "Acme/Widgets"),
                key: "forge.servers[0].repos[1]",
            },
            Case {
                name: "a route's agent that is no agent name",
                toml: format!("{SERVER}[[forge.routes]]\nagent = \"Iris!\"\n"),
                key: "forge.routes[0].agent",
            },
            Case {
                name: "a route's reviewer that is no login",
                toml: route("reviewer = \"@bob:hs\"\n"),
                key: "forge.routes[0].reviewer",
            },
            Case {
                name: "a route's author that is no login",
                toml: route("authors = [\"alice\", \"eve/x\"]\n"),
                key: "forge.routes[0].authors[1]",
            },
            Case {
                name: "an empty author",
                toml: route("authors = [\"\"]\n"),
                key: "forge.routes[0].authors[0]",
            },
            Case {
                name: "an empty glob",
                toml: route("paths = [\"src/**\", \" \"]\n"),
                key: "forge.routes[0].paths[1]",
            },
            Case {
                name: "an absolute glob",
                toml: route("paths = [\"/etc/**\"]\n"),
                key: "forge.routes[0].paths[0]",
            },
            Case {
                name: "a route's repository that is no owner/name",
                toml: route("repos = [\"acme\"]\n"),
                key: "forge.routes[0].repos[0]",
            },
            Case {
                name: "a review agent that is no agent name",
                toml: format!("[forge]\nreview_agent = \"A B\"\n{SERVER}"),
                key: "forge.review_agent",
            },
            Case {
                name: "a triage agent that is no agent name",
                toml: format!("[forge]\ntriage_agent = \"../x\"\n{SERVER}"),
                key: "forge.triage_agent",
            },
            Case {
                name: "a webhook cap too small",
                toml: format!("[forge]\nmax_webhook_bytes = 10\n{SERVER}"),
                key: "forge.max_webhook_bytes",
            },
        ];
        for c in cases {
            let errs = cfg(&c.toml).expect_err(c.name);
            assert!(
                errs.iter().any(|e| e.key == c.key),
                "{}: want {}, got {errs:?}",
                c.name,
                c.key
            );
            assert_eq!(errs.len(), 1, "{}: only that key: {errs:?}", c.name);
        }
    }

    #[test]
    fn a_full_forge_section_reads_and_describes_itself() {
        let text = format!(
            "[appservice]\nurl = \"http://127.0.0.1:9000\"\n[forge]\nreview_agent = \"argus\"\ntriage_agent = \"triage\"\n{}[[forge.routes]]\nlabels = [\"frontend\"]\nagent = \"iris\"\nreviewer = \"bob\"\n[[forge.routes]]\npaths = [\"src/**\", \"docs/\"]\nauthors = [\"alice\"]\nagent = \"echo\"\n[[forge.routes]]\nagent = \"triage\"\n",
            SERVER.replace("repos =", "login = \"hive-bot\"\nrepos =")
        );
        let text = text.replace(
            "authors = [\"alice\"]",
            "authors = [\"alice\", \"dependabot[bot]\"]",
        );
        let c = cfg(&text).expect("valid");
        let f = &c.forge;
        assert_eq!(f.servers[0].login.as_deref(), Some("hive-bot"));
        assert_eq!(f.routes[1].authors, ["alice", "dependabot[bot]"]);
        assert_eq!(f.routes.len(), 3);
        assert_eq!(f.routes[0].reviewer.as_deref(), Some("bob"));
        assert_eq!(f.routes[1].paths, ["src/**", "docs/"]);
        assert_eq!(
            f.describe(&c.appservice_url),
            "forge              1 server (local, forgejo), 2 repositories, 3 routes; webhooks at http://127.0.0.1:9000/_hyperhive/forge/local\n"
        );
        assert!(
            c.render()
                .contains("webhooks at http://127.0.0.1:9000/_hyperhive/forge/local")
        );
        let known =
            |a: &crate::agent_spec::AgentName| a.as_str() != "iris" && a.as_str() != "triage";
        let unknown: Vec<String> = f
            .unknown_agents(known)
            .into_iter()
            .map(|(k, a)| format!("{k}={a}"))
            .collect();
        assert_eq!(
            unknown,
            [
                "forge.triage_agent=triage",
                "forge.routes[0].agent=iris",
                "forge.routes[2].agent=triage"
            ]
        );
        let off = cfg("").expect("valid");
        assert_eq!(
            off.forge.describe(&off.appservice_url),
            "forge              off (no [[forge.servers]])\n"
        );
    }
}
