//! The main page and its panes, pure functions of a [`MainView`]: the swarm table, what waits
//! on the operator (requests with their whole text and diff, questions with their options),
//! the schedules, the peers, the audit.

use maud::{Markup, html};

use super::model::{
    AgentRow, ApprovalCard, AuditRow, CardForms, MainView, PeerRow, QuestionCard, approve_asks,
    elapsed,
};
use super::page::{Act, Page, Verb, act, act_asking, bar, frame, header, shell};
use crate::c0re::schedules::ScheduleLine;
use crate::c0re::web::Pane;
use crate::store::utc;

/// The main page's panes, in page order.
pub fn panes(v: &MainView) -> Vec<Pane> {
    vec![
        pane("top", header(&v.header, Page::Main)),
        pane("agents", agents(v)),
        pane("approvals", approvals(&v.approvals)),
        pane("questions", questions(&v.questions)),
        pane("schedules", schedules(&v.schedules)),
        pane("peers", peers(v)),
        pane("audit", audit(&v.audit)),
    ]
}

fn pane(id: &str, html: Markup) -> Pane {
    Pane {
        id: id.to_owned(),
        html,
    }
}

/// The whole main page: the header, then the tab sections (`swarm` holds the agents pane,
/// `waiting` the requests and questions; `schedules`, `peers` and `audit` are panes).
pub fn page(v: &MainView, csrf: &str) -> Markup {
    let p = panes(v);
    let get = |id: &str| {
        p.iter()
            .find(|p| p.id == id)
            .map(|p| p.html.clone())
            .expect("every pane is rendered")
    };
    let body = html! {
        (bar(get("top"), csrf))
        main.tabbed {
            section #swarm.tab { (get("agents")) }
            section #waiting.tab { (get("approvals")) (get("questions")) }
            (get("schedules"))
            (get("peers"))
            (get("audit"))
        }
    };
    shell(Page::Main, &format!("{} · hive", v.header.hive), csrf, body)
}

/// An elapsed time the page's script keeps running: `<time data-since-ms>`.
pub fn since(ms: i64, now_ms: i64) -> Markup {
    html! { time data-since-ms=(ms) { (elapsed(now_ms - ms)) } }
}

/// A point in time: UTC words, the exact time for a machine.
pub fn at(ms: i64) -> Markup {
    let text = utc(ms.saturating_mul(1000));
    html! { time datetime=(text.replace(' ', "T")) { (text) } }
}

/// The class of a state's word (`st st-thinking`): the stylesheet colours them.
pub fn state_class(a: &AgentRow) -> String {
    format!("st st-{}", a.state.as_str())
}

/// An agent's current turn: whose message, how long it has run.
pub fn turn_cell(a: &AgentRow, now_ms: i64) -> Markup {
    html! {
        @if let Some(t) = &a.turn {
            @if let Some(what) = &t.what { span.what { "“" (what) "”" } " from " }
            span.from { (t.sender) }
            " · "
            (since(t.since_ms, now_ms))
            @if t.attempt > 1 { " · attempt " (t.attempt) }
        } @else {
            span.none { "-" }
        }
    }
}

/// Its last crash: the exit, how long ago.
pub fn crash_cell(a: &AgentRow, now_ms: i64) -> Markup {
    html! {
        @if let Some(c) = &a.crash {
            span.crash { (c.status) } " · " (since(c.at_ms, now_ms)) " ago"
        } @else {
            span.none { "never" }
        }
    }
}

/// Dollars with cents.
pub fn dollars(usd: f64) -> String {
    format!("${usd:.2}")
}

