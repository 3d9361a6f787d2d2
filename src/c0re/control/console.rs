//! The operator's `!hive` commands that read or act on the hive (`agents`, `logs`, `notes`,
//! `usage`, `approvals`, `audit`; `stop`/`start`/`restart` go through the managers' lifecycle
//! path, `agents/lifecycle.rs`). Each gathers its facts from the store and the registry, then
//! renders them with a pure function below (tested on its own); every answer goes through the
//! secret filter and fits in one Matrix event.

use std::fmt::Write as _;

use crate::c0re::Core;
use crate::c0re::agents::listing::{Facts, shown};
use crate::c0re::agents::logs::tail_of;
use crate::c0re::rooms::RoomKey;
use crate::configrepo::AgentDirs;
use crate::matrix::markdown;
use crate::store::{AgentUsage, AuditEntry, TurnStat, Usage, now_us, utc};

/// The most one answer's text may cost in its event ([`event_cost`]): a Matrix event is at most
/// 64 KiB, envelope included, and carries the text twice (its body and its HTML).
pub const MAX_ANSWER: usize = 40 * 1024;

/// The most a fenced block of an answer may cost: the answer's own words fit beside it.
const MAX_BLOCK: usize = MAX_ANSWER - 1024;

/// The most of a log's end that is read for `!hive logs`.
const LOG_BYTES: u64 = 256 << 10;

/// What character `c` costs in the event at worst: in the body as JSON escapes it, plus in the
/// HTML twin as the Markdown renderer escapes it and JSON escapes that (`"` is `\"` and
/// `&quot;`; a control character is `\u00XX` twice).
pub fn char_cost(c: char) -> usize {
    match c {
        '"' => 2 + 6,
        '&' => 1 + 5,
        '<' | '>' => 1 + 4,
        '\\' => 2 + 2,
        '\n' | '\t' => 2 + 2,
        c if c.is_control() => 6 + 6,
        c => 2 * c.len_utf8(),
    }
}

/// What `text` costs in an event at worst (see [`char_cost`]).
pub fn event_cost(text: &str) -> usize {
    text.chars().map(char_cost).sum()
}

/// `text` in a fenced code block costing at most `max` in its event ([`event_cost`]): a longer
/// text keeps its end (a log's newest lines) from a line start where one is near, said in a
/// first line. The fence is longer than any run of backticks inside, so nothing in the text
/// can close it.
pub fn fenced(text: &str, max: usize) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    let room = max.saturating_sub(4 * fence.len() + 128);
    let body = if event_cost(text) <= room {
        text.to_owned()
    } else {
        let mut cost = 0;
        let mut cut = text.len();
        for (i, c) in text.char_indices().rev() {
            cost += char_cost(c);
            if cost > room {
                break;
            }
            cut = i;
        }
        let tail = &text[cut..];
        let tail = match tail.find('\n') {
            Some(nl) if nl < 512 => &tail[nl + 1..],
            _ => tail,
        };
        format!("[… {} bytes before this]\n{tail}", text.len() - tail.len())
    };
    format!("{fence}\n{}\n{fence}", body.trim_end())
}

/// The most an answer's content may take as JSON (`body`, its HTML twin, `msgtype`, …): a
/// Matrix event is at most 64 KiB with its envelope (room, sender, ids, hashes, signatures).
pub const MAX_CONTENT: usize = 60 * 1024;

/// How many bytes `text` takes as a notice's content, measured: the same Markdown rendering
/// and JSON the notice is sent with (a table's `<td>`s and escapes included).
pub fn content_len(text: &str) -> usize {
    let content = crate::c0re::outbound::message_content(text, None, None, true);
    serde_json::to_vec(&content).map_or(usize::MAX, |v| v.len())
}

