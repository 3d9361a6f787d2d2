//! The hive's tools: one list, described once with JSON Schemas, executed by hive-c0re under
//! the calling agent's policy. Every brain reaches them the same way (the `call_tool` socket
//! request; model backends and `hive mcp` offer this list to the model).
//!
//! A tool's failure is a result (`is_error`), not a broken connection: a model reads it and
//! adapts.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::limits;
use crate::c0re::outbound::may_message;
use crate::wire::protocol::{Response, ToolInfo};

use super::tool_spec::{MAX_NOTES, MAX_REMIND_SECS, args};
pub use super::tool_spec::{NotManager, ToolError, ToolSpec};

/// Every tool of the hive.
pub fn catalog() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "send_message",
            description: "Send a Markdown message to another agent's inbox (or to `operator`), or to a peer hive's agent as `<agent>@<hive>` (posted in the room shared with that hive). Only recipients in your allowed_recipients are accepted.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "to": { "type": "string", "description": "an agent's name, `<agent>@<hive>` for a peer hive's agent, or `operator`" },
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
            description: "List the hive's agents: name, display name, description, whether you may message them, and each one's state (idle, thinking, starting, stopping, stopped, crashed, crash-loop, cannot-start, refused, disconnected), current turn, queue (messages waiting) and last crash. Peer hives' agents follow, named `<agent>@<hive>` with state `remote`.",
            input_schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            managers_only: false,
        },
        ToolSpec {
            name: "get_logs",
            description: "The last `lines` lines (default 100, at most 500) of `agent`'s log: the harness's output, secrets redacted. Your own log always; another agent's only if you are a manager.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "agent": { "type": "string" },
                    "lines": { "type": "integer", "minimum": 1, "maximum": super::logs::MAX_LINES }
                },
                "required": ["agent"],
                "additionalProperties": false
            }),
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
            description: "Managers only: ask the operators to spawn a new agent `name` from the template, with `files` (optional, as write_config takes them, e.g. its agent.toml and prompt.md) laid over it. The outcome arrives later as an `approval_outcome:` message.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$" },
                    "files": super::request_tools::init_files_schema(),
                    "summary": { "type": "string" }
                },
                "required": ["name", "summary"],
                "additionalProperties": false
            }),
            managers_only: true,
        },
    ]
    .into_iter()
    .chain(super::config_tools::catalog())
    .chain(super::request_tools::catalog())
    .chain(super::lifecycle::catalog())
    .chain(super::recv::catalog())
    .chain(super::kept_tools::catalog())
    .chain(crate::c0re::forge::tools::catalog())
    .collect()
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
struct LogsArgs {
    agent: String,
    lines: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyArgs {
    agent: String,
    sha: String,
    summary: String,
}

/// The one rule for manager-only requests, whichever way they arrive: `agent` must be one of
/// hive.toml's `approvals.managers`.
pub fn check_manager(
    managers: &[AgentName],
    agent: &AgentName,
    what: &str,
) -> Result<(), NotManager> {
    if managers.contains(agent) {
        Ok(())
    } else {
        Err(NotManager {
            agent: agent.clone(),
            what: what.to_owned(),
        })
    }
}

/// The tools offered to an agent: every tool to a manager, the others' tools to the rest.
pub fn offered(manager: bool) -> Vec<ToolSpec> {
    catalog()
        .into_iter()
        .filter(|t| manager || !t.managers_only)
        .collect()
}

/// Whether a reminder may be set: `in_secs` within 1 s to [`MAX_REMIND_SECS`], a text that is
/// not blank. (The pending count and the rate are checked after, against the store.)
fn check_remind(in_secs: u64, text: &str) -> Result<(), ToolError> {
    if in_secs == 0 || in_secs > MAX_REMIND_SECS {
        return Err(ToolError::RemindDelay);
    }
    if text.trim().is_empty() {
        return Err(ToolError::RemindEmpty);
    }
    Ok(())
}

impl Core {
    /// The one check for manager-only requests, whichever way they arrive.
    pub fn require_manager(&self, agent: &AgentName, what: &str) -> Result<(), NotManager> {
        check_manager(&self.cfg().managers, agent, what)
    }

