//! The managers' kept-state tools: `destroy`, `revive`, `purge` (each files a request for the
//! operators: `c0re::approvals::kept`). A name that is not an agent's is refused before any
//! request is made, and every refusal is in the audit (a filed request is audited by the store
//! as it is filed).

use serde::Deserialize;
use serde_json::{Value, json};

use super::tool_spec::{ToolError, ToolSpec, args};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::approvals::kept::KeptKind;

/// The tools' names, all managers only.
pub const KEPT_TOOLS: [&str; 3] = ["destroy", "revive", "purge"];

/// The kept-state tools, managers only.
pub fn catalog() -> Vec<ToolSpec> {
    let schema = json!({
        "type": "object",
        "properties": {
            "agent": { "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$" },
            "summary": { "type": "string", "description": "why, for the operators" }
        },
        "required": ["agent"],
        "additionalProperties": false
    });
    vec![
        ToolSpec {
            name: "destroy",
            description: "Managers only: ask the operators to destroy `agent`: once approved it stops, its identity leaves the hive's rooms, and its state and config history are kept (`revive` brings it back, `purge` removes them). The outcome arrives later as an `approval_outcome:` message.",
            input_schema: schema.clone(),
            managers_only: true,
        },
        ToolSpec {
            name: "revive",
            description: "Managers only: ask the operators to revive the kept (destroyed) `agent` on its last applied config. The outcome arrives later as an `approval_outcome:` message.",
            input_schema: schema.clone(),
            managers_only: true,
        },
        ToolSpec {
            name: "purge",
            description: "Managers only: ask the operators to remove the kept (destroyed) `agent`'s state for good. After their ✅ an operator must confirm a second time in the request's thread. The outcome arrives later as an `approval_outcome:` message.",
            input_schema: schema,
            managers_only: true,
        },
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeptArgs {
    agent: String,
    #[serde(default)]
    summary: String,
}

impl Core {
    /// One kept-state tool call (`tool` is one of [`KEPT_TOOLS`]) from manager `agent`.
    pub(super) async fn kept_tool(
        &self,
        agent: &AgentName,
        tool: &str,
        v: &Value,
    ) -> Result<String, ToolError> {
        let kind = match tool {
            "destroy" => KeptKind::Destroy,
            "revive" => KeptKind::Revive,
            "purge" => KeptKind::Purge,
            other => return Err(ToolError::NoTool(other.to_owned())),
        };
        let a: KeptArgs = args(tool, v)?;
        let refuse = |why: String| {
            self.audit_call(agent, tool, Some(&a.agent), None, "refused", Some(&why));
            ToolError::Refused(self.shown(&why))
        };
        // Before anything else: a name that is none is never made into a path or a request.
        if let Err(e) = AgentName::parse(&a.agent) {
            return Err(refuse(format!("{:?} is not an agent's name: {e}", a.agent)));
        }
        let id = self
            .request_kept(agent.as_str(), kind, &a.agent, &a.summary)
            .await
            .map_err(|r| refuse(r.to_string()))?;
        Ok(format!(
            "requested (approval #{id}); the outcome will arrive as a message"
        ))
    }

    /// Kept agents as `list_agents` shows them (after the running ones).
    pub(super) fn kept_listed(&self) -> Vec<Value> {
        match self.store().kept_agents() {
            Ok(kept) => kept
                .into_iter()
                .map(|k| {
                    json!({
                        "name": k.name,
                        "state": "kept",
                        "kept_by_request": k.approval_id,
                        "may_message": false,
                    })
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the kept agents");
                // Through the secret filter and the data-dir scrub, as every answer.
                vec![json!({ "kept": self.shown(&format!("unknown: {e:#}")) })]
            }
        }
    }
}
