//! What every tool shares: how a tool is described to a model ([`ToolSpec`]), why a call
//! fails ([`ToolError`], whose text is the result a model reads), and how its arguments are
//! read. The catalogs are in `tools.rs` (the hive's) and `config_tools.rs` (the managers').

use serde_json::{Value, json};

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::limits;
use crate::c0re::outbound::Refusal;

/// Largest notes an agent may keep.
pub const MAX_NOTES: usize = 64 * 1024;
/// Furthest ahead a reminder may be set.
pub const MAX_REMIND_SECS: u64 = 30 * 86_400;

/// One tool as offered to a model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    #[serde(skip)]
    pub managers_only: bool,
}

/// Why a tool call failed: its text is the tool result a model reads (`is_error`).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("no tool named {0:?}")]
    NoTool(String),
    #[error(transparent)]
    NotManager(#[from] NotManager),
    #[error("bad arguments for {tool}: {source}")]
    BadArguments {
        tool: String,
        source: serde_json::Error,
    },
    #[error("notes are limited to {} bytes", MAX_NOTES)]
    NotesTooLong,
    #[error("in_secs must be 1 to {}", MAX_REMIND_SECS)]
    RemindDelay,
    #[error("the reminder needs a text")]
    RemindEmpty,
    #[error(transparent)]
    Reminder(#[from] limits::ReminderRefused),
    #[error(transparent)]
    RateLimited(#[from] limits::Refused),
    /// A send the recipient policy, the secret filter or the homeserver refused.
    #[error(transparent)]
    Send(#[from] Refusal),
    /// A question or approval request refused before it reached the operators.
    #[error("{0}")]
    Refused(String),
    /// The store failed (the agent is told; the cause is in the text).
    #[error("{0:#}")]
    Store(anyhow::Error),
}

/// A manager-only request from an agent that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{agent} is not a manager: {what} is for managers only (approvals.managers in hive.toml)")]
pub struct NotManager {
    pub agent: AgentName,
    pub what: String,
}

pub(super) fn args<T: serde::de::DeserializeOwned>(tool: &str, v: &Value) -> Result<T, ToolError> {
    let v = if v.is_null() { json!({}) } else { v.clone() };
    serde_json::from_value(v).map_err(|source| ToolError::BadArguments {
        tool: tool.to_owned(),
        source,
    })
}

impl Core {
    /// `text` as an agent may read it: secrets redacted, the data dir's path left out.
    pub(crate) fn shown(&self, text: &str) -> String {
        let data = self.data_dir().display().to_string();
        self.secrets().redact(&text.replace(&data, "<data dir>"))
    }

    /// Every string in `v` as [`Core::shown`] makes it (keys are the core's own).
    pub(crate) fn shown_json(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.shown(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.shown_json(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.shown_json(i)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// `agent` as an agent of this hive (a name that is none is refused before any path is made).
    pub(crate) fn agent_named(&self, agent: &str) -> Result<AgentName, ToolError> {
        AgentName::parse(agent)
            .ok()
            .filter(|n| self.agents().get(n).is_some())
            .ok_or_else(|| ToolError::Refused(format!("{agent:?} is not an agent of this hive")))
    }

    /// One tool call in the audit: `target` and `detail` as [`Core::shown`] makes them. A store
    /// that cannot record it is said loudly (the call already happened: a commit cannot be
    /// taken back), never hidden.
    pub(super) fn audit_call(
        &self,
        actor: &AgentName,
        tool: &str,
        target: Option<&str>,
        sha: Option<&str>,
        outcome: &str,
        detail: Option<&str>,
    ) {
        self.audit_by(actor.as_str(), tool, target, sha, outcome, detail);
    }

    /// [`Core::audit_call`] for any actor: an agent's name or an operator's user id.
    pub(crate) fn audit_by(
        &self,
        actor: &str,
        tool: &str,
        target: Option<&str>,
        sha: Option<&str>,
        outcome: &str,
        detail: Option<&str>,
    ) {
        let target = target.map(|t| self.shown(t));
        let detail = detail.map(|d| self.shown(d));
        if let Err(e) = self.store().audit(&crate::store::Audit {
            actor,
            action: tool,
            approval_id: None,
            agent: target.as_deref(),
            sha,
            outcome,
            detail: detail.as_deref(),
        }) {
            tracing::error!(agent = %actor, tool, error = %format!("{e:#}"), "could not audit a tool call");
        }
    }
}
