//! The request message in `#hive-approvals`: what an operator reads before reacting ✅ (and,
//! at the end, an agent's question as posted there and a request's outcome as its requester
//! is told).
//!
//! Pure: a [`RequestView`] in, the plain `body` and the HTML `formatted_body` out. Everything
//! an agent wrote (requester, agent, summary, paths, file contents) is shown as text, never
//! parsed as Markdown or HTML:
//! - html escapes it; the summary is a `<blockquote>`, each diff a
//!   `<pre><code class="language-diff">`.
//! - body quotes every summary line (`\r\n` and a bare `\r` end a line there); a diff keeps
//!   git's lines, a CRLF's `\r` is dropped and a bare `\r` shows as `␍`, so no text can pass for
//!   a context line; each diff fence is longer than any backtick run inside it.
//! - both show other control characters as control pictures (`␛`, `␀`) and invisible or
//!   direction-changing characters (bidi marks and overrides, zero-width space, line
//!   separators) as `\u{…}`; joiners stay, so emoji and scripts that need them still read.
//!
//! Order: the diffstat of every file, `agent.toml`'s diff in full, then the other files' diffs
//! in what is left. A line over [`LINE_MAX`] characters is cut with a marker; the body stays
//! within [`BODY_MAX`] and the html within [`HTML_MAX`] (a Matrix event is at most 64 KiB), and
//! whatever is left out is said, with `hive approvals --diff <id>`. Nothing is cut silently.

use crate::c0re::routing::keycap;
use crate::configrepo::FileChange;
use crate::matrix::markdown::escape;
use crate::store::{Approval, ApprovalKind, ApprovalState, Question};

mod kept;
pub use kept::{KeptView, render_kept};

/// Largest plain body.
pub const BODY_MAX: usize = 24 * 1024;
/// Largest `formatted_body`.
pub const HTML_MAX: usize = 32 * 1024;
/// Longest line shown, in characters; the rest is cut with a marker.
pub const LINE_MAX: usize = 300;
/// Most summary lines shown.
const SUMMARY_LINES: usize = 40;
/// The summary's share of the message.
const SUMMARY_MAX: Size = Size::new(4 * 1024, 6 * 1024);
/// The diffstat's share of the message.
const STAT_MAX: Size = Size::new(6 * 1024, 9 * 1024);
/// Room kept for the "left out" note.
const NOTE_MAX: Size = Size::new(1024, 2048);
/// Characters of a path named in the "left out" note.
const NOTE_PATH: usize = 40;

/// What a request shows.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub id: i64,
    /// An `init_config` request: a new agent.
    pub spawn: bool,
    pub requester: &'a str,
    pub agent: &'a str,
    pub summary: &'a str,
    pub sha: &'a str,
    /// Operators who must approve.
    pub required: u32,
    pub expires_us: i64,
    /// The commit's changes, from `ConfigRepo::changes`.
    pub changes: &'a [FileChange],
}

/// A rendered request: `body` (plain text) and `html` (`formatted_body`,
/// `org.matrix.custom.html`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: String,
    pub html: String,
}

/// Renders the request message (module doc).
pub fn render(v: &RequestView) -> Rendered {
    let mut m = Msg::default();
    let requester = inline(v.requester, LINE_MAX);
    let agent = inline(v.agent, LINE_MAX);
    let what = if v.spawn {
        "to spawn a new agent,"
    } else {
        "to apply a config commit to"
    };
    heading(&mut m, v.id, &requester, what, &agent);
    summary(&mut m, v.summary);
    let sha = inline(v.sha, LINE_MAX);
    m.push(&Part {
        body: format!("commit {sha}\n\n"),
        html: format!("<p>commit <code>{}</code></p>\n", escape(&sha)),
    });
    let mut files: Vec<&FileChange> = v.changes.iter().collect();
    files.sort_by(|a, b| (a.path != "agent.toml", &a.path).cmp(&(b.path != "agent.toml", &b.path)));
    let unlisted = diffstat(&mut m, &files);

    let need = if v.required > 1 {
        format!(" ({} operators must approve)", v.required)
    } else {
        String::new()
    };
    let tail = format!(
        "React ✅ to approve{need} or ❌ to deny. Expires at {} (the core's clock).",
        crate::store::utc(v.expires_us)
    );
    let tail = Part {
        body: tail.clone(),
        html: format!("<p>{}</p>", escape(&tail)),
    };
    let reserve = tail.size().plus(NOTE_MAX);
    let left_out = diffs(&mut m, &files, reserve);
    // A cut line or summary is a cut too: point to the whole diff. (Agent text that happens
    // to hold the marker only earns an extra pointer.)
    let cut = m.body.contains(CUT_MARK);
    if let Some(note) = note(v.id, unlisted, &left_out, cut) {
        m.push(&note);
    }
    m.push(&tail);
    Rendered {
        body: m.body,
        html: m.html,
    }
}