fn agents(v: &MainView) -> Markup {
    html! {
        div #agents.pane data-pane="agents" {
            (frame("swarm"))
            @if v.agents.is_empty() {
                p.empty { "no agents yet." }
            } @else {
                table.agents {
                    thead { tr {
                        th { "agent" } th { "state" } th { "turn" } th { "queue" }
                        th { "model" } th { "cost today" } th { "last crash" }
                    } }
                    tbody {
                        @for a in &v.agents {
                            tr id={ "agent-" (a.name) } {
                                td.name { a href={ "/agent/" (a.name) } { (a.name) } }
                                td.state { span class=(state_class(a)) { (a.state.as_str()) } }
                                td.turn { (turn_cell(a, v.now_ms)) }
                                td.queue { (a.queued) }
                                td.model { (a.model) }
                                td.cost { (dollars(a.cost_today_usd)) }
                                td.crash { (crash_cell(a, v.now_ms)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The request's text as a diff: lines that add, remove or open a hunk are marked for the
/// stylesheet; every line is text.
fn diff(text: &str) -> Markup {
    let class = |l: &str| {
        if l.starts_with("+++") || l.starts_with("---") || l.starts_with("diff ") {
            "file"
        } else if l.starts_with('+') {
            "add"
        } else if l.starts_with('-') {
            "del"
        } else if l.starts_with("@@") {
            "hunk"
        } else {
            "ctx"
        }
    };
    html! {
        pre.diff {
            @for line in text.lines() {
                span class=(class(line)) { (line) "\n" }
            }
        }
    }
}

fn approval(a: &ApprovalCard) -> Markup {
    let target = a.id.to_string();
    let deny_q = format!("deny request #{}?", a.id);
    let approve_q = format!(
        "approve request #{}: {} {}?",
        a.id,
        a.kind.as_str(),
        a.agent
    );
    let purge_q = format!("purge {} for good? (request #{})", a.agent, a.id);
    html! {
        article.card.approval id={ "approval-" (a.id) } {
            h3 {
                span.id { "#" (a.id) } " "
                span.kind { (a.kind.as_str()) } " for "
                a.agent href={ "/agent/" (a.agent) } { (a.agent) }
                " "
                span.by { "asked by " (a.requester) }
            }
            p.meta {
                span class={ "st st-" (a.state.as_str()) } { (a.state.as_str()) }
                " · " (a.approvers.len()) "/" (a.required) " approved"
                @if !a.approvers.is_empty() { " (" (a.approvers.join(", ")) ")" }
                " · expires " (at(a.expires_ms))
                (matrix_link(a.link.as_deref()))
            }
            (diff(&a.text))
            div.forms {
                @match a.forms {
                    CardForms::Vote => {
                        @let approve = Act { verb: Verb::Approve, target: &target,
                            label: "approve ✓", confirm: &approve_q, hidden: &[], inputs: &[] };
                        @if approve_asks(a.kind) { (act_asking(&approve)) } @else { (act(&approve)) }
                        (act(&Act { verb: Verb::Deny, target: &target, label: "deny ✗",
                            confirm: &deny_q, hidden: &[], inputs: &[] }))
                    }
                    CardForms::ConfirmPurge => {
                        p.hint { "approved: the purge waits for its second confirmation." }
                        (act(&Act { verb: Verb::Purge, target: &target, label: "purge for good",
                            confirm: &purge_q, hidden: &[], inputs: &[] }))
                    }
                    CardForms::NotPosted => {
                        p.hint { "its message is not posted in #hive-approvals yet." }
                    }
                }
            }
        }
    }
}

/// The link to a request's or question's message, for any Matrix client.
fn matrix_link(link: Option<&str>) -> Markup {
    html! {
        @if let Some(l) = link {
            " · " a.matrix href=(l) rel="noreferrer" target="_blank" { "its message ↗" }
        }
    }
}

fn approvals(cards: &[ApprovalCard]) -> Markup {
    html! {
        div #approvals.pane data-pane="approvals" {
            h2.frame { span.rule { "[ " } "waiting on you" span.rule { " ]" } }
            @if cards.is_empty() {
                p.empty { "no request waits for an approval." }
            }
            @for a in cards { (approval(a))  }
        }
    }
}

fn question(q: &QuestionCard) -> Markup {
    let target = q.id.to_string();
    html! {
        article.card.question id={ "question-" (q.id) } {
            h3 {
                span.id { "#" (q.id) } " from "
                a.agent href={ "/agent/" (q.agent) } { (q.agent) }
            }
            p.meta { "expires " (at(q.expires_ms)) (matrix_link(q.link.as_deref())) }
            p.text { (q.question) }
            @if q.posted {
                div.forms {
                    @for (i, o) in q.options.iter().enumerate() {
                        @let n = (i + 1).to_string();
                        @let label = format!("{n}. {o}");
                        (act(&Act { verb: Verb::Answer, target: &target, label: &label,
                            confirm: "", hidden: &[("option", &n)], inputs: &[] }))
                    }
                    (act(&Act { verb: Verb::Answer, target: &target, label: "answer",
                        confirm: "", hidden: &[], inputs: &[("text", "your answer")] }))
                }
            } @else {
                p.hint { "its message is not posted in #hive-approvals yet." }
            }
        }
    }
}

fn questions(cards: &[QuestionCard]) -> Markup {
    html! {
        div #questions.pane data-pane="questions" {
            (frame("questions"))
            @if cards.is_empty() {
                p.empty { "no agent waits for an answer." }
            }
            @for q in cards { (question(q))  }
        }
    }
}

fn schedules(lines: &[ScheduleLine]) -> Markup {
    html! {
        section #schedules.tab.pane data-pane="schedules" {
            (frame("schedules"))
            @if lines.is_empty() {
                p.empty { "no agent has schedules (agent.toml [[schedules]])." }
            } @else {
                table.schedules {
                    thead { tr {
                        th { "agent" } th { "schedule" } th { "when" } th { "next fire" } th { "last fire" }
                    } }
                    tbody {
                        @for l in lines {
                            tr {
                                td.name { a href={ "/agent/" (l.agent) } { (l.agent) } }
                                td { (l.schedule) }
                                td.when { (l.when) }
                                td.next { (l.next) }
                                td.last { (l.last) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn reach(p: &PeerRow, now_ms: i64) -> Markup {
    html! {
        @match (p.reachable, p.probed_ms) {
            (Some(true), Some(t)) => {
                span.st.st-idle { "reachable" } " · checked " (since(t, now_ms)) " ago"
            }
            (Some(false), Some(t)) => {
                span.st.st-crashed { "unreachable" } " · checked " (since(t, now_ms)) " ago"
                @if let Some(e) = &p.error { " · " span.error { (e) } }
            }
            _ => { span.st.st-starting { "not checked yet" } }
        }
    }
}

fn peers(v: &MainView) -> Markup {
    html! {
        section #peers.tab.pane data-pane="peers" {
            (frame("peers"))
            @if v.peers.is_empty() {
                p.empty { "no peer hives ([[peers]] in hive.toml)." }
            } @else {
                table.peers {
                    thead { tr {
                        th { "hive" } th { "server" } th { "reachable" } th { "last event" } th { "held" }
                    } }
                    tbody {
                        @for p in &v.peers {
                            tr id={ "peer-" (p.hive) } {
                                td.name { (p.hive) }
                                td { (p.server) }
                                td { (reach(p, v.now_ms)) }
                                td {
                                    @if let Some(t) = p.last_event_ms { (since(t, v.now_ms)) " ago" }
                                    @else { "none yet" }
                                }
                                td { (p.held) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn audit(rows: &[AuditRow]) -> Markup {
    html! {
        section #audit.tab.pane data-pane="audit" {
            (frame("audit"))
            @if rows.is_empty() {
                p.empty { "the audit trail is empty." }
            } @else {
                table.audit {
                    thead { tr {
                        th { "when" } th { "who" } th { "what" } th { "outcome" }
                        th { "request" } th { "agent" } th { "detail" }
                    } }
                    tbody {
                        @for r in rows {
                            tr {
                                td.when { (at(r.ts_ms)) }
                                td { (r.actor) }
                                td { (r.action) }
                                td { (r.outcome) }
                                td { @if let Some(i) = r.approval_id { "#" (i) } @else { "-" } }
                                td { (r.agent.as_deref().unwrap_or("-")) }
                                td.detail { (r.detail.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}
