//! An agent's page and its panes, pure functions of an [`AgentView`]: its head (state, model,
//! cost, turn, queue, last crash and the lifecycle and turn buttons), its room's messages, its
//! turns, the end of its log. The forms with text fields (write to it, destroy it with a
//! reason) sit outside the panes, so a live update never wipes what the operator is typing.

use maud::{Markup, html};

use super::main_page::{at, crash_cell, dollars, state_class, turn_cell};
use super::model::{AgentView, LogTail, TurnRow, elapsed};
use super::page::{Act, Page, Verb, act, bar, frame, header, shell};
use crate::c0re::agents::listing::Shown;
use crate::c0re::web::Pane;

/// The agent page's panes, in page order.
pub fn panes(v: &AgentView) -> Vec<Pane> {
    let pane = |id: &str, html| Pane {
        id: id.to_owned(),
        html,
    };
    vec![
        pane("top", header(&v.header, Page::Agent(&v.agent.name))),
        pane("agent-head", head(v)),
        pane("timeline", timeline(v)),
        pane("turns", turns(&v.turns)),
        pane("log", log(&v.log)),
    ]
}

/// The whole agent page.
pub fn page(v: &AgentView, csrf: &str) -> Markup {
    let p = panes(v);
    let get = |id: &str| {
        p.iter()
            .find(|p| p.id == id)
            .map(|p| p.html.clone())
            .expect("every pane is rendered")
    };
    let body = html! {
        (bar(get("top"), csrf))
        main.agent-page {
            (get("agent-head"))
            (talk(v))
            div.columns {
                (get("timeline"))
                div.side {
                    (get("turns"))
                    (get("log"))
                }
            }
        }
    };
    shell(
        Page::Agent(&v.agent.name),
        &format!("{} · {} · hive", v.agent.name, v.header.hive),
        csrf,
        body,
    )
}

/// Whether the agent runs in the hive (a kept one has no harness to act on).
fn live(v: &AgentView) -> bool {
    v.agent.state != Shown::Kept
}

fn head(v: &AgentView) -> Markup {
    let a = &v.agent;
    let stop_q = format!(
        "stop {}? its messages wait until it is started again.",
        a.name
    );
    let button = |verb: Verb, label: &str| {
        act(&Act {
            verb,
            target: &a.name,
            label,
            confirm: &stop_q,
            hidden: &[],
            inputs: &[],
        })
    };
    html! {
        section #agent-head.pane data-pane="agent-head" {
            h1 {
                span.glyph { "◆ " } (a.name) " "
                span class=(state_class(a)) { (a.state.as_str()) }
            }
            @if let Some(d) = &v.description { p.description { (d) } }
            dl.facts {
                dt { "turn" } dd.turn { (turn_cell(a, v.now_ms)) }
                dt { "queue" } dd.queue { (a.queued) }
                dt { "model" } dd.model { (a.model) }
                dt { "cost today" } dd.cost { (dollars(a.cost_today_usd)) }
                dt { "last crash" } dd.crash { (crash_cell(a, v.now_ms)) }
            }
            @if live(v) {
                div.controls {
                    (button(Verb::Cancel, "cancel turn"))
                    (button(Verb::Compact, "compact"))
                    (button(Verb::NewSession, "new session"))
                    (button(Verb::Restart, "restart"))
                    (button(Verb::Start, "start"))
                    (button(Verb::Stop, "stop"))
                }
            } @else {
                p.hint { "destroyed and kept: a revive brings it back, a purge removes it (both are requests)." }
            }
        }
    }
}

/// Writing to the agent, and destroying it: forms with text fields, outside the panes.
fn talk(v: &AgentView) -> Markup {
    let a = &v.agent;
    let destroy_q = format!(
        "destroy {}? this files a destroy request: once approved it stops and leaves its rooms, its state kept until a purge.",
        a.name
    );
    html! {
        @if live(v) {
            section #agent-act {
                (act(&Act { verb: Verb::Say, target: &a.name, label: "send",
                    confirm: "", hidden: &[], inputs: &[("text", "write to the agent")] }))
                details.danger-zone {
                    summary { "destroy…" }
                    (act(&Act { verb: Verb::Destroy, target: &a.name, label: "file a destroy request",
                        confirm: &destroy_q, hidden: &[], inputs: &[("why", "why (optional)")] }))
                }
            }
        }
    }
}

fn timeline(v: &AgentView) -> Markup {
    html! {
        section #timeline.pane data-pane="timeline" {
            (frame("room"))
            @match &v.timeline {
                Err(why) => { p.empty { (why) } }
                Ok(room) => {
                    @if !room.loaded {
                        p.hint { "its earlier messages could not be read from the homeserver; new ones show as they arrive." }
                    }
                    @if room.msgs.is_empty() {
                        p.empty { "no messages yet." }
                    }
                    @for m in &room.msgs {
                        div class=(if m.notice { "msg notice" } else { "msg" }) data-event=(m.event_id) {
                            div.msg-head {
                                span.from { (m.sender) } " "
                                (at(m.ts_ms))
                            }
                            div.body { (m.body) }
                        }
                    }
                }
            }
        }
    }
}

/// A turn's cost: dollars, and the calls without a price.
fn turn_cost(t: &TurnRow) -> String {
    match (t.calls, t.unpriced_calls) {
        (0, _) => "-".into(),
        (n, u) if n == u => "unpriced".into(),
        (_, 0) => format!("${:.4}", t.cost_usd),
        (_, u) => format!("${:.4} + {u} unpriced", t.cost_usd),
    }
}

fn turns(rows: &[TurnRow]) -> Markup {
    html! {
        section #turns.pane data-pane="turns" {
            (frame("turns"))
            @if rows.is_empty() {
                p.empty { "no turns yet." }
            } @else {
                table.turns {
                    thead { tr {
                        th { "started" } th { "took" } th { "outcome" } th { "model" }
                        th { "calls" } th { "tokens" } th { "cost" }
                    } }
                    tbody {
                        @for t in rows {
                            tr {
                                td.when { (at(t.started_ms)) }
                                td { (elapsed(t.duration_ms)) }
                                td { span class={ "outcome outcome-" (t.outcome.as_str()) } { (t.outcome.as_str()) } }
                                td { (t.model) }
                                td { (t.calls) }
                                td { (t.tokens) }
                                td { (turn_cost(t)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn log(l: &LogTail) -> Markup {
    html! {
        section #log.pane data-pane="log" {
            (frame("log"))
            @match l {
                LogTail::Missing => { p.empty { "no log yet." } }
                LogTail::Unreadable(why) => { p.empty { "its log cannot be read: " (why) } }
                LogTail::Text(t) if t.is_empty() => { p.empty { "its log is empty." } }
                LogTail::Text(t) => { pre.log { (t) } }
            }
        }
    }
}
