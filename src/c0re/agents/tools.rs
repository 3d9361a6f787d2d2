//! The hive's tools: one list, described once with JSON Schemas, executed by hive-c0re under
//! the calling agent's policy. Every brain reaches them the same way (the `call_tool` socket
//! request; model backends and `hive mcp` offer this list to the model).
//!
//! A tool's failure is a result (`is_error`), not a broken connection: a model reads it and
//! adapts.

use serde::Deserialize;
use serde_json::{Value, json};

use super::Core;
use crate::agent_spec::AgentName;

/// Largest notes an agent may keep.
const MAX_NOTES: usize = 64 * 1024;
/// Furthest ahead a reminder may be set.
const MAX_REMIND_SECS: u64 = 30 * 86_400;

/// One tool as offered to a model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    #[serde(skip)]
    pub managers_only: bool,
}

/// Every tool of the hive.
pub fn catalog() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "send_message",
            description: "Send a Markdown message to another agent's inbox (or to `operator`). Only recipients in your allowed_recipients are accepted.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "to": { "type": "string", "description": "an agent's name, or `operator`" },
                    "body": { "type": "string", "description": "the message, Markdown" }
                },
                "required": ["to", "body"],
                "additionalProperties": false
            }),
            managers_only: false,
        },
        ToolSpec {
            name: "read_notes",
            description: "Read your persistent notes (kept across turns, restarts and rebuilds).",
            input_schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            managers_only: false,
        },
        ToolSpec {
            name: "write_notes",
            description: "Replace your persistent notes (at most 64 KiB).",
            input_schema: json!({
                "type": "object",
                "properties": { "notes": { "type": "string" } },
                "required": ["notes"],
                "additionalProperties": false
            }),
            managers_only: false,
        },
        ToolSpec {
            name: "ask_operator",
            description: "Ask the operators a question in #hive-approvals. The answer (or the timeout) arrives later as a message starting with `operator_answer:`.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "question": { "type": "string" },
                    "options": { "type": "array", "items": { "type": "string" }, "maxItems": 9 },
                    "ttl_secs": { "type": "integer", "minimum": 1 }
                },
                "required": ["question"],
                "additionalProperties": false
            }),
            managers_only: false,
        },
        ToolSpec {
            name: "remind",
            description: "Schedule a prompt to yourself: `text` arrives as a message starting with `reminder:` after `in_secs` seconds.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "in_secs": { "type": "integer", "minimum": 1, "maximum": MAX_REMIND_SECS },
                    "text": { "type": "string" }
                },
                "required": ["in_secs", "text"],
                "additionalProperties": false
            }),
            managers_only: false,
        },
        ToolSpec {
            name: "list_agents",
            description: "List the hive's agents: name, display name, description, and whether you may message them.",
            input_schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            managers_only: false,
        },
        ToolSpec {
            name: "request_apply_commit",
            description: "Managers only: ask the operators to apply commit `sha` (full 40-hex sha, from the agent's proposed config repo) to `agent`. The outcome arrives later as an `approval_outcome:` message.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "agent": { "type": "string" },
                    "sha": { "type": "string", "pattern": "^[0-9a-f]{40}$" },
                    "summary": { "type": "string" }
                },
                "required": ["agent", "sha", "summary"],
                "additionalProperties": false
            }),
            managers_only: true,
        },
        ToolSpec {
            name: "request_init_config",
            description: "Managers only: ask the operators to spawn a new agent `name` from the template. The outcome arrives later as an `approval_outcome:` message.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$" },
                    "summary": { "type": "string" }
                },
                "required": ["name", "summary"],
                "additionalProperties": false
            }),
            managers_only: true,
        },
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    to: String,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotesArgs {
    notes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskArgs {
    question: String,
    #[serde(default)]
    options: Vec<String>,
    ttl_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemindArgs {
    in_secs: u64,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyArgs {
    agent: String,
    sha: String,
    summary: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitArgs {
    name: String,
    summary: String,
}

fn args<T: serde::de::DeserializeOwned>(tool: &str, v: &Value) -> Result<T, String> {
    let v = if v.is_null() { json!({}) } else { v.clone() };
    serde_json::from_value(v).map_err(|e| format!("bad arguments for {tool}: {e}"))
}

impl Core {
    /// The one check for manager-only requests, whichever way they arrive.
    pub fn require_manager(&self, agent: &AgentName, what: &str) -> Result<(), String> {
        if self.cfg().managers.contains(agent) {
            Ok(())
        } else {
            Err(format!(
                "{agent} is not a manager: {what} is for managers only (approvals.managers in hive.toml)"
            ))
        }
    }

    /// The tools `agent` may call.
    pub fn tools_for(&self, agent: &AgentName) -> Vec<ToolSpec> {
        let manager = self.cfg().managers.contains(agent);
        catalog()
            .into_iter()
            .filter(|t| manager || !t.managers_only)
            .collect()
    }

    /// Runs one tool for `agent`. Returns the result text and whether it is an error.
    /// `txn` makes a `send_message` idempotent across a redelivered turn.
    pub async fn call_tool(
        &self,
        agent: &AgentName,
        name: &str,
        arguments: &Value,
        txn: &str,
    ) -> (String, bool) {
        let Some(spec) = catalog().into_iter().find(|t| t.name == name) else {
            return (format!("no tool named {name:?}"), true);
        };
        if spec.managers_only
            && let Err(message) = self.require_manager(agent, name)
        {
            return (message, true);
        }
        match self.run_tool(agent, name, arguments, txn).await {
            Ok(text) => (text, false),
            Err(text) => (text, true),
        }
    }

    async fn run_tool(
        &self,
        agent: &AgentName,
        name: &str,
        v: &Value,
        txn: &str,
    ) -> Result<String, String> {
        match name {
            "send_message" => {
                let a: SendArgs = args(name, v)?;
                self.agent_send(agent, &a.to, &a.body, txn)
                    .await
                    .map(|id| format!("sent ({id})"))
                    .map_err(|r| r.message)
            }
            "read_notes" => {
                let _: NoArgs = args(name, v)?;
                self.store()
                    .notes(agent.as_str())
                    .map_err(|e| format!("{e:#}"))
            }
            "write_notes" => {
                let a: NotesArgs = args(name, v)?;
                if a.notes.len() > MAX_NOTES {
                    return Err(format!("notes are limited to {MAX_NOTES} bytes"));
                }
                self.store()
                    .set_notes(agent.as_str(), &a.notes)
                    .map(|()| format!("saved ({} bytes)", a.notes.len()))
                    .map_err(|e| format!("{e:#}"))
            }
            "ask_operator" => {
                let a: AskArgs = args(name, v)?;
                self.ask_operator(agent, &a.question, &a.options, a.ttl_secs)
                    .map(|id| {
                        format!("asked (question #{id}); the answer will arrive as a message")
                    })
            }
            "remind" => {
                let a: RemindArgs = args(name, v)?;
                if a.in_secs == 0 || a.in_secs > MAX_REMIND_SECS {
                    return Err(format!("in_secs must be 1 to {MAX_REMIND_SECS}"));
                }
                if a.text.trim().is_empty() {
                    return Err("the reminder needs a text".into());
                }
                let pending = self
                    .store()
                    .pending_reminders(agent.as_str())
                    .map_err(|e| format!("{e:#}"))?;
                super::limits::check_reminder(pending, &a.text)?;
                self.rate(agent, super::limits::Kind::Reminder)
                    .map_err(|r| r.to_string())?;
                let due = crate::store::now_us() + (a.in_secs as i64) * 1_000_000;
                let id = self
                    .store()
                    .add_reminder(agent.as_str(), &a.text, due)
                    .map_err(|e| format!("{e:#}"))?;
                self.wake_approvals();
                Ok(format!("reminder #{id} set for {} s from now", a.in_secs))
            }
            "list_agents" => {
                let _: NoArgs = args(name, v)?;
                let me = self.agent(agent).map(|e| e.spec());
                let list: Vec<Value> = self
                    .agents()
                    .iter()
                    .map(|(n, e)| {
                        let s = e.spec();
                        json!({
                            "name": n.as_str(),
                            "display_name": s.display_name,
                            "description": s.description,
                            "may_message": me.as_ref().is_some_and(|m| m.allowed_recipients.contains(n)),
                        })
                    })
                    .collect();
                Ok(serde_json::to_string(&list).expect("json serialises"))
            }
            "request_apply_commit" => {
                let a: ApplyArgs = args(name, v)?;
                self.request_apply_commit(agent.as_str(), &a.agent, &a.sha, &a.summary)
                    .await
                    .map(|id| {
                        format!("requested (approval #{id}); the outcome will arrive as a message")
                    })
                    .map_err(|r| r.0)
            }
            "request_init_config" => {
                let a: InitArgs = args(name, v)?;
                self.request_init_config(agent.as_str(), &a.name, &a.summary)
                    .await
                    .map(|id| {
                        format!("requested (approval #{id}); the outcome will arrive as a message")
                    })
                    .map_err(|r| r.0)
            }
            other => Err(format!("no tool named {other:?}")),
        }
    }

    /// Hands due reminders to the outbox (each marked delivered with its post, at once);
    /// returns how many (from the approvals loop's timer).
    pub fn deliver_reminders(&self) -> anyhow::Result<usize> {
        self.store().deliver_due_reminders(|r| {
            self.core_event(
                &r.agent,
                "reminder",
                &format!("reminder: {}", r.text),
                json!({ "reminder_id": r.id, "text": r.text }),
                &format!("hh-event-reminder-{}", r.id),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_well_formed() {
        let tools = catalog();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), tools.len(), "tool names are unique");
        for t in &tools {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert_eq!(t.input_schema["additionalProperties"], false, "{}", t.name);
            assert!(!t.description.is_empty());
        }
        assert!(
            tools
                .iter()
                .filter(|t| t.managers_only)
                .all(|t| t.name.starts_with("request_"))
        );
    }

    #[test]
    fn arguments_are_checked() {
        assert!(args::<SendArgs>("send_message", &json!({"to": "a", "body": "b"})).is_ok());
        let e = args::<SendArgs>("send_message", &json!({"to": "a"}))
            .err()
            .unwrap();
        assert!(e.contains("body"), "{e}");
        assert!(args::<NoArgs>("read_notes", &Value::Null).is_ok());
        assert!(args::<NoArgs>("read_notes", &json!({"x": 1})).is_err());
        assert!(args::<RemindArgs>("remind", &json!({"in_secs": "soon", "text": "x"})).is_err());
    }
}
