//! Reading the hive into a [`Snapshot`] for the status message: the registry's agents (their
//! state as `list_agents` shows it), the kept ones, the open approvals and questions, the peers.
//! Blocking (sqlite): called on a blocking thread.

use std::collections::HashMap;

use super::render::{AgentLine, OpenItem, PeerLine, Snapshot, matrix_to, short};
use crate::c0re::Core;
use crate::c0re::agents::listing::{Facts, Shown, shown};
use crate::c0re::rooms::RoomKey;
use crate::store::{AgentState, ApprovalState, now_us};

const DAY_US: i64 = 86_400_000_000;

impl Core {
    /// The hive as the status message shows it, now.
    pub(super) fn status_snapshot(&self) -> anyhow::Result<Snapshot> {
        let now = now_us();
        let midnight = now - now.rem_euclid(DAY_US);
        let store = self.store();
        let stored: HashMap<String, AgentState> = store
            .agent_states()?
            .into_iter()
            .filter_map(|(n, s, _)| s.parse().ok().map(|s| (n, s)))
            .collect();
        let mut agents = Vec::new();
        for (name, entry) in self.agents().all() {
            let state = shown(Facts::of(&entry, stored.get(name.as_str()).copied()));
            let thinking_since_us = match state {
                Shown::Thinking => store.inflight_turn(name.as_str())?.map(|t| t.since_us),
                _ => None,
            };
            let spec = entry.spec();
            agents.push(AgentLine {
                name: name.to_string(),
                state,
                thinking_since_us,
                queued: store.counts(name.as_str())?.pending,
                model: spec.brain.model().unwrap_or(spec.brain.kind()).to_owned(),
                cost_today_usd: store.usage_since(name.as_str(), midnight)?.cost_usd,
                last_turn_us: store.last_turn_us(name.as_str())?,
            });
        }
        for kept in store.kept_agents()? {
            agents.push(AgentLine {
                state: Shown::Kept,
                thinking_since_us: None,
                queued: 0,
                model: "-".into(),
                cost_today_usd: store.usage_since(&kept.name, midnight)?.cost_usd,
                last_turn_us: store.last_turn_us(&kept.name)?,
                name: kept.name,
            });
        }
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        let approvals_room = self.rooms().get(&RoomKey::Approvals);
        let link = |event: &Option<String>| {
            approvals_room
                .as_ref()
                .zip(event.as_ref())
                .map(|(r, e)| matrix_to(r.as_str(), e))
        };
        let mut approvals = Vec::new();
        for state in [ApprovalState::Pending, ApprovalState::Confirming] {
            for a in store.approvals_in(state)? {
                approvals.push(OpenItem {
                    id: a.id,
                    what: format!("{} for {} (by {})", a.kind.as_str(), a.agent, a.requester),
                    link: link(&a.request_event),
                });
            }
        }
        approvals.sort_by_key(|a| a.id);
        let questions = store
            .open_questions()?
            .into_iter()
            .map(|q| OpenItem {
                id: q.id,
                what: question_what(&q.agent, &q.question, self.secrets()),
                link: link(&q.request_event),
            })
            .collect();
        let peers = self
            .peer_statuses()?
            .into_iter()
            .map(|(p, st)| PeerLine {
                hive: p.hive.to_string(),
                server: p.server_name.to_string(),
                reachable: st.reachable,
                held: st.held,
            })
            .collect();
        Ok(Snapshot {
            now_us: now,
            agents,
            approvals,
            questions,
            peers,
        })
    }
}

/// A question as the status message lists it: redacted whole before it is cut (a secret cut in
/// two, or folded onto one line, no longer matches the filter), then shown as text.
fn question_what(agent: &str, question: &str, secrets: &crate::secrets::SecretFilter) -> String {
    let text = short(&secrets.redact(question));
    format!(
        "from {agent}: {}",
        crate::matrix::markdown::code_span(&text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_is_redacted_before_it_is_cut() {
        let secret = format!("sk-ant-api03-{}", "x".repeat(95));
        let f = crate::secrets::SecretFilter::new(vec![("a key".into(), secret.clone())]);
        // The secret straddles the cut, and a line break would fold it.
        let question = format!("ok to use the billing key {}\nfor this?", &secret);
        let got = question_what("argus", &question, &f);
        assert!(!got.contains("sk-ant-api03-xxxx"), "{got}");
        assert!(
            got.starts_with("from argus: ` ok to use the billing key "),
            "{got}"
        );
    }
}