    /// The tools `agent` may call: the forge tools only as far as its `[[forge.grant]]`
    /// names them.
    pub fn tools_for(&self, agent: &AgentName) -> Vec<ToolSpec> {
        let grants = self
            .agents()
            .get(agent)
            .map(|e| e.spec().forge_grants.clone())
            .unwrap_or_default();
        offered(self.cfg().managers.contains(agent))
            .into_iter()
            .filter(|t| crate::c0re::forge::tools::offered_to(&grants, t.name))
            .collect()
    }

    /// The tools `name` may call, as the wire protocol describes them.
    pub fn tool_infos(&self, name: &AgentName) -> Vec<ToolInfo> {
        self.tools_for(name)
            .into_iter()
            .map(|t| ToolInfo {
                name: t.name.to_owned(),
                description: t.description.to_owned(),
                input_schema: t.input_schema,
            })
            .collect()
    }

    /// One tool call from a socket, at most once per call of a turn (see `effects.rs`):
    /// `fallback_txn` is its transaction id outside a turn.
    pub async fn tool_once(
        &self,
        agent: &AgentName,
        tool: &str,
        arguments: &Value,
        fallback_txn: String,
    ) -> Response {
        self.once(agent, tool, arguments, fallback_txn, |txn| async move {
            let (content, is_error) = self.call_tool(agent, tool, arguments, &txn).await;
            if is_error {
                tracing::info!(%agent, tool, error = %content, "tool call failed");
            }
            Response::ToolResult { content, is_error }
        })
        .await
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
        match self.run_tool(agent, name, arguments, txn).await {
            Ok(text) => (text, false),
            Err(e) => (e.to_string(), true),
        }
    }

    async fn run_tool(
        &self,
        agent: &AgentName,
        name: &str,
        v: &Value,
        txn: &str,
    ) -> Result<String, ToolError> {
        let Some(spec) = catalog().into_iter().find(|t| t.name == name) else {
            return Err(ToolError::NoTool(name.to_owned()));
        };
        if spec.managers_only
            && let Err(refused) = self.require_manager(agent, name)
        {
            // A non-manager reaching for a manager's tool is worth a line in the audit.
            let target = v.get("agent").and_then(Value::as_str);
            self.audit_call(
                agent,
                name,
                target,
                None,
                "refused",
                Some(&refused.to_string()),
            );
            return Err(refused.into());
        }
        match name {
            "send_message" => {
                let a: SendArgs = args(name, v)?;
                let id = self.agent_send(agent, &a.to, &a.body, txn).await?;
                Ok(format!("sent ({id})"))
            }
            "read_notes" => {
                let _: NoArgs = args(name, v)?;
                self.store().notes(agent.as_str()).map_err(ToolError::Store)
            }
            "write_notes" => {
                let a: NotesArgs = args(name, v)?;
                if a.notes.len() > MAX_NOTES {
                    return Err(ToolError::NotesTooLong);
                }
                self.store()
                    .set_notes(agent.as_str(), &a.notes)
                    .map_err(ToolError::Store)?;
                Ok(format!("saved ({} bytes)", a.notes.len()))
            }
            "ask_operator" => {
                let a: AskArgs = args(name, v)?;
                let id = self
                    .ask_operator(agent, &a.question, &a.options, a.ttl_secs)
                    .map_err(|e| ToolError::Refused(e.to_string()))?;
                Ok(format!(
                    "asked (question #{id}); the answer will arrive as a message"
                ))
            }
            "remind" => {
                let a: RemindArgs = args(name, v)?;
                self.remind(agent, &a)
            }
            "list_agents" => {
                let _: NoArgs = args(name, v)?;
                self.list_agents(agent)
            }
            "request_apply_commit" => {
                let a: ApplyArgs = args(name, v)?;
                // A filed request is audited by the store with its row; a refusal before
                // there is one is audited here.
                let id = self
                    .request_apply_commit(agent.as_str(), &a.agent, &a.sha, &a.summary)
                    .await
                    .map_err(|r| {
                        let why = r.to_string();
                        self.audit_call(
                            agent,
                            name,
                            Some(&a.agent),
                            Some(&a.sha),
                            "refused",
                            Some(&why),
                        );
                        ToolError::Refused(why)
                    })?;
                Ok(format!(
                    "requested (approval #{id}); the outcome will arrive as a message"
                ))
            }
            "get_logs" => {
                let a: LogsArgs = args(name, v)?;
                let (core, agent) = (self.clone(), agent.clone());
                tokio::task::spawn_blocking(move || core.get_logs(&agent, &a.agent, a.lines))
                    .await
                    .map_err(|e| ToolError::Store(e.into()))?
            }
            "read_config" | "write_config" | "config_diff" | "config_log" => {
                self.config_tool(agent, name, v).await
            }
            "stop" | "start" | "restart" => self.lifecycle_tool(agent, name, v).await,
            "request_init_config" | "request_rollback" => self.request_tool(agent, name, v).await,
            "recv" => self.recv_tool(agent, v).await,
            "destroy" | "revive" | "purge" => self.kept_tool(agent, name, v).await,
            n if n.starts_with("forge_") => self.forge_tool(agent, n, v, txn).await,
            other => Err(ToolError::NoTool(other.to_owned())),
        }
    }

