//! The status message's text: a pure function from a [`Snapshot`] of the hive to Markdown.
//!
//! The rules:
//! - one line per agent, in name order: its state (`idle`, `thinking since 19:04`, `stopped`,
//!   `crashed`, `kept`, …), what waits in its queue, its model, what it cost today (UTC), when
//!   its last turn ended;
//! - times are clock times (`HH:MM` UTC, with the date when it is not today), never durations:
//!   the text of a long turn does not change while it runs, so it makes no edit;
//! - open approval requests and questions, each linked to its event (`matrix.to`) when posted;
//! - peers: reachable or not, and the messages held behind a gap (no "checked N s ago": that
//!   would change the text at every probe);
//! - a section with nothing in it says so in one line (approvals, questions) or is left out
//!   (peers, when the hive has none).
//!
//! What an agent wrote (a question) is cut to [`QUESTION_CHARS`] and its line breaks folded; the
//! whole text goes through the secret filter before it is sent.

use std::fmt::Write as _;

use crate::c0re::agents::listing::Shown;
use crate::store::utc;

/// How much of a question the status message shows.
pub const QUESTION_CHARS: usize = 80;

/// What the status message shows, gathered by the status task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// The time the snapshot was taken (µs since the epoch): decides "today".
    pub now_us: i64,
    pub agents: Vec<AgentLine>,
    pub approvals: Vec<OpenItem>,
    pub questions: Vec<OpenItem>,
    pub peers: Vec<PeerLine>,
}

/// One agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentLine {
    pub name: String,
    pub state: Shown,
    /// When the turn in flight began (µs), for `thinking`.
    pub thinking_since_us: Option<i64>,
    /// Messages waiting (pending), not counting the one in flight.
    pub queued: u64,
    /// The model its config names, else its brain's kind.
    pub model: String,
    /// US dollars of model calls since UTC midnight.
    pub cost_today_usd: f64,
    /// When its last turn ended (µs).
    pub last_turn_us: Option<i64>,
}

/// An open approval request or question.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenItem {
    pub id: i64,
    /// What it is about, in words (`apply-commit for echo`, `from echo: "…"`).
    pub what: String,
    /// `https://matrix.to/#/<room>/<event>`, once posted.
    pub link: Option<String>,
}

/// One peer hive.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerLine {
    pub hive: String,
    pub server: String,
    /// The last probe's answer; `None`: not probed yet.
    pub reachable: Option<bool>,
    /// Messages held behind a gap.
    pub held: u64,
}

/// The link to `event` in `room`, for any client.
pub fn matrix_to(room: &str, event: &str) -> String {
    format!("https://matrix.to/#/{room}/{event}")
}

