//! The managers' requests that make a commit for the operators to approve:
//! `request_rollback(agent, deploy, summary?)` (an earlier deploy's files again, as a new commit
//! on the applied one: `approvals::rollback`) and `request_init_config(name, files?, summary)`
//! (a spawn, its files laid over the template and checked as `write_config` checks them:
//! `config_tools::check_files`, then the whole tree as committed). Every call is audited,
//! refused ones too; answers and errors pass the secret filter.

use serde::Deserialize;
use serde_json::{Value, json};

use super::config_tools::{FileArg, check_files};
use super::tool_spec::{ToolError, ToolSpec, args};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::approvals::Rollback;

/// The request tools of this module, managers only (`request_init_config`'s spec is in
/// `tools.rs`).
pub fn catalog() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "request_rollback",
        description: "Managers only: ask the operators to roll `agent` back to deploy `deploy` (the number N of tag deploy/N, as config_log lists them): a new commit with exactly that deploy's files on top of the applied config, filed like request_apply_commit (pinned, diffed against what runs now). The proposed branch moves to it; unapplied proposed commits are named in the answer. The outcome arrives later as an `approval_outcome:` message.",
        input_schema: json!({
            "type": "object",
            "properties": {
                "agent": { "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$" },
                "deploy": { "type": "integer", "minimum": 1 },
                "summary": { "type": "string", "description": "why (shown in the request after \"rollback to deploy/N\")" }
            },
            "required": ["agent", "deploy"],
            "additionalProperties": false
        }),
        managers_only: true,
    }]
}