    /// `remind`: checked (delay, text, pending count, rate), then recorded for the approvals
    /// loop's timer to deliver.
    fn remind(&self, agent: &AgentName, a: &RemindArgs) -> Result<String, ToolError> {
        check_remind(a.in_secs, &a.text)?;
        let pending = self
            .store()
            .pending_reminders(agent.as_str())
            .map_err(ToolError::Store)?;
        limits::check_reminder(pending, &a.text)?;
        self.agents().rate(agent, limits::Kind::Reminder)?;
        let due = crate::store::now_us() + (a.in_secs as i64) * 1_000_000;
        let id = self
            .store()
            .add_reminder(agent.as_str(), &a.text, due)
            .map_err(ToolError::Store)?;
        self.wake_approvals();
        Ok(format!("reminder #{id} set for {} s from now", a.in_secs))
    }

    /// `list_agents`: every agent, whether `agent` may message it (the recipient policy's
    /// answer, [`may_message`]), and its life (`listing.rs`: state, current turn, queue, last
    /// crash).
    fn list_agents(&self, agent: &AgentName) -> Result<String, ToolError> {
        let me = self.agents().get(agent).map(|e| e.spec());
        // Without the stored states every agent would look as if starting: say it failed.
        let stored = self.store().agent_states().map_err(ToolError::Store)?;
        let mut list: Value = self
            .agents()
            .all()
            .iter()
            .map(|(n, e)| {
                let s = e.spec();
                let mut v = json!({
                    "name": n.as_str(),
                    "display_name": s.display_name,
                    "description": s.description,
                    "may_message": me.as_ref().is_some_and(|m| may_message(m, n)),
                });
                let state = stored
                    .iter()
                    .find(|(name, _, _)| name == n.as_str())
                    .and_then(|(_, st, _)| st.parse().ok());
                if let Some(o) = v.as_object_mut() {
                    o.extend(self.life_fields(agent, n, e, state));
                }
                v
            })
            .chain(self.kept_listed())
            .chain(self.remote_listed(agent))
            .collect();
        // Names, descriptions and crash statuses as an agent may read them.
        self.shown_json(&mut list);
        Ok(serde_json::to_string(&list).expect("json serialises"))
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
        // What only a manager may do: ask for approvals, read or write another's config, stop
        // and start agents.
        let privileged = [
            "request_apply_commit",
            "request_init_config",
            "request_rollback",
            "read_config",
            "write_config",
            "config_diff",
            "config_log",
            "stop",
            "start",
            "restart",
            "destroy",
            "revive",
            "purge",
        ];
        for t in &tools {
            assert_eq!(t.managers_only, privileged.contains(&t.name), "{}", t.name);
        }
        for p in privileged {
            assert!(tools.iter().any(|t| t.name == p), "{p} is in the catalog");
        }
        let names = |m| offered(m).into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert!(names(true).contains(&"write_config"));
        assert!(!names(false).iter().any(|n| n.contains("config")));
    }