/// A question as the status message shows it: one line, at most [`QUESTION_CHARS`] characters.
pub fn short(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= QUESTION_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(QUESTION_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

/// `HH:MM` of `us` (UTC); with the date when it is not the day of `now_us`.
pub fn clock(us: i64, now_us: i64) -> String {
    let (at, now) = (utc(us), utc(now_us));
    // `YYYY-MM-DD HH:MM:SSZ`
    if at.get(..10) == now.get(..10) {
        at.get(11..16).unwrap_or(&at).to_owned()
    } else {
        at.get(..16).unwrap_or(&at).to_owned()
    }
}

/// The state in words.
fn state_words(a: &AgentLine, now_us: i64) -> String {
    match (a.state, a.thinking_since_us) {
        (Shown::Thinking, Some(since)) => format!("thinking since {}", clock(since, now_us)),
        (state, _) => state.as_str().to_owned(),
    }
}

/// The status message, in Markdown.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::from("**🐝 Hive status**\n\n");
    if s.agents.is_empty() {
        out.push_str("No agents.\n");
    }
    for a in &s.agents {
        let mut parts = vec![state_words(a, s.now_us)];
        if a.queued > 0 {
            parts.push(format!("{} queued", a.queued));
        }
        parts.push(crate::matrix::markdown::code_span(&a.model));
        parts.push(format!("${:.2} today", a.cost_today_usd));
        if let Some(t) = a.last_turn_us {
            parts.push(format!("last turn {}", clock(t, s.now_us)));
        }
        writeln!(out, "- **{}**: {}", a.name, parts.join(" · ")).expect("writing to a String");
    }
    section(&mut out, "Open approvals", &s.approvals);
    section(&mut out, "Open questions", &s.questions);
    if !s.peers.is_empty() {
        out.push_str("\n**Peers**\n");
        for p in &s.peers {
            let reach = match p.reachable {
                Some(true) => "reachable",
                Some(false) => "unreachable",
                None => "not checked yet",
            };
            let held = if p.held > 0 {
                format!(" · {} held behind a gap", p.held)
            } else {
                String::new()
            };
            writeln!(out, "- **{}** ({}): {reach}{held}", p.hive, p.server)
                .expect("writing to a String");
        }
    }
    out.trim_end().to_owned()
}

fn section(out: &mut String, title: &str, items: &[OpenItem]) {
    write!(out, "\n**{title}**").expect("writing to a String");
    if items.is_empty() {
        out.push_str(": none\n");
        return;
    }
    out.push('\n');
    for i in items {
        match &i.link {
            Some(l) => writeln!(out, "- [#{}]({l}) {}", i.id, i.what),
            None => writeln!(out, "- #{} {}", i.id, i.what),
        }
        .expect("writing to a String");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 19:04:05 UTC.
    const NOW: i64 = 1_796_151_845_000_000;
    const MIN: i64 = 60_000_000;

    fn agent(name: &str, state: Shown) -> AgentLine {
        AgentLine {
            name: name.into(),
            state,
            thinking_since_us: None,
            queued: 0,
            model: "scripted".into(),
            cost_today_usd: 0.0,
            last_turn_us: None,
        }
    }

    #[test]
    fn clock_times() {
        assert_eq!(utc(NOW), "2026-12-01 19:04:05Z", "the test's clock");
        struct Case {
            name: &'static str,
            at: i64,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "today: the time only",
                at: NOW - 2 * MIN,
                want: "19:02",
            },
            Case {
                name: "yesterday: with the date",
                at: NOW - 20 * 60 * MIN,
                want: "2026-11-30 23:04",
            },
        ];
        for c in cases {
            assert_eq!(clock(c.at, NOW), c.want, "{}", c.name);
        }
    }

    #[test]
    fn short_questions() {
        struct Case {
            name: &'static str,
            text: String,
            want: String,
        }
        let long = "word ".repeat(40);
        let cases = [
            Case {
                name: "short text unchanged",
                text: "Deploy now?".into(),
                want: "Deploy now?".into(),
            },
            Case {
                name: "line breaks folded",
                text: "Deploy\n\nnow?".into(),
                want: "Deploy now?".into(),
            },
            Case {
                name: "long text cut with an ellipsis",
                text: long.clone(),
                want: format!("{}…", long.chars().take(79).collect::<String>().trim_end()),
            },
        ];
        for c in cases {
            let got = short(&c.text);
            assert_eq!(got, c.want, "{}", c.name);
            assert!(got.chars().count() <= QUESTION_CHARS, "{}", c.name);
        }
    }

    #[test]
    fn what_the_status_message_says() {
        struct Case {
            name: &'static str,
            snap: Snapshot,
            want: &'static str,
        }
        let thinking = AgentLine {
            thinking_since_us: Some(NOW - 3 * MIN),
            queued: 2,
            model: "claude-sonnet-4-5".into(),
            cost_today_usd: 0.126,
            last_turn_us: Some(NOW - 10 * MIN),
            ..agent("argus", Shown::Thinking)
        };
        let cases = [
            Case {
                name: "an empty hive",
                snap: Snapshot {
                    now_us: NOW,
                    ..Snapshot::default()
                },
                want: "**🐝 Hive status**\n\nNo agents.\n\n**Open approvals**: none\n\n**Open questions**: none",
            },
            Case {
                name: "agents in several states, an approval posted and one not yet",
                snap: Snapshot {
                    now_us: NOW,
                    agents: vec![
                        thinking.clone(),
                        agent("echo", Shown::Idle),
                        agent("old", Shown::Kept),
                    ],
                    approvals: vec![
                        OpenItem {
                            id: 3,
                            what: "apply-commit for echo".into(),
                            link: Some(matrix_to("!a:hs", "$e")),
                        },
                        OpenItem {
                            id: 4,
                            what: "init-config for new".into(),
                            link: None,
                        },
                    ],
                    questions: vec![OpenItem {
                        id: 1,
                        what: "from echo: Deploy?".into(),
                        link: Some(matrix_to("!a:hs", "$q")),
                    }],
                    peers: vec![],
                },
                want: "**🐝 Hive status**\n\n\
                       - **argus**: thinking since 19:01 · 2 queued · ` claude-sonnet-4-5 ` · $0.13 today · last turn 18:54\n\
                       - **echo**: idle · ` scripted ` · $0.00 today\n\
                       - **old**: kept · ` scripted ` · $0.00 today\n\
                       \n**Open approvals**\n\
                       - [#3](https://matrix.to/#/!a:hs/$e) apply-commit for echo\n\
                       - #4 init-config for new\n\
                       \n**Open questions**\n\
                       - [#1](https://matrix.to/#/!a:hs/$q) from echo: Deploy?",
            },
            Case {
                name: "peers: reachable, unreachable with held messages, not checked",
                snap: Snapshot {
                    now_us: NOW,
                    agents: vec![agent("echo", Shown::Stopped)],
                    peers: vec![
                        PeerLine {
                            hive: "b".into(),
                            server: "hs-b".into(),
                            reachable: Some(true),
                            held: 0,
                        },
                        PeerLine {
                            hive: "c".into(),
                            server: "hs-c".into(),
                            reachable: Some(false),
                            held: 2,
                        },
                        PeerLine {
                            hive: "d".into(),
                            server: "hs-d".into(),
                            reachable: None,
                            held: 0,
                        },
                    ],
                    ..Snapshot::default()
                },
                want: "**🐝 Hive status**\n\n- **echo**: stopped · ` scripted ` · $0.00 today\n\n\
                       **Open approvals**: none\n\n**Open questions**: none\n\n**Peers**\n\
                       - **b** (hs-b): reachable\n\
                       - **c** (hs-c): unreachable · 2 held behind a gap\n\
                       - **d** (hs-d): not checked yet",
            },
        ];
        for c in cases {
            assert_eq!(render(&c.snap), c.want, "{}", c.name);
        }
    }

    #[test]
    fn a_long_turn_does_not_change_the_text() {
        let at = |now_us| Snapshot {
            now_us,
            agents: vec![AgentLine {
                thinking_since_us: Some(NOW),
                ..agent("argus", Shown::Thinking)
            }],
            ..Snapshot::default()
        };
        assert_eq!(
            render(&at(NOW + 5_000_000)),
            render(&at(NOW + 50 * MIN)),
            "minutes of thinking render the same"
        );
    }
}
