//! What the forge lanes write, pure: a thread's root and each line in it (as the hive's bot),
//! and the core event an agent gets (the text a model reads, and its data).
//!
//! The agent's text, line by line (a scripted model parses these prefixes: keep them):
//! ```text
//! forge: pull request acme/widgets#5 opened by alice: Fix the parser — http://…/pulls/5
//! roles: review, triage
//! route: iris, reviewer bob (route 1: label frontend)       or: route: none (no route matched)
//! files: src/parser.rs, web/app.css                         (pull requests only, up to 50)
//! > the comment's or review's body, quoted                  (comments and reviews only)
//! Act with the forge tools on repo acme/widgets, number 5; say what you did in its thread with forge_discuss.
//! ```

use serde_json::json;

use super::{Role, Routed};
use crate::forge::ItemKind;
use crate::forge::webhook::{Action, ForgeEvent, Verdict};

/// The most of a comment's or review's body quoted, in characters.
pub const MAX_QUOTE_CHARS: usize = 2000;
/// The most files listed in an agent's text.
pub const MAX_FILES: usize = 50;
/// The most of an error said in words, in characters.
const MAX_ERROR_CHARS: usize = 300;

/// The files of the item, as far as they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Files {
    /// An issue, or an event of a pull request that does not change its files.
    NotRead,
    /// What the forge answered.
    Known(Vec<String>),
    /// The forge could not be asked (why, in words).
    Unknown(String),
}

impl Files {
    /// The files known (none when they are not).
    pub fn known(&self) -> &[String] {
        match self {
            Files::Known(f) => f,
            Files::NotRead | Files::Unknown(_) => &[],
        }
    }
}

/// Everything an agent's core event says.
#[derive(Debug, Clone, Copy)]
pub struct Told<'a> {
    pub server: &'a str,
    pub delivery: &'a str,
    pub event: &'a ForgeEvent,
    pub room_id: &'a str,
    /// The thread's root event.
    pub thread_id: &'a str,
    pub routed: Option<&'a Routed>,
    pub files: &'a Files,
}