/// `text` whole if its content takes at most `max` bytes ([`content_len`]), else its first
/// lines and how many more there were (a table of many agents, a long list of requests), said
/// after a blank line so it never reads as a table row.
pub fn fit(text: &str, max: usize) -> String {
    if content_len(text) <= max {
        return text.to_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    let first = |n: usize| {
        format!(
            "{}\n\n… and {} more lines (too long for one message)",
            lines[..n].join("\n"),
            lines.len() - n
        )
    };
    // The most lines that fit: `lo` fits (none do, at worst), `hi` does not.
    let (mut lo, mut hi) = (0, lines.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if content_len(&first(mid)) <= max {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    first(lo)
}

/// A duration in milliseconds as "850 ms", "12.3 s", "4 min 5 s".
pub fn duration(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// Dollars, or why there is no figure.
fn cost(u: &Usage) -> String {
    match (u.unpriced_calls, u.calls) {
        (_, 0) => "-".into(),
        (0, _) => format!("${:.4}", u.cost_usd),
        (n, all) if n == all => "unpriced".into(),
        (n, _) => format!("${:.4} + {n} unpriced", u.cost_usd),
    }
}

/// The `!hive usage` table: one row per agent, today's and the last 7 days' figures.
pub fn render_usage(today: &[AgentUsage], week: &[AgentUsage]) -> String {
    if week.is_empty() && today.is_empty() {
        return "no turns and no model calls in the last 7 days".into();
    }
    let mut out = String::from(
        "| agent | turns today | time today | tokens today | cost today | turns 7 d | tokens 7 d | cost 7 d |\n|---|---|---|---|---|---|---|---|\n",
    );
    let none = AgentUsage::default();
    let mut names: Vec<&str> = week.iter().chain(today).map(|a| a.agent.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let t = today.iter().find(|a| a.agent == name).unwrap_or(&none);
        let w = week.iter().find(|a| a.agent == name).unwrap_or(&none);
        let unfinished = |a: &AgentUsage| match a.unfinished {
            0 => String::new(),
            n => format!(" ({n} not done)"),
        };
        writeln!(
            out,
            "| {name} | {}{} | {} | {} | {} | {}{} | {} | {} |",
            t.turns,
            unfinished(t),
            duration(t.busy_ms),
            t.usage.tokens,
            cost(&t.usage),
            w.turns,
            unfinished(w),
            w.usage.tokens,
            cost(&w.usage),
        )
        .expect("writing to a string");
    }
    out
}

/// One turn as `!hive agents` and `hive usage --turns` show it: "done in 1.2 s, 2026-…Z".
pub fn turn_line(t: &TurnStat) -> String {
    format!(
        "{} in {}, {}",
        t.outcome,
        duration(t.duration_ms()),
        utc(t.ended_us)
    )
}

/// One audit row as `hive audit` prints it.
pub fn audit_line(e: &AuditEntry) -> String {
    format!(
        "{}  {:<28} {:<10} {:<16} #{:<4} {:<12} {:<40}  {}",
        utc(e.ts_us),
        e.actor,
        e.action,
        e.outcome,
        e.approval_id.map_or("-".into(), |i| i.to_string()),
        e.agent.as_deref().unwrap_or("-"),
        e.sha.as_deref().unwrap_or("-"),
        e.detail.as_deref().unwrap_or_default()
    )
}

/// A link to event `event` in room `room` any client opens.
pub fn event_link(room: &str, event: &str) -> String {
    format!("https://matrix.to/#/{room}/{event}")
}

/// "[link](…)", or "not posted yet" when the message has no event.
fn linked(room: Option<&str>, event: Option<&str>) -> String {
    match (room, event) {
        (Some(r), Some(e)) => format!("[message]({})", event_link(r, e)),
        _ => "not posted yet".into(),
    }
}

/// An agent's text for one line of a Markdown table or list, shown as text and never read as
/// Markdown ([`markdown::code_span`]): no `|` (a table's cell ends there even in a code span),
/// at most 120 characters.
fn cell(s: &str) -> String {
    let one: String = s.chars().map(|c| if c == '|' { ' ' } else { c }).collect();
    match one.char_indices().nth(120) {
        Some((i, _)) => markdown::code_span(&format!("{}…", &one[..i])),
        None => markdown::code_span(&one),
    }
}

impl Core {
    /// `!hive agents`.
    pub(super) fn agents_text(&self) -> anyhow::Result<String> {
        let stored = self.store().agent_states()?;
        let mut out = String::from(
            "| agent | state | brain | model | description | queued | last turn |\n|---|---|---|---|---|---|---|\n",
        );
        for (name, entry) in self.agents().all() {
            let spec = entry.spec();
            let stored = stored
                .iter()
                .find(|(n, _, _)| n == name.as_str())
                .and_then(|(_, s, _)| s.parse().ok());
            let state = shown(Facts::of(&entry, stored));
            let c = self.store().counts(name.as_str())?;
            let last = self
                .store()
                .turn_stats(Some(name.as_str()), 1)?
                .first()
                .map_or_else(|| "none yet".into(), turn_line);
            writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {last} |",
                state.as_str(),
                spec.brain.kind(),
                spec.brain.model().unwrap_or("-"),
                cell(spec.description.as_deref().unwrap_or("-")),
                c.pending + c.inflight,
            )?;
        }
        Ok(self.shown(&out))
    }

    /// `!hive logs <agent> [lines]`.
    pub(super) fn logs_text(&self, agent: &str, lines: u16) -> String {
        let name = match self.agent_named(agent) {
            Ok(n) => n,
            Err(e) => return self.shown(&e.to_string()),
        };
        let path = AgentDirs::new(self.data_dir(), &name).log();
        match tail_of(&path, usize::from(lines), LOG_BYTES) {
            Ok(Some(text)) if text.is_empty() => format!("{name}'s log is empty"),
            Ok(Some(text)) => format!(
                "The last {lines} lines of {name}'s log:\n{}",
                fenced(&self.shown(&text), MAX_BLOCK)
            ),
            Ok(None) => format!("{name} has no log yet"),
            Err(e) => self.shown(&format!("cannot read {name}'s log: {e}")),
        }
    }

    /// `!hive notes <agent>`.
    pub(super) fn notes_text(&self, agent: &str) -> anyhow::Result<String> {
        let name = match self.agent_named(agent) {
            Ok(n) => n,
            Err(e) => return Ok(self.shown(&e.to_string())),
        };
        let notes = self.store().notes(name.as_str())?;
        Ok(if notes.is_empty() {
            format!("{name} keeps no notes")
        } else {
            format!(
                "{name}'s notes:\n{}",
                fenced(&self.shown(&notes), MAX_BLOCK)
            )
        })
    }

    /// `!hive usage [agent]`: today (UTC) and the last 7 days.
    pub(super) fn usage_text(&self, agent: Option<&str>) -> anyhow::Result<String> {
        let now = now_us();
        let today = now - now.rem_euclid(86_400_000_000);
        let week = today - 6 * 86_400_000_000;
        let only = |v: Vec<AgentUsage>| -> Vec<AgentUsage> {
            v.into_iter()
                .filter(|a| agent.is_none_or(|n| n == a.agent))
                .collect()
        };
        let t = only(self.store().usage_per_agent(today)?);
        let w = only(self.store().usage_per_agent(week)?);
        if let Some(a) = agent
            && t.is_empty()
            && w.is_empty()
        {
            return Ok(self.shown(&format!(
                "no turns and no model calls of {a:?} in the last 7 days"
            )));
        }
        Ok(self.shown(&render_usage(&t, &w)))
    }

    /// `!hive approvals`: open requests and questions, linked to their messages.
    pub(super) fn approvals_text(&self) -> anyhow::Result<String> {
        use crate::store::ApprovalState as S;
        let room = self.rooms().get(&RoomKey::Approvals);
        let room = room.as_ref().map(|r| r.as_str());
        let mut open = Vec::new();
        for state in [S::Pending, S::Confirming, S::Approved, S::Applying] {
            open.extend(self.store().approvals_in(state)?);
        }
        open.sort_by_key(|a| a.id);
        let questions = self.store().open_questions()?;
        if open.is_empty() && questions.is_empty() {
            return Ok("no open approval requests and no open questions".into());
        }
        let mut out = String::new();
        if !open.is_empty() {
            out.push_str("**Approval requests**\n");
            for a in &open {
                writeln!(
                    out,
                    "- #{} {} {} by {} ({}, expires {}) — {}: {}",
                    a.id,
                    a.kind,
                    a.agent,
                    a.requester,
                    a.state,
                    utc(a.expires_us),
                    linked(room, a.request_event.as_deref()),
                    cell(&a.summary)
                )?;
            }
        }
        if !questions.is_empty() {
            out.push_str("**Questions**\n");
            for q in &questions {
                writeln!(
                    out,
                    "- #{} from {} (expires {}) — {}: {}",
                    q.id,
                    q.agent,
                    utc(q.expires_us),
                    linked(room, q.request_event.as_deref()),
                    cell(&q.question)
                )?;
            }
        }
        Ok(self.shown(&out))
    }

    /// `!hive audit [rows]`: the newest rows, oldest first, as `hive audit` prints them.
    pub(super) fn audit_text(&self, rows: u16) -> anyhow::Result<String> {
        let log = self.store().audit_log(usize::from(rows))?;
        if log.is_empty() {
            return Ok("the audit trail is empty".into());
        }
        let lines: Vec<String> = log.iter().map(audit_line).collect();
        Ok(format!(
            "The last {} audit rows:\n{}",
            log.len(),
            fenced(&self.shown(&lines.join("\n")), MAX_BLOCK)
        ))
    }
}

#[cfg(test)]
mod tests;