/// The `files` of `request_init_config`: the same shape as `write_config`'s.
pub fn init_files_schema() -> Value {
    json!({
        "type": "array",
        "maxItems": super::config_tools::MAX_WRITE_FILES,
        "description": "optional: files laid over the template (e.g. agent.toml and prompt.md), validated as write_config validates them",
        "items": {
            "type": "object",
            "properties": {
                "path": { "type": "string" },
                "content": { "type": "string" },
                "executable": { "type": "boolean" }
            },
            "required": ["path", "content"],
            "additionalProperties": false
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackArgs {
    agent: String,
    deploy: u64,
    #[serde(default)]
    summary: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitArgs {
    name: String,
    #[serde(default)]
    files: Vec<FileArg>,
    summary: String,
}

/// A request tool's answer, and what the audit records of it.
struct Filed {
    text: String,
    sha: Option<String>,
}

/// What a manager reads after a rollback was filed. Pure.
pub fn rollback_answer(r: &Rollback) -> Value {
    let note = if r.abandoned.is_empty() {
        format!(
            "requested (approval #{}); the outcome will arrive as a message",
            r.id
        )
    } else {
        format!(
            "requested (approval #{}); the outcome will arrive as a message. The proposed branch moved to the rollback: {} unapplied proposed commit(s) are no longer on it (kept, readable by sha with config_diff): {}",
            r.id,
            r.abandoned.len(),
            r.abandoned.join(", ")
        )
    };
    json!({
        "approval": r.id,
        "agent": r.agent.as_str(),
        "rollback_to": format!("deploy/{}", r.deploy),
        "deploy_sha": r.deploy_sha,
        "sha": r.sha,
        "parent": r.parent,
        "abandoned": r.abandoned,
        "note": note,
    })
}

impl Core {
    /// Runs `request_rollback` or `request_init_config` for manager `by` (already checked to be
    /// one); audited, shown through the secret filter.
    pub(super) async fn request_tool(
        &self,
        by: &AgentName,
        tool: &str,
        v: &Value,
    ) -> Result<String, ToolError> {
        let target = ["agent", "name"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
        let result = self.request_call(by, tool, v).await;
        match &result {
            Ok(f) => self.audit_call(
                by,
                tool,
                target.as_deref(),
                f.sha.as_deref(),
                "requested",
                None,
            ),
            Err(e) => self.audit_call(
                by,
                tool,
                target.as_deref(),
                None,
                "refused",
                Some(&e.to_string()),
            ),
        }
        match result {
            Ok(f) => Ok(self.shown(&f.text)),
            Err(e) => Err(ToolError::Refused(self.shown(&e.to_string()))),
        }
    }

    async fn request_call(
        &self,
        by: &AgentName,
        tool: &str,
        v: &Value,
    ) -> Result<Filed, ToolError> {
        let refused = |r: crate::c0re::approvals::RequestRefused| ToolError::Refused(r.to_string());
        match tool {
            "request_rollback" => {
                let a: RollbackArgs = args(tool, v)?;
                let r = self
                    .request_rollback(by.as_str(), &a.agent, a.deploy, &a.summary)
                    .await
                    .map_err(refused)?;
                let mut answer = rollback_answer(&r);
                self.secrets().redact_json(&mut answer);
                Ok(Filed {
                    text: serde_json::to_string_pretty(&answer).expect("json serialises"),
                    sha: Some(r.sha),
                })
            }
            "request_init_config" => {
                let a: InitArgs = args(tool, v)?;
                let files = if a.files.is_empty() {
                    Vec::new()
                } else {
                    check_files(&a.files, &format!("init {}", a.name))
                        .map_err(|e| ToolError::Refused(e.to_string()))?
                };
                let id = self
                    .request_init_config_from(by.as_str(), &a.name, files, &a.summary)
                    .await
                    .map_err(refused)?;
                Ok(Filed {
                    text: format!(
                        "requested (approval #{id}); the outcome will arrive as a message"
                    ),
                    sha: None,
                })
            }
            other => Err(ToolError::NoTool(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollback(abandoned: &[&str]) -> Rollback {
        Rollback {
            id: 7,
            agent: AgentName::parse("echo").unwrap(),
            deploy: 1,
            deploy_sha: "a".repeat(40),
            sha: "b".repeat(40),
            parent: "c".repeat(40),
            abandoned: abandoned.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_answer_names_what_was_abandoned() {
        struct Case {
            name: &'static str,
            abandoned: Vec<&'static str>,
            says: &'static str,
            not: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "nothing abandoned",
                abandoned: vec![],
                says: "requested (approval #7); the outcome will arrive as a message",
                not: Some("unapplied"),
            },
            Case {
                name: "two unapplied commits",
                abandoned: vec!["d1", "d2"],
                says: "2 unapplied proposed commit(s) are no longer on it (kept, readable by sha with config_diff): d1, d2",
                not: None,
            },
        ];
        for c in cases {
            let v = rollback_answer(&rollback(&c.abandoned));
            let note = v["note"].as_str().unwrap();
            assert!(note.contains(c.says), "{}: {note}", c.name);
            if let Some(not) = c.not {
                assert!(!note.contains(not), "{}: {note}", c.name);
            }
            assert_eq!(v["rollback_to"], "deploy/1", "{}", c.name);
            assert_eq!(v["abandoned"].as_array().unwrap().len(), c.abandoned.len());
        }
    }

    #[test]
    fn arguments_are_typed() {
        struct Case {
            name: &'static str,
            v: Value,
            ok: bool,
        }
        let cases = [
            Case {
                name: "a deploy number",
                v: json!({"agent": "echo", "deploy": 1}),
                ok: true,
            },
            Case {
                name: "with a summary",
                v: json!({"agent": "echo", "deploy": 3, "summary": "v3 broke"}),
                ok: true,
            },
            Case {
                name: "a tag is not a number",
                v: json!({"agent": "echo", "deploy": "deploy/1"}),
                ok: false,
            },
            Case {
                name: "negative",
                v: json!({"agent": "echo", "deploy": -1}),
                ok: false,
            },
            Case {
                name: "no deploy",
                v: json!({"agent": "echo"}),
                ok: false,
            },
            Case {
                name: "an unknown argument",
                v: json!({"agent": "echo", "deploy": 1, "sha": "x"}),
                ok: false,
            },
        ];
        for c in cases {
            assert_eq!(
                args::<RollbackArgs>("request_rollback", &c.v).is_ok(),
                c.ok,
                "{}",
                c.name
            );
        }
        let init = args::<InitArgs>(
            "request_init_config",
            &json!({"name": "bob", "summary": "s", "files": [{"path": "agent.toml", "content": "x"}]}),
        )
        .expect("files are accepted");
        assert_eq!(init.files.len(), 1);
        assert!(
            args::<InitArgs>(
                "request_init_config",
                &json!({"name": "bob", "summary": "s"})
            )
            .expect("files are optional")
            .files
            .is_empty()
        );
    }
}