/// `text` cut to `max` characters, with `…` when it was longer.
fn cap(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// `body` quoted (`> ` on each line), capped at [`MAX_QUOTE_CHARS`].
fn quote(body: &str) -> String {
    cap(body.trim(), MAX_QUOTE_CHARS)
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The body an action carries (a comment's, a review's).
fn body_of(action: &Action) -> Option<&str> {
    match action {
        Action::Commented { body, .. } | Action::Reviewed { body, .. } => Some(body)
            .filter(|b| !b.trim().is_empty())
            .map(|b| b.as_str()),
        _ => None,
    }
}

/// The first line of a thread: `**pull request acme/widgets#5**: Fix the parser — <url>`.
pub fn root_line(event: &ForgeEvent) -> String {
    format!(
        "**{} {}**: {} — {}",
        event.kind, event.item, event.title, event.url
    )
}

/// What the action was, after the actor's name in a thread: `opened`, `requested changes`.
fn thread_words(action: &Action) -> String {
    match action {
        Action::Opened => "opened".into(),
        Action::Reopened => "reopened".into(),
        Action::Edited => "edited".into(),
        Action::Closed => "closed".into(),
        Action::Merged => "merged".into(),
        Action::Pushed => "pushed new commits".into(),
        Action::Labeled => "changed the labels".into(),
        Action::ReviewRequested { reviewer } => format!("asked {reviewer} to review"),
        Action::Commented { .. } => "commented".into(),
        Action::Reviewed { verdict, .. } => match verdict {
            Verdict::Approved => "approved",
            Verdict::ChangesRequested => "requested changes",
            Verdict::Commented => "reviewed",
        }
        .into(),
    }
}

/// Why the route was taken (or none), and that the files were not known when they were not.
fn why(routed: Option<&Routed>, files: &Files) -> String {
    let base = routed.map_or("no route matched", |r| r.why.as_str());
    match files {
        Files::Unknown(e) => format!(
            "{base}; routed without the files: {}",
            cap(e, MAX_ERROR_CHARS)
        ),
        Files::NotRead | Files::Known(_) => base.to_owned(),
    }
}

/// The route in words: `iris, reviewer bob (route 1: label frontend)`, or `none (…)`.
fn route_words(routed: Option<&Routed>, files: &Files) -> String {
    let why = why(routed, files);
    match routed {
        Some(r) => format!(
            "{}{} (route {}: {why})",
            r.agent,
            r.reviewer
                .as_deref()
                .map(|v| format!(", reviewer {v}"))
                .unwrap_or_default(),
            r.rule,
        ),
        None => format!("none ({why})"),
    }
}

/// A line in the item's thread, as the hive's bot: `alice opened — routed to …`, or
/// `bob requested changes:` and the review quoted.
pub fn thread_line(event: &ForgeEvent, routed: Option<&Routed>, files: &Files) -> String {
    let mut line = format!("{} {}", event.actor, thread_words(&event.action));
    if let Action::Labeled = event.action {
        line.push_str(&format!(
            ": {}",
            if event.labels.is_empty() {
                "none".to_owned()
            } else {
                event.labels.join(", ")
            }
        ));
    }
    if matches!(event.action, Action::Opened | Action::Reopened) {
        line.push_str(&format!(" — route: {}", route_words(routed, files)));
    }
    if let Some(body) = body_of(&event.action) {
        line.push_str(&format!(":\n{}", quote(body)));
    }
    line
}

/// What the action was, in an agent's first line: `… opened by alice`.
fn event_words(action: &Action) -> String {
    match action {
        Action::Opened => "opened".into(),
        Action::Reopened => "reopened".into(),
        Action::Edited => "edited".into(),
        Action::Closed => "closed".into(),
        Action::Merged => "merged".into(),
        Action::Pushed => "given new commits".into(),
        Action::Labeled => "relabeled".into(),
        Action::ReviewRequested { reviewer } => format!("given reviewer {reviewer}"),
        Action::Commented { .. } => "commented on".into(),
        Action::Reviewed { verdict, .. } => match verdict {
            Verdict::Approved => "approved",
            Verdict::ChangesRequested => "sent back with changes requested",
            Verdict::Commented => "reviewed",
        }
        .into(),
    }
}

/// The core event agent `roles` are told: its text (the module's format) and its data.
pub fn render_event(t: &Told<'_>, roles: &[Role]) -> (String, serde_json::Value) {
    let ev = t.event;
    let mut lines = vec![
        format!(
            "forge: {} {} {} by {}: {} — {}",
            ev.kind,
            ev.item,
            event_words(&ev.action),
            ev.actor,
            ev.title,
            ev.url
        ),
        format!(
            "roles: {}",
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("route: {}", route_words(t.routed, t.files)),
    ];
    if ev.kind == ItemKind::PullRequest {
        lines.push(match t.files {
            Files::Known(f) if f.is_empty() => "files: none".into(),
            Files::Known(f) => {
                let mut shown = f
                    .iter()
                    .take(MAX_FILES)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if f.len() > MAX_FILES {
                    shown.push_str(&format!(" … and {} more", f.len() - MAX_FILES));
                }
                format!("files: {shown}")
            }
            Files::Unknown(e) => format!("files: not known ({})", cap(e, MAX_ERROR_CHARS)),
            Files::NotRead => "files: not read for this event (forge_get_pr has them)".into(),
        });
    }
    if let Some(body) = body_of(&ev.action) {
        lines.push(quote(body));
    }
    lines.push(format!(
        "Act with the forge tools on repo {}, number {}; say what you did in its thread with forge_discuss.",
        ev.item.repo, ev.item.number
    ));
    let route = t.routed.map(|r| {
        json!({
            "agent": r.agent.as_str(),
            "reviewer": r.reviewer,
            "rule": r.rule,
            "why": why(Some(r), t.files),
        })
    });
    let data = json!({
        "server": t.server,
        "repo": ev.item.repo,
        "number": ev.item.number,
        "item": ev.kind,
        "action": ev.action,
        "actor": ev.actor,
        "title": ev.title,
        "url": ev.url,
        "author": ev.author,
        "labels": ev.labels,
        "head_sha": ev.head_sha,
        "room_id": t.room_id,
        "thread_id": t.thread_id,
        "roles": roles,
        "route": route,
        "files": t.files.known(),
        "delivery": t.delivery,
    });
    (lines.join("\n"), data)
}