/// Bytes of body and of html.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size {
    body: usize,
    html: usize,
}

impl Size {
    const fn new(body: usize, html: usize) -> Self {
        Self { body, html }
    }
    fn plus(self, o: Size) -> Size {
        Size::new(self.body + o.body, self.html + o.html)
    }
    fn within(self, limit: Size) -> bool {
        self.body <= limit.body && self.html <= limit.html
    }
}

/// A piece of the message, in both forms.
#[derive(Debug, Default)]
struct Part {
    body: String,
    html: String,
}

impl Part {
    fn size(&self) -> Size {
        Size::new(self.body.len(), self.html.len())
    }
}

/// The message being built.
#[derive(Debug, Default)]
struct Msg {
    body: String,
    html: String,
}

impl Msg {
    fn size(&self) -> Size {
        Size::new(self.body.len(), self.html.len())
    }
    /// Whether `extra` more fits with `reserve` kept free.
    fn fits(&self, extra: Size, reserve: Size) -> bool {
        self.size()
            .plus(extra)
            .plus(reserve)
            .within(Size::new(BODY_MAX, HTML_MAX))
    }
    fn push(&mut self, p: &Part) {
        self.body.push_str(&p.body);
        self.html.push_str(&p.html);
    }
}

/// Pushes `c` made visible: control characters as control pictures, invisible and
/// direction-changing ones as `\u{…}`. Tabs stay; a newline or `\r` reaching here is shown too.
fn visible_char(c: char, out: &mut String) {
    match c {
        '\t' => out.push('\t'),
        '\u{0}'..='\u{1f}' => out
            .push(char::from_u32(0x2400 + c as u32).expect("U+2400..U+241F are control pictures")),
        '\u{7f}' => out.push('␡'),
        // Format characters and what renders as nothing (Unicode's Cf and
        // Default_Ignorable_Code_Point), except the joiners emoji and scripts need: hidden text
        // in a config must show.
        '\u{80}'..='\u{9f}'
        | '\u{ad}'
        | '\u{34f}'
        | '\u{61c}'
        | '\u{115f}'..='\u{1160}'
        | '\u{17b4}'..='\u{17b5}'
        | '\u{180b}'..='\u{180f}'
        | '\u{200b}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{feff}'
        | '\u{ffa0}'
        | '\u{fff0}'..='\u{fffb}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// The end of the marker a cut line carries.
const CUT_MARK: &str = " more characters cut]";

/// `s` made visible (see [`visible_char`]) and cut after `max` characters with a marker.
fn visible(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut shown = 0;
    let mut chars = s.chars();
    for c in chars.by_ref() {
        let before = out.len();
        visible_char(c, &mut out);
        shown += out[before..].chars().count();
        if shown >= max {
            break;
        }
    }
    let rest = chars.count();
    if rest > 0 {
        out.push_str(&format!(" …[{rest}{CUT_MARK}"));
    }
    out
}

/// One-line agent text (requester, agent, path): every line break shown, never followed.
fn inline(s: &str, max: usize) -> String {
    visible(s, max)
}

/// Free text's lines: `\r\n`, `\r` and `\n` each end one.
fn text_lines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&s[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&s[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    lines.push(&s[start..]);
    lines
}

/// A patch's lines as git wrote them (split on `\n`), a CRLF's `\r` dropped, made visible and
/// cut at [`LINE_MAX`].
fn patch_lines(patch: &str) -> impl Iterator<Item = String> + '_ {
    patch
        .strip_suffix('\n')
        .unwrap_or(patch)
        .split('\n')
        .filter(move |_| !patch.is_empty())
        .map(|l| visible(l.strip_suffix('\r').unwrap_or(l), LINE_MAX))
}

/// The summary as a quote, every line quoted, within [`SUMMARY_MAX`].
/// A request's first line: `Request #<id>: <requester> asks <what> <agent>` (both names
/// already made one line, [`inline`]).
fn heading(m: &mut Msg, id: i64, requester: &str, what: &str, agent: &str) {
    m.push(&Part {
        body: format!("Request #{id}: {requester} asks {what} {agent}\n\n"),
        html: format!(
            "<p><strong>Request #{id}</strong>: <strong>{}</strong> asks {what} <strong>{}</strong></p>\n",
            escape(requester),
            escape(agent)
        ),
    });
}

fn summary(m: &mut Msg, text: &str) {
    let lines = text_lines(text.trim_end());
    let mut part = Part {
        body: String::new(),
        html: "<blockquote>".into(),
    };
    let mut shown = 0;
    for line in &lines {
        let line = visible(line, LINE_MAX);
        let body = if line.is_empty() {
            ">\n".to_owned()
        } else {
            format!("> {line}\n")
        };
        let html = format!("{}{}", if shown > 0 { "<br>\n" } else { "" }, escape(&line));
        // Room for this line and the marker after it.
        let marker = Size::new(80, 100);
        if shown == SUMMARY_LINES
            || !part
                .size()
                .plus(Size::new(body.len(), html.len()))
                .plus(marker)
                .within(SUMMARY_MAX)
        {
            break;
        }
        part.body.push_str(&body);
        part.html.push_str(&html);
        shown += 1;
    }
    if shown < lines.len() {
        let more = format!(
            "… ({} more lines of the summary left out)",
            lines.len() - shown
        );
        part.body.push_str(&format!("> {more}\n"));
        part.html.push_str(&format!("<br>\n<em>{more}</em>"));
    }
    part.body.push('\n');
    part.html.push_str("</blockquote>\n");
    m.push(&part);
}

/// The diffstat: every file, within [`STAT_MAX`]. Returns how many files it could not list.
fn diffstat(m: &mut Msg, files: &[&FileChange]) -> usize {
    if files.is_empty() {
        m.push(&Part {
            body: "No file changes.\n\n".into(),
            html: "<p>No file changes.</p>\n".into(),
        });
        return 0;
    }
    let (added, removed) = files.iter().fold((0usize, 0usize), |(a, r), f| {
        (a.saturating_add(f.added), r.saturating_add(f.removed))
    });
    let head = format!(
        "{} file{} changed (+{added} −{removed}):",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    let mut part = Part {
        body: format!("{head}\n"),
        html: format!("<p>{head}</p>\n<ul>\n"),
    };
    let mut listed = 0;
    for f in files {
        let path = inline(&f.path, LINE_MAX);
        let stat = format!("+{} −{}  {}", f.added, f.removed, f.status.as_str());
        let body = format!("  {path}  {stat}\n");
        let html = format!("<li><code>{}</code>  {stat}</li>\n", escape(&path));
        let marker = Size::new(60, 80);
        if !part
            .size()
            .plus(Size::new(body.len(), html.len()))
            .plus(marker)
            .within(STAT_MAX)
        {
            break;
        }
        part.body.push_str(&body);
        part.html.push_str(&html);
        listed += 1;
    }
    let unlisted = files.len() - listed;
    if unlisted > 0 {
        part.body
            .push_str(&format!("  … and {unlisted} more files\n"));
        part.html
            .push_str(&format!("<li><em>… and {unlisted} more files</em></li>\n"));
    }
    part.body.push('\n');
    part.html.push_str("</ul>\n");
    m.push(&part);
    unlisted
}

/// A file whose diff was left out, wholly or in part.
#[derive(Debug)]
struct LeftOut {
    path: String,
    lines: usize,
}

/// The longest run of backticks in `s`.
fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// A fence longer than any backtick run in `lines` (at least three).
fn fence_for<'a>(lines: impl IntoIterator<Item = &'a String>) -> String {
    let run = lines
        .into_iter()
        .map(|l| longest_backtick_run(l))
        .max()
        .unwrap_or(0);
    "`".repeat((run + 1).max(3))
}

/// The diffs, in order, while they fit with `reserve` kept free; what did not fit is returned.
fn diffs(m: &mut Msg, files: &[&FileChange], reserve: Size) -> Vec<LeftOut> {
    let mut left_out = Vec::new();
    for f in files.iter().filter(|f| !f.patch.is_empty()) {
        let total = patch_lines(&f.patch).count();
        // Render only as many lines as could ever fit.
        let room = BODY_MAX.saturating_sub(m.body.len());
        let mut lines = Vec::new();
        let mut bytes = 0;
        for l in patch_lines(&f.patch) {
            bytes += l.len() + 1;
            lines.push(l);
            if bytes > room {
                break;
            }
        }
        let path = inline(&f.path, LINE_MAX);
        let fence = fence_for(&lines);
        let open = Part {
            body: format!("{path} ({}):\n{fence}diff\n", f.status.as_str()),
            html: format!(
                "<p><code>{}</code> ({}):</p>\n<pre><code class=\"language-diff\">",
                escape(&path),
                f.status.as_str()
            ),
        };
        let close = Part {
            body: format!("{fence}\n\n"),
            html: "</code></pre>\n".into(),
        };
        let cut = |n: usize| {
            let text = format!("… {path}'s diff is cut here: {n} more lines left out");
            Part {
                body: format!("{text}\n\n"),
                html: format!("<p><em>{}</em></p>\n", escape(&text)),
            }
        };
        let frame = open.size().plus(close.size()).plus(cut(total).size());
        let first = lines.first().map_or(Size::new(0, 0), |l| {
            Size::new(l.len() + 1, escape(l).len() + 1)
        });
        if !m.fits(frame.plus(first), reserve) {
            left_out.push(LeftOut {
                path: f.path.clone(),
                lines: total,
            });
            continue;
        }
        m.push(&open);
        let after = close.size().plus(cut(total).size()).plus(reserve);
        let mut shown = 0;
        for l in &lines {
            let line = Part {
                body: format!("{l}\n"),
                html: format!("{}\n", escape(l)),
            };
            if !m.fits(line.size(), after) {
                break;
            }
            m.push(&line);
            shown += 1;
        }
        m.push(&close);
        if shown < total {
            m.push(&cut(total - shown));
            left_out.push(LeftOut {
                path: f.path.clone(),
                lines: total - shown,
            });
        }
    }
    left_out
}

/// The "left out" line, if anything was; within [`NOTE_MAX`].
fn note(id: i64, unlisted: usize, left_out: &[LeftOut], cut: bool) -> Option<Part> {
    let mut said = Vec::new();
    if cut {
        said.push("long lines are shown cut".to_owned());
    }
    if unlisted > 0 {
        said.push(format!("{unlisted} files are not in the list above"));
    }
    if !left_out.is_empty() {
        let lines: usize = left_out.iter().map(|l| l.lines).sum();
        let mut names: Vec<String> = left_out
            .iter()
            .take(3)
            .map(|l| inline(&l.path, NOTE_PATH))
            .collect();
        if left_out.len() > 3 {
            names.push(format!("{} more", left_out.len() - 3));
        }
        said.push(format!(
            "{lines} diff lines of {} file{} ({})",
            left_out.len(),
            if left_out.len() == 1 { "" } else { "s" },
            names.join(", ")
        ));
    }
    if said.is_empty() {
        return None;
    }
    let text = format!("Left out: {}.", said.join("; "));
    let how = format!("`hive approvals --diff {id}` prints the whole diff.");
    Some(Part {
        body: format!("{text} {how}\n\n"),
        html: format!(
            "<p><em>{}</em> <code>hive approvals --diff {id}</code> prints the whole diff.</p>\n",
            escape(&text)
        ),
    })
}

/// An agent's question as posted in `#hive-approvals` (Markdown, for `message_content`): the
/// question quoted, each option with its keycap, how to answer, and when it expires.
pub fn question(q: &Question) -> String {
    let choices: Vec<String> = q
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{} {o}", keycap(i)))
        .collect();
    let how = if choices.is_empty() {
        "Reply in this thread to answer.".to_owned()
    } else {
        format!("React {} — or reply in this thread.", choices.join(" · "))
    };
    format!(
        "**Question #{}** from **{}**:\n\n> {}\n\n{how} Expires at {} (unix time).",
        q.id,
        q.agent,
        q.question.replace('\n', "\n> "),
        q.expires_us / 1_000_000
    )
}

/// How a request ended, as its requesting agent is told (`approval_outcome`'s `detail`).
pub fn outcome(a: &Approval) -> String {
    match a.state {
        ApprovalState::Applied if a.kind == ApprovalKind::InitConfig => {
            format!("{} is spawned", a.agent)
        }
        ApprovalState::Applied if a.kind == ApprovalKind::Destroy => {
            format!("{} is destroyed; its state is kept", a.agent)
        }
        ApprovalState::Applied if a.kind == ApprovalKind::Revive => {
            format!("{} is revived", a.agent)
        }
        ApprovalState::Applied if a.kind == ApprovalKind::Purge => {
            format!("{}'s kept state is purged", a.agent)
        }
        ApprovalState::Applied => match a.deploy {
            Some(deploy) => format!("applied as deploy/{deploy}"),
            // `finish_apply` writes both at once: never without a deploy.
            None => "applied".to_owned(),
        },
        state => format!(
            "{state}{}",
            a.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configrepo::ChangeKind;
    use proptest::prelude::*;

    fn change(path: &str, status: ChangeKind, lines: &[&str]) -> FileChange {
        let sign = if status == ChangeKind::Deleted {
            '-'
        } else {
            '+'
        };
        let mut patch = if status == ChangeKind::Added {
            format!("@@ -0,0 +1,{} @@\n", lines.len())
        } else {
            format!("@@ -1,{0} +1,{0} @@\n", lines.len())
        };
        for l in lines {
            patch.push(sign);
            patch.push_str(l);
            patch.push('\n');
        }
        FileChange {
            path: path.into(),
            status,
            added: if sign == '+' { lines.len() } else { 0 },
            removed: if sign == '-' { lines.len() } else { 0 },
            patch,
        }
    }

    fn view<'a>(summary: &'a str, changes: &'a [FileChange]) -> RequestView<'a> {
        RequestView {
            id: 7,
            spawn: false,
            requester: "hm1nd",
            agent: "echo",
            summary,
            sha: "0123456789abcdef0123456789abcdef01234567",
            required: 1,
            expires_us: 1_796_000_000_000_000,
            changes,
        }
    }

    const TOML: &[&str] = &[
        "[brain]",
        "kind = \"scripted\"",
        "[[brain.rules]]",
        "reply = \"v2: {body}\"",
    ];

    /// The hostile cases: (name, view's summary, changes, spawn, requester, agent).
    fn cases() -> Vec<(&'static str, RenderCase)> {
        let many: Vec<String> = (0..50)
            .map(|i| format!("line {i} of a long file"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let huge = "x".repeat(1 << 20);
        let big_toml: Vec<String> = (0..3000).map(|i| format!("# comment {i}")).collect();
        let big_toml: Vec<&str> = big_toml.iter().map(String::as_str).collect();
        vec![
            (
                "summary_breaks",
                RenderCase::new(
                    "first\rsecond\r\nthird\n> not the end of the quote\n**bold** `code` _x_",
                    vec![change("agent.toml", ChangeKind::Modified, TOML)],
                ),
            ),
            (
                "fences",
                RenderCase::new(
                    "backticks",
                    vec![change(
                        "agent.toml",
                        ChangeKind::Modified,
                        &["```", "# ```````", "reply = \"`\""],
                    )],
                ),
            ),
            (
                "a_md_before_agent_toml",
                RenderCase::new(
                    "order",
                    vec![
                        change("a.md", ChangeKind::Added, &many),
                        change("agent.toml", ChangeKind::Modified, TOML),
                        change("B.md", ChangeKind::Deleted, &["old"]),
                    ],
                ),
            ),
            (
                "many_files",
                RenderCase::new(
                    "sixty-four files",
                    (0..64)
                        .map(|i| change(&format!("docs/file-{i:02}.md"), ChangeKind::Added, &many))
                        .chain([change("agent.toml", ChangeKind::Modified, TOML)])
                        .collect(),
                ),
            ),
            (
                "huge_prompt",
                RenderCase::new(
                    "a 1 MiB prompt on one line",
                    vec![
                        change("prompt.md", ChangeKind::Modified, &[&huge]),
                        change("agent.toml", ChangeKind::Modified, TOML),
                    ],
                ),
            ),
            (
                "huge_agent_toml",
                RenderCase::new(
                    "agent.toml alone is over the limit",
                    vec![
                        change("agent.toml", ChangeKind::Modified, &big_toml),
                        change("prompt.md", ChangeKind::Modified, &["never shown"]),
                    ],
                ),
            ),
            ("spawn", {
                let mut c = RenderCase::new(
                    "a helper for the docs",
                    vec![
                        change("agent.toml", ChangeKind::Added, TOML),
                        change(
                            "prompt.md",
                            ChangeKind::Added,
                            &["# helper", "", "Be brief."],
                        ),
                    ],
                );
                c.spawn = true;
                c.required = 2;
                c
            }),
            ("unicode_and_control", {
                let mut c = RenderCase::new(
                    "bell\u{7} nul\u{0} esc\u{1b}[31mred del\u{7f} c1\u{85} ✅ 日本語 👩‍💻",
                    vec![change(
                        "tools/\u{202e}gpj.exe\nfake.md",
                        ChangeKind::Added,
                        &[
                            "\u{1b}[2J clear",
                            "bare\rcarriage",
                            "crlf\r",
                            "tab\there",
                            "zero\u{200b}width",
                        ],
                    )],
                );
                c.requester = "rogue\n\nRequest #8: operator";
                c.agent = "echo\u{2028}x";
                c
            }),
            ("html", {
                let mut c = RenderCase::new(
                    "<img src=x onerror=alert(1)> & <script>alert(2)</script>",
                    vec![change(
                        "<b>x</b>.md",
                        ChangeKind::Added,
                        &[
                            "</code></pre><script>alert(3)</script>",
                            "\" onmouseover=\"x",
                            "&amp; &lt;",
                        ],
                    )],
                );
                c.requester = "<a href=javascript:x>";
                c
            }),
        ]
    }

    struct RenderCase {
        summary: String,
        changes: Vec<FileChange>,
        spawn: bool,
        required: u32,
        requester: &'static str,
        agent: &'static str,
    }

    impl RenderCase {
        fn new(summary: &str, changes: Vec<FileChange>) -> Self {
            Self {
                summary: summary.into(),
                changes,
                spawn: false,
                required: 1,
                requester: "hm1nd",
                agent: "echo",
            }
        }
        fn render(&self) -> Rendered {
            let mut v = view(&self.summary, &self.changes);
            v.spawn = self.spawn;
            v.required = self.required;
            v.requester = self.requester;
            v.agent = self.agent;
            render(&v)
        }
    }

    /// What must hold for every rendering.
    fn check(r: &Rendered) {
        assert!(
            r.body.len() <= BODY_MAX,
            "body {} > {BODY_MAX}",
            r.body.len()
        );
        assert!(
            r.html.len() <= HTML_MAX,
            "html {} > {HTML_MAX}",
            r.html.len()
        );
        let lower = r.html.to_lowercase();
        assert!(!lower.contains("<script"), "{}", r.html);
        assert!(!lower.contains("<img"), "{}", r.html);
        assert!(!lower.contains("<a "), "{}", r.html);
        assert!(!lower.contains("<b>"), "{}", r.html);
        assert_eq!(
            lower.matches("<code").count(),
            lower.matches("</code>").count()
        );
        assert_eq!(
            lower.matches("<pre>").count(),
            lower.matches("</pre>").count()
        );
        for (i, line) in r.body.lines().enumerate() {
            assert!(line.chars().count() <= LINE_MAX + 340, "line {i} too long");
            assert!(!line.contains('\r') && !line.contains('\u{1b}'), "{line:?}");
        }
        assert!(r.body.ends_with("(the core's clock)."), "{}", r.body);
        assert!(
            r.html.ends_with("(the core&#39;s clock).</p>"),
            "{}",
            r.html
        );
    }

    fn asked(options: &[&str]) -> Question {
        Question {
            id: 4,
            agent: "echo".into(),
            question: "Which colour?\nThink first.".into(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            state: crate::store::QuestionState::Pending,
            expires_us: 1_700_000_000_000_000,
            request_event: None,
            answer: None,
            answered_by: None,
        }
    }

    #[test]
    fn snapshots_of_questions() {
        insta::assert_snapshot!("question_with_options", question(&asked(&["red", "blue"])));
        insta::assert_snapshot!("question_without_options", question(&asked(&[])));
    }

    #[test]
    fn outcomes_as_the_requester_reads_them() {
        let ended = |kind, state, deploy, reason: Option<&str>| Approval {
            id: 1,
            kind,
            agent: "echo".into(),
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            requester: "hm1nd".into(),
            summary: "s".into(),
            state,
            required: 1,
            created_us: 0,
            expires_us: 0,
            request_event: None,
            decided_us: None,
            reason: reason.map(str::to_owned),
            deploy,
            complete: true,
            outcome_told: false,
        };
        use ApprovalKind::{ApplyCommit, InitConfig};
        use ApprovalState::{Applied, Cancelled, Denied, Expired, Failed};
        let cases = [
            (
                "spawned",
                ended(InitConfig, Applied, Some(1), None),
                "echo is spawned",
            ),
            (
                "applied",
                ended(ApplyCommit, Applied, Some(3), None),
                "applied as deploy/3",
            ),
            (
                "denied",
                ended(ApplyCommit, Denied, None, Some("denied by @op:hs")),
                "denied: denied by @op:hs",
            ),
            (
                "failed",
                ended(ApplyCommit, Failed, None, Some("no room")),
                "failed: no room",
            ),
            (
                "expired",
                ended(ApplyCommit, Expired, None, Some("expired")),
                "expired: expired",
            ),
            (
                "cancelled without a reason",
                ended(InitConfig, Cancelled, None, None),
                "cancelled",
            ),
        ];
        for (name, a, want) in cases {
            assert_eq!(outcome(&a), want, "{name}");
        }
    }

    #[test]
    fn snapshots_of_hostile_requests() {
        for (name, case) in cases() {
            let r = case.render();
            check(&r);
            insta::assert_snapshot!(format!("{name}_body"), r.body);
            insta::assert_snapshot!(format!("{name}_html"), r.html);
        }
    }

    #[test]
    fn summary_lines_are_all_quoted() {
        let changes = [change("agent.toml", ChangeKind::Modified, TOML)];
        let r = render(&view("a\rb\r\nc\n\nd", &changes));
        assert!(
            r.body.contains("\n> a\n> b\n> c\n>\n> d\n\ncommit "),
            "{}",
            r.body
        );
        assert!(
            r.html
                .contains("<blockquote>a<br>\nb<br>\nc<br>\n<br>\nd</blockquote>"),
            "{}",
            r.html
        );
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let r = render(&view(&long, &changes));
        assert!(
            r.body
                .contains("> line 39\n> … (60 more lines of the summary left out)\n"),
            "{}",
            r.body
        );
    }

    #[test]
    fn agent_toml_comes_first_and_is_cut_only_with_a_marker() {
        let a = (0..100).map(|i| format!("a{i}")).collect::<Vec<_>>();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let changes = [
            change("a.md", ChangeKind::Added, &a),
            change("agent.toml", ChangeKind::Modified, TOML),
        ];
        let r = render(&view("s", &changes));
        let toml = r.body.find("agent.toml (modified):").unwrap();
        let md = r.body.find("a.md (added):").unwrap();
        assert!(toml < md, "{}", r.body);
        assert!(r.body.contains("+reply = \"v2: {body}\""));
        // Too big to fit: cut, and said so twice (at the cut and in the note).
        let r = cases()
            .into_iter()
            .find(|(n, _)| *n == "huge_agent_toml")
            .unwrap()
            .1
            .render();
        assert!(
            r.body.contains("… agent.toml's diff is cut here: "),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("Left out: ") && r.body.contains("(agent.toml, prompt.md)"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains("`hive approvals --diff 7` prints the whole diff.")
        );
        assert!(!r.body.contains("never shown"));
    }

    #[test]
    fn fence_lengths() {
        let table: &[(&[&str], usize)] = &[
            (&[], 3),
            (&["no ticks"], 3),
            (&["``"], 3),
            (&["```"], 4),
            (&["a`b``c"], 3),
            (&["```````", "```"], 8),
            (&["x ```` y", "`````"], 6),
        ];
        for (lines, want) in table {
            let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            assert_eq!(fence_for(&lines).len(), *want, "{lines:?}");
        }
        // A line of 1000 backticks is cut at LINE_MAX first: the fence stays bounded.
        let ticks = "`".repeat(1000);
        let lines: Vec<String> = patch_lines(&ticks).collect();
        assert_eq!(fence_for(&lines).len(), LINE_MAX + 1);
        let changes = [change("agent.toml", ChangeKind::Modified, &[&ticks[..]])];
        let r = render(&view("s", &changes));
        // "+" and 299 backticks, then the marker: a run of 299, a fence of 300.
        let fence = "`".repeat(LINE_MAX);
        let want = format!(
            "\n{fence}diff\n@@ -1,1 +1,1 @@\n+{} …[701 more characters cut]\n{fence}\n",
            "`".repeat(LINE_MAX - 1)
        );
        assert!(r.body.contains(&want), "{}", r.body);
    }

    #[test]
    fn visible_text() {
        let table: &[(&str, &str)] = &[
            ("plain ✅ 日本", "plain ✅ 日本"),
            ("a\tb", "a\tb"),
            ("nul\u{0}esc\u{1b}bel\u{7}", "nul␀esc␛bel␇"),
            ("cr\rlf\n", "cr␍lf␊"),
            ("del\u{7f}", "del␡"),
            ("c1\u{85}", "c1\\u{85}"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
            ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
            ("zw\u{200b}bom\u{feff}", "zw\\u{200b}bom\\u{feff}"),
        ];
        for (input, want) in table {
            assert_eq!(visible(input, LINE_MAX), *want, "{input:?}");
        }
        assert_eq!(visible("abcdef", 3), "abc …[3 more characters cut]");
        assert_eq!(visible("abc", 3), "abc");
        assert_eq!(text_lines("a\rb\r\nc\nd"), ["a", "b", "c", "d"]);
        assert_eq!(text_lines(""), [""]);
        let lines: Vec<String> = patch_lines("+a\r\n+b\rc\n-d\n").collect();
        assert_eq!(lines, ["+a", "+b␍c", "-d"]);
    }

    #[test]
    fn sizes_stay_within_the_caps() {
        let path = "p".repeat(400);
        let quote = "\"'<>&".repeat(50_000);
        let lines: Vec<String> = (0..2000)
            .map(|i| format!("<>&\"' {i} {}", "&".repeat(290)))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let wide: Vec<FileChange> = (0..1000)
            .map(|i| change(&format!("{i}{path}"), ChangeKind::Added, &lines[..3]))
            .collect();
        let mut table: Vec<(String, RenderCase)> = cases()
            .into_iter()
            .map(|(n, c)| (n.to_owned(), c))
            .collect();
        table.push((
            "1000 files with long paths".into(),
            RenderCase::new("s", wide),
        ));
        table.push((
            "a summary of quotes".into(),
            RenderCase::new(
                &quote,
                vec![change("agent.toml", ChangeKind::Added, &lines)],
            ),
        ));
        table.push((
            "every line a wide escape".into(),
            RenderCase::new(
                &"\u{202e}".repeat(100_000),
                vec![change(&"\u{202e}".repeat(500), ChangeKind::Added, &lines)],
            ),
        ));
        table.push(("nothing".into(), RenderCase::new("", vec![])));
        for (name, mut case) in table {
            case.requester = Box::leak(quote[..3000].to_owned().into_boxed_str());
            let r = case.render();
            check(&r);
            if [
                "huge_agent_toml",
                "many_files",
                "1000 files with long paths",
            ]
            .contains(&name.as_str())
            {
                assert!(r.body.contains("\n\nLeft out: "), "{name}: {}", r.body);
            }
        }
    }

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("```".to_owned()),
            Just("``````````".to_owned()),
            Just("</code></pre>".to_owned()),
            Just("<script>alert(1)</script>".to_owned()),
            Just("\r".to_owned()),
            ".{0,40}",
            "[`<>&\"' \r\u{1b}\u{202e}a-z]{0,400}",
        ]
    }

    fn file_change() -> impl Strategy<Value = FileChange> {
        (
            prop_oneof![Just("agent.toml".to_owned()), ".{0,30}", "[a-z/`<>]{1,300}"],
            prop::collection::vec(line(), 0..300),
            0..3u8,
        )
            .prop_map(|(path, lines, k)| {
                let status =
                    [ChangeKind::Added, ChangeKind::Modified, ChangeKind::Deleted][k as usize];
                let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                change(&path, status, &lines)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn any_request_renders_within_bounds(
            summary in prop_oneof![".{0,200}", "[\r\n>*`<a-z]{0,3000}"],
            requester in ".{0,100}",
            changes in prop::collection::vec(file_change(), 0..80),
            spawn in any::<bool>(),
            required in 0..4u32,
        ) {
            let v = RequestView {
                id: 42,
                spawn,
                requester: &requester,
                agent: "echo",
                summary: &summary,
                sha: "0123456789abcdef0123456789abcdef01234567",
                required,
                expires_us: 0,
                changes: &changes,
            };
            check(&render(&v));
        }
    }
}
