//! Per-turn stats: when an attempt at a turn ends (ack, fail, the harness gone), one row in
//! the store's `turns` with its outcome and the model the agent's spec names now. A write that
//! fails is logged loudly; it never fails the turn itself (the message's own state is what the
//! delivery promise is about).

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::store::{InboxItem, TurnOutcome};

impl Core {
    /// Records the end of `item`'s current attempt, as `outcome`.
    pub(super) fn record_turn(&self, name: &AgentName, item: &InboxItem, outcome: TurnOutcome) {
        let model = self.agents().get(name).map_or_else(
            || "unknown".to_owned(),
            |e| {
                let spec = e.spec();
                spec.brain.model().unwrap_or(spec.brain.kind()).to_owned()
            },
        );
        if let Err(e) =
            self.store()
                .record_turn(name.as_str(), item.id, item.attempts, outcome, &model)
        {
            tracing::error!(agent = %name, id = item.id, outcome = %outcome, error = %format!("{e:#}"), "could not record a turn's stats");
        }
    }
}
