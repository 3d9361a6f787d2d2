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
/// The most of a title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// The most of one file's name, in characters.
pub const MAX_FILE_CHARS: usize = 300;
/// The most of all the files' names listed together, in bytes (ASCII names of 100 characters:
/// all 50).
const MAX_FILES_BYTES: usize = 5000;
/// The most labels listed, each at most [`MAX_LABEL_CHARS`], together [`MAX_LABELS_BYTES`].
const MAX_LABELS: usize = 30;
pub const MAX_LABEL_CHARS: usize = 100;
const MAX_LABELS_BYTES: usize = 1000;
/// The most of a login (an actor, an author, a reviewer), in characters.
const MAX_LOGIN_CHARS: usize = 100;
/// The most of a URL, in characters.
const MAX_URL_CHARS: usize = 300;
/// The most of why a route held (it names labels and files), in characters.
const MAX_WHY_CHARS: usize = 700;

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

/// Whether `c` ends a line for someone: `\n`, `\r`, and what `str::lines` does not split on
/// (U+0085, U+2028, U+2029, vertical tab, form feed).
fn breaks_line(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Untrusted forge text (a title, a login, a label, a file name, a URL) as ONE line: every
/// control character and line or paragraph separator a space, capped at `max` characters.
/// Nothing a forge user writes can then begin a line of its own (`route:`, `Act with`).
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| {
            if c.is_control() || breaks_line(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    cap(&flat, max)
}

/// The lines of `body`, split at every line break [`breaks_line`] knows (`\r\n` once), each
/// line's other control characters spaces.
fn body_lines(body: &str) -> Vec<String> {
    body.replace("\r\n", "\n")
        .split(breaks_line)
        .map(|l| {
            l.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        })
        .collect()
}

/// `body` quoted (`> ` on each line), capped at [`MAX_QUOTE_CHARS`]; each line through
/// `escape` (Markdown's, in the thread; none in an agent's text).
fn quote(body: &str, escape: fn(&str) -> String) -> String {
    body_lines(&cap(body.trim(), MAX_QUOTE_CHARS))
        .iter()
        .map(|l| format!("> {}", escape(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text as it is (an agent's text is not Markdown to it).
fn plain(s: &str) -> String {
    s.to_owned()
}

/// Untrusted text made inert in the bot's Markdown: the characters that make emphasis, links,
/// HTML, code or tables backslash-escaped, and a line start that would make a heading, a list
/// or a rule. `alice`, `Fix the parser` stay as they are.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    for (i, c) in s.chars().enumerate() {
        let leading = i == 0 && matches!(c, '-' | '+' | '=' | '#' | '>');
        let ordered = digits > 0 && i == digits && matches!(c, '.' | ')');
        if leading
            || ordered
            || matches!(
                c,
                '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '&' | '!'
            )
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A URL from the forge as the bot shows it: itself when it is an `http(s)` URL (as parsed,
/// so nothing in it breaks the line or the Markdown), else a code span.
fn shown_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => one_line(u.as_str(), MAX_URL_CHARS),
        _ => crate::matrix::markdown::code_span(&one_line(url, MAX_URL_CHARS)),
    }
}

/// The first `max` of `items` that fit in `total` bytes, each [`one_line`] of `each`
/// characters, and how many more there were.
fn bounded(items: &[String], max: usize, each: usize, total: usize) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    for it in items.iter().take(max) {
        let it = one_line(it, each);
        used += it.len();
        if used > total {
            break;
        }
        out.push(it);
    }
    let more = items.len() - out.len();
    (out, more)
}

/// The action as the data says it: a comment's or review's body capped as quoted, a URL or
/// login flattened.
fn action_data(action: &Action) -> Action {
    match action {
        Action::Commented { body, url } => Action::Commented {
            body: cap(body, MAX_QUOTE_CHARS),
            url: one_line(url, MAX_URL_CHARS),
        },
        Action::Reviewed { verdict, body } => Action::Reviewed {
            verdict: *verdict,
            body: cap(body, MAX_QUOTE_CHARS),
        },
        Action::ReviewRequested { reviewer } => Action::ReviewRequested {
            reviewer: one_line(reviewer, MAX_LOGIN_CHARS),
        },
        other => other.clone(),
    }
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

/// The labels in words (`none` when there are none), each through `escape`.
fn labels_words(labels: &[String], escape: fn(&str) -> String) -> String {
    let (shown, more) = bounded(labels, MAX_LABELS, MAX_LABEL_CHARS, MAX_LABELS_BYTES);
    if shown.is_empty() && more == 0 {
        return "none".into();
    }
    let mut words = shown
        .iter()
        .map(|l| escape(l))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        words.push_str(&format!(" … and {more} more"));
    }
    words
}

/// The first line of a thread: `**pull request acme/widgets#5**: Fix the parser — <url>`
/// (the title escaped: it is the forge user's, not the hive's Markdown).
pub fn root_line(event: &ForgeEvent) -> String {
    format!(
        "**{} {}**: {} — {}",
        event.kind,
        event.item,
        md_escape(&one_line(&event.title, MAX_TITLE_CHARS)),
        shown_url(&event.url)
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
        Action::ReviewRequested { reviewer } => format!(
            "asked {} to review",
            md_escape(&one_line(reviewer, MAX_LOGIN_CHARS))
        ),
        Action::Commented { .. } => "commented".into(),
        Action::Reviewed { verdict, .. } => match verdict {
            Verdict::Approved => "approved",
            Verdict::ChangesRequested => "requested changes",
            Verdict::Commented => "reviewed",
        }
        .into(),
    }
}

/// Why the route was taken (or none), and that the files were not known when they were not:
/// one line (it names labels and files).
fn why(routed: Option<&Routed>, files: &Files) -> String {
    let base = routed.map_or("no route matched", |r| r.why.as_str());
    let why = match files {
        Files::Unknown(e) => format!(
            "{base}; routed without the files: {}",
            cap(e, MAX_ERROR_CHARS)
        ),
        Files::NotRead | Files::Known(_) => base.to_owned(),
    };
    one_line(&why, MAX_WHY_CHARS)
}

/// The route in words: `iris, reviewer bob (route 1: label frontend)`, or `none (…)`.
fn route_words(routed: Option<&Routed>, files: &Files, escape: fn(&str) -> String) -> String {
    let why = escape(&why(routed, files));
    match routed {
        Some(r) => format!(
            "{}{} (route {}: {why})",
            r.agent,
            r.reviewer
                .as_deref()
                .map(|v| format!(", reviewer {}", escape(&one_line(v, MAX_LOGIN_CHARS))))
                .unwrap_or_default(),
            r.rule,
        ),
        None => format!("none ({why})"),
    }
}

/// A line in the item's thread, as the hive's bot: `alice opened — routed to …`, or
/// `bob requested changes:` and the review quoted. Everything the forge user wrote is
/// escaped: the bot's Markdown is the hive's.
pub fn thread_line(event: &ForgeEvent, routed: Option<&Routed>, files: &Files) -> String {
    let mut line = format!(
        "{} {}",
        md_escape(&one_line(&event.actor, MAX_LOGIN_CHARS)),
        thread_words(&event.action)
    );
    if let Action::Labeled = event.action {
        line.push_str(&format!(": {}", labels_words(&event.labels, md_escape)));
    }
    if matches!(event.action, Action::Opened | Action::Reopened) {
        line.push_str(&format!(
            " — route: {}",
            route_words(routed, files, md_escape)
        ));
    }
    if let Some(body) = body_of(&event.action) {
        line.push_str(&format!(":\n{}", quote(body, md_escape)));
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
        Action::ReviewRequested { reviewer } => {
            format!("given reviewer {}", one_line(reviewer, MAX_LOGIN_CHARS))
        }
        Action::Commented { .. } => "commented on".into(),
        Action::Reviewed { verdict, .. } => match verdict {
            Verdict::Approved => "approved",
            Verdict::ChangesRequested => "sent back with changes requested",
            Verdict::Commented => "reviewed",
        }
        .into(),
    }
}

/// The core event agent `roles` are told: its text (the module's format) and its data. Every
/// field from the forge is one line in the text ([`one_line`]) and bounded in both, so no
/// forge user's text poses as the core's lines and the event stays far below Matrix's 64 KiB.
pub fn render_event(t: &Told<'_>, roles: &[Role]) -> (String, serde_json::Value) {
    let ev = t.event;
    let (files, files_more) = bounded(t.files.known(), MAX_FILES, MAX_FILE_CHARS, MAX_FILES_BYTES);
    let (labels, _) = bounded(&ev.labels, MAX_LABELS, MAX_LABEL_CHARS, MAX_LABELS_BYTES);
    let mut lines = vec![
        format!(
            "forge: {} {} {} by {}: {} — {}",
            ev.kind,
            ev.item,
            event_words(&ev.action),
            one_line(&ev.actor, MAX_LOGIN_CHARS),
            one_line(&ev.title, MAX_TITLE_CHARS),
            one_line(&ev.url, MAX_URL_CHARS)
        ),
        format!(
            "roles: {}",
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("route: {}", route_words(t.routed, t.files, plain)),
    ];
    if ev.kind == ItemKind::PullRequest {
        lines.push(match t.files {
            Files::Known(f) if f.is_empty() => "files: none".into(),
            Files::Known(_) => {
                let mut shown = files.join(", ");
                if files_more > 0 {
                    shown.push_str(&format!(" … and {files_more} more"));
                }
                format!("files: {shown}")
            }
            Files::Unknown(e) => format!("files: not known ({})", one_line(e, MAX_ERROR_CHARS)),
            Files::NotRead => "files: not read for this event (forge_get_pr has them)".into(),
        });
    }
    if let Some(body) = body_of(&ev.action) {
        lines.push(quote(body, plain));
    }
    lines.push(format!(
        "Act with the forge tools on repo {}, number {}; say what you did in its thread with forge_discuss.",
        ev.item.repo, ev.item.number
    ));
    let route = t.routed.map(|r| {
        json!({
            "agent": r.agent.as_str(),
            "reviewer": r.reviewer.as_deref().map(|v| one_line(v, MAX_LOGIN_CHARS)),
            "rule": r.rule,
            "why": why(Some(r), t.files),
        })
    });
    let mut data = json!({
        "server": t.server,
        "repo": ev.item.repo,
        "number": ev.item.number,
        "item": ev.kind,
        "action": action_data(&ev.action),
        "actor": one_line(&ev.actor, MAX_LOGIN_CHARS),
        "title": one_line(&ev.title, MAX_TITLE_CHARS),
        "url": one_line(&ev.url, MAX_URL_CHARS),
        "author": one_line(&ev.author, MAX_LOGIN_CHARS),
        "labels": labels,
        "head_sha": ev.head_sha.as_deref().map(|h| one_line(h, MAX_LOGIN_CHARS)),
        "room_id": t.room_id,
        "thread_id": t.thread_id,
        "roles": roles,
        "route": route,
        "files": files,
        "delivery": t.delivery,
    });
    if files_more > 0 {
        data["files_more"] = json!(files_more);
    }
    (lines.join("\n"), data)
}
