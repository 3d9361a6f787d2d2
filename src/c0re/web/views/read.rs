//! Reading the hive into the pages' view models ([`super::model`]): what the Matrix console
//! reads (the registry's agents and their [`Shown`] state, the store's queue, usage, crashes,
//! requests, questions, schedules, peers, audit), with every text through the core's secret
//! filter ([`Core::shown`]) on its way in. Blocking (sqlite, git for a request's diff): called
//! on a blocking thread.

use std::collections::HashMap;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::agents::listing::{Facts, Shown, shown};
use crate::c0re::agents::logs::tail_of;
use crate::c0re::approvals::text;
use crate::c0re::console::render::{matrix_to, short};
use crate::c0re::rooms::RoomKey;
use crate::configrepo::{AgentDirs, ConfigRepo};
use crate::store::{AgentState, Approval, ApprovalKind, ApprovalState, now_us};

use super::model::{
    AgentRow, AgentView, ApprovalCard, AuditRow, CrashLine, Header, LogTail, MainView, PeerRow,
    QuestionCard, TurnRow, card_forms, turn_shown,
};
use super::timeline::RoomMessages;

const DAY_US: i64 = 86_400_000_000;
/// Audit rows on the main page.
pub const AUDIT_ROWS: usize = 50;
/// Turns on an agent's page.
pub const TURN_ROWS: usize = 20;
/// Lines of an agent's log on its page, and the most of its end read for them.
pub const LOG_LINES: usize = 200;
const LOG_BYTES: u64 = 256 << 10;

/// The main page, now.
pub fn main_view(core: &Core) -> anyhow::Result<MainView> {
    let now = now_us();
    let agents = agent_rows(core, now)?;
    let approvals = approval_cards(core)?;
    let questions = question_cards(core)?;
    let header = Header::count(
        &core.shown(&core.cfg().hive_name),
        &agents,
        approvals.len() + questions.len(),
    );
    let schedules = core
        .schedule_lines()?
        .into_iter()
        .map(|mut l| {
            l.when = core.shown(&l.when);
            l
        })
        .collect();
    let peers = core
        .peer_statuses()?
        .into_iter()
        .map(|(p, st)| PeerRow {
            hive: p.hive.to_string(),
            server: p.server_name.to_string(),
            reachable: st.reachable,
            probed_ms: st.probed_us.map(|t| t.div_euclid(1000)),
            error: st.error.map(|e| core.shown(&e)),
            last_event_ms: st.last_event_us.map(|t| t.div_euclid(1000)),
            held: st.held,
        })
        .collect();
    let mut audit: Vec<AuditRow> = core
        .store()
        .audit_log(AUDIT_ROWS)?
        .into_iter()
        .map(|e| AuditRow {
            ts_ms: e.ts_us.div_euclid(1000),
            actor: core.shown(&e.actor),
            action: core.shown(&e.action),
            outcome: core.shown(&e.outcome),
            approval_id: e.approval_id,
            agent: e.agent.map(|a| core.shown(&a)),
            detail: e.detail.map(|d| core.shown(&d)),
        })
        .collect();
    audit.reverse();
    Ok(MainView {
        now_ms: now.div_euclid(1000),
        header,
        agents,
        approvals,
        questions,
        schedules,
        peers,
        audit,
    })
}