    #[test]
    fn arguments_are_checked() {
        assert!(args::<SendArgs>("send_message", &json!({"to": "a", "body": "b"})).is_ok());
        let e = args::<SendArgs>("send_message", &json!({"to": "a"}))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("body"), "{e}");
        assert!(args::<NoArgs>("read_notes", &Value::Null).is_ok());
        assert!(args::<NoArgs>("read_notes", &json!({"x": 1})).is_err());
        assert!(args::<RemindArgs>("remind", &json!({"in_secs": "soon", "text": "x"})).is_err());
    }

    #[test]
    fn who_may_make_manager_requests() {
        let n = |s: &str| AgentName::parse(s).expect("a valid name");
        struct Case {
            name: &'static str,
            managers: Vec<AgentName>,
            agent: AgentName,
            want: Result<(), &'static str>,
        }
        let cases = [
            Case {
                name: "a manager",
                managers: vec![n("hm1nd")],
                agent: n("hm1nd"),
                want: Ok(()),
            },
            Case {
                name: "one of several managers",
                managers: vec![n("hm1nd"), n("boss")],
                agent: n("boss"),
                want: Ok(()),
            },
            Case {
                name: "not a manager",
                managers: vec![n("hm1nd")],
                agent: n("alice"),
                want: Err(
                    "alice is not a manager: request_init_config is for managers only (approvals.managers in hive.toml)",
                ),
            },
            Case {
                name: "a hive without managers",
                managers: vec![],
                agent: n("hm1nd"),
                want: Err(
                    "hm1nd is not a manager: request_init_config is for managers only (approvals.managers in hive.toml)",
                ),
            },
        ];
        for c in cases {
            let got = check_manager(&c.managers, &c.agent, "request_init_config")
                .map_err(|e| e.to_string());
            assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
        }
    }

    #[test]
    fn what_is_offered() {
        struct Case {
            name: &'static str,
            manager: bool,
            has_requests: bool,
        }
        let cases = [
            Case {
                name: "a manager gets every tool",
                manager: true,
                has_requests: true,
            },
            Case {
                name: "anyone else gets all but the requests",
                manager: false,
                has_requests: false,
            },
        ];
        for c in cases {
            let tools = offered(c.manager);
            assert_eq!(
                tools.iter().any(|t| t.name.starts_with("request_")),
                c.has_requests,
                "{}",
                c.name
            );
            let everyone = [
                "send_message",
                "read_notes",
                "write_notes",
                "ask_operator",
                "remind",
                "list_agents",
            ];
            for t in everyone {
                assert!(tools.iter().any(|o| o.name == t), "{}: {t}", c.name);
            }
        }
        assert_eq!(offered(true).len(), catalog().len());
    }

    #[test]
    fn reminders_are_checked() {
        struct Case {
            name: &'static str,
            in_secs: u64,
            text: &'static str,
            want: Result<(), &'static str>,
        }
        let cases = [
            Case {
                name: "a second from now",
                in_secs: 1,
                text: "check the build",
                want: Ok(()),
            },
            Case {
                name: "the furthest allowed",
                in_secs: MAX_REMIND_SECS,
                text: "x",
                want: Ok(()),
            },
            Case {
                name: "now is not a reminder",
                in_secs: 0,
                text: "x",
                want: Err("in_secs must be 1 to 2592000"),
            },
            Case {
                name: "too far ahead",
                in_secs: MAX_REMIND_SECS + 1,
                text: "x",
                want: Err("in_secs must be 1 to 2592000"),
            },
            Case {
                name: "a blank text",
                in_secs: 5,
                text: " \n ",
                want: Err("the reminder needs a text"),
            },
        ];
        for c in cases {
            let got = check_remind(c.in_secs, c.text).map_err(|e| e.to_string());
            assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
        }
    }
}
