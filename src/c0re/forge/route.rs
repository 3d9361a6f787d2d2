//! Whose lane a pull request or issue is (`[[forge.routes]]`), and who is told of an event:
//! pure functions over data, with their tables of cases beside them.
//!
//! Routing ([`route`]), the rules:
//! - the routes are tried in order; the first whose every given criterion holds wins (an
//!   empty criterion holds; a route with none is a catch-all);
//! - `repos`: the item's repository is one of them (without case);
//! - `labels`: the item carries one of them (without case);
//! - `authors`: the item's author is one of them (without case, as forges compare logins);
//! - `paths`: one of the files the pull request changes matches one of the globs
//!   ([`glob_matches`]); an issue, or a pull request whose files could not be read, changes no
//!   file, so a `paths` route never holds for it;
//! - what it answers names the route (1-based, as `hive check` counts them for people) and why
//!   it held, in words.
//!
//! Who is told ([`audience`]), the rules:
//! - nobody, when the event's actor is the server's own `login` (the agents' own writes, echoed
//!   back by the forge as webhooks: nothing loops); it is always known here, configured or
//!   learnt from the forge before any of its deliveries is posted (`task.rs`);
//! - the owner (the routed agent), of every event of its item;
//! - `forge.review_agent`, of a pull request opened, reopened or pushed to;
//! - `forge.triage_agent`, of an item opened or reopened;
//! - an agent in more than one part is told once, with every role it plays.
//!
//! What they read is [`render`]'s.

use serde::Serialize;

use crate::agent_spec::AgentName;
use crate::config::{ForgeConfig, Route};
use crate::forge::webhook::{Action, ForgeEvent};
use crate::forge::{ItemKind, RepoName};

pub mod render;

/// What routing looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub repo: RepoName,
    pub labels: Vec<String>,
    pub author: String,
    /// The files a pull request changes (empty for an issue, or when they could not be read).
    pub files: Vec<String>,
}

/// The route that won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub agent: AgentName,
    pub reviewer: Option<String>,
    /// Which route, 1-based.
    pub rule: usize,
    /// Why it held, in words (`label frontend, path src/app.css`).
    pub why: String,
}

/// The part an agent plays for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The item is in its lane (routed to it).
    Owner,
    /// It reviews every pull request.
    Review,
    /// It reads each new item and routes it.
    Triage,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Review => "review",
            Role::Triage => "triage",
        }
    }
}

/// The first route of `routes` that holds for `facts` (the module's rules).
pub fn route(routes: &[Route], facts: &Facts) -> Option<Routed> {
    routes.iter().enumerate().find_map(|(i, r)| {
        holds(r, facts).map(|why| Routed {
            agent: r.agent.clone(),
            reviewer: r.reviewer.clone(),
            rule: i + 1,
            why,
        })
    })
}

/// Why `r` holds for `facts`, or `None` when it does not.
fn holds(r: &Route, facts: &Facts) -> Option<String> {
    let mut why = Vec::new();
    if !r.repos.is_empty() {
        let repo = r
            .repos
            .iter()
            .find(|p| p.to_string().eq_ignore_ascii_case(&facts.repo.to_string()))?;
        why.push(format!("repository {repo}"));
    }
    if !r.labels.is_empty() {
        let label = facts
            .labels
            .iter()
            .find(|l| r.labels.iter().any(|w| w.eq_ignore_ascii_case(l)))?;
        why.push(format!("label {label}"));
    }
    if !r.authors.is_empty() {
        r.authors
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&facts.author))?;
        why.push(format!("author {}", facts.author));
    }
    if !r.paths.is_empty() {
        let (file, glob) = facts
            .files
            .iter()
            .find_map(|f| r.paths.iter().find(|g| glob_matches(g, f)).map(|g| (f, g)))?;
        why.push(format!("path {file} matches {glob}"));
    }
    if why.is_empty() {
        why.push("no criteria: it takes everything".into());
    }
    Some(why.join(", "))
}