/// `name`'s page, now; `None` for an agent the hive does not know (neither running nor kept).
pub fn agent_view(core: &Core, name: &AgentName) -> anyhow::Result<Option<AgentView>> {
    let now = now_us();
    let agents = agent_rows(core, now)?;
    let Some(agent) = agents.iter().find(|a| a.name == name.as_str()).cloned() else {
        return Ok(None);
    };
    let waiting = waiting_count(core)?;
    let header = Header::count(&core.shown(&core.cfg().hive_name), &agents, waiting);
    let description = core
        .agents()
        .get(name)
        .and_then(|e| e.spec().description.clone())
        .map(|d| core.shown(&d));
    let timeline = match core.rooms().get(&RoomKey::Inbox(name.clone())) {
        Some(room) => {
            let mut m: RoomMessages = core.views().timelines().messages(room.as_str());
            for msg in &mut m.msgs {
                msg.sender = core.shown(&msg.sender);
                msg.body = core.shown(&msg.body);
            }
            Ok(m)
        }
        None => Err(format!("{name} has no room (yet)")),
    };
    let turns = core
        .store()
        .turn_stats(Some(name.as_str()), TURN_ROWS)?
        .into_iter()
        .map(|t| TurnRow {
            started_ms: t.started_us.div_euclid(1000),
            duration_ms: t.duration_ms(),
            outcome: t.outcome,
            model: core.shown(&t.model),
            calls: t.usage.calls,
            tokens: t.usage.tokens,
            cost_usd: t.usage.cost_usd,
            unpriced_calls: t.usage.unpriced_calls,
        })
        .collect();
    let path = AgentDirs::new(core.data_dir(), name).log();
    let stamp = std::fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.file_type().is_file())
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    let log = core.views().log_tail(name.as_str(), stamp, || {
        match tail_of(&path, LOG_LINES, LOG_BYTES) {
            Ok(Some(text)) => LogTail::Text(core.shown(&text)),
            Ok(None) => LogTail::Missing,
            Err(e) => LogTail::Unreadable(core.shown(&e.to_string())),
        }
    });
    Ok(Some(AgentView {
        now_ms: now.div_euclid(1000),
        header,
        agent,
        description,
        timeline,
        turns,
        log,
    }))
}