/// Whether `path` (relative, `/`-separated) matches `glob`: `*` is any run of characters
/// within one segment, `?` one character but `/`, `**` as a whole segment any number of
/// segments (at the end: at least one, what is inside), and a glob ending in `/` is that
/// directory's tree (`docs/` is `docs/**`). Anything else matches itself. A path longer than
/// [`MAX_PATH_BYTES`] or deeper than [`MAX_PATH_DEPTH`] matches nothing; the match is
/// polynomial (memoised), however the path is made.
pub fn glob_matches(glob: &str, path: &str) -> bool {
    if path.len() > MAX_PATH_BYTES || path.split('/').count() > MAX_PATH_DEPTH {
        return false;
    }
    let glob = match glob.strip_suffix('/') {
        Some(dir) => format!("{dir}/**"),
        None => glob.to_owned(),
    };
    let g: Vec<&str> = glob.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    let mut failed = vec![false; (g.len() + 1) * (p.len() + 1)];
    segments(&g, &p, 0, 0, &mut failed)
}

/// The longest path matched, in bytes, and its most segments: a longer path (no repository
/// has one; an attacker's pull request might) matches no glob.
pub const MAX_PATH_BYTES: usize = 1000;
pub const MAX_PATH_DEPTH: usize = 64;

/// Whether `g[gi..]` matches `p[pi..]`; `failed` remembers each `(gi, pi)` that did not, so
/// `**` after `**` is tried once per pair: at most `g.len() × p.len()` pairs, not exponential.
fn segments(g: &[&str], p: &[&str], gi: usize, pi: usize, failed: &mut [bool]) -> bool {
    let at = gi * (p.len() + 1) + pi;
    if failed[at] {
        return false;
    }
    let held = match g.get(gi) {
        None => pi == p.len(),
        Some(&"**") if gi + 1 == g.len() => pi < p.len(),
        Some(&"**") => (pi..=p.len()).any(|skip| segments(g, p, gi + 1, skip, failed)),
        Some(seg) => {
            pi < p.len()
                && segment(seg.as_bytes(), p[pi].as_bytes())
                && segments(g, p, gi + 1, pi + 1, failed)
        }
    };
    if !held {
        failed[at] = true;
    }
    held
}

/// One segment: `*` any run, `?` one byte (of a UTF-8 path a multi-byte character is more
/// than one: globs name ASCII paths in practice). Linear in practice: a later `*` only moves
/// on from the last one's place (the classic greedy match with one backtrack point).
fn segment(g: &[u8], s: &[u8]) -> bool {
    let (mut gi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match g.get(gi) {
            Some(b'*') => {
                star = Some((gi, si));
                gi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                gi += 1;
                si += 1;
            }
            _ => match star {
                Some((sg, ss)) => {
                    gi = sg + 1;
                    si = ss + 1;
                    star = Some((sg, ss + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|&c| c == b'*')
}

/// Who is told of `event` and as what (the module's rules), in the order first named.
pub fn audience(
    event: &ForgeEvent,
    routed: Option<&Routed>,
    forge: &ForgeConfig,
    login: &str,
) -> Vec<(AgentName, Vec<Role>)> {
    if login.eq_ignore_ascii_case(event.actor.trim()) {
        return Vec::new();
    }
    let new = matches!(event.action, Action::Opened | Action::Reopened);
    let pull = event.kind == ItemKind::PullRequest;
    let mut told: Vec<(AgentName, Vec<Role>)> = Vec::new();
    let mut tell = |agent: &AgentName, role: Role| match told.iter_mut().find(|(a, _)| a == agent) {
        Some((_, roles)) => roles.push(role),
        None => told.push((agent.clone(), vec![role])),
    };
    if let Some(r) = routed {
        tell(&r.agent, Role::Owner);
    }
    if pull
        && (new || event.action == Action::Pushed)
        && let Some(a) = &forge.review_agent
    {
        tell(a, Role::Review);
    }
    if new && let Some(a) = &forge.triage_agent {
        tell(a, Role::Triage);
    }
    told
}

#[cfg(test)]
mod tests;