/// Every agent of the registry, then the kept ones, in name order.
fn agent_rows(core: &Core, now: i64) -> anyhow::Result<Vec<AgentRow>> {
    let midnight = now - now.rem_euclid(DAY_US);
    let store = core.store();
    let stored: HashMap<String, AgentState> = store
        .agent_states()?
        .into_iter()
        .filter_map(|(n, s, _)| match s.parse() {
            Ok(s) => Some((n, s)),
            Err(_) => {
                // Shown as if nothing were stored (its registry entry decides), and said.
                tracing::warn!(agent = %n, state = %s, "an agent's stored state is not one the hive knows; it is ignored");
                None
            }
        })
        .collect();
    let crash = |name: &str| -> anyhow::Result<Option<CrashLine>> {
        Ok(store.last_crash(name)?.map(|c| CrashLine {
            at_ms: c.at_us.div_euclid(1000),
            status: core.shown(&c.status),
        }))
    };
    let mut rows = Vec::new();
    for (name, entry) in core.agents().all() {
        let state = shown(Facts::of(&entry, stored.get(name.as_str()).copied()));
        let inflight = match state {
            Shown::Thinking | Shown::Stopping => store.inflight_turn(name.as_str())?,
            _ => None,
        };
        let inbox_id = inflight.as_ref().map(|t| t.inbox_id);
        let spec = entry.spec();
        let turn = match turn_shown(state, inflight) {
            Some(mut t) => {
                t.sender = core.shown(&t.sender);
                // Redacted whole before it is cut (a secret cut in two no longer matches).
                t.what = match inbox_id {
                    Some(id) => store.inbox_body(id)?.map(|b| short(&core.shown(&b))),
                    None => None,
                };
                Some(t)
            }
            None => None,
        };
        rows.push(AgentRow {
            name: name.to_string(),
            state,
            turn,
            queued: store.counts(name.as_str())?.pending,
            model: core.shown(spec.brain.model().unwrap_or(spec.brain.kind())),
            cost_today_usd: store.usage_since(name.as_str(), midnight)?.cost_usd,
            crash: crash(name.as_str())?,
        });
    }
    for kept in store.kept_agents()? {
        rows.push(AgentRow {
            state: Shown::Kept,
            turn: None,
            queued: 0,
            model: "-".into(),
            cost_today_usd: store.usage_since(&kept.name, midnight)?.cost_usd,
            crash: crash(&kept.name)?,
            name: core.shown(&kept.name),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// The `matrix.to` link of `event` in `#hive-approvals`.
fn approvals_link(core: &Core, event: Option<&str>) -> Option<String> {
    let room = core.rooms().get(&RoomKey::Approvals)?;
    Some(matrix_to(room.as_str(), event?))
}

/// How many requests and questions wait on the operator (the header's count): the open
/// requests [`card_forms`] shows, and the open questions, without reading their texts.
fn waiting_count(core: &Core) -> anyhow::Result<usize> {
    let mut n = 0;
    for state in [ApprovalState::Pending, ApprovalState::Confirming] {
        n += core
            .store()
            .approvals_in(state)?
            .iter()
            .filter(|a| card_forms(a).is_some())
            .count();
    }
    Ok(n + core.store().open_questions()?.len())
}

/// The open requests ([`card_forms`]), oldest first, each with its request's text.
fn approval_cards(core: &Core) -> anyhow::Result<Vec<ApprovalCard>> {
    let mut open = Vec::new();
    for state in [ApprovalState::Pending, ApprovalState::Confirming] {
        open.extend(core.store().approvals_in(state)?);
    }
    open.sort_by_key(|a| a.id);
    let live: Vec<i64> = open.iter().map(|a| a.id).collect();
    core.views().keep_requests(&live);
    let mut cards = Vec::new();
    for a in open {
        let Some(forms) = card_forms(&a) else {
            continue;
        };
        let text = core
            .views()
            .request_text(a.id, || request_text(core, &a), |t| core.shown(t));
        cards.push(ApprovalCard {
            id: a.id,
            kind: a.kind,
            state: a.state,
            agent: core.shown(&a.agent),
            requester: core.shown(&a.requester),
            summary: core.shown(&a.summary),
            text,
            forms,
            expires_ms: a.expires_us.div_euclid(1000),
            approvers: core
                .store()
                .approvers(a.id)?
                .iter()
                .map(|v| core.shown(v))
                .collect(),
            required: a.required.max(core.cfg().approvals_required),
            link: approvals_link(core, a.request_event.as_deref()),
        });
    }
    Ok(cards)
}

/// The text request `a`'s message shows (`approvals/text.rs`, its plain body: the diffstat and
/// the diffs for a config, the effect for a destroy, revive or purge).
fn request_text(core: &Core, a: &Approval) -> anyhow::Result<String> {
    let required = a.required.max(core.cfg().approvals_required);
    if a.kind.is_kept_state() {
        return Ok(text::render_kept(&text::KeptView {
            id: a.id,
            kind: a.kind,
            requester: &a.requester,
            agent: &a.agent,
            summary: &a.summary,
            sha: &a.sha,
            required,
            expires_us: a.expires_us,
        })
        .body);
    }
    let name = AgentName::parse(&a.agent)?;
    let changes = ConfigRepo::new(core.data_dir(), &name).changes(&a.sha)?;
    Ok(text::render(&text::RequestView {
        id: a.id,
        spawn: a.kind == ApprovalKind::InitConfig,
        requester: &a.requester,
        agent: &a.agent,
        summary: &a.summary,
        sha: &a.sha,
        required,
        expires_us: a.expires_us,
        changes: &changes,
    })
    .body)
}

/// The open questions, oldest first.
fn question_cards(core: &Core) -> anyhow::Result<Vec<QuestionCard>> {
    Ok(core
        .store()
        .open_questions()?
        .into_iter()
        .map(|q| QuestionCard {
            id: q.id,
            agent: core.shown(&q.agent),
            question: core.shown(&q.question),
            options: q.options.iter().map(|o| core.shown(o)).collect(),
            posted: q.request_event.is_some(),
            expires_ms: q.expires_us.div_euclid(1000),
            link: approvals_link(core, q.request_event.as_deref()),
        })
        .collect())
}
